"""Zoomed windows around small lesions ("inpaint only the masked area").

A lesion under a few per cent of a 64 px frame covers a few cells of the 16 x 16 latent, both for
the generator that paints it and for the validator that checks it. Both therefore work on a square
context window around the lesion's box, resized to the frame size:

    window side s = clip(context * box side, min_side, frame side), kept inside the frame
    crop:  frame[y:y+s, x:x+s]  --resize-->  (size, size)       (image bilinear, mask nearest)
    paste: (size, size)  --resize (antialiased)-->  frame[y:y+s, x:x+s]; pixels outside untouched

A window is (y, x, s) in frame pixels; s = 0 means "the whole frame, not zoomed". Windows are
integer squares inside the frame, so crop and paste are slices plus one resize each; the resizes
are per sample (different sides) and cheap next to any model call, which stays batched.
"""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

NOT_ZOOMED = (0, 0, 0)


class ZoomConfig(BaseModel):
    """`generate.zoom` (read by finetune_generator, train_validator and gate as well)."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    max_frac: float = Field(0.4, gt=0, le=1)  # zoom a lesion whose mask box's longer side is below this share of the frame side
    context: float = Field(2.5, ge=1)  # window side = context x the box's longer side
    min_side: int = Field(16, ge=4)  # ...but at least this many px (the frame side at most)
    train_windows: int = Field(2, ge=0)  # zoomed windows per training lesion (generator phase c, validator)
    jitter: float = Field(0.25, ge=0, lt=1)  # training windows: side x U(1 - j, 1 + j), centre moved by <= j/2 x side


def box_of(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """(y0, x0, y1, x1) half-open bounding box of the non-zero pixels, None when empty."""
    ys, xs = np.nonzero(mask)
    if len(ys) == 0:
        return None
    return int(ys.min()), int(xs.min()), int(ys.max()) + 1, int(xs.max()) + 1


def wants_zoom(mask: np.ndarray, cfg: ZoomConfig) -> bool:
    """True when zoom is on and the longer side of the lesion's box is below `max_frac` of the frame side."""
    box = box_of(mask)
    if not cfg.enabled or box is None:
        return False
    y0, x0, y1, x1 = box
    return max(y1 - y0, x1 - x0) < cfg.max_frac * min(mask.shape)


def square_window(cy: float, cx: float, side: float, h: int, w: int) -> tuple[int, int, int]:
    """A square of `side` px centred on (cy, cx), shrunk to fit and moved inside an h x w frame."""
    s = int(round(min(max(side, 1.0), h, w)))
    y = int(round(cy - s / 2))
    x = int(round(cx - s / 2))
    return min(max(y, 0), h - s), min(max(x, 0), w - s), s


def window_for(mask: np.ndarray, cfg: ZoomConfig) -> tuple[int, int, int]:
    """The context window of a lesion mask (H, W), or NOT_ZOOMED when it needs none."""
    if not wants_zoom(mask, cfg):
        return NOT_ZOOMED
    y0, x0, y1, x1 = box_of(mask)
    h, w = mask.shape
    side = max(cfg.context * max(y1 - y0, x1 - x0), cfg.min_side)
    win = square_window((y0 + y1) / 2, (x0 + x1) / 2, side, h, w)
    return NOT_ZOOMED if win[2] >= min(h, w) else win


def training_windows(mask: np.ndarray, cfg: ZoomConfig, rng: np.random.Generator) -> list[tuple[int, int, int]]:
    """`train_windows` jittered windows around the lesion of a training mask: the gate's window
    for a small lesion (side and centre jittered), a random zoom between the box and the frame for
    a large one, so a zoomed lesion of any size looks like something the networks saw."""
    box = box_of(mask)
    if box is None or cfg.train_windows == 0:
        return []
    y0, x0, y1, x1 = box
    h, w = mask.shape
    long_side = max(y1 - y0, x1 - x0)
    out = []
    for _ in range(cfg.train_windows):
        if wants_zoom(mask, cfg):
            side = max(cfg.context * long_side, cfg.min_side) * rng.uniform(1 - cfg.jitter, 1 + cfg.jitter)
        else:
            side = rng.uniform(min(long_side * 1.2, min(h, w)), min(h, w))
        shift = rng.uniform(-cfg.jitter / 2, cfg.jitter / 2, size=2) * side
        win = square_window((y0 + y1) / 2 + shift[0], (x0 + x1) / 2 + shift[1], side, h, w)
        if win[2] < min(h, w):
            out.append(win)
    return out


def _resize(x, size: int, nearest: bool):
    """(C, h, w) float tensor -> (C, size, size); antialiased when shrinking an image."""
    import torch.nn.functional as F

    if x.shape[-1] == size and x.shape[-2] == size:
        return x
    if nearest:
        return F.interpolate(x[None], size=(size, size), mode="nearest-exact")[0]
    return F.interpolate(x[None], size=(size, size), mode="bilinear", align_corners=False,
                         antialias=size < x.shape[-1])[0]


def crop(images: np.ndarray, windows: np.ndarray, size: int | None = None, nearest: bool = False) -> np.ndarray:
    """Windows of frames, resized to `size` (default: the frame side).

    images uint8 (N, H, W, 3) or masks (N, H, W) (then `nearest`: class indices stay indices);
    windows int (N, 3) rows (y, x, s); a row with s = 0 returns its frame as it is."""
    import torch

    size = size or images.shape[1]
    out = np.empty((len(images), size, size, *images.shape[3:]), images.dtype)
    for i, (y, x, s) in enumerate(np.asarray(windows, int).reshape(-1, 3)):
        part = images[i] if s == 0 else images[i, y:y + s, x:x + s]
        t = torch.from_numpy(np.ascontiguousarray(part)).float()
        t = t.permute(2, 0, 1) if t.ndim == 3 else t[None]
        r = _resize(t, size, nearest)
        r = r.permute(1, 2, 0) if images.ndim == 4 else r[0]
        out[i] = r.round().clamp(0, 255).numpy().astype(images.dtype) if images.dtype == np.uint8 else r.numpy()
    return out


def paste(frames: np.ndarray, patches: np.ndarray, windows: np.ndarray, nearest: bool = False) -> np.ndarray:
    """Put each patch (resized to its window's side) back into a copy of its frame; pixels outside
    the window are the frame's own. A row with s = 0 replaces the frame by the patch (same size)."""
    import torch

    out = frames.copy()
    for i, (y, x, s) in enumerate(np.asarray(windows, int).reshape(-1, 3)):
        if s == 0:
            out[i] = patches[i]
            continue
        t = torch.from_numpy(np.ascontiguousarray(patches[i])).float()
        t = t.permute(2, 0, 1) if t.ndim == 3 else t[None]
        r = _resize(t, int(s), nearest)
        r = r.permute(1, 2, 0) if frames.ndim == 4 else r[0]
        out[i, y:y + s, x:x + s] = r.round().clamp(0, 255).numpy().astype(frames.dtype) if frames.dtype == np.uint8 else r.numpy()
    return out


def zoomed_pairs(images: np.ndarray, masks: np.ndarray, lesions: np.ndarray, cfg: ZoomConfig | None,
                 rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """Training pairs cut from `training_windows` around each frame's lesion (`lesions` (N, H, W)
    bool), resized to the frame size: images, masks and the source frame of each; none when zoom
    is off."""
    src, wins = [], []
    if cfg is not None and cfg.enabled:
        for i, m in enumerate(lesions):
            for w in training_windows(m, cfg, rng):
                wins.append(w)
                src.append(i)
    if not wins:
        return images[:0], masks[:0], []
    w = windows_array(wins)
    return crop(images[src], w), crop(masks[src], w, nearest=True), src


def lesion_free_windows(masks: np.ndarray, share: float, rng: np.random.Generator,
                        side_range: tuple[float, float] = (0.4, 0.75), tries: int = 20) -> tuple[np.ndarray, list[int]]:
    """About `share` × N square windows (side a share `side_range` of the frame side; frames
    visited in a seeded order, at most one window each per round) that touch no annotated pixel
    (any class >= 1, grown by 2 px): real tissue known to be lesion-free, which a data set of lesion
    frames otherwise never shows. -> windows (K, 3), source frame of each."""
    from scipy import ndimage

    wins, src = [], []
    n, h, w = masks.shape
    want = int(round(share * n))
    integrals: dict[int, np.ndarray] = {}
    order = rng.permutation(n) if n else np.zeros(0, np.int64)
    for k in range(want * tries if n else 0):
        if len(wins) == want:
            break
        i = int(order[k % n])
        if i not in integrals:  # O(1) "any annotation inside the box" from a summed-area table
            taken = ndimage.binary_dilation(masks[i] > 0, iterations=2)
            integrals[i] = np.pad(taken.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
        t = integrals[i]
        s = int(round(rng.uniform(*side_range) * min(h, w)))
        y, x = int(rng.integers(0, h - s + 1)), int(rng.integers(0, w - s + 1))
        if t[y + s, x + s] - t[y, x + s] - t[y + s, x] + t[y, x] == 0:
            wins.append((y, x, s))
            src.append(i)
    return windows_array(wins), src


def windows_array(rows: list[tuple[int, int, int]]) -> np.ndarray:
    return np.asarray(rows, dtype=np.int64).reshape(-1, 3)


__all__ = ["NOT_ZOOMED", "ZoomConfig", "box_of", "crop", "lesion_free_windows", "paste", "square_window", "training_windows", "wants_zoom",
           "window_for", "windows_array", "zoomed_pairs"]
