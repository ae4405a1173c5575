"""Downstream segmenters trained on real + extra pairs (augmentation variants), and their loading.

Public API (imported lazily so `diffaug --help` and the params loader stay light):
- `run_name(variant, ratio, seed)` -> folder name under data/segmenters/
- `planned_runs(cfg)` -> every (variant, ratio, seed, name) the params ask `dvc repro` to train
- `load_segmenter(run_dir, device)` -> `Segmenter` with `predict` / `predict_proba`
- `train_segmenter(...)` -> the training loop the stage calls
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "run_name": "diffaug.segmenter.runs",
    "planned_runs": "diffaug.segmenter.runs",
    "Segmenter": "diffaug.segmenter.models",
    "SegmenterNet": "diffaug.segmenter.models",
    "load_segmenter": "diffaug.segmenter.models",
    "save_segmenter": "diffaug.segmenter.models",
    "train_segmenter": "diffaug.segmenter.train",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'diffaug.segmenter' has no attribute '{name}'")
