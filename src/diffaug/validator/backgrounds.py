"""The gate's background check: is a "normal" background really lesion-free?

A background made from a training frame by removing its lesion can keep a remnant (a bulge, the
rim), and every sample painted on it then teaches the downstream segmenter that lesion tissue is
background. The validator, trained on the real split, segments each background generate painted
on (data/synthetic/raw/backgrounds.npz); a background fails when the lesion pixels it predicts
outside the background's own annotation (fundus normals keep their disc and cup) cover more than
`gate.background_max_lesion_frac` of the frame. Samples on a failed background are rejected and
counted (`n_rejected_background`); the failed fraction per removal method goes to gate.json.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from diffaug.errors import InputError
from diffaug.io import load_npz


@dataclass
class BackgroundCheck:
    ids: np.ndarray  # (M,) background ids
    lesion_frac: np.ndarray  # (M,) predicted lesion area outside the annotation / frame area
    ok: np.ndarray  # (M,) bool
    methods: np.ndarray  # (M,) how each background was made
    metrics: dict = field(default_factory=dict)


def background_seeds(n: int, seed: int) -> np.ndarray:
    """Validator noise seeds of the backgrounds: a stream apart from the samples' seeds."""
    return np.array([np.random.SeedSequence([seed, i, 0xBC]).generate_state(1)[0] for i in range(n)], np.int64)


def check_backgrounds(validator, raw_dir: str | Path, max_lesion_frac: float, mode: str, steps: int,
                      batch_size: int, seed: int) -> BackgroundCheck | None:
    """Segment every background of raw_dir/backgrounds.npz; None when generate wrote none."""
    path = Path(raw_dir) / "backgrounds.npz"
    if not path.is_file():
        return None
    try:
        bg = load_npz(path)
        images, masks, ids = bg["images"], bg["masks"], bg["ids"].astype(str)
    except (OSError, ValueError, KeyError) as exc:
        raise InputError(f"{path}: unreadable or missing images/masks/ids ({exc}); rerun generate") from None
    methods = bg["methods"].astype(str) if "methods" in bg else np.full(len(ids), "unknown")
    if len(ids) == 0:
        return BackgroundCheck(ids, np.zeros(0), np.zeros(0, bool), methods, {"backgrounds_checked": 0})
    pred = validator.predict(images, mode=mode, steps=steps, seeds=background_seeds(len(ids), seed), batch_size=batch_size)
    extra = (pred >= 1) & (masks == 0)  # lesion pixels where the background has no annotation of its own
    frac = extra.reshape(len(ids), -1).mean(axis=1)
    ok = frac <= max_lesion_frac
    metrics: dict = {
        "backgrounds_checked": int(len(ids)), "backgrounds_failed": int((~ok).sum()),
        "background_residual_fraction": float((~ok).mean()), "background_lesion_frac_mean": float(frac.mean()),
    }
    for m in sorted(set(methods)):
        sel = methods == m
        metrics[f"background_residual_fraction_{m}"] = float((~ok[sel]).mean())
    return BackgroundCheck(ids, frac, ok, methods, metrics)
