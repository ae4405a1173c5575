"""Training of the validator: the mask codec first, then the network with the objective of eq. 12.

    L = |eps - eps_hat|_1 + lambda_latent |z0 - z0_hat|_1 + lambda_dice Dice(D(z0_hat), M_gt)

with z_t = sqrt(abar_t) z0 + sqrt(1 - abar_t) eps (eq. 10) and z0_hat from eq. 11. Timesteps are
drawn uniformly, except that a share `single_step_fraction` of each batch is drawn at the
single-step timestep t_s used at inference (see `diffaug.validator.inference`), so the one call
the gate makes is the one the network practised most.

Augmentation: flips and 90° rotations (the 8 elements of the dihedral group), applied jointly to
image and mask. They are exact on the pixel grid, and since the VAE and the codec are frozen
while the network trains, the latents of all 8 variants are computed once and sampled from.

Resumable: every `checkpoint_every` steps the network, optimizer, lr schedule, step and the
sampling generator's state go to `<checkpoints>/last/` (safetensors + torch.save of plain
tensors, loaded with weights_only=True); a run with the same params resumes from there.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from diffaug.io import atomic_dir
from diffaug.progress import track
from diffaug.validator.codec import VaeMaskCodec, one_hot, probs_to_masks
from diffaug.validator.config import TrainValidatorConfig
from diffaug.validator.inference import encode_images, images_to_tensor
from diffaug.validator.metrics import mask_dice
from diffaug.validator.objective import draw_timesteps, eq12_terms
from diffaug.validator.model import (
    ValidatorModelConfig,
    ValidatorNet,
    make_scheduler,
    save_validator,
    vae_downsample,
)

log = logging.getLogger(__name__)


def dihedral(x: torch.Tensor, k: int) -> torch.Tensor:
    """k in 0..7: rotate by (k % 4) * 90°, then flip left-right when k >= 4 (last two dims)."""
    x = torch.rot90(x, k % 4, dims=(-2, -1))
    return torch.flip(x, dims=(-1,)) if k >= 4 else x


def model_config_from(cfg: TrainValidatorConfig, vae, num_classes: int) -> ValidatorModelConfig:
    t_s = cfg.single_step_timestep if cfg.single_step_timestep >= 0 else cfg.num_train_timesteps - 1
    vae_codec = cfg.mask_codec == "vae"
    return ValidatorModelConfig(
        latent_channels=int(vae.config.latent_channels), vae_downsample=vae_downsample(vae),
        num_classes=num_classes, mask_codec=cfg.mask_codec,
        mask_latent_channels=int(vae.config.latent_channels) if vae_codec else cfg.mask_latent_channels,
        codec_channels=list(cfg.codec_channels), vision_channels=cfg.vision_channels,
        vision_blocks=cfg.vision_blocks, vision_levels=cfg.vision_levels, fused_channels=cfg.fused_channels,
        unet_block_out_channels=list(cfg.unet_block_out_channels), unet_layers_per_block=cfg.unet_layers_per_block,
        unet_attention=cfg.unet_attention, norm_num_groups=cfg.norm_num_groups,
        num_train_timesteps=cfg.num_train_timesteps, beta_schedule=cfg.beta_schedule,
        beta_start=cfg.beta_start, beta_end=cfg.beta_end, single_step_timestep=t_s,
        prediction_type=cfg.prediction_type,
    )


def soft_dice_loss(probs: torch.Tensor, masks: torch.Tensor, num_classes: int) -> torch.Tensor:
    """1 - Dice over foreground classes (MONAI DiceLoss on probabilities vs one-hot target)."""
    from monai.losses import DiceLoss

    return DiceLoss(include_background=False, softmax=False)(probs, one_hot(masks, num_classes))


# ----------------------------------------------------------------------------- mask codec
def fit_mask_codec(net: ValidatorNet, masks: torch.Tensor, cfg: TrainValidatorConfig, generator: torch.Generator) -> None:
    """Fit the learned codec as an autoencoder on the (augmented) training masks: cross-entropy +
    Dice on the reconstruction, with noise on the latent so the decoder tolerates the residual
    error of z0_hat; then set the latent scale to 1 / std (unit variance, like the VAE's)."""
    codec = net.codec
    if codec is None:
        return
    opt = torch.optim.Adam(codec.parameters(), lr=cfg.codec_lr)
    n = len(masks)
    codec.train()
    for _ in track(range(cfg.codec_steps), "mask codec"):
        idx = torch.randint(n, (min(cfg.batch_size, n),), generator=generator)
        k = int(torch.randint(8 if cfg.augment else 1, (1,), generator=generator))
        m = dihedral(masks[idx], k)
        z = codec.encode_raw(m)
        z = z + 0.1 * torch.randn(z.shape, generator=generator)
        logits = codec.decoder(z)
        loss = F.cross_entropy(logits, m.long()) + soft_dice_loss(logits.softmax(1), m, codec.num_classes)
        opt.zero_grad()
        loss.backward()
        opt.step()
    codec.eval()
    with torch.no_grad():
        std = torch.cat([codec.encode_raw(masks[i:i + 64]) for i in range(0, n, 64)]).std().item()
    net.set_codec_scale(1.0 / max(std, 1e-3))


@torch.no_grad()
def codec_reconstruction_dice(codec, masks: torch.Tensor, num_classes: int, batch: int = 32) -> float:
    """Mean Dice of masks encoded and decoded by a codec (how faithful the mask latent space is)."""
    rec = torch.cat([probs_to_masks(codec.decode_probs(codec.encode(masks[i:i + batch])))
                     for i in range(0, len(masks), batch)])
    return float(mask_dice(rec.numpy(), masks.numpy(), num_classes).mean())


# ----------------------------------------------------------------------------- latent cache
@dataclass
class LatentCache:
    """Latents of the 8 dihedral variants (or the identity only): z_a (V, N, c, h, w), z0 (V, N, m, h, w),
    masks (V, N, H, W)."""

    z_a: torch.Tensor
    z0: torch.Tensor
    masks: torch.Tensor


@torch.no_grad()
def build_cache(vae, codec, images: np.ndarray, masks: np.ndarray, augment: bool, batch: int = 32) -> LatentCache:
    x, m = images_to_tensor(images), torch.from_numpy(masks.astype(np.int64))
    za, z0, mm = [], [], []
    for k in range(8 if augment else 1):
        xk, mk = dihedral(x, k), dihedral(m, k)
        za.append(encode_images(vae, xk, batch))
        z0.append(torch.cat([codec.encode(mk[i:i + batch]).float() for i in range(0, len(mk), batch)]))
        mm.append(mk)
    return LatentCache(torch.stack(za), torch.stack(z0), torch.stack(mm))


# ----------------------------------------------------------------------------- checkpoints
# the code a checkpoint depends on: a checkpoint written by other training code is not resumed
# (least of all a finished one, which would hand back the old weights without training)
TRAINING_MODULES = tuple(f"diffaug.validator.{m}" for m in ("config", "codec", "model", "objective", "inference", "train"))


def params_hash(cfg: TrainValidatorConfig, model_cfg: ValidatorModelConfig, images: np.ndarray,
                masks: np.ndarray, seed: int) -> str:
    """Identity of a training run (params, data, seed, training code): a checkpoint is resumed
    only if it matches."""
    from diffaug.generator.checkpoint import source_digest

    blob = json.dumps({"cfg": cfg.model_dump(), "model": asdict(model_cfg) | {"codec_scale": None},
                       "seed": seed, "code": source_digest(*TRAINING_MODULES)}, sort_keys=True).encode()
    h = hashlib.sha256(blob)
    h.update(np.ascontiguousarray(images).tobytes())
    h.update(np.ascontiguousarray(masks).tobytes())
    return h.hexdigest()[:16]


def save_checkpoint(ckpt_dir: Path, net: ValidatorNet, opt, sched, step: int, gen: torch.Generator,
                    key: str, history: dict, points: list[dict]) -> None:
    with atomic_dir(ckpt_dir / "last") as tmp:
        save_validator(net, tmp)
        torch.save({"optimizer": opt.state_dict(), "lr_scheduler": sched.state_dict(),
                    "generator": gen.get_state()}, tmp / "state.pt")
        # points: every dvclive log point so far, so a resumed run can redraw the whole curve
        (tmp / "progress.json").write_text(json.dumps({"step": step, "params_hash": key, "history": history,
                                                       "points": points}))


def load_checkpoint(ckpt_dir: Path | None, key: str) -> tuple[Path, dict] | None:
    """The last checkpoint if it was written with the same params, else None (start afresh)."""
    if ckpt_dir is None:
        return None
    last = ckpt_dir / "last"
    try:
        progress = json.loads((last / "progress.json").read_text())
    except (OSError, ValueError):
        return None
    if progress.get("params_hash") != key:
        log.warning("train_validator: checkpoint in %s was written with other params; starting afresh", last)
        return None
    return last, progress


# ----------------------------------------------------------------------------- training
@dataclass
class TrainInfo:
    steps: int = 0
    resumed_from: int = 0
    copied_init_tensors: int = 0
    codec_recon_dice_learned: float | None = None
    codec_recon_dice_vae: float | None = None
    history: dict = field(default_factory=dict)
    seconds: dict = field(default_factory=dict)  # wall time per phase: codec, cache, loop
    curve: list = field(default_factory=list)  # (step, loss) at every log point of this run


def train_network(images: np.ndarray, masks: np.ndarray, vae, cfg: TrainValidatorConfig, num_classes: int,
                  seed: int = 0, device: str | torch.device = "cpu", mixed_precision: str = "no",
                  generator_unet_state: dict | None = None, checkpoint_dir: str | Path | None = None,
                  live=None, max_steps: int | None = None) -> tuple[ValidatorNet, TrainInfo]:
    """Train a validator on images uint8 (N, H, W, 3) and masks uint8 (N, H, W) class indices.

    `max_steps` stops early (simulates an interrupted run, for the resume test); `live` is a dvclive
    Live or None. Returns the trained network (CPU, eval mode) and a summary.
    """
    from accelerate import Accelerator
    from safetensors.torch import load_file

    vae = vae.to("cpu").eval().requires_grad_(False)
    if vae.dtype != torch.float32:
        vae = vae.float()
    model_cfg = model_config_from(cfg, vae, num_classes)
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)  # parameter initialisation
    net = ValidatorNet(model_cfg)
    info = TrainInfo()
    if generator_unet_state is not None and cfg.init_from_generator:
        from diffaug.validator.model import init_from_generator_unet

        info.copied_init_tensors = init_from_generator_unet(net, generator_unet_state)
    ckpt_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None
    key = params_hash(cfg, model_cfg, images, masks, seed)
    resume = load_checkpoint(ckpt_dir, key)

    mask_t = torch.from_numpy(masks.astype(np.int64))
    clock = time.perf_counter()
    if resume is None:
        fit_mask_codec(net, mask_t, cfg, gen)
    else:  # the codec (weights and scale) comes back with the network
        last, progress = resume
        net.set_codec_scale(json.loads((last / "config.json").read_text())["codec_scale"])
        net.load_state_dict(load_file(str(last / "model.safetensors")))
    codec = net.codec if net.codec is not None else VaeMaskCodec(vae, num_classes)
    if net.codec is not None:
        net.codec.requires_grad_(False).eval()
        info.codec_recon_dice_learned = codec_reconstruction_dice(net.codec, mask_t, num_classes)
    if num_classes <= 2:
        info.codec_recon_dice_vae = codec_reconstruction_dice(VaeMaskCodec(vae, num_classes), mask_t, num_classes)
    info.seconds["codec"] = time.perf_counter() - clock
    clock = time.perf_counter()
    cache = build_cache(vae, codec, images, masks, cfg.augment)
    info.seconds["cache"] = time.perf_counter() - clock
    clock = time.perf_counter()

    params = [p for n_, p in net.named_parameters() if not n_.startswith("codec.")]
    opt = torch.optim.AdamW(params, lr=cfg.lr, betas=(0.9, 0.999), weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.steps, eta_min=cfg.lr_min)
    start, points = 0, []
    if resume is not None:
        last, progress = resume
        state = torch.load(last / "state.pt", weights_only=True)
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["lr_scheduler"])
        gen.set_state(state["generator"])
        start, info.history = int(progress["step"]), progress.get("history", {})
        points = progress.get("points", [])
        info.resumed_from = start
    accel = Accelerator(cpu=torch.device(device).type == "cpu", mixed_precision=mixed_precision,
                        gradient_accumulation_steps=cfg.grad_accum)
    net, opt = accel.prepare(net, opt)
    dev = accel.device
    alphas = make_scheduler(model_cfg).alphas_cumprod.to(dev)
    net_codec_is_vae = isinstance(codec, VaeMaskCodec)
    if net_codec_is_vae:
        vae.to(dev)
    if live is not None:  # a resumed run redraws the checkpoint's points, then continues from there
        for point in points:
            live.step = point["step"]
            for k, v in point.items():
                if k != "step":
                    live.log_metric(f"train/{k}", v)
            live.next_step()
    V, N = cache.z_a.shape[:2]
    t_s, T = model_cfg.single_step_timestep, model_cfg.num_train_timesteps
    end = cfg.steps if max_steps is None else min(cfg.steps, max_steps)
    net.train()
    for step in track(range(start, end), "train validator", total=end - start):
        for _ in range(cfg.grad_accum):
            idx = torch.randint(N, (cfg.batch_size,), generator=gen)
            var = torch.randint(V, (cfg.batch_size,), generator=gen)
            z_a, z0, m = cache.z_a[var, idx].to(dev), cache.z0[var, idx].to(dev), cache.masks[var, idx].to(dev)
            t = draw_timesteps(cfg.batch_size, t_s, T, cfg.single_step_fraction, gen).to(dev)
            eps = torch.randn(z0.shape, generator=gen).to(dev)
            with accel.accumulate(net):
                terms = eq12_terms(net, codec, z_a, z0, m, t, eps, alphas, num_classes, with_dice=cfg.lambda_dice > 0)
                l_noise, l_latent, l_dice = terms.noise.mean(), terms.latent.mean(), terms.dice.mean()
                loss = terms.total(cfg.lambda_latent, cfg.lambda_dice).mean()  # eq. 12
                accel.backward(loss)
                opt.step()
                opt.zero_grad()
        sched.step()
        done = step + 1
        if done % cfg.log_every == 0 or done == end:
            point = {"loss": loss.item(), "loss_noise": l_noise.item(), "loss_latent": l_latent.item(),
                     "loss_dice": l_dice.item(), "lr": sched.get_last_lr()[0]}
            info.history = {k: float(v) for k, v in point.items()}
            info.curve.append((done, float(point["loss"])))
            points.append({"step": done, **info.history})
            if live is not None:
                live.step = done  # curves against the optimiser step (also across a resume)
                for k, v in point.items():
                    live.log_metric(f"train/{k}", v)
                live.next_step()
        if ckpt_dir is not None and (done % cfg.checkpoint_every == 0 or done == end):
            save_checkpoint(ckpt_dir, accel.unwrap_model(net), opt, sched, done, gen, key, info.history, points)
    info.steps = end
    info.seconds["loop"] = time.perf_counter() - clock
    net = accel.unwrap_model(net).cpu().eval()
    if net_codec_is_vae:
        vae.to("cpu")
    return net, info
