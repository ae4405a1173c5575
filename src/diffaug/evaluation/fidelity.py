"""Do the accepted synthetic labels cover what was painted? As a segmenter of real pairs sees it.

The baseline runs (`evaluate.baseline`, e.g. standard) never saw a synthetic pair. Their
prediction on an accepted sample is compared with the sample's intended mask:

- `area_ratio`: predicted lesion area / intended area (median over samples); 1 = the painted
  lesion has the mask's extent, > 1 = lesion-looking tissue spreads beyond the label;
- `outside`: lesion area predicted outside the mask / the mask's area (median): the part a
  diffaug segmenter is taught to call background although it looks like lesion.

The same figures on the real test lesions are the reference: the baseline's own bias (small
lesions are over-segmented at 64 px even when real). Each figure is the mean over the baseline's
seeds of the per-seed median, per size class. Why it matters: docs/zoom.md, "What the painted
small lesions teach".
"""

from __future__ import annotations

from typing import Any

import numpy as np

SETS = ("accepted", "test")
CLASSES = ("all", "small", "large")


def extent(pred: np.ndarray, mask: np.ndarray) -> tuple[float, float]:
    """pred, mask (N, H, W) bool, every mask non-empty -> (median area ratio, median outside share)."""
    area = mask.sum(axis=(1, 2)).astype(np.float64)
    ratio = pred.sum(axis=(1, 2)) / area
    outside = (pred & ~mask).sum(axis=(1, 2)) / area
    return float(np.median(ratio)), float(np.median(outside))


def label_fidelity(preds: dict[str, list[np.ndarray]], masks: dict[str, np.ndarray],
                   small: dict[str, np.ndarray], lesion_class: int) -> dict[str, Any]:
    """preds[set]: one (N, H, W) class-index prediction per baseline seed; masks[set] (N, H, W)
    class indices; small[set] (N,) bool size class. -> flat `fidelity_*` keys (null where a class
    has no lesion)."""
    out: dict[str, Any] = {"fidelity_seeds": min((len(p) for p in preds.values()), default=0)}
    for name in SETS:
        truth = masks[name] == lesion_class
        has = truth.any(axis=(1, 2))
        for cls in CLASSES:
            keep = has & (small[name] if cls == "small" else ~small[name] if cls == "large" else True)
            out[f"fidelity_n_{name}_{cls}"] = int(keep.sum())
            figures = [extent(p[keep] == lesion_class, truth[keep]) for p in preds[name]] if keep.any() else []
            out[f"fidelity_area_ratio_{name}_{cls}"] = float(np.mean([f[0] for f in figures])) if figures else None
            out[f"fidelity_outside_{name}_{cls}"] = float(np.mean([f[1] for f in figures])) if figures else None
    return out
