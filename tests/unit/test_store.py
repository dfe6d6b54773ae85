"""The prepared store: chunked .npy arrays, manifest and content hash, verification on load, the
old format's and a truncated file's one-line messages, degenerate images, streaming from the files."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
from PIL import Image

from ganzoo.config import DataConfig
from ganzoo.data import store, stream
from ganzoo.data.prepare import prepare_data
from ganzoo.data.prepared import Prepared, content_hash, load_prepared, prepared_path, save_prepared
from ganzoo.data.sampler import DeviceBatches
from ganzoo.data.stream import StreamBatches, should_stream
from ganzoo.errors import DataError


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    """The verification cache of each test in its own folder, and the in-process memo cleared."""
    monkeypatch.setenv("GANZOO_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(store, "_VERIFIED", {})


def noise_folder(root, n, size=(20, 14), mode="RGB"):
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.effect_noise(size, 40 + i).convert(mode).save(root / f"{i:03d}.png")
    return root


def folder_cfg(tmp_path, root, **kw):
    return DataConfig(source="folder", root=str(root), image_size=8, prepared_dir=str(tmp_path / "prep"), **kw)


# --------------------------------------------------------------------------- the format

def test_arrays_are_plain_npy_with_a_manifest(tmp_path):
    prep = prepare_data(DataConfig(source="digits", limit=50, prepared_dir=str(tmp_path)))
    folder = prepared_path(DataConfig(source="digits", prepared_dir=str(tmp_path)))
    m = json.loads((folder / "manifest.json").read_text())
    assert m["format"] == store.FORMAT and set(m["arrays"]) == {"x", "y"}
    x = np.load(folder / m["arrays"]["x"]["file"], mmap_mode="r")  # readable without ganzoo
    assert x.dtype == np.uint8 and x.shape == (50, 1, 32, 32) and m["count"] == 50
    assert np.array_equal(x, prep.tensors["x"].numpy())
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".")]  # no temp folders left


def test_chunked_prepare_hashes_like_one_piece(tmp_path):
    root = noise_folder(tmp_path / "imgs", 11)
    one = prepare_data(folder_cfg(tmp_path / "a", root))
    row = 3 * 8 * 8
    chunked = prepare_data(folder_cfg(tmp_path / "b", root), chunk_bytes=2 * row)  # 6 chunks of 2 rows
    assert chunked.manifest["content_hash"] == one.manifest["content_hash"]
    assert torch.equal(chunked.tensors["x"], one.tensors["x"])
    assert content_hash({"x": one.tensors["x"]}) == one.manifest["content_hash"]  # in memory, same hash


def test_chunked_decoding_holds_one_chunk(tmp_path, monkeypatch):
    """A folder of 11 images written 2 rows at a time never asks for more than 2 rows."""
    from ganzoo.data import rows

    asked = []
    read = rows.FileRows.read
    monkeypatch.setattr(rows.FileRows, "read", lambda self, a, b: asked.append(b - a) or read(self, a, b))
    prepare_data(folder_cfg(tmp_path, noise_folder(tmp_path / "imgs", 11)), chunk_bytes=2 * 3 * 8 * 8)
    assert max(asked) == 2 and sum(asked) == 11


def test_old_format_is_one_line_to_re_run_prepare(tmp_path):
    old = tmp_path / "digits-32"
    old.mkdir()
    torch.save({"x": torch.zeros(2, 1, 32, 32, dtype=torch.uint8)}, old / "data.pt")
    (old / "manifest.json").write_text(json.dumps({"kind": "images", "content_hash": "abc"}))
    for folder in (old,):
        with pytest.raises(DataError) as err:
            load_prepared(folder)
        msg = str(err.value)
        assert "\n" not in msg and "old prepared format" in msg and "re-run `ganzoo prepare`" in msg
    (old / "manifest.json").unlink()
    with pytest.raises(DataError, match=r"old prepared format \(data\.pt.*re-run `ganzoo prepare`"):
        load_prepared(old)


def test_truncated_array_is_named_and_not_called_a_checkpoint(tmp_path):
    prepare_data(DataConfig(source="digits", limit=20, prepared_dir=str(tmp_path)))
    folder = tmp_path / "digits-32"
    data = (folder / "x.npy").read_bytes()
    (folder / "x.npy").write_bytes(data[:len(data) // 2])
    with pytest.raises(DataError) as err:
        load_prepared(folder)
    msg = str(err.value)
    assert "x.npy is truncated" in msg and "re-run `ganzoo prepare`" in msg
    assert "\n" not in msg and "checkpoint" not in msg.lower()


def test_changed_array_is_refused_then_trusted_while_unchanged(tmp_path, monkeypatch):
    prepare_data(DataConfig(source="digits", limit=20, prepared_dir=str(tmp_path)))
    folder = tmp_path / "digits-32"
    hashed = []
    sha = store.ArrayFile.sha256
    monkeypatch.setattr(store.ArrayFile, "sha256", lambda self: hashed.append(self.path.name) or sha(self))
    load_prepared(folder)
    assert hashed == []  # prepare recorded its own write: nothing to re-hash
    monkeypatch.setattr(store, "_VERIFIED", {})
    load_prepared(folder)
    assert hashed == []  # the on-disk cache knows the files too
    x = folder / "x.npy"
    data = bytearray(x.read_bytes())
    data[-1] ^= 0xFF  # same size, one pixel changed
    x.write_bytes(bytes(data))
    os.utime(x, ns=(1, 1))  # even with the old mtime back, ctime and the content give it away
    with pytest.raises(DataError, match=r"x\.npy does not match its manifest hash.*re-run `ganzoo prepare`"):
        load_prepared(folder)
    assert "x.npy" in hashed


def test_failed_write_keeps_the_old_dataset(tmp_path):
    root = noise_folder(tmp_path / "imgs", 4)
    cfg = folder_cfg(tmp_path, root)
    before = prepare_data(cfg).manifest["content_hash"]
    (root / "zz_broken.png").write_bytes(b"\x89PNG not really")  # fails mid-write, after the checks
    with pytest.raises(DataError, match=r"zz_broken\.png"):
        prepare_data(cfg)
    assert load_prepared(prepared_path(cfg)).manifest["content_hash"] == before
    assert not [p for p in (tmp_path / "prep").iterdir() if p.name.startswith(".")]


# --------------------------------------------------------------------------- image folders

def test_degenerate_images_are_warned_about_once_with_a_count(tmp_path, capsys):
    root = noise_folder(tmp_path / "imgs", 5, size=(40, 30))
    for name in ("tiny_a.png", "tiny_b.png"):
        Image.new("RGB", (1, 1), (200, 10, 10)).save(root / name)
    prepare_data(DataConfig(source="folder", root=str(root), image_size=32, prepared_dir=str(tmp_path / "p")))
    err = capsys.readouterr().err
    assert err.count("warning") == 1 and "2 of 7 images" in err and "1x1" in err
    prepare_data(DataConfig(source="folder", root=str(noise_folder(tmp_path / "ok", 3)), image_size=8,
                            prepared_dir=str(tmp_path / "p")))
    assert "warning" not in capsys.readouterr().err


def test_resize_policy_center_crop_or_stretch(tmp_path):
    root = tmp_path / "wide"
    root.mkdir()
    a = np.zeros((10, 40, 3), np.uint8)
    a[:, :10] = 255  # white left quarter: gone after a centre crop, kept when stretched
    Image.fromarray(a).save(root / "w.png")
    crop = prepare_data(folder_cfg(tmp_path / "c", root)).tensors["x"][0]
    stretch = prepare_data(folder_cfg(tmp_path / "s", root, resize="stretch")).tensors["x"][0]
    assert crop.max() == 0
    assert stretch[:, :, 0].min() == 255 and stretch[:, :, -1].max() == 0
    m = prepare_data(folder_cfg(tmp_path / "s", root, resize="stretch")).manifest
    assert m["resize"] == "stretch"


def test_big_jpegs_decode_at_a_reduced_scale_close_to_full(tmp_path):
    from ganzoo.data.images import image_array, load_image, read_image

    g = np.random.default_rng(0)
    smooth = np.kron(g.integers(0, 256, (12, 16, 3)), np.ones((50, 50, 1))).astype(np.uint8)  # 600x800
    Image.fromarray(smooth).save(tmp_path / "big.jpg", quality=95)
    fast = read_image(tmp_path / "big.jpg", 3, 64).astype(float)
    full = image_array(load_image(tmp_path / "big.jpg", 3), 64).astype(float)
    assert fast.shape == full.shape == (3, 64, 64)
    assert np.abs(fast - full).mean() < 4  # same picture; DCT-domain downscaling differs in detail


# --------------------------------------------------------------------------- streaming from the files

@pytest.mark.parametrize("jitter", [False, True])
def test_stream_from_the_files_draws_what_device_batches_draw(tmp_path, jitter):
    prep = prepare_data(DataConfig(source="digits_paired", limit=40, image_size=16, prepared_dir=str(tmp_path)))
    assert prep.files is not None
    streamed = StreamBatches(prep, 4, "cpu", seed=2, prefetch=2, jitter=jitter)
    assert streamed.reader is not None  # rows come from the .npy files on a reader thread
    on_device = DeviceBatches(prep, 4, "cpu", seed=2, jitter=jitter)
    for _ in range(3):
        a, b = on_device.next(), streamed.next()
        assert a.keys() == b.keys() == {"a", "b"}
        assert all(torch.equal(a[k], b[k]) for k in a)
    state = streamed.state_dict()
    expected = streamed.next()
    again = StreamBatches(prep, 4, "cpu", seed=99, prefetch=0, jitter=jitter)
    again.load_state_dict(state)
    resumed = again.next()
    assert all(torch.equal(v, resumed[k]) for k, v in expected.items())


def test_stream_shards_rows_like_device_batches(tmp_path):
    prep = prepare_data(DataConfig(source="digits", limit=30, image_size=8, prepared_dir=str(tmp_path)))
    for rank in (0, 1):
        a = DeviceBatches(prep, 5, "cpu", seed=1, rank=rank, world_size=2).next()
        b = StreamBatches(prep, 5, "cpu", seed=1, rank=rank, world_size=2).next()
        assert torch.equal(a["x"], b["x"]) and torch.equal(a["y"], b["y"])


def test_cpu_streams_when_the_float_copy_would_not_fit(tmp_path, monkeypatch):
    prep = prepare_data(DataConfig(source="digits", limit=100, image_size=8, prepared_dir=str(tmp_path)))
    cpu = torch.device("cpu")
    assert not should_stream(prep, cpu)
    monkeypatch.setattr(stream, "host_memory", lambda: 4 * stream.device_bytes(prep) - 1)  # e.g. ulimit -v
    assert should_stream(prep, cpu)
    assert stream.device_bytes(prep) == 100 * 8 * 8 * 4 + 100 * 8
    assert "x" not in prep.tensors._mapped  # sizing the data mapped nothing


def test_in_memory_and_stored_data_shapes_agree(tmp_path):
    built = Prepared("images", {"x": torch.zeros(3, 1, 8, 8, dtype=torch.uint8)}, {"classes": None})
    save_prepared(built, tmp_path / "d")
    stored = load_prepared(tmp_path / "d")
    assert stored.image_shape == built.image_shape == (1, 8, 8) and stored.count("x") == 3


@pytest.mark.gpu
def test_stream_from_the_files_on_cuda_matches_the_cpu(tmp_path):
    """Pinned reads, the side-stream copy and the jitter on the GPU give the CPU's batches."""
    prep = prepare_data(DataConfig(source="digits_paired", limit=40, image_size=16, prepared_dir=str(tmp_path)))
    cuda = StreamBatches(prep, 8, "cuda", seed=1, prefetch=2, jitter=True, channels_last=True)
    cpu = StreamBatches(prep, 8, "cpu", seed=1, prefetch=0, jitter=True)
    for _ in range(4):
        a, b = cuda.next(), cpu.next()
        for k in ("a", "b"):
            assert a[k].is_cuda and a[k].is_contiguous(memory_format=torch.channels_last)
            torch.testing.assert_close(a[k].cpu(), b[k], atol=1e-5, rtol=0)
