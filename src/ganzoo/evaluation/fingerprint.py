"""Metric fingerprints: what produced a number, so that only numbers made alike are compared.

A fingerprint describes one metric family (the metrics that share a feature space and inputs)
in parts, each a short human-readable string:

- extractor: feature network name, sha256 of its weights, layer, feature dimension;
- input: resize method and size, dtype and quantisation of generated and real images;
- reference: the real set (dataset, split, content hash, count);
- generated: number of generated samples;
- seed: the evaluation seed;
- estimator: the settings of the estimators (KID subsets, k of precision/recall, bootstrap).

`hash` is a short sha256 over all parts: equal hashes mean the numbers are comparable, and
`differences()` says which parts are not. metrics.json holds them under
`fingerprint.<family>` (with the family's metric names) and the hash again as
`fingerprint_<family>`, a top-level string that the MLflow run keeps as a tag.
"""

from __future__ import annotations

import hashlib
import json

PARTS = ("extractor", "input", "reference", "generated", "seed", "estimator")
HASH_CHARS = 12

# How generated images reach every feature network and classifier (metrics.quantise).
QUANTISATION = ("generated: float [-1, 1] rounded to uint8; real: uint8 as prepared; "
                "both then scaled to [-1, 1] float32 (or fed as uint8 to Inception)")


def short_hash(parts: dict[str, str]) -> str:
    canonical = json.dumps({k: str(parts.get(k, "")) for k in PARTS}, sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()[:HASH_CHARS]


def make(metrics: list[str], **parts: str) -> dict[str, str]:
    """A family's fingerprint: its parts (all of PARTS), its metric names and the hash of the parts."""
    missing = [p for p in PARTS if p not in parts]
    if missing:
        raise ValueError(f"fingerprint parts missing: {missing}")
    fp = {k: str(parts[k]) for k in PARTS}
    return {**fp, "metrics": " ".join(metrics), "hash": short_hash(fp)}


def extractor_part(desc: dict[str, str] | None) -> str:
    if desc is None:
        return "none (pixels)"
    return f"{desc['name']} sha256={desc['sha256']} layer={desc['layer']} dim={desc['dim']}"


def input_part(desc: dict[str, str] | None, image_shape) -> str:
    size = "x".join(str(s) for s in image_shape)
    resize = desc["resize"] if desc is not None else "none"
    return f"{QUANTISATION}; images {size}; resize: {resize}"


def reference_part(prep, key: str, split: str, count: int, seed: int | None = None) -> str:
    """The real images a family is measured against; `seed` when they are a seeded subset."""
    total = int(prep.tensors[key].shape[0])
    subset = f" (seeded subset, seed {seed})" if count < total and seed is not None else ""
    source = prep.manifest.get("source", "?")
    return (f"{source} {split} [{key}] content={prep.manifest.get('content_hash', '?')} "
            f"count={count} of {total}{subset}")


def family_of(metrics: dict, name: str) -> str | None:
    """The family whose fingerprint lists metric `name`."""
    for family, fp in (metrics.get("fingerprint") or {}).items():
        if isinstance(fp, dict) and name in str(fp.get("metrics", "")).split():
            return family
    return None


def of_metric(metrics: dict, name: str) -> dict[str, str] | None:
    """The fingerprint that covers metric `name` in an evaluation's metrics, if any."""
    family = family_of(metrics, name)
    return metrics["fingerprint"][family] if family is not None else None


def differences(mine: dict[str, str] | None, theirs: dict[str, str] | None) -> list[str]:
    """The parts in which two fingerprints differ (all of them when one is missing)."""
    if not mine or not theirs:
        return list(PARTS)
    return [p for p in PARTS if str(mine.get(p)) != str(theirs.get(p))]
