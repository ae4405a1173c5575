"""Small data-set folders in the real distributed formats, written by the tests themselves:
Kvasir-SEG (JPEG images and JPEG masks with compression noise, sizes varying per image),
CVC-ClinicDB (TIFF frames in Original/ and Ground Truth/, one float TIFF Pillow refuses),
REFUGE2 (JPEG fundus images, BMP disc/cup masks with grey levels 0/128/255), a plain folder, and
12-/16-bit RGB TIFFs (16 bits per sample)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tifffile
from PIL import Image


def polyp_pair(rng: np.random.Generator, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """A reddish frame with a paler elliptic 'lesion': image uint8 (h, w, 3), mask {0, 255}."""
    yy, xx = np.mgrid[0:h, 0:w]
    cy, cx = rng.uniform(0.3, 0.7) * h, rng.uniform(0.3, 0.7) * w
    ry, rx = rng.uniform(0.12, 0.25) * h, rng.uniform(0.12, 0.25) * w
    inside = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 < 1
    img = np.empty((h, w, 3), np.float32)
    img[...] = (190, 90, 70)
    img += rng.normal(0, 12, (h, w, 3))
    img[inside] += (30, 50, 40)
    return np.clip(img, 0, 255).astype(np.uint8), inside.astype(np.uint8) * 255


def fundus_pair(rng: np.random.Generator, h: int, w: int, cdr: float) -> tuple[np.ndarray, np.ndarray]:
    """An orange fundus with a disc and a cup of vertical ratio `cdr`: REFUGE grey-level mask."""
    yy, xx = np.mgrid[0:h, 0:w]
    cy, cx, rd = h / 2 + rng.uniform(-3, 3), w / 2 + rng.uniform(-3, 3), 0.3 * min(h, w)
    disc = ((yy - cy) / rd) ** 2 + ((xx - cx) / rd) ** 2 < 1
    cup = ((yy - cy) / (cdr * rd)) ** 2 + ((xx - cx) / (cdr * rd)) ** 2 < 1
    img = np.empty((h, w, 3), np.float32)
    img[...] = (200, 80, 30)
    img[disc] = (240, 160, 110)
    img[cup] = (250, 220, 180)
    img += rng.normal(0, 6, (h, w, 3))
    mask = np.full((h, w), 255, np.uint8)
    mask[disc] = 128
    mask[cup] = 0
    return np.clip(img, 0, 255).astype(np.uint8), mask


def write_kvasir(root: Path, n: int = 10, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i in range(n):
        h, w = int(rng.integers(40, 72)), int(rng.integers(48, 80))  # sizes vary per image
        img, mask = polyp_pair(rng, h, w)
        Image.fromarray(img).save(root / "images" / f"cju{i:04d}.jpg", quality=90)
        # Kvasir masks are RGB JPEGs: compression leaves grey values around the edges
        Image.fromarray(np.repeat(mask[..., None], 3, -1)).save(root / "masks" / f"cju{i:04d}.jpg", quality=75)
    return root


def write_cvc(root: Path, n: int = 12, seed: int = 0, float_frame: int | None = 3) -> Path:
    rng = np.random.default_rng(seed)
    (root / "Original").mkdir(parents=True)
    (root / "Ground Truth").mkdir()
    for i in range(1, n + 1):
        img, mask = polyp_pair(rng, 36, 48)
        if i == float_frame:  # a float32 RGB TIFF: Pillow cannot identify it, tifffile can
            tifffile.imwrite(root / "Original" / f"{i}.tif", img.astype(np.float32) / 255.0, photometric="rgb")
        else:
            tifffile.imwrite(root / "Original" / f"{i}.tif", img, photometric="rgb")
        tifffile.imwrite(root / "Ground Truth" / f"{i}.tif", mask)
    return root


def write_sequence_table(path: Path, n: int = 12, per_sequence: int = 3) -> Path:
    rows = ["frame,sequence"] + [f"{i},{(i - 1) // per_sequence + 1}" for i in range(1, n + 1)]
    path.write_text("\n".join(rows) + "\n")
    return path


def write_refuge(root: Path, cdrs: list[float], seed: int = 0) -> Path:
    """REFUGE training layout: Training400/{Glaucoma,Non-Glaucoma}/*.jpg and
    Annotation-Training400/Disc_Cup_Masks/{Glaucoma,Non-Glaucoma}/*.bmp."""
    rng = np.random.default_rng(seed)
    for i, cdr in enumerate(cdrs):
        group, prefix = ("Glaucoma", "g") if cdr >= 0.6 else ("Non-Glaucoma", "n")
        img_dir = root / "Training400" / group
        mask_dir = root / "Annotation-Training400" / "Disc_Cup_Masks" / group
        img_dir.mkdir(parents=True, exist_ok=True)
        mask_dir.mkdir(parents=True, exist_ok=True)
        img, mask = fundus_pair(rng, 64, 64, cdr)
        Image.fromarray(img).save(img_dir / f"{prefix}{i:04d}.jpg", quality=92)
        Image.fromarray(mask).save(mask_dir / f"{prefix}{i:04d}.bmp")
    return root


def write_folder(root: Path, n: int = 8, seed: int = 0, size: int = 32) -> Path:
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i in range(n):
        img, mask = polyp_pair(rng, size, size)
        Image.fromarray(img).save(root / "images" / f"case{i:02d}.png")
        Image.fromarray(mask).save(root / "masks" / f"case{i:02d}.png")
    return root


def write_deep_tiff(path: Path, img: np.ndarray, bits: int) -> Path:
    """An 8-bit RGB image as a 16-bit-per-sample RGB TIFF that uses `bits` of each sample (12:
    values up to 4095, the low 4 bits set; 16: the full range). The reader's rescaling (÷ 16,
    ÷ 257) gives `img` back exactly."""
    wide = img.astype(np.uint16) * 16 + 8 if bits == 12 else img.astype(np.uint16) * 257
    tifffile.imwrite(path, wide, photometric="rgb")
    return path
