"""Dice and IoU of predicted against true masks, per image and foreground class: the one rule
every stage scores masks with (evaluate's test metrics, the segmenter's validation Dice, the
validator's validation Dice and the gate's IoU of eq. 14).

For image n and foreground class c, with P and G the pixels of class c in the prediction and in
the ground truth:

    Dice = 2 |P ∩ G| / (|P| + |G|),    IoU = |P ∩ G| / |P ∪ G|

computed by MONAI (`compute_dice` / `compute_iou`, `include_background=False`,
`ignore_empty=False`). A class absent from both masks scores 1 (a correct "nothing here"),
one absent from the ground truth only scores 0, and an image's score is the mean over ALL its
foreground classes, empty-empty ones included. That is the per-image Dice segmentation papers
report, so a fundus image without a cup in either mask counts its (perfect) cup as 1 in the
validator's Dice exactly as in `evaluate`'s.

Counts are summed in float64: exact integers and correctly rounded ratios, so two images with
different counts never tie by rounding (evaluate's Wilcoxon test compares per-image Dice).
"""

from __future__ import annotations

import numpy as np
import torch

KINDS = ("dice", "iou")
# pixels × classes per chunk of images: bounds the float64 one-hot tensors (2 × 128 MiB)
_CHUNK_VALUES = 2**24


def _one_hot(masks: np.ndarray | torch.Tensor, num_classes: int) -> torch.Tensor:
    """(N, *S) class indices -> (N, C, *S) float64 one-hot, as MONAI's metrics expect. One
    broadcast comparison with the class indices, contiguous along the pixels: F.one_hot puts the
    classes last, and moving them to axis 1 and summing over the strided result is ~3x slower."""
    t = torch.as_tensor(np.ascontiguousarray(masks)) if isinstance(masks, np.ndarray) else masks
    classes = torch.arange(num_classes, device=t.device).view(1, num_classes, *([1] * (t.dim() - 1)))
    return (t.unsqueeze(1).long() == classes).to(torch.float64)


def overlap_per_class(pred: np.ndarray | torch.Tensor, target: np.ndarray | torch.Tensor, num_classes: int,
                      kind: str = "dice") -> np.ndarray:
    """pred, target (N, H, W) class indices in [0, num_classes) (background 0 counted in
    `num_classes`) -> (N, num_classes - 1) float64 Dice or IoU per foreground class."""
    from monai.metrics import compute_dice, compute_iou

    if kind not in KINDS:
        raise ValueError(f"unknown overlap '{kind}'; allowed: {', '.join(KINDS)}")
    if tuple(pred.shape) != tuple(target.shape):
        raise ValueError(f"prediction {tuple(pred.shape)} and target {tuple(target.shape)} differ in shape")
    metric = compute_dice if kind == "dice" else compute_iou
    n = len(pred)
    per_image = max(1, int(np.prod(pred.shape[1:])) * num_classes)
    step = max(1, _CHUNK_VALUES // per_image)
    out = [metric(_one_hot(pred[i:i + step], num_classes), _one_hot(target[i:i + step], num_classes),
                  include_background=False, ignore_empty=False).double().cpu().numpy()
           for i in range(0, n, step)]
    return np.concatenate(out).reshape(n, num_classes - 1) if out else np.zeros((0, num_classes - 1))


def overlap_per_image(pred: np.ndarray | torch.Tensor, target: np.ndarray | torch.Tensor, num_classes: int,
                      kind: str = "dice") -> np.ndarray:
    """(N,) float64: the mean over foreground classes of `overlap_per_class` (empty-empty ones
    included, scoring 1)."""
    return overlap_per_class(pred, target, num_classes, kind).mean(axis=1)
