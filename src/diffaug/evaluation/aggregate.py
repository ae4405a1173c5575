"""From per-image and per-lesion tables of every run to the figures people compare.

Levels: image -> run (mean over test images) -> group (mean ± std over seeds). A group is one
run spec of train_segmenter without the seed: `none`, `standard` (ratio-free variants) or
`<variant>-r<ratio>` (copypaste, diffaug), e.g. `diffaug-r3`. std is the sample std over seeds
(ddof = 1): null with one seed. Every null has a `<key>_status` (or group `std_status`) reason.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from diffaug.evaluation.lesions import LESION_CLASSES, lesion_fnr
from diffaug.evaluation.metrics import METRICS
from diffaug.evaluation.significance import paired_comparison, paired_detection

RATIO_FREE = ("none", "standard")


def group_label(variant: str, ratio: float) -> str:
    """`none`, `standard`, `copypaste-r1`, `diffaug-r0.5`: the run spec without `-r0` and seed."""
    return variant if variant in RATIO_FREE else f"{variant}-r{float(ratio):g}"


def run_summary(
    per_image: pd.DataFrame, lesions: pd.DataFrame, classes: tuple[str, ...] = LESION_CLASSES
) -> dict[str, float]:
    """One run: mean of each metric over test images (NaN-skipping) and lesion-level FNRs."""
    out: dict[str, float] = {}
    for key in [c for c in per_image.columns if c.split("_")[0] in METRICS and c != "id"]:
        vals = per_image[key].to_numpy(float)
        out[key] = float(np.nanmean(vals)) if np.isfinite(vals).any() else float("nan")
        out[f"{key}_undefined_images"] = int((~np.isfinite(vals)).sum())
    for name, (fnr, n) in lesion_fnr(lesions, classes).items():
        out[f"fnr_{name}"] = fnr
        out[f"n_{name}"] = n
    return out


def _undefined_reason(key: str) -> str:
    if key.startswith("sensitivity") or key.startswith("fnr"):
        return "undefined: no lesion pixels in any test image (sensitivity needs positives)"
    if key.startswith("specificity"):
        return "undefined: no background pixels in any test image"
    return "undefined: no test image"


def group_block(runs: pd.DataFrame, min_lesions: int, classes: tuple[str, ...] = LESION_CLASSES) -> dict[str, Any]:
    """Metrics of one group from its per-run rows (one row per seed)."""
    out: dict[str, Any] = {"n_seeds": int(len(runs))}
    if len(runs) < 2:
        out["std_status"] = f"undefined: {len(runs)} seed; run >= 2 seeds (params/full_comparison.yaml uses 5)"
    pixel_keys = [c for c in runs.columns if c.split("_")[0] in METRICS and "undefined" not in c]
    pixel_keys = [k for k in pixel_keys if k not in {f"fnr_{n}" for n in LESION_CLASSES}]
    for key in pixel_keys:
        vals = runs[key].to_numpy(float)
        finite = vals[np.isfinite(vals)]
        out[f"{key}_mean"] = float(finite.mean()) if finite.size else None
        out[f"{key}_std"] = float(finite.std(ddof=1)) if finite.size >= 2 else None
        if not finite.size:
            out[f"{key}_status"] = _undefined_reason(key)
        undefined = int(runs[f"{key}_undefined_images"].max())
        if undefined and finite.size:
            out[f"{key}_undefined_images"] = undefined
    for name in classes:
        n = int(runs[f"n_{name}"].max())
        vals = runs[f"fnr_{name}"].to_numpy(float)
        out[f"n_{name}"] = n
        out[f"fnr_{name}"] = float(vals.mean()) if n else None
        out[f"fnr_{name}_std"] = float(vals.std(ddof=1)) if n and len(vals) >= 2 else None
        if n == 0:
            out[f"fnr_{name}_status"] = "undefined: no lesion in the test split" if name == "lesions" else f"undefined: no {name.replace('_', ' ')} lesion in the test split"
        elif n < min_lesions:
            out[f"fnr_{name}_status"] = f"few lesions: {n} < evaluate.min_lesions ({min_lesions}); not meaningful"
    return out


def seed_averaged_dice(per_image: pd.DataFrame, group: str, ids: list[str]) -> np.ndarray:
    """Per-image Dice of a group averaged over its seeds, in the order of `ids`."""
    sel = per_image[per_image["group"] == group]
    return sel.groupby("id")["dice"].mean().reindex(ids).to_numpy(float)


def comparisons(groups: dict[str, dict[str, Any]], baseline: str) -> list[tuple[str, str]]:
    """Pairs (a, b) to test: every augmentation group against the baseline (`standard`), and each
    diffaug group against its rivals, copypaste and pseudolabel (same ratio when trained, else
    every group of that rival)."""
    pairs = []
    names = list(groups)
    if baseline in groups:
        pairs += [(g, baseline) for g in names if g not in (baseline, "none")]
    for g in names:
        if groups[g]["variant"] != "diffaug":
            continue
        for rival in ("copypaste", "pseudolabel"):
            cps = [c for c in names if groups[c]["variant"] == rival]
            same = [c for c in cps if groups[c]["ratio"] == groups[g]["ratio"]]
            pairs += [(g, c) for c in (same or cps) if (g, c) not in pairs]
    return pairs


def paired_seeds(table: pd.DataFrame, a: str, b: str) -> list[int]:
    """The training seeds both groups ran: the pairs of the run-level bootstrap (seed s of every
    variant draws the same real batches in the same order, docs/segmenter.md)."""
    seeds = [set(table.loc[table["group"] == g, "seed"]) for g in (a, b)]
    return sorted(seeds[0] & seeds[1])


def run_matrix(table: pd.DataFrame, group: str, seeds: list[int], index: list[str], value: str,
               units: list[Any] | pd.Index) -> np.ndarray:
    """(len(seeds), len(units)) `value` of a group's runs, a row per seed, a column per unit (test
    image id, or (id, lesion) pair)."""
    sel = table[table["group"] == group].pivot_table(index="seed", columns=index, values=value, aggfunc="mean")
    return sel.reindex(index=seeds, columns=units).to_numpy(float)


def significance_block(
    per_image: pd.DataFrame, groups: dict[str, dict[str, Any]], baseline: str, ids: list[str],
    seed: int, resamples: int, confidence: float, resample_runs: bool = True,
) -> dict[str, dict[str, Any]]:
    out = {}
    for k, (a, b) in enumerate(comparisons(groups, baseline)):
        seeds = paired_seeds(per_image, a, b) if resample_runs else []
        runs = tuple(run_matrix(per_image, g, seeds, ["id"], "dice", ids) for g in (a, b)) if seeds else None
        res = paired_comparison(
            seed_averaged_dice(per_image, a, ids), seed_averaged_dice(per_image, b, ids),
            seed=seed + k, resamples=resamples, confidence=confidence, runs=runs,
        )
        res["metric"] = "dice"
        out[f"{a}_vs_{b}"] = res
    return out


def detection_block(lesions: pd.DataFrame, groups: dict[str, dict[str, Any]], baseline: str,
                    classes: tuple[str, ...], seed: int = 0, resamples: int = 2000, confidence: float = 0.95,
                    resample_runs: bool = True) -> dict[str, dict[str, Any]]:
    """For each comparison of `comparisons` and lesion class: `paired_detection` of the per-lesion
    detection rates over seeds, and of each paired run's found / missed lesions (keys
    `<a>_vs_<b>` -> class -> result)."""
    out: dict[str, dict[str, Any]] = {}
    if lesions.empty:
        return out
    table = lesions.assign(found=lesions["found"].astype(float))
    rate = table.groupby(["group", "id", "lesion"])["found"].mean()
    for k, (a, b) in enumerate(comparisons(groups, baseline)):
        block = {}
        ra, rb = rate.loc[a], rate.loc[b]
        both = ra.index.intersection(rb.index)
        meta = lesions.drop_duplicates(["id", "lesion"]).set_index(["id", "lesion"]).reindex(both)
        seeds = paired_seeds(table, a, b) if resample_runs else []
        found = [run_matrix(table, g, seeds, ["id", "lesion"], "found", both) for g in (a, b)] if seeds else None
        for name in classes:
            sel = np.ones(len(both), bool) if name == "lesions" else meta[name].astype(bool).to_numpy()
            runs = (found[0][:, sel], found[1][:, sel]) if found is not None else None
            block[name] = paired_detection(ra.reindex(both).to_numpy()[sel], rb.reindex(both).to_numpy()[sel],
                                           runs, seed + k, resamples, confidence)
        out[f"{a}_vs_{b}"] = block
    return out
