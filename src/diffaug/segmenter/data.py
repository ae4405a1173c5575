"""Inputs of `train_segmenter`: the real training split and the gate's accepted synthetic pairs.

Real: `data/prepared/train.npz` + `fingerprint.json` (`num_classes`), through prepare's loader
`diffaug.data.prepared.load_split` / `load_fingerprint`. Synthetic: `data/synthetic/gated/accepted.npz` (same keys) and
`accepted.csv` (one row per sample, in the same order, with the gate's `iou`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from diffaug.errors import InputError
from diffaug.io import load_npz


@dataclass
class Pairs:
    images: np.ndarray  # uint8 (N, H, W, 3)
    masks: np.ndarray  # uint8 (N, H, W) class indices
    iou: np.ndarray | None = None  # float32 (N,) gate IoU (synthetic pairs only)

    def __len__(self) -> int:
        return len(self.images)


def _read_pairs(path: Path, what: str) -> Pairs:
    if not path.is_file():
        raise InputError(f"{path}: {what} not found; run `dvc repro` for the stage that writes it")
    try:
        arrays = load_npz(path)
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: unreadable npz ({exc}); rerun the stage that writes it") from None
    for key in ("images", "masks"):
        if key not in arrays:
            raise InputError(f"{path}: missing array '{key}'; rerun the stage that writes it")
    images, masks = arrays["images"], arrays["masks"]
    if images.ndim != 4 or images.shape[-1] != 3 or masks.shape != images.shape[:3]:
        raise InputError(
            f"{path}: images must be (N, H, W, 3) with masks (N, H, W), got {images.shape} and {masks.shape}"
        )
    return Pairs(images.astype(np.uint8), masks.astype(np.uint8))


def load_real(prepared_dir: str | Path) -> tuple[Pairs, int, list[str]]:
    """The real training pairs, the number of classes incl. background (fingerprint) and each
    frame's group (manifest `group`: its video sequence; the frame's id for older folders)."""
    from diffaug.data.prepared import load_fingerprint, load_split

    split = load_split(prepared_dir, "train")
    path = Path(prepared_dir) / "train.npz"
    if split.images is None or split.images.ndim != 4 or split.masks.shape != split.images.shape[:3]:
        raise InputError(f"{path}: images must be (N, H, W, 3) with masks (N, H, W); rerun prepare")
    if len(split) == 0:
        raise InputError(f"{path}: the training split is empty; check prepare's params")
    fingerprint = load_fingerprint(prepared_dir)
    num_classes = max(int(fingerprint.get("num_classes", 2)), int(split.masks.max()) + 1, 2)
    groups = split.table["group"].astype(str).tolist() if "group" in split.table else [str(i) for i in split.ids]
    return Pairs(split.images.astype(np.uint8), split.masks.astype(np.uint8)), num_classes, groups


def load_accepted(gated_dir: str | Path, image_hw: tuple[int, int]) -> Pairs:
    """The gate's accepted pairs (possibly none) with their IoU, checked against the real size."""
    import pandas as pd

    gated_dir = Path(gated_dir)
    pairs = _read_pairs(gated_dir / "accepted.npz", "accepted synthetic pairs")
    csv = gated_dir / "accepted.csv"
    iou = np.ones(len(pairs), np.float32)
    if csv.is_file():
        table = pd.read_csv(csv)
        if len(table) != len(pairs):
            raise InputError(f"{csv}: {len(table)} rows but accepted.npz holds {len(pairs)} samples; rerun gate")
        if "iou" in table.columns and len(table):
            iou = table["iou"].to_numpy(np.float32)
    if len(pairs) and pairs.images.shape[1:3] != tuple(image_hw):
        raise InputError(
            f"{gated_dir / 'accepted.npz'}: synthetic images are {pairs.images.shape[1:3]} but real ones are "
            f"{tuple(image_hw)}; regenerate at prepare's image size"
        )
    pairs.iou = iou
    return pairs
