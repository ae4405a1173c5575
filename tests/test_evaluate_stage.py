"""The evaluate stage: scoring constructed predictions, undefined cases, and the CLI end to end
on a tiny prepared split with segmenters saved by train_segmenter's own code."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from diffaug.cli import app
from diffaug.evaluation.config import EvaluateConfig
from diffaug.evaluation.runner import RunPrediction, evaluate_predictions
from diffaug.evaluation.significance import verdict
from diffaug.io import save_npz, write_json

FP = {"family": "polyp", "class_names": ["background", "polyp"], "small_area_frac": 0.05}
SIZE = 32


def _split(n: int, rng: np.random.Generator, lesions: bool = True):
    images = rng.integers(60, 200, (n, SIZE, SIZE, 3), dtype=np.uint8)
    masks = np.zeros((n, SIZE, SIZE), np.uint8)
    yy, xx = np.mgrid[:SIZE, :SIZE]
    for i in range(n if lesions else 0):
        r = 3 if i % 3 == 0 else 7  # every third lesion small (< 5% of 1024 px)
        cy, cx = rng.integers(9, 23, 2)
        masks[i][(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = 1
    ids = np.array([f"t{i:02d}" for i in range(n)])
    return images, masks, ids


def _noisy(gt: np.ndarray, p: float, rng: np.random.Generator) -> np.ndarray:
    out = gt.copy()
    flip = rng.random(gt.shape) < p
    out[flip] = 1 - out[flip]
    return out


def test_better_predictions_score_better_and_are_significant():
    rng = np.random.default_rng(0)
    _, gt, ids = _split(24, rng)
    manifest = pd.DataFrame({"id": ids, "flat": [i % 4 == 0 for i in range(24)]})
    runs = [
        RunPrediction(f"{v}-r{r:g}-s{s}", v, r, s, _noisy(gt, p, rng))
        for v, r, p in (("none", 0, 0.3), ("standard", 0, 0.15), ("copypaste", 1, 0.15), ("diffaug", 1, 0.03))
        for s in (0, 1)
    ]
    ev = evaluate_predictions(gt, ids, manifest, FP, runs, EvaluateConfig(bootstrap_resamples=200), seed=0)
    m = ev.metrics
    assert list(ev.groups) == ["none", "standard", "copypaste-r1", "diffaug-r1"]
    assert m["none"]["dice_mean"] < m["standard"]["dice_mean"] < m["diffaug-r1"]["dice_mean"]
    assert m["diffaug-r1"]["n_seeds"] == 2 and m["diffaug-r1"]["dice_std"] >= 0
    assert m["standard"]["n_small"] == 8 and m["standard"]["n_lesions"] == 24 and m["standard"]["n_flat"] == 6
    assert m["standard"]["fnr_small_status"].startswith("few lesions: 8")
    assert "fnr_early_glaucoma" not in m["standard"]  # polyp data: no glaucoma class
    sig = m["significance"]
    assert set(sig) == {"copypaste-r1_vs_standard", "diffaug-r1_vs_standard", "diffaug-r1_vs_copypaste-r1"}
    d = sig["diffaug-r1_vs_standard"]
    # two paired seeds: runs and images resampled together; every resample above 0 gives the
    # smallest p-value 200 resamples can give, 2 / 201; over images alone it is far smaller
    assert d["test"] == "runs_and_images" and d["n_runs"] == 2 and d["p_value"] == pytest.approx(2 / 201)
    assert d["ci_low"] > 0 and d["p_value_images"] < 0.001 and d["verdict"].startswith("better")
    assert "none_vs_standard" not in sig  # augmentations are judged against standard, `none` is not one
    det = m["detection_significance"]  # the same comparisons, per ground-truth lesion and lesion class
    assert set(det) == set(sig) and set(det["diffaug-r1_vs_standard"]) == {"lesions", "small", "flat"}
    d = det["diffaug-r1_vs_standard"]["lesions"]
    assert d["n_lesions"] == 24 and d["fnr_diff"] == pytest.approx(m["diffaug-r1"]["fnr_lesions"] - m["standard"]["fnr_lesions"])
    assert len(ev.per_image) == 8 * 24 and len(ev.lesions) == 8 * 24


def test_test_split_without_lesions_is_stated_undefined():
    rng = np.random.default_rng(1)
    _, gt, ids = _split(5, rng, lesions=False)
    runs = [RunPrediction("standard-r0-s0", "standard", 0, 0, np.zeros_like(gt))]
    m = evaluate_predictions(gt, ids, None, FP, runs, EvaluateConfig(), seed=0).metrics["standard"]
    assert m["dice_mean"] == pytest.approx(1.0)  # nothing to find, nothing predicted
    assert m["sensitivity_mean"] is None and m["sensitivity_status"].startswith("undefined: no lesion pixels")
    assert m["fnr_small"] is None and m["fnr_small_status"] == "undefined: no small lesion in the test split"
    assert m["n_lesions"] == 0 and m["dice_std"] is None and m["std_status"].startswith("undefined: 1 seed")


def test_report_states_verdict_beside_status_and_keeps_detection_table():
    """p = 0.034 with a CI that includes 0 is "not shown", not "ok"; the status column stays."""
    from diffaug.evaluation.report import render_report

    rng = np.random.default_rng(3)
    _, gt, ids = _split(12, rng)
    runs = [RunPrediction(f"{v}-s0", v, r, 0, _noisy(gt, p, rng)) for v, r, p in (("standard", 0, 0.1), ("diffaug", 1, 0.1))]
    ev = evaluate_predictions(gt, ids, None, FP, runs, EvaluateConfig(bootstrap_resamples=200), seed=0)
    ev.metrics["significance"]["diffaug-r1_vs_standard"].update(
        p_value=0.034, mean_diff=0.026, ci_low=-0.002, ci_high=0.054, status="ok",
        verdict="not shown: p = 0.034 but the 95 % CI includes 0")
    report = render_report(ev.metrics, ev.groups, {})
    row = next(line for line in report.splitlines() if line.startswith("| diffaug-r1_vs_standard |"))
    assert row.startswith("| diffaug-r1_vs_standard | 0.026 | [-0.002, 0.054] | 0.034 | ")
    assert row.endswith("| not shown: p = 0.034 but the 95 % CI includes 0 | ok |")
    assert "Lesion detection, paired per ground-truth lesion" in report  # the table after it stays
    assert report.index("## Significance") < report.index("Lesion detection, paired per ground-truth lesion")


def test_supply_comes_from_the_runs_training_summaries():
    rng = np.random.default_rng(4)
    _, gt, ids = _split(8, rng)
    runs = [
        RunPrediction("standard-s0", "standard", 0, 0, gt, training={"n_real": 50, "n_extra": 0}),
        # a folder written before the synthetic_* keys: derived from n_real / n_extra
        RunPrediction("diffaug-r3-s0", "diffaug", 3, 0, gt, training={"n_real": 50, "n_extra": 9}),
        RunPrediction("diffaug-r3-s1", "diffaug", 3, 1, gt, training={
            "n_real": 50, "n_extra": 9, "synthetic_requested": 150, "synthetic_used": 9, "synthetic_shortfall": True}),
        RunPrediction("copypaste-r3-s0", "copypaste", 3, 0, gt, training={"n_real": 50, "n_extra": 150}),
        RunPrediction("diffaug-r0.5-s0", "diffaug", 0.5, 0, gt),  # no summary: nothing claimed
    ]
    ev = evaluate_predictions(gt, ids, None, FP, runs, EvaluateConfig(bootstrap_resamples=200), seed=0)
    m = ev.metrics
    assert (m["diffaug-r3"]["synthetic_requested"], m["diffaug-r3"]["synthetic_used"], m["diffaug-r3"]["synthetic_shortfall"]) == (150, 9, True)
    assert (m["copypaste-r3"]["synthetic_used"], m["copypaste-r3"]["synthetic_shortfall"]) == (150, False)
    assert "synthetic_used" not in m["standard"] and "synthetic_used" not in m["diffaug-r0.5"]
    from diffaug.evaluation.report import render_report

    report = render_report(m, ev.groups, {})
    assert "Extra training pairs used of requested (ratio × real training pairs): diffaug-r3 9 of 150; copypaste-r3 150 of 150." in report
    assert "**diffaug-r3 trained on 9 of the 150 extra pairs it asked for**" in report
    assert "copypaste-r3 trained on" not in report


@pytest.mark.parametrize(
    "n_seeds,expected",
    [([1, 1], "one seed, no spread"), ([5, 5, 5], "mean ± std over 5 seeds"),
     ([1, 3], "mean ± std over 1–3 seeds (no whisker where one seed)"), ([2, 4], "mean ± std over 2–4 seeds")],
)
def test_variant_chart_says_what_it_draws(tmp_path, n_seeds, expected):
    from diffaug.evaluation.figures import variant_bars

    groups = pd.DataFrame({"group": [f"g{i}" for i in range(len(n_seeds))], "n_seeds": n_seeds,
                           "dice_mean": np.linspace(0.3, 0.6, len(n_seeds)),
                           "dice_std": [None if n == 1 else 0.02 for n in n_seeds]})
    label = variant_bars(groups, tmp_path / "v.png")
    assert label == f"Dice (mean over test images; {expected})" and (tmp_path / "v.png").is_file()
    assert "over seeds" not in label


def _write_prepared(root, rng):
    images, masks, ids = _split(6, rng)
    save_npz(root / "test.npz", images=images, masks=masks, ids=ids)
    rows = [{"id": i, "split": "test", "source": "t", "family": "polyp", "lesion_area_frac": float((m > 0).mean()),
             "size_class": "small", "contrast": 0.1, "flat": False, "cdr": None} for i, m in zip(ids, masks, strict=True)]
    pd.DataFrame(rows).to_csv(root / "manifest.csv", index=False)
    write_json(root / "fingerprint.json", {**FP, "num_classes": 2, "image_size": SIZE})


def _save_runs(seg_dir, runs, training=None):
    """Run folders as train_segmenter writes them; `training` maps a folder name to the
    run.json `training` summary it gets (none by default)."""
    import torch

    from diffaug.segmenter.models import SegmenterNet, save_segmenter

    for k, (variant, ratio, seed) in enumerate(runs):
        torch.manual_seed(k)
        net = SegmenterNet(architecture="unet", num_classes=2, image_size=SIZE, channels=[4, 8])
        name = f"{variant}-r{ratio:g}-s{seed}"
        meta = {"variant": variant, "ratio": ratio, "seed": seed}
        if training and name in training:
            meta["training"] = training[name]
        save_segmenter(seg_dir / name, net, meta)


@pytest.fixture
def workdir(tmp_path, write_params):
    rng = np.random.default_rng(2)
    (tmp_path / "prepared").mkdir()
    _write_prepared(tmp_path / "prepared", rng)
    # diffaug-r2 asked for 2 x 20 real training pairs; the gate had accepted 9
    _save_runs(tmp_path / "seg", [("none", 0, 0), ("standard", 0, 0), ("diffaug", 2, 0)], training={
        "none-r0-s0": {"variant": "none", "n_real": 20, "n_extra": 0, "synthetic_requested": 0,
                       "synthetic_used": 0, "synthetic_shortfall": False},
        "diffaug-r2-s0": {"variant": "diffaug", "n_real": 20, "n_extra": 9, "synthetic_requested": 40,
                          "synthetic_used": 9, "synthetic_shortfall": True},
    })
    params = write_params({
        "base": {"seed": 0, "device": "cpu"},
        "train_segmenter": {"runs": ["none-r0", "standard-r0", "diffaug-r2"], "seeds": [0]},
        "evaluate": {"bootstrap_resamples": 200, "worst_cases": 2},
    })
    args = ["evaluate", "--params", str(params), "--prepared", str(tmp_path / "prepared"),
            "--segmenters", str(tmp_path / "seg"), "--gated", str(tmp_path / "gated"),
            "--out", str(tmp_path / "evaluate"), "--metrics", str(tmp_path / "metrics.json")]
    return tmp_path, args, params


def test_cli_end_to_end_writes_metrics_tables_pictures_report(workdir):
    tmp, args, _ = workdir
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    m = json.loads((tmp / "metrics.json").read_text())
    for group in ("none", "standard", "diffaug-r2"):
        for key in ("dice_mean", "iou_mean", "sensitivity_mean", "fnr_mean", "specificity_mean", "fnr_small", "n_small"):
            assert key in m[group]
        assert 0.0 <= m[group]["dice_mean"] <= 1.0
    assert "diffaug-r2_vs_standard" in m["significance"]
    assert m["synthetic"]["status"].startswith("unavailable: no gate output")
    out = tmp / "evaluate"
    for name in ("per_image.csv", "lesions.csv", "runs.csv", "variants.csv", "ratio.csv", "report.md",
                 "plots/variants.png", "plots/ratio.png", "overlays/worst_diffaug-r2.png"):
        assert (out / name).is_file(), name
    report = (out / "report.md").read_text()
    assert "## Segmentation (table 2)" in report and "overlays/worst_standard.png" in report
    assert pd.read_csv(out / "per_image.csv").shape[0] == 3 * 6
    assert "evaluate: diffaug-r2" in res.output
    # the verdict beside the status, in metrics, report and output
    sig = m["significance"]["diffaug-r2_vs_standard"]
    assert sig["verdict"] == verdict(sig["p_value"], sig["ci_low"], sig["ci_high"], 0.95, status=sig["status"])
    assert "| comparison | mean ΔDice | CI | p-value | Δ per seed | p (images) | wins / losses | verdict | status |" in report
    row = next(line for line in report.splitlines() if line.startswith("| diffaug-r2_vs_standard |"))
    assert row.endswith(f"| {sig['verdict']} | {sig['status']} |")
    assert f": {sig['verdict']} ({sig['status']})" in res.output
    # the shortfall of extra pairs, from the run folders' training summaries
    assert {k: m["diffaug-r2"][k] for k in ("synthetic_requested", "synthetic_used", "synthetic_shortfall")} == {
        "synthetic_requested": 40, "synthetic_used": 9, "synthetic_shortfall": True}
    assert "synthetic_used" not in m["none"] and "synthetic_used" not in m["standard"]
    assert "**diffaug-r2 trained on 9 of the 40 extra pairs it asked for**: the gate accepted only 9" in report
    assert "diffaug-r2     trained on 9 of 40 requested extra pairs" in res.output


def test_cli_reports_label_fidelity_of_the_accepted_pairs(workdir):
    """Accepted pairs that are the test frames themselves: the baseline's view of them must equal
    its view of the test split, figure by figure (same predictions, same size classes)."""
    tmp, args, _ = workdir
    test = np.load(tmp / "prepared" / "test.npz")
    (tmp / "gated").mkdir()
    save_npz(tmp / "gated" / "accepted.npz", images=test["images"], masks=test["masks"], ids=test["ids"],
             pred_masks=test["masks"])
    pd.DataFrame({"sample_id": test["ids"], "background_id": test["ids"], "iou": 0.8}).to_csv(tmp / "gated" / "accepted.csv", index=False)
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    syn = json.loads((tmp / "metrics.json").read_text())["synthetic"]
    assert syn["fidelity_seeds"] == 1 and syn["fidelity_n_accepted_small"] > 0 and syn["fidelity_n_accepted_large"] > 0
    for key in ("area_ratio", "outside"):
        for cls in ("all", "small", "large"):
            assert syn[f"fidelity_{key}_accepted_{cls}"] == syn[f"fidelity_{key}_test_{cls}"] is not None
    assert "Label fidelity, as the standard runs" in (tmp / "evaluate" / "report.md").read_text()


def test_cli_missing_run_is_one_line_error_and_writes_nothing(workdir):
    tmp, args, params = workdir
    params.write_text(params.read_text().replace("diffaug-r2", "diffaug-r3"))
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 1
    assert "diffaug-r3-s0" in res.output and "run `dvc repro train_segmenter`" in res.output
    assert "Traceback" not in res.output
    assert not (tmp / "evaluate").exists() and not (tmp / "metrics.json").exists()


def test_cli_bad_params_exit_2(workdir):
    tmp, args, params = workdir
    params.write_text(params.read_text().replace("worst_cases: 2", "worst_cases: 2\n  detect_fraction: 0"))
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 2 and "evaluate.detect_fraction" in res.output
    params.write_text(params.read_text().replace("detect_fraction: 0", "detect_fraction: 0.5").replace("diffaug-r2", "magic-r1"))
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 2 and "unknown variant 'magic'" in res.output


def _random_segmenter(size=16, seed=3):
    import torch

    from diffaug.segmenter.models import Segmenter, SegmenterNet

    torch.manual_seed(seed)
    net = SegmenterNet(architecture="unet", num_classes=2, image_size=size, channels=[4, 8])
    return Segmenter(net, {})


def test_test_time_views_average_the_mapped_back_views():
    """views 1 is the plain prediction; 2 is the mean of the image's and its mirror's probabilities
    (the mirror's mapped back); with 4 views the prediction of a mirrored or half-turned image is
    the mirrored / turned prediction, which a random network alone does not give."""
    from diffaug.evaluation.runner import predict_views, view_proba

    seg = _random_segmenter()
    images = np.random.default_rng(0).integers(0, 256, (5, 16, 16, 3), dtype=np.uint8)
    assert np.array_equal(predict_views(seg, images, 1), seg.predict(images))
    two = (seg.predict_proba(images) + seg.predict_proba(np.ascontiguousarray(images[:, :, ::-1]))[..., ::-1]) / 2
    np.testing.assert_allclose(view_proba(seg, images, 2), two, atol=1e-6)
    for turn in (lambda a: a[:, :, ::-1], lambda a: a[:, ::-1, ::-1]):  # left-right mirror, 180°
        np.testing.assert_allclose(view_proba(seg, np.ascontiguousarray(turn(images)), 4),
                                   turn(view_proba(seg, images, 4).transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2), atol=1e-6)
        plain = seg.predict_proba(np.ascontiguousarray(turn(images)))
        assert not np.allclose(plain, turn(seg.predict_proba(images).transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2), atol=1e-3)
    rect = np.random.default_rng(1).integers(0, 256, (2, 16, 24, 3), dtype=np.uint8)  # non-square: 4 views at most
    np.testing.assert_allclose(view_proba(seg, rect, 8), view_proba(seg, rect, 4), atol=1e-6)


def test_cli_scores_with_test_time_views(workdir):
    tmp, args, params = workdir
    plain = CliRunner().invoke(app, args)
    assert plain.exit_code == 0, plain.output
    before = pd.read_csv(tmp / "evaluate" / "per_image.csv")
    assert json.loads((tmp / "metrics.json").read_text())["views"] == 1
    assert "test-time views" not in (tmp / "evaluate" / "report.md").read_text()
    params.write_text(params.read_text().replace("worst_cases: 2", "worst_cases: 2\n  views: 4"))
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    assert json.loads((tmp / "metrics.json").read_text())["views"] == 4
    assert "averaged over 4 test-time views" in (tmp / "evaluate" / "report.md").read_text()
    after = pd.read_csv(tmp / "evaluate" / "per_image.csv")
    assert not np.allclose(before["dice"], after["dice"])  # the random runs read the views differently
    params.write_text(params.read_text().replace("views: 4", "views: 3"))
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 2 and "evaluate.views" in res.output and "Traceback" not in res.output
