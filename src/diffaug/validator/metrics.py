"""Per-sample overlap between predicted and intended masks (eq. 14) and Dice, by the rule of
`diffaug.overlap` (the one `evaluate` reports).

For multi-class masks (fundus: 1 = disc rim, 2 = cup) the overlap is computed per foreground
class and averaged over all of them ("mean_foreground"; a class absent from both masks scores 1),
or on the union of foreground classes ("union"). A pair in which neither mask has any foreground
counts as a perfect match (1.0): nothing was asked and nothing was found.
"""

from __future__ import annotations

import numpy as np

from diffaug.overlap import overlap_per_image


def _per_sample(pred: np.ndarray, target: np.ndarray, num_classes: int, combine: str, kind: str) -> np.ndarray:
    """pred, target: (N, H, W) class indices, `num_classes` foreground classes -> (N,) IoU or Dice."""
    pred, target = np.asarray(pred), np.asarray(target)
    if combine == "union" or num_classes == 1:  # every foreground class is one region
        return overlap_per_image(pred >= 1, target >= 1, 2, kind)
    return overlap_per_image(pred, target, num_classes + 1, kind)  # + 1: background


def mask_iou(pred: np.ndarray, target: np.ndarray, num_classes: int = 1, combine: str = "mean_foreground") -> np.ndarray:
    """IoU(M_i, D(M_hat)) of eq. 14 per sample, (N,) floats in [0, 1]."""
    return _per_sample(pred, target, num_classes, combine, "iou")


def mask_dice(pred: np.ndarray, target: np.ndarray, num_classes: int = 1, combine: str = "mean_foreground") -> np.ndarray:
    """Dice = 2|P∩G| / (|P| + |G|) per sample, (N,)."""
    return _per_sample(pred, target, num_classes, combine, "dice")
