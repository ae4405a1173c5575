"""Per-sample lesion statistics (area, size class, contrast, flatness, CDR) and the fingerprint.

Definitions (used by generate/evaluate through manifest.csv and fingerprint.json):
- lesion: polyp = class 1; fundus = the cup (class 2), the structure whose enlargement is glaucoma.
- lesion_area_frac: lesion pixels / image pixels (polyp: all lesions of the frame together).
- size_class: "small" if 0 < lesion_area_frac < prepare.small_area_frac (default 0.05, our pixel
  proxy of the paper's "< 5 mm" polyps), "large" otherwise, "none" without lesion.
- contrast: |mean luminance inside the lesion − mean luminance of a ring around it| / 255, the ring
  being the lesion dilated by ~15 % of its equivalent radius (at least 2 px), minus the lesion.
- flat (polyp only, always False for fundus): phantom = ground truth of the generator (barely
  raised, barely recoloured lesions); real data = contrast < prepare.flat_contrast (no height is
  known, low contrast is the proxy).
- cdr (fundus only): vertical cup diameter / vertical disc diameter (disc = classes 1 ∪ 2).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

LUMA = np.array([0.299, 0.587, 0.114], np.float32)
AREA_BINS = [0.0, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0]


@dataclass
class LesionStats:
    lesion_area_frac: float
    size_class: str
    contrast: float | None
    cdr: float | None


def lesion_mask(mask: np.ndarray, family: str) -> np.ndarray:
    """Binary (H, W) lesion of a class-index mask: polyp → class ≥ 1, fundus → cup (class 2)."""
    return mask == 2 if family == "fundus" else mask >= 1


def size_class(area_frac: float, small_area_frac: float) -> str:
    if area_frac <= 0:
        return "none"
    return "small" if area_frac < small_area_frac else "large"


def contrast(image: np.ndarray, lesion: np.ndarray) -> float | None:
    """Luminance contrast of a lesion against its surrounding ring, in [0, 1]."""
    area = int(lesion.sum())
    if area == 0:
        return None
    radius = np.sqrt(area / np.pi)
    ring = ndimage.binary_dilation(lesion, iterations=max(2, round(0.15 * radius))) & ~lesion
    if not ring.any():
        return None
    luma = image.astype(np.float32) @ LUMA
    return float(abs(luma[lesion].mean() - luma[ring].mean()) / 255.0)


def vertical_extent(binary: np.ndarray) -> int:
    rows = np.flatnonzero(binary.any(axis=1))
    return int(rows[-1] - rows[0] + 1) if rows.size else 0


def cup_to_disc_ratio(mask: np.ndarray) -> float | None:
    """Vertical CDR of a fundus mask (1 = disc rim, 2 = cup); None without a disc."""
    disc = vertical_extent(mask >= 1)
    if disc == 0:
        return None
    return vertical_extent(mask == 2) / disc


def sample_stats(image: np.ndarray, mask: np.ndarray, family: str, small_area_frac: float) -> LesionStats:
    les = lesion_mask(mask, family)
    area = float(les.mean())
    return LesionStats(
        lesion_area_frac=area,
        size_class=size_class(area, small_area_frac),
        contrast=contrast(image, les),
        cdr=cup_to_disc_ratio(mask) if family == "fundus" else None,
    )


def histogram(values: list[float], bins: list[float]) -> dict:
    counts, edges = np.histogram(np.asarray(values, np.float64), bins=np.asarray(bins))
    return {"bins": [float(e) for e in edges], "counts": [int(c) for c in counts]}


def intensity(images: np.ndarray) -> dict:
    """Per-channel mean/std of uint8 images, in [0, 1] units (for normalisation layers)."""
    x = images.reshape(-1, 3).astype(np.float64) / 255.0
    return {"mean": [float(v) for v in x.mean(axis=0)], "std": [float(v) for v in x.std(axis=0)]}


def _features(images: np.ndarray) -> dict[str, np.ndarray]:
    """uint8 (N, H, W) per-pixel features a single-threshold rule could use."""
    x = images.astype(np.float32)
    total = x.sum(axis=-1) + 1e-6
    return {
        "red": images[..., 0],
        "green": images[..., 1],
        "blue": images[..., 2],
        "luma": np.clip(x @ LUMA, 0, 255).astype(np.uint8),
        "redness": np.clip(x[..., 0] / total * 255, 0, 255).astype(np.uint8),  # chromaticity r
        "saturation": np.clip((x.max(-1) - x.min(-1)) / (x.max(-1) + 1e-6) * 255, 0, 255).astype(np.uint8),
    }


def threshold_baseline(train_images: np.ndarray, train_lesion: np.ndarray,
                       test_images: np.ndarray, test_lesion: np.ndarray) -> dict:
    """Best single colour/intensity threshold: search feature × threshold × direction for the
    highest pooled Dice on train, report its pooled Dice on test. A difficulty check: if this
    is high, a network need not learn shape or texture. Histograms make the search O(256)."""
    best = {"dice_train": -1.0}
    train_f, test_f = _features(train_images), _features(test_images)
    pos_total = float(train_lesion.sum())
    for name, feat in train_f.items():
        pos = np.bincount(feat[train_lesion].ravel(), minlength=256).astype(np.float64)
        neg = np.bincount(feat[~train_lesion].ravel(), minlength=256).astype(np.float64)
        # rule "feature >= t": TP = pos above t, FP = neg above t
        tp_ge, fp_ge = pos[::-1].cumsum()[::-1], neg[::-1].cumsum()[::-1]
        for direction, tp, fp in (("ge", tp_ge, fp_ge), ("lt", pos_total - tp_ge, neg.sum() - fp_ge)):
            dice = 2 * tp / np.maximum(2 * tp + fp + (pos_total - tp), 1e-9)
            t = int(dice.argmax())
            if dice[t] > best["dice_train"]:
                best = {"feature": name, "threshold": t, "direction": direction, "dice_train": float(dice[t])}
    feat = test_f[best["feature"]]
    pred = feat >= best["threshold"] if best["direction"] == "ge" else feat < best["threshold"]
    inter = float((pred & test_lesion).sum())
    best["dice_test"] = 2 * inter / max(float(pred.sum() + test_lesion.sum()), 1e-9)
    return best
