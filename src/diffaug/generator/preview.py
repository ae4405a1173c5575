"""Pictures of `generate`.

preview.png: a header row, then one row per sample: background | mask | result | result + contour
(+ the zoom window, yellow, of a sample painted zoomed).
backgrounds.png: one row per refilled background: the training frame with the removed region
outlined | prepare's classical fill | the background the samples were painted on (with its method)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from diffaug.data.preview import CONTOUR_COLOURS, TILE, draw_contours

LESION_COLOUR = (255, 60, 60)  # the new lesion in the mask tile; existing classes keep prepare's colours
WINDOW_COLOUR = (255, 220, 0)
HEADERS = ("background", "new lesion", "result", "contour / zoom")
HEADER_PX = 14


def mask_tile(existing: np.ndarray, lesion: np.ndarray) -> np.ndarray:
    """(H, W) class indices + (H, W) bool new lesion -> (H, W, 3) colour picture of the masks."""
    tile = np.zeros((*existing.shape, 3), np.uint8)
    for cls, colour in CONTOUR_COLOURS.items():
        tile[existing == cls] = np.array(colour) // 2  # existing lesions dimmed
    tile[lesion] = LESION_COLOUR
    return tile


def _square(tile: np.ndarray, window, scale: int) -> np.ndarray:
    """Outline of a zoom window (y, x, side in frame px) on an upscaled tile."""
    y, x, s = (int(v) * scale for v in window)
    tile = tile.copy()
    for a, b in ((slice(y, y + s), slice(x, x + 1)), (slice(y, y + s), slice(x + s - 1, x + s)),
                 (slice(y, y + 1), slice(x, x + s)), (slice(y + s - 1, y + s), slice(x, x + s))):
        tile[a, b] = WINDOW_COLOUR
    return tile


def save_generate_preview(path: str | Path, backgrounds: np.ndarray, existing: np.ndarray, lesions: np.ndarray,
                          results: np.ndarray, intended: np.ndarray, windows: np.ndarray | None = None) -> None:
    """Header + grid of len(results) rows × 4 tiles (each upscaled to ≥ TILE px), 2-px dark gutters."""
    n, size = results.shape[0], results.shape[1]
    scale = max(1, int(np.ceil(TILE / size)))
    t, gap = size * scale, 2
    grid = np.full((HEADER_PX + max(n, 1) * (t + gap) + gap, 4 * (t + gap) + gap, 3), 24, np.uint8)
    for r in range(n):
        tiles = [
            draw_contours(backgrounds[r], existing[r], scale),
            np.kron(mask_tile(existing[r], lesions[r]), np.ones((scale, scale, 1), np.uint8)),
            np.kron(results[r], np.ones((scale, scale, 1), np.uint8)),
            draw_contours(results[r], intended[r], scale),
        ]
        if windows is not None and windows[r][2] > 0:
            tiles[3] = _square(tiles[3], windows[r], scale)
        y = HEADER_PX + gap + r * (t + gap)
        for c, tile in enumerate(tiles):
            x = gap + c * (t + gap)
            grid[y : y + t, x : x + t] = tile
    im = Image.fromarray(grid)
    draw = ImageDraw.Draw(im)
    for c, text in enumerate(HEADERS):
        draw.text((gap + c * (t + gap) + 2, 2), text, fill=(230, 230, 230))
    im.save(path)


def save_backgrounds_preview(path: str | Path, bg, classical: np.ndarray, rows: int) -> None:
    """Before/after of lesion removal for the first `rows` refilled backgrounds (all kinds when none
    was refilled), 3 tiles per row under a header; each row's method is written on its last tile."""
    refilled = np.flatnonzero(bg.methods != "as_is")
    pick = (refilled if len(refilled) else np.arange(len(bg.methods)))[:rows]
    n, size = len(pick), bg.images.shape[1]
    scale = max(1, int(np.ceil(TILE / size)))
    t, gap = size * scale, 2
    grid = np.full((HEADER_PX + max(n, 1) * (t + gap) + gap, 3 * (t + gap) + gap, 3), 24, np.uint8)
    up = lambda im: np.kron(im, np.ones((scale, scale, 1), np.uint8))  # noqa: E731
    for r, i in enumerate(pick):
        tiles = [draw_contours(bg.originals[i], bg.holes[i].astype(np.uint8), scale), up(classical[i]), up(bg.images[i])]
        y = HEADER_PX + gap + r * (t + gap)
        for c, tile in enumerate(tiles):
            grid[y : y + t, gap + c * (t + gap) : gap + c * (t + gap) + t] = tile
    im = Image.fromarray(grid)
    draw = ImageDraw.Draw(im)
    for c, text in enumerate(("frame + removed region", "classical fill", "background used")):
        draw.text((gap + c * (t + gap) + 2, 2), text, fill=(230, 230, 230))
    for r, i in enumerate(pick):
        draw.text((gap + 2 * (t + gap) + 2, HEADER_PX + gap + r * (t + gap) + 2), str(bg.methods[i]), fill=(255, 220, 0))
    im.save(path)
