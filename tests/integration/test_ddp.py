"""Data-parallel training on CPU with the gloo backend: 2 ranks x batch 8 train exactly like one
process with batch 16 when both see the same global batches and noise, and `ganzoo train
--nproc 2` trains, checkpoints from rank 0 with every rank's streams, and resumes on every rank."""

import os
import socket
import subprocess
import sys

import pytest
import torch
import torch.multiprocessing as mp

from ganzoo import stages
from ganzoo.config import load_config
from ganzoo.data.images import to_unit_range
from ganzoo.data.sampler import DeviceBatches
from ganzoo.training.checkpoint import read_checkpoint
from ganzoo.training.loop import train_loop
from ganzoo.variants.base import Variant
from tests.helpers import make_prepared

GLOBAL_BATCH = 16
STEPS = 4


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cfg(world: int, out_dir: str):
    # GAN's MLPs without dropout have no batch-dependent layer (no batch norm), so the gradient
    # of the global mean loss is exactly the average of the ranks' gradients.
    return load_config(None, ["variant=gan", "model.gan.hidden=16", "model.gan.dropout=0", f"train.steps={STEPS}",
                              f"train.batch_size={GLOBAL_BATCH // world}", "train.log_every=1", "train.threads=1",
                              "train.checkpoint_every=100", "train.progress=false", "tracking.enabled=false",
                              f"train.out_dir={out_dir}", f"train.metrics_dir={out_dir}/metrics"])


def _same_global_batches(setattr_, prep, rank: int, world: int) -> None:
    """Test-only data and noise: step k's global batch and noise are fixed draws, each rank takes
    its slice, so one process with batch 16 and two with batch 8 see the same 16 images and z."""
    images = to_unit_range(prep.tensors["x"])
    calls = {"batch": 0, "noise": 0}
    noise = Variant.noise

    def next_batch(self):
        g = torch.Generator().manual_seed(100 + calls["batch"])
        calls["batch"] += 1
        idx = torch.randint(images.shape[0], (GLOBAL_BATCH,), generator=g)
        per = GLOBAL_BATCH // world
        return {"x": images[idx][rank * per:(rank + 1) * per]}

    def global_noise(self, n, dim, generator=None):
        if generator is not None:  # sampling, not training
            return noise(self, n, dim, generator)
        g = torch.Generator().manual_seed(200 + calls["noise"])
        calls["noise"] += 1
        return torch.randn(n * world, dim, generator=g)[rank * n:(rank + 1) * n].to(self.device)

    setattr_(DeviceBatches, "next", next_batch)
    setattr_(Variant, "noise", global_noise)


def _rank_worker(rank: int, world: int, port: int, out_dir: str) -> None:
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    prep = make_prepared(n=64, size=16)
    _same_global_batches(setattr, prep, rank, world)
    train_loop(_cfg(world, out_dir), prep)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_two_ranks_train_like_one_process_with_the_global_batch(in_tmp, monkeypatch):
    prep = make_prepared(n=64, size=16)
    with monkeypatch.context() as m:
        _same_global_batches(m.setattr, prep, 0, 1)
        single = train_loop(_cfg(1, "one"), prep)
    mp.spawn(_rank_worker, args=(2, _free_port(), "two"), nprocs=2, join=True)

    one = read_checkpoint(single.checkpoint)
    two = read_checkpoint(in_tmp / "two" / "gan" / "last.pt")
    assert one["step"] == two["step"] == STEPS and len(two["ranks"]) == 2
    # Logged losses are the global batch's means: equal at every step, so the ranks started
    # from the same weights (broadcast) and applied the averaged gradients.
    assert len(one["history"]) == len(two["history"]) == STEPS
    for a, b in zip(one["history"], two["history"], strict=True):
        for k in ("loss_d", "loss_g"):
            assert a[k] == pytest.approx(b[k], rel=1e-5, abs=1e-6), (a["step"], k, a[k], b[k])
    for net, state in one["state"]["nets"].items():
        for k, v in state.items():
            torch.testing.assert_close(two["state"]["nets"][net][k], v, rtol=1e-5, atol=1e-6)
    # Each rank drew its own sampler stream (kept separately for resume).
    r0, r1 = (r["sampler"]["generator"] for r in two["ranks"])
    assert not torch.equal(r0, r1)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_nproc_flag_trains_checkpoints_on_rank0_and_resumes_every_rank(in_tmp):
    common = ["--set", "data.image_size=16", "--set", "data.limit=128", "--set", "train.batch_size=8",
              "--set", "train.checkpoint_every=2", "--set", "train.log_every=2", "--set", "train.threads=1",
              "--set", "train.progress=false", "--set", "tracking.enabled=false",
              "--set", "model.dcgan.ngf=8", "--set", "model.dcgan.ndf=8",
              # the monitor runs on rank 0 under DDP too; a quick classifier keeps the test short
              "--set", "eval.classifier_steps=20", "--set", "monitor.n_probe=64"]
    stages.prepare(load_config(None, [c for c in common if c != "--set"]))

    def train(steps, *flags):
        proc = subprocess.run([sys.executable, "-m", "ganzoo", "train", "--nproc", "2", *flags, *common,
                               "--set", f"train.steps={steps}"],
                              capture_output=True, text=True, timeout=240, check=False)
        assert proc.returncode == 0, proc.stderr[-3000:]
        return proc.stdout

    out = train(4)
    assert out.count("trained dcgan to step 4") == 1, out  # printed by rank 0 only
    ckpt = read_checkpoint(in_tmp / "checkpoints" / "dcgan" / "last.pt")
    assert ckpt["step"] == 4 and len(ckpt["ranks"]) == 2
    # rank 0's monitor scored the probe (its FID must not wait for the other ranks) and kept best.pt
    assert "probe_coverage" in ckpt["history"][-1], ckpt["history"][-1]
    assert (in_tmp / "checkpoints" / "dcgan" / "best.pt").exists()
    out = train(6, "--resume")
    assert out.count("trained dcgan to step 6") == 1, out
    ckpt = read_checkpoint(in_tmp / "checkpoints" / "dcgan" / "last.pt")
    assert ckpt["step"] == 6 and [h["step"] for h in ckpt["history"]] == [2, 4, 6]
