"""How fast BEGAN's discriminator learns to auto-encode MNIST on its own, per learning rate.

BEGAN's generator chases whatever D's auto-encoder rebuilds well, so while D still outputs a
blurred mean digit for every input, G collapses onto that blur. This trains the benchmark's D
(the quality benchmark's widths, data, batch and precision) as a plain auto-encoder, with no
generator, and prints its reconstruction error L(x) every --every steps for each rate in --lrs:
how long D sits on that plateau at the paper's rate (1e-4) with narrow nets, and whether
Glorot initialisation (TensorFlow's default, hence the reference implementation's) gets it off.
Results: benchmarks/RESULTS.md, "BEGAN on MNIST".

    .venv/bin/python -m benchmarks.studies.began_autoencoder --lrs 1e-4 1e-3 --steps 1500
    .venv/bin/python -m benchmarks.studies.began_autoencoder --lrs 1e-4 --init glorot --set model.began.n_filters=64
"""

from __future__ import annotations

import sys

import torch

from benchmarks import common
from ganzoo import stages
from ganzoo.data.images import to_unit_range
from ganzoo.nets.autoencoder import reconstruction_error
from ganzoo.training.loop import data_spec
from ganzoo.variants import registry

INITS = {"default": None, "glorot": torch.nn.init.xavier_uniform_,
         "kaiming": lambda w: torch.nn.init.kaiming_normal_(w, nonlinearity="relu")}


def curve(cfg, prep, steps: int, every: int, seed: int, bf16: bool, init: str) -> list[float]:
    """L(x) of D trained alone on the data, every `every` steps (its own optimizer, as in BEGAN)."""
    torch.manual_seed(seed)
    variant = registry.build(cfg, data_spec(prep), "cpu")
    x = to_unit_range(prep.tensors["x"])
    d, opt = variant.nets["d"], variant.optims["d"]
    if INITS[init] is not None:  # re-drawn in place: the optimizer keeps the same tensors
        for m in d.modules():
            if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)):
                INITS[init](m.weight)
                torch.nn.init.zeros_(m.bias)
    pick = torch.Generator().manual_seed(seed)
    out = []
    for step in range(1, steps + 1):
        batch = x[torch.randint(len(x), (cfg.train.batch_size,), generator=pick)]
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = reconstruction_error(d, batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % every == 0:
            out.append(loss.item())
    return out


def main(argv=None) -> int:
    p = common.quality_parser(__doc__.split("\n\n")[0])
    p.add_argument("--lrs", type=float, nargs="+", default=[1e-4, 1e-3], help="D's learning rates")
    p.add_argument("--every", type=int, default=250, help="steps between reported errors")
    p.add_argument("--init", choices=sorted(INITS), default="default",
                   help="D's weight init: PyTorch's default, Glorot uniform, or Kaiming normal (ReLU gain)")
    p.set_defaults(steps=1500)  # D's plateau shows within 1500 steps; a GAN run's 8000 are not needed
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    if missing := common.mnist_missing(args.mnist_root):
        print(f"{missing}; pass --mnist-root", file=sys.stderr)
        return 2
    with common.prepared_work(args, "began", classifier=False):
        prep, overrides = stages.load_data(common.quality_config("began", args, args.work)), list(args.overrides)
        print("| D's lr | " + " | ".join(f"{s}" for s in range(args.every, args.steps + 1, args.every)) + " |")
        print("| ---: |" + " ---: |" * (args.steps // args.every))
        for lr in args.lrs:
            args.overrides = [*overrides, f"train.lr_d={lr}"]
            errors = curve(common.quality_config("began", args, args.work), prep, args.steps,
                           args.every, args.seed, args.amp == "bf16", args.init)
            print(f"| {lr:g} | " + " | ".join(f"{e:.3f}" for e in errors) + " |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
