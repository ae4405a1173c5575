"""Paste the painted region back onto the original pixels with a feathered edge.

The VAE loses fine detail everywhere it reconstructs (a tiny VAE especially), but only the
region inside the mask is meant to change. So the decoded image is used inside the mask and
blended into the untouched original over a soft band just outside it:
`out = α · decoded + (1 − α) · original`, α = 1 on the mask, falling to 0 within about
`dilate + 2·sigma` pixels outside it. Pixels further away are the original bytes exactly.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from diffaug.zoom import crop, paste


def feather_alpha(mask: np.ndarray, sigma: float, dilate: int) -> np.ndarray:
    """(H, W) bool -> (H, W) float32 α in [0, 1]: 1 on the mask, a Gaussian fall-off outside."""
    m = mask.astype(bool)
    if sigma <= 0 and dilate <= 0:
        return m.astype(np.float32)
    grown = ndimage.binary_dilation(m, iterations=dilate) if dilate > 0 else m
    soft = ndimage.gaussian_filter(grown.astype(np.float32), sigma) if sigma > 0 else grown.astype(np.float32)
    # the blur halves α on the grown edge; rescale so the band is fully painted at the mask edge
    alpha = np.clip(soft * 2.0, 0.0, 1.0) if sigma > 0 else soft
    alpha = np.maximum(alpha, m.astype(np.float32))
    alpha[alpha < 1e-3] = 0.0  # exact original bytes far from the lesion
    return alpha


def composite(original: np.ndarray, decoded: np.ndarray, mask: np.ndarray, sigma: float, dilate: int) -> np.ndarray:
    """original (H, W, 3) uint8, decoded (H, W, 3) float in [0, 1], mask (H, W) bool -> uint8."""
    alpha = feather_alpha(mask, sigma, dilate)[..., None]
    out = alpha * (decoded.astype(np.float32) * 255.0) + (1.0 - alpha) * original.astype(np.float32)
    out = np.clip(np.rint(out), 0, 255).astype(np.uint8)
    keep = alpha[..., 0] == 0
    out[keep] = original[keep]
    return out


def paint_regions(sampler, frames: np.ndarray, regions: np.ndarray, windows: np.ndarray, prompts: list[str],
                  seeds: list[int], sigma: float, dilate: int, init: np.ndarray | None = None) -> np.ndarray:
    """Inpaint `regions` (B, H, W) bool of uint8 `frames` (B, H, W, 3) with `sampler`, each in its
    zoom window (side 0 = whole frame) resized to the frame size, then paste back and composite:
    -> uint8 (B, H, W, 3). Lesions (generate) and lesion holes (normals) are painted this way."""
    start = None if init is None else crop(init, windows)  # init (B, H, W, 3) uint8: the sampler's start (strength < 1)
    decoded = sampler(crop(frames, windows), crop(regions.astype(np.uint8), windows, nearest=True) > 0, prompts, seeds,
                      init=start)
    decoded = paste(frames.astype(np.float32) / 255, decoded, windows)  # (B, H, W, 3) in [0, 1]; outside a window: the frame
    return np.stack([composite(frames[k], decoded[k], regions[k], sigma, dilate) for k in range(len(frames))])
