"""`run_evaluate`: everything the `evaluate` stage does, as one plain function."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from diffaug.config import BaseConfig
from diffaug.evaluation.config import EvaluateConfig
from diffaug.evaluation.fidelity import label_fidelity
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
        ev.metrics["synthetic"].update(_fidelity(gated_dir, segmenters_dir, preds, cfg, test, lesion_class,
                                                 float(ev.metrics["small_area_frac"]), runtime.device))
    write_evaluation(
        ev, {p.name: p.masks for p in preds}, test.images, test.masks, test.ids.astype(str),
        out_dir, metrics_path, cfg.worst_cases, segmenters_dir,
    )
    return ev.metrics


def _fidelity(gated_dir: str | Path, segmenters_dir: str | Path, preds: list[Any], cfg: EvaluateConfig, test: Any,
              lesion_class: int, small_frac: float, device: Any) -> dict[str, Any]:
    """The baseline runs' view of the accepted labels (diffaug.evaluation.fidelity); {} without
    accepted samples or baseline runs."""
    from diffaug.io import load_npz
    from diffaug.segmenter import load_segmenter

    npz = Path(gated_dir) / "accepted.npz"
    base = [p for p in preds if p.group == cfg.baseline]
    accepted = load_npz(npz) if npz.is_file() else {}
    if not base or not len(accepted.get("images", [])):
        return {}
    predicted = []
    for run in base:
        seg = load_segmenter(Path(segmenters_dir) / run.name, device)
        seg.batch_size = cfg.batch_size
        predicted.append(seg.predict(accepted["images"]))

    def is_small(masks):  # image-level size class by lesion area, as prepare's size_class
        return (masks == lesion_class).mean(axis=(1, 2)) < small_frac

    masks = {"accepted": accepted["masks"], "test": test.masks}
    return label_fidelity({"accepted": predicted, "test": [p.masks for p in base]}, masks,
                          {k: is_small(v) for k, v in masks.items()}, lesion_class)
