"""Lesion-level detection for the hard cases of table 3: small lesions, flat / low-contrast
lesions, early glaucoma.

A lesion is one 8-connected component of the ground-truth lesion class (scipy.ndimage.label).
It is *found* when the prediction of that class covers at least `detect_fraction` of its pixels.
The false-negative rate of a class of lesions is missed / total; with no lesion in the class it
is undefined (null with a reason), never a division by zero.

Classes (a lesion can be in several; `lesions` = all of them):
- `small`: component area < `small_area_frac` of the image area (default 5%, the fingerprint's
  threshold). The paper's class is "< 5 mm"; at an endoscope's typical field of view a 5 mm
  polyp spans a few percent of the frame, so the area fraction stands in for millimetres when
  no pixel spacing is known (docs/evaluation.md).
- `flat`: the image is flagged `flat` in manifest.csv (prepare: lesion-vs-surround contrast
  below `prepare.flat_contrast`, i.e. flat or low-contrast lesions).
- `early_glaucoma`: fundus images whose cup-to-disc ratio (manifest `cdr`) is in the
  `early_glaucoma_cdr` range (paper 0.5-0.6); the lesion is the cup.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import ndimage

LESION_CLASSES = ("lesions", "small", "flat", "early_glaucoma")  # "lesions" = every lesion
_EIGHT = np.ones((3, 3), dtype=bool)  # 8-connectivity: diagonal pixels belong to the same lesion


def _truthy(value: object) -> bool:
    """manifest.csv booleans may be written as True/False, 1/0 or yes/no."""
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes", "y", "t")
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return False
    return bool(value)


def _float_or_nan(value: object) -> float:
    try:
        out = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return float("nan")
    return out


def lesion_table(
    pred: np.ndarray,
    gt: np.ndarray,
    ids: np.ndarray,
    manifest: pd.DataFrame | None,
    lesion_class: int,
    small_area_frac: float,
    detect_fraction: float,
    early_glaucoma_cdr: tuple[float, float] = (0.5, 0.6),
) -> pd.DataFrame:
    """One row per ground-truth lesion: `id, lesion, area_px, area_frac, small, flat,
    early_glaucoma, covered, found` (covered = fraction of the lesion's pixels predicted)."""
    rows = []
    by_id = {}
    if manifest is not None and "id" in manifest.columns:
        by_id = {str(r["id"]): r for r in manifest.to_dict("records")}
    low, high = early_glaucoma_cdr
    image_area = float(gt.shape[1] * gt.shape[2])
    for img_id, p, g in zip(ids, pred, gt, strict=True):
        labels, count = ndimage.label(g == lesion_class, structure=_EIGHT)
        if count == 0:
            continue
        meta = by_id.get(str(img_id), {})
        flat = _truthy(meta.get("flat"))
        cdr = _float_or_nan(meta.get("cdr"))
        early = bool(np.isfinite(cdr) and low <= cdr <= high)
        idx = np.arange(1, count + 1)
        area = ndimage.sum_labels(np.ones_like(labels), labels, idx)
        hit = ndimage.sum_labels(p == lesion_class, labels, idx)
        for k in range(count):
            covered = float(hit[k] / area[k])
            rows.append(
                {
                    "id": str(img_id),
                    "lesion": k + 1,
                    "area_px": int(area[k]),
                    "area_frac": float(area[k] / image_area),
                    "small": bool(area[k] / image_area < small_area_frac),
                    "flat": flat,
                    "early_glaucoma": early,
                    "covered": covered,
                    "found": bool(covered >= detect_fraction),
                }
            )
    columns = ["id", "lesion", "area_px", "area_frac", "small", "flat", "early_glaucoma", "covered", "found"]
    return pd.DataFrame(rows, columns=columns)


def lesion_fnr(table: pd.DataFrame, classes: tuple[str, ...] = LESION_CLASSES) -> dict[str, tuple[float, int]]:
    """(FNR, number of lesions) per lesion class; FNR is NaN when the class has no lesion."""
    out = {}
    for name in classes:
        sel = table if name == "lesions" else table[table[name].astype(bool)]
        n = len(sel)
        out[name] = (float(1.0 - sel["found"].astype(float).mean()) if n else float("nan"), n)
    return out
