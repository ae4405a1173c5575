"""Write an evaluation: CSV tables for `dvc plots`, PNGs, report.md, metrics/evaluate.json.

data/evaluate/ (one atomic folder):
- per_image.csv  one row per (run, test image): the five metrics (+ per class for fundus)
- lesions.csv    one row per (run, ground-truth lesion): area, classes, covered fraction, found
- runs.csv       one row per run: means over the test images, lesion-level FNRs
- variants.csv   one row per group: mean ± std over seeds (dvc plot: Dice per variant)
- ratio.csv      standard (ratio 0) and every diffaug ratio (dvc plot: table 7)
- plots/*.png, overlays/worst_<group>.png, report.md
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from diffaug.evaluation import figures
from diffaug.evaluation.report import render_report
from diffaug.evaluation.runner import Evaluation
from diffaug.io import atomic_dir, write_json

_SUMMARY = ("dice", "iou", "sensitivity", "fnr", "specificity")


def group_table(groups: dict[str, dict[str, Any]]) -> pd.DataFrame:
    rows = []
    for g, b in groups.items():
        row = {"group": g, "variant": b["variant"], "ratio": b["ratio"], "n_seeds": b["n_seeds"]}
        for k in _SUMMARY:
            row[f"{k}_mean"], row[f"{k}_std"] = b.get(f"{k}_mean"), b.get(f"{k}_std")
        for k in ("lesions", "small", "flat", "early_glaucoma"):
            if f"n_{k}" in b:
                row[f"fnr_{k}"], row[f"n_{k}"] = b.get(f"fnr_{k}"), b[f"n_{k}"]
        rows.append(row)
    return pd.DataFrame(rows)


def ratio_table(groups: pd.DataFrame) -> pd.DataFrame:
    sel = groups[groups["variant"].isin(["standard", "diffaug"])]
    return sel[["ratio", "group", "dice_mean", "dice_std", "n_seeds"]].sort_values("ratio", kind="stable")


def read_training_curves(segmenters_dir: str | Path | None, runs: list[str]) -> dict[str, pd.DataFrame]:
    """dvclive's train/loss.tsv of each run (any depth below the run folder), when present."""
    curves = {}
    if segmenters_dir is None:
        return curves
    for name in runs:
        found = sorted((Path(segmenters_dir) / name).glob("**/plots/metrics/train/loss.tsv"))
        if found:
            curves[name] = pd.read_csv(found[0], sep="\t")
    return curves


def write_evaluation(
    ev: Evaluation, predictions: dict[str, np.ndarray], images: np.ndarray, gt: np.ndarray, ids: np.ndarray,
    out_dir: str | Path, metrics_path: str | Path, worst_cases: int, segmenters_dir: str | Path | None = None,
) -> None:
    groups = group_table(ev.groups)
    with atomic_dir(out_dir) as tmp:
        ev.per_image.to_csv(tmp / "per_image.csv", index=False)
        ev.lesions.to_csv(tmp / "lesions.csv", index=False)
        ev.runs.to_csv(tmp / "runs.csv", index=False)
        groups.to_csv(tmp / "variants.csv", index=False)
        ratio = ratio_table(groups)
        ratio.to_csv(tmp / "ratio.csv", index=False)
        (tmp / "plots").mkdir()
        pictures: dict[str, Any] = {"variants": None, "ratio": None, "training": None, "overlays": {}}
        if groups["dice_mean"].notna().any():
            figures.variant_bars(groups.fillna({"dice_mean": 0.0}), tmp / "plots" / "variants.png")
            pictures["variants"] = "plots/variants.png"
        if len(ratio) > 1 and ratio["dice_mean"].notna().all():
            figures.ratio_curve(ratio, tmp / "plots" / "ratio.png")
            pictures["ratio"] = "plots/ratio.png"
        curves = read_training_curves(segmenters_dir, list(ev.runs["run"]))
        if figures.training_curves(curves, tmp / "plots" / "training.png"):
            pictures["training"] = "plots/training.png"
        if worst_cases:
            files = figures.worst_case_overlays(ev.per_image, predictions, images, gt, ids, worst_cases, tmp / "overlays")
            pictures["overlays"] = {g: f"overlays/{f}" for g, f in files.items()}
        (tmp / "report.md").write_text(render_report(ev.metrics, ev.groups, pictures))
    write_json(metrics_path, ev.metrics)
