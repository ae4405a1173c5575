"""`run_evaluate`: everything the `evaluate` stage does, as one plain function."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from diffaug.config import BaseConfig
from diffaug.evaluation.config import EvaluateConfig
from diffaug.evaluation.outputs import write_evaluation
from diffaug.evaluation.runner import evaluate_predictions, predict_runs, resolve_lesion_class
from diffaug.evaluation.synthetic import synthetic_quality


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
    preds = predict_runs(segmenters_dir, planned, test.images, runtime.device, cfg.batch_size)
    ev = evaluate_predictions(test.masks, test.ids, test.table, fingerprint, preds, cfg, base.seed)
    if cfg.synthetic.enabled:
        lesion_class = resolve_lesion_class(cfg, len(fingerprint.get("class_names", [0, 1])))
        # the C2ST's real crops: the training split, the backgrounds' own sequences (test split without one)
        has_train = (Path(prepared_dir) / "train.npz").is_file()
        train = load_split(prepared_dir, "train") if has_train else None
        ev.metrics["synthetic"] = synthetic_quality(
            gated_dir, test.images, test.masks, lesion_class, cfg.synthetic, base.seed,
            train.images if train else None, train.masks if train else None,
        )
    write_evaluation(
        ev, {p.name: p.masks for p in preds}, test.images, test.masks, test.ids.astype(str),
        out_dir, metrics_path, cfg.worst_cases, segmenters_dir,
    )
    return ev.metrics
