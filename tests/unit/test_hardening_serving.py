"""Issue 20, the served model and oversized inputs: a request is capped in rows and in images (all
rows together), unknown columns and non-integer numbers are refused with a 400 before any work,
and a decompression-bomb PNG is one line naming the file in `prepare` and `translate`."""

import struct
import zlib

import pandas as pd
import pytest
from mlflow.exceptions import MlflowException

from ganzoo.cli import main
from ganzoo.config import load_config
from ganzoo.tracking.pyfunc import MAX_IMAGES, MAX_ROWS, GeneratorModel
from ganzoo.training.loop import data_spec, train_loop
from ganzoo.variants import registry
from tests.helpers import make_prepared

WIDTHS = {"dcgan": ["model.dcgan.ngf=8", "model.dcgan.ndf=8", "model.dcgan.z_dim=8"],
          "cgan": ["model.cgan.ngf=8", "model.cgan.ndf=8", "model.cgan.z_dim=8", "model.cgan.embed_dim=4"],
          "pix2pix": ["model.pix2pix.ngf=8", "model.pix2pix.ndf=8", "model.pix2pix.n_layers=2"]}


def model(name):
    cfg = registry.resolve(load_config(None, [f"variant={name}", *WIDTHS[name]]))
    kind = "paired" if name == "pix2pix" else "images"
    m = GeneratorModel()
    m.variant = registry.build(cfg, data_spec(make_prepared(kind, n=8, size=16)), "cpu")
    return m


def refused(m, frame, match):
    with pytest.raises(MlflowException, match=match) as err:
        m.predict(None, pd.DataFrame(frame))
    assert err.value.get_http_status_code() == 400


def test_images_are_capped_per_request_not_per_row(monkeypatch):
    m = model("dcgan")
    generated = []
    monkeypatch.setattr("ganzoo.tracking.pyfunc.generate", lambda *a, **k: generated.append(a) or [])
    refused(m, {"n": [MAX_IMAGES] * 200, "seed": list(range(200))}, rf"{200 * MAX_IMAGES} images in 200 rows.*"
                                                                    rf"at most {MAX_IMAGES} images per request")
    refused(m, {"n": [1] * (MAX_ROWS + 1)}, rf"{MAX_ROWS + 1} rows: send 1..{MAX_ROWS} rows")
    refused(m, {"n": []}, "0 rows")
    assert not generated  # refused before any image was made


def test_a_request_at_the_caps_is_served():
    m = model("dcgan")
    out = m.predict(None, pd.DataFrame({"n": [MAX_IMAGES // 4] * 4, "seed": [0, 1, 2, 3]}))
    assert len(out) == MAX_IMAGES and out["request"].nunique() == 4


@pytest.mark.parametrize("name, frame, match", [
    ("cgan", {"n": [1], "lable": [3]}, r"unknown column 'lable' \(did you mean 'label'\?\); this cgan model takes "
                                       r"n, seed, label"),
    ("dcgan", {"n": [1], "sed": [3]}, r"unknown column 'sed' \(did you mean 'seed'\?\)"),
    ("dcgan", {"n": [1], "label": [3]}, r"unknown column 'label' \(it is unconditional\)"),
    ("pix2pix", {"direction": ["AtoB"]}, r"column 'image' is missing"),
    ("pix2pix", {"image": ["x"], "n": [2]}, r"unknown column 'n'"),
])
def test_unknown_or_missing_columns_are_refused(name, frame, match):
    refused(model(name), frame, match)


@pytest.mark.parametrize("frame, match", [
    ({"n": [1.5]}, r"row 0: n = 1.5 must be a whole number"),
    ({"n": [2, 3.25]}, r"row 1: n = 3.25 must be a whole number"),
    ({"n": ["3"]}, r"n = '3' must be a whole number"),
    ({"n": [True]}, r"n = True must be a whole number"),
    ({"n": [0]}, r"n = 0 is out of range \(1..1024"),
    ({"n": [1], "seed": [0.5]}, r"seed = 0.5 must be a whole number"),
    ({"n": [1], "seed": [1e30]}, r"seed = \d{31} is out of range \(a 64-bit integer\)"),
])
def test_non_integer_and_out_of_range_numbers_are_refused(frame, match):
    refused(model("dcgan"), frame, match)


def test_whole_floats_are_accepted_as_json_sends_them():
    m = model("dcgan")
    assert m.predict(None, pd.DataFrame({"n": [2.0], "seed": [7.0]}))["image"].tolist() == \
        m.predict(None, pd.DataFrame({"n": [2], "seed": [7]}))["image"].tolist()


def test_label_out_of_range_is_a_400_not_a_crash():
    refused(model("cgan"), {"n": [1], "label": [10]}, r"label = 10 is out of range \(classes are 0..9\)")
    refused(model("cgan"), {"n": [1], "label": [2.5]}, r"label = 2.5 must be a whole number")


# --------------------------------------------------------------------------- decompression bombs

def bomb_png(path, side=20000):
    """A PNG whose header claims side x side pixels (over PIL's 2 x MAX_IMAGE_PIXELS guard): a few
    bytes on disk, gigabytes if decoded."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)  # 8-bit grey
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"")) +
                     chunk(b"IEND", b""))
    return path


def test_prepare_of_a_folder_with_a_bomb_is_one_line(in_tmp, capsys):
    from PIL import Image

    (in_tmp / "imgs" / "a").mkdir(parents=True)
    Image.new("L", (20, 20), 128).save(in_tmp / "imgs" / "a" / "ok.png")
    bomb_png(in_tmp / "imgs" / "a" / "huge.png")
    code = main(["prepare", "--set", "data.source=folder", "--set", "data.root=imgs", "--set", "data.image_size=16",
                 "--set", "train.batch_size=1"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "huge.png" in err[0] and "too large" in err[0], err


def test_translate_of_a_bomb_is_one_line(in_tmp, capsys):
    cfg = load_config(None, ["variant=pix2pix", *WIDTHS["pix2pix"], "train.steps=1", "train.batch_size=2",
                             "train.progress=false", "tracking.enabled=false"])
    ckpt = train_loop(cfg, make_prepared("paired", n=8, size=16)).checkpoint
    (in_tmp / "in").mkdir()
    bomb_png(in_tmp / "in" / "huge.png")
    code = main(["translate", str(ckpt), "--input", "in", "--out", "out"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "huge.png" in err[0] and "too large" in err[0], err
    # The served model answers the same bytes with a 400.
    m = GeneratorModel()
    m.variant = registry.build(registry.resolve(cfg), data_spec(make_prepared("paired", n=8, size=16)), "cpu")
    import base64

    refused(m, {"image": [base64.b64encode((in_tmp / "in" / "huge.png").read_bytes()).decode()]}, "too large")
