"""Per-sample overlap between predicted and intended masks (eq. 14) and Dice.

For multi-class masks (fundus: 1 = disc rim, 2 = cup) the overlap is computed per foreground
class present in either mask and averaged ("mean_foreground"), or on the union of foreground
classes ("union"). A pair in which neither mask has any foreground counts as a perfect match (1.0):
nothing was asked and nothing was found.
"""

from __future__ import annotations

import numpy as np


def _per_class(pred: np.ndarray, target: np.ndarray, num_classes: int, combine: str, kind: str) -> np.ndarray:
    """pred, target: (N, H, W) class indices -> (N,) IoU or Dice."""
    pred = pred.reshape(len(pred), -1)
    target = target.reshape(len(target), -1)
    if combine == "union" or num_classes == 1:
        groups = [(pred >= 1, target >= 1)]
    else:
        groups = [(pred == k, target == k) for k in range(1, num_classes + 1)]
    scores, present = [], []
    for p, g in groups:
        inter = (p & g).sum(1).astype(np.float64)
        ps, gs = p.sum(1).astype(np.float64), g.sum(1).astype(np.float64)
        denom = ps + gs - inter if kind == "iou" else ps + gs
        num = inter if kind == "iou" else 2 * inter
        with np.errstate(invalid="ignore", divide="ignore"):
            scores.append(np.where(denom > 0, num / np.maximum(denom, 1e-12), 0.0))
        present.append(denom > 0)
    s, m = np.stack(scores, 1), np.stack(present, 1)
    n = m.sum(1)
    return np.where(n > 0, (s * m).sum(1) / np.maximum(n, 1), 1.0)


def mask_iou(pred: np.ndarray, target: np.ndarray, num_classes: int = 1, combine: str = "mean_foreground") -> np.ndarray:
    """IoU(M_i, D(M_hat)) of eq. 14 per sample, (N,) floats in [0, 1]."""
    return _per_class(np.asarray(pred), np.asarray(target), num_classes, combine, "iou")


def mask_dice(pred: np.ndarray, target: np.ndarray, num_classes: int = 1, combine: str = "mean_foreground") -> np.ndarray:
    """Dice = 2|P∩G| / (|P| + |G|) per sample, (N,)."""
    return _per_class(np.asarray(pred), np.asarray(target), num_classes, combine, "dice")
