"""`ganzoo` command line: parse arguments, call a stage, print. No training logic lives here.

Errors the user can fix end in one line on stderr and exit code 2: a GanzooError (bad params,
data, checkpoint), or an environment failure (a full disk, a read-only or forbidden output
folder: `ganzoo.files.StorageError`, or an OSError with such an errno from a library).
"""

from __future__ import annotations

import argparse
import json
import sys

from ganzoo.config import add_arguments, load_from_args
from ganzoo.errors import EXIT_USER_ERROR, GanzooError
from ganzoo.files import StorageError, describe_write_failure


def _config(args):
    return load_from_args(args.params, args.overrides)


def cmd_prepare(args) -> int:
    from ganzoo import stages

    prep = stages.prepare(_config(args))
    m = prep.manifest
    print(f"prepared {m['count']} {m['source']} images of shape {tuple(m['shape'])} "
          f"({m['kind']}, hash {m['content_hash']})")
    return 0


def cmd_train(args) -> int:
    from ganzoo import stages
    from ganzoo.training import distributed

    cfg = _config(args)
    if args.nproc > 1 and distributed.env_rank_world()[1] == 1:  # relaunch through torchrun
        sets = [a for o in args.overrides for a in ("--set", o)]
        return distributed.launch(args.nproc, ["train", "--params", args.params, *sets, "--resume", args.resume,
                                               *(["--no-track"] if args.no_track else [])], cfg.train.device)
    result = stages.train(cfg, resume=args.resume, track=False if args.no_track else None)
    if distributed.env_rank_world()[0] != 0:
        return 0
    last = result.history[-1] if result.history else {}
    losses = ", ".join(f"{k}={v:.4f}" for k, v in last.items() if k != "step" and not k.startswith("probe_"))
    print(f"trained {cfg.variant} to step {result.steps} -> {result.checkpoint}  {losses}")
    if result.best is not None:
        print(f"best in-loop evaluation at step {result.best_step} -> {result.best}")
    if result.stop_reason:
        print(result.stop_reason)
    return 0


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

    track = False if args.no_track else None
    if len(args.checkpoint or []) > 1:
        print(json.dumps(stages.evaluate_seeds(_config(args), args.checkpoint, track=track), indent=2))
        return 0
    metrics = stages.evaluate(_config(args), (args.checkpoint or [None])[0], track=track)
    print(json.dumps(metrics, indent=2))
    return 0


def cmd_register(args) -> int:
    from ganzoo import stages

    decision = stages.register(_config(args), args.checkpoint)
    print(decision.get("message", json.dumps(decision)))
    return 0


def cmd_sample(args) -> int:
    from ganzoo import stages

    done = stages.sample(args.checkpoint, args.n, args.out, labels=args.labels, codes=args.codes,
                         seed=args.seed, device=args.device, cfg=_config(args))
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ganzoo",
                                     description="Every classic GAN, trained, judged, versioned, served.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("prepare", help="prepare the dataset named by data.source")
    add_arguments(p)
    p.set_defaults(func=cmd_prepare)

    p = sub.add_parser("train", help="train the variant named by `variant`")
    add_arguments(p)
    p.add_argument("--resume", nargs="?", const="yes", default="no", choices=["yes", "auto", "no"],
                   help="continue from checkpoints/<variant>/last.pt (auto: only when compatible)")
    p.add_argument("--no-track", action="store_true", help="do not log to MLflow for this run")
    p.add_argument("--nproc", type=int, default=1, metavar="N",
                   help="train on N processes/GPUs through torchrun (global batch = train.batch_size x N)")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("classifier", help="train/cache the evaluation classifier on the prepared data")
    add_arguments(p)
    p.set_defaults(func=cmd_classifier)

    p = sub.add_parser("evaluate", help="metrics and sample sheets for a checkpoint")
    add_arguments(p)
    p.add_argument("--checkpoint", action="append", default=None,
                   help="a path, last, best, or auto (default: best.pt when the monitor kept one, else last.pt); "
                        "repeat it for several seeds of one config: each is evaluated into "
                        "eval/<variant>/seeds/<i>/ and aggregated (seeds/aggregate.json)")
    p.add_argument("--no-track", action="store_true")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("register", help="register the generator in MLflow; champion only if better")
    add_arguments(p)
    p.add_argument("--checkpoint", default=None, help="as for evaluate: a path, last, best or auto (default)")
    p.set_defaults(func=cmd_register)

    p = sub.add_parser("sample", help="generate images from a checkpoint or models:/NAME@alias")
    p.add_argument("checkpoint", help="a .pt path, best / last (of the params' run), or models:/NAME@alias")
    add_arguments(p)
    p.add_argument("--n", type=int, default=64)
    p.add_argument("--out", required=True, help="FILE.npz (uint8 images N,H,W,C [+labels]) or FILE.png (grid)")
    p.add_argument("--labels", default=None, help="class per sample, comma-separated, repeated to fill --n (cgan)")
    p.add_argument("--codes", default=None, help="infogan latent codes, e.g. cat=3,c1=-1.0,c2=0.5")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.set_defaults(func=cmd_sample)

    p = sub.add_parser("translate", help="translate images with a pix2pix/cyclegan/discogan checkpoint")
    p.add_argument("checkpoint")
    p.add_argument("--input", required=True, help="an image file or a folder of images")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--direction", default="AtoB", choices=["AtoB", "BtoA"])
    p.add_argument("--device", default="cpu")
    p.set_defaults(func=cmd_translate)

    p = sub.add_parser("variants", help="list registered variants")
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
