"""Training one downstream segmenter run: variant × ratio × seed, through `diffaug.training`.

The budget is `steps` optimiser steps (`diffaug.segmenter.mixing`): every variant sees each real
image equally often; `copypaste` and `diffaug` add extra pairs to each batch. Loss per sample:
cross-entropy + `dice_weight` × soft Dice (MONAI), weighted per sample (real 1; extra
`synthetic_loss_weight`, optionally × the gate IoU), averaged over the batch; `ignore_band` px of
background around a synthetic (diffaug) pair's lesion carry the label IGNORE and count in neither
term (architecture unet). A seeded validation part of the real split (whole sequences,
`diffaug.data.holdout`; the same for every run of a `base.seed`) is scored every `eval_every`
steps; the best validation Dice is the run's model (`select: best`), or the last step is
(`select: last`; with `val_fraction: 0` every real frame trains and nothing is validated).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from diffaug.errors import InputError
from diffaug.overlap import overlap_per_image
from diffaug.runtime import Runtime
from diffaug.segmenter.augment import augment_batch
from diffaug.segmenter.config import RATIO_VARIANTS, VARIANTS, TrainSegmenterConfig
from diffaug.segmenter.copypaste import make_copypaste_set
from diffaug.segmenter.data import Pairs
from diffaug.segmenter.latent import LatentParts, init_latent_network, latent_config
from diffaug.segmenter.mixing import exposure, extra_per_batch, training_plan
from diffaug.segmenter.models import Segmenter, SegmenterNet, normalise
from diffaug.training.curves import Curves
from diffaug.training.state import array_digest, code_digest, run_fingerprint, state_digest
from diffaug.training.trainer import Trainer

log = logging.getLogger(__name__)

# the code a checkpoint depends on (a change to what it does starts training afresh)
TRAINING_MODULES = tuple(f"diffaug.segmenter.{m}" for m in ("augment", "config", "copypaste", "latent", "mixing",
                                                            "models", "train")) + (
    "diffaug.latents", "diffaug.overlap", "diffaug.training.trainer", "diffaug.data.holdout")


@dataclass
class SegmenterTrainResult:
    segmenter: Segmenter
    summary: dict[str, Any]  # flat numbers + warnings, goes into run.json and the metrics


def build_extra_pairs(
    variant: str, ratio: float, real: Pairs, cfg: TrainSegmenterConfig, rng: np.random.Generator,
    synthetic: Pairs | None, source: str = "accepted.npz",
) -> tuple[Pairs | None, np.ndarray, list[str]]:
    """The extra pool of a variant and each pair's loss weight; warnings as text.

    copypaste and diffaug both add round(ratio × N_real) pairs, so copypaste pastes as many
    lesions as diffaug adds synthetic images. diffaug and pseudolabel take a seeded subset of their
    pool (`synthetic`: the gate's accepted pairs; the confident pseudo-labelled frames); when it
    holds fewer, all are used (and a warning says how many).
    """
    warnings: list[str] = []
    if variant not in RATIO_VARIANTS:
        return None, np.zeros(0, np.float32), warnings
    want = int(round(ratio * len(real)))
    if variant == "copypaste":
        if want == 0 or not (real.masks > 0).any():
            warnings.append("copypaste: no lesion in the training masks to paste; trained on real pairs only")
            return None, np.zeros(0, np.float32), warnings
        cp = make_copypaste_set(real.images, real.masks, want, cfg.copypaste, rng)
        return Pairs(cp.images, cp.masks), np.full(want, cfg.synthetic_loss_weight, np.float32), warnings
    # diffaug: the gate's accepted pairs; pseudolabel: the confident teacher-labelled frames
    source = "unlabelled.npz" if variant == "pseudolabel" else source
    what = {"diffaug": "accepted synthetic pairs", "pseudolabel": "confident pseudo-labelled frames"}[variant]
    if synthetic is None or len(synthetic) == 0:
        msg = f"{variant}: {source} holds no {what}"
        if cfg.on_empty_synthetic == "error":
            fix = ("generate more samples or lower gate.threshold" if variant == "diffaug" else
                   "add unlabelled frames (prepare.unlabelled) or lower train_segmenter.pseudolabel.min_confidence")
            raise InputError(f"{msg}; {fix} (or set train_segmenter.on_empty_synthetic: warn)")
        warnings.append(f"{msg}; trained on real pairs with standard augmentation only")
        return None, np.zeros(0, np.float32), warnings
    take = min(want, len(synthetic))
    if take < want:
        got = (f"synthetic pairs, the gate accepted {len(synthetic)}" if variant == "diffaug" else
               f"extra pairs, {len(synthetic)} unlabelled frames are confident")
        warnings.append(f"{variant}: ratio {ratio:g} asks for {want} {got}; using all")
    idx = np.sort(rng.permutation(len(synthetic))[:take])
    weights = np.full(take, cfg.synthetic_loss_weight, np.float32)
    if cfg.weight_by_gate_iou and synthetic.iou is not None:
        weights = weights * np.clip(synthetic.iou[idx], 0.0, 1.0)
    return Pairs(synthetic.images[idx], synthetic.masks[idx]), weights, warnings


# label of the pixels left out of the loss (the band around a composited lesion); nearest-
# neighbour augmentation carries it like a class index
IGNORE = 255


def ignore_band(masks: torch.Tensor, band: int) -> torch.Tensor:
    """(N, H, W) labels with the background pixels within `band` px (square neighbourhood,
    the Chebyshev distance) of any foreground pixel set to IGNORE; `band` 0 returns `masks`."""
    if band == 0 or len(masks) == 0:
        return masks
    fg = (masks > 0).float().unsqueeze(1)
    near = torch.nn.functional.max_pool2d(fg, 2 * band + 1, stride=1, padding=band)[:, 0] > 0
    return masks.masked_fill(near & (masks == 0), IGNORE)


def per_sample_loss(logits: torch.Tensor, target: torch.Tensor, dice_weight: float, dice_fn,
                    masked_dice_fn=None) -> torch.Tensor:
    """(B,) cross-entropy + dice_weight × soft Dice over the foreground classes; pixels labelled
    IGNORE count in neither (cross-entropy averaged over the others, Dice of MONAI's masked loss)."""
    valid = target != IGNORE
    if masked_dice_fn is None or bool(valid.all()):
        ce = torch.nn.functional.cross_entropy(logits, target, reduction="none").mean(dim=(1, 2))
        if dice_weight == 0:
            return ce
        dice = dice_fn(logits, target.unsqueeze(1)).reshape(len(logits), -1).mean(dim=1)
        return ce + dice_weight * dice
    ce = torch.nn.functional.cross_entropy(logits, target, ignore_index=IGNORE, reduction="none")
    ce = ce.sum(dim=(1, 2)) / valid.sum(dim=(1, 2)).clamp_min(1)
    if dice_weight == 0:
        return ce
    label = target.masked_fill(~valid, 0).unsqueeze(1)
    dice = masked_dice_fn(logits, label, mask=valid.unsqueeze(1).float()).reshape(len(logits), -1).mean(dim=1)
    return ce + dice_weight * dice


def hard_dice(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Foreground Dice of the batch's argmax, all its pixels pooled and the foreground classes
    merged: the `train/dice_real` curve, one cheap number per step on the device. Not the
    per-image Dice of `diffaug.overlap` (validation, evaluation): MONAI's per-image loop would
    add milliseconds to every training step for a number that only shows the trend.
    "argmax > 0" is computed as "some foreground logit above the background's" (ties: background,
    as with argmax): the same pixels, while torch's CPU `argmax(dim=1)` over (B, C, H, W) is
    some 40x slower and cost a quarter of the phantom's training step (docs/benchmark.md)."""
    pred = logits[:, 1:].amax(1) > logits[:, 0]
    gt = target > 0
    denom = pred.sum() + gt.sum()
    return torch.ones(()) if denom == 0 else 2 * (pred & gt).sum().float() / denom


def validation_dice(pred: np.ndarray, gt: np.ndarray, num_classes: int) -> float:
    """Mean per-image Dice over foreground classes (`diffaug.overlap`), as `evaluate` scores the test split."""
    return float(overlap_per_image(pred, gt, num_classes).mean())


def to_tensors(p: Pairs) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 (N, H, W, 3), (N, H, W) -> float (N, 3, H, W) in [0, 1], long (N, H, W)."""
    return torch.from_numpy(p.images).permute(0, 3, 1, 2).float().div_(255.0), torch.from_numpy(p.masks).long()


class SegmenterTask:
    """The trainer's view of one run: the plan's batches, augmented, and the weighted loss."""

    def __init__(self, net: SegmenterNet, cfg: TrainSegmenterConfig, plan, real: Pairs, extra: Pairs | None,
                 weights: np.ndarray, val: Pairs, augment: bool, device: torch.device, band: int = 0) -> None:
        from monai.losses import DiceLoss, MaskedDiceLoss

        self.model, self.spec, self.cfg, self.plan = net, net.config, cfg, plan
        # the score the trainer keeps the best weights by; None (select: last): logged only
        self.select_key = "dice" if cfg.select == "best" else None
        self.x_real, self.y_real = to_tensors(real)
        self.x_extra, self.y_extra = to_tensors(extra) if extra is not None else (None, None)
        if self.y_extra is not None:
            self.y_extra = ignore_band(self.y_extra, band)
        self.w_extra = torch.from_numpy(weights)
        self.val, self.augment, self.device = val, augment, device
        self.latent = cfg.architecture == "latent"
        self.dice_fn = DiceLoss(include_background=False, to_onehot_y=True, softmax=True, reduction="none")
        self.masked_dice_fn = (MaskedDiceLoss(include_background=False, to_onehot_y=True, softmax=True,
                                              reduction="none") if band > 0 else None)

    def parameters(self):
        return self.model.trainable_parameters()

    def batch(self, step: int, g: torch.Generator):
        r, e = self.plan.step(step)
        xb, yb, wb = self.x_real[r], self.y_real[r], torch.ones(len(r))
        if len(e):
            xb, yb = torch.cat([xb, self.x_extra[e]]), torch.cat([yb, self.y_extra[e]])
            wb = torch.cat([wb, self.w_extra[e]])
        if self.augment:
            xb, yb = augment_batch(xb, yb, self.cfg.augment, g)
        # the latent objective's timesteps and noise (eq. 10): a generator seeded from the run's stream
        noise = torch.Generator().manual_seed(int(torch.randint(0, 2**62, (1,), generator=g))) if self.latent else None
        return normalise(xb, self.spec), yb, wb, len(r), noise

    def losses(self, model, batch) -> dict[str, torch.Tensor]:
        xb, yb, wb, n_real, noise = batch
        xb, yb, wb = xb.to(self.device), yb.to(self.device), wb.to(self.device)
        c = self.cfg
        if self.latent:  # eq. 12 per sample, through forward so a DDP wrapper syncs gradients
            loss_each, logits = model(xb, yb, c.latent.single_step_fraction, noise, c.latent.lambda_latent,
                                      c.latent.lambda_dice)
        else:
            if c.channels_last:  # the weights stay NCHW (checkpoints need contiguous tensors); convolutions follow the input
                xb = xb.contiguous(memory_format=torch.channels_last)
            logits = model(xb)
            loss_each = per_sample_loss(logits.float(), yb, c.dice_weight, self.dice_fn, self.masked_dice_fn)
        loss = (loss_each.float() * wb).sum() / wb.sum().clamp_min(1e-6)
        return {"loss": loss, "dice_real": hard_dice(logits[:n_real].detach(), yb[:n_real]).cpu()}

    @torch.no_grad()
    def validate(self, model) -> dict[str, float]:
        seg = Segmenter(model, device=self.device, batch_size=self.cfg.eval_batch_size)
        return {"dice": validation_dice(seg.predict(self.val.images), self.val.masks, self.spec.num_classes)}


def train_segmenter(
    real: Pairs,
    num_classes: int,
    cfg: TrainSegmenterConfig,
    variant: str,
    ratio: float,
    seed: int,
    runtime: Runtime,
    synthetic: Pairs | None = None,
    live_dir: str | Path | None = None,
    latent_parts: LatentParts | None = None,
    groups: list[str] | np.ndarray | None = None,
    checkpoints: str | Path | None = None,
    stop_after: int | None = None,
) -> SegmenterTrainResult:
    """Train one run and return the segmenter with a summary of what it saw and how it went.
    `groups` (N,) keep a video's frames on one side of the validation split (default: per
    frame); `checkpoints` makes the run resumable; `latent_parts` (the generator VAE, the
    trained validator) is needed for `architecture: latent`; `stop_after` stops after that many
    optimiser steps as if killed (tests), raising `TrainingStopped`."""
    from diffaug.data.holdout import holdout

    if variant not in VARIANTS:
        raise InputError(f"unknown variant '{variant}'; allowed: {', '.join(VARIANTS)}")
    if ratio < 0:
        raise InputError(f"synthetic ratio must be >= 0, got {ratio:g}")
    latent = cfg.architecture == "latent"
    if latent and latent_parts is None:
        raise InputError("train_segmenter.architecture latent needs the generator VAE and the trained validator")
    # the validation part depends on base.seed only: every variant and seed is selected on the same frames
    tr, va = holdout(groups if groups is not None else np.arange(len(real)), cfg.val_fraction, runtime.seed)
    val, real = Pairs(real.images[va], real.masks[va]), Pairs(real.images[tr], real.masks[tr])
    # one seed stream per (base.seed, run seed): copy-paste, subsets, init; the plan and the
    # trainer's sampler get their own, so real batches are the same in every variant
    rng = np.random.default_rng([runtime.seed, seed])
    extra, weights, warnings = build_extra_pairs(variant, ratio, real, cfg, rng, synthetic)
    for w in warnings:
        log.warning(w)
    n_real, n_extra = len(real), 0 if extra is None else len(extra)

    if latent:  # the VAE's input range [-1, 1]
        mean, std = [0.5] * 3, [0.5] * 3
    else:
        x = torch.from_numpy(real.images).float().div_(255.0)
        mean, std = x.mean(dim=(0, 1, 2)).tolist(), x.std(dim=(0, 1, 2)).clamp_min(1e-3).tolist()
    net_config = dict(architecture=cfg.architecture, num_classes=num_classes, image_size=int(real.images.shape[1]),
                      channels=list(cfg.channels), num_res_units=cfg.num_res_units, mean=mean, std=std, norm=cfg.norm,
                      act=cfg.act)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(rng.integers(0, 2**63 - 1)))
        if latent:
            net = SegmenterNet(**net_config, latent=latent_config(latent_parts, cfg.latent.noise_seed))
            init_latent_network(net.body, latent_parts, cfg.latent.init)
        else:
            net = SegmenterNet(**net_config)
    plan = training_plan(n_real, n_extra, cfg.steps, cfg.batch_size, cfg.synthetic_share, cfg.real_only_steps,
                         [runtime.seed, seed, 1])
    # the band is the painted lesions' (copypaste pastes real lesion pixels: measured worse with it, docs/segmenter.md)
    band = cfg.ignore_band if variant == "diffaug" and not latent else 0
    task = SegmenterTask(net, cfg, plan, real, extra, weights, val, variant != "none", runtime.device, band)

    schedule = replace(cfg.schedule(cfg.checkpoint_every, cfg.log_every, cfg.eval_every if len(val) else 0),
                       ema_decay=cfg.ema_decay, **({"lr": cfg.latent.lr} if latent else {}))
    fingerprint = run_fingerprint(
        cfg.model_dump(mode="json", exclude={"runs", "seeds"}), variant, ratio, seed, runtime.seed,
        str(runtime.dtype), runtime.device.type, array_digest(real.images, real.masks, val.images),
        array_digest(*(extra.images, extra.masks) if extra is not None else ()), code_digest(*TRAINING_MODULES),
        # architecture latent reads the generator VAE and the trained validator: their weights too
        state_digest(latent_parts.vae, latent_parts.validator, latent_parts.unet_state) if latent else None,
    )
    with Curves(live_dir, keep_summary=False) as curves:
        trainer = Trainer(runtime, schedule, "run", fingerprint, checkpoints, curves, curve_prefix="train/",
                          seed=int(rng.integers(0, 2**63 - 1)), stop_after=stop_after,
                          description=f"train_segmenter: {variant}")
        fit = trainer.fit(task)
    real_seen, extra_seen = exposure(plan, n_real, n_extra)
    first = next((p for p in curves.points if "train/loss" in p), {})
    summary = {
        "variant": variant,
        "ratio": float(ratio),
        "seed": int(seed),
        "steps": cfg.steps,
        "n_real": n_real,
        "n_val": len(val),
        "n_extra": n_extra,
        "extra_per_batch": extra_per_batch(cfg.batch_size, cfg.synthetic_share) if n_extra else 0,
        "real_exposure": int(real_seen.min()) if n_real else 0,
        "extra_exposure_mean": float(extra_seen.mean()) if n_extra else 0.0,
        "extra_weight_mean": float(weights.mean()) if n_extra else 0.0,
        "loss_first": first.get("train/loss"),
        "loss_last": curves.last("train/loss"),
        "train_dice_last": curves.last("train/dice_real"),
        "best_step": fit.best_step,
        "val_dice_best": fit.best_score,
        "resumed_from_step": fit.resumed_from,
        "seconds": fit.seconds,
        "warnings": warnings,
    }
    model = net.eval()
    return SegmenterTrainResult(Segmenter(model, {"training": summary}, device=runtime.device,
                                          batch_size=cfg.eval_batch_size), summary)
