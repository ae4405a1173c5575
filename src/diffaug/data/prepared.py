"""The prepared-data folder (`data/prepared/`): writer and the loader every later stage uses.

Layout (docs/architecture.md, "Prepared data"):
  train.npz, test.npz   images uint8 (N, H, W, 3) RGB; masks uint8 (N, H, W) class indices; ids str (N,)
  normals.npz           lesion-free backgrounds, same keys (masks = lesions already there: zeros for
                        polyp, disc/cup for fundus)
  mask_bank.npz         masks uint8 (K, H, W) binary lesion shapes from train, one per connected
                        lesion (polyp) / cup (fundus); ids = source sample id (may repeat)
  mask_bank.csv         mask_id, source_id, area_frac, size_class, cy, cx, height, width (pixels)
  manifest.csv          id, split, source, family, lesion_area_frac, size_class, contrast, flat, cdr,
                        group (what a split keeps together: the video sequence, else the id)
  unlabelled.npz        frames without masks (diffaug.data.unlabelled): images uint8 (U, H, W, 3),
                        ids str (U,), groups str (U,) (video sequence, else the id); U may be 0
  fingerprint.json      family, classes, sizes, counts, statistics, automatic fixes
  preview.png           titled, labelled sections: train frames with mask contours, normals, mask bank
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import ndimage

from diffaug.data.preview import save_preview
from diffaug.data.samples import CLASS_NAMES, Dataset, Split
from diffaug.data.stats import AREA_BINS, histogram, intensity, lesion_mask, sample_stats, threshold_baseline
from diffaug.errors import InputError
from diffaug.io import load_npz, read_json, save_npz, write_json

SPLITS = ("train", "test", "normals")
MANIFEST_COLUMNS = ["id", "split", "source", "family", "lesion_area_frac", "size_class", "contrast", "flat", "cdr",
                    "group"]
BANK_COLUMNS = ["mask_id", "source_id", "area_frac", "size_class", "cy", "cx", "height", "width"]
CDR_BINS = [0.0, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]


# ----------------------------------------------------------------------------------------- loader
@dataclass(frozen=True)
class PreparedSplit:
    """One prepared split. `images` uint8 (N, H, W, 3) (None for the mask bank), `masks` uint8
    (N, H, W) class indices (mask bank: binary), `ids` str (N,), `table` the matching rows of
    manifest.csv (train/test/normals) or mask_bank.csv (mask_bank), in the same order as `ids`."""

    name: str
    images: np.ndarray | None
    masks: np.ndarray
    ids: np.ndarray
    table: pd.DataFrame

    def __len__(self) -> int:
        return int(self.masks.shape[0])

    def __getitem__(self, key: str) -> Any:  # split["images"] works like the npz
        return getattr(self, key)

    def __iter__(self) -> Iterator[str]:
        return iter(("images", "masks", "ids"))


def load_split(prepared_dir: str | Path, name: str) -> PreparedSplit:
    """Load `name` ∈ {"train", "test", "normals", "mask_bank"} from a folder written by `prepare`.

    >>> train = load_split("data/prepared", "train")
    >>> train.images.shape, train.masks.dtype, train.table.columns.tolist()[:3]
    ((120, 64, 64, 3), dtype('uint8'), ['id', 'split', 'source'])

    Raises InputError (one line, saying to run `dvc repro prepare`) if the folder or file is missing.
    """
    prepared_dir = Path(prepared_dir)
    if name not in (*SPLITS, "mask_bank"):
        raise ValueError(f"unknown prepared split '{name}'; expected one of {', '.join((*SPLITS, 'mask_bank'))}")
    path = prepared_dir / f"{name}.npz"
    if not path.is_file():
        raise InputError(f"{path}: prepared data not found; run `dvc repro prepare` (or `diffaug prepare`) first")
    arrays = load_npz(path)
    ids = arrays["ids"].astype(str)
    if name == "mask_bank":
        table = pd.read_csv(prepared_dir / "mask_bank.csv", dtype={"mask_id": str, "source_id": str})
    else:
        table = load_manifest(prepared_dir)
        table = table[table["split"] == name].set_index("id").loc[list(ids)].reset_index()
    return PreparedSplit(name, arrays.get("images"), arrays["masks"], ids, table)


def load_unlabelled(prepared_dir: str | Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(images uint8 (U, H, W, 3), ids str (U,), groups str (U,)) of `unlabelled.npz`; U = 0 when
    prepare had none (or the folder predates the file)."""
    path = Path(prepared_dir) / "unlabelled.npz"
    if not path.is_file():
        size = int(load_fingerprint(prepared_dir).get("image_size", 64))
        return np.zeros((0, size, size, 3), np.uint8), np.zeros(0, str), np.zeros(0, str)
    arrays = load_npz(path)
    return arrays["images"], arrays["ids"].astype(str), arrays["groups"].astype(str)


def load_manifest(prepared_dir: str | Path) -> pd.DataFrame:
    """manifest.csv as a DataFrame (`flat` bool, `cdr` float with NaN for polyp data)."""
    path = Path(prepared_dir) / "manifest.csv"
    if not path.is_file():
        raise InputError(f"{path}: prepared manifest not found; run `dvc repro prepare` first")
    return pd.read_csv(path, dtype={"id": str, "source": str, "group": str}, keep_default_na=True)


def load_fingerprint(prepared_dir: str | Path) -> dict[str, Any]:
    """fingerprint.json as a dict: family, num_classes, class_names, image_size, counts,
    intensity {mean, std} (per RGB channel, [0, 1] units), lesion_area {bins, counts},
    size_classes {thresholds {small}, counts {split: {small, large, none}}}, contrast, cdr
    (fundus; else null), threshold_baseline {feature, threshold, direction, dice_train,
    dice_test}, fixes {kind: count}, small_area_frac, split_unit, normals_method, source."""
    path = Path(prepared_dir) / "fingerprint.json"
    if not path.is_file():
        raise InputError(f"{path}: fingerprint not found; run `dvc repro prepare` first")
    return read_json(path)


# ----------------------------------------------------------------------------------------- writer
def _manifest_rows(split_name: str, split: Split, data: Dataset, small: float, flat_contrast: float) -> list[dict]:
    rows = []
    for i in range(len(split)):
        st = sample_stats(split.images[i], split.masks[i], data.family, small)
        known = split.flat[i]
        has_lesion = st.lesion_area_frac > 0
        if not has_lesion or data.family == "fundus":  # flatness is a polyp notion
            flat = False
        elif known is not None:
            flat = bool(known)
        else:
            flat = st.contrast is not None and st.contrast < flat_contrast
        rows.append(
            {
                "id": split.ids[i],
                "split": split_name,
                "source": split.sources[i],
                "family": data.family,
                "lesion_area_frac": round(st.lesion_area_frac, 6),
                "size_class": st.size_class,
                "contrast": None if st.contrast is None else round(st.contrast, 6),
                "flat": flat,
                "cdr": None if st.cdr is None else round(st.cdr, 6),
                "group": split.groups[i],
            }
        )
    return rows


MIN_BANK_PIXELS = 4  # connected components smaller than this are specks (annotation noise), not lesions


def _mask_bank(train: Split, family: str, small: float) -> tuple[np.ndarray, list[str], list[dict]]:
    """One bank entry per lesion: each connected component of a training lesion mask (a frame
    with two polyps gives two shapes), so the generator can scale and move single lesions."""
    masks, ids, rows = [], [], []
    for i in range(len(train)):
        labels, count = ndimage.label(lesion_mask(train.masks[i], family))
        for k in range(1, count + 1):
            les = labels == k
            if les.sum() < MIN_BANK_PIXELS:
                continue
            ys, xs = np.nonzero(les)
            area = float(les.mean())
            masks.append(les.astype(np.uint8))
            ids.append(train.ids[i])
            rows.append(
                {
                    "mask_id": f"m{len(rows):05d}",
                    "source_id": train.ids[i],
                    "area_frac": round(area, 6),
                    "size_class": "small" if area < small else "large",
                    "cy": round(float((ys.min() + ys.max()) / 2), 2),
                    "cx": round(float((xs.min() + xs.max()) / 2), 2),
                    "height": int(ys.max() - ys.min() + 1),
                    "width": int(xs.max() - xs.min() + 1),
                }
            )
    size = train.masks.shape[1]
    stack = np.stack(masks) if masks else np.zeros((0, size, size), np.uint8)
    return stack, ids, rows


def _size_counts(rows: list[dict]) -> dict[str, int]:
    out = {"small": 0, "large": 0, "none": 0}
    for r in rows:
        out[r["size_class"]] += 1
    return out


def write_prepared(data: Dataset, out_dir: str | Path, *, image_size: int, small_area_frac: float,
                   flat_contrast: float, cdr_normal_max: float, preview_count: int) -> dict[str, Any]:
    """Write every prepared file into `out_dir` (an empty temporary folder: the caller renames it
    into place) and return the flat metrics for metrics/prepare.json."""
    out_dir = Path(out_dir)
    for name in SPLITS:
        split: Split = getattr(data, name)
        save_npz(out_dir / f"{name}.npz", images=split.images, masks=split.masks, ids=np.asarray(split.ids, dtype=str))

    unl = data.unlabelled if data.unlabelled is not None else Split.empty(image_size)
    save_npz(out_dir / "unlabelled.npz", images=unl.images, ids=np.asarray(unl.ids, dtype=str),
             groups=np.asarray(unl.groups, dtype=str))

    rows = {name: _manifest_rows(name, getattr(data, name), data, small_area_frac, flat_contrast) for name in SPLITS}
    manifest = pd.DataFrame([r for name in SPLITS for r in rows[name]], columns=MANIFEST_COLUMNS)
    manifest.to_csv(out_dir / "manifest.csv", index=False, lineterminator="\n")

    bank, bank_ids, bank_rows = _mask_bank(data.train, data.family, small_area_frac)
    save_npz(out_dir / "mask_bank.npz", masks=bank, ids=np.asarray(bank_ids, dtype=str))
    pd.DataFrame(bank_rows, columns=BANK_COLUMNS).to_csv(out_dir / "mask_bank.csv", index=False, lineterminator="\n")

    lesion_rows = [r for r in rows["train"] if r["lesion_area_frac"] > 0]
    contrasts = [r["contrast"] for r in lesion_rows if r["contrast"] is not None]
    fingerprint: dict[str, Any] = {
        "family": data.family,
        "source": data.source,
        "num_classes": data.num_classes,
        "class_names": CLASS_NAMES[data.family],
        "image_size": image_size,
        "counts": {name: len(getattr(data, name)) for name in SPLITS} | {"mask_bank": len(bank_ids),
                                                                          "unlabelled": len(unl)},
        "intensity": intensity(data.train.images),
        "lesion_area": histogram([r["lesion_area_frac"] for r in lesion_rows], AREA_BINS)
        | {"mean": float(np.mean([r["lesion_area_frac"] for r in lesion_rows])) if lesion_rows else None},
        "size_classes": {
            "thresholds": {"small": small_area_frac},
            "counts": {name: _size_counts(rows[name]) for name in ("train", "test")},
        },
        "contrast": {
            "mean": float(np.mean(contrasts)) if contrasts else None,
            "std": float(np.std(contrasts)) if contrasts else None,
            "flat_threshold": flat_contrast,
            "flat_counts": {name: sum(bool(r["flat"]) for r in rows[name]) for name in ("train", "test")},
        },
        "cdr": None,
        "threshold_baseline": _difficulty(data),
        "fixes": dict(sorted(data.fixes.items())),
        "small_area_frac": small_area_frac,
        "split_unit": data.split_unit,
        "normals_method": data.normals_method,
    }
    if data.family == "fundus":
        fingerprint["cdr"] = _cdr_summary(rows, cdr_normal_max)
    write_json(out_dir / "fingerprint.json", fingerprint)

    show = min(preview_count, len(data.train))
    counts = fingerprint["counts"]
    title = (f"prepare: {data.source} ({data.family}), {counts['train']} train / {counts['test']} test / "
             f"{counts['normals']} normals / {counts['mask_bank']} mask-bank shapes / {counts['unlabelled']} unlabelled; first {show} train frames shown")
    save_preview(out_dir / "preview.png", data.train.images[:show], data.train.masks[:show],
                 data.normals.images, data.normals.masks, bank=bank, title=title,
                 class_names=CLASS_NAMES[data.family])
    return _metrics(fingerprint, rows)


def _difficulty(data: Dataset) -> dict[str, Any] | None:
    """The best single colour threshold for the lesion (searched on train, scored on test)."""
    if len(data.train) == 0 or len(data.test) == 0:
        return None
    return threshold_baseline(
        data.train.images, lesion_mask(data.train.masks, data.family),
        data.test.images, lesion_mask(data.test.masks, data.family),
    )


def _cdr_summary(rows: dict[str, list[dict]], normal_max: float) -> dict[str, Any]:
    out: dict[str, Any] = {"normal_max": normal_max, "early_glaucoma_range": [0.5, 0.6]}
    for name in SPLITS:
        cdrs = [r["cdr"] for r in rows[name] if r["cdr"] is not None]
        out[name] = histogram(cdrs, CDR_BINS) | {
            "mean": float(np.mean(cdrs)) if cdrs else None,
            "normal": sum(c < normal_max for c in cdrs),
            "early_glaucoma": sum(0.5 <= c < 0.6 for c in cdrs),
            "glaucomatous": sum(c >= 0.6 for c in cdrs),
        }
    return out


def _metrics(fp: dict[str, Any], rows: dict[str, list[dict]]) -> dict[str, Any]:
    sizes = fp["size_classes"]["counts"]
    m: dict[str, Any] = {
        "n_train": fp["counts"]["train"],
        "n_test": fp["counts"]["test"],
        "n_normals": fp["counts"]["normals"],
        "n_mask_bank": fp["counts"]["mask_bank"],
        "n_unlabelled": fp["counts"]["unlabelled"],
        "n_small_train": sizes["train"]["small"],
        "n_small_test": sizes["test"]["small"],
        "n_flat_train": fp["contrast"]["flat_counts"]["train"],
        "n_flat_test": fp["contrast"]["flat_counts"]["test"],
        "lesion_area_mean": fp["lesion_area"]["mean"],
        "contrast_mean": fp["contrast"]["mean"],
        "intensity_mean": float(np.mean(fp["intensity"]["mean"])),
        "fixes_total": int(sum(fp["fixes"].values())),
        "threshold_baseline_dice": fp["threshold_baseline"]["dice_test"] if fp["threshold_baseline"] else None,
    }
    if fp["cdr"] is not None:
        m["cdr_mean_train"] = fp["cdr"]["train"]["mean"]
        m["n_early_glaucoma_test"] = fp["cdr"]["test"]["early_glaucoma"]
    return m
