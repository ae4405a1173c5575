"""preview.png of `generate`: one row per sample, background | mask | result | result + contour."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from diffaug.data.preview import CONTOUR_COLOURS, TILE, draw_contours

LESION_COLOUR = (255, 60, 60)  # the new lesion in the mask tile; existing classes keep prepare's colours


def mask_tile(existing: np.ndarray, lesion: np.ndarray) -> np.ndarray:
    """(H, W) class indices + (H, W) bool new lesion -> (H, W, 3) colour picture of the masks."""
    tile = np.zeros((*existing.shape, 3), np.uint8)
    for cls, colour in CONTOUR_COLOURS.items():
        tile[existing == cls] = np.array(colour) // 2  # existing lesions dimmed
    tile[lesion] = LESION_COLOUR
    return tile


def save_generate_preview(path: str | Path, backgrounds: np.ndarray, existing: np.ndarray, lesions: np.ndarray,
                          results: np.ndarray, intended: np.ndarray) -> None:
    """Grid of len(results) rows × 4 tiles (each upscaled to ≥ TILE px), 2-px dark gutters."""
    n, size = results.shape[0], results.shape[1]
    scale = max(1, int(np.ceil(TILE / size)))
    t, gap = size * scale, 2
    grid = np.full((max(n, 1) * (t + gap) + gap, 4 * (t + gap) + gap, 3), 24, np.uint8)
    for r in range(n):
        tiles = [
            draw_contours(backgrounds[r], existing[r], scale),
            np.kron(mask_tile(existing[r], lesions[r]), np.ones((scale, scale, 1), np.uint8)),
            np.kron(results[r], np.ones((scale, scale, 1), np.uint8)),
            draw_contours(results[r], intended[r], scale),
        ]
        y = gap + r * (t + gap)
        for c, tile in enumerate(tiles):
            x = gap + c * (t + gap)
            grid[y : y + t, x : x + t] = tile
    Image.fromarray(grid).save(path)
