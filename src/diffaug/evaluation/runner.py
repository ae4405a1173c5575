"""The `evaluate` stage's library entry points.

`evaluate_predictions` scores given predictions (tests call it with masks they construct);
`predict_runs` loads every trained segmenter the params list and predicts the test split
(`predict_views`: averaged over test-time views);
`run_evaluate` does both, adds the synthetic-quality block and writes every output.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from diffaug.errors import InputError
from diffaug.evaluation.aggregate import detection_block, group_block, group_label, run_summary, significance_block
from diffaug.evaluation.config import EvaluateConfig
from diffaug.evaluation.lesions import lesion_table
from diffaug.evaluation.metrics import check_masks, per_image_table
from diffaug.progress import track
from diffaug.segmenter.config import RATIO_VARIANTS


@dataclass
class RunPrediction:
    """Predicted test masks of one trained run: uint8 (N, H, W) class indices."""

    name: str
    variant: str
    ratio: float
    seed: int
    masks: np.ndarray
    group: str | None = None  # what it is reported under; None = `<variant>` or `<variant>-r<ratio>`
    training: dict[str, Any] | None = None  # the run folder's training summary (run.json `training`), if known
    also: np.ndarray | None = None  # its prediction of `predict_runs`' extra images (the accepted samples), if asked

    def __post_init__(self) -> None:
        if self.group is None:
            self.group = group_label(self.variant, self.ratio)


@dataclass
class Evaluation:
    metrics: dict[str, Any]  # content of metrics/evaluate.json
    per_image: pd.DataFrame  # one row per (run, test image)
    lesions: pd.DataFrame  # one row per (run, ground-truth lesion)
    runs: pd.DataFrame  # one row per run: means over the test images + lesion FNRs
    groups: dict[str, dict[str, Any]] = field(default_factory=dict)  # group -> its metrics block


def resolve_lesion_class(cfg: EvaluateConfig, num_classes: int) -> int:
    lesion_class = cfg.lesion_class if cfg.lesion_class is not None else num_classes - 1
    if lesion_class >= num_classes:
        raise InputError(
            f"evaluate.lesion_class {lesion_class} is not a class of the prepared data (0..{num_classes - 1}); "
            "fix params.yaml"
        )
    return lesion_class


def supply_block(runs: list[RunPrediction]) -> dict[str, Any]:
    """Extra pairs the runs of one copypaste / diffaug group asked for and got, from their training
    summaries: requested (max over seeds), used (min over seeds), shortfall (any seed got fewer).
    Empty when no run carries a summary with `n_real` / `n_extra`."""
    from diffaug.segmenter.runs import SUPPLY_KEYS, synthetic_supply

    found = []
    for run in runs:
        t = run.training or {}
        if all(k in t for k in SUPPLY_KEYS):
            found.append({k: t[k] for k in SUPPLY_KEYS})
        elif "n_real" in t and "n_extra" in t:  # a run folder written before these keys existed
            found.append(synthetic_supply(run.variant, run.ratio, int(t["n_real"]), int(t["n_extra"])))
    if not found:
        return {}
    return {"synthetic_requested": max(int(f["synthetic_requested"]) for f in found),
            "synthetic_used": min(int(f["synthetic_used"]) for f in found),
            "synthetic_shortfall": any(bool(f["synthetic_shortfall"]) for f in found)}


def evaluate_predictions(
    gt: np.ndarray,
    ids: np.ndarray,
    manifest: pd.DataFrame | None,
    fingerprint: dict[str, Any],
    runs: list[RunPrediction],
    cfg: EvaluateConfig,
    seed: int,
) -> Evaluation:
    """Score every run's predictions against the test masks `gt` (N, H, W)."""
    if not runs:
        raise InputError("evaluate: no trained runs to evaluate; list runs in params.yaml train_segmenter.runs")
    class_names = [str(c) for c in fingerprint.get("class_names", ["background", "lesion"])]
    num_classes = len(class_names)
    lesion_class = resolve_lesion_class(cfg, num_classes)
    small = cfg.small_area_frac if cfg.small_area_frac is not None else float(fingerprint.get("small_area_frac", 0.05))
    ids = np.asarray(ids).astype(str)
    # Hard-case classes that the data can define: flat needs the manifest's flag, early glaucoma
    # the fundus family's cup-to-disc ratios.
    classes = ("lesions", "small")
    if manifest is not None and "flat" in manifest.columns:
        classes += ("flat",)
    if fingerprint.get("family") == "fundus":
        classes += ("early_glaucoma",)
    images_rows, lesion_rows, run_rows = [], [], []
    for run in runs:
        check_masks(run.masks, gt, num_classes, what=f"predictions of run {run.name}")
        group = run.group
        info = {"run": run.name, "group": group, "variant": run.variant, "ratio": float(run.ratio), "seed": int(run.seed)}
        table = per_image_table(run.masks, gt, ids, class_names)
        lesions = lesion_table(run.masks, gt, ids, manifest, lesion_class, small, cfg.detect_fraction, cfg.early_glaucoma_cdr)
        images_rows.append(table.assign(**info))
        lesion_rows.append(lesions.assign(**info))
        run_rows.append({**info, **run_summary(table, lesions, classes)})
    per_image = pd.concat(images_rows, ignore_index=True)
    lesions = pd.concat(lesion_rows, ignore_index=True)
    run_df = pd.DataFrame(run_rows)

    groups: dict[str, dict[str, Any]] = {}
    for group, rows in run_df.groupby("group", sort=False):
        block = {"variant": str(rows["variant"].iloc[0]), "ratio": float(rows["ratio"].iloc[0])}
        block.update(group_block(rows, cfg.min_lesions, classes))
        if block["variant"] in RATIO_VARIANTS:
            block.update(supply_block([r for r in runs if r.group == group]))
        groups[str(group)] = block

    metrics: dict[str, Any] = {
        "n_test_images": int(len(ids)),
        "n_runs": int(len(runs)),
        "family": fingerprint.get("family"),
        "lesion_class": class_names[lesion_class],
        "small_area_frac": small,
        "detect_fraction": cfg.detect_fraction,
        "views": cfg.views,
        "baseline": cfg.baseline,
        **groups,
    }
    if cfg.baseline not in groups:
        metrics["significance_status"] = f"no '{cfg.baseline}' runs to judge the augmentations against; add them to train_segmenter.runs"
    metrics["significance"] = significance_block(
        per_image, groups, cfg.baseline, list(ids), seed, cfg.bootstrap_resamples, cfg.confidence, cfg.resample_runs
    )
    metrics["detection_significance"] = detection_block(lesions, groups, cfg.baseline, classes, seed,
                                                       cfg.bootstrap_resamples, cfg.confidence, cfg.resample_runs)
    return Evaluation(metrics=metrics, per_image=per_image, lesions=lesions, runs=run_df, groups=groups)


def predict_runs(
    segmenters_dir: str | Path, planned: list[Any], images: np.ndarray, device: Any, batch_size: int = 32,
    also: tuple[str, np.ndarray] | None = None, views: int = 1,
) -> list[RunPrediction]:
    """Load each planned run (`variant, ratio, seed, name`) from `segmenters_dir/<name>` and predict,
    averaging `views` dihedral views; `also = (group, extra images)`: the runs of that group
    predict those too, in the same load."""
    from diffaug.segmenter import load_segmenter

    out = []
    for run in track(planned, "evaluate: predicting test split"):
        seg = load_segmenter(Path(segmenters_dir) / run.name, device)
        seg.batch_size = batch_size
        pred = RunPrediction(run.name, run.variant, float(run.ratio), int(run.seed), predict_views(seg, images, views),
                             getattr(run, "group", None), seg.meta.get("training"))
        if also is not None and pred.group == also[0]:
            pred.also = predict_views(seg, also[1], views)
        out.append(pred)
    return out


def predict_views(seg: Any, images: np.ndarray, views: int = 1) -> np.ndarray:
    """uint8 (N, H, W, 3) -> uint8 (N, H, W) class indices of `view_proba` (`seg.predict` for 1 view)."""
    if views == 1:
        return seg.predict(images)
    return view_proba(seg, images, views).argmax(axis=1).astype(np.uint8)


def view_proba(seg: Any, images: np.ndarray, views: int) -> np.ndarray:
    """uint8 (N, H, W, 3) -> float32 (N, C, H, W): `seg`'s class probabilities averaged over `views`
    dihedral views of each image (`evaluate.views`), each mapped back to the image's orientation
    first (at most the 4 shape-keeping views on a non-square frame, as the gate's `views`)."""
    import torch

    from diffaug.validator.views import mean_over_views

    return mean_over_views(images, views, lambda xk: torch.from_numpy(seg.predict_proba(xk))).numpy()
