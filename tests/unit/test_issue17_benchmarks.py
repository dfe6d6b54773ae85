"""The pieces of issue 17's measurements that can be checked without a GPU or MNIST: InfoGAN's
matched-accuracy scoring from a checkpoint, the study's run order, scaling and verdict, and the
quality benchmark's BEGAN-CS row and targets."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from benchmarks import common, quality
from benchmarks.studies import infogan_study as study
from ganzoo.config import load_config
from ganzoo.evaluation.classifier import SmallCNN
from ganzoo.training.loop import train_loop
from tests.helpers import make_prepared


def test_matched_accuracy_matches_codes_one_to_one():
    codes = torch.arange(10).repeat_interleave(20)
    perm = torch.randperm(10, generator=torch.Generator().manual_seed(1))
    assert common.matched_code_accuracy(codes, perm[codes], 10, 10) == 1.0
    assert common.matched_code_accuracy(codes, torch.full_like(codes, 3), 10, 10) == pytest.approx(0.1)
    table = common.code_class_table(torch.tensor([0, 0, 1]), torch.tensor([2, 2, 0]), 2, 3)
    assert table.tolist() == [[0, 0, 2], [1, 0, 0]]


def test_infogan_code_scores_from_a_checkpoint(in_tmp):
    cfg = load_config(None, ["variant=infogan", "model.infogan.arch=dcgan", "model.infogan.ngf=8",
                             "model.infogan.ndf=8", "model.infogan.z_dim=8", "model.infogan.q_hidden=8",
                             "train.steps=2", "train.batch_size=4", "train.progress=false", "tracking.enabled=false"])
    ckpt = train_loop(cfg, make_prepared(n=8, size=16)).checkpoint
    classifier = SmallCNN(1, 10, width=4)
    scores = common.infogan_code_scores(ckpt, classifier, "cpu", per_code=6)
    assert 0.1 <= scores["matched_accuracy"] <= 1.0
    assert torch.tensor(scores["table"]).sum(1).tolist() == [6] * 10
    for j in (1, 2):
        assert scores[f"c{j}_change"] >= 0 and 0 <= scores[f"c{j}_class_kept"] <= 1


def test_study_runs_the_defaults_first_then_one_seed_of_every_change():
    runs = [(s.name, seed) for s, seed in study.order(study.GRID)]
    assert runs[:3] == [("default", 0), ("default", 1), ("default", 2)]
    first_seeds = runs[3:3 + len(study.GRID) - 1]
    assert {seed for _, seed in first_seeds} == {0} and len({n for n, _ in first_seeds}) == len(study.GRID) - 1
    assert len(runs) == sum(len(s.seeds) for s in study.GRID)
    long = study.BY_NAME["long"]
    assert long.resume_from == "default" and long.steps > study.BY_NAME["default"].steps


def test_study_scaling_and_verdict():
    small = study.scaled(study.BY_NAME["default"], 0.01)
    assert (small.steps, small.scores) == (50, (25, 50))
    results = [{"setting": "default", "seed": s, "points": [{"step": 50, "matched_accuracy": a}],
                "final_metrics": {"fid_classifier": 10.0, "modes_covered": 10}}
               for s, a in enumerate([0.97, 0.9, 0.96])]
    summary = study.summarise(results, [small])
    assert summary["settings"]["default"]["matched_accuracy"] == {"50": {0: 0.97, 1: 0.9, 2: 0.96}}
    assert "2 of 3 seeds >= 0.95" in summary["verdict"]
    assert "| default |" in study.markdown(summary)


def test_quality_began_cs_row_is_began_with_the_constraint_in_its_own_folder(tmp_path):
    args = quality.parse_args(["--device", "cpu", "--cuda-graphs"])
    cfg = quality.row_config("began_cs", args, tmp_path, tmp_path / "runs")
    assert cfg.variant == "began" and cfg.model["began"]["constrained"] is True
    assert Path(cfg.train.out_dir).parent == tmp_path / "runs" / "began_cs"
    assert not cfg.train.cuda_graphs  # BEGAN cannot be captured
    assert quality.row_config("dcgan", args, tmp_path, tmp_path / "runs").train.cuda_graphs
    assert quality.TARGETS["began"] == {} and quality.TARGETS["began_cs"] == {"mode_coverage": 0.9}


def test_quality_began_cs_verdict_compares_with_plain_began():
    rows = [{"variant": v, "seed": s, "metrics": {"fid_classifier": f, "modes_covered": c}}
            for v, s, f, c in [("began", 0, 300.0, 9), ("began", 1, 1100.0, 2), ("began_cs", 0, 250.0, 10)]]
    assert quality.began_cs_verdict(rows) == \
        "began_cs digits covered (seed 0: 10/10); FID 250.0; plain BEGAN's best 300.0"
    assert quality.began_cs_verdict(rows[:2]) is None
