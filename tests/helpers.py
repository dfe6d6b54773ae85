"""Test helpers (factories and builders), importable as `tests.helpers`; fixtures stay in conftest.py."""

from __future__ import annotations

import ast
from pathlib import Path

import torch
import yaml

from ganzoo.config import apply_override
from ganzoo.data.prepared import Prepared

SRC = Path(__file__).resolve().parents[1] / "src"


# --------------------------------------------------------------------------- tiny data for fast CPU runs
def make_prepared(kind: str = "images", n: int = 24, size: int = 16, channels: int = 1,
                  classes: int = 10, seed: int = 0, labels: bool = True) -> Prepared:
    """Random uint8 images in the prepared format (labels for `images` unless labels=False, e.g.
    colour photos without classes; pairs for translation)."""
    g = torch.Generator().manual_seed(seed)

    def imgs(c=channels, m=n):
        return torch.randint(0, 256, (m, c, size, size), generator=g, dtype=torch.uint8)

    manifest = {"source": "synthetic", "classes": [str(i) for i in range(classes)], "content_hash": f"syn{seed}"}
    if kind == "images" and not labels:
        return Prepared("images", {"x": imgs()}, {k: v for k, v in manifest.items() if k != "classes"})
    if kind == "images":
        y = torch.arange(n) % classes
        return Prepared("images", {"x": imgs(), "y": y}, manifest)
    tensors = {"a": imgs(), "b": imgs(), "a_test": imgs(m=4), "b_test": imgs(m=4)}
    return Prepared(kind, tensors, manifest)


# --------------------------------------------------------------------------- tiny params.yaml for the flows
TINY_PARAMS = [
    "variant=dcgan", "data.image_size=16", "data.limit=96",
    "train.steps=4", "train.batch_size=16", "train.checkpoint_every=4", "train.log_every=2",
    "train.progress=false", "train.device=cpu",
    "model.dcgan.ngf=8", "model.dcgan.ndf=8", "model.dcgan.z_dim=16",
    "model.gan.hidden=16", "model.gan.z_dim=16",
    "eval.n_samples=32", "eval.batch_size=32", "eval.classifier_steps=5", "eval.kid_subset_size=16",
    "tracking.enabled=false",
]


def write_params(folder: Path, extra: list[str] | tuple[str, ...] = ()) -> Path:
    """A params.yaml in `folder` holding TINY_PARAMS plus `extra` overrides."""
    raw: dict = {}
    for assignment in [*TINY_PARAMS, *extra]:
        apply_override(raw, assignment)
    path = folder / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


# --------------------------------------------------------------------------- the import structure of src/ganzoo
def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path, modules: set[str]) -> set[str]:
    """The ganzoo modules `path` imports, anywhere in the file (relative imports resolved)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                pkg = module_name(path).split(".")
                pkg = pkg[:len(pkg) - node.level + (1 if path.name == "__init__.py" else 0)]
                base = ".".join(pkg + ([base] if base else []))
            # `from pkg import sub` imports the submodule; `from pkg import name` the package.
            names = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
        else:
            continue
        for name in names:
            while name and name not in modules:
                name = name.rpartition(".")[0]
            if name:
                found.add(name)
    return found


def import_graph() -> dict[str, set[str]]:
    """module -> the ganzoo modules it imports (function-level imports included)."""
    files = {module_name(p): p for p in SRC.joinpath("ganzoo").rglob("*.py")}
    mods = set(files)
    return {m: imports(p, mods) - {m} for m, p in files.items()}


def import_closure(start: set[str], graph: dict[str, set[str]]) -> set[str]:
    """Every ganzoo module reachable from `start` (packages' __init__ included)."""
    seen, todo = set(), list(start)
    while todo:
        m = todo.pop()
        if m in seen:
            continue
        seen.add(m)
        todo += graph.get(m, ())
        parent = m.rpartition(".")[0]  # importing a.b.c runs a/__init__ and a/b/__init__ first
        if parent:
            todo.append(parent)
    return seen
