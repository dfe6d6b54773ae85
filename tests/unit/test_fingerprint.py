"""Metric fingerprints: stable for the same evaluation, sensitive to each of their parts; and the
feature space of unlabelled data (rotation), evaluated end to end on a tiny untrained generator."""

from __future__ import annotations

import pytest
import torch

from ganzoo.config import load_config
from ganzoo.evaluation import fingerprint
from ganzoo.evaluation.aggregate import aggregate
from ganzoo.evaluation.features import FeatureError
from ganzoo.evaluation.rotation import all_rotations, train_rotation_net
from ganzoo.evaluation.run import evaluate_synthesis
from ganzoo.training.loop import data_spec
from ganzoo.variants import registry as variants
from tests.helpers import make_prepared

PARTS = {"extractor": "net sha256=ab layer=embed dim=8", "input": "uint8", "reference": "digits train count=10",
         "generated": "100", "seed": "1", "estimator": "kid 10x5"}


def test_fingerprint_is_stable_and_each_part_changes_it():
    a = fingerprint.make(["fid_x"], **PARTS)
    assert a == fingerprint.make(["fid_x"], **dict(reversed(PARTS.items())))  # order of parts does not matter
    assert len(a["hash"]) == fingerprint.HASH_CHARS and fingerprint.differences(a, a) == []
    hashes = {a["hash"]}
    for part in fingerprint.PARTS:
        b = fingerprint.make(["fid_x"], **{**PARTS, part: PARTS[part] + " changed"})
        assert fingerprint.differences(a, b) == [part]
        hashes.add(b["hash"])
    assert len(hashes) == len(fingerprint.PARTS) + 1
    assert fingerprint.differences(a, None) == list(fingerprint.PARTS)  # no fingerprint: nothing comparable


def test_dvc_metrics_diff_shows_a_fingerprint_change():
    from dvc.utils.diff import diff  # what `dvc metrics diff` computes, on metrics.json's layout

    old = {"fid_classifier": 30.0, "fingerprint": {"classifier": fingerprint.make(["fid_classifier"], **PARTS)}}
    new_fp = fingerprint.make(["fid_classifier"], **{**PARTS, "generated": "500"})
    new = {"fid_classifier": 33.0, "fingerprint": {"classifier": new_fp}}
    changes = diff({"eval/dcgan/metrics.json": {"data": old}}, {"eval/dcgan/metrics.json": {"data": new}})
    shown = changes["eval/dcgan/metrics.json"]
    assert shown["fingerprint.classifier.generated"] == {"old": "100", "new": "500"}
    assert "fingerprint.classifier.hash" in shown and "fid_classifier" in shown


def tiny_cfg(tmp_path, *extra):
    return load_config(None, ["variant=dcgan", "model.dcgan.ngf=8", "model.dcgan.ndf=8", "model.dcgan.z_dim=8",
                              "model.infogan.ngf=8", "model.infogan.ndf=8", "model.infogan.z_dim=8",
                              "eval.n_samples=40", "eval.batch_size=40", "eval.classifier_steps=5",
                              "eval.kid_subset_size=16", "eval.bootstrap=10", f"eval.classifier_dir={tmp_path}",
                              *extra])


def evaluate(tmp_path, prep, *extra):
    cfg = variants.resolve(tiny_cfg(tmp_path, *extra))
    torch.manual_seed(0)  # the untrained generator's weights
    variant = variants.build(cfg, data_spec(prep), "cpu")
    return evaluate_synthesis(cfg, variant, prep, "cpu", tmp_path / "eval")


@pytest.fixture(scope="module")
def labelled():
    return make_prepared(n=60, size=16, seed=3)


def test_evaluation_fingerprints_are_stable_and_name_what_changed(tmp_path, labelled):
    base = evaluate(tmp_path, labelled)
    assert set(base["fingerprint"]) == {"classifier", "classes"}
    fp = base["fingerprint"]["classifier"]
    assert base["fingerprint_classifier"] == fp["hash"]
    assert "fid_classifier" in fp["metrics"].split() and "fid_classifier_ci_low" in fp["metrics"].split()
    assert "class_kl" in base["fingerprint"]["classes"]["metrics"].split()
    assert "rounded to uint8" in fp["input"] and "content=syn3" in fp["reference"] and "sha256=" in fp["extractor"]
    assert evaluate(tmp_path, labelled)["fingerprint"] == base["fingerprint"]  # same inputs, same hashes

    changed = {"eval.seed=7": {"seed", "reference"},  # the real subset is drawn with the eval seed
               "eval.n_samples=30": {"generated", "reference"},  # a smaller seeded real subset too
               "eval.kid_subset_size=12": {"estimator"},
               "eval.classifier_steps=6": {"extractor"},
               "eval.bootstrap=0": {"estimator"}}
    for setting, parts in changed.items():
        other = evaluate(tmp_path, labelled, setting)["fingerprint"]["classifier"]
        assert set(fingerprint.differences(fp, other)) == parts, setting
    other_data = evaluate(tmp_path, make_prepared(n=60, size=16, seed=4))["fingerprint"]["classifier"]
    assert {"reference", "extractor"} <= set(fingerprint.differences(fp, other_data))


def test_unlabelled_colour_images_get_a_stated_rotation_space_and_no_class_metrics(tmp_path):
    photos = make_prepared(n=60, size=16, channels=3, labels=False, seed=5)
    with pytest.raises(FeatureError, match="eval.features=rotation"):
        evaluate(tmp_path, photos, "eval.features=classifier")  # never silently a classifier
    m = evaluate(tmp_path, photos)  # eval.features=auto
    assert m["primary_metric"] == "fid_rotation" and m["fid_rotation"] > 0
    assert 0 <= m["rotation_accuracy"] <= 1 and m["fid_rotation_ci_low"] <= m["fid_rotation"]
    assert set(m["fingerprint"]) == {"rotation"} and "rotation" in m["fingerprint"]["rotation"]["extractor"]
    # Metrics that need labels are absent, never zero.
    assert not {"mode_coverage", "modes_covered", "class_kl", "classifier_accuracy", "fid_classifier"} & set(m)
    info = evaluate(tmp_path, photos, "variant=infogan")  # codes, but no classes to match them with
    assert "infogan_traversal_change_c1" in info and "pixels" in info["fingerprint"]
    assert "infogan_code_accuracy" not in info and "infogan_majority_purity" not in info


def test_rotation_net_learns_rotations_of_structured_images():
    x = torch.zeros(200, 1, 16, 16, dtype=torch.uint8)
    x[:, :, 2:5, 3:13] = 255  # a bar at the top, a dot at the left: which way is up is visible
    x[:, :, 8:11, 2:4] = 255
    x = torch.roll(x, 1, -1) // torch.randint(1, 3, (200, 1, 1, 1), generator=torch.Generator().manual_seed(0))
    rotated, labels = all_rotations(x[:2])
    assert rotated.shape == (8, 1, 16, 16) and labels.tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    assert torch.equal(rotated[2], torch.rot90(x[0], 1, dims=(-2, -1)))
    model, acc = train_rotation_net(x, steps=60)
    assert acc > 0.9 and model.arch["num_classes"] == 4


def test_seeds_aggregate_into_mean_std_and_interval_and_refuse_mixed_fingerprints():
    fp_a = {"classifier": fingerprint.make(["fid_classifier"], **PARTS)}
    runs = [{"fid_classifier": v, "step": 10, "fid_classifier_ci_low": v - 1, "fingerprint": fp_a,
             "checkpoint": f"ck{i}.pt"} for i, v in enumerate([10.0, 12.0, 14.0])]
    out = aggregate(runs, 0.95)
    fid = out["fid_classifier"]
    assert fid["mean"] == 12.0 and fid["std"] == pytest.approx(2.0) and fid["n"] == 3
    # t(0.975, 2) = 4.303: 12 +- 4.303 * 2 / sqrt(3)
    assert fid["ci_low"] == pytest.approx(12 - 4.9686, abs=1e-3) and fid["ci_high"] == pytest.approx(16.9686, abs=1e-3)
    assert "step" not in out and "fid_classifier_ci_low" not in out and out["runs"]["2"]["from"] == "ck2.pt"
    other = {"classifier": fingerprint.make(["fid_classifier"], **{**PARTS, "generated": "500"})}
    with pytest.raises(Exception, match="generated"):
        aggregate([*runs[:2], {**runs[2], "fingerprint": other}])


def test_aggregate_command_reads_metrics_files(tmp_path, capsys):
    import json

    from ganzoo.evaluation.aggregate import main

    fp = {"classifier": fingerprint.make(["fid_classifier"], **PARTS)}
    files = []
    for i, v in enumerate([3.0, 5.0]):
        files.append(tmp_path / f"s{i}" / "metrics.json")
        files[-1].parent.mkdir()
        files[-1].write_text(json.dumps({"fid_classifier": v, "fingerprint": fp}))
    assert main([str(f) for f in files] + ["--out", str(tmp_path / "agg.json")]) == 0
    out = json.loads((tmp_path / "agg.json").read_text())
    assert out["fid_classifier"]["mean"] == 4.0 and out["runs"]["1"]["from"] == str(files[1])
    assert main([str(files[0])]) == 2 and "at least 2" in capsys.readouterr().err


def test_auto_takes_the_classifier_only_for_labels_of_ten_classes_or_more():
    from ganzoo.evaluation.features import AUTO_MIN_CLASSES, resolve_space

    assert AUTO_MIN_CLASSES == 10
    assert resolve_space("auto", make_prepared(classes=10)) == "classifier"
    assert resolve_space("auto", make_prepared(classes=2)) == "rotation"  # e.g. photos: which photo, little else
    assert resolve_space("auto", make_prepared(labels=False)) == "rotation"
    assert resolve_space("classifier", make_prepared(classes=2)) == "classifier"  # asked for, it is used
