"""Lesion-level detection (connected components) and paired significance on constructed data."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from diffaug.evaluation.lesions import lesion_fnr, lesion_table
from diffaug.evaluation.significance import paired_comparison, verdict


def _square(m: np.ndarray, y: int, x: int, side: int, cls: int = 1) -> None:
    m[y : y + side, x : x + side] = cls


@pytest.fixture
def scene():
    """Two 20x20 images (area 400). Image a: a small lesion (3x3 = 2.25%) and a large one
    (8x8 = 16%); image b (flat): one large lesion (6x6 = 9%)."""
    gt = np.zeros((2, 20, 20), np.uint8)
    _square(gt[0], 1, 1, 3)
    _square(gt[0], 10, 10, 8)
    _square(gt[1], 5, 5, 6)
    pred = np.zeros_like(gt)
    pred[0, 10:18, 10:14] = 1  # covers exactly half of the large lesion, misses the small one
    pred[1, 5:7, 5:11] = 1  # covers 12/36 = 1/3 of b's lesion
    manifest = pd.DataFrame({"id": ["a", "b"], "flat": ["False", "True"], "cdr": [np.nan, np.nan]})
    return gt, pred, manifest


def test_lesions_counted_classified_and_found(scene):
    gt, pred, manifest = scene
    table = lesion_table(pred, gt, np.array(["a", "b"]), manifest, 1, 0.05, 0.5)
    assert len(table) == 3
    assert table["area_px"].tolist() == [9, 64, 36]
    assert table["small"].tolist() == [True, False, False]
    assert table["flat"].tolist() == [False, False, True]
    assert table["covered"].tolist() == pytest.approx([0.0, 0.5, 1 / 3])
    assert table["found"].tolist() == [False, True, False]  # 0.5 >= detect_fraction 0.5 is found
    fnr = lesion_fnr(table)
    assert fnr["lesions"] == (pytest.approx(2 / 3), 3)
    assert fnr["small"] == (pytest.approx(1.0), 1)
    assert fnr["flat"] == (pytest.approx(1.0), 1)
    fnr_eg, n_eg = fnr["early_glaucoma"]
    assert n_eg == 0 and math.isnan(fnr_eg)  # undefined, not a division by zero


def test_detect_fraction_and_diagonal_connectivity(scene):
    gt, pred, manifest = scene
    loose = lesion_table(pred, gt, np.array(["a", "b"]), manifest, 1, 0.05, 0.3)
    assert loose["found"].tolist() == [False, True, True]
    diag = np.zeros((1, 6, 6), np.uint8)
    diag[0, 1, 1] = diag[0, 2, 2] = 1  # touching corners: one lesion (8-connectivity)
    assert len(lesion_table(diag, diag, np.array(["d"]), None, 1, 0.05, 0.5)) == 1


def test_early_glaucoma_from_cdr_and_cup_class():
    gt = np.zeros((3, 16, 16), np.uint8)
    gt[:, 2:14, 2:14] = 1  # disc rim
    gt[:, 6:10, 6:10] = 2  # cup
    pred = gt.copy()
    pred[1][pred[1] == 2] = 1  # image 1: cup missed
    manifest = pd.DataFrame({"id": ["n", "e", "g"], "flat": [False] * 3, "cdr": [0.3, 0.55, 0.8]})
    table = lesion_table(pred, gt, np.array(["n", "e", "g"]), manifest, 2, 0.05, 0.5, (0.5, 0.6))
    assert table["early_glaucoma"].tolist() == [False, True, False]
    assert lesion_fnr(table)["early_glaucoma"] == (pytest.approx(1.0), 1)


def test_significance_detects_a_consistent_improvement():
    rng = np.random.default_rng(0)
    base = rng.uniform(0.4, 0.8, 40)
    better = base + 0.05 + rng.normal(0, 0.01, 40)
    res = paired_comparison(better, base, seed=1, resamples=500)
    assert res["status"] == "ok" and res["n_images"] == 40
    assert res["p_value"] < 1e-6
    assert res["ci_low"] < res["mean_diff"] < res["ci_high"] and res["ci_low"] > 0.03
    assert res["verdict"] == "better (p < 0.05, 95 % CI above 0)"
    assert paired_comparison(better, base, seed=1, resamples=500) == res  # seeded bootstrap
    worse = paired_comparison(base, better, seed=1, resamples=500, confidence=0.9)
    assert worse["verdict"] == "worse (p < 0.05, 90 % CI below 0)"


def test_significance_of_noise_is_not_significant():
    rng = np.random.default_rng(1)
    a = rng.uniform(0.4, 0.8, 40)
    res = paired_comparison(a + rng.normal(0, 0.02, 40), a, seed=0, resamples=500)
    assert res["p_value"] > 0.05 and res["ci_low"] < 0 < res["ci_high"]
    assert res["status"] == "ok" and res["verdict"].startswith("no difference shown (p = ")


def test_significance_degenerate_inputs_are_null_with_reason():
    same = np.linspace(0, 1, 10)
    res = paired_comparison(same, same, seed=0)
    assert res["p_value"] is None and res["status"].startswith("undefined: every paired difference is zero")
    assert res["verdict"] == "no difference: identical predictions"
    res = paired_comparison(np.array([0.5, np.nan]), np.array([0.4, 0.3]), seed=0)
    assert res["p_value"] is None and res["n_images"] == 1 and "need at least 2" in res["status"]
    assert res["verdict"] == "not tested (see status)"


@pytest.mark.parametrize(
    "p,low,high,expected",
    [
        (0.001, 0.01, 0.05, "better (p < 0.05, 95 % CI above 0)"),
        (0.001, -0.05, -0.01, "worse (p < 0.05, 95 % CI below 0)"),
        # the case that was called "ok": the test says yes, the CI says maybe
        (0.034, -0.002, 0.054, "not shown: p = 0.034 but the 95 % CI includes 0"),
        (0.08, 0.001, 0.04, "not shown: the 95 % CI is above 0 but p = 0.08 ≥ 0.05"),
        (0.46, -0.036, 0.040, "no difference shown (p = 0.46, 95 % CI includes 0)"),
        (0.05, 0.01, 0.05, "not shown: the 95 % CI is above 0 but p = 0.05 ≥ 0.05"),  # p < alpha, strictly
        (None, None, None, "not tested (see status)"),
    ],
)
def test_verdict_reads_p_value_and_ci_together(p, low, high, expected):
    assert verdict(p, low, high) == expected


def test_paired_detection_sign_test():
    from diffaug.evaluation.significance import paired_detection

    a = np.array([1.0] * 30 + [0.0] * 10)  # a finds 30 of 40
    b = np.array([0.0] * 12 + [1.0] * 18 + [0.0] * 10)  # b misses 12 of those
    res = paired_detection(a, b)
    assert res["status"] == "ok" and (res["wins"], res["losses"]) == (12, 0)
    assert res["fnr_a"] == pytest.approx(0.25) and res["fnr_b"] == pytest.approx(0.55)
    assert res["fnr_diff"] == pytest.approx(-0.30) and res["p_value"] < 0.001  # 2 x 0.5^12
    even = paired_detection(np.array([1.0, 0.0, 0.6, 0.4]), np.array([0.0, 1.0, 0.4, 0.6]))
    assert (even["wins"], even["losses"]) == (2, 2) and even["p_value"] == pytest.approx(1.0)
    assert paired_detection(a, a)["p_value"] is None and "same lesions" in paired_detection(a, a)["status"]
    assert paired_detection(np.zeros(0), np.zeros(0))["status"].startswith("undefined: no lesion")


def _runs(offsets, n=80, noise=0.01, seed=0):
    """(S, N) per-image Dice of a variant and of its rival: each paired run s differs from the
    rival by its own offset on every image, plus a little image noise."""
    rng = np.random.default_rng(seed)
    base = rng.uniform(0.4, 0.8, (len(offsets), n))
    a = base + np.asarray(offsets, float)[:, None] + rng.normal(0, noise, base.shape)
    return a, base


def test_a_difference_the_runs_do_not_repeat_is_not_significant():
    """Five paired runs whose differences scatter around +0.01 (one training lucky, one not):
    over the seed-averaged images the Wilcoxon test calls it significant, because it treats
    the networks as fixed; resampling the runs as well does not, and says by how much they vary."""
    a, b = _runs([0.06, -0.04, 0.05, -0.03, 0.01])
    res = paired_comparison(a.mean(0), b.mean(0), seed=0, resamples=1000, runs=(a, b))
    assert res["p_value_images"] < 1e-6  # the image-level test alone
    assert res["test"] == "runs_and_images" and res["n_runs"] == 5
    assert res["p_value"] > 0.2 and res["ci_low"] < 0 < res["ci_high"]
    assert res["verdict"].startswith("no difference shown")
    assert (res["run_diff_min"], res["run_diff_max"]) == pytest.approx((-0.04, 0.06), abs=0.005)
    assert res["mean_diff"] == pytest.approx((a - b).mean())


def test_a_difference_every_run_repeats_stays_significant_over_runs():
    a, b = _runs([0.05, 0.04, 0.06, 0.05, 0.045])
    res = paired_comparison(a.mean(0), b.mean(0), seed=0, resamples=1000, runs=(a, b))
    assert res["test"] == "runs_and_images" and res["p_value"] == pytest.approx(2 / 1001)  # no resample at or below 0
    assert 0.03 < res["ci_low"] < res["mean_diff"] < res["ci_high"] < 0.07
    assert res["verdict"] == "better (p < 0.05, 95 % CI above 0)"
    assert paired_comparison(a.mean(0), b.mean(0), seed=0, resamples=1000, runs=(a, b)) == res  # seeded
    # one paired run (or none): the image-level test is all there is
    one = paired_comparison(a.mean(0), b.mean(0), seed=0, resamples=1000, runs=(a[:1], b[:1]))
    assert one["test"] == "images" and one["p_value"] == one["p_value_images"] and "n_runs" not in one


def test_paired_detection_over_runs_counts_runs_that_disagree():
    """Lesions found per run: a finds 6 more lesions than b in two of four runs and 6 fewer in
    the other two, so no difference; a gap of 6 lesions in every run is significant."""
    from diffaug.evaluation.significance import paired_detection

    b = np.zeros((4, 40))
    b[:, :20] = 1
    swing = b.copy()
    swing[0, 20:26] = swing[1, 20:26] = 1
    swing[2, :6] = swing[3, :6] = 0
    res = paired_detection(swing.mean(0), b.mean(0), runs=(swing, b), seed=0, resamples=1000)
    assert res["test"] == "runs_and_lesions" and res["n_runs"] == 4 and res["p_value"] > 0.2
    assert res["ci_low"] < 0 < res["ci_high"]
    steady = b.copy()
    steady[:, 20:26] = 1
    res = paired_detection(steady.mean(0), b.mean(0), runs=(steady, b), seed=0, resamples=1000)
    assert res["fnr_diff"] == pytest.approx(-0.15) and res["ci_high"] < 0 and res["p_value"] < 0.05
    assert res["p_value_lesions"] == pytest.approx(2 * 0.5 ** 6)  # the sign test over the 6 lesions
