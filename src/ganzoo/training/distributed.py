"""Data-parallel training over several processes (`torchrun --nproc_per_node N -m ganzoo train`).

Each rank holds a full copy of every network, draws its own batch from its own shard of the
data (`DeviceBatches` with rank/world_size) and its own noise (seeded seed + rank), and right
before every optimizer step the gradients of that optimizer's parameters are averaged over
the ranks, in one flat all-reduce. Every rank then applies the same update to the same weights,
so the networks stay identical without ever being re-sent. That is what DistributedDataParallel
computes, done at the optimizer instead of inside backward, because GAN steps break DDP's
assumptions:

- a step calls D several times before one backward (real, fake) and calls D's sub-modules
  directly (InfoGAN's `d.features` / `d.head`), which DDP's forward hook does not see;
- `Variant.frozen` switches D's requires_grad off during the G step: DDP would wait for
  gradients that never come (or, with find_unused_parameters, write zeros into D's .grad);
- WGAN-GP differentiates through the critic twice (create_graph), which DDP does not support;
- DDP wraps modules, so checkpoint keys would gain a `module.` prefix.

Averaging at `optimizer.step` has none of those problems and costs one collective per optimizer
step (DDP overlaps its buckets with backward; for GAN-sized networks one bucket is what DDP
would use anyway). With equal per-rank batches and mean losses, the average of the per-rank
gradients is the gradient of the global batch: B per rank x N ranks trains like one process
with batch N x B (exactly so with sync batch norm, or without batch norm).

Global batch = train.batch_size x WORLD_SIZE; images/s and losses are reported for all ranks.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch._utils import _flatten_dense_tensors, _unflatten_dense_tensors

from ganzoo.errors import ConfigError


@dataclass
class DistContext:
    rank: int
    world: int
    owns_group: bool  # True when this module created the process group (and so destroys it)

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def env_rank_world() -> tuple[int, int]:
    """(rank, world_size) from torchrun's environment; (0, 1) for a single process."""
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


def rank_device(device: torch.device) -> torch.device:
    """Under torchrun, a bare `cuda` means this process's GPU: cuda:LOCAL_RANK."""
    if device.type == "cuda" and device.index is None:
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return device


def setup(device: torch.device) -> DistContext:
    """Join the process group torchrun described (nccl on CUDA, gloo on CPU); a no-op for one process."""
    rank, world = env_rank_world()
    if world <= 1:
        return DistContext(0, 1, owns_group=False)
    if not dist.is_available():
        raise ConfigError("WORLD_SIZE > 1 but this torch build has no torch.distributed; run a single process")
    if dist.is_initialized():
        return DistContext(dist.get_rank(), dist.get_world_size(), owns_group=False)
    missing = [k for k in ("MASTER_ADDR", "MASTER_PORT") if k not in os.environ]
    if missing:
        raise ConfigError(f"WORLD_SIZE={world} but {', '.join(missing)} is not set; launch with "
                          f"`torchrun --nproc_per_node N -m ganzoo train` or `ganzoo train --nproc N`")
    if device.type == "cuda":
        if device.index >= torch.cuda.device_count():
            raise ConfigError(f"rank {rank} wants {device} but only {torch.cuda.device_count()} GPU(s) are visible; "
                              f"start at most that many processes per node")
        torch.cuda.set_device(device)
        dist.init_process_group("nccl", device_id=device)
    else:
        dist.init_process_group("gloo")
    return DistContext(dist.get_rank(), dist.get_world_size(), owns_group=True)


def teardown(ctx: DistContext) -> None:
    if ctx.owns_group and dist.is_initialized():
        dist.destroy_process_group()


def convert_sync_batchnorm(nets: dict[str, nn.Module], device: torch.device, world: int) -> None:
    """BatchNorm statistics over the global batch instead of each rank's share (in place).
    One process already sees the whole batch, so there it changes nothing and is skipped."""
    if world <= 1:
        return
    if device.type != "cuda":
        raise ConfigError("train.sync_batchnorm needs CUDA (torch's SyncBatchNorm has no CPU kernel); "
                          "set train.sync_batchnorm=false for CPU runs")
    for name, net in nets.items():
        converted = nn.SyncBatchNorm.convert_sync_batchnorm(net)
        if converted is not net:  # only when the net itself is a BatchNorm layer
            nets[name] = converted


def broadcast_state(nets: dict[str, nn.Module]) -> None:
    """Start every rank from rank 0's weights and buffers (ranks are seeded differently)."""
    for net in nets.values():
        for t in [*net.parameters(), *net.buffers()]:
            dist.broadcast(t.data, src=0)


def _average_grads_hook(world: int):
    def hook(optimizer: torch.optim.Optimizer, args, kwargs) -> None:
        # Which parameters have a gradient depends only on the code path, which is the same on
        # every rank, so every rank flattens the same list in the same order.
        grads = [p.grad for g in optimizer.param_groups for p in g["params"] if p.grad is not None]
        if not grads:
            return
        by_dtype: dict[torch.dtype, list[torch.Tensor]] = {}
        for gr in grads:
            by_dtype.setdefault(gr.dtype, []).append(gr)
        for same in by_dtype.values():
            flat = _flatten_dense_tensors(same)
            dist.all_reduce(flat)  # SUM: gloo has no AVG
            flat.div_(world)
            for gr, avg in zip(same, _unflatten_dense_tensors(flat, same), strict=True):
                gr.copy_(avg)
    return hook


def average_gradients_at_step(optims: dict[str, torch.optim.Optimizer], world: int) -> list:
    """Register the gradient-averaging pre-hook on every optimizer; returns the hook handles."""
    return [opt.register_step_pre_hook(_average_grads_hook(world)) for opt in optims.values()]


def mean_over_ranks(t: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    """Average a tensor over the ranks (losses for logging: the global batch's mean)."""
    if ctx.world <= 1:
        return t
    t = t.clone()
    dist.all_reduce(t)
    return t.div_(ctx.world)


def gather_objects(obj, ctx: DistContext) -> list:
    """Every rank's `obj` (small: sampler and RNG states), in rank order; [obj] for one process."""
    if ctx.world <= 1:
        return [obj]
    out = [None] * ctx.world
    dist.all_gather_object(out, obj)
    return out


def launch(nproc: int, module_args: list[str], device: str = "auto") -> int:
    """`ganzoo train --nproc N`: run `python -m ganzoo <module_args>` in N processes through
    torch.distributed.run (what `torchrun --standalone --nproc_per_node N -m ganzoo ...` does,
    with a free rendezvous port). Returns the first failing worker's exit code, else 0."""
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import get_args_parser, run

    if device != "cpu" and torch.cuda.is_available() and nproc > torch.cuda.device_count():
        raise ConfigError(f"--nproc {nproc} but only {torch.cuda.device_count()} GPU(s) are visible; "
                          f"use --nproc {torch.cuda.device_count()} or fewer")
    args = get_args_parser().parse_args(["--standalone", f"--nproc_per_node={nproc}", "-m", "ganzoo", *module_args])
    try:
        run(args)
    except ChildFailedError as err:
        codes = [f.exitcode for _, f in sorted(err.failures.items())]
        return next((c for c in codes if c), 1)
    return 0
