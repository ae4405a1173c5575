"""Reading real image/mask files robustly: Pillow first, tifffile for TIFFs Pillow refuses,
safe automatic fixes (counted), and one-line InputErrors for everything else.

Automatic fixes (counted in fingerprint.json `fixes`): grayscale_to_rgb, rgba_to_rgb (alpha
dropped), palette_to_rgb, high_bit_depth (16-bit/float → 8-bit), binarised_masks (a JPEG-noisy
mask thresholded at its midpoint), quantised_masks (REFUGE grey levels with compression noise
snapped to 0/128/255). A high_bit_depth image with integer pixels is also counted under the
depth it was rescaled from (RESCALED: 12-bit values ÷ 16, 16-bit ÷ 257), which prepare reports
in its metrics.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, UnidentifiedImageError

from diffaug.errors import InputError

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")
ImageFile.LOAD_TRUNCATED_IMAGES = False  # a truncated file is an error, never silently grey
NOISE_BAND = 40  # grey values farther than this from every allowed level count as "not a label"
MAX_NOISY_FRAC = 0.05  # more such pixels than this: the mask is not a (noisy) label image
RESCALED = ("rescaled_12bit", "rescaled_16bit")  # counted beside high_bit_depth (see module docstring)
EIGHT_BIT_MODES = {"1", "L", "LA", "P", "RGB", "RGBA", "CMYK", "YCbCr"}


def list_images(folder: Path, what: str) -> dict[str, Path]:
    """stem → path of every image file under `folder` (recursively, sorted). `what` names the
    folder's role in messages ("images", "masks")."""
    if not folder.is_dir():
        raise InputError(f"{folder}: {what} folder not found; check prepare.root / prepare.{what}_dir")
    found: dict[str, Path] = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".")):
        if path.suffix.lower() not in IMAGE_EXTS:
            continue
        if path.stem in found:
            raise InputError(
                f"{path}: duplicate stem '{path.stem}' (also {found[path.stem]}); keep one file per stem in {folder}"
            )
        found[path.stem] = path
    if not found:
        raise InputError(f"{folder}: no {what} ({', '.join(IMAGE_EXTS)}) found; check prepare.root / prepare.{what}_dir")
    return found


def _to_uint8(arr: np.ndarray, path: Path, fixes: Counter) -> np.ndarray:
    if arr.dtype == np.uint8:
        return arr
    fixes["high_bit_depth"] += 1
    if arr.dtype == bool:
        return arr.astype(np.uint8) * 255
    if np.issubdtype(arr.dtype, np.floating):
        top = 1.0 if float(np.nanmax(arr)) <= 1.0 else float(np.nanmax(arr))
        return np.clip(np.nan_to_num(arr) / top * 255.0, 0, 255).astype(np.uint8)
    if np.issubdtype(arr.dtype, np.integer):
        top = int(arr.max())
        if top <= 255:  # 8-bit values stored in wider words
            return arr.astype(np.uint8)
        # 12-bit sensors stored in 16-bit words are common: scale by the depth the values use
        if top <= 65535:
            kind, div = ("rescaled_12bit", 16) if top <= 4095 else ("rescaled_16bit", 257)
            fixes[kind] += 1
            return (np.clip(arr, 0, None) // div).astype(np.uint8)
        full = 2 ** np.iinfo(arr.dtype).bits - 1
        return np.clip(arr.astype(np.float64) * (255.0 / full), 0, 255).astype(np.uint8)
    raise InputError(f"{path}: unsupported pixel type {arr.dtype}; re-export it as 8-bit RGB")


def _read_raw(path: Path) -> tuple[np.ndarray, str]:
    """Pixel array and a mode tag ('L', 'LA', 'RGB', 'RGBA', 'P→RGB', ...)."""
    try:
        with Image.open(path) as im:
            if _narrowed_by_pillow(im):
                return _read_tiff(path), "TIFF"
            im.load()  # decode now: truncated files fail here
            mode = im.mode
            if mode == "P":
                im = im.convert("RGBA" if "transparency" in im.info else "RGB")
                return np.asarray(im), "P"
            if mode == "CMYK" or mode == "YCbCr":
                return np.asarray(im.convert("RGB")), "RGB"
            if mode in ("1",):
                return np.asarray(im.convert("L")), "L"
            return np.asarray(im), mode
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as exc:
        if path.suffix.lower() in (".tif", ".tiff"):
            return _read_tiff(path), "TIFF"
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputError(f"{path}: cannot read image ({reason}); re-export the file or remove it") from None


def _narrowed_by_pillow(im: Image.Image) -> bool:
    """A TIFF with more than 8 bits per sample that Pillow opens in an 8-bit mode: it keeps only
    the high byte, so a 12-bit RGB frame would come out nearly black. tifffile reads it whole."""
    bits = getattr(im, "tag_v2", {}).get(258)  # BitsPerSample
    if bits is None:
        return False
    bits = bits if isinstance(bits, tuple) else (bits,)
    return max(bits) > 8 and im.mode in EIGHT_BIT_MODES


def _read_tiff(path: Path) -> np.ndarray:
    import tifffile

    try:
        arr = tifffile.imread(path)
    except Exception as exc:  # tifffile raises many types for broken files
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputError(f"{path}: cannot read TIFF ({reason}); re-export the file or remove it") from None
    arr = np.squeeze(arr)
    if arr.ndim == 3 and arr.shape[0] in (3, 4) and arr.shape[-1] not in (3, 4):
        arr = np.moveaxis(arr, 0, -1)  # planar (separate) samples → interleaved
    if arr.ndim not in (2, 3):
        raise InputError(f"{path}: TIFF has shape {arr.shape}; expected one 2-D frame (H, W[, C])")
    return arr


def read_image(path: Path, fixes: Counter) -> np.ndarray:
    """RGB uint8 (H, W, 3); grayscale/RGBA/palette/16-bit inputs are converted and counted."""
    arr, mode = _read_raw(path)
    arr = _to_uint8(arr, path, fixes)
    if mode == "P":
        fixes["palette_to_rgb"] += 1
    if arr.ndim == 2:
        fixes["grayscale_to_rgb"] += 1
        arr = np.repeat(arr[..., None], 3, axis=-1)
    elif arr.shape[-1] == 2:  # grey + alpha
        fixes["grayscale_to_rgb"] += 1
        arr = np.repeat(arr[..., :1], 3, axis=-1)
    elif arr.shape[-1] == 4:
        fixes["rgba_to_rgb"] += 1
        arr = arr[..., :3]
    elif arr.shape[-1] != 3:
        raise InputError(f"{path}: image has {arr.shape[-1]} channels; expected RGB, RGBA or grayscale")
    return np.ascontiguousarray(arr)


def _mask_grey(path: Path) -> np.ndarray:
    arr, _ = _read_raw(path)
    arr = _to_uint8(arr, path, Counter())  # bit depth of a label image is no fix worth counting
    if arr.ndim == 3:
        if arr.shape[-1] in (2, 4):
            arr = arr[..., :-1]  # drop alpha
        arr = arr.max(axis=-1)  # RGB masks (Kvasir) or coloured ones: any channel marks the label
    return arr


def read_binary_mask(path: Path, fixes: Counter) -> np.ndarray:
    """Binary lesion mask uint8 (H, W) in {0, 1}. 0/1 or 0/255 masks pass as they are; a mask
    with JPEG noise around 0 and 255 is binarised at the midpoint (counted); anything else
    (several classes, a photo) is an InputError naming the file."""
    grey = _mask_grey(path)
    values = np.unique(grey)
    top = int(values[-1])
    if len(values) <= 2:  # 0/1, 0/255, 0/any: already binary
        return (grey > 0).astype(np.uint8)
    if top <= 10:  # small integers: a class-index label map, not a binary mask
        listed = ", ".join(str(int(v)) for v in values[:6])
        raise InputError(
            f"{path}: mask is not binary (values {listed}); export binary 0/255 lesion masks "
            "(or use prepare.dataset: refuge2 / mask_encoding: refuge for disc/cup masks)"
        )
    noisy = float(((grey > NOISE_BAND) & (grey < 255 - NOISE_BAND)).mean())
    if noisy > MAX_NOISY_FRAC:
        raise InputError(
            f"{path}: mask is not binary ({noisy:.0%} of pixels are mid-grey); export binary 0/255 lesion masks"
        )
    fixes["binarised_masks"] += 1
    return (grey >= 128).astype(np.uint8)


REFUGE_LEVELS = {0: 2, 128: 1, 255: 0}  # grey level → class: 0 cup, 128 disc rim, 255 background


def read_refuge_mask(path: Path, fixes: Counter) -> np.ndarray:
    """REFUGE disc/cup mask → uint8 (H, W) classes 0 background / 1 disc rim / 2 cup. Grey values
    near 0/128/255 (compression noise) are snapped (counted); others are an InputError."""
    grey = _mask_grey(path).astype(np.int16)
    levels = np.array(sorted(REFUGE_LEVELS), np.int16)
    dist = np.abs(grey[..., None] - levels)
    nearest = dist.argmin(axis=-1)
    off = dist.min(axis=-1)
    if float((off > NOISE_BAND).mean()) > MAX_NOISY_FRAC or (grey.max() <= 10 and len(np.unique(grey)) > 1):
        raise InputError(
            f"{path}: not a REFUGE disc/cup mask (expected grey levels 0 = cup, 128 = disc rim, 255 = background)"
        )
    if off.any():
        fixes["quantised_masks"] += 1
    classes = np.array([REFUGE_LEVELS[int(v)] for v in levels], np.uint8)
    return classes[nearest]
