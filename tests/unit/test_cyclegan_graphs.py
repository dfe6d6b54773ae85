"""CycleGAN under train.cuda_graphs (issue 19): its lr schedule and image pools keep no per-step
state on the host. The schedule's tensor form must move the lr exactly as torch's LambdaLR does
(checked here on the CPU), checkpoints must resume across the two forms, the CPU path must stay
LambdaLR, and on a GPU a graphed CycleGAN must train like an eager one (gpu-marked)."""

from __future__ import annotations

import math

import pytest
import torch

from ganzoo.config import Config, load_config
from ganzoo.errors import ConfigError
from ganzoo.training.checkpoint import read_checkpoint
from ganzoo.training.device import check_cuda_graphs, cuda_graph_blocker
from ganzoo.training.loop import data_spec, train_loop
from ganzoo.variants import registry
from ganzoo.variants.schedules import LinearDecay, lambda_decay, linear_decay_factor
from tests.helpers import make_prepared

TINY = {"ngf": 4, "ndf": 4, "n_blocks": 1, "n_layers": 2}


def _adam(seed: int) -> tuple[torch.nn.Linear, torch.optim.Adam]:
    torch.manual_seed(seed)
    net = torch.nn.Linear(5, 3)
    # foreach=False: the single-tensor Adam takes a tensor lr on the CPU too (foreach refuses it)
    return net, torch.optim.Adam(net.parameters(), lr=2e-4, betas=(0.5, 0.999), foreach=False)


def _train(net, opt, sched, steps: int) -> list[float]:
    g = torch.Generator().manual_seed(1)
    lrs = []
    for _ in range(steps):
        loss = net(torch.randn(8, 5, generator=g)).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        lrs.append(float(opt.param_groups[0]["lr"]))
    return lrs


def test_tensor_schedule_moves_the_lr_like_lambda_lr():
    start, total = 4, 10
    net_a, opt_a = _adam(0)
    net_b, opt_b = _adam(0)
    ref = _train(net_a, opt_a, lambda_decay(opt_a, start, total), 12)
    sched = LinearDecay(opt_b, start, total, torch.device("cpu"))
    assert isinstance(opt_b.param_groups[0]["lr"], torch.Tensor)
    got = _train(net_b, opt_b, sched, 12)
    assert ref[:3] == [2e-4] * 3 and ref[-1] < 0  # constant, then linear through 0 at total + 1
    assert got == pytest.approx(ref, rel=1e-6, abs=1e-12)  # float32 lr vs Python float
    assert got == pytest.approx([2e-4 * linear_decay_factor(s, start, total) for s in range(1, 13)], abs=1e-11)
    for p, q in zip(net_a.parameters(), net_b.parameters(), strict=True):
        assert torch.allclose(p, q, rtol=1e-5, atol=1e-7)


def test_schedule_state_resumes_across_the_two_forms():
    start, total = 2, 8
    net, opt = _adam(0)
    lam = lambda_decay(opt, start, total)
    _train(net, opt, lam, 5)
    _, opt2 = _adam(1)
    tensor_form = LinearDecay(opt2, start, total, torch.device("cpu"))
    tensor_form.load_state_dict(lam.state_dict())  # a CPU checkpoint continued on CUDA
    assert tensor_form.get_last_lr() == pytest.approx(lam.get_last_lr(), rel=1e-6)
    _, opt3 = _adam(2)
    back = lambda_decay(opt3, start, total)
    back.load_state_dict(tensor_form.state_dict())  # and the other way
    assert back.last_epoch == lam.last_epoch == 5
    back.step()
    lam.step()
    assert back.get_last_lr() == pytest.approx(lam.get_last_lr(), rel=1e-12)


def _cyclegan(steps: int = 10):
    prep = make_prepared("unpaired", n=8, size=16)
    cfg = Config(variant="cyclegan", model={"cyclegan": {**TINY, "pool_size": 3}},
                 train={"steps": steps, "device": "cpu"})
    return registry.build(cfg, data_spec(prep), "cpu"), prep


def test_cyclegan_declares_graphs_and_keeps_the_float_schedule_on_the_cpu():
    v, _ = _cyclegan()
    assert cuda_graph_blocker(v) is None
    assert all(isinstance(s, torch.optim.lr_scheduler.LambdaLR) for s in v.schedulers.values())
    assert all(isinstance(g["lr"], float) for opt in v.optims.values() for g in opt.param_groups)
    assert v.cuda_generators() == []  # CPU pools draw on the host generator, nothing to register


def test_a_checkpoint_with_tensor_lrs_resumes_on_the_cpu():
    """A CUDA run's optimizer state holds its lr as a tensor: the CPU's foreach Adam refuses one,
    so loading turns it back into the float the schedule writes."""
    v, prep = _cyclegan()
    batch = {k: prep.tensors[k][:3].float() / 127.5 - 1 for k in ("a", "b")}
    v.train_step(batch)
    state = v.state_dict()
    for opt_state in state["optims"].values():
        for group in opt_state["param_groups"]:
            group["lr"] = torch.tensor(group["lr"], dtype=torch.float32)
            group.update(foreach=None, fused=True, capturable=True)  # as a train.cuda_graphs run saves them
    w, _ = _cyclegan()
    w.load_state_dict(state)
    assert all(isinstance(g["lr"], float) for opt in w.optims.values() for g in opt.param_groups)
    # how Adam computes stays this device's: the CPU's foreach Adam, as a fresh CPU run
    assert all(g["foreach"] and not g["fused"] and not g["capturable"] for opt in w.optims.values()
               for g in opt.param_groups)
    losses = w.train_step(batch)
    assert all(torch.isfinite(x) for x in losses.values())


def _tensor_lr_form(v, start: int = 2, total: int = 8) -> None:
    """CycleGAN's CUDA schedule on the CPU: LinearDecay, with the single-tensor Adam (which takes a
    tensor lr on the CPU, as fused Adam does on CUDA)."""
    for k, opt in v.optims.items():
        for group in opt.param_groups:
            group["foreach"] = False
        v.schedulers[k] = LinearDecay(opt, start, total, torch.device("cpu"))


def test_a_cpu_checkpoint_resumes_with_the_tensor_schedule():
    """A CPU checkpoint continued on CUDA: its optimizer groups say foreach=True, which must not
    replace the built Adam's flags (foreach Adam refuses the tensor lr LinearDecay writes)."""
    v, prep = _cyclegan()
    batch = {k: prep.tensors[k][:3].float() / 127.5 - 1 for k in ("a", "b")}
    v.train_step(batch)
    w, _ = _cyclegan()
    _tensor_lr_form(w, 5, 10)
    w.load_state_dict(v.state_dict())
    assert all(g["foreach"] is False and isinstance(g["lr"], torch.Tensor) for g in w.optims["g"].param_groups)
    losses = w.train_step(batch)
    assert all(torch.isfinite(x) for x in losses.values())


def test_graphs_refuse_a_torch_scheduler_even_where_declared():
    """CycleGAN declares itself capturable, but with a float-lr Adam it keeps LambdaLR, whose Python
    float a replay would freeze: check_cuda_graphs refuses that (no CUDA needed to check)."""
    v, _ = _cyclegan()
    with pytest.raises(ConfigError, match="lr schedulers"):
        check_cuda_graphs(v, torch.device("cuda"), 1)
    _tensor_lr_form(v)
    check_cuda_graphs(v, torch.device("cuda"), 1)


def _host_state(v) -> list:
    """Everything on the host a replayed graph could leave stale: Python values, and which tensor
    objects the step reads and writes (a graph keeps the ones it captured)."""
    out = []
    for pool in v.pools.values():
        out += [type(pool._filled), id(pool._filled), id(pool._store), id(pool.generator), pool.size]
    for sched in v.schedulers.values():
        out += [id(sched.steps), sched.start, sched.total, list(sched.base_lrs)]
        out += [id(g["lr"]) for g in sched.optimizer.param_groups]
    return out


def test_the_device_form_step_changes_tensors_only():
    """CycleGAN's CUDA form (tensor schedule, device-counting pools), run on the CPU: after the
    first step, later steps change tensor contents only, never host values or which tensors are
    used, which is what replaying a captured step relies on. The pools swap and the lr decays."""
    v, prep = _cyclegan(steps=8)
    _tensor_lr_form(v)
    for pool in v.pools.values():
        pool.device_count = True
    batch = {k: prep.tensors[k][:2].float() / 127.5 - 1 for k in ("a", "b")}  # pools of 3 fill in step 2
    v.train_step(batch)  # the first step creates the pools' store and device count
    first = _host_state(v)
    for _ in range(7):
        v.train_step(batch)
    assert _host_state(v) == first
    assert all(p.count == 3 for p in v.pools.values())
    assert float(v.optims["g"].param_groups[0]["lr"]) == pytest.approx(2e-4 * linear_decay_factor(8, 2, 8), rel=1e-6)


# --------------------------------------------------------------------------- CUDA only

@pytest.mark.gpu
def test_cuda_cyclegan_uses_the_tensor_schedule_and_device_pools():
    prep = make_prepared("unpaired", n=8, size=16)
    cfg = Config(variant="cyclegan", model={"cyclegan": {**TINY, "pool_size": 3}},
                 train={"steps": 10, "device": "cuda"})
    v = registry.build(cfg, data_spec(prep), torch.device("cuda"))
    assert all(isinstance(s, LinearDecay) for s in v.schedulers.values())
    lr = v.optims["g"].param_groups[0]["lr"]
    assert isinstance(lr, torch.Tensor) and lr.is_cuda
    batch = {k: (prep.tensors[k][:4].float() / 127.5 - 1).cuda() for k in ("a", "b")}
    v.train_step(batch)
    assert len(v.cuda_generators()) == 2 and all(p._filled.is_cuda for p in v.pools.values())


@pytest.mark.gpu
def test_graphed_cyclegan_trains_like_eager(in_tmp):
    """3 eager warm-up steps, then 5 replays of the captured step, against 8 eager steps, with
    the lr decaying from step 2 (decay_start 0.25) and pools of 3 that swap from the second
    step (batch 4): losses, weights, pools and the schedule must agree. Deterministic cuDNN and
    fp32, as in test_speed_options' graph test."""
    prep = make_prepared("unpaired", n=16, size=32)
    common = ["variant=cyclegan", "train.steps=8", "train.log_every=8", "train.batch_size=4", 'train.amp="off"',
              "train.device=cuda", "train.progress=false", "tracking.enabled=false", "train.checkpoint_every=100",
              "model.cyclegan.pool_size=3", "model.cyclegan.decay_start=0.25",
              *(f"model.cyclegan.{k}={v}" for k, v in TINY.items())]
    with torch.backends.cudnn.flags(enabled=True, benchmark=True, deterministic=True):
        eager = train_loop(load_config(None, [*common, "train.out_dir=eager"]), prep)
        graphed = train_loop(load_config(None, [*common, "train.out_dir=graphed", "train.cuda_graphs=true"]), prep)
    a, b = eager.history[-1], graphed.history[-1]
    for k in a:
        assert math.isfinite(b[k]) and b[k] == pytest.approx(a[k], rel=1e-5, abs=1e-6), (k, a, b)
    sa, sb = read_checkpoint(eager.checkpoint)["state"], read_checkpoint(graphed.checkpoint)["state"]
    for net, params in sa["nets"].items():
        for name, t in params.items():
            assert torch.allclose(t, sb["nets"][net][name], rtol=1e-4, atol=1e-6), (net, name)
    for k in ("g", "d"):
        assert sa["schedulers"][k]["last_epoch"] == sb["schedulers"][k]["last_epoch"] == 8
        expected = 2e-4 * linear_decay_factor(8, 2, 8)
        assert float(sb["optims"][k]["param_groups"][0]["lr"]) == pytest.approx(expected, rel=1e-6)
    for k in ("pool_a", "pool_b"):
        pa, pb = sa["extra"][k], sb["extra"][k]
        assert pa["count"] == pb["count"] == 3
        assert torch.allclose(pa["images"], pb["images"], rtol=1e-4, atol=1e-5)
        assert torch.equal(pa["generator"], pb["generator"])  # the graph advanced the pool's draws as eager did
