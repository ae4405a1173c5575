"""Tiny data for the segmenter tests: bright textured discs (lesions) on a noisy background."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from diffaug.io import save_npz, write_json


def toy_pairs(n: int = 24, size: int = 32, seed: int = 0, two_class: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """images uint8 (n, size, size, 3), masks uint8 (n, size, size): one disc per image."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    images = np.zeros((n, size, size, 3), np.uint8)
    masks = np.zeros((n, size, size), np.uint8)
    for i in range(n):
        bg = 0.35 + 0.08 * rng.standard_normal((size, size))
        r = rng.uniform(0.12, 0.25) * size
        cy, cx = rng.uniform(r + 1, size - r - 1, 2)
        d = np.hypot(yy - cy, xx - cx)
        disc = d < r
        img = np.where(disc, 0.75 - 0.25 * d / r, bg)
        rgb = np.stack([img, 0.8 * img, 0.6 * img], -1)
        images[i] = np.clip(rgb * 255, 0, 255).astype(np.uint8)
        masks[i] = disc
        if two_class:
            masks[i][d < r / 2] = 2
    return images, masks


def write_prepared(root: Path, n_train: int = 24, size: int = 32, seed: int = 0, two_class: bool = False) -> Path:
    """A prepared folder in the contract of docs/architecture.md (train/test npz, manifest, fingerprint)."""
    root.mkdir(parents=True, exist_ok=True)
    rows = []
    for split, n, s in (("train", n_train, seed), ("test", max(4, n_train // 3), seed + 1)):
        images, masks = toy_pairs(n, size, s, two_class)
        ids = np.array([f"{split}-{i:03d}" for i in range(n)])
        save_npz(root / f"{split}.npz", images=images, masks=masks, ids=ids)
        rows += [{"id": i, "split": split} for i in ids]
    pd.DataFrame(rows).to_csv(root / "manifest.csv", index=False)
    write_json(root / "fingerprint.json", {"family": "polyp", "num_classes": 3 if two_class else 2, "image_size": size})
    return root


def write_gated(root: Path, n: int = 12, size: int = 32, seed: int = 5) -> Path:
    """A gate output folder: accepted.npz + accepted.csv with an `iou` column (n may be 0)."""
    root.mkdir(parents=True, exist_ok=True)
    images, masks = toy_pairs(max(n, 1), size, seed)
    images, masks = images[:n], masks[:n]
    save_npz(root / "accepted.npz", images=images, masks=masks, ids=np.array([f"syn-{i}" for i in range(n)]))
    pd.DataFrame({"sample_id": [f"syn-{i}" for i in range(n)], "iou": np.linspace(0.7, 0.95, n)}).to_csv(
        root / "accepted.csv", index=False
    )
    return root
