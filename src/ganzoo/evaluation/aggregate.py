"""Several evaluations of one config (training seeds) -> mean, std and interval per metric.

A single run's FID interval is the noise of evaluating that one generator; seeds add the noise of
training it, which is usually larger. `aggregate` takes the metrics of runs evaluated alike (their
fingerprints must agree family by family, or the numbers are not comparable and it refuses,
naming the differing part) and reports, for every number all runs have, the mean, the sample
std (ddof=1) and a Student-t interval for the mean at `level`.
"""

from __future__ import annotations

import math

from ganzoo.errors import ConfigError
from ganzoo.evaluation import fingerprint

# Numbers that describe how the evaluation ran, not how good the model is.
DESCRIPTIVE = ("step", "n_samples", "eval_seed", "feature_dim", "primary_higher_is_better")


def _is_score(key: str, value) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return key not in DESCRIPTIVE and not key.endswith(("_ci_low", "_ci_high"))


def summarise(values: list[float], level: float = 0.95) -> dict[str, float]:
    """mean, std (ddof=1) and the Student-t interval of the mean of n >= 2 values."""
    from scipy.stats import t

    n = len(values)
    if n < 2:
        raise ValueError(f"an interval needs at least 2 values, got {n}")
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = float(t.ppf((1 + level) / 2, n - 1)) * std / math.sqrt(n)
    return {"mean": mean, "std": std, "ci_low": mean - half, "ci_high": mean + half, "n": n}


def check_comparable(results: list[dict], names: list[str]) -> None:
    """ConfigError naming the first family and part in which an evaluation differs from the first."""
    base = results[0].get("fingerprint") or {}
    for result, name in zip(results[1:], names[1:], strict=True):
        other = result.get("fingerprint") or {}
        for family in sorted(set(base) | set(other)):
            parts = fingerprint.differences(base.get(family), other.get(family))
            if parts:
                raise ConfigError(f"{name} and {names[0]} were evaluated differently ({family} metrics differ in "
                                  f"{', '.join(parts)}); evaluate every run with the same eval.* settings and data")


def aggregate(results: list[dict], level: float = 0.95) -> dict:
    """Flat-ish dict for `dvc metrics`: `<metric>: {mean, std, ci_low, ci_high, n}` for every
    score all runs have, the shared fingerprint, and which runs went in."""
    if len(results) < 2:
        raise ConfigError(f"aggregating needs at least 2 evaluations (seeds), got {len(results)}")
    names = [str(r.get("checkpoint") or r.get("metrics_file") or f"run {i}") for i, r in enumerate(results)]
    check_comparable(results, names)
    first = results[0]
    shared = [k for k, v in first.items() if _is_score(k, v) and all(_is_score(k, r.get(k)) for r in results)]
    out: dict = {k: summarise([float(r[k]) for r in results], level) for k in sorted(shared)}
    out.update({k: first[k] for k in ("variant", "source", "primary_metric", "n_samples", "eval_seed",
                                      "primary_higher_is_better") if k in first})
    if "fingerprint" in first:
        out["fingerprint"] = first["fingerprint"]
        out.update({k: v for k, v in first.items() if k.startswith("fingerprint_")})
    out["runs"] = {str(i): {"from": names[i], "step": r.get("step")} for i, r in enumerate(results)}
    out["level"] = level
    return out


def main(argv: list[str] | None = None) -> int:
    """`python -m ganzoo.evaluation.aggregate A/metrics.json B/metrics.json ... [--out FILE]`: the
    metrics.json files of runs evaluated alike (a seed sweep, `dvc exp` folders) -> one summary."""
    import argparse
    import json
    import sys
    from pathlib import Path

    from ganzoo.errors import EXIT_USER_ERROR, GanzooError
    from ganzoo.files import atomic_write_text

    ap = argparse.ArgumentParser(prog="python -m ganzoo.evaluation.aggregate", description=main.__doc__)
    ap.add_argument("metrics", nargs="+", type=Path)
    ap.add_argument("--level", type=float, default=0.95)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    try:
        results = []
        for path in args.metrics:
            try:
                results.append({**json.loads(path.read_text()), "metrics_file": str(path)})
            except (OSError, ValueError) as exc:
                raise ConfigError(f"cannot read metrics file {path} ({type(exc).__name__}); pass metrics.json "
                                  "files written by `ganzoo evaluate`") from None
        text = json.dumps(aggregate(results, args.level), indent=2, sort_keys=True) + "\n"
    except GanzooError as err:
        print(f"ganzoo: error: {err}", file=sys.stderr)
        return EXIT_USER_ERROR
    if args.out:
        atomic_write_text(args.out, text)
    print(text, end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
