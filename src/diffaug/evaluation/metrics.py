"""Per-image segmentation metrics: Dice, IoU, sensitivity, FNR, specificity.

Computed per test image from MONAI's metric functions (not hand-rolled), then averaged over
images, as the field reports them. Conventions for degenerate images, chosen so that nothing
divides by zero:
- Dice / IoU with an empty ground truth: 1 when the prediction is empty too, else 0 (MONAI
  `ignore_empty=False`): a correct "nothing here" is a perfect segmentation. The rule lives in
  `diffaug.overlap`, shared with the validator and the segmenter's validation Dice.
- sensitivity / FNR with an empty ground truth, specificity with no background pixels:
  undefined (NaN per image); the averages skip them and say how many were skipped; when every
  image is undefined the average is null with a reason (see `aggregate.py`).
Multi-class masks (fundus: 1 = disc rim, 2 = cup) are scored one-vs-rest per foreground class;
the headline value of an image is the mean over its foreground classes.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from monai.metrics import compute_confusion_matrix_metric, get_confusion_matrix

from diffaug.errors import InputError
from diffaug.overlap import overlap_per_class

METRICS = ("dice", "iou", "sensitivity", "fnr", "specificity")
# MONAI's names for the confusion-matrix metrics (monai.metrics.compute_confusion_matrix_metric).
_CM_NAMES = {"sensitivity": "sensitivity", "fnr": "miss rate", "specificity": "specificity"}


def _one_hot(masks: np.ndarray, num_classes: int) -> torch.Tensor:
    """(N, H, W) class indices -> (N, C, H, W) float one-hot, as MONAI's metrics expect."""
    t = torch.from_numpy(np.ascontiguousarray(masks)).long()
    return torch.nn.functional.one_hot(t, num_classes).permute(0, 3, 1, 2).float()


def slug(name: str) -> str:
    """Class name as a metric-key fragment: 'disc rim' -> 'disc_rim'."""
    return "".join(ch if ch.isalnum() else "_" for ch in str(name).strip().lower())


def check_masks(pred: np.ndarray, gt: np.ndarray, num_classes: int, what: str = "prediction") -> None:
    """Shapes equal and class indices within [0, num_classes): else one-line InputError."""
    if pred.shape != gt.shape or pred.ndim != 3:
        raise InputError(
            f"{what}: masks of shape {tuple(pred.shape)} do not match the test split's {tuple(gt.shape)}; "
            "retrain the segmenter on the current prepared data"
        )
    for name, arr in ((what, pred), ("test split", gt)):
        if arr.size and (int(arr.max()) >= num_classes or int(arr.min()) < 0):
            raise InputError(
                f"{name}: class index {int(arr.max())} outside [0, {num_classes - 1}] of the fingerprint's "
                f"{num_classes} classes; rerun prepare and train_segmenter"
            )


def per_class_metrics(pred: np.ndarray, gt: np.ndarray, num_classes: int) -> dict[str, np.ndarray]:
    """Each metric as an (N, C-1) float array over foreground classes; NaN where undefined."""
    check_masks(pred, gt, num_classes)
    out = {key: overlap_per_class(pred, gt, num_classes, key) for key in ("dice", "iou")}
    cm = get_confusion_matrix(_one_hot(pred, num_classes), _one_hot(gt, num_classes), include_background=False)
    for key, monai_name in _CM_NAMES.items():  # cm (N, C-1, 4): tp, fp, tn, fn
        out[key] = compute_confusion_matrix_metric(monai_name, cm).double().numpy().reshape(len(pred), num_classes - 1)
    return out


def per_image_table(
    pred: np.ndarray, gt: np.ndarray, ids: np.ndarray, class_names: list[str]
) -> pd.DataFrame:
    """One row per test image: `id`, the five metrics (mean over foreground classes) and, with
    more than one foreground class, `<metric>_<class name>` per class."""
    num_classes = len(class_names)
    if num_classes < 2:
        raise InputError("fingerprint.json: class_names must list background and at least one lesion class; rerun prepare")
    values = per_class_metrics(pred, gt, num_classes)
    table = pd.DataFrame({"id": [str(i) for i in ids]})
    for key in METRICS:
        arr = values[key]
        with np.errstate(all="ignore"):
            # mean over defined classes; an image where no class is defined stays NaN (no warning)
            defined = ~np.isnan(arr)
            table[key] = np.where(defined.any(1), np.nansum(arr, 1) / np.maximum(defined.sum(1), 1), np.nan)
        if num_classes > 2:
            for c, name in enumerate(class_names[1:]):
                table[f"{key}_{slug(name)}"] = arr[:, c]
    return table
