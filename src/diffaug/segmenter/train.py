"""Training one downstream segmenter run: variant × ratio × seed (issue 5 item 1).

The budget is `epochs` passes over the real set (see `diffaug.segmenter.mixing`): every variant
sees each real image exactly `epochs` times; `copypaste` and `diffaug` add extra pairs to each
batch. Loss per sample: cross-entropy + `dice_weight` × soft Dice (MONAI), weighted per sample
(real 1; extra `synthetic_loss_weight`, optionally × the gate IoU), averaged over the batch.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from diffaug.errors import InputError
from diffaug.progress import track
from diffaug.runtime import Runtime
from diffaug.segmenter.augment import augment_batch, build_standard_transform
from diffaug.segmenter.config import RATIO_VARIANTS, VARIANTS, TrainSegmenterConfig
from diffaug.segmenter.copypaste import make_copypaste_set
from diffaug.segmenter.data import Pairs
from diffaug.segmenter.latent import LatentParts, build_latent_network
from diffaug.segmenter.mixing import exposure, extra_per_batch, training_plan
from diffaug.segmenter.models import Segmenter, SegmenterSpec, build_network, normalise

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    segmenter: Segmenter
    summary: dict[str, Any]  # flat numbers + warnings, goes into config.json and the metrics


def build_extra_pairs(
    variant: str, ratio: float, real: Pairs, cfg: TrainSegmenterConfig, rng: np.random.Generator,
    synthetic: Pairs | None, source: str = "accepted.npz",
) -> tuple[Pairs | None, np.ndarray, list[str]]:
    """The extra pool of a variant and each pair's loss weight; warnings as text.

    copypaste and diffaug both add round(ratio × N_real) pairs, so copypaste pastes as many
    lesions as diffaug adds synthetic images. diffaug takes a seeded subset of the accepted pool;
    when the gate accepted fewer, all are used (and a warning says how many).
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
    # diffaug
    if synthetic is None or len(synthetic) == 0:
        msg = f"diffaug: {source} holds no accepted synthetic pairs"
        if cfg.on_empty_synthetic == "error":
            raise InputError(f"{msg}; generate more samples or lower gate.threshold (or set train_segmenter.on_empty_synthetic: warn)")
        warnings.append(f"{msg}; trained on real pairs with standard augmentation only")
        return None, np.zeros(0, np.float32), warnings
    take = min(want, len(synthetic))
    if take < want:
        warnings.append(f"diffaug: ratio {ratio:g} asks for {want} synthetic pairs, the gate accepted {len(synthetic)}; using all")
    idx = np.sort(rng.permutation(len(synthetic))[:take])
    weights = np.full(take, cfg.synthetic_loss_weight, np.float32)
    if cfg.weight_by_gate_iou and synthetic.iou is not None:
        weights = weights * np.clip(synthetic.iou[idx], 0.0, 1.0)
    return Pairs(synthetic.images[idx], synthetic.masks[idx]), weights, warnings


def per_sample_loss(logits: torch.Tensor, target: torch.Tensor, dice_weight: float, dice_fn) -> torch.Tensor:
    """(B,) cross-entropy + dice_weight × soft Dice over the foreground classes."""
    ce = torch.nn.functional.cross_entropy(logits, target, reduction="none").mean(dim=(1, 2))
    if dice_weight == 0:
        return ce
    dice = dice_fn(logits, target.unsqueeze(1)).reshape(len(logits), -1).mean(dim=1)
    return ce + dice_weight * dice


def _hard_dice(logits: torch.Tensor, target: torch.Tensor) -> float:
    """Foreground Dice of the batch's argmax (a training-curve number, not the evaluation)."""
    pred = logits.argmax(1) > 0
    gt = target > 0
    denom = pred.sum() + gt.sum()
    return 1.0 if denom == 0 else float(2 * (pred & gt).sum() / denom)


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
) -> TrainResult:
    """Train one run and return the segmenter with a summary of what it saw and how it went.
    `latent_parts` (the generator VAE, the trained validator) is needed for `architecture: latent`."""
    from accelerate import Accelerator
    from monai.losses import DiceLoss

    if variant not in VARIANTS:
        raise InputError(f"unknown variant '{variant}'; allowed: {', '.join(VARIANTS)}")
    if ratio < 0:
        raise InputError(f"synthetic ratio must be >= 0, got {ratio:g}")
    t0 = time.perf_counter()
    # One seed stream per (base.seed, run seed): data order, augmentation, copy-paste, init.
    rng = np.random.default_rng([runtime.seed, seed])
    extra, weights, warnings = build_extra_pairs(variant, ratio, real, cfg, rng, synthetic)
    n_real, n_extra = len(real), 0 if extra is None else len(extra)
    for w in warnings:
        log.warning(w)

    x_real = torch.from_numpy(real.images).permute(0, 3, 1, 2).float().div_(255.0)  # (N, 3, H, W)
    y_real = torch.from_numpy(real.masks).long()  # (N, H, W)
    latent = cfg.architecture == "latent"
    if latent and latent_parts is None:
        raise InputError("train_segmenter.architecture latent needs the generator VAE and the trained validator")
    if latent:  # the VAE's input range [-1, 1]
        mean, std = [0.5] * 3, [0.5] * 3
    else:
        mean = x_real.mean(dim=(0, 2, 3)).tolist()
        std = x_real.std(dim=(0, 2, 3)).clamp_min(1e-3).tolist()
    spec = SegmenterSpec(cfg.architecture, num_classes, int(real.images.shape[1]), list(cfg.channels),
                         cfg.num_res_units, mean, std)
    if extra is not None:
        x_extra = torch.from_numpy(extra.images).permute(0, 3, 1, 2).float().div_(255.0)
        y_extra = torch.from_numpy(extra.masks).long()
        w_extra = torch.from_numpy(weights)

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(rng.integers(0, 2**63 - 1)))
        if latent:
            net = build_latent_network(latent_parts, cfg.latent.init, cfg.latent.noise_seed)
            spec.latent = net.encoder_state()
        else:
            net = build_network(spec)
    # timesteps and noise of the latent objective (eq. 10): one stream per run
    noise_gen = torch.Generator().manual_seed(int(rng.integers(0, 2**63 - 1))) if latent else None
    params = net.trainable_parameters() if latent else list(net.parameters())
    plan = training_plan(n_real, n_extra, cfg.epochs, cfg.batch_size, cfg.synthetic_share, cfg.real_only_epochs, rng)
    total_steps = sum(len(b) for b in plan)

    accelerator = Accelerator(cpu=runtime.device.type != "cuda", mixed_precision=runtime.mixed_precision)
    lr = cfg.latent.lr if latent else cfg.lr
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total_steps, eta_min=min(cfg.lr_min, lr))
    net, opt, sched = accelerator.prepare(net, opt, sched)
    dice_fn = DiceLoss(include_background=False, to_onehot_y=True, softmax=True, reduction="none")
    transform = build_standard_transform(cfg.augment) if variant != "none" else None

    live = None
    if live_dir is not None:
        from dvclive import Live

        live = Live(dir=str(live_dir), save_dvc_exp=False, dvcyaml=None, report=None)
    history: list[dict[str, float]] = []
    net.train()
    for epoch, batches in enumerate(track(plan, f"train_segmenter: {variant} (passes over the real set)")):
        losses, dices = [], []
        for b in batches:
            xb, yb = x_real[b.real], y_real[b.real]
            wb = torch.ones(len(b.real))
            if len(b.extra):
                xb = torch.cat([xb, x_extra[b.extra]])
                yb = torch.cat([yb, y_extra[b.extra]])
                wb = torch.cat([wb, w_extra[b.extra]])
            if transform is not None:
                xb, yb = augment_batch(xb, yb, transform, rng)
            xb = normalise(xb, spec).to(accelerator.device)
            yb, wb = yb.long().to(accelerator.device), wb.to(accelerator.device)
            with accelerator.autocast():
                if latent:  # eq. 12 per sample; the curve's Dice reads the decoded single-step estimate
                    # through forward (not a method of the unwrapped net) so a DDP wrapper syncs gradients
                    loss_each, logits = net(xb, yb, cfg.latent.single_step_fraction, noise_gen,
                                            cfg.latent.lambda_latent, cfg.latent.lambda_dice)
                    loss_each = loss_each.float()
                else:
                    logits = net(xb)
                    loss_each = per_sample_loss(logits.float(), yb, cfg.dice_weight, dice_fn)
            loss = (loss_each * wb).sum() / wb.sum().clamp_min(1e-6)
            opt.zero_grad(set_to_none=True)
            accelerator.backward(loss)
            opt.step()
            sched.step()
            losses.append(float(loss.detach()))
            n = len(b.real)  # the curve's Dice is on the real part of the batch
            dices.append(_hard_dice(logits[:n].detach(), yb[:n]))
        row = {"epoch": epoch + 1, "loss": float(np.mean(losses)), "train_dice": float(np.mean(dices)),
               "lr": float(sched.get_last_lr()[0])}
        history.append(row)
        if live is not None and ((epoch + 1) % cfg.log_every == 0 or epoch + 1 == cfg.epochs):
            live.log_metric("train/loss", row["loss"])
            live.log_metric("train/dice_real", row["train_dice"])
            live.log_metric("lr", row["lr"])
            live.next_step()
    if live is not None:
        live.end()

    real_seen, extra_seen = exposure(plan, n_real, n_extra)
    summary = {
        "variant": variant,
        "ratio": float(ratio),
        "seed": int(seed),
        "epochs": cfg.epochs,
        "steps": total_steps,
        "n_real": n_real,
        "n_extra": n_extra,
        "extra_per_batch": extra_per_batch(cfg.batch_size, cfg.synthetic_share) if n_extra else 0,
        "real_exposure": int(real_seen.min()) if n_real else 0,  # == epochs, by design
        "extra_exposure_mean": float(extra_seen.mean()) if n_extra else 0.0,
        "extra_weight_mean": float(weights.mean()) if n_extra else 0.0,
        "loss_first": history[0]["loss"],
        "loss_last": history[-1]["loss"],
        "train_dice_last": history[-1]["train_dice"],
        "seconds": time.perf_counter() - t0,
        "warnings": warnings,
    }
    model = accelerator.unwrap_model(net)
    return TrainResult(Segmenter(model, spec, {"training": summary}, device=accelerator.device,
                                 batch_size=cfg.eval_batch_size), summary)
