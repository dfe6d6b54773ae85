"""Device, precision and step-speed plumbing shared by training, evaluation and sampling:
device choice, bf16 autocast, channels_last, RNG state, `train.compile` and `train.cuda_graphs`."""

from __future__ import annotations

import os
import random
from collections.abc import Callable
from contextlib import nullcontext

import torch

from ganzoo.errors import ConfigError


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            rank = int(os.environ.get("LOCAL_RANK", "0"))
            return torch.device(f"cuda:{rank}")
        return torch.device("cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"train.device = {name!r} but no CUDA device is visible; use train.device=cpu or auto")
    if name == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("train.device = 'mps' but MPS is not available; use train.device=cpu or auto")
    return torch.device(name)


def autocast_context(device: torch.device, amp: str, cache_enabled: bool = True):
    """bf16 autocast on CUDA by default (no GradScaler needed, unlike fp16); fp32 on CPU, where
    bf16 matmuls are slower on most machines and would change the numbers tests pin down.
    cache_enabled=False is required inside CUDA graph capture (cached casts would be stale)."""
    use = amp == "bf16" or (amp == "auto" and device.type == "cuda")
    if not use:
        return nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, cache_enabled=cache_enabled)


def use_channels_last(device: torch.device, setting: str, nets=None) -> bool:
    """auto: channels_last whenever the networks have convolutions, on CUDA (tensor-core
    kernels are NHWC) and on CPU too (oneDNN prefers NHWC: faster steps for most conv variants,
    see benchmarks/RESULTS.md). MLP-only variants stay NCHW."""
    if setting != "auto":
        return setting == "on"
    if nets is None:
        return device.type == "cuda"
    convs = (torch.nn.Conv2d, torch.nn.ConvTranspose2d)
    return any(isinstance(m, convs) for net in nets.values() for m in net.modules())


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device


def rng_state(device: torch.device | None = None) -> dict:
    """Global RNG state. On CUDA only the training device's generator is saved (not every visible
    GPU's), so each DDP rank saves and restores exactly the stream it draws from."""
    state = {"torch": torch.get_rng_state(), "python": list(random.getstate()[1])}
    if device is not None and device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    elif device is None and torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict, device: torch.device | None = None) -> None:
    torch.set_rng_state(state["torch"])
    py = random.getstate()
    random.setstate((py[0], tuple(state["python"]), py[2]))
    if "cuda" in state and torch.cuda.is_available():
        if isinstance(state["cuda"], (list, tuple)):  # every device's state
            torch.cuda.set_rng_state_all(state["cuda"])
        elif device is not None and device.type == "cuda":
            torch.cuda.set_rng_state(state["cuda"], device)


# --------------------------------------------------------------------------- train.compile

def compile_nets(variant) -> list[str]:
    """torch.compile each network's forward in place (`nn.Module.compile`): the variant keeps
    calling `self.nets[...]`, and state_dict keys stay those of the plain modules, so checkpoints
    are the same with and without compile. Nets a variant differentiates twice (WGAN-GP's
    critic, through the gradient penalty) stay eager: compiled autograd has no double backward.
    Returns the names of the compiled nets."""
    skip = set(variant.double_backward_nets)
    done = []
    for name, net in variant.nets.items():
        if name not in skip:
            net.compile()
            done.append(name)
    return done


# --------------------------------------------------------------------------- train.cuda_graphs

def cuda_graph_blocker(variant) -> str | None:
    """Why `variant.train_step` cannot be replayed as one captured CUDA graph, or None.

    A graph replays the kernels of one captured step with the Python of that step frozen: any
    per-step decision on the host or state re-bound to new tensors each step would be replayed
    stale. A variant can declare `supports_cuda_graphs = True/False`; otherwise a variant with
    learning-rate schedulers (host-side lr each step) or extra_state (BEGAN's re-bound k_t) is
    refused. CycleGAN declares True: its schedule and image pools run on the device."""
    declared = variant.supports_cuda_graphs
    if declared is not None:
        return None if declared else "it declares supports_cuda_graphs = False"
    if variant.schedulers:
        return "its learning rates change on the host every step (lr schedulers)"
    extra = variant.extra_state()
    if extra:
        return f"its step updates host-side or re-bound state ({', '.join(sorted(extra))})"
    return None


def check_cuda_graphs(variant, device: torch.device, world: int) -> None:
    if device.type != "cuda":
        raise ConfigError("train.cuda_graphs needs CUDA; set train.cuda_graphs=false")
    if world > 1:
        raise ConfigError("train.cuda_graphs is single-process only (collectives are not captured); "
                          "set train.cuda_graphs=false for multi-GPU runs")
    why = cuda_graph_blocker(variant)
    if why is None and any(isinstance(s, torch.optim.lr_scheduler.LRScheduler) for s in variant.schedulers.values()):
        # Even where a variant declares itself capturable: a torch scheduler writes a Python float lr,
        # which a replay would keep at its captured value (CycleGAN without a tensor-lr Adam).
        why = "its learning rates change on the host every step (lr schedulers)"
    if why is not None:
        raise ConfigError(f"train.cuda_graphs: variant {variant.name!r} cannot be captured as one CUDA graph: "
                          f"{why}; set train.cuda_graphs=false")


def _make_capturable(optims: dict) -> None:
    """Optimizers keep their step counters on the device and skip host-side checks when
    `capturable`; existing counters (after a resume) are moved there too."""
    for name, opt in optims.items():
        if "capturable" not in opt.defaults:
            raise ConfigError(f"train.cuda_graphs: optimizer {name!r} ({type(opt).__name__}) cannot be "
                              f"captured; set train.cuda_graphs=false")
        for group in opt.param_groups:
            group["capturable"] = True
            for p in group["params"]:
                step = opt.state.get(p, {}).get("step")
                if isinstance(step, torch.Tensor) and step.device != p.device:
                    opt.state[p]["step"] = step.to(p.device, torch.float32)


class CudaGraphStep:
    """One whole train_step (D and G forward, backward and optimizer steps) captured once and
    replayed: a step costs one graph launch instead of hundreds of kernel launches.

    The first `warmup` calls run eagerly on a side stream (optimizer state, cuDNN plans and
    compiled kernels are created there, outside the capture); the next call copies its batch into
    static buffers, captures, and replays; later calls copy the batch in and replay. Returned
    losses are the graph's static outputs: read them (the loop adds them to its accumulators)
    before the next call overwrites them."""

    def __init__(self, variant, device: torch.device, amp: str, warmup: int = 3):
        self.variant = variant
        self.amp = lambda: autocast_context(device, amp, cache_enabled=False)
        self.warmup = warmup
        self.calls = 0
        self.graph: torch.cuda.CUDAGraph | None = None
        self.static_batch: dict[str, torch.Tensor] = {}
        self.static_out: dict[str, torch.Tensor] = {}
        self.side = torch.cuda.Stream(device)
        _make_capturable(variant.optims)

    def __call__(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        self.calls += 1
        if self.graph is None and self.calls <= self.warmup:
            self.side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(self.side), self.amp():
                out = self.variant.train_step(batch)
            torch.cuda.current_stream().wait_stream(self.side)
            return out
        if self.graph is None:
            self.static_batch = {k: v.clone() for k, v in batch.items()}
            self.graph = torch.cuda.CUDAGraph()
            for gen in self.variant.cuda_generators():  # their draws advance per replay, as eagerly
                self.graph.register_generator_state(gen)
            # thread_local: the streaming sampler's reader thread may pin host memory while this
            # thread captures, which the default global mode turns into a capture error (its
            # host allocator queries events); this thread is checked as strictly as before.
            with torch.cuda.graph(self.graph, capture_error_mode="thread_local"), self.amp():
                self.static_out = self.variant.train_step(self.static_batch)
        else:
            for k, v in batch.items():
                self.static_batch[k].copy_(v)
        self.graph.replay()
        return self.static_out


def make_train_step(variant, device: torch.device, train_cfg, world: int = 1) -> Callable:
    """The callable the loop runs each step: eager under autocast, with the networks compiled
    (train.compile) and/or the whole step captured as a CUDA graph (train.cuda_graphs)."""
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # shapes are fixed for the whole run: autotune once
    if train_cfg.cuda_graphs:
        check_cuda_graphs(variant, device, world)
    if train_cfg.compile:
        compile_nets(variant)
    if train_cfg.cuda_graphs:
        return CudaGraphStep(variant, device, train_cfg.amp)
    amp = autocast_context(device, train_cfg.amp)

    def step(batch):
        with amp:
            return variant.train_step(batch)
    return step
