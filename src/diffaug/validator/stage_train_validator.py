"""The `train_validator` stage as one library call (`run_train_validator`): read the real train
split and the generator's VAE (and U-Net), then `train_and_evaluate`: hold out a validation part,
train, measure validation Dice/IoU (single-step and iterative), how well the gate's IoU tells the
held-out frames' true masks from moved ones, and the speed ratio; write the network, the metrics
and the timings.

Speed (docs/validator.md, "Speed measurement"): single-step and iterative T-step inference run side by side on the same
network, the same batch of validation images and the same thread settings, after a warm-up,
interleaved (one call of each path per round) so that load from other processes hits all alike;
the median of `speed_repeats` rounds is used. Two ratios are reported: `speed_ratio` (images in,
masks out: VAE encoding and mask decoding included, as the gate runs it) and `speed_ratio_latent`
(from z_a to the mask latent: the network calls only). The goal is >= 0.9 * T.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from diffaug.config import BaseConfig
from diffaug.runtime import Runtime
from diffaug.training.curves import Curves
from diffaug.validator.config import TrainValidatorConfig
from diffaug.validator.inference import Validator
from diffaug.validator.metrics import mask_dice, mask_iou
from diffaug.validator.model import ValidatorNet
from diffaug.validator.train import TrainInfo, train_network


# keys of the metrics that go to the timings file (metrics/timings/train_validator.json): wall time
# per phase and the speed comparison (`diffaug.validator.speed.speed_summary`)
TIMING_KEYS = (
    "seconds", "train_seconds", "seconds_codec", "seconds_cache", "seconds_loop",
    "speed_batch", "speed_iterative_steps", "single_step_samples_per_s", "iterative_samples_per_s",
    "speed_ratio", "speed_ratio_latent", "speed_ratio_of_medians", "speed_ratio_latent_of_medians", "speed_ratio_goal",
    "speed_ms_encode", "speed_ms_condition", "speed_ms_denoise", "speed_ms_decode", "speed_condition_per_denoise",
    "resumed_from_step",  # how this call ran (0 = trained here), not what it learned
)


@dataclass
class ValidatorTrainResult:
    net: ValidatorNet
    metrics: dict
    info: TrainInfo


def evaluate(validator: Validator, images: np.ndarray, masks: np.ndarray, steps: int, seed: int = 0,
             batch_size: int = 32, thresholds: list[float] | None = None, groups: np.ndarray | None = None,
             zoom=None, views: int = 1) -> dict:
    """Mean Dice / IoU of single-step and iterative predictions against the true masks, and how
    well the single-step IoU tells the true masks from moved ones (`discrimination_metrics`, per
    `groups` label too: the frames' size_class); with `zoom` (enabled) also as the gate judges
    zoomed samples (`zoomed_discrimination`, keys disc_zoom_*). The discrimination keys average
    `views` dihedral views as the gate does (gate.views); the Dice / IoU keys are the plain
    validator's."""
    from diffaug.validator.discrimination import discrimination_metrics, zoomed_discrimination
    from diffaug.validator.views import with_views

    judge = with_views(validator, views)

    out = {}
    for mode in ("single_step", "iterative"):
        pred = validator.predict(images, mode=mode, steps=steps, seed=seed, batch_size=batch_size)
        tag = "single" if mode == "single_step" else "iterative"
        out[f"val_dice_{tag}"] = float(mask_dice(pred, masks, validator.num_classes).mean())
        out[f"val_iou_{tag}"] = float(mask_iou(pred, masks, validator.num_classes).mean())
        if mode == "single_step":
            th = TrainValidatorConfig().report_thresholds if thresholds is None else thresholds
            if views > 1:
                pred = judge.predict(images, mode=mode, steps=steps, seed=seed, batch_size=batch_size)
            out |= discrimination_metrics(pred, masks, validator.num_classes, list(th), groups=groups)
            out["disc_views"] = views
            if zoom is not None and zoom.enabled:
                def predict(x: np.ndarray) -> np.ndarray:
                    return judge.predict(x, mode="single_step", seed=seed, batch_size=batch_size)

                out |= zoomed_discrimination(predict, images, masks, validator.num_classes, list(th), zoom, groups=groups)
    return out


def measure_speed(validator: Validator, images: np.ndarray, steps: int, repeats: int = 7) -> dict:
    """Single-step vs iterative (T = steps) on one batch, side by side, and the parts of a
    single-step prediction (`diffaug.validator.speed`)."""
    from diffaug.validator.speed import speed_summary, time_paths

    return speed_summary(time_paths(validator, images, steps, repeats=repeats), steps)


def train_and_evaluate(train_images: np.ndarray, train_masks: np.ndarray, vae, cfg: TrainValidatorConfig,
                       num_classes: int, runtime: Runtime, generator_unet_state: dict | None = None,
                       checkpoint_dir=None, curves: Curves | None = None, size_class: np.ndarray | None = None,
                       groups=None, stop_after: int | None = None, zoom=None, views: int = 1) -> ValidatorTrainResult:
    """Split (whole `groups`, e.g. video sequences, on one side), train (resumable), evaluate and
    time; returns the network and flat metrics (results and the `TIMING_KEYS`). `num_classes`
    counts background, as fingerprint.json does (polyp 2, fundus 3); the network is built for the foreground classes
    (`ValidatorNet.config.num_classes`). `size_class` (N,) labels of the frames (manifest.csv)
    split the held-out acceptance of true masks. `zoom` (generate.zoom) trains on and reports
    zoomed windows too; `views` (gate.views) the held-out discrimination averages, as the gate."""
    from diffaug.data.holdout import holdout
    from diffaug.errors import InputError

    if num_classes < 2 or int(train_masks.max(initial=0)) >= num_classes:
        raise InputError(f"train_validator: {num_classes} classes (incl. background) but the masks hold class "
                         f"{int(train_masks.max(initial=0))}; rerun prepare")
    num_classes = num_classes - 1  # the validator's codec and Dice count foreground classes

    t0 = time.perf_counter()
    tr, va = holdout(groups if groups is not None else np.arange(len(train_images)), cfg.val_fraction, runtime.seed)
    net, info = train_network(train_images[tr], train_masks[tr], vae, cfg, num_classes, runtime=runtime,
                              generator_unet_state=generator_unet_state, checkpoint_dir=checkpoint_dir,
                              curves=curves, stop_after=stop_after, zoom=zoom)
    train_s = time.perf_counter() - t0
    device = runtime.device
    validator = Validator(net, vae, device=device)
    metrics = evaluate(validator, train_images[va], train_masks[va], cfg.iterative_steps, runtime.seed, cfg.eval_batch_size,
                       cfg.report_thresholds, groups=None if size_class is None else np.asarray(size_class)[va], zoom=zoom,
                       views=views)
    speed_imgs = train_images[va][: cfg.eval_batch_size]
    metrics |= measure_speed(validator, speed_imgs, cfg.iterative_steps, cfg.speed_repeats)
    validator.net.cpu()
    metrics |= {
        "n_train": int(len(tr)), "n_val": int(len(va)), "n_train_pairs": info.n_pairs, "steps": info.steps, "resumed_from_step": info.resumed_from,
        "init_copied_tensors": info.copied_init_tensors, "mask_codec": cfg.mask_codec,
        "codec_recon_dice_learned": info.codec_recon_dice_learned, "codec_recon_dice_vae": info.codec_recon_dice_vae,
        "single_step_timestep": net.config.single_step_timestep, "train_seconds": train_s,
        "seconds": time.perf_counter() - t0,
        **{f"final_{k}": v for k, v in info.history.items()},
        **{f"seconds_{k}": v for k, v in info.seconds.items()},
    }
    if curves is not None:
        for k in ("val_dice_single", "val_iou_single", "val_dice_iterative", "val_iou_iterative"):
            curves.summary[k] = metrics[k]
    return ValidatorTrainResult(net=net, metrics=metrics, info=info)


def run_train_validator(cfg: TrainValidatorConfig, base: BaseConfig, prepared_dir: str | Path,
                        generator_dir: str | Path, out_dir: str | Path, checkpoint_dir: str | Path | None,
                        live_dir: str | Path | None, metrics_path: str | Path, zoom=None,
                        timings_path: str | Path | None = None, views: int = 1) -> dict:
    """Train on prepared_dir's train split (manifest `size_class` and `group` columns used when
    present) with generator_dir's VAE (and U-Net, for `init_from_generator`); write `out_dir`
    (`save_pretrained`, atomically), the dvclive curves to `live_dir`, `metrics_path` (results)
    and `timings_path` (the `TIMING_KEYS`; None: not written). `zoom` (generate.zoom): the gate
    checks small lesions zoomed, so train and report that way; `views` (gate.views): the held-out
    discrimination averages that many dihedral views, as the gate. Returns the metrics and timings."""
    from diffaug.data.prepared import load_fingerprint, load_split
    from diffaug.io import atomic_dir, write_metrics
    from diffaug.runtime import resolve_runtime
    from diffaug.validator.loading import load_generator_parts

    runtime = resolve_runtime(base)
    train = load_split(prepared_dir, "train")
    num_classes = int(load_fingerprint(prepared_dir)["num_classes"])
    vae, unet_state = load_generator_parts(generator_dir, need_unet=cfg.init_from_generator)
    table = train.table
    with Curves(live_dir) as curves:
        result = train_and_evaluate(train.images, train.masks, vae, cfg, num_classes, runtime,
                                    generator_unet_state=unet_state, checkpoint_dir=checkpoint_dir, curves=curves,
                                    size_class=table["size_class"].to_numpy() if "size_class" in table else None,
                                    groups=table["group"].astype(str).to_numpy() if "group" in table else None,
                                    zoom=zoom, views=views)
    with atomic_dir(out_dir) as tmp:
        result.net.save_pretrained(tmp)
    write_metrics(metrics_path, timings_path, result.metrics, TIMING_KEYS)
    return result.metrics


__all__ = ["TIMING_KEYS", "ValidatorTrainResult", "evaluate", "measure_speed", "run_train_validator",
           "train_and_evaluate"]
