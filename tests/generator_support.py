"""Helpers of the generator tests: a tiny prepared-data folder (docs/architecture.md contract)
and tiny finetune_generator params."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from diffaug.io import save_npz

TINY = {
    "vae": {"block_out_channels": [8, 16], "norm_num_groups": 4, "latent_channels": 4},
    "unet": {"block_out_channels": [16, 32], "norm_num_groups": 8, "attention_head_dim": 4, "cross_attention_levels": 1},
    "text_max_length": 8,
    "num_train_timesteps": 100,
    "vae_phase": {"steps": 4, "batch_size": 2},
    "pretrain_phase": {"steps": 4, "batch_size": 2, "lr": 1e-3},
    "finetune_phase": {"steps": 4, "batch_size": 2, "lr": 1e-3},
    "checkpoint_every": 2,
}


def _frame(rng: np.random.Generator, size: int) -> np.ndarray:
    base = np.array([180, 90, 80], np.float32) + rng.normal(0, 12, (size, size, 3))
    return np.clip(base, 0, 255).astype(np.uint8)


def write_prepared(root: Path, n_train: int = 6, n_normals: int = 3, size: int = 32, seed: int = 0) -> Path:
    """Polyp-like toy data: pink mucosa, a darker red disc lesion in each training frame."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    yy, xx = np.mgrid[:size, :size]
    images, masks, rows = [], [], []
    for i in range(n_train):
        img = _frame(rng, size)
        r = rng.uniform(3, 8)
        cy, cx = rng.uniform(r, size - r, 2)
        m = ((yy - cy) ** 2 + (xx - cx) ** 2 <= r * r).astype(np.uint8)
        img[m == 1] = np.array([120, 30, 40], np.uint8)
        images.append(img)
        masks.append(m)
        area = float(m.mean())
        rows.append(
            {"id": f"t{i}", "split": "train", "source": "toy", "family": "polyp", "lesion_area_frac": area,
             "size_class": "small" if area < 0.05 else "large", "contrast": 0.2, "flat": i % 3 == 0, "cdr": None}
        )
    save_npz(root / "train.npz", images=np.stack(images), masks=np.stack(masks), ids=np.array([r["id"] for r in rows]))
    normals = np.stack([_frame(rng, size) for _ in range(n_normals)])
    nids = [f"n{i}" for i in range(n_normals)]
    save_npz(root / "normals.npz", images=normals, masks=np.zeros((n_normals, size, size), np.uint8), ids=np.array(nids))
    for n in nids:
        rows.append({"id": n, "split": "normals", "source": "toy", "family": "polyp", "lesion_area_frac": 0.0,
                     "size_class": "none", "contrast": None, "flat": False, "cdr": None})
    pd.DataFrame(rows).to_csv(root / "manifest.csv", index=False)
    (root / "fingerprint.json").write_text(json.dumps({"family": "polyp", "image_size": size, "num_classes": 2}))
    return root
