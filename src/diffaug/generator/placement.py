"""Where a synthetic lesion goes: bank shapes scaled, rotated and moved to plausible places.

Masks come from existing annotations (the mask bank written by `prepare`), so a new lesion has
a real lesion's outline; placement only changes its size, orientation and place:

- polyp (endoscopy): anywhere the whole shape lies inside the field of view, i.e. off the black
  vignetted endoscope border (pixels darker than `fov_threshold`), `fov_margin` pixels clear of
  it, and off any lesion the background already has. Valid positions are found exactly, by
  correlating the shape with the forbidden region, then one is drawn uniformly.
- fundus (glaucoma): the lesion is an enlarged cup. The bank cup shape is rotated a little,
  scaled so that its vertical extent is `cdr × disc height` (vertical cup-to-disc ratio drawn
  from `cdr_range`), centred near the disc centre and clipped to the disc shrunk by one pixel,
  so the new cup always lies inside the existing disc with a rim left around it.

Every choice is recorded in a `Placement` (its `transform` dict goes into the manifest).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage, signal

from diffaug.errors import InputError
from diffaug.generator.config import PlacementConfig

CUP_MAX_ROTATION_DEG = 15.0  # cups are vertically elongated ellipses; large rotations are implausible


@dataclass
class Placement:
    """One placed lesion: `lesion` (H, W) bool = the region to paint; `intended` (H, W) uint8 =
    class indices of the whole sample (new lesion ∪ lesions the background already had)."""

    lesion: np.ndarray
    intended: np.ndarray
    bank_index: int
    transform: dict = field(default_factory=dict)
    warp: tuple[float, float, bool] = (1.0, 0.0, False)  # exact (scale, angle, flip) of the shape; `transform` rounds them

    def transform_json(self) -> str:
        return json.dumps(self.transform, sort_keys=True, separators=(",", ":"))


def field_of_view(image: np.ndarray, threshold: float, margin: int) -> np.ndarray:
    """(H, W) bool: the lit field of view, the largest bright component with holes filled (dark
    lumen inside the view stays valid), eroded by `margin` pixels."""
    bright = image.astype(np.float32).mean(axis=-1) / 255.0 > threshold
    labels, n = ndimage.label(bright)
    if n == 0:
        return np.zeros(bright.shape, dtype=bool)
    sizes = ndimage.sum_labels(bright, labels, index=np.arange(1, n + 1))
    fov = ndimage.binary_fill_holes(labels == (int(np.argmax(sizes)) + 1))
    if margin > 0:
        # border_value=0: the image edge counts as outside the view too
        fov = ndimage.binary_erosion(fov, iterations=margin, border_value=0)
    return fov


def content_box(mask: np.ndarray) -> tuple[slice, slice]:
    """Row and column slices of the tight box around a non-empty mask."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    return slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)


def crop_to_content(mask: np.ndarray) -> np.ndarray:
    return mask[content_box(mask)]


def _warp(src: np.ndarray, scale: float, angle_deg: float, flip: bool, mode: str = "constant") -> np.ndarray:
    """(h, w) float -> (S, S) float: mirrored (optional), rotated (degrees, counter-clockwise) and
    scaled about its centre, on a square canvas that holds any rotation."""
    src = src[:, ::-1] if flip else src
    h, w = src.shape
    diag = math.hypot(h, w) * scale
    out_size = max(1, int(math.ceil(diag)) + 2)
    a = math.radians(angle_deg)
    # affine_transform maps output coords o to input coords A @ o + offset (inverse mapping):
    # A = R(-a) / scale, about the centres of both canvases.
    rot = np.array([[math.cos(a), math.sin(a)], [-math.sin(a), math.cos(a)]]) / scale
    c_out = np.array([(out_size - 1) / 2.0] * 2)
    c_in = np.array([(h - 1) / 2.0, (w - 1) / 2.0])
    offset = c_in - rot @ c_out
    return ndimage.affine_transform(src.astype(np.float32), rot, offset=offset, output_shape=(out_size, out_size),
                                    order=1, mode=mode)


def _warped_shape(shape: np.ndarray, scale: float, angle_deg: float, flip: bool) -> np.ndarray:
    out = _warp(shape.astype(np.float32), scale, angle_deg, flip) >= 0.5
    if not out.any():  # a shape scaled below one pixel: keep its centre pixel
        out[out.shape[0] // 2, out.shape[1] // 2] = True
    return out


def transform_shape(shape: np.ndarray, scale: float, angle_deg: float, flip: bool) -> np.ndarray:
    """Rotate (degrees, counter-clockwise), scale and optionally mirror a binary shape; returns
    the tight crop of the result (at least one pixel)."""
    return crop_to_content(_warped_shape(shape, scale, angle_deg, flip))


def transform_patch(shape: np.ndarray, pixels: np.ndarray, scale: float, angle_deg: float,
                    flip: bool) -> tuple[np.ndarray, np.ndarray]:
    """`transform_shape` of a shape together with its pixels (h, w, 3) uint8, the same crop of
    both: -> (mask (h', w') bool, pixels (h', w', 3) uint8)."""
    out = _warped_shape(shape, scale, angle_deg, flip)
    box = content_box(out)
    # mode="nearest": pixels warped from beyond the source crop repeat its edge rather than black
    warped = np.stack([_warp(pixels[..., c], scale, angle_deg, flip, "nearest")[box] for c in range(3)], -1)
    return out[box], np.clip(np.rint(warped), 0, 255).astype(np.uint8)


def valid_offsets(allowed: np.ndarray, shape: np.ndarray) -> np.ndarray:
    """(N, 2) top-left offsets (row, col) where `shape` lies entirely inside `allowed`."""
    H, W = allowed.shape
    h, w = shape.shape
    if h > H or w > W:
        return np.zeros((0, 2), dtype=np.int64)
    # number of shape pixels over forbidden pixels for every placement ("valid" correlation)
    overlap = signal.correlate((~allowed).astype(np.float32), shape.astype(np.float32), mode="valid", method="auto")
    return np.argwhere(overlap < 0.5)


def _polyp(bg: np.ndarray, existing: np.ndarray, shape: np.ndarray, k: int, cfg: PlacementConfig,
           rng: np.random.Generator) -> Placement:
    H, W = existing.shape
    allowed = field_of_view(bg, cfg.fov_threshold, cfg.fov_margin)
    if existing.any():  # keep a pixel of normal tissue between a new and an existing lesion
        allowed &= ~ndimage.binary_dilation(existing > 0, iterations=1)
    lo, hi = cfg.scale_range
    shrink = 1.0
    for attempt in range(cfg.max_tries):
        scale = float(rng.uniform(lo, hi)) * shrink
        angle = float(rng.uniform(-cfg.max_rotation_deg, cfg.max_rotation_deg))
        flip = bool(cfg.flip and rng.random() < 0.5)
        placed_shape = transform_shape(shape, scale, angle, flip)
        offsets = valid_offsets(allowed, placed_shape)
        if len(offsets):
            r0, c0 = offsets[rng.integers(len(offsets))]
            lesion = np.zeros((H, W), dtype=bool)
            lesion[r0 : r0 + placed_shape.shape[0], c0 : c0 + placed_shape.shape[1]] = placed_shape
            cy, cx = ndimage.center_of_mass(lesion)
            intended = existing.copy()
            intended[lesion] = 1
            tf = {"scale": round(scale, 4), "angle": round(angle, 2), "flip": flip,
                  "cy": round(float(cy), 2), "cx": round(float(cx), 2), "tries": attempt + 1}
            return Placement(lesion, intended, k, tf, (scale, angle, flip))
        if attempt % 5 == 4:  # does not fit at this size anywhere: try smaller shapes
            shrink *= 0.8
    raise InputError(
        f"could not place any mask-bank lesion inside the field of view of a normal background after "
        f"{cfg.max_tries} tries; lower generate.placement.scale_range or fov_threshold"
    )


def _fundus(existing: np.ndarray, shape: np.ndarray, k: int, cfg: PlacementConfig,
            rng: np.random.Generator) -> Placement:
    H, W = existing.shape
    disc = existing > 0
    if not disc.any():
        raise InputError("normals.npz: a fundus background has no optic disc in its mask; re-run prepare")
    inner = ndimage.binary_erosion(disc, iterations=1)  # the new cup must leave a rim
    if not inner.any():
        inner = disc
    rows = np.flatnonzero(disc.any(axis=1))
    disc_h = rows[-1] - rows[0] + 1
    dcy, dcx = ndimage.center_of_mass(disc)
    cdr = float(rng.uniform(*cfg.cdr_range))
    angle = float(rng.uniform(-1, 1) * min(cfg.max_rotation_deg, CUP_MAX_ROTATION_DEG))
    flip = bool(cfg.flip and rng.random() < 0.5)
    rotated = transform_shape(shape, 1.0, angle, flip)
    scale = cdr * disc_h / rotated.shape[0]  # vertical CDR = cup height / disc height
    placed_shape = transform_shape(shape, scale, angle, flip)
    # resampling a small shape changes its extent a little: correct the scale once
    scale *= cdr * disc_h / placed_shape.shape[0]
    placed_shape = transform_shape(shape, scale, angle, flip)
    radius = disc_h / 2.0
    theta = rng.uniform(0, 2 * math.pi)
    jitter = float(rng.uniform(0, cfg.cup_jitter)) * radius
    cy, cx = dcy + jitter * math.sin(theta), dcx + jitter * math.cos(theta)
    h, w = placed_shape.shape
    r0, c0 = int(round(cy - (h - 1) / 2.0)), int(round(cx - (w - 1) / 2.0))
    canvas = np.zeros((H + 2 * h, W + 2 * w), dtype=bool)  # padded so off-edge shapes clip cleanly
    canvas[r0 + h : r0 + 2 * h, c0 + w : c0 + 2 * w] = placed_shape
    cup = canvas[h : h + H, w : w + W] & inner
    old_cup = existing == 2
    lesion = cup | old_cup  # the enlarged cup covers the old one
    intended = np.where(disc, 1, 0).astype(np.uint8)
    intended[lesion] = 2
    crow = np.flatnonzero(lesion.any(axis=1))
    tf = {"scale": round(scale, 4), "angle": round(angle, 2), "flip": flip, "cy": round(cy, 2), "cx": round(cx, 2),
          "target_cdr": round(cdr, 3), "cdr": round(float((crow[-1] - crow[0] + 1) / disc_h), 3)}
    return Placement(lesion, intended, k, tf, (scale, angle, flip))


def place_lesion(background: np.ndarray, existing: np.ndarray, bank: np.ndarray, family: str,
                 cfg: PlacementConfig, rng: np.random.Generator) -> Placement:
    """Draw a bank shape and place it on one background.

    background (H, W, 3) uint8; existing (H, W) uint8 class indices; bank (K, H', W') binary.
    """
    if len(bank) == 0:
        raise InputError("mask_bank.npz: the mask bank is empty; prepare needs training lesions to build it")
    k = int(rng.integers(len(bank)))
    source = bank[k] > 0
    if not source.any():
        raise InputError(f"mask_bank.npz: mask {k} is empty; re-run prepare")
    shape = crop_to_content(source)
    if family == "fundus":
        return _fundus(existing, shape, k, cfg, rng)
    return _polyp(background, existing, shape, k, cfg, rng)
