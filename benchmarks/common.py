"""What the benchmark scripts share: where things are, how their runs are configured, the
DataLoader baseline loop and how results are reported. Every script imports this module and no
other script, so none of them depends on another one's options or internals.

Run every script as a module from the repository root, with ganzoo installed (`pip install -e .`,
as `make install` does); the root is then on sys.path and `benchmarks` is a package:

    .venv/bin/python -m benchmarks.quality --help
    .venv/bin/python -m benchmarks.studies.began_autoencoder --help
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from ganzoo import stages
from ganzoo.config import Config, load_config
from ganzoo.data.images import to_unit_range
from ganzoo.data.prepared import Prepared
from ganzoo.evaluation.metrics import code_class_table, matched_code_accuracy
from ganzoo.nets.blocks import DCGANDiscriminator, DCGANGenerator, init_dcgan_weights
from ganzoo.variants import registry

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "benchmarks" / "out"  # JSON results and the cached evaluation classifier (not versioned)
# The team's MNIST copy beside the checkout: benchmarks never download, so every machine measures
# the same 10,000 test digits.
SHARED_MNIST = REPO.parent / "shared" / "datasets" / "mnist"


def mnist_missing(root: Path) -> str | None:
    """Why MNIST cannot be read from root (torchvision's MNIST/raw layout), or None when it can."""
    if (Path(root) / "MNIST" / "raw").is_dir():
        return None
    return f"MNIST not found under {root}/MNIST/raw"


def resolve_device(name: str) -> torch.device:
    """--device auto: CUDA when there is one, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def machine(device: torch.device) -> dict:
    """What a measurement ran on, stored beside its numbers (a shared machine's load included)."""
    info = {"torch": torch.__version__, "python": platform.python_version(), "cpu_count": os.cpu_count(),
            "threads": torch.get_num_threads(), "loadavg_start": os.getloadavg(),
            "date": time.strftime("%Y-%m-%d %H:%M:%S"), "command": " ".join(sys.argv)}
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    else:
        info["cpu"] = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                            if line.startswith("model name")), platform.processor())
    return info


# --------------------------------------------------------------------------- speed options (--options)

FLAGS = {"amp": "train.amp=bf16", "cl": 'train.channels_last="on"', "compile": "train.compile=true",
         "graphs": "train.cuda_graphs=true"}
PLAIN = ['train.amp="off"', 'train.channels_last="off"', "train.compile=false", "train.cuda_graphs=false"]


def option_overrides(spec: str) -> list[str]:
    """`plain`, `default` or flags joined by `+` (e.g. amp+cl+graphs) as config overrides."""
    if spec == "default":
        return []
    if spec == "plain":
        return list(PLAIN)
    flags = spec.split("+")
    unknown = [f for f in flags if f not in FLAGS]
    if unknown:
        raise SystemExit(f"--options: unknown flag {unknown[0]!r} in {spec!r}; use plain, default or "
                         f"{'+'.join(FLAGS)} combinations")
    return [*PLAIN, *(FLAGS[f] for f in flags)]


# --------------------------------------------------------------------------- the default run and its baseline

def default_run_config(steps: int, out_dir: str | Path, extra: Iterable[str] = ()) -> Config:
    """params.yaml as a user gets it (dcgan on the bundled digits, 32x32), made quiet; its data,
    checkpoints and metrics go to out_dir."""
    return load_config(REPO / "params.yaml", [f"train.steps={steps}", "train.progress=false",
                                               "tracking.enabled=false", "train.checkpoint_every=1000000",
                                               f"train.out_dir={out_dir}/ck", f"train.metrics_dir={out_dir}/m",
                                               f"data.prepared_dir={out_dir}/prepared", *extra])


def run_dataloader_loop(cfg: Config, prep: Prepared, warmup: int, steps: int, device: str = "cpu",
                        log_every: int = 50) -> dict:
    """Train cfg's DCGAN the way the popular public PyTorch GAN scripts do (PyTorch-GAN's dcgan.py
    and its kind) for warmup + steps steps; time the last `steps`. The reference point for
    ganzoo's training speed (`-m benchmarks.throughput --compare-dataloader`):

    - a float TensorDataset read through `DataLoader(shuffle=True)` (a generous version of those
      scripts, which also decode and transform each image in the loader),
    - G trained first with D *not* frozen (D's weight gradients computed and thrown away), then D
      on real and detached fake images,
    - plain `torch.optim.Adam` with its default implementation choice, BCE losses,
    - both losses read with `.item()` every step for logging (a host sync per step on a GPU).

    Only the loop differs from ganzoo's: networks (with their N(0, 0.02) init), widths, batch
    size, optimizer settings and data are the same. BCE on logits is the scripts' Sigmoid +
    BCELoss in its numerically stable form.
    """
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
    batch = cfg.train.batch_size
    loader = DataLoader(TensorDataset(to_unit_range(prep.tensors["x"])), batch_size=batch, shuffle=True,
                        drop_last=True)

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


# --------------------------------------------------------------------------- the quality benchmark's runs

QUALITY_VARIANTS = ["gan", "dcgan", "cgan", "infogan", "wgan", "wgan_gp", "lsgan", "began"]

# Narrow nets: MNIST at 32x32 needs little capacity, and the budget is a shared 2-core CPU.
BENCH_MODEL: dict[str, dict] = {
    "gan": {},  # the MLP's default width is cheap already
    "dcgan": {"ngf": 32, "ndf": 32},
    "cgan": {"ngf": 32, "ndf": 32},
    "infogan": {"ngf": 32, "ndf": 32},
    "wgan": {"ngf": 16, "ndf": 16},  # n_critic 5: five critic updates per step
    "wgan_gp": {"ngf": 16, "ndf": 16},  # ...each with a double backward for the penalty
    "lsgan": {"ngf": 32, "ndf": 32},
    # 3x3 convs at full resolution, so few filters; the paper's embedding size h = z = 64, and the
    # paper's lr halving (every quarter of the default budget). Without the halving, G drifted
    # onto one or two digits as k_t decayed (2/10 at 8000 steps). Wider is not better here:
    # 64 and 128 filters ended all 1s with every seed (H100, benchmarks/RESULTS.md).
    "began": {"n_filters": 16, "h_dim": 64, "z_dim": 64, "lr_halve_every": 2000},
}


def quality_parser(description: str) -> argparse.ArgumentParser:
    """The options that define one quality-benchmark run (quality_config reads all of them);
    quality.py and the studies built on its runs add their own options to this parser."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--steps", type=int, default=8000, help="generator steps per variant (same for all)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--eval-samples", type=int, default=2000)
    p.add_argument("--mnist-root", type=Path, default=SHARED_MNIST)
    p.add_argument("--work", type=Path, default=None, help="folder for data/checkpoints/eval (default: a temp folder)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads; 1 is fastest on a machine other jobs share")
    p.add_argument("--device", default="cpu")
    p.add_argument("--amp", default="bf16", choices=["bf16", "off", "auto"], help="train.amp for every variant")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="extra dotted override for every variant trained, e.g. model.began.gamma=1.0")
    return p


def quality_config(variant: str, args: argparse.Namespace, work: Path, runs: Path | None = None) -> Config:
    """The benchmark's config; data and classifier live in work, checkpoints/metrics/eval in runs."""
    runs = runs or work
    model = [f"model.{variant}.{k}={v}" for k, v in BENCH_MODEL[variant].items()]
    return load_config(None, [
        f"variant={variant}", f"seed={args.seed}",
        "data.source=mnist", f"data.root={args.mnist_root}", f"data.image_size={args.image_size}",
        "data.download=false", f"data.prepared_dir={work / 'data' / 'prepared'}",
        f"train.steps={args.steps}", f"train.batch_size={args.batch_size}", f"train.device={args.device}",
        f"train.threads={args.threads}", f"train.amp={args.amp}", "train.progress=false",
        f"train.log_every={max(1, args.steps // 10)}",
        f"train.checkpoint_every={args.steps}", f"train.out_dir={runs / 'checkpoints'}",
        f"train.metrics_dir={runs / 'metrics'}",
        f"eval.n_samples={args.eval_samples}", f"eval.out_dir={runs / 'eval'}",
        f"eval.classifier_dir={work / 'classifier'}", "tracking.enabled=false", *model,
        # --set model.<other variant>.* would fail validation for this one: keep only its own
        *(o for o in args.overrides if not o.startswith("model.") or o.startswith(f"model.{variant}.")),
    ])


@contextlib.contextmanager
def work_folder(args: argparse.Namespace, prefix: str) -> Iterator[Path]:
    """args.work, or (with no --work) a temporary folder that is removed on exit."""
    with contextlib.ExitStack() as stack:
        if args.work is None:
            args.work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix=prefix)))
        yield args.work


@contextlib.contextmanager
def prepared_work(args: argparse.Namespace, variant: str, classifier: bool = True) -> Iterator[Path]:
    """Prepare MNIST and fit the evaluation classifier (unless `classifier` is False) once in
    args.work (see work_folder), before parallel runs would each do it."""
    with work_folder(args, "ganzoo-quality-") as work:
        cfg = quality_config(variant, args, work)
        stages.prepare(cfg)
        if classifier:
            stages.fit_classifier(cfg)
        yield work


# --------------------------------------------------------------------------- InfoGAN's categorical code

@torch.no_grad()
def infogan_code_scores(checkpoint: Path, classifier: nn.Module, device, per_code: int = 500,
                        seed: int = 1234) -> dict:
    """What InfoGAN's codes do, judged by the evaluation classifier, from a checkpoint alone:
    `matched_accuracy` (per_code samples for each categorical value, one-to-one matched to
    classes), the code x class `table`, and for each continuous code c_j the mean pixel change
    ([0, 1] units) and the share of samples keeping their class when c_j goes from -1 to +1
    with z and the other codes fixed (a code that changes the image without changing the digit)."""
    from ganzoo.evaluation.classifier import predict
    from ganzoo.sampling import generate
    from ganzoo.training.checkpoint import load_variant

    variant, _, _ = load_variant(checkpoint, device=device)
    n_classes = int(classifier.arch["num_classes"])
    codes = torch.arange(variant.n_cat).repeat_interleave(per_code)
    images = torch.cat([generate(variant, per_code, seed=seed + k, codes={"cat": k}) for k in range(variant.n_cat)])
    pred = predict(classifier, images)
    out: dict = {"matched_accuracy": matched_code_accuracy(codes, pred, variant.n_cat, n_classes),
                 "table": code_class_table(codes, pred, variant.n_cat, n_classes).tolist()}
    for j in range(1, variant.n_cont + 1):
        lo = generate(variant, 512, seed=seed, codes={f"c{j}": -1.0})
        hi = generate(variant, 512, seed=seed, codes={f"c{j}": 1.0})
        out[f"c{j}_change"] = float((hi - lo).abs().mean() / 2)
        out[f"c{j}_class_kept"] = float((predict(classifier, lo) == predict(classifier, hi)).float().mean())
    return out


# --------------------------------------------------------------------------- reports

def fmt(value, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def target_misses(results: Iterable[tuple[str, dict]], targets: dict[str, float]) -> list[str]:
    """'name: metric = value < target' for every (name, metrics) below one of the targets."""
    return [f"{name}: {key} = {metrics[key]:.3f} < {target}"
            for name, metrics in results for key, target in targets.items()
            if metrics.get(key) is not None and metrics[key] < target]


def write_json(path: Path, data: dict) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n")


def keep_sheet(sheet: Path, sheets: Path, variant: str) -> None:
    """Copy an evaluation's sample sheet to sheets/<variant>.png (docs/img: the README's gallery)."""
    if sheet.exists():
        sheets.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(sheet, sheets / f"{variant}.png")


def report(args: argparse.Namespace, result: dict, table: str) -> None:
    """Write result to args.out and print the markdown table, the wall time and the targets missed."""
    write_json(args.out, result)
    print(table)
    print(f"\nwall time {result['wall_s'] / 60:.1f} min; JSON: {args.out}; sheets: {args.sheets}/")
    misses = result["target_misses"]
    print("targets: all met" if not misses else "targets missed:\n  " + "\n  ".join(misses))
