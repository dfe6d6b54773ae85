"""The reference point for ganzoo's training speed on its own: params.yaml's DCGAN trained the way
the popular public PyTorch GAN scripts do it (TensorDataset + `DataLoader(shuffle=True)`, G step
without freezing D, `.item()` on both losses every step; the loop and what it copies are
described in common.run_dataloader_loop, which `throughput --compare-dataloader` runs against
`ganzoo train`). Results: benchmarks/RESULTS.md, "The default run vs a public-script DataLoader
loop".

    .venv/bin/python -m benchmarks.studies.dataloader_baseline             # params.yaml defaults (dcgan, digits 32x32)
    .venv/bin/python -m benchmarks.throughput --compare-dataloader         # this vs `ganzoo train`, with the ratio
"""

from __future__ import annotations

import argparse
import tempfile

from benchmarks import common
from ganzoo import stages
from ganzoo.variants import registry


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--warmup", type=int, default=50)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="ganzoo-bench-") as workdir:
        cfg = common.default_run_config(args.warmup + args.steps, workdir)
        prep = stages.prepare(cfg)
        r = common.run_dataloader_loop(cfg, prep, args.warmup, args.steps, args.device)
    data = registry.resolve(cfg).data  # data.source=auto -> the variant's embedded dataset
    print(f"DataLoader loop, dcgan on {data.source} {data.image_size}px, batch {r['batch_size']}: "
          f"{r['images_per_s']:,.0f} images/s ({r['ms_per_step']:.1f} ms/step)")


if __name__ == "__main__":
    main()
