"""The gate's optional realism criterion (`gate.realism_max`, off by default).

The IoU test of eq. 14 checks *where* a lesion is, not whether it looks like one; on real frames
it keeps the smooth, clearly outlined blobs a validator segments easily (docs/backgrounds.md).
This criterion runs the classifier two-sample test of `diffaug.evaluation.c2st` between the real
lesion crops of the training split (the backgrounds' own sequences) and the crops of every
generated sample, and scores each sample with a fold model that never trained on it: its rank
among that fold's held-out real crops, i.e. the share of them scored less "synthetic" than the
sample (0.5 = as real-looking as a typical real lesion, 1 = more synthetic-looking than every
real one). Ranks, unlike the raw probabilities, compare across fold models, whose score scales
differ. A sample whose rank exceeds `gate.realism_max` is rejected.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from diffaug.errors import InputError
from diffaug.evaluation.config import C2STConfig


def realism_ranks(images: np.ndarray, masks: np.ndarray, train_images: np.ndarray, train_masks: np.ndarray,
                  lesion_class: int, cfg: C2STConfig, crop_size: int, margin: float, seed: int) -> tuple[np.ndarray, float]:
    """(S,) realism rank per generated sample (NaN for a sample without lesion pixels) and the
    C2ST AUC of all generated crops against the real training crops."""
    from diffaug.evaluation.c2st import two_sample_test
    from diffaug.evaluation.synthetic import lesion_crops

    has = (masks == lesion_class).reshape(len(masks), -1).any(1)
    synth = lesion_crops(images, masks, lesion_class, crop_size, margin)  # one crop per sample with a lesion, in order
    real = lesion_crops(train_images, train_masks, lesion_class, crop_size, margin)
    result = two_sample_test(real, synth, cfg, seed)
    ranks = np.full(len(images), np.nan)
    ranks[has] = result.synth_rank
    return ranks, result.auc


def load_train_lesions(prepared_dir: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """The training split's images and masks (the real side of the test)."""
    from diffaug.data.prepared import load_split

    train = load_split(prepared_dir, "train")
    if train.images is None or not len(train):
        raise InputError(f"{Path(prepared_dir) / 'train.npz'}: no training frames for gate.realism_max; rerun prepare")
    return train.images, train.masks
