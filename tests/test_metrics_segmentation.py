"""Per-image clinical metrics (MONAI-backed) against hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from diffaug.errors import InputError
from diffaug.evaluation.metrics import per_class_metrics, per_image_table

NAMES = ["background", "lesion"]


def _mask(*cells: tuple[int, int], size: int = 4, cls: int = 1) -> np.ndarray:
    m = np.zeros((size, size), np.uint8)
    for y, x in cells:
        m[y, x] = cls
    return m


GT = _mask((0, 0), (0, 1), (1, 0), (1, 1))  # 4 lesion pixels of 16


def _row(pred: np.ndarray, gt: np.ndarray) -> dict:
    return per_image_table(pred[None], gt[None], np.array(["x"]), NAMES).iloc[0].to_dict()


def test_perfect_prediction():
    r = _row(GT, GT)
    assert r["dice"] == r["iou"] == r["sensitivity"] == r["specificity"] == pytest.approx(1.0)
    assert r["fnr"] == pytest.approx(0.0)


def test_disjoint_prediction():
    pred = _mask((2, 2), (2, 3), (3, 2), (3, 3))
    r = _row(pred, GT)
    assert r["dice"] == pytest.approx(0.0) and r["iou"] == pytest.approx(0.0)
    assert r["sensitivity"] == pytest.approx(0.0) and r["fnr"] == pytest.approx(1.0)
    assert r["specificity"] == pytest.approx(8 / 12)  # 4 false positives among 12 negatives


def test_partial_overlap():
    pred = _mask((0, 0), (0, 1), (3, 3), (3, 2))  # 2 true positives, 2 false positives
    r = _row(pred, GT)
    assert r["dice"] == pytest.approx(2 * 2 / (4 + 4))
    assert r["iou"] == pytest.approx(2 / 6)
    assert r["sensitivity"] == pytest.approx(0.5) and r["fnr"] == pytest.approx(0.5)
    assert r["specificity"] == pytest.approx(10 / 12)


def test_empty_prediction():
    r = _row(np.zeros_like(GT), GT)
    assert r["dice"] == pytest.approx(0.0) and r["sensitivity"] == pytest.approx(0.0)
    assert r["fnr"] == pytest.approx(1.0) and r["specificity"] == pytest.approx(1.0)


def test_empty_ground_truth_is_undefined_not_division_by_zero():
    empty = np.zeros_like(GT)
    both = _row(empty, empty)
    assert both["dice"] == pytest.approx(1.0) and both["iou"] == pytest.approx(1.0)  # correct "nothing here"
    assert math.isnan(both["sensitivity"]) and math.isnan(both["fnr"])
    assert both["specificity"] == pytest.approx(1.0)
    false_alarm = _row(GT, empty)
    assert false_alarm["dice"] == pytest.approx(0.0) and math.isnan(false_alarm["sensitivity"])
    assert false_alarm["specificity"] == pytest.approx(12 / 16)


def test_two_classes_scored_per_class_and_averaged():
    gt = np.zeros((4, 4), np.uint8)
    gt[0] = 1  # disc rim: row 0
    gt[1] = 2  # cup: row 1
    pred = np.zeros_like(gt)
    pred[0] = 1
    pred[1, :2] = 2  # half the cup
    pred[1, 2:] = 1  # the other half called rim
    names = ["background", "disc rim", "cup"]
    per_class = per_class_metrics(pred[None], gt[None], 3)
    assert per_class["dice"][0].tolist() == pytest.approx([2 * 4 / (6 + 4), 2 * 2 / (2 + 4)])
    row = per_image_table(pred[None], gt[None], np.array(["f"]), names).iloc[0]
    assert row["dice_disc_rim"] == pytest.approx(0.8) and row["dice_cup"] == pytest.approx(2 / 3)
    assert row["dice"] == pytest.approx((0.8 + 2 / 3) / 2)
    assert row["sensitivity_cup"] == pytest.approx(0.5) and row["fnr_cup"] == pytest.approx(0.5)


def test_batch_rows_follow_ids():
    preds = np.stack([GT, np.zeros_like(GT)])
    table = per_image_table(preds, np.stack([GT, GT]), np.array(["a", "b"]), NAMES)
    assert table["id"].tolist() == ["a", "b"]
    assert table["dice"].tolist() == pytest.approx([1.0, 0.0])


def test_bad_masks_are_one_line_input_errors():
    with pytest.raises(InputError, match="do not match"):
        per_image_table(GT[None, :2], GT[None], np.array(["x"]), NAMES)
    with pytest.raises(InputError, match="class index 2"):
        per_image_table((GT * 2)[None], GT[None], np.array(["x"]), NAMES)
