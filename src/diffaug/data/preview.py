"""Preview grid: frames with their mask contours, for a person to look at (preview.png).

Top: the first `prepare.preview_count` training frames; bottom (after a grey bar): up to one row
of normal backgrounds, so the lesion-free frames the generator starts from can be checked too.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

CONTOUR_COLOURS = {1: (40, 255, 60), 2: (255, 230, 0)}  # polyp / disc rim: green; cup: yellow
TILE = 128  # tiles are upscaled to at least this side so contours stay thin and visible
MAX_TILE = 192  # and larger frames are shrunk to this side


def draw_contours(image: np.ndarray, mask: np.ndarray, scale: int) -> np.ndarray:
    """Upscale (nearest) by `scale` and draw a 1-px contour of every class region."""
    big = np.kron(image, np.ones((scale, scale, 1), np.uint8)) if scale > 1 else image.copy()
    big_mask = np.kron(mask, np.ones((scale, scale), np.uint8)) if scale > 1 else mask
    for cls, colour in CONTOUR_COLOURS.items():
        region = big_mask >= cls  # nested classes: the cup lies inside the disc
        edge = region & ~ndimage.binary_erosion(region)
        big[edge] = colour
    return big


def preview_grid(images: np.ndarray, masks: np.ndarray, columns: int = 8) -> np.ndarray:
    """(rows·T, columns·T, 3) uint8 grid of contoured tiles, 2-px dark gutters."""
    n, size = images.shape[0], images.shape[1]
    if size > MAX_TILE:  # large profiles: shrink the tiles, the preview is for a glance
        images = np.stack([np.asarray(Image.fromarray(im).resize((MAX_TILE, MAX_TILE), Image.Resampling.BOX)) for im in images])
        masks = np.stack([np.asarray(Image.fromarray(m).resize((MAX_TILE, MAX_TILE), Image.Resampling.NEAREST)) for m in masks])
        size = MAX_TILE
    scale = max(1, int(np.ceil(TILE / size)))
    tile = size * scale
    columns = max(1, min(columns, n))
    rows = max(1, int(np.ceil(n / columns)))
    gap = 2
    grid = np.full((rows * (tile + gap) + gap, columns * (tile + gap) + gap, 3), 24, np.uint8)
    for i in range(n):
        r, c = divmod(i, columns)
        y, x = gap + r * (tile + gap), gap + c * (tile + gap)
        grid[y : y + tile, x : x + tile] = draw_contours(images[i], masks[i], scale)
    return grid


def save_preview(path: str | Path, images: np.ndarray, masks: np.ndarray, normals: np.ndarray | None = None,
                 normal_masks: np.ndarray | None = None, columns: int = 8) -> None:
    """Labelled frames on top; below a gap, one row of normal backgrounds (if given)."""
    grid = preview_grid(images, masks, columns)
    if normals is not None and len(normals):
        below = preview_grid(normals[:columns], normal_masks[:columns], columns)
        width = max(grid.shape[1], below.shape[1])
        pad = lambda g: np.pad(g, ((0, 0), (0, width - g.shape[1]), (0, 0)), constant_values=24)  # noqa: E731
        grid = np.concatenate([pad(grid), np.full((8, width, 3), 60, np.uint8), pad(below)], axis=0)
    Image.fromarray(grid).save(path, format="PNG", optimize=False)
