"""Normal (lesion-free) backgrounds from real data sets, for the generator to paint lesions on.

- Polyp data (Kvasir-SEG, CVC-ClinicDB, folder): every frame shows a polyp, so lesion-free frames
  are made from training frames by removing the lesion with a classical fill: the lesion mask is
  dilated (so the shaded rim goes too) and filled by normalised convolution — the hole takes the
  Gaussian-weighted mean of the known pixels around it, at the smallest scale that has enough
  support, blended over a feathered edge — plus a little texture noise matched to the
  surroundings so the patch is not suspiciously smooth. These frames are marked in the manifest
  (`source` = `inpainted:<original source>`) and their masks are zeros. Frames whose mask is empty
  are used as they are when `prepare.empty_masks: normal`.
- Fundus data (REFUGE2): images whose vertical cup-to-disc ratio is below
  `prepare.cdr_normal_max` are normal; their disc/cup mask is kept as the existing lesion mask.
Only training frames are used, so no test frame leaks into synthetic training data.
"""

from __future__ import annotations

import numpy as np
from PIL import Image
from scipy import ndimage

from diffaug.data.samples import Split
from diffaug.data.stats import cup_to_disc_ratio

SCALES = (1.0, 2.0, 4.0, 8.0, 16.0, 32.0)  # Gaussian sigmas (pixels) tried from fine to coarse
MIN_SUPPORT = 0.25  # fraction of known pixels a scale needs under its kernel to be trusted


def _blur(x: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur of an (H, W, C) float image over H and W. Wide kernels run on a grid
    downsampled by ~sigma/2 (box average) and are upsampled bilinearly: the result is smooth at
    that scale anyway, and the cost stays flat from 64 to 512 px."""
    h, w = x.shape[:2]
    step = max(1, int(sigma // 2))
    if step == 1:
        return ndimage.gaussian_filter(x, (sigma, sigma, 0))
    ph, pw = -h % step, -w % step
    padded = np.pad(x, ((0, ph), (0, pw), (0, 0)), mode="edge")
    small = padded.reshape(padded.shape[0] // step, step, padded.shape[1] // step, step, -1).mean(axis=(1, 3))
    small = ndimage.gaussian_filter(small, (sigma / step, sigma / step, 0))
    size = (padded.shape[1], padded.shape[0])
    up = [np.asarray(Image.fromarray(np.ascontiguousarray(small[..., c]), mode="F").resize(size, Image.Resampling.BILINEAR))
          for c in range(small.shape[-1])]
    return np.stack(up, axis=-1)[:h, :w]


def lesion_hole(lesion: np.ndarray) -> np.ndarray:
    """The region a removal refills: the lesion (bool (H, W)) dilated by a fifth of its radius (at
    least 2 px), so its shaded rim and the annotation's loose edge go too. Shared with the
    generator's removal (`diffaug.generator.normals`), so both methods refill the same pixels."""
    radius = np.sqrt(lesion.sum() / np.pi)
    return ndimage.binary_dilation(lesion, iterations=max(2, round(0.2 * radius)))


def remove_lesion(image: np.ndarray, lesion: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Fill `lesion` (bool (H, W)) of an RGB uint8 image with the surrounding tissue."""
    if not lesion.any():
        return image.copy()
    radius = np.sqrt(lesion.sum() / np.pi)
    hole = lesion_hole(lesion)
    known = (~hole).astype(np.float32)
    img = image.astype(np.float32)
    filled = img.copy()  # outside the hole the feathered blend must see the original pixels
    done = np.zeros(hole.shape, bool)
    weighted = np.concatenate([img * known[..., None], known[..., None]], axis=-1)  # (H, W, 4)
    for sigma in SCALES:
        blurred = _blur(weighted, sigma)
        den, num = blurred[..., 3], blurred[..., :3]
        ok = (den > MIN_SUPPORT * 0.5) & ~done & hole
        filled[ok] = num[ok] / den[ok, None]
        done |= ok
        if done[hole].all():
            break
    if not done[hole].all():  # a hole covering nearly everything: fall back to the global mean
        rest = hole & ~done
        filled[rest] = img[~hole].mean(axis=0) if (~hole).any() else 0.0
    # texture: the high-pass residual statistics of the surroundings
    ring = ndimage.binary_dilation(hole, iterations=max(3, round(0.5 * radius))) & ~hole
    residual = img - ndimage.gaussian_filter(img, (2.0, 2.0, 0))
    # robust spread (MAD): fold edges and specular glints in the ring must not inflate it
    if ring.any():
        r = residual[ring]
        noise_std = 1.4826 * np.median(np.abs(r - np.median(r, axis=0)), axis=0)
    else:
        noise_std = np.zeros(3, np.float32)
    noise = ndimage.gaussian_filter(rng.standard_normal(hole.shape).astype(np.float32), max(0.7, hole.shape[0] / 128))
    filled[hole] += (noise[..., None] / (noise.std() + 1e-6) * noise_std)[hole]
    feather = ndimage.gaussian_filter(hole.astype(np.float32), 1.0)
    feather = np.where(hole, 1.0, feather)[..., None]
    out = img * (1 - feather) + filled * feather
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def polyp_normals(train: Split, extra: Split, limit: int, rng: np.random.Generator) -> Split:
    """Up to `limit` backgrounds: frames with empty masks (`extra`) first, then inpainted
    training frames in a seeded order."""
    take_extra = min(limit, len(extra))
    order = rng.permutation(len(train))[: max(0, limit - take_extra)]
    order.sort()
    size = train.masks.shape[1] if len(train) else extra.masks.shape[1]
    images = [extra.images[i] for i in range(take_extra)]
    ids = [f"normal-{extra.ids[i]}" for i in range(take_extra)]
    sources = [extra.sources[i] for i in range(take_extra)]
    for i in order:
        images.append(remove_lesion(train.images[i], train.masks[i] >= 1, rng))
        ids.append(f"normal-{train.ids[i]}")
        sources.append(f"inpainted:{train.sources[i]}")
    n = len(images)
    stack = np.stack(images) if n else np.zeros((0, size, size, 3), np.uint8)
    return Split(stack, np.zeros((n, size, size), np.uint8), ids, sources, [False] * n)


def fundus_normals(train: Split, limit: int, cdr_max: float) -> Split:
    """Training fundus frames with CDR < `cdr_max` (first `limit`), disc/cup masks kept."""
    keep = [i for i in range(len(train)) if (c := cup_to_disc_ratio(train.masks[i])) is not None and c < cdr_max]
    keep = keep[:limit]
    normals = train.take(keep)
    normals.ids = [f"normal-{i}" for i in normals.ids]
    return normals
