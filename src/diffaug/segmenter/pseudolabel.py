"""The `pseudolabel` run's extra pairs: one round of self-training on the unlabelled frames.

The rival a reviewer asks for: diffaug turns unlabelled frames (through the generator's prior)
into training pairs; self-training turns the same frames into pairs directly. The teacher is the
`standard` run of the same seed. DVC cannot make one matrix entry depend on another's outs, so
the teacher is trained here again with the very same call, inputs and seeds; on the same machine
its weights are those of `data/segmenters/standard-s<seed>` (tests/test_pseudolabel.py checks).
Frames of the segmenter's validation videos are left out, so model selection stays clean.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from diffaug.segmenter.config import TrainSegmenterConfig
from diffaug.segmenter.data import Pairs
from diffaug.segmenter.models import Segmenter


def pseudo_label(teacher: Segmenter, images: np.ndarray, min_confidence: float) -> tuple[Pairs, np.ndarray]:
    """The teacher's masks on `images` (N, H, W, 3) kept where its confidence (max class
    probability averaged over the frame's pixels) is above `min_confidence`; returns those
    pairs and every frame's confidence (N,)."""
    if len(images) == 0:
        size = images.shape[1:3]
        return Pairs(np.zeros((0, *size, 3), np.uint8), np.zeros((0, *size), np.uint8)), np.zeros(0, np.float32)
    probs = teacher.predict_proba(images)  # (N, C, H, W)
    confidence = probs.max(axis=1).mean(axis=(1, 2)).astype(np.float32)
    keep = confidence > min_confidence
    masks = probs.argmax(axis=1).astype(np.uint8)
    return Pairs(images[keep].astype(np.uint8), masks[keep]), confidence


def pseudolabel_pool(
    real: Pairs, num_classes: int, groups: list[str], unlabelled: np.ndarray, unlabelled_groups: np.ndarray,
    cfg: TrainSegmenterConfig, seed: int, runtime: Any, checkpoints: str | Path | None = None,
    latent_parts: Any = None,
) -> tuple[Pairs, dict[str, Any]]:
    """Train the teacher (the `standard` run of `seed`; `latent_parts` as for train_segmenter), label the unlabelled frames outside the
    validation videos, keep the confident ones. Returns the pool and its numbers."""
    from diffaug.data.holdout import holdout
    from diffaug.segmenter.train import train_segmenter

    _, va = holdout(groups, cfg.val_fraction, runtime.seed)  # as train_segmenter cuts it
    val_groups = {str(groups[i]) for i in va}
    eligible = np.array([str(g) not in val_groups for g in unlabelled_groups], bool)
    teacher = train_segmenter(real, num_classes, cfg, "standard", 0.0, seed, runtime, groups=groups,
                              latent_parts=latent_parts,  # architecture latent: the VAE and validator
                              checkpoints=None if checkpoints is None else Path(checkpoints) / "teacher")
    pool, confidence = pseudo_label(teacher.segmenter, unlabelled[eligible], cfg.pseudolabel.min_confidence)
    lesion_frac = (pool.masks > 0).reshape(len(pool), -1).mean(axis=1) if len(pool) else np.zeros(0)
    stats = {
        "pseudo_unlabelled": int(len(unlabelled)),
        "pseudo_eligible": int(eligible.sum()),  # not in a validation video
        "pseudo_confident": int(len(pool)),
        "pseudo_confidence_mean": float(confidence.mean()) if len(confidence) else None,
        "pseudo_empty_masks": int((lesion_frac == 0).sum()),  # confident frames the teacher finds no lesion in
        "pseudo_lesion_frac_mean": float(lesion_frac.mean()) if len(pool) else None,
        "teacher_val_dice": teacher.summary["val_dice_best"],
        "teacher_seconds": teacher.summary["seconds"],  # a timing (metrics/timings/): the run's cost is both trainings
    }
    return pool, stats
