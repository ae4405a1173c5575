"""`copypaste`: real lesions cut out with their masks, rescaled, feathered and pasted at plausible
places of other training images — the cheap alternative a researcher tries first.

One composite = one target training image + one lesion (a connected component of another image's
mask, with its class indices) pasted on it. The paste's alpha is feathered on both sides of the
lesion edge but pinned so that alpha >= 0.5 exactly on the lesion's pixels, and only those pixels
get the lesion's classes in the composite mask: the mask matches what the pixels show.
A place is plausible when the covered area is bright enough (inside the field of view, not the
dark endoscope border / fundus surround) and does not overlap a lesion already there.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from diffaug.segmenter.config import CopyPasteConfig


@dataclass(frozen=True)
class Lesion:
    source: int  # index of the training image it comes from
    image: np.ndarray  # float32 (h, w, 3) crop in [0, 1]
    mask: np.ndarray  # uint8 (h, w) class indices of this lesion only (0 outside it)


@dataclass
class CopyPasteSet:
    images: np.ndarray  # uint8 (S, H, W, 3)
    masks: np.ndarray  # uint8 (S, H, W)
    targets: np.ndarray  # int (S,) index of the background training image
    sources: np.ndarray  # int (S,) index of the training image the lesion came from
    pasted: np.ndarray  # bool (S, H, W) pixels labelled by the paste (alpha >= 0.5)


def extract_lesions(images: np.ndarray, masks: np.ndarray, min_area: int = 4) -> list[Lesion]:
    """Every connected foreground component (all classes together) of every training mask."""
    lesions = []
    for i, (img, msk) in enumerate(zip(images, masks, strict=True)):
        labels, n = ndimage.label(msk > 0)
        for k, sl in enumerate(ndimage.find_objects(labels), start=1):
            if sl is None:
                continue
            comp = labels[sl] == k
            if comp.sum() < min_area:
                continue
            lesions.append(
                Lesion(i, img[sl].astype(np.float32) / 255.0, np.where(comp, msk[sl], 0).astype(np.uint8))
            )
    return lesions


def _rescale(lesion: Lesion, scale: float, max_hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    h, w = lesion.mask.shape
    # never larger than ~half the frame, so the paste fits with room to move
    scale = min(scale, 0.5 * max_hw[0] / h, 0.5 * max_hw[1] / w)
    zoom = (max(1, round(h * scale)) / h, max(1, round(w * scale)) / w)
    img = ndimage.zoom(lesion.image, (*zoom, 1), order=1, mode="nearest")
    msk = ndimage.zoom(lesion.mask, zoom, order=0, mode="nearest")
    return np.clip(img, 0, 1), msk


def _feathered_alpha(binary: np.ndarray, sigma: float) -> np.ndarray:
    """Soft edge both sides of the lesion boundary, with alpha >= 0.5 exactly on `binary`."""
    if sigma <= 0:
        return binary.astype(np.float32)
    blur = ndimage.gaussian_filter(binary.astype(np.float32), sigma)
    return np.where(binary, np.maximum(blur, 0.5), np.minimum(blur, 0.499)).astype(np.float32)


def paste(
    target_img: np.ndarray,
    target_mask: np.ndarray,
    lesion_img: np.ndarray,
    lesion_mask: np.ndarray,
    top: int,
    left: int,
    feather_sigma: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Paste a (rescaled) lesion with its top-left corner at (top, left).

    target_img uint8 (H, W, 3); lesion_img float (h, w, 3) in [0, 1]; lesion_mask uint8 (h, w).
    Returns (image uint8, mask uint8, labelled bool (H, W)).
    """
    pad = int(np.ceil(3 * feather_sigma))  # room for the feather outside the lesion
    binary = np.pad(lesion_mask > 0, pad)
    classes = np.pad(lesion_mask, pad)
    patch = np.pad(lesion_img, ((pad, pad), (pad, pad), (0, 0)), mode="edge")
    alpha = _feathered_alpha(binary, feather_sigma)
    H, W = target_mask.shape
    y0, x0 = top - pad, left - pad
    # clip the padded patch to the frame
    ty0, tx0, ty1, tx1 = max(y0, 0), max(x0, 0), min(y0 + binary.shape[0], H), min(x0 + binary.shape[1], W)
    py0, px0 = ty0 - y0, tx0 - x0
    py1, px1 = py0 + (ty1 - ty0), px0 + (tx1 - tx0)
    a = alpha[py0:py1, px0:px1, None]
    out = target_img.astype(np.float32) / 255.0
    out[ty0:ty1, tx0:tx1] = a * patch[py0:py1, px0:px1] + (1 - a) * out[ty0:ty1, tx0:tx1]
    labelled = np.zeros((H, W), bool)
    labelled[ty0:ty1, tx0:tx1] = binary[py0:py1, px0:px1]
    mask = target_mask.copy()
    mask[ty0:ty1, tx0:tx1] = np.where(binary[py0:py1, px0:px1], classes[py0:py1, px0:px1], mask[ty0:ty1, tx0:tx1])
    return np.round(out * 255).clip(0, 255).astype(np.uint8), mask, labelled


def _place(target_img: np.ndarray, target_mask: np.ndarray, lesion_mask: np.ndarray,
           cfg: CopyPasteConfig, rng: np.random.Generator) -> tuple[int, int]:
    """A plausible top-left corner: bright (inside the field of view), no overlap with a lesion."""
    H, W = target_mask.shape
    h, w = lesion_mask.shape
    brightness = target_img.astype(np.float32).mean(axis=2) / 255.0
    binary = lesion_mask > 0
    best, best_score = (0, 0), -np.inf
    for _ in range(cfg.tries):
        top, left = int(rng.integers(0, H - h + 1)), int(rng.integers(0, W - w + 1))
        under_b = brightness[top:top + h, left:left + w][binary]
        overlap = float((target_mask[top:top + h, left:left + w][binary] > 0).mean())
        dark = float((under_b < cfg.min_brightness).mean())
        score = -(overlap + dark)
        if score == 0:
            return top, left
        if score > best_score:
            best, best_score = (top, left), score
    return best


def make_copypaste_set(
    images: np.ndarray, masks: np.ndarray, count: int, cfg: CopyPasteConfig, rng: np.random.Generator
) -> CopyPasteSet:
    """`count` composites, each one lesion from image j pasted on a different image i."""
    H, W = masks.shape[1:]
    lesions = extract_lesions(images, masks)
    imgs = np.zeros((count, H, W, 3), np.uint8)
    msks = np.zeros((count, H, W), np.uint8)
    pasted = np.zeros((count, H, W), bool)
    targets = np.zeros(count, np.int64)
    sources = np.zeros(count, np.int64)
    if count and not lesions:
        raise ValueError("copypaste: the training masks contain no lesion to cut out")
    for k in range(count):
        lesion = lesions[int(rng.integers(len(lesions)))]
        target = int(rng.integers(len(images)))
        if len(images) > 1 and target == lesion.source:  # paste onto *another* image
            target = (target + 1 + int(rng.integers(len(images) - 1))) % len(images)
        lim, lmsk = _rescale(lesion, float(rng.uniform(cfg.scale_min, cfg.scale_max)), (H, W))
        top, left = _place(images[target], masks[target], lmsk, cfg, rng)
        imgs[k], msks[k], pasted[k] = paste(images[target], masks[target], lim, lmsk, top, left, cfg.feather_sigma)
        targets[k], sources[k] = target, lesion.source
    return CopyPasteSet(imgs, msks, targets, sources, pasted)
