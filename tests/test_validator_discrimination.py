"""The discrimination measures of the gate on hand-made masks: moved masks leave the lesion,
AUC counts right pairs above wrong ones, and a perfect predictor accepts right / rejects moved."""

from __future__ import annotations

import numpy as np
import pytest

from diffaug.validator.discrimination import auc, discrimination_metrics, moved_away


def _squares(n: int = 4, size: int = 32) -> np.ndarray:
    masks = np.zeros((n, size, size), np.uint8)
    for i in range(n):
        y, x = 2 + 3 * i, 4 + 2 * i
        masks[i, y:y + 6, x:x + 6] = 1
    return masks


def test_moved_masks_keep_their_area_and_leave_the_lesion():
    masks = _squares()
    masks[3, :, :] = 0
    masks[3, 10:22, 10:22] = 1  # a central lesion: the half shift still overlaps it, a quarter shift is used
    moved = moved_away(masks)
    assert (moved.sum((1, 2)) == masks.sum((1, 2))).all()
    overlap = ((moved > 0) & (masks > 0)).sum((1, 2)) / masks.sum((1, 2))
    assert (overlap <= 0.1).all(), overlap


def test_auc_counts_pairs_and_ties():
    assert auc(np.array([0.9, 0.8]), np.array([0.1, 0.2])) == 1.0
    assert auc(np.array([0.1]), np.array([0.9])) == 0.0
    assert auc(np.array([0.5, 0.9]), np.array([0.5])) == pytest.approx(0.75)
    assert np.isnan(auc(np.array([]), np.array([0.1])))


def test_perfect_and_empty_predictions():
    masks = _squares()
    masks = np.concatenate([masks, np.zeros_like(masks[:1])])  # a frame without lesion is left out
    perfect = discrimination_metrics(masks.copy(), masks, 1, [0.5, 0.7])
    assert perfect["disc_n"] == 4
    assert perfect["disc_iou_right_mean"] == 1.0 and perfect["disc_iou_moved_mean"] == 0.0
    assert perfect["disc_auc"] == 1.0
    assert perfect["disc_accept_right_70"] == 1.0 and perfect["disc_reject_moved_70"] == 1.0
    empty = discrimination_metrics(np.zeros_like(masks), masks, 1, [0.5])
    assert empty["disc_accept_right_50"] == 0.0 and empty["disc_reject_moved_50"] == 1.0
    assert empty["disc_auc"] == 0.5  # all ties: no discrimination


def test_acceptance_of_right_masks_per_group():
    masks = _squares()
    pred = masks.copy()
    pred[2:] = 0  # the last two lesions (the "small" ones here) are missed
    out = discrimination_metrics(pred, masks, 1, [0.5], groups=np.array(["large", "large", "small", "small"]))
    assert out["disc_n_large"] == 2 and out["disc_n_small"] == 2
    assert out["disc_accept_right_50_large"] == 1.0 and out["disc_accept_right_50_small"] == 0.0
    assert out["disc_accept_right_50"] == 0.5
    assert "disc_n_small" not in discrimination_metrics(pred, masks, 1, [0.5])
