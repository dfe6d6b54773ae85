"""The tracking layer without a store: URI rules, champion decisions, throttling, sample sheets,
and the pyfunc model's request handling on a freshly built (untrained) variant."""

import base64
import io
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from mlflow.exceptions import MlflowException
from PIL import Image

from ganzoo.config import load_config
from ganzoo.errors import ConfigError
from ganzoo.tracking import NullTracker, open_tracker, registry, store
from ganzoo.tracking.tracker import _TrainingHooks
from ganzoo.training.loop import data_spec
from ganzoo.variants import registry as variants
from tests.helpers import make_prepared

TINY = {"dcgan": ["model.dcgan.ngf=8", "model.dcgan.ndf=8", "model.dcgan.z_dim=8"],
        "cgan": ["model.cgan.ngf=8", "model.cgan.ndf=8", "model.cgan.z_dim=8", "model.cgan.embed_dim=4"],
        "pix2pix": ["model.pix2pix.ngf=8", "model.pix2pix.ndf=8", "model.pix2pix.n_layers=2"],
        "infogan": ["model.infogan.ngf=8", "model.infogan.ndf=8", "model.infogan.z_dim=8", "model.infogan.q_hidden=8"]}


def tiny_variant(name: str):
    cfg = variants.resolve(load_config(None, [f"variant={name}", *TINY[name]]))
    kind = "paired" if name == "pix2pix" else "images"
    return variants.build(cfg, data_spec(make_prepared(kind, n=8, size=16)), "cpu")


# --------------------------------------------------------------------------- store rules

def test_uri_precedence_config_then_env_then_sqlite_in_cwd(in_tmp, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert store.resolve_uri(None) == f"sqlite:///{in_tmp.resolve() / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://tracker:5000")
    assert store.resolve_uri(None) == "http://tracker:5000"
    assert store.resolve_uri("sqlite:///other/x.db") == f"sqlite:///{in_tmp.resolve() / 'other' / 'x.db'}"


def test_sqlite_artifacts_live_beside_the_database(in_tmp):
    assert store.artifact_location("sqlite:///db/mlflow.db") == (in_tmp.resolve() / "db" / "mlartifacts").as_uri()
    assert store.artifact_location("http://tracker:5000") is None


def test_closed_port_is_reported_unreachable_and_files_are_not_probed():
    import socket

    with socket.socket() as s:  # a port that was free a moment ago: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert store.unreachable_reason(f"http://127.0.0.1:{port}", timeout_s=2) is not None
    assert store.unreachable_reason("sqlite:///mlflow.db") is None


def test_only_rank_zero_tracks(monkeypatch):
    monkeypatch.setenv("RANK", "1")
    tracker = open_tracker(load_config(None, []))
    assert type(tracker) is NullTracker and not tracker.active


def test_sidecar_round_trip_and_garbage_is_ignored(in_tmp):
    store.write_sidecar(in_tmp / "ck", {"run_id": "abc", "step": 3})
    assert store.read_sidecar(in_tmp / "ck") == {"run_id": "abc", "step": 3}
    (in_tmp / "ck" / store.SIDECAR).write_text("{not json")
    assert store.read_sidecar(in_tmp / "ck") is None


def test_numeric_metrics_drop_descriptions_and_settings():
    metrics = {"fid_classifier": 3.5, "step": 6, "primary_metric": "fid_classifier",
               "primary_higher_is_better": False, "per_class": {"0": 1}}
    assert store.numeric_metrics(metrics) == {"fid_classifier": 3.5, "per_class.0": 1.0}


# --------------------------------------------------------------------------- champion decisions

def test_primary_metric_defaults_to_fid_lower_is_better():
    assert registry.primary_metric({"fid_classifier": 12.0, "kid": 1}) == ("fid_classifier", 12.0, False)
    assert registry.primary_metric({"primary_metric": "ssim", "primary_higher_is_better": True, "ssim": 0.7}) == \
        ("ssim", 0.7, True)
    with pytest.raises(ConfigError, match="fid_classifier"):
        registry.primary_metric({"kid": 1.0})


@pytest.mark.parametrize("value, champion, higher, wins", [
    (1.0, 2.0, False, True), (3.0, 2.0, False, False), (2.0, 2.0, False, False),
    (3.0, 2.0, True, True), (1.0, 2.0, True, False), (float("nan"), 2.0, False, False),
    (5.0, float("nan"), False, True),
])
def test_beats_is_strict_and_direction_aware(value, champion, higher, wins):
    assert registry.beats(value, champion, higher) is wins


def _version(n, metric="fid_classifier", value=10.0, higher=False):
    fp = {f"ganzoo.fingerprint.{p}": "same" for p in ("extractor", "input", "reference", "generated", "seed",
                                                       "estimator")}
    return SimpleNamespace(version=str(n), tags={"ganzoo.primary_metric": metric, "ganzoo.primary_value": repr(value),
                                                 "ganzoo.higher_is_better": str(higher), "ganzoo.fingerprint": "h",
                                                 **fp})


def test_decide_explains_each_outcome():
    mine = registry.standing_of_version(_version(0, value=5.0))
    assert registry.decide(None, mine) == registry.Decision("champion", "there was no champion")
    decision = registry.decide(registry.standing_of_version(_version(2)), mine)
    assert decision.wins and "beats champion v2" in decision.reason
    worse = registry.standing_of_version(_version(0, value=15.0))
    decision = registry.decide(registry.standing_of_version(_version(2)), worse)
    assert not decision.wins and "does not beat" in decision.reason
    decision = registry.decide(registry.standing_of_version(_version(2, metric="l1")), mine)
    assert not decision.wins and "cannot be compared" in decision.reason


def test_registered_name_derives_from_variant_and_dataset():
    assert registry.registered_name(load_config(None, ["variant=cgan", "data.source=mnist"])) == "ganzoo-cgan-mnist"
    assert registry.registered_name(load_config(None, ["tracking.registered_name=mine"])) == "mine"


# --------------------------------------------------------------------------- throttling

class FakeTracker:
    """Records what the hooks hand the background worker (run here at once)."""

    active = True
    _training = False
    _sidecar_dir = None
    _end_submitted = False

    def __init__(self):
        self.metrics, self.images, self.kinds, self.status = [], [], [], None
        self.api = SimpleNamespace(
            log_image=lambda run_id, image, key, step: self.images.append((key, step, image.shape)))

    def submit(self, fn, *args, kind, count=1, essential=False):
        self.kinds.append(kind)
        fn(*args)

    def _run(self):
        return "run"

    def _log_metrics(self, values, step, ts):
        self.metrics.append((step, values))

    def _terminate(self, status):
        self.status = status

    def write_sidecar(self, step, stamp, unlogged=None):
        pass


def test_losses_are_averaged_over_each_tracking_window_and_sheets_follow_image_every(monkeypatch):
    monkeypatch.setattr(_TrainingHooks, "_start", lambda self, cfg, start, stamp: None)
    monkeypatch.setattr(_TrainingHooks, "_end_files", lambda self, path, history: None)
    cfg = load_config(None, ["train.steps=10", "train.log_every=2", "tracking.log_every=4", "tracking.image_every=5",
                             *TINY["dcgan"]])
    fake = FakeTracker()
    hooks = _TrainingHooks(fake)
    hooks.on_start(cfg, tiny_variant("dcgan"), 0)
    for step in (2, 4, 6, 8, 10):
        hooks.on_log(step, {"loss": float(step)}, images_per_s=100.0)
    hooks.on_end(10, "unused")
    assert [s for s, _ in fake.metrics] == [4, 8, 10]
    assert fake.metrics[0][1] == {"loss": 3.0, "images_per_s": 100.0}  # mean of the windows ending at 2 and 4
    assert fake.metrics[2][1]["loss"] == 10.0
    assert [(k, s) for k, s, _ in fake.images] == [("samples", 6), ("samples", 10)]  # no repeat at on_end
    assert fake.status == "FINISHED" and fake.kinds[-1] == "run end (FINISHED)"


# --------------------------------------------------------------------------- sample sheets

def test_sheet_is_reproducible_and_leaves_training_state_alone():
    from ganzoo.tracking.sheets import sample_sheet

    variant = tiny_variant("dcgan")
    variant.train()
    rng = torch.get_rng_state()
    first = sample_sheet(variant)
    assert torch.equal(torch.get_rng_state(), rng)
    assert all(net.training for net in variant.nets.values())
    assert first.dtype == np.uint8 and first.shape == (8 * 18 + 2, 8 * 18 + 2, 3)
    assert np.array_equal(first, sample_sheet(variant))


def test_conditional_sheet_has_one_column_per_class():
    from ganzoo.tracking.sheets import sample_sheet

    sheet = sample_sheet(tiny_variant("cgan"))
    assert sheet.shape[1] == 10 * 18 + 2 and sheet.shape[0] == 6 * 18 + 2  # 60 samples, 10 classes


def test_translation_sheet_shows_inputs_outputs_and_targets():
    from ganzoo.tracking.sheets import sample_sheet

    inputs = {"a": torch.randint(0, 256, (4, 1, 16, 16), dtype=torch.uint8),
              "b": torch.randint(0, 256, (4, 1, 16, 16), dtype=torch.uint8)}
    sheet = sample_sheet(tiny_variant("pix2pix"), inputs)
    assert sheet.shape == (3 * 18 + 2, 4 * 18 + 2, 3)


# --------------------------------------------------------------------------- pyfunc requests

def _model(name):
    from ganzoo.tracking.pyfunc import GeneratorModel

    model = GeneratorModel()
    model.variant = tiny_variant(name)
    return model


def _decode(text):
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(text))))


def test_predict_samples_n_images_per_request_reproducibly():
    model = _model("dcgan")
    out = model.predict(None, pd.DataFrame({"n": [2, 3], "seed": [0, 1]}))
    assert list(out.columns) == ["request", "image"]
    assert out["request"].tolist() == [0, 0, 1, 1, 1]
    assert _decode(out["image"][0]).shape == (16, 16)
    again = model.predict(None, pd.DataFrame({"n": [2], "seed": [0]}))
    assert again["image"].tolist() == out["image"][:2].tolist()


def test_predict_rejects_labels_for_unconditional_and_huge_n():
    model = _model("dcgan")
    with pytest.raises(MlflowException, match="unconditional"):
        model.predict(None, pd.DataFrame({"n": [1], "label": [3]}))
    with pytest.raises(MlflowException, match="1..1024"):
        model.predict(None, pd.DataFrame({"n": [5000]}))


def test_predict_conditional_uses_the_label():
    model = _model("cgan")
    out = model.predict(None, pd.DataFrame({"n": [2, 2], "seed": [0, 0], "label": [1, 7]}))
    assert len(out) == 4 and out["image"][0] != out["image"][2]  # same noise, other class


def test_predict_applies_infogan_codes_and_reports_unknown_ones():
    model = _model("infogan")
    out = model.predict(None, pd.DataFrame({"n": [1, 1], "seed": [0, 0], "codes": ["cat=0,c1=-1.5", "cat=0,c1=1.5"]}))
    assert out["image"][0] != out["image"][1]  # same noise, the continuous code moved
    with pytest.raises(MlflowException, match="unknown code 'zz'"):
        model.predict(None, pd.DataFrame({"n": [1], "codes": ["zz=1"]}))


def test_predict_translates_base64_png_and_rejects_the_wrong_direction():
    from ganzoo.tracking.pyfunc import encode_png

    model = _model("pix2pix")
    image = encode_png(torch.rand(3, 32, 32) * 2 - 1)  # colour and larger: converted and resized
    out = model.predict(None, pd.DataFrame({"image": [image, image]}))
    assert out["request"].tolist() == [0, 1] and _decode(out["image"][0]).shape == (16, 16)
    with pytest.raises(MlflowException, match="AtoB"):
        model.predict(None, pd.DataFrame({"image": [image], "direction": ["BtoA"]}))
    with pytest.raises(MlflowException, match="base64"):
        model.predict(None, pd.DataFrame({"image": ["not an image"]}))


@pytest.mark.parametrize("name, columns", [("dcgan", {"n", "seed"}), ("cgan", {"n", "seed", "label"}),
                                           ("infogan", {"n", "seed", "codes"}), ("pix2pix", {"image", "direction"})])
def test_request_columns_match_the_input_example(name, columns):
    from ganzoo.tracking.pyfunc import input_example, request_columns, signature

    variant = tiny_variant(name)
    assert set(request_columns(variant)) == columns
    assert set(input_example(variant).columns) <= columns
    # No input schema: MLflow would drop unknown columns and truncate n=1.5 before predict sees them.
    assert signature(variant).inputs is None and signature(variant).outputs is not None


def test_sidecar_run_only_matches_the_checkpoint_it_was_written_for(in_tmp):
    client = SimpleNamespace(get_run=lambda run_id: SimpleNamespace(
        info=SimpleNamespace(run_id=run_id, lifecycle_stage="active")))
    ckpt = in_tmp / "ck" / "last.pt"
    ckpt.parent.mkdir()
    ckpt.write_bytes(b"first")
    uri = store.resolve_uri(None)
    store.write_sidecar(ckpt.parent, {"run_id": "r1", "tracking_uri": uri, "checkpoint": store.checkpoint_stamp(ckpt)})
    assert store.sidecar_run(client, uri, ckpt)[0] == "r1"
    assert store.sidecar_run(client, "sqlite:////elsewhere/mlflow.db", ckpt)[0] is None  # another store
    ckpt.write_bytes(b"retrained without tracking")
    assert store.sidecar_run(client, uri, ckpt)[0] is None


def test_run_tags_name_the_dvc_stage_when_dvc_runs_us(monkeypatch):
    monkeypatch.delenv("DVC_STAGE", raising=False)
    cfg = load_config(None, ["variant=cgan", "data.source=mnist"])
    tags = store.run_tags(cfg)
    assert tags["ganzoo.variant"] == "cgan" and tags["ganzoo.dataset"] == "mnist" and "dvc.stage" not in tags
    monkeypatch.setenv("DVC_STAGE", "train")
    assert store.run_tags(cfg)["dvc.stage"] == "train"
