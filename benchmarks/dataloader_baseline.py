"""The reference point for ganzoo's training speed: the same DCGAN networks trained the way the
popular public PyTorch GAN scripts do it (PyTorch-GAN's dcgan.py and its kind):

- the dataset is a float TensorDataset read through `DataLoader(shuffle=True)` (a generous
  version of those scripts, which also decode and transform each image in the loader),
- each step trains G first with D *not* frozen (D's weight gradients are computed and thrown
  away), then D on real and detached fake images,
- plain `torch.optim.Adam` with its default implementation choice, BCE losses,
- both losses read with `.item()` every step for logging (a host sync per step on a GPU).

Only the loop differs from ganzoo's: the networks (`DCGANGenerator` / `DCGANDiscriminator`, with
their N(0, 0.02) init), widths, batch size, optimizer settings and data are the same. BCE on
logits (`BCEWithLogitsLoss`) is the scripts' Sigmoid + BCELoss in its numerically stable form.

    .venv/bin/python benchmarks/dataloader_baseline.py              # params.yaml defaults (dcgan, digits 32x32)
    .venv/bin/python benchmarks/throughput.py --compare-dataloader  # this vs `ganzoo train`, with the ratio
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

import torch  # noqa: E402
from torch import nn  # noqa: E402
from torch.utils.data import DataLoader, TensorDataset  # noqa: E402

from ganzoo.config import Config  # noqa: E402
from ganzoo.data.prepared import Prepared, to_unit_range  # noqa: E402
from ganzoo.nets.blocks import DCGANDiscriminator, DCGANGenerator, init_dcgan_weights  # noqa: E402
from ganzoo.variants import registry  # noqa: E402


def run_dataloader_loop(cfg: Config, prep: Prepared, warmup: int, steps: int, device: str = "cpu",
                        log_every: int = 50) -> dict:
    """Train cfg's DCGAN with a DataLoader loop for warmup + steps steps; time the last `steps`."""
    cfg = registry.resolve(cfg)
    if cfg.variant != "dcgan":
        raise SystemExit(f"the DataLoader baseline reimplements dcgan only, not {cfg.variant!r}")
    hp = registry.hparams(cfg)
    torch.manual_seed(cfg.seed)
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    c, s, _ = prep.image_shape
    g = DCGANGenerator(hp.z_dim, s, c, hp.ngf).to(device)
    d = DCGANDiscriminator(s, c, hp.ndf).to(device)
    for net in (g, d):
        init_dcgan_weights(net)
    opt_g = torch.optim.Adam(g.parameters(), lr=hp.lr, betas=tuple(hp.betas))
    opt_d = torch.optim.Adam(d.parameters(), lr=hp.lr, betas=tuple(hp.betas))
    bce = nn.BCEWithLogitsLoss()
    data = TensorDataset(to_unit_range(prep.tensors["x"]))
    loader = DataLoader(data, batch_size=cfg.train.batch_size, shuffle=True, drop_last=True)

    batch = cfg.train.batch_size
    done, t_start, sums = 0, None, [0.0, 0.0]
    while done < warmup + steps:
        for (imgs,) in loader:
            imgs = imgs.to(device)
            valid = torch.ones(imgs.shape[0], device=device)
            fake = torch.zeros(imgs.shape[0], device=device)
            opt_g.zero_grad()
            gen = g(torch.randn(imgs.shape[0], hp.z_dim, device=device))
            g_loss = bce(d(gen), valid)
            g_loss.backward()
            opt_g.step()
            opt_d.zero_grad()
            d_loss = (bce(d(imgs), valid) + bce(d(gen.detach()), fake)) / 2
            d_loss.backward()
            opt_d.step()
            sums[0] += d_loss.item()  # what the public scripts print every batch
            sums[1] += g_loss.item()
            done += 1
            if done % log_every == 0:
                sums = [0.0, 0.0]
            if done == warmup:
                if device.startswith("cuda"):
                    torch.cuda.synchronize()
                t_start = time.perf_counter()
            if done == warmup + steps:
                break
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t_start
    return {"images_per_s": steps * batch / seconds, "ms_per_step": 1000 * seconds / steps, "steps": steps,
            "batch_size": batch, "loader": "TensorDataset + DataLoader(shuffle=True), .item() per step"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--warmup", type=int, default=50)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    from throughput import default_run_config, prepare_default_data

    cfg = default_run_config(steps=args.warmup + args.steps, out_dir=None)
    prep = prepare_default_data(cfg)
    r = run_dataloader_loop(cfg, prep, args.warmup, args.steps, args.device)
    print(f"DataLoader loop, dcgan on {cfg.data.source} {cfg.data.image_size}px, batch {r['batch_size']}: "
          f"{r['images_per_s']:,.0f} images/s ({r['ms_per_step']:.1f} ms/step)")


if __name__ == "__main__":
    main()
