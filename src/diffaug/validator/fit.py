"""The `train_validator` stage as one library call: hold out a validation part of the real train
split, train, then measure validation Dice/IoU (single-step and iterative), how well the gate's
IoU tells the held-out frames' true masks from moved ones, and the speed ratio.

Speed (issue item 8): single-step and iterative T-step inference run side by side on the same
network, the same batch of validation images and the same thread settings, after a warm-up,
interleaved (one call of each path per round) so that load from other processes hits all alike;
the median of `speed_repeats` rounds is used. Two ratios are reported: `speed_ratio` (images in,
masks out: VAE encoding and mask decoding included, as the gate runs it) and `speed_ratio_latent`
(from z_a to the mask latent: the network calls only). The goal is >= 0.9 * T.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from diffaug.validator.config import TrainValidatorConfig
from diffaug.validator.inference import Validator
from diffaug.validator.metrics import mask_dice, mask_iou
from diffaug.validator.model import ValidatorNet
from diffaug.validator.train import TrainInfo, train_network


@dataclass
class TrainResult:
    net: ValidatorNet
    metrics: dict
    info: TrainInfo


def split_train_val(n: int, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded permutation; at least one sample on each side."""
    if n < 2:
        from diffaug.errors import InputError

        raise InputError(f"train split has {n} sample(s); the validator needs at least 2 (train + validation)")
    perm = np.random.default_rng(seed).permutation(n)
    n_val = min(max(1, int(round(n * val_fraction))), n - 1)
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


def evaluate(validator: Validator, images: np.ndarray, masks: np.ndarray, steps: int, seed: int = 0,
             batch_size: int = 32, thresholds: list[float] | None = None, groups: np.ndarray | None = None) -> dict:
    """Mean Dice / IoU of single-step and iterative predictions against the true masks, and how
    well the single-step IoU tells the true masks from moved ones (`discrimination_metrics`, per
    `groups` label too: the frames' size_class)."""
    from diffaug.validator.discrimination import discrimination_metrics

    out = {}
    for mode in ("single_step", "iterative"):
        pred = validator.predict(images, mode=mode, steps=steps, seed=seed, batch_size=batch_size)
        tag = "single" if mode == "single_step" else "iterative"
        out[f"val_dice_{tag}"] = float(mask_dice(pred, masks, validator.num_classes).mean())
        out[f"val_iou_{tag}"] = float(mask_iou(pred, masks, validator.num_classes).mean())
        if mode == "single_step":
            th = TrainValidatorConfig().report_thresholds if thresholds is None else thresholds
            out |= discrimination_metrics(pred, masks, validator.num_classes, list(th), groups=groups)
    return out


def measure_speed(validator: Validator, images: np.ndarray, steps: int, repeats: int = 7) -> dict:
    """Single-step vs iterative (T = steps) on one batch, side by side, and the parts of a
    single-step prediction (`diffaug.validator.speed`)."""
    from diffaug.validator.speed import speed_summary, time_paths

    return speed_summary(time_paths(validator, images, steps, repeats=repeats), steps)


def train_validator(train_images: np.ndarray, train_masks: np.ndarray, vae, cfg: TrainValidatorConfig,
                    num_classes: int, seed: int = 0, device: str | torch.device = "cpu",
                    mixed_precision: str = "no", generator_unet_state: dict | None = None,
                    checkpoint_dir=None, live=None, size_class: np.ndarray | None = None) -> TrainResult:
    """Split, train (resumable), evaluate and time; returns the network and flat metrics.
    `size_class` (N,) labels of the frames (manifest.csv) split the held-out acceptance of true masks."""
    t0 = time.perf_counter()
    tr, va = split_train_val(len(train_images), cfg.val_fraction, seed)
    net, info = train_network(train_images[tr], train_masks[tr], vae, cfg, num_classes, seed=seed, device=device,
                              mixed_precision=mixed_precision, generator_unet_state=generator_unet_state,
                              checkpoint_dir=checkpoint_dir, live=live)
    train_s = time.perf_counter() - t0
    validator = Validator(net, vae, device=device)
    metrics = evaluate(validator, train_images[va], train_masks[va], cfg.iterative_steps, seed, cfg.eval_batch_size,
                       cfg.report_thresholds, groups=None if size_class is None else np.asarray(size_class)[va])
    speed_imgs = train_images[va][: cfg.eval_batch_size]
    metrics |= measure_speed(validator, speed_imgs, cfg.iterative_steps, cfg.speed_repeats)
    validator.net.cpu()
    metrics |= {
        "n_train": int(len(tr)), "n_val": int(len(va)), "steps": info.steps, "resumed_from_step": info.resumed_from,
        "init_copied_tensors": info.copied_init_tensors, "mask_codec": cfg.mask_codec,
        "codec_recon_dice_learned": info.codec_recon_dice_learned, "codec_recon_dice_vae": info.codec_recon_dice_vae,
        "single_step_timestep": net.config.single_step_timestep, "train_seconds": train_s,
        "seconds": time.perf_counter() - t0,
        **{f"final_{k}": v for k, v in info.history.items()},
        **{f"seconds_{k}": v for k, v in info.seconds.items()},
    }
    if live is not None:
        for k in ("val_dice_single", "val_iou_single", "val_dice_iterative", "val_iou_iterative", "speed_ratio"):
            live.summary[k] = metrics[k]
    return TrainResult(net=net, metrics=metrics, info=info)


__all__ = ["TrainResult", "evaluate", "measure_speed", "split_train_val", "train_validator"]
