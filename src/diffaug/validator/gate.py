"""The quality gate (eq. 14): predict a mask for every generated sample and keep the sample iff
IoU(intended mask, predicted mask) > threshold. The stage around it: `stage_gate.run_gate`.

`gate_samples` reads data/synthetic/raw/ (samples.npz + manifest.csv), checks that every manifest row
has its image (and vice versa), predicts with the validator (single-step by default, class
probabilities averaged over `gate.views` dihedral views, `diffaug.validator.views`) and returns a
`GateReport`; a sample generate painted zoomed (manifest window_side > 0) is checked in its window,
resized to the frame size, and its IoU taken at window resolution (eq. 14 unchanged, `diffaug.zoom`).
Each sample's validator noise comes from its own seed (generate's per-sample seed, offset by the
gate's), so the result does not depend on `gate.batch_size`. `write_gate_outputs` writes accepted/rejected sets, iou.csv (histogram for
`dvc plots`), grid.png and the metrics. `gate.enabled: false` accepts every sample (the ablation
"without validation"); the IoU is still computed and recorded.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from diffaug.errors import InputError
from diffaug.io import atomic_dir, load_npz, read_json, save_npz
from diffaug.validator.backgrounds import check_backgrounds
from diffaug.validator.config import GateConfig
from diffaug.validator.metrics import mask_iou
from diffaug.zoom import crop, paste

log = logging.getLogger(__name__)
# metrics/timings/gate.json, kept out of the compared metrics
TIMING_KEYS = ("images_per_s", "gate_seconds_per_image", "generate_samples_per_s", "gate_cost_fraction")
SAMPLE_KEYS = ("images", "masks", "ids")


@dataclass
class GateReport:
    samples: dict[str, np.ndarray]  # images, masks, ids (manifest order)
    manifest: pd.DataFrame  # manifest rows + iou + accepted
    pred_masks: np.ndarray  # (S, H, W) uint8
    accepted: np.ndarray  # (S,) bool
    metrics: dict


def read_raw(raw_dir: str | Path) -> tuple[dict[str, np.ndarray], pd.DataFrame]:
    """samples.npz + manifest.csv, aligned to manifest order; one-line InputError on any mismatch."""
    raw_dir = Path(raw_dir)
    npz, csv = raw_dir / "samples.npz", raw_dir / "manifest.csv"
    for f in (npz, csv):
        if not f.is_file():
            raise InputError(f"{f}: not found; run `dvc repro generate` first")
    try:
        samples = load_npz(npz)
    except (OSError, ValueError) as exc:
        raise InputError(f"{npz}: unreadable ({exc}); rerun generate") from None
    missing = [k for k in SAMPLE_KEYS if k not in samples]
    if missing:
        raise InputError(f"{npz}: missing array '{missing[0]}' (needs images, masks, ids); rerun generate")
    try:
        manifest = pd.read_csv(csv, dtype={"sample_id": str}, keep_default_na=False)
    except pd.errors.EmptyDataError:
        manifest = pd.DataFrame({"sample_id": pd.Series(dtype=str)})
    if "sample_id" not in manifest.columns:
        raise InputError(f"{csv}: no 'sample_id' column; rerun generate")
    images, masks, ids = samples["images"], samples["masks"], samples["ids"].astype(str)
    if not (len(images) == len(masks) == len(ids)):
        raise InputError(f"{npz}: images ({len(images)}), masks ({len(masks)}) and ids ({len(ids)}) differ in length; rerun generate")
    if len(images) and (images.ndim != 4 or images.shape[-1] != 3 or masks.shape != images.shape[:3]):
        raise InputError(f"{npz}: images must be (S, H, W, 3) and masks (S, H, W); got {images.shape} and {masks.shape}")
    where = {sid: i for i, sid in enumerate(ids)}
    for row, sid in enumerate(manifest["sample_id"]):
        if sid not in where:
            raise InputError(f"{csv}: row {row + 2} sample_id '{sid}' has no image in {npz.name}; rerun generate")
    extra = sorted(set(ids) - set(manifest["sample_id"]))
    if extra:
        raise InputError(f"{npz}: sample '{extra[0]}' has no row in {csv.name}; rerun generate")
    order = np.array([where[s] for s in manifest["sample_id"]], dtype=np.int64)
    aligned = {"images": images[order], "masks": masks[order], "ids": ids[order]}
    if len(order) == 0:
        aligned = {"images": images[:0], "masks": masks[:0], "ids": ids[:0]}
    return aligned, manifest.reset_index(drop=True)


def generation_samples_per_s(path: str | Path | None) -> float | None:
    """samples_per_s from metrics/timings/generate.json when present (to price the gate against generation)."""
    if path is None or not Path(path).is_file():
        return None
    try:
        value = read_json(path).get("samples_per_s")
    except (OSError, ValueError, AttributeError):
        return None
    return float(value) if isinstance(value, (int, float)) and value > 0 else None


def _mean(x: np.ndarray) -> float:
    return float(x.mean()) if len(x) else float("nan")


def by_size_class(manifest: pd.DataFrame, iou: np.ndarray, accepted: np.ndarray) -> dict:
    """Acceptance and mean IoU per size class of the intended lesion (generate's `size_class`:
    small = area below prepare's small_area_frac). Rare, small lesions are what the pipeline is
    for, and the gate judges them at the validator's latent resolution: a gate that keeps large
    lesions and drops small ones shifts the synthetic set away from the hard cases.
    Keys n_<c>, acceptance_rate_<c>, iou_mean_<c> for c in small, large (absent without the column)."""
    if "size_class" not in manifest.columns:
        return {}
    size = manifest["size_class"].astype(str).str.lower().to_numpy()
    out: dict = {}
    for c in ("small", "large"):
        sel = size == c
        out |= {f"n_{c}": int(sel.sum()), f"acceptance_rate_{c}": _mean(accepted[sel].astype(float)),
                f"iou_mean_{c}": _mean(iou[sel])}
    return out


def windows(manifest: pd.DataFrame) -> np.ndarray:
    """(S, 3) zoom windows (y, x, side) from generate's manifest; side 0 (or no columns) = whole frame."""
    cols = ["window_y", "window_x", "window_side"]
    if not set(cols) <= set(manifest.columns):
        return np.zeros((len(manifest), 3), np.int64)
    return manifest[cols].to_numpy(dtype=np.int64)


def noise_seeds(manifest: pd.DataFrame, seed: int) -> np.ndarray:
    """One validator noise seed per sample: generate's sample seed (or the row index) mixed with the gate's."""
    own = manifest["seed"].to_numpy(dtype=np.int64) if "seed" in manifest.columns else np.arange(len(manifest))
    return np.array([np.random.SeedSequence([seed, int(s) % 2**63]).generate_state(1)[0] for s in own], np.int64)


def background_verdicts(validator, raw_dir: str | Path, manifest: pd.DataFrame, cfg: GateConfig,
                        seed: int) -> tuple[np.ndarray, dict]:
    """(S,) bool: the sample's background passed the background check (all True without one)."""
    ok = np.ones(len(manifest), dtype=bool)
    check = check_backgrounds(validator, raw_dir, cfg.background_max_lesion_frac, cfg.mode, cfg.iterative_steps,
                              cfg.batch_size, seed)
    if check is None:
        return ok, {"background_check": f"unavailable: no backgrounds.npz in {raw_dir} (rerun generate)"}
    if "background_id" in manifest.columns and len(manifest):
        failed = set(check.ids[~check.ok])
        ok = ~manifest["background_id"].astype(str).isin(failed).to_numpy()
    return ok, {"background_check": "rejecting" if cfg.background_reject else "reported", **check.metrics}


def realism_verdicts(samples: dict[str, np.ndarray], cfg: GateConfig, lesion_class: int,
                     train: tuple[np.ndarray, np.ndarray] | None, seed: int) -> tuple[np.ndarray, dict]:
    """(S,) realism ranks (NaN without the criterion) and their metrics; `gate.realism_max` needs
    the training split (`train`: images, masks)."""
    n = len(samples["ids"])
    if cfg.realism_max is None or n == 0:
        return np.full(n, np.nan), {}
    if train is None:
        raise InputError("gate.realism_max is set but no prepared training split was given; pass --prepared data/prepared")
    from diffaug.validator.realism import realism_ranks

    ranks, auc = realism_ranks(samples["images"], samples["masks"], *train, lesion_class, cfg.realism, 64, 0.25, seed)
    return ranks, {"realism_auc_generated": auc, "realism_rank_mean": float(np.nanmean(ranks))}


def gate_samples(raw_dir: str | Path, validator, cfg: GateConfig, seed: int = 0,
                 generate_metrics: str | Path | None = None, train: tuple[np.ndarray, np.ndarray] | None = None) -> GateReport:
    """Validate every generated sample; see the module docstring."""
    from diffaug.validator.views import with_views

    samples, manifest = read_raw(raw_dir)
    n = len(samples["ids"])
    validator = with_views(validator, cfg.views)  # every prediction below (samples, backgrounds) averages the views
    num_classes = validator.num_classes
    if n == 0:
        log.warning("gate: %s has no generated samples; writing empty accepted/rejected sets", raw_dir)
        pred, intended, seconds = samples["masks"].copy(), samples["masks"], 0.0
    else:
        # chunks of a few batches so a long set shows progress; noise per sample, so chunks do not matter
        from diffaug.progress import track

        win = windows(manifest)
        images, intended = crop(samples["images"], win), crop(samples["masks"], win, nearest=True)
        seeds = noise_seeds(manifest, seed)
        chunk = cfg.batch_size * 8
        t0 = time.perf_counter()
        pred = np.concatenate([
            validator.predict(images[i : i + chunk], mode=cfg.mode, steps=cfg.iterative_steps,
                              seeds=seeds[i : i + chunk], batch_size=cfg.batch_size)
            for i in track(range(0, n, chunk), "gate: validating samples")
        ])
        seconds = time.perf_counter() - t0
    iou = mask_iou(pred, intended, num_classes, cfg.class_combine) if n else np.zeros(0)
    if n:
        pred = paste(np.zeros_like(samples["masks"]), pred, win, nearest=True)  # back at frame resolution
    bg_ok, bg_metrics = background_verdicts(validator, raw_dir, manifest, cfg, seed)
    keep_bg = bg_ok if cfg.background_reject else np.ones(n, dtype=bool)
    ranks, realism_metrics = realism_verdicts(samples, cfg, num_classes, train, seed)
    realistic = ~(ranks > cfg.realism_max) if cfg.realism_max is not None else np.ones(n, dtype=bool)  # NaN passes
    accepted = (iou > cfg.threshold) & keep_bg & realistic if cfg.enabled else np.ones(n, dtype=bool)
    manifest = manifest.assign(iou=iou.round(6), background_ok=bg_ok, accepted=accepted)
    if cfg.realism_max is not None:
        manifest = manifest.assign(realism_rank=np.round(ranks, 4))
    generate_sps = generation_samples_per_s(generate_metrics)
    per_image = seconds / n if n else float("nan")
    metrics = {
        "enabled": cfg.enabled, "threshold": cfg.threshold, "mode": cfg.mode, "views": cfg.views,
        "class_combine": cfg.class_combine,
        "n_generated": n, "n_accepted": int(accepted.sum()), "n_rejected": int(n - accepted.sum()),
        "acceptance_rate": float(accepted.mean()) if n else 0.0,
        "iou_mean": _mean(iou), "iou_accepted_mean": _mean(iou[accepted]), "iou_rejected_mean": _mean(iou[~accepted]),
        "images_per_s": n / seconds if n and seconds > 0 else 0.0, "gate_seconds_per_image": per_image,
        "generate_samples_per_s": generate_sps,
        # gate cost per image / generation cost per image (goal <= 0.05)
        "gate_cost_fraction": per_image * generate_sps if generate_sps and n else None,
        "n_zoomed": int((windows(manifest)[:, 2] > 0).sum()),
        # passed the IoU test but sit on a failed background (rejected only with gate.background_reject)
        "n_on_failed_background": int(((iou > cfg.threshold) & ~bg_ok).sum()),
        **bg_metrics,
        **realism_metrics,
        "n_rejected_realism": int(((iou > cfg.threshold) & keep_bg & ~realistic).sum()) if cfg.enabled else 0,
        **by_size_class(manifest, iou, accepted),
    }
    return GateReport(samples=samples, manifest=manifest, pred_masks=pred.astype(np.uint8), accepted=accepted, metrics=metrics)


def iou_histogram(iou: np.ndarray, accepted: np.ndarray, bins: int) -> pd.DataFrame:
    """Counts per IoU bin over [0, 1] (all, accepted, rejected) for `dvc plots`."""
    edges = np.linspace(0, 1, bins + 1)
    count = lambda x: np.histogram(x, bins=edges)[0]  # noqa: E731
    return pd.DataFrame({"iou_bin": ((edges[:-1] + edges[1:]) / 2).round(4), "count": count(iou),
                         "accepted": count(iou[accepted]), "rejected": count(iou[~accepted])})


def write_gate_outputs(report: GateReport, out_dir: str | Path, cfg: GateConfig) -> None:
    """accepted/rejected npz + csv, iou.csv and grid.png, all or nothing (atomic_dir)."""
    from diffaug.validator.grid import save_grid

    s, acc = report.samples, report.accepted
    cols = [c for c in report.manifest.columns if c != "accepted"]
    with atomic_dir(out_dir) as tmp:
        for name, sel in (("accepted", acc), ("rejected", ~acc)):
            save_npz(tmp / f"{name}.npz", images=s["images"][sel], masks=s["masks"][sel], ids=s["ids"][sel],
                     pred_masks=report.pred_masks[sel])
            report.manifest.loc[sel, cols].to_csv(tmp / f"{name}.csv", index=False)
        iou = report.manifest["iou"].to_numpy(dtype=float)
        iou_histogram(iou, acc, cfg.histogram_bins).to_csv(tmp / "iou.csv", index=False)
        save_grid(tmp / "grid.png", s["images"], s["masks"], report.pred_masks, iou, acc, cfg.grid_samples,
                  title=f"gate: IoU > {cfg.threshold}" + ("" if cfg.enabled else " (disabled: all accepted)"),
                  windows=windows(report.manifest))
