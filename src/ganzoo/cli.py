"""`ganzoo` command line: parse arguments, call a stage, print. No training logic lives here.

Errors the user can fix end in one line on stderr and exit code 2: a GanzooError (bad params,
data, checkpoint), or an environment failure (a full disk, a read-only or forbidden output
folder: `ganzoo.files.StorageError`, or an OSError with such an errno from a library).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import sys
import time

from ganzoo.config import add_arguments, load_from_args
from ganzoo.errors import EXIT_USER_ERROR, GanzooError
from ganzoo.files import StorageError, describe_write_failure


def _config(args):
    return load_from_args(args.params, args.overrides)


def _print_json(value) -> None:
    """--json: one JSON document on stdout, for scripts (`jq`, CI)."""
    print(json.dumps(value, indent=2, sort_keys=True, default=str))


def _stdout_for(args):
    """With --json, what the stage itself prints (resume decisions, tracking notices) goes to
    stderr, so that stdout holds the JSON document alone."""
    return contextlib.redirect_stdout(sys.stderr) if args.json else contextlib.nullcontext()


def cmd_prepare(args) -> int:
    from ganzoo import stages

    cfg = _config(args)
    for prep in stages.prepare_all(cfg) if args.all_variants else [stages.prepare(cfg)]:
        print(stages.describe_prepared(prep.manifest))
    return 0


def cmd_train(args) -> int:
    from ganzoo import stages
    from ganzoo.training import distributed

    cfg = _config(args)
    if args.nproc > 1 and distributed.env_rank_world()[1] == 1:  # relaunch through torchrun
        sets = [a for o in args.overrides for a in ("--set", o)]
        return distributed.launch(args.nproc, ["train", "--params", args.params, *sets, "--resume", args.resume,
                                               *(["--no-track"] if args.no_track else []),
                                               *(["--json"] if args.json else [])], cfg.train.device)
    started = time.perf_counter()
    with _stdout_for(args):
        result = stages.train(cfg, resume=args.resume, track=False if args.no_track else None)
    elapsed = time.perf_counter() - started
    if distributed.env_rank_world()[0] != 0:
        return 0
    last = result.history[-1] if result.history else {}
    run = _mlflow_run(result.checkpoint)
    if args.json:
        _print_json({"variant": cfg.variant, "checkpoint": str(result.checkpoint), "steps": result.steps,
                     "resumed_from": result.resumed_from, "elapsed_s": round(elapsed, 3), "mlflow": run,
                     "best": str(result.best) if result.best else None, "best_step": result.best_step,
                     "stop_reason": result.stop_reason,
                     "losses": {k: v for k, v in last.items() if k != "step" and not k.startswith("probe_")}})
        return 0
    print(f"trained {cfg.variant} to step {result.steps} ({stages.describe_start(result.resumed_from)}) in "
          f"{_duration(elapsed)} -> {result.checkpoint}  {stages.describe_losses(last)}")
    if result.best is not None:
        print(f"best in-loop evaluation at step {result.best_step} -> {result.best}")
    if result.stop_reason:
        print(result.stop_reason)
    if run is not None:
        where = f" (open with `{run['ui_command']}`)" if run["ui_command"] else ""
        print(f"MLflow run {run['run_id']}: {run['url']}{where}")
    return 0


def _mlflow_run(checkpoint) -> dict | None:
    """The MLflow run this training logged to (id, URL, `mlflow ui` command), None if untracked."""
    from ganzoo.tracking.store import trained_run

    return trained_run(checkpoint)


def _duration(seconds: float) -> str:
    minutes, s = divmod(round(seconds), 60)
    return f"{minutes}m{s:02d}s" if minutes else f"{seconds:.1f}s"


def cmd_classifier(args) -> int:
    from ganzoo import stages

    info = stages.fit_classifier(_config(args))
    if info["path"] is None:
        print(f"evaluation features: {info['space']} (nothing to train; no labels for a class judge)")
    else:
        print(f"evaluation {info['space']} net {info['path']}: held-out accuracy {info['heldout_accuracy']:.4f}")
    return 0


def cmd_evaluate(args) -> int:
    from ganzoo import stages
    from ganzoo.paths import RunPaths

    cfg = _config(args)
    track = False if args.no_track else None
    if len(args.checkpoint or []) > 1:
        print(json.dumps(stages.evaluate_seeds(cfg, args.checkpoint, track=track), indent=2))
        return 0
    with _stdout_for(args):
        metrics = stages.evaluate(cfg, (args.checkpoint or [None])[0], track=track)
    if args.scores:
        stages.write_scores(metrics, args.scores)
    if args.json:
        _print_json(metrics)
        return 0
    print(f"evaluated {stages.describe_evaluation(metrics)}")
    print(f"metrics: {RunPaths.of(cfg.model_copy(update={'variant': metrics['variant']})).metrics}"
          + (f", scores: {args.scores}" if args.scores else ""))
    return 0


def cmd_register(args) -> int:
    from ganzoo import stages

    with _stdout_for(args):
        decision = stages.register(_config(args), args.checkpoint)
    if args.json:
        _print_json(decision)
    else:
        print(decision.get("message", json.dumps(decision)))
    return 0


def cmd_sample(args) -> int:
    from ganzoo import stages

    with _stdout_for(args):
        done = stages.sample(args.checkpoint, args.n, args.out, labels=args.labels, codes=args.codes,
                             seed=args.seed, device=args.device, cfg=_config(args))
    if args.json:
        _print_json(done)
    else:
        print(f"wrote {done['n']} samples from {done['variant']} to {done['out']}")
    return 0


def cmd_translate(args) -> int:
    from ganzoo import stages

    written = stages.translate(args.checkpoint, args.input, args.out, direction=args.direction, device=args.device)
    print(f"translated {len(written)} image(s) {args.direction} into {args.out}")
    return 0


def cmd_variants(args) -> int:
    from ganzoo.variants import registry

    for name in registry.names():
        cls = registry.get_variant(name)
        print(f"{name:10s} {cls.data_kind:9s} {cls.description}")
    return 0


class _Help(argparse.RawDescriptionHelpFormatter):
    """Keeps the examples' line breaks, and shows each option's default unless its help names it."""

    def _get_help_string(self, action):
        text = action.help or ""
        if (not action.option_strings or "default" in text or action.default in (None, False, [])
                or action.default is argparse.SUPPRESS):
            return text
        return f"{text} (default: %(default)s)"


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    from ganzoo import __version__

    found = []
    for dist in ("torch", "mlflow", "prefect", "dvc"):
        try:
            found.append(f"{dist} {version(dist)}")
        except PackageNotFoundError:
            found.append(f"{dist} missing")
    return f"ganzoo {__version__} (python {platform.python_version()}, {', '.join(found)})"


# Shown under each command's --help: what it writes, and how it is usually called.
EXAMPLES = {
    "prepare": """writes data/prepared/<source>-<size>/ (data.pt + manifest.json)

examples:
  ganzoo prepare                                   # data.source of params.yaml (auto: the variant's default)
  ganzoo prepare --set data.source=mnist --set data.root=/data/mnist
  ganzoo prepare --all-variants                    # what dvc.yaml runs""",
    "train": """writes checkpoints/<variant>/last.pt (resumable) and metrics/<variant>/losses.csv;
logs to MLflow unless tracking.enabled=false or --no-track

examples:
  ganzoo train                                     # params.yaml as it is
  ganzoo train --set variant=wgan_gp --set train.steps=3000
  ganzoo train --resume auto                       # continue when compatible (what dvc.yaml runs)
  ganzoo train --nproc 2 --set train.device=cuda   # two GPUs through torchrun
  ganzoo train --json | jq .elapsed_s,.mlflow.url""",
    "classifier": """writes data/classifier/<dataset hash>-<steps>.pt, reused by every evaluation of that dataset

examples:
  ganzoo classifier
  ganzoo classifier --set eval.classifier_steps=1200""",
    "evaluate": """writes eval/<variant>/metrics.json and eval/<variant>/sheets/*.png

examples:
  ganzoo evaluate                                  # checkpoints/<variant>/last.pt
  ganzoo evaluate --checkpoint other/last.pt --no-track
  ganzoo evaluate --scores eval/scores.json        # + the scores alone (what dvc.yaml runs)
  ganzoo evaluate --json | jq .fid_classifier""",
    "register": """registers a version of ganzoo-<variant>-<source> (or tracking.registered_name); the
alias `champion` moves only when the primary metric improves, else the version is `challenger`

examples:
  ganzoo register
  ganzoo register --set tracking.uri=http://127.0.0.1:5000 --json""",
    "sample": """examples:
  ganzoo sample checkpoints/dcgan/last.pt --out grid.png
  ganzoo sample models:/ganzoo-cgan-digits@champion --n 20 --labels 0,1,2 --out x.npz
  ganzoo sample checkpoints/infogan/last.pt --codes cat=3,c1=0.5 --out traversal.png --json""",
    "translate": """examples:
  ganzoo translate checkpoints/pix2pix/last.pt --input outlines/ --out translated/
  ganzoo translate models:/ganzoo-cyclegan-digits_unpaired@champion --input a.png --out out/ --direction BtoA""",
}


def _subcommand(sub, name: str, help: str, description: str):
    return sub.add_parser(name, help=help, description=description, epilog=EXAMPLES.get(name),
                          formatter_class=_Help)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ganzoo", formatter_class=_Help,
        description="Every classic GAN, trained, judged, versioned, served.",
        epilog="""pipeline: prepare -> classifier -> train -> evaluate -> register (`dvc repro` runs the
first four; `python -m flows.pipeline` all five). Parameters come from params.yaml, overridden
with --set KEY=VALUE; `ganzoo COMMAND --help` shows each command's options and examples.""")
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = _subcommand(sub, "prepare", "prepare the dataset named by data.source",
                    "Turn data.source into the prepared format (uint8 tensors + manifest) that training reads.")
    add_arguments(p)
    p.add_argument("--all-variants", action="store_true",
                   help="prepare data.source as every variant reads it (auto: digits, digits_paired and "
                        "digits_unpaired), so switching `variant` needs no new prepare")
    p.set_defaults(func=cmd_prepare)

    p = _subcommand(sub, "train", "train the variant named by `variant`",
                    "Train `variant` on the prepared data through the one training loop.")
    add_arguments(p)
    p.add_argument("--resume", nargs="?", const="yes", default="no", choices=["yes", "auto", "no"],
                   help="continue checkpoints/<variant>/last.pt: yes (error if incompatible), auto (continue "
                        "when compatible, else start fresh), no; bare --resume means yes")
    p.add_argument("--no-track", action="store_true", help="do not log to MLflow for this run")
    p.add_argument("--nproc", type=int, default=1, metavar="N",
                   help="train on N processes/GPUs through torchrun (global batch = train.batch_size x N)")
    p.add_argument("--json", action="store_true", help="print the result as JSON (checkpoint, steps, elapsed_s, ...)")
    p.set_defaults(func=cmd_train)

    p = _subcommand(sub, "classifier", "train/cache the evaluation classifier on the prepared data",
                    "Fit the classifier whose features the metrics are computed in (cached per dataset).")
    add_arguments(p)
    p.set_defaults(func=cmd_classifier)

    p = _subcommand(sub, "evaluate", "metrics and sample sheets for a checkpoint",
                    "Score a checkpoint (FID, KID, precision/recall, mode coverage, ... in the classifier's "
                    "feature space) and draw its sample sheets.")
    add_arguments(p)
    p.add_argument("--checkpoint", action="append", default=None,
                   help="a path, last, best, or auto (default: best.pt when the monitor kept one, else last.pt); "
                        "repeat it for several seeds of one config: each is evaluated into "
                        "eval/<variant>/seeds/<i>/ and aggregated (seeds/aggregate.json)")
    p.add_argument("--no-track", action="store_true", help="do not log to the checkpoint's MLflow run")
    p.add_argument("--scores", default=None, metavar="FILE.json",
                   help="also write the scores alone (no settings or labels) to FILE.json, a stable path "
                        "for `dvc metrics` / `dvc exp show` to compare every variant column by column")
    p.add_argument("--json", action="store_true", help="print metrics.json's content instead of a summary")
    p.set_defaults(func=cmd_evaluate)

    p = _subcommand(sub, "register", "register the generator in MLflow; champion only if better",
                    "Log the generator as an MLflow pyfunc model, register a version and decide its alias.")
    add_arguments(p)
    p.add_argument("--checkpoint", default=None, help="as for evaluate: a path, last, best or auto (default)")
    p.add_argument("--json", action="store_true", help="print the decision as JSON")
    p.set_defaults(func=cmd_register)

    p = _subcommand(sub, "sample", "generate images from a checkpoint or models:/NAME@alias",
                    "Generate images from a checkpoint file or an MLflow model URI.")
    p.add_argument("checkpoint", help="a checkpoint file, best / last (of the params' run), models:/NAME@alias "
                                      "or runs:/RUN_ID/PATH")
    add_arguments(p)
    p.add_argument("--n", type=int, default=64, help="number of images")
    p.add_argument("--out", required=True, help="FILE.npz (uint8 images N,H,W,C [+labels]) or FILE.png (grid)")
    p.add_argument("--labels", default=None, help="class per sample, comma-separated, repeated to fill --n (cgan)")
    p.add_argument("--codes", default=None, help="infogan latent codes, e.g. cat=3,c1=-1.0,c2=0.5")
    p.add_argument("--seed", type=int, default=0, help="noise seed: the same seed gives the same images")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument("--json", action="store_true", help="print what was written as JSON")
    p.set_defaults(func=cmd_sample)

    p = _subcommand(sub, "translate", "translate images with a pix2pix/cyclegan/discogan checkpoint",
                    "Translate an image or a folder of images with a translation model.")
    p.add_argument("checkpoint", help="a checkpoint file, models:/NAME@alias or runs:/RUN_ID/PATH")
    p.add_argument("--input", required=True, help="an image file or a folder of images")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--direction", default="AtoB", choices=["AtoB", "BtoA"], help="AtoB or BtoA")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    p.set_defaults(func=cmd_translate)

    p = _subcommand(sub, "variants", "list registered variants", "List the registered variants, their data and paper.")
    p.set_defaults(func=cmd_variants)
    return parser


def environment_failure(err: Exception) -> str | None:
    """One line for a failure the environment caused and the user can fix (full disk, read-only or
    forbidden folder), else None (a bug keeps its traceback)."""
    if isinstance(err, StorageError):
        return err.strerror
    where = getattr(err, "filename", None)
    clear = describe_write_failure(where or "a file", err, action="use")
    return clear.strerror if clear is not None else None


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except GanzooError as err:
        print(f"ganzoo: error: {err}", file=sys.stderr)
        return EXIT_USER_ERROR
    except Exception as err:  # noqa: BLE001 -- only environment failures become one line; the rest re-raise
        line = environment_failure(err)
        if line is None:
            raise
        print(f"ganzoo: error: {line}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("ganzoo: interrupted; the last checkpoint is intact (resume with --resume)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
