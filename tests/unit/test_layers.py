"""The import structure of src/ganzoo: no circles, and no module imports a layer above its own
(layers as in the design: config/errors/files at the bottom, the front ends at the top). Imports
inside functions count: a lazy import is still a dependency."""

from __future__ import annotations

import ast

import pytest

from tests.helpers import SRC
from tests.helpers import import_graph as graph

# Lowest first; a module may import its own layer or lower ones. Matched by longest prefix.
LAYERS = [
    ["ganzoo", "ganzoo.errors"],
    ["ganzoo.files"],
    ["ganzoo.config"],
    ["ganzoo.paths"],
    ["ganzoo.data"],
    ["ganzoo.nets", "ganzoo.losses", "ganzoo.image_pool"],
    ["ganzoo.variants"],
    ["ganzoo.sampling"],
    ["ganzoo.training"],
    ["ganzoo.evaluation"],
    ["ganzoo.tracking"],
    ["ganzoo.stages"],
    ["ganzoo.cli", "ganzoo.__main__"],
]


def layer(module: str) -> int:
    best, rank = -1, None
    for i, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best:
                best, rank = len(prefix), i
    assert rank is not None, f"{module} belongs to no layer; add it to LAYERS"
    return rank


def test_every_module_has_a_layer():
    for m in graph():
        layer(m)


def test_no_import_runs_up_a_layer():
    upward = [f"{m} (layer {layer(m)}) imports {d} (layer {layer(d)})"
              for m, deps in graph().items() for d in sorted(deps)
              if layer(d) > layer(m) and d != "ganzoo"]
    assert not upward, "\n".join(upward)


def test_no_import_circles():
    g = graph()
    circles, state = [], {}

    def visit(m, stack):
        state[m] = "open"
        stack.append(m)
        for d in sorted(g[m]):
            if state.get(d) == "open":
                circles.append(" -> ".join(stack[stack.index(d):] + [d]))
            elif d not in state:
                visit(d, stack)
        stack.pop()
        state[m] = "done"

    for m in sorted(g):
        if m not in state:
            visit(m, [])
    assert not circles, "\n".join(circles)


@pytest.mark.parametrize("module", ["ganzoo.variants", "ganzoo.nets", "ganzoo.data"])
def test_low_layers_import_no_orchestration(module):
    """variants/, nets/, data/ never import mlflow, prefect, dvc or the CLI."""
    banned = ("mlflow", "prefect", "dvc", "ganzoo.cli")
    for path in SRC.joinpath(*module.split(".")).rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            for name in names:
                assert not name.startswith(banned), f"{path} imports {name}"
