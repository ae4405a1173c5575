"""Evaluation of the downstream segmenters (the paper's tables 2, 3, 5, 7).

Public API (imported lazily so `diffaug --help` stays fast):
- `per_image_table(pred, gt, ids, class_names)`: Dice, IoU, sensitivity, FNR, specificity per image (MONAI)
- `lesion_table(...)`, `lesion_fnr(table)`: lesion-level detection and FNR per hard-case class
- `paired_comparison(a, b, seed)`: Wilcoxon signed-rank + bootstrap CI of the mean difference
- `synthetic_quality(gated_dir, ...)`: table 5 (LPIPS, FID, validation IoU, acceptance, diversity)
- `evaluate_predictions(...)`, `predict_runs(...)`, `run_evaluate(...)`: the stage's library
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "per_image_table": "diffaug.evaluation.metrics",
    "lesion_table": "diffaug.evaluation.lesions",
    "lesion_fnr": "diffaug.evaluation.lesions",
    "paired_comparison": "diffaug.evaluation.significance",
    "synthetic_quality": "diffaug.evaluation.synthetic",
    "RunPrediction": "diffaug.evaluation.runner",
    "evaluate_predictions": "diffaug.evaluation.runner",
    "predict_runs": "diffaug.evaluation.runner",
    "run_evaluate": "diffaug.evaluation.stage_evaluate",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'diffaug.evaluation' has no attribute '{name}'")
