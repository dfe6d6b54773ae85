"""dvc.yaml tells the truth: every stage depends on the code its command runs (the modules the
stage function imports, directly or lazily, and everything those import), so a change to that
code re-runs the stage under `dvc repro`."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

from tests.helpers import SRC, import_closure, import_graph, imports

REPO = SRC.parent
# `ganzoo <command>` -> the stage function it calls (cli.py holds no logic of its own).
COMMANDS = {"prepare": "prepare", "classifier": "fit_classifier", "train": "train", "evaluate": "evaluate"}


def stage_modules(command: str) -> set[str]:
    """Modules `ganzoo <command>` runs: the CLI's and stages.py's module-level imports, the imports
    inside `cli.cmd_<command>`, inside the stage function and the stages.py helpers it calls, and
    everything those modules import (lazily or not)."""
    graph = import_graph()
    mods = set(graph)
    own = {}
    for module, fn in (("cli", f"cmd_{command}"), ("stages", COMMANDS[command])):
        path = SRC / "ganzoo" / f"{module}.py"
        tree = ast.parse(path.read_text())
        defs = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}
        found = _imports_of(ast.Module(body=[n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))],
                                       type_ignores=[]), path, mods)
        todo, done = [fn], set()
        while todo:
            name = todo.pop()
            if name in done:
                continue
            done.add(name)
            found |= _imports_of(defs[name], path, mods)
            todo += [c.func.id for c in ast.walk(defs[name])
                     if isinstance(c, ast.Call) and isinstance(c.func, ast.Name) and c.func.id in defs]
        own[f"ganzoo.{module}"] = found
    graph.update(own)  # the two front modules: only what this command runs
    # The registry imports the variant modules by name (importlib): edges the AST cannot see.
    from ganzoo.variants.registry import REGISTRY

    graph["ganzoo.variants.registry"] = graph["ganzoo.variants.registry"] | {
        target.partition(":")[0] for target in REGISTRY.values()}
    return import_closure({"ganzoo.cli"}, graph)


def _imports_of(node: ast.AST, path: Path, mods: set[str]) -> set[str]:
    tmp = ast.Module(body=[node] if not isinstance(node, ast.Module) else node.body, type_ignores=[])
    src = ast.unparse(tmp)
    scratch = path.with_name(".deps_scan.py")
    try:  # reuse the import resolver on just this node's source
        scratch.write_text(src)
        return imports(scratch, mods)
    finally:
        scratch.unlink(missing_ok=True)


def module_file(module: str) -> Path:
    base = SRC / Path(*module.split("."))
    return (base / "__init__.py" if base.is_dir() else base.with_suffix(".py")).relative_to(REPO)


def covered(file: Path, deps: list[str]) -> bool:
    return any(file == Path(d) or Path(d) in file.parents for d in deps)


STAGES = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_stage_deps_cover_the_code_it_runs(stage):
    spec = STAGES[stage]
    command = spec["cmd"].split()[1]
    assert spec["cmd"].split()[0] == "ganzoo" and command in COMMANDS, spec["cmd"]
    deps = [d for d in spec.get("deps", []) if d.startswith("src/")]
    missing = sorted(str(module_file(m)) for m in stage_modules(command)
                     if not covered(module_file(m), deps))
    assert not missing, f"dvc.yaml stage {stage!r} runs code it does not depend on: {missing}"


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_stage_deps_name_only_code_it_runs(stage):
    """No superfluous code dep: each one holds a module the command runs (else edits there would
    re-run the stage for nothing)."""
    spec = STAGES[stage]
    files = {module_file(m) for m in stage_modules(spec["cmd"].split()[1])}
    unused = [d for d in spec.get("deps", []) if d.startswith("src/") and not any(covered(f, [d]) for f in files)]
    assert not unused, f"dvc.yaml stage {stage!r} depends on code it does not run: {unused}"


def test_a_missing_dep_is_caught():
    """The check can fail: the train stage without its variants folder misses them."""
    files = {module_file(m) for m in stage_modules("train")}
    assert Path("src/ganzoo/variants/dcgan.py") not in files or not covered(
        Path("src/ganzoo/variants/dcgan.py"), ["src/ganzoo/training"])
    assert any(str(f).startswith("src/ganzoo/variants/") for f in files)
