"""dvc.yaml, params.yaml and .gitignore agree with the code, so that DVC's own views work: every
variant's section can be set with `dvc exp run -S`, every loss column is plotted, only scores are
metrics, each revision carries its metrics and plots, and switching `variant` keeps `prepare`."""

from __future__ import annotations

import shutil
import subprocess

import pytest
import yaml

from ganzoo import stages
from ganzoo.config import load_config
from ganzoo.data.prepared import prepared_path
from ganzoo.training.loop import train_loop
from ganzoo.variants import registry
from tests.helpers import SRC
from tests.unit.test_contract import prepared, small

REPO = SRC.parent
PARAMS_TEXT = (REPO / "params.yaml").read_text()
PARAMS = yaml.safe_load(PARAMS_TEXT)
DVC = yaml.safe_load((REPO / "dvc.yaml").read_text())

# params.yaml's documented departures from a variant's paper defaults (each line says `paper:`).
DEPARTURES = {"dcgan": {"ngf": 32, "ndf": 32}}


def defaults(name: str) -> dict:
    return registry.get_variant(name).HParams.model_validate({}).model_dump(mode="json")


def test_params_file_has_a_complete_section_per_variant():
    """`dvc exp run -S model.X.key=v` can only change keys that exist in params.yaml."""
    assert sorted(PARAMS["model"]) == sorted(registry.names())
    for name in registry.names():
        assert set(PARAMS["model"][name]) == set(defaults(name)), f"model.{name}: keys differ from the variant's"


@pytest.mark.parametrize("name", registry.names())
def test_params_file_sections_are_the_paper_defaults_or_say_so(name):
    section = {k: list(v) if isinstance(v, tuple) else v for k, v in PARAMS["model"][name].items()}
    expected = {**defaults(name), **DEPARTURES.get(name, {})}
    assert section == expected, (f"params.yaml model.{name} differs from {name}'s defaults; write them back "
                                 f"(or document the departure here and in params.yaml): {defaults(name)}")
    lines = section_lines(name)
    for key in DEPARTURES.get(name, {}):
        [line] = [x for x in lines if x.strip().startswith(f"{key}:")]
        assert "paper:" in line, f"model.{name}.{key}: the departure needs a `# paper: ...` note in params.yaml"


def section_lines(name: str) -> list[str]:
    """The lines of params.yaml's model.<name> section."""
    lines = PARAMS_TEXT.splitlines()
    body = lines[lines.index(f"  {name}:") + 1:]
    return body[:next((i for i, x in enumerate(body) if not x.startswith("    ")), len(body))]


def test_params_file_resolves_for_every_variant():
    for name in registry.names():
        cfg = registry.resolve(load_config(REPO / "params.yaml", [f"variant={name}"]))
        assert cfg.model[name] == {**defaults(name), **DEPARTURES.get(name, {})}


def test_loss_plots_name_every_column_the_loop_writes(in_tmp):
    """DVC draws only the last column unless `y` names them, and fails on a name the file lacks."""
    plots = {next(iter(p)): next(iter(p.values())) for p in DVC["plots"]}
    for name in registry.names():
        history = train_loop(small(name, ["train.steps=1"]), prepared(registry.get_variant(name))).history
        spec = plots[f"{name} losses"]
        assert spec["x"] == "step"
        assert spec["y"] == {f"${{train.metrics_dir}}/{name}/losses.csv": [c for c in history[0] if c != "step"]}


def test_metrics_are_one_stable_scores_file():
    evaluate = DVC["stages"]["evaluate"]
    [metrics] = evaluate["metrics"]
    path, spec = next(iter(metrics.items()))
    assert "${variant}" not in path and spec == {"cache": False}  # same columns for every variant, in git
    assert evaluate["cmd"] == f"ganzoo evaluate --scores {path}"
    assert evaluate["plots"] == ["${eval.out_dir}/${variant}/sheets"]  # image plots, cached


def test_scores_keep_numbers_that_judge_the_model():
    metrics = {"variant": "dcgan", "source": "digits", "step": 1200, "n_samples": 2000, "eval_seed": 1234,
               "feature_dim": 128, "primary_metric": "fid_classifier", "primary_higher_is_better": False,
               "fid_classifier": 256.46, "modes_covered": 10.0, "classifier_accuracy": 0.996, "kid_classifier_std": 0}
    assert stages.scores(metrics) == {"fid_classifier": 256.46, "modes_covered": 10.0,
                                      "classifier_accuracy": 0.996, "kid_classifier_std": 0}


@pytest.fixture
def ignore_rules(tmp_path):
    if shutil.which("git") is None:
        pytest.skip("git not installed")
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    shutil.copy(REPO / ".gitignore", tmp_path / ".gitignore")

    def ignored(path: str) -> bool:
        return subprocess.run(["git", "check-ignore", "-q", "--no-index", path], cwd=tmp_path).returncode == 0

    return ignored


def test_each_revision_keeps_its_metrics_and_plots_in_git(ignore_rules):
    for path in ("eval/scores.json", "metrics/dcgan/losses.csv", "metrics/wgan_gp/losses.csv"):
        assert not ignore_rules(path), f"{path} is git-ignored: experiments would lose it"
    for path in ("eval/dcgan/sheets/samples.png", "eval/dcgan/metrics.json", "checkpoints/dcgan/last.pt",
                 "data/prepared/digits-32/data.pt", "mlflow.db", "dvc_plots/index.html"):
        assert ignore_rules(path), f"{path} is not git-ignored"


def test_switching_variant_does_not_rerun_prepare():
    prepare, classifier = DVC["stages"]["prepare"], DVC["stages"]["classifier"]
    assert prepare["params"] == ["data"] and prepare["cmd"] == "ganzoo prepare --all-variants"
    assert "variant" in classifier["params"]  # which dataset to fit, when data.source=auto


def test_prepare_all_prepares_what_every_variant_reads(in_tmp):
    cfg = load_config(None, ["data.image_size=8", "data.limit=80", "train.batch_size=8"])
    made = stages.prepare_all(cfg)
    assert sorted(p.manifest["source"] for p in made) == ["digits", "digits_paired", "digits_unpaired"]
    for name in registry.names():  # whichever variant is chosen next, its data is there
        assert prepared_path(registry.resolve(cfg.model_copy(update={"variant": name})).data).is_dir()
    only = stages.prepare_all(cfg.model_copy(update={"data": cfg.data.model_copy(update={"source": "digits"})}))
    assert [p.manifest["source"] for p in only] == ["digits"]
