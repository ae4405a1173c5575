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


# ---- one Dice rule for the validator and evaluate (diffaug.overlap) --------------------------

FUNDUS = ["background", "disc rim", "cup"]


def _fundus_case() -> tuple[np.ndarray, np.ndarray]:
    """(5, 4, 4) predictions and ground truths, 0 = background, 1 = disc rim, 2 = cup."""
    pred, gt = np.zeros((2, 5, 4, 4), np.uint8)
    gt[0, 0], gt[0, 1] = 1, 2  # both classes: rim row 0, cup row 1
    pred[0, 0], pred[0, 1, :2], pred[0, 1, 2:] = 1, 2, 1  # half the cup called rim: rim 0.8, cup 2/3
    gt[1, 0, :2] = 1  # no cup in either mask: rim 2·2/(2+4) = 2/3, cup 1
    pred[1, 0] = 1
    gt[2, 3] = 2  # no rim in either mask: rim 1, cup 2·2/(4+2) = 2/3
    pred[2, 3, :2] = 2
    # image 3: nothing in either mask, every class 1
    gt[4, 0] = 1  # a cup predicted where there is none: rim 1, cup 0
    pred[4, 0] = 1
    pred[4, 3, 3] = 2
    return pred, gt


def test_validator_dice_and_iou_agree_with_evaluate_on_fundus():
    """The validator's val_dice / gate IoU and evaluate's per-image Dice / IoU are one rule: a
    class absent from both prediction and ground truth scores 1 and counts in the mean."""
    from diffaug.segmenter.train import validation_dice
    from diffaug.validator.metrics import mask_dice, mask_iou

    pred, gt = _fundus_case()
    table = per_image_table(pred, gt, np.array([f"f{i}" for i in range(len(gt))]), FUNDUS)
    expected = [(0.8 + 2 / 3) / 2, (2 / 3 + 1) / 2, (1 + 2 / 3) / 2, 1.0, (1 + 0) / 2]
    assert table["dice"].tolist() == pytest.approx(expected)
    assert table["dice_cup"].tolist() == pytest.approx([2 / 3, 1, 2 / 3, 1, 0])
    # the validator counts foreground classes (2), evaluate counts background too (3)
    np.testing.assert_array_equal(mask_dice(pred, gt, 2), table["dice"].to_numpy())
    np.testing.assert_array_equal(mask_iou(pred, gt, 2), table["iou"].to_numpy())
    assert mask_iou(pred, gt, 2)[1] == pytest.approx((2 / 4 + 1) / 2)
    assert validation_dice(pred, gt, 3) == pytest.approx(table["dice"].mean())


def test_union_and_binary_masks_keep_their_meaning():
    """`union` (and one foreground class) scores the merged foreground; both masks empty: 1."""
    from diffaug.validator.metrics import mask_dice, mask_iou

    pred, gt = _fundus_case()
    fg_p, fg_g = (pred >= 1).reshape(len(pred), -1), (gt >= 1).reshape(len(gt), -1)
    inter, sizes = (fg_p & fg_g).sum(1), fg_p.sum(1) + fg_g.sum(1)
    with np.errstate(invalid="ignore"):
        dice = np.where(sizes > 0, 2 * inter / sizes, 1.0)
        iou = np.where(sizes > 0, inter / (sizes - inter), 1.0)
    np.testing.assert_array_equal(mask_dice(pred, gt, 2, "union"), dice)
    np.testing.assert_array_equal(mask_iou(pred, gt, 2, "union"), iou)
    np.testing.assert_array_equal(mask_dice(pred, gt, 1), dice)  # one class: any foreground is the lesion
    assert mask_dice(pred[3:4], gt[3:4], 2, "union")[0] == 1.0


def test_overlap_is_chunked_without_changing_values(monkeypatch):
    """Large test splits are scored in chunks of images (bounded memory); per-image values do not
    depend on the chunking."""
    import diffaug.overlap as overlap

    pred, gt = _fundus_case()
    whole = overlap.overlap_per_class(pred, gt, 3)
    monkeypatch.setattr(overlap, "_CHUNK_VALUES", 2 * 16 * 3)  # two images per chunk
    np.testing.assert_array_equal(overlap.overlap_per_class(pred, gt, 3), whole)
    assert overlap.overlap_per_class(pred[:0], gt[:0], 3).shape == (0, 2)
