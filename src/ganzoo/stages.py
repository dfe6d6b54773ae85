"""The pipeline's stages as plain functions: prepare, classifier, train, evaluate, register, sample,
translate. The CLI, `dvc.yaml` and the Prefect flows all call these and add no logic of their own.

Each stage resolves its Config once (the variant's defaults filled in, data.source=auto replaced)
and hands the resolved config down; `RunPaths` names every file a run writes.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path

from ganzoo import sampling
from ganzoo.config import Config
from ganzoo.data.prepared import Prepared, load_prepared, prepared_path
from ganzoo.errors import ConfigError
from ganzoo.files import atomic_write_text
from ganzoo.paths import RunPaths
from ganzoo.variants import registry


def prepare(cfg: Config) -> Prepared:
    """Source -> `data/prepared/<source>-<size>/` (one .npy per array + manifest.json)."""
    from ganzoo.data.prepare import prepare_data

    cfg = registry.resolve(cfg)  # data.source=auto -> the variant's default dataset
    return prepare_data(cfg.data, batch_size=cfg.train.batch_size)


def prepare_all(cfg: Config) -> list[Prepared]:
    """prepare() for data.source as every variant reads it: with data.source=auto, each variant's
    embedded default (digits, digits_paired, digits_unpaired: small, offline), else the one source.
    What `dvc.yaml` runs, so that its prepare stage depends on `data` alone and switching
    `variant` finds its data already there instead of re-running prepare."""
    done: dict[Path, Prepared] = {}
    for name in registry.names():
        resolved = registry.resolve(cfg.model_copy(update={"variant": name}))
        key = prepared_path(resolved.data)
        if key not in done:
            done[key] = prepare(resolved)
    return list(done.values())


def load_data(cfg: Config) -> Prepared:
    return load_prepared(prepared_path(registry.resolve(cfg).data))


def train(cfg: Config, resume: str = "no", track: bool | None = None, hooks: Sequence = ()):
    """Train cfg.variant on the prepared data; returns a TrainResult (checkpoint path, history).
    hooks: more observers of the loop (`ganzoo.training.hooks.Hooks`), e.g. a flow's logger; typed
    loosely so that this module does not import ganzoo.training at its top, which would make every
    dvc.yaml stage (prepare included) depend on the training code."""
    from ganzoo.training.distributed import env_rank_world
    from ganzoo.training.loop import train_loop

    cfg = registry.resolve(cfg)
    prep = load_data(cfg)
    observers = list(hooks)
    rank0 = env_rank_world()[0] == 0
    tracker = _tracker(cfg, track) if rank0 else None  # one MLflow run, from rank 0
    if tracker is not None:
        observers.append(tracker.training_hooks())
    monitor = None
    if rank0:
        from ganzoo.evaluation.monitor import build_monitor
        from ganzoo.training.device import resolve_device
        from ganzoo.training.loop import check_outputs

        check_outputs(cfg)  # an unwritable output fails now, not after the monitor's classifier is trained

        monitor, what = build_monitor(cfg, prep, resolve_device(cfg.train.device))
        if monitor is None or cfg.train.progress:  # why it is off always; what it measures with the progress
            print(f"[ganzoo] {what}", file=sys.stderr, flush=True)
    try:
        return train_loop(cfg, prep, resume=resume, hooks=observers, monitor=monitor)
    finally:
        if tracker is not None:
            tracker.close()


def _tracker(cfg: Config, track: bool | None):
    if not (cfg.tracking.enabled if track is None else track):
        return None
    from ganzoo.tracking import open_tracker

    return open_tracker(cfg)


def fit_classifier(cfg: Config) -> dict:
    """Train (or load from its cache) the evaluation networks on the prepared real data: the
    classifier, or the rotation net for unlabelled data (eval.features) -> path, accuracy, space."""
    from ganzoo.evaluation.features import fit_feature_space
    from ganzoo.training.device import resolve_device

    cfg = registry.resolve(cfg)
    return fit_feature_space(load_data(cfg), cfg.eval, resolve_device(cfg.train.device))


def checkpoint_path(cfg: Config, which: str | Path | None = None) -> Path:
    """`--checkpoint`: a path, `last`, `best`, or None/`auto`: best.pt when the monitor kept one for
    the run that wrote last.pt, else last.pt."""
    from ganzoo.training.checkpoint import read_checkpoint

    paths = RunPaths.of(cfg)
    if which not in (None, "auto", "last", "best"):
        return Path(which)
    if which == "last":
        return paths.last
    if which == "best":
        if not paths.best.exists():
            raise ConfigError(f"no {paths.best}: best.pt is written by the training monitor (monitor.eval_every > 0 "
                              f"and monitor.keep_best); train with it on, or pass --checkpoint last")
        return paths.best
    if paths.best.exists() and paths.last.exists():
        best, last = read_checkpoint(paths.best), read_checkpoint(paths.last)
        if best["config"] == last["config"] and best["step"] <= last["step"]:  # not a stale best of another run
            return paths.best
    return paths.last


def evaluate(cfg: Config, checkpoint: str | Path | None = None, track: bool | None = None) -> dict:
    """Metrics + sample sheets for a trained checkpoint -> `<eval.out_dir>/<variant>/metrics.json`."""
    from ganzoo.evaluation.run import evaluate_checkpoint

    cfg = registry.resolve(cfg)
    paths = RunPaths.of(cfg)
    ckpt = checkpoint_path(cfg, checkpoint)
    print(f"[ganzoo] evaluating {ckpt}", file=sys.stderr, flush=True)
    metrics = evaluate_checkpoint(cfg, ckpt)
    tracker = _tracker(cfg, track)
    if tracker is not None:
        try:
            tracker.log_evaluation(ckpt, metrics, paths.eval_dir)
        finally:
            tracker.close()
    return metrics


def evaluate_seeds(cfg: Config, checkpoints: list[str | Path], track: bool | None = None) -> dict:
    """Several checkpoints of one config (e.g. training seeds): each evaluated into
    `<eval.out_dir>/<variant>/seeds/<i>/`, aggregated into `seeds/aggregate.json` (mean, std and
    interval per metric) -> the aggregate."""
    from ganzoo.evaluation.run import evaluate_checkpoints

    cfg = registry.resolve(cfg)
    results, summary = evaluate_checkpoints(cfg, [Path(c) for c in checkpoints])
    tracker = _tracker(cfg, track)
    if tracker is not None:
        try:
            for i, (ckpt, metrics) in enumerate(zip(checkpoints, results, strict=True)):
                tracker.log_evaluation(Path(ckpt), metrics, RunPaths.of(cfg).eval_dir / "seeds" / str(i))
        finally:
            tracker.close()
    return summary


# metrics.json keys that describe how an evaluation ran, not how good the model is.
EVAL_SETTINGS = frozenset({"step", "n_samples", "eval_seed", "feature_dim"})


def scores(metrics: dict) -> dict[str, float]:
    """The numbers that judge the model: metrics.json without its settings (step, sample count,
    seed, feature width), labels (variant, source, primary_metric) and flags. What `dvc metrics`
    and `dvc exp show` compare, so their columns are scores only."""
    return {k: v for k, v in metrics.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and k not in EVAL_SETTINGS}


def write_scores(metrics: dict, path: str | Path) -> Path:
    """scores(metrics) as JSON at `path` (the stable file dvc.yaml declares as its metrics)."""
    out = Path(path)
    atomic_write_text(out, json.dumps(scores(metrics), indent=2, sort_keys=True) + "\n")
    return out


def register(cfg: Config, checkpoint: str | Path | None = None) -> dict:
    """Log the generator as an MLflow model, register it, move `champion` only if it is better."""
    from ganzoo.tracking.registry import register_checkpoint

    cfg = registry.resolve(cfg)
    paths = RunPaths.of(cfg)
    ckpt = checkpoint_path(cfg, checkpoint)
    print(f"[ganzoo] registering {ckpt}", file=sys.stderr, flush=True)
    if not paths.metrics.exists():
        raise ConfigError(f"no metrics at {paths.metrics}; run `ganzoo evaluate` before `ganzoo register`")
    return register_checkpoint(cfg, ckpt, json.loads(paths.metrics.read_text()))


# --------------------------------------------------------------------------- one-line summaries
# The same words on the command line (`ganzoo <stage>`) and in a Prefect run's log.

def describe_prepared(manifest: dict) -> str:
    return (f"prepared {manifest['count']} {manifest['source']} images of shape {tuple(manifest['shape'])} "
            f"({manifest['kind']}, hash {manifest['content_hash']})")


def describe_classifier(info: dict) -> str:
    return f"evaluation classifier {info['path']}: held-out accuracy {info['heldout_accuracy']:.4f}"


def describe_start(resumed_from: int) -> str:
    """The resume decision as the loop took it (`--resume auto` may have started fresh)."""
    return f"resumed at step {resumed_from}" if resumed_from else "from scratch"


def describe_losses(losses: dict) -> str:
    return "  ".join(f"{k}={v:.4f}" for k, v in losses.items() if k != "step" and not k.startswith("probe_"))


def describe_evaluation(metrics: dict) -> str:
    """The primary metric first, then the other scores."""
    primary = metrics.get("primary_metric")
    found = scores(metrics)
    head = f"{metrics.get('variant', '?')} at step {metrics.get('step', '?')}"
    if primary in found:
        better = "higher" if metrics.get("primary_higher_is_better") else "lower"
        head += f": {primary} {found.pop(primary):.4g} ({better} is better)"
    return head + "".join(f", {k} {v:.4g}" for k, v in found.items())


# --------------------------------------------------------------------------- inference

def load_generator(ref: str | Path, device: str = "cpu"):
    """The trained Variant behind a checkpoint path or an MLflow model URI (models:/NAME@alias, runs:/...)."""
    ref = str(ref)
    if ref.startswith(("models:/", "runs:/")):
        from ganzoo.tracking.pyfunc import load_variant_from_uri

        return load_variant_from_uri(ref, device=device)
    from ganzoo.training.checkpoint import load_variant

    variant, _, _ = load_variant(ref, device=device)
    return variant


def sample(ref: str | Path, n: int, out: str | Path, *, labels: str | None = None, codes: str | None = None,
           seed: int = 0, device: str = "cpu", cfg: Config | None = None) -> dict:
    """`ganzoo sample`: n images from a checkpoint (a path, or `best`/`last` of cfg's run) or a
    model URI -> `.npz` arrays or a `.png` grid."""
    if n < 1:
        raise ConfigError(f"--n {n}: ask for at least one image")
    if str(ref) in ("best", "last", "auto"):
        ref = checkpoint_path(registry.resolve(cfg or Config()), str(ref))
    variant = load_generator(ref, device=device)
    label_tensor = sampling.parse_labels(labels, n, variant.data.num_classes)
    images = sampling.generate(variant, n, seed=seed, labels=label_tensor, codes=sampling.parse_codes(codes))
    path = sampling.write_samples(images, out, labels=label_tensor)
    return {"variant": variant.name, "n": n, "out": str(path)}


def translate(ref: str | Path, input: str | Path, out: str | Path, *, direction: str = "AtoB",
              device: str = "cpu") -> list[Path]:
    """`ganzoo translate`: an image or a folder of images through a translation model -> PNGs in `out`."""
    variant = load_generator(ref, device=device)
    return sampling.translate_files(variant, input, out, direction=direction)
