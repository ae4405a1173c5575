"""Preview grid: frames with their mask contours, for a person to look at (preview.png).

Under a title line (data set, family, counts), one labelled section each: the first
`prepare.preview_count` training frames with their mask contours (the legend names each class in
its contour colour), up to one row of normal backgrounds (the lesion-free frames the generator
paints on) and up to one row of mask-bank shapes (the lesions it places). `text_band` draws such a
label line; generate's previews draw their column headers the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage

CONTOUR_COLOURS = {1: (40, 255, 60), 2: (255, 230, 0)}  # polyp / disc rim: green; cup: yellow
TILE = 128  # tiles are upscaled to at least this side so contours stay thin and visible
MAX_TILE = 192  # and larger frames are shrunk to this side
LABEL_PX = 16  # height of one line of text (PIL's default font: 11 px glyphs)
BACKGROUND = 24  # grey level of gutters and text bands
TEXT_COLOUR = (230, 230, 230)
BANK_COLOURS = (40, 235)  # mask-bank tiles: background / lesion grey levels


def text_width(parts: Sequence[tuple[str, tuple[int, int, int]]]) -> int:
    """Pixels the pieces of text of `text_band` take, margins included."""
    draw = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    return 8 + int(np.ceil(sum(draw.textlength(text) for text, _ in parts)))


def text_band(width: int, parts: Sequence[tuple[str, tuple[int, int, int]]], shade: int = BACKGROUND) -> np.ndarray:
    """(LABEL_PX, width, 3) uint8: the pieces of text (text, RGB colour) drawn one after the other
    from the left on a band of grey `shade`."""
    im = Image.new("RGB", (width, LABEL_PX), (shade,) * 3)
    draw = ImageDraw.Draw(im)
    x = 4.0
    for text, colour in parts:
        draw.text((x, 2), text, fill=colour)
        x += draw.textlength(text)
    return np.asarray(im)


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


def bank_tiles(bank: np.ndarray) -> np.ndarray:
    """(K, H, W) binary mask-bank shapes -> (K, H, W, 3) uint8 pictures: the lesion light on dark."""
    grey = np.where(bank > 0, BANK_COLOURS[1], BANK_COLOURS[0]).astype(np.uint8)
    return np.repeat(grey[..., None], 3, axis=-1)


def legend(class_names: Sequence[str] | None) -> list[tuple[str, tuple[int, int, int]]]:
    """'mask contour: polyp' with each foreground class name in its contour colour."""
    names = list(class_names or [])[1:] or ["lesion"]
    parts: list[tuple[str, tuple[int, int, int]]] = [("training frames, mask contour: ", TEXT_COLOUR)]
    for cls, name in enumerate(names, start=1):
        sep = ", " if cls > 1 else ""
        parts += [(sep, TEXT_COLOUR), (name, CONTOUR_COLOURS.get(cls, TEXT_COLOUR))]
    return parts


def save_preview(path: str | Path, images: np.ndarray, masks: np.ndarray, normals: np.ndarray | None = None,
                 normal_masks: np.ndarray | None = None, columns: int = 8, *, bank: np.ndarray | None = None,
                 title: str = "", class_names: Sequence[str] | None = None) -> None:
    """A title line, then each section under its label: the training frames with their mask
    contours (`class_names`, background first, name the contour colours), one row of normal
    backgrounds and one row of mask-bank shapes (each if given)."""
    sections = [(legend(class_names), preview_grid(images, masks, columns))]
    if normals is not None and len(normals):
        held = " (contours: the classes they already hold)" if normal_masks[:columns].any() else ""
        sections.append(([(f"normal backgrounds: generate paints new lesions onto these{held}", TEXT_COLOUR)],
                         preview_grid(normals[:columns], normal_masks[:columns], columns)))
    if bank is not None and len(bank):
        shapes, lesion = bank[:columns], (list(class_names or [])[1:] or ["lesion"])[-1]
        sections.append(([(f"mask bank: {lesion} shapes (light) from the training masks, which generate places "
                           "on the backgrounds", TEXT_COLOUR)],
                         preview_grid(bank_tiles(shapes), np.zeros_like(shapes), columns)))
    heads = [[(title, TEXT_COLOUR)], *(label for label, _ in sections)]
    width = max([grid.shape[1] for _, grid in sections] + [text_width(parts) for parts in heads])
    pad = lambda g: np.pad(g, ((0, 0), (0, width - g.shape[1]), (0, 0)), constant_values=BACKGROUND)  # noqa: E731
    blocks = [text_band(width, heads[0])]
    for label, grid in sections:  # a lighter band above each section also separates it from the one before
        blocks += [text_band(width, label, shade=60), pad(grid)]
    Image.fromarray(np.concatenate(blocks, axis=0)).save(path, format="PNG", optimize=False)
