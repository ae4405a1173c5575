"""Synthetic-quality metrics (table 5): accepted vs rejected synthetic lesions.

- validation IoU: the gate's `iou` column (eq. 14), mean per set;
- acceptance rate: accepted / generated;
- diversity: accepted variants kept per normal background (mean over backgrounds used);
- LPIPS: each synthetic lesion crop against `lpips_pairs` seeded real lesion crops (mean
  distance; lower = perceptually closer to real lesions);
- FID: Fréchet distance of Inception-v3 pool features (2048-d, torchvision weights from a local
  file), synthetic crops vs real crops, through torchmetrics' `FrechetInceptionDistance`;
- C2ST AUC: held-out ROC AUC of a small CNN trained to tell synthetic from real crops
  (`diffaug.evaluation.c2st`; 0.5 = indistinguishable, 1 = trivially apart); no weights needed.
Crops: a square box around the lesion of the intended mask (synthetic) or of the ground truth
(real lesions of the *test* split, which the generator never saw), grown by `crop_margin`,
resized to `crop_size`. FID on a few hundred crops is biased upwards (it shrinks with sample
size); compare accepted with rejected at equal counts, not with the paper's absolute figures.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torchmetrics.image.fid import FrechetInceptionDistance

from diffaug.evaluation.backbones import load_inception, load_lpips
from diffaug.evaluation.c2st import two_sample_test
from diffaug.evaluation.config import C2STConfig, SyntheticQualityConfig
from diffaug.imaging import to_model_space
from diffaug.io import load_npz

SETS = ("accepted", "rejected")


def lesion_crops(
    images: np.ndarray, masks: np.ndarray, lesion_class: int, size: int, margin: float
) -> np.ndarray:
    """uint8 (K, size, size, 3) square crops around the lesion pixels of each image that has any."""
    crops = []
    h, w = masks.shape[1:]
    for img, m in zip(images, masks, strict=True):
        ys, xs = np.nonzero(m == lesion_class)
        if ys.size == 0:
            continue
        cy, cx = (ys.min() + ys.max() + 1) / 2, (xs.min() + xs.max() + 1) / 2
        side = max(ys.max() - ys.min() + 1, xs.max() - xs.min() + 1) * (1 + 2 * margin)
        side = int(min(max(round(side), 8), h, w))
        y0 = int(np.clip(round(cy - side / 2), 0, h - side))
        x0 = int(np.clip(round(cx - side / 2), 0, w - side))
        crop = torch.from_numpy(np.ascontiguousarray(img[y0 : y0 + side, x0 : x0 + side])).permute(2, 0, 1)[None]
        crop = torch.nn.functional.interpolate(crop.float(), size=(size, size), mode="bilinear", antialias=True)
        crops.append(crop[0].round().clamp(0, 255).byte().permute(1, 2, 0).numpy())
    if not crops:
        return np.zeros((0, size, size, 3), np.uint8)
    return np.stack(crops)


def _subsample(crops: np.ndarray, limit: int, rng: np.random.Generator) -> np.ndarray:
    if len(crops) <= limit:
        return crops
    return crops[np.sort(rng.choice(len(crops), size=limit, replace=False))]


def _to_lpips_input(crops: np.ndarray) -> torch.Tensor:
    return to_model_space(crops)  # lpips expects [-1, 1]


@torch.no_grad()
def lpips_to_real(model: torch.nn.Module, synth: np.ndarray, real: np.ndarray, pairs: int, rng: np.random.Generator) -> float:
    """Mean LPIPS between each synthetic crop and `pairs` randomly drawn real crops."""
    idx = rng.integers(0, len(real), size=(len(synth), pairs))
    a = _to_lpips_input(np.repeat(synth, pairs, axis=0))
    b = _to_lpips_input(real[idx.reshape(-1)])
    dists = [model(a[i : i + 64], b[i : i + 64]).flatten() for i in range(0, len(a), 64)]
    return float(torch.cat(dists).mean())


def real_fid(extractor: torch.nn.Module, real: np.ndarray) -> FrechetInceptionDistance:
    """torchmetrics FID holding the features of the real crops uint8 (N, S, S, 3).

    The extractor takes uint8 (B, 3, S, S) images itself (`InceptionPool` resizes and scales
    them), so `normalize` stays False: torchmetrics then passes the images through unchanged.
    `reset_real_features=False` keeps the real statistics across `reset()`, so each synthetic
    set is scored against the same real features, extracted once."""
    metric = FrechetInceptionDistance(feature=extractor, reset_real_features=False, normalize=False)
    _update(metric, real, real=True)
    return metric


def fid_to_real(metric: FrechetInceptionDistance, synth: np.ndarray) -> float:
    """FID of the synthetic crops uint8 (N, S, S, 3) against the real ones `metric` holds."""
    metric.reset()  # drops the previous synthetic set only (reset_real_features=False)
    _update(metric, synth, real=False)
    # rounding in the eigenvalues can leave near-identical sets a hair below 0
    return max(float(metric.compute()), 0.0)


@torch.no_grad()
def _update(metric: FrechetInceptionDistance, crops: np.ndarray, real: bool) -> None:
    t = torch.from_numpy(crops).permute(0, 3, 1, 2).contiguous()  # uint8 (N, 3, S, S)
    for i in range(0, len(t), 32):
        metric.update(t[i : i + 32], real=real)


def realism(real: np.ndarray, crops: dict[str, np.ndarray], cfg: C2STConfig, seed: int, split: str = "test") -> dict[str, Any]:
    """C2ST AUC of each synthetic set against the real crops; null plus `c2st_status` when a set
    has fewer crops than folds (the library function raises on that instead)."""
    out: dict[str, Any] = {}
    for name in SETS:
        out[f"c2st_auc_{name}"] = None
        out[f"c2st_n_{name}"] = 0
    if not cfg.enabled:
        out["c2st_status"] = "disabled: evaluate.synthetic.c2st.enabled is false"
        return out
    need = f"need at least {cfg.folds} (evaluate.synthetic.c2st.folds)"
    if len(real) < cfg.folds:
        out["c2st_status"] = f"undefined: {len(real)} real lesion crop(s) in the {split} split; {need}"
        return out
    notes = []
    for name in SETS:
        if len(crops[name]) < cfg.folds:
            notes.append(f"{name}: {len(crops[name])} crop(s)")
            continue
        result = two_sample_test(real, crops[name], cfg, seed)
        out[f"c2st_auc_{name}"] = result.auc
        out[f"c2st_n_{name}"] = result.n_per_class
    out["c2st_status"] = "ok" if not notes else f"partial: too few crops ({'; '.join(notes)}); {need}"
    return out


def _gate_stats(frames: dict[str, pd.DataFrame | None]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    counts = {k: (0 if v is None else len(v)) for k, v in frames.items()}
    total = sum(counts.values())
    out["n_generated"] = total
    out["n_accepted"] = counts["accepted"]
    out["acceptance_rate"] = counts["accepted"] / total if total else None
    for name, df in frames.items():
        has_iou = df is not None and "iou" in df.columns and len(df)
        out[f"iou_{name}"] = float(pd.to_numeric(df["iou"]).mean()) if has_iou else None
    both = [df for df in frames.values() if df is not None and "background_id" in df.columns]
    if both and total:
        bg = pd.concat(both)["background_id"].astype(str).unique()
        acc = frames["accepted"]
        kept = acc["background_id"].astype(str).value_counts() if acc is not None and len(acc) else pd.Series(dtype=int)
        per_bg = np.array([int(kept.get(b, 0)) for b in bg])
        out["n_backgrounds"] = int(len(bg))
        out["accepted_per_background"] = float(per_bg.mean())  # distinct variants kept per normal image
        out["backgrounds_with_accepted"] = int((per_bg > 0).sum())
    else:
        out["n_backgrounds"] = 0
        out["accepted_per_background"] = None
        out["backgrounds_with_accepted"] = 0
    return out


def gate_arrays(gated_dir: str | Path) -> dict[str, dict[str, np.ndarray] | None]:
    """The gate's accepted.npz / rejected.npz arrays per set; None for a set the gate did not write."""
    files = {name: Path(gated_dir) / f"{name}.npz" for name in SETS}
    return {name: load_npz(npz) if npz.is_file() else None for name, npz in files.items()}


def synthetic_quality(
    gated_dir: str | Path,
    real_images: np.ndarray,
    real_masks: np.ndarray,
    lesion_class: int,
    cfg: SyntheticQualityConfig,
    seed: int,
    train_images: np.ndarray | None = None,
    train_masks: np.ndarray | None = None,
    arrays: dict[str, dict[str, np.ndarray] | None] | None = None,
) -> dict[str, Any]:
    """Table 5 figures as a flat dict; absent inputs or weights give null plus a `*_status` reason.

    LPIPS/FID compare with the real lesions of the test split (`real_*`); the C2ST with those of the
    training split (`train_*`) when given: a classifier separates lesions of other video sequences
    from the training ones as easily as synthetic ones (real train vs real test crops of CVC-ClinicDB:
    AUC 0.95, docs/evaluation.md), so only crops from the backgrounds' own sequences measure realism."""
    gated_dir = Path(gated_dir)
    out: dict[str, Any] = {}
    frames: dict[str, pd.DataFrame | None] = {}
    arrays = gate_arrays(gated_dir) if arrays is None else arrays  # `gate_arrays(gated_dir)`, loaded by the caller
    for name in SETS:
        csv = gated_dir / f"{name}.csv"
        frames[name] = pd.read_csv(csv) if csv.is_file() and csv.stat().st_size else None
    if all(v is None for v in arrays.values()):
        reason = f"unavailable: no gate output in {gated_dir} (run the gate stage)"
        out.update({k: None for k in ("n_generated", "acceptance_rate", "lpips_accepted", "fid_accepted", "c2st_auc_accepted")})
        out.update({"status": reason, "lpips_status": reason, "fid_status": reason, "c2st_status": reason})
        return out
    out.update(_gate_stats(frames))
    out["status"] = "ok"

    rng = np.random.default_rng(seed)
    real = _subsample(lesion_crops(real_images, real_masks, lesion_class, cfg.crop_size, cfg.crop_margin), cfg.max_crops, rng)
    crops: dict[str, np.ndarray] = {}
    for name in SETS:
        arr = arrays[name]
        c = np.zeros((0, cfg.crop_size, cfg.crop_size, 3), np.uint8)
        if arr is not None and len(arr.get("images", [])):
            c = lesion_crops(arr["images"], arr["masks"], lesion_class, cfg.crop_size, cfg.crop_margin)
        crops[name] = _subsample(c, cfg.max_crops, rng)
        out[f"n_crops_{name}"] = len(crops[name])
    out["n_crops_real"] = len(real)

    for metric, weights in (("lpips", cfg.lpips_weights), ("fid", cfg.fid_weights)):
        for name in SETS:
            out[f"{metric}_{name}"] = None
        if weights is None:
            param = f"evaluate.synthetic.{metric}_weights"
            out[f"{metric}_status"] = f"unavailable: no pretrained backbone weights ({param} is null; see docs/evaluation.md)"
            continue
        if len(real) < 2:
            out[f"{metric}_status"] = f"undefined: {len(real)} real lesion crop(s) in the test split; need at least 2"
            continue
        if metric == "lpips":
            model = load_lpips(cfg.lpips_net, weights)
        else:
            fid = real_fid(load_inception(weights, cfg.fid_image_size), real)
        notes = []
        for name in SETS:
            if len(crops[name]) < 2:
                notes.append(f"{name}: {len(crops[name])} crop(s)")
                continue
            if metric == "lpips":
                sub_rng = np.random.default_rng([seed, SETS.index(name)])
                out[f"lpips_{name}"] = lpips_to_real(model, crops[name], real, cfg.lpips_pairs, sub_rng)
            else:
                out[f"fid_{name}"] = fid_to_real(fid, crops[name])
        out[f"{metric}_status"] = "ok" if not notes else "partial: too few crops (" + "; ".join(notes) + ")"
    c2st_real, c2st_split = real, "test"
    if train_images is not None and train_masks is not None:
        c2st_real = _subsample(lesion_crops(train_images, train_masks, lesion_class, cfg.crop_size, cfg.crop_margin),
                               cfg.max_crops, np.random.default_rng([seed, 0xC2]))
        c2st_split = "train"
    out.update(realism(c2st_real, crops, cfg.c2st, seed, c2st_split))
    out["c2st_real_split"] = c2st_split
    return out
