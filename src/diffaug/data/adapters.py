"""Real data sets: Kvasir-SEG, CVC-ClinicDB, REFUGE2 and any images/ + masks/ folder.

Each adapter knows the folder layouts its data set is distributed in (overridable with
`prepare.images_dir` / `prepare.masks_dir`), pairs images and masks by file stem, splits them
(official split lists, CVC video sequences, or a seeded split by `prepare.test_ratio`), keeps
`prepare.train_limit` training frames, reads, checks and resizes every pair to
`prepare.image_size`, and derives normal backgrounds (diffaug.data.normals). Every check runs
before anything is written; a problem is one InputError line naming the file.

Resizing: images to a square with Lanczos (aspect ratios are not kept: frames vary per image in
Kvasir-SEG and every model here takes square inputs); masks by per-class area voting (box
filter on each class's indicator, then argmax), which keeps small lesions that nearest-neighbour
sampling would drop.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from diffaug.data.config import PrepareConfig
from diffaug.data.normals import fundus_normals, polyp_normals
from diffaug.data.readers import IMAGE_EXTS, list_images, read_binary_mask, read_image, read_refuge_mask
from diffaug.data.samples import Dataset, Split
from diffaug.errors import InputError
from diffaug.progress import track

# (images folder, masks folder) relative to prepare.root, in the order they are tried.
LAYOUTS: dict[str, list[tuple[str, str]]] = {
    "kvasir_seg": [("images", "masks"), ("Kvasir-SEG/images", "Kvasir-SEG/masks")],
    "cvc_clinicdb": [
        ("Original", "Ground Truth"),  # as distributed (TIFF)
        ("TIF/Original", "TIF/Ground Truth"),
        ("PNG/Original", "PNG/Ground Truth"),  # the PNG re-packs found online
        ("images", "masks"),
    ],
    "refuge2": [
        ("images", "masks"),
        ("Images", "Masks"),
        ("Training400", "Annotation-Training400/Disc_Cup_Masks"),  # REFUGE (2018) training release
        ("Images", "Disc_Cup_Masks"),
        ("train/images", "train/masks"),
    ],
    "folder": [("images", "masks")],
}


def resolve_layout(cfg: PrepareConfig, root: Path) -> tuple[Path, Path]:
    if cfg.images_dir or cfg.masks_dir:
        default_img, default_mask = LAYOUTS[cfg.dataset][0]
        return root / (cfg.images_dir or default_img), root / (cfg.masks_dir or default_mask)
    for img_dir, mask_dir in LAYOUTS[cfg.dataset]:
        if (root / img_dir).is_dir() and (root / mask_dir).is_dir():
            return root / img_dir, root / mask_dir
    tried = ", ".join(f"{a}/ + {b}/" for a, b in LAYOUTS[cfg.dataset])
    raise InputError(
        f"{root}: no {cfg.dataset} layout found (tried {tried}); set prepare.images_dir and prepare.masks_dir"
    )


def pair_files(images: dict[str, Path], masks: dict[str, Path], mask_dir: Path, image_dir: Path) -> list[str]:
    """Sorted stems present in both; any unpaired file is an InputError."""
    for stem, path in images.items():
        if stem not in masks:
            raise InputError(f"{path}: image has no mask (expected {mask_dir}/{stem}.*); add the mask or remove the image")
    for stem, path in masks.items():
        if stem not in images:
            raise InputError(f"{path}: mask has no image (expected {image_dir}/{stem}.*); add the image or remove the mask")
    return sorted(images)


def _stem_of(line: str) -> str:
    base, ext = os.path.splitext(line.strip())
    return base if ext.lower() in IMAGE_EXTS else line.strip()


def _read_list(path_s: str, root: Path, stems: set[str], key: str) -> list[str]:
    path = Path(path_s) if Path(path_s).is_absolute() else root / path_s
    if not path.is_file():
        raise InputError(f"{path}: split file not found; fix prepare.split_files.{key}")
    listed = [_stem_of(line) for line in path.read_text().splitlines() if line.strip()]
    for stem in listed:
        if stem not in stems:
            raise InputError(f"{path}: lists '{stem}' but there is no such image pair; fix the list or the data")
    return listed


def _frame_key(stem: str) -> str:
    """'001' and '1' name the same CVC frame."""
    return (stem.lstrip("0") or "0") if stem.isdigit() else stem


def _sequence_groups(table_s: str, root: Path, stems: list[str]) -> list[str]:
    path = Path(table_s) if Path(table_s).is_absolute() else root / table_s
    if not path.is_file():
        raise InputError(f"{path}: sequence table not found; fix prepare.sequence_table (CSV with columns frame,sequence)")
    table = pd.read_csv(path, dtype=str)
    if not {"frame", "sequence"} <= set(table.columns):
        raise InputError(f"{path}: sequence table needs the columns frame,sequence (got {', '.join(table.columns)})")
    lookup = {_frame_key(f): s for f, s in zip(table["frame"], table["sequence"], strict=True)}
    groups = []
    for stem in stems:
        if _frame_key(stem) not in lookup:
            raise InputError(f"{path}: frame '{stem}' has no sequence; add a row for it")
        groups.append(lookup[_frame_key(stem)])
    return groups


def split_stems(cfg: PrepareConfig, root: Path, stems: list[str], rng: np.random.Generator) -> tuple[list[str], list[str], str]:
    """(train stems, test stems, split unit). Official lists > sequences (CVC) > seeded frames."""
    if len(stems) < 2:
        raise InputError(f"{root}: only {len(stems)} image/mask pair(s); need at least 2 to split train/test")
    sf = cfg.split_files
    if sf.train or sf.test:
        every = set(stems)
        train = _read_list(sf.train, root, every, "train") if sf.train else None
        test = _read_list(sf.test, root, every, "test") if sf.test else None
        if train is None:
            train = [s for s in stems if s not in set(test)]
        if test is None:
            test = [s for s in stems if s not in set(train)]
        if overlap := sorted(set(train) & set(test)):
            raise InputError(f"prepare.split_files: '{overlap[0]}' is in both the train and the test list; fix the lists")
        return sorted(train), sorted(test), "official"
    n_test = min(len(stems) - 1, max(1, round(cfg.test_ratio * len(stems))))
    if cfg.dataset == "cvc_clinicdb" and cfg.sequence_table:
        groups = _sequence_groups(cfg.sequence_table, root, stems)
        unique = sorted(set(groups))
        if len(unique) < 2:
            raise InputError(f"{cfg.sequence_table}: all frames are in one sequence; a split by sequence needs at least 2")
        test_groups: set[str] = set()
        for g in rng.permutation(unique):  # whole sequences go to test until it holds its share
            if sum(x in test_groups for x in groups) >= n_test or len(test_groups) == len(unique) - 1:
                break
            test_groups.add(str(g))
        test = [s for s, g in zip(stems, groups, strict=True) if g in test_groups]
        return [s for s in stems if s not in set(test)], test, "sequence"
    order = rng.permutation(len(stems))
    test = sorted(stems[i] for i in order[:n_test])
    return [s for s in stems if s not in set(test)], test, "frame"


def resize_image(img: np.ndarray, size: int) -> np.ndarray:
    if img.shape[:2] == (size, size):
        return img
    return np.asarray(Image.fromarray(img).resize((size, size), Image.Resampling.LANCZOS))


def resize_mask(mask: np.ndarray, size: int, num_classes: int) -> np.ndarray:
    """Per-class area voting (see module docstring); ties favour the higher (inner) class."""
    if mask.shape == (size, size):
        return mask.astype(np.uint8)
    votes = [
        np.asarray(Image.fromarray((mask == c).astype(np.float32), mode="F").resize((size, size), Image.Resampling.BOX))
        + c * 1e-3
        for c in range(num_classes)
    ]
    return np.stack(votes, axis=-1).argmax(axis=-1).astype(np.uint8)


def crop_to_disc(img: np.ndarray, mask: np.ndarray, diameters: float) -> tuple[np.ndarray, np.ndarray]:
    """Square crop of `diameters` × the disc's larger diameter around the disc centre (padded
    with black / background where it leaves the image)."""
    ys, xs = np.nonzero(mask >= 1)
    if ys.size == 0:
        return img, mask
    side = int(round(diameters * max(np.ptp(ys) + 1, np.ptp(xs) + 1)))
    cy, cx = (ys.min() + ys.max()) // 2, (xs.min() + xs.max()) // 2
    y0, x0 = cy - side // 2, cx - side // 2
    pad = max(0, -y0, -x0, y0 + side - img.shape[0], x0 + side - img.shape[1])
    img_p = np.pad(img, ((pad, pad), (pad, pad), (0, 0)))
    mask_p = np.pad(mask, ((pad, pad), (pad, pad)))
    return img_p[y0 + pad : y0 + pad + side, x0 + pad : x0 + pad + side], mask_p[y0 + pad : y0 + pad + side, x0 + pad : x0 + pad + side]


def read_pair(cfg: PrepareConfig, img_path: Path, mask_path: Path, fixes: Counter) -> tuple[np.ndarray, np.ndarray]:
    """Image (H, W, 3) and class mask (H, W) at prepare.image_size, after every check."""
    img = read_image(img_path, fixes)
    fundus = cfg.family == "fundus"
    mask = read_refuge_mask(mask_path, fixes) if fundus else read_binary_mask(mask_path, fixes)
    if mask.shape != img.shape[:2]:
        raise InputError(
            f"{mask_path}: mask is {mask.shape[1]}×{mask.shape[0]} but its image {img_path.name} is "
            f"{img.shape[1]}×{img.shape[0]}; re-export the mask at the image's size"
        )
    if fundus and cfg.fundus_crop > 0:
        img, mask = crop_to_disc(img, mask, cfg.fundus_crop)
    return resize_image(img, cfg.image_size), resize_mask(mask, cfg.image_size, 3 if fundus else 2)


def _read_split(cfg: PrepareConfig, root: Path, stems: list[str], images: dict[str, Path], masks: dict[str, Path],
                fixes: Counter, empties: list[int], label: str, groups: dict[str, str]) -> Split:
    n, size = len(stems), cfg.image_size
    out = Split(np.zeros((n, size, size, 3), np.uint8), np.zeros((n, size, size), np.uint8), list(stems),
                [str(images[s].relative_to(root)) if images[s].is_relative_to(root) else str(images[s]) for s in stems],
                groups=[groups.get(s, s) for s in stems])
    for i, stem in enumerate(track(stems, f"prepare: reading {label}")):
        out.images[i], out.masks[i] = read_pair(cfg, images[stem], masks[stem], fixes)
        if not out.masks[i].any():
            if cfg.empty_masks == "error" or cfg.family == "fundus":
                what = "no optic disc" if cfg.family == "fundus" else "no lesion"
                hint = "" if cfg.family == "fundus" else ", or set prepare.empty_masks: normal to use such frames as normal backgrounds"
                raise InputError(f"{masks[stem]}: mask is empty ({what}); remove the pair{hint}")
            empties.append(i)
    return out


def load_real_dataset(cfg: PrepareConfig, seed: int) -> Dataset:
    """Read, check, split and resize a real data set; derive its normal backgrounds."""
    root = Path(cfg.root or "")
    if root.is_file():
        raise InputError(f"{root}: is a file, not a folder; set prepare.root to the data set's folder")
    if not root.is_dir():
        raise InputError(f"{root}: prepare.root does not exist; put the {cfg.dataset} data set there or fix prepare.root")
    image_dir, mask_dir = resolve_layout(cfg, root)
    images, masks = list_images(image_dir, "images"), list_images(mask_dir, "masks")
    stems = pair_files(images, masks, mask_dir, image_dir)
    rng = np.random.default_rng([seed, 101])
    train_stems, test_stems, unit = split_stems(cfg, root, stems, rng)
    beyond_limit: list[str] = []  # training frames past train_limit: unlabelled_from_train's images
    if cfg.train_limit is not None and cfg.train_limit < len(train_stems):
        keep = rng.permutation(len(train_stems))[: cfg.train_limit]
        kept = {train_stems[i] for i in keep}
        beyond_limit = [s for s in train_stems if s not in kept]
        train_stems = sorted(kept)

    # what must stay on one side of a split (the validation part of train too): the video sequence
    groups = {}
    if cfg.dataset == "cvc_clinicdb" and cfg.sequence_table:
        groups = {s: f"seq{g}" for s, g in zip(stems, _sequence_groups(cfg.sequence_table, root, stems), strict=True)}
    fixes: Counter = Counter()
    train_empty: list[int] = []
    train = _read_split(cfg, root, train_stems, images, masks, fixes, train_empty, "train", groups)
    test = _read_split(cfg, root, test_stems, images, masks, fixes, [], "test", groups)
    # lesion-free training frames (empty_masks: normal) become backgrounds for synthesis; in the
    # test split they stay, as negatives for specificity
    extra = train.take(train_empty)
    train = train.take([i for i in range(len(train)) if i not in set(train_empty)])
    if len(train) == 0:
        raise InputError(f"{root}: every training mask is empty; prepare needs annotated lesions")

    if cfg.family == "fundus":
        normals = fundus_normals(train, cfg.max_normals, cfg.cdr_normal_max)
        method = f"training images with vertical CDR < {cfg.cdr_normal_max}; disc/cup masks kept"
    else:
        normals = polyp_normals(train, extra, cfg.max_normals, np.random.default_rng([seed, 102]))
        method = "training frames with the lesion removed by a diffusion fill (source 'inpainted:...')"
        if len(extra):
            method += f"; plus {min(len(extra), cfg.max_normals)} frames with empty masks"
    unlabelled = _unlabelled(cfg, root, seed, beyond_limit, set(test_stems), images, groups, fixes)
    return Dataset(cfg.family, cfg.dataset, train, test, normals, fixes, unit, method, unlabelled)


def _unlabelled(cfg: PrepareConfig, root: Path, seed: int, beyond_limit: list[str], test_stems: set[str],
                images: dict[str, Path], groups: dict[str, str], fixes: Counter) -> Split:
    """The folder's frames, then (`unlabelled_from_train`) the training frames past the limit,
    images only; each keeps its group (sequence), so a frame of a validation video is known."""
    from diffaug.data.unlabelled import concat, images_only, read_unlabelled_folder

    parts = []
    if cfg.unlabelled:
        parts.append(read_unlabelled_folder(cfg, fixes, test_stems, np.random.default_rng([seed, 103])))
    if cfg.unlabelled_from_train and beyond_limit:
        size = cfg.image_size
        frames = np.zeros((len(beyond_limit), size, size, 3), np.uint8)
        for i, stem in enumerate(track(beyond_limit, "prepare: reading training frames beyond train_limit")):
            frames[i] = resize_image(read_image(images[stem], fixes), size)
        sources = [str(images[s].relative_to(root)) if images[s].is_relative_to(root) else str(images[s])
                   for s in beyond_limit]
        parts.append(images_only(frames, list(beyond_limit), sources, [groups.get(s, s) for s in beyond_limit]))
    return concat(parts, cfg.image_size)
