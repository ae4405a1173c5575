"""`run_evaluate`: everything the `evaluate` stage does, as one plain function."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from diffaug.config import BaseConfig
from diffaug.evaluation.config import EvaluateConfig
from diffaug.evaluation.fidelity import label_fidelity
from diffaug.evaluation.outputs import write_evaluation
from diffaug.evaluation.runner import evaluate_predictions, predict_runs, resolve_lesion_class
from diffaug.evaluation.synthetic import gate_arrays, synthetic_quality


def run_evaluate(
    prepared_dir: str | Path,
    segmenters_dir: str | Path,
    gated_dir: str | Path,
    out_dir: str | Path,
    metrics_path: str | Path,
    cfg: EvaluateConfig,
    base: BaseConfig,
    planned: list[Any],
) -> dict[str, Any]:
    """Predict the real test split with every planned run (`variant, ratio, seed, name`), score
    it, add the synthetic-quality block and write data/evaluate/ and metrics/evaluate.json."""
    from diffaug.data.prepared import load_fingerprint, load_split
    from diffaug.runtime import resolve_runtime

    runtime = resolve_runtime(base)
    test = load_split(prepared_dir, "test")
    fingerprint = load_fingerprint(prepared_dir)
    gate = gate_arrays(gated_dir) if cfg.synthetic.enabled else {}
    accepted = gate.get("accepted")
    # the baseline's view of the accepted labels (label fidelity)
    also = (cfg.baseline, accepted["images"]) if accepted and len(accepted.get("images", [])) else None
    preds = predict_runs(segmenters_dir, planned, test.images, runtime.device, cfg.batch_size, also, cfg.views)
    ev = evaluate_predictions(test.masks, test.ids, test.table, fingerprint, preds, cfg, base.seed)
    if cfg.synthetic.enabled:
        lesion_class = resolve_lesion_class(cfg, len(fingerprint.get("class_names", [0, 1])))
        # the C2ST's real crops: the training split, the backgrounds' own sequences (test split without one)
        has_train = (Path(prepared_dir) / "train.npz").is_file()
        train = load_split(prepared_dir, "train") if has_train else None
        ev.metrics["synthetic"] = synthetic_quality(
            gated_dir, test.images, test.masks, lesion_class, cfg.synthetic, base.seed,
            train.images if train else None, train.masks if train else None, gate,
        )
        baseline_runs = [p for p in preds if p.also is not None]  # none without accepted samples
        if baseline_runs:
            masks = {"accepted": accepted["masks"], "test": test.masks}
            small = {k: _is_small(v, lesion_class, float(ev.metrics["small_area_frac"])) for k, v in masks.items()}
            ev.metrics["synthetic"].update(label_fidelity(
                {"accepted": [p.also for p in baseline_runs], "test": [p.masks for p in baseline_runs]}, masks, small, lesion_class))
    write_evaluation(
        ev, {p.name: p.masks for p in preds}, test.images, test.masks, test.ids.astype(str),
        out_dir, metrics_path, cfg.worst_cases, segmenters_dir,
    )
    return ev.metrics


def _is_small(masks: Any, lesion_class: int, small_frac: float) -> Any:
    """(N, H, W) class indices -> (N,) bool: prepare's image-level size class is "small"."""
    from diffaug.data.stats import size_class

    return np.array([size_class(a, small_frac) == "small" for a in (masks == lesion_class).mean(axis=(1, 2))])
