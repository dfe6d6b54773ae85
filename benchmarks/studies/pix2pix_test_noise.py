"""pix2pix at test time: the paper's noise (Isola et al., section 3.3: dropout on, batch norm from
the test batch) against the deterministic eval mode, on one trained checkpoint (issue 17).

Evaluates the checkpoint's held-out test split with the evaluation's own translation metrics
(L1, PSNR, SSIM, FID and class preservation in the evaluation classifier's space) once in eval
mode (`model.pix2pix.test_noise=false`) and once per noise seed in the paper's mode, and reports
how far the noisy translations of one input spread across seeds (mean absolute deviation from
their per-pixel mean, [0, 1] units): the paper observed "only minor stochasticity". Train the
checkpoint with the translation benchmark first:

    nice -n 10 .venv/bin/python -m benchmarks.translation --variants pix2pix --work /tmp/tr
    nice -n 10 .venv/bin/python -m benchmarks.studies.pix2pix_test_noise /tmp/tr/checkpoints/pix2pix/last.pt
"""

from __future__ import annotations

import argparse
import functools
import statistics
import sys
from pathlib import Path

import torch

from benchmarks import common


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoint", type=Path)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    p.add_argument("--out", type=Path, default=common.OUT / "pix2pix_test_noise.json")
    p.add_argument("--threads", type=int, default=1)
    return p.parse_args(argv)


def main(argv=None) -> int:
    from ganzoo.data.images import to_unit_range
    from ganzoo.data.prepared import load_prepared, prepared_path
    from ganzoo.evaluation.classifier import get_classifier
    from ganzoo.evaluation.translation import translation_metrics
    from ganzoo.training.checkpoint import load_variant

    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    variant, cfg, _ = load_variant(args.checkpoint)
    if variant.name != "pix2pix":
        print(f"{args.checkpoint} holds a {variant.name} model; this study is about pix2pix", file=sys.stderr)
        return 2
    prep = load_prepared(prepared_path(cfg.data))
    classifier, _ = get_classifier(prep, cfg.eval)
    translate = type(variant).translate
    rows = {}
    variant.hp = variant.hp.model_copy(update={"test_noise": False})
    rows["eval mode (deterministic)"] = translation_metrics(variant, prep, classifier)
    variant.hp = variant.hp.model_copy(update={"test_noise": True})
    outputs = []
    a = to_unit_range(prep.tensors["a_test"])
    for seed in args.seeds:
        # The evaluation calls translate(x, direction); bind this seed for the whole evaluation.
        variant.translate = functools.partial(translate, variant, seed=seed)
        rows[f"test-time noise, seed {seed}"] = translation_metrics(variant, prep, classifier)
        with variant.sampling():
            outputs.append((variant.translate(a, "AtoB").float() + 1) / 2)
    stack = torch.stack(outputs)
    spread = float((stack - stack.mean(0)).abs().mean())
    keys = [k for k in ("l1", "psnr", "ssim", "fid", "class_preservation") if k in rows["eval mode (deterministic)"]]
    noisy = [m for name, m in rows.items() if name.startswith("test-time")]
    summary = {k: (statistics.mean(m[k] for m in noisy), statistics.pstdev(m[k] for m in noisy)) for k in keys}
    lines = ["| mode | " + " | ".join(keys) + " |", "| --- |" + " ---: |" * len(keys)]
    lines += [f"| {name} | " + " | ".join(common.fmt(m[k]) for k in keys) + " |" for name, m in rows.items()]
    lines.append(f"| test-time noise, mean +- sd over {len(noisy)} seeds | "
                 + " | ".join(f"{common.fmt(mu)} +- {common.fmt(sd)}" for mu, sd in summary.values()) + " |")
    print("\n".join(lines))
    print(f"\nspread of one input's translations across seeds: {spread:.4f} (mean |y - mean_y|, [0, 1] pixels)")
    common.write_json(args.out, {"checkpoint": str(args.checkpoint), "rows": rows, "noise_mean_sd": summary,
                                 "seed_spread": spread, "test_images": int(a.shape[0]),
                                 "machine": common.machine(torch.device("cpu"))})
    return 0


if __name__ == "__main__":
    sys.exit(main())
