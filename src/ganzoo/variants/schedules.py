"""CycleGAN's learning-rate schedule (constant, then linear decay to 0) in two forms with the same
values: torch's LambdaLR with a float lr, and `LinearDecay`, which a captured CUDA graph can replay.

A torch LRScheduler writes a Python float into each param group at every step. A CUDA graph
replays kernels, not Python, so a step that includes that write would replay the lr of the step
it was captured at: such a variant cannot be captured. `LinearDecay` keeps the step count and each
group's lr as tensors on the training device and advances them with tensor ops, which the graph
records like any other kernel, so every replay moves the lr exactly as an eager step does. Adam
reads a tensor lr only when fused or capturable (its foreach form refuses one), so the tensor form
is used on CUDA with ganzoo's fused Adam; elsewhere (the CPU, the benchmarks' reference Adam) the
float form keeps the numbers as they were.

`LinearDecay.state_dict()` has LambdaLR's keys and `load_state_dict` reads LambdaLR's, so a
checkpoint written by either form resumes in the other (e.g. a GPU run continued on the CPU).
"""

from __future__ import annotations

import torch


def linear_decay_factor(step: int, start: int, total: int) -> float:
    """Paper: 1 - max(0, epoch - n_epochs) / (n_epochs_decay + 1), per step here."""
    return 1.0 - max(0, step - start) / float(total - start + 1)


def takes_tensor_lr(opt: torch.optim.Optimizer) -> bool:
    """Whether `opt` accepts a device tensor as its lr (fused or capturable Adam on CUDA)."""
    return bool(opt.defaults.get("fused") or opt.defaults.get("capturable"))


def lambda_decay(opt: torch.optim.Optimizer, start: int, total: int) -> torch.optim.lr_scheduler.LambdaLR:
    """The float form: torch's LambdaLR."""
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda s: linear_decay_factor(s, start, total))


class LinearDecay:
    """The tensor form: lr = base * factor(step) computed on the device, one step per `step()`."""

    def __init__(self, opt: torch.optim.Optimizer, start: int, total: int, device: torch.device):
        self.optimizer, self.start, self.total = opt, start, total
        self.base_lrs = [float(g["lr"]) for g in opt.param_groups]
        self.steps = torch.zeros((), dtype=torch.float64, device=device)  # exact far beyond any run length
        for group, base in zip(opt.param_groups, self.base_lrs, strict=True):
            group["lr"] = torch.tensor(base, dtype=torch.float32, device=device)

    def _write(self) -> None:
        """Each group's lr <- base * factor(steps), in place: a captured graph keeps the same tensors."""
        factor = 1.0 - (self.steps - self.start).clamp(min=0) / float(self.total - self.start + 1)
        for group, base in zip(self.optimizer.param_groups, self.base_lrs, strict=True):
            group["lr"].copy_(factor * base)

    def step(self) -> None:
        self.steps.add_(1)
        self._write()

    def get_last_lr(self) -> list[float]:
        return [float(g["lr"]) for g in self.optimizer.param_groups]  # reads the device: not per step

    def state_dict(self) -> dict:
        last = int(self.steps.item())  # a host sync, at checkpoints only
        lrs = [b * linear_decay_factor(last, self.start, self.total) for b in self.base_lrs]
        return {"base_lrs": list(self.base_lrs), "last_epoch": last, "_step_count": last + 1, "_last_lr": lrs,
                "_get_lr_called_within_step": False, "lr_lambdas": [None] * len(self.base_lrs)}

    def load_state_dict(self, state: dict) -> None:
        self.base_lrs = [float(b) for b in state["base_lrs"]]
        self.steps.fill_(float(state["last_epoch"]))
        for group in self.optimizer.param_groups:  # a loaded optimizer state may carry a float lr
            if not isinstance(group["lr"], torch.Tensor) or group["lr"].device != self.steps.device:
                group["lr"] = torch.tensor(float(group["lr"]), dtype=torch.float32, device=self.steps.device)
        self._write()


def float_lrs(opt: torch.optim.Optimizer) -> None:
    """A tensor lr loaded from a CUDA run's optimizer state, back to the float the float form writes."""
    for group in opt.param_groups:
        if isinstance(group["lr"], torch.Tensor):
            group["lr"] = float(group["lr"])
