"""Training of the validator: the mask codec first, then the network with the objective of eq. 12.

    L = |eps - eps_hat|_1 + lambda_latent |z0 - z0_hat|_1 + lambda_dice Dice(D(z0_hat), M_gt)

with z_t = sqrt(abar_t) z0 + sqrt(1 - abar_t) eps (eq. 10) and z0_hat from eq. 11. Timesteps are
drawn uniformly, except that a share `single_step_fraction` of each batch is drawn at the
single-step timestep t_s used at inference (see `diffaug.validator.inference`), so the one call
the gate makes is the one the network practised most.

Training pairs: the real frames, zoomed windows around their lesions (`diffaug.zoom`: the gate
checks a small lesion in such a window, so the network learns that scale) and `augment_copies`
copies of both moved by the segmenter's standard augmentation. On top, flips and 90° rotations
(the 8 elements of the dihedral group), exact on the pixel grid. The VAE and the codec are frozen
while the network trains, so the latents of every pair and variant are computed once and sampled from.

Both the codec and the network train through `diffaug.training.Trainer` (checkpoints in
`<checkpoints>/codec/` and `<checkpoints>/network/`), so a killed run resumes where it stopped and
a finished one with the same params, data and code is loaded instead of retrained.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from diffaug.imaging import to_model_space
from diffaug.runtime import Runtime
from diffaug.training.curves import Curves
from diffaug.training.schedule import Schedule
from diffaug.training.state import array_digest, code_digest, run_fingerprint, state_digest
from diffaug.training.trainer import Trainer
from diffaug.validator.codec import VaeMaskCodec, one_hot, probs_to_masks
from diffaug.validator.config import TrainValidatorConfig
from diffaug.validator.dihedral import dihedral
from diffaug.validator.inference import encode_images
from diffaug.validator.metrics import mask_dice
from diffaug.validator.objective import draw_timesteps, eq12_terms
from diffaug.validator.model import ValidatorNet, make_scheduler, vae_downsample
from diffaug.zoom import ZoomConfig

log = logging.getLogger(__name__)


def model_config_from(cfg: TrainValidatorConfig, vae, num_classes: int) -> dict[str, Any]:
    """The `ValidatorNet` keyword arguments for these params and this VAE: `ValidatorNet(**config)`."""
    t_s = cfg.single_step_timestep if cfg.single_step_timestep >= 0 else cfg.num_train_timesteps - 1
    vae_codec = cfg.mask_codec == "vae"
    return dict(
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


# ----------------------------------------------------------------------------- training pairs
def expand_training_set(images: np.ndarray, masks: np.ndarray, num_classes: int, cfg: TrainValidatorConfig,
                        zoom: ZoomConfig | None, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Frames (N, H, W, 3) + zoomed windows around each frame's lesion (class `num_classes`, the
    highest: polyp, fundus cup) + `negative_share` × N lesion-free windows with empty masks
    + `augment_copies` standard-augmented copies of all of them."""
    from diffaug.zoom import crop, lesion_free_windows, zoomed_pairs

    z_images, z_masks, _ = zoomed_pairs(images, masks, masks == num_classes, zoom, np.random.default_rng([seed, 0x200]))
    wins, src = lesion_free_windows(masks, cfg.negative_share, np.random.default_rng([seed, 0x201]))
    n_images = crop(images[src], wins) if len(src) else images[:0]
    n_masks = np.zeros((len(src), *masks.shape[1:]), masks.dtype)
    images, masks = np.concatenate([images, z_images, n_images]), np.concatenate([masks, z_masks, n_masks])
    if cfg.augment_copies > 0:
        from diffaug.segmenter.augment import augment_batch
        from diffaug.segmenter.config import StandardAugmentConfig

        g = torch.Generator().manual_seed(seed + 0x300)
        x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
        m = torch.from_numpy(masks.astype(np.int64))
        xs, ms = [images], [masks]
        for _ in range(cfg.augment_copies):
            xa, ma = augment_batch(x, m, StandardAugmentConfig(), g)
            xs.append((xa * 255).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy())
            ms.append(ma.numpy().astype(masks.dtype))
        images, masks = np.concatenate(xs), np.concatenate(ms)
    return images, masks


# ----------------------------------------------------------------------------- mask codec
class CodecTask:
    """The learned codec as an autoencoder of the (augmented) training masks: cross-entropy +
    Dice on the reconstruction, with noise of std `codec_latent_noise` on the latent so the
    decoder tolerates the residual error of z0_hat."""

    def __init__(self, codec, masks: torch.Tensor, cfg: TrainValidatorConfig) -> None:
        self.model, self.masks, self.cfg = codec, masks, cfg

    def parameters(self):
        return list(self.model.parameters())

    def batch(self, step: int, g: torch.Generator):
        n = len(self.masks)
        idx = torch.randint(n, (min(self.cfg.batch_size, n),), generator=g)
        k = int(torch.randint(8 if self.cfg.augment else 1, (1,), generator=g))
        return dihedral(self.masks[idx], k), torch.Generator().manual_seed(int(torch.randint(0, 2**62, (1,), generator=g)))

    def losses(self, codec, batch) -> dict[str, torch.Tensor]:
        m, noise = batch
        z = codec.encode_raw(m)
        z = z + self.cfg.codec_latent_noise * torch.randn(z.shape, generator=noise)
        logits = codec.decoder(z)
        ce = F.cross_entropy(logits, m.long())
        dice = soft_dice_loss(logits.softmax(1), m, codec.num_classes)
        return {"loss": ce + dice, "ce": ce, "dice": dice}


def codec_schedule(cfg: TrainValidatorConfig) -> Schedule:
    """Adam at a constant rate (AdamW without decay), as the codec has always been fitted."""
    return Schedule(steps=cfg.codec_steps, lr=cfg.codec_lr, min_lr_ratio=1.0, betas=tuple(cfg.betas), fused=cfg.fused,
                    checkpoint_every=cfg.codec_steps, log_every=cfg.log_every)


@torch.no_grad()
def set_codec_scale(net: ValidatorNet, masks: torch.Tensor) -> None:
    """Latent scale = 1 / std of the encoded training masks (unit variance, like the VAE's)."""
    codec = net.codec.eval()
    std = torch.cat([codec.encode_raw(masks[i:i + 64]) for i in range(0, len(masks), 64)]).std().item()
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
    x, m = to_model_space(images), torch.from_numpy(masks.astype(np.int64))
    za, z0, mm = [], [], []
    for k in range(8 if augment else 1):
        xk, mk = dihedral(x, k), dihedral(m, k)
        za.append(encode_images(vae, xk, batch))
        z0.append(torch.cat([codec.encode(mk[i:i + batch]).float() for i in range(0, len(mk), batch)]))
        mm.append(mk)
    return LatentCache(torch.stack(za), torch.stack(z0), torch.stack(mm))


# ----------------------------------------------------------------------------- training
# the code a checkpoint depends on: a checkpoint written by other training code is not resumed
# (least of all a finished one, which would hand back the old weights without training)
TRAINING_MODULES = tuple(f"diffaug.validator.{m}" for m in ("config", "codec", "dihedral", "model", "objective", "inference",
                                                            "train")) + (
    "diffaug.imaging", "diffaug.latents", "diffaug.training.trainer", "diffaug.zoom", "diffaug.segmenter.augment")


class ValidatorTask:
    """eq. 12 on batches drawn from the latent cache (the VAE and the codec are frozen)."""

    def __init__(self, net: ValidatorNet, codec, cache: LatentCache, cfg: TrainValidatorConfig, num_classes: int,
                 device: torch.device) -> None:
        self.model, self.codec, self.cache, self.cfg, self.num_classes = net, codec, cache, cfg, num_classes
        self.device = device
        self.alphas = make_scheduler(net.config).alphas_cumprod.to(device)

    def parameters(self):
        return [p for n_, p in self.model.named_parameters() if not n_.startswith("codec.")]

    def batch(self, step: int, g: torch.Generator):
        c, cfg = self.model.config, self.cfg
        V, N = self.cache.z_a.shape[:2]
        idx = torch.randint(N, (cfg.batch_size,), generator=g)
        var = torch.randint(V, (cfg.batch_size,), generator=g)
        t = draw_timesteps(cfg.batch_size, c.single_step_timestep, c.num_train_timesteps, cfg.single_step_fraction, g)
        eps = torch.randn((cfg.batch_size, *self.cache.z0.shape[2:]), generator=g)
        return self.cache.z_a[var, idx], self.cache.z0[var, idx], self.cache.masks[var, idx], t, eps

    def losses(self, model, batch) -> dict[str, torch.Tensor]:
        z_a, z0, m, t, eps = (b.to(self.device) for b in batch)
        cfg = self.cfg
        terms = eq12_terms(model, self.codec, z_a, z0, m, t, eps, self.alphas, self.num_classes,
                           with_dice=cfg.lambda_dice > 0)
        return {"loss": terms.total(cfg.lambda_latent, cfg.lambda_dice).mean(),  # eq. 12
                "loss_noise": terms.noise.mean(), "loss_latent": terms.latent.mean(), "loss_dice": terms.dice.mean()}


@dataclass
class TrainInfo:
    steps: int = 0
    resumed_from: int = 0
    copied_init_tensors: int = 0
    n_pairs: int = 0  # training pairs after zoomed windows and augmented copies (x 8 dihedral variants)
    codec_recon_dice_learned: float | None = None
    codec_recon_dice_vae: float | None = None
    history: dict = field(default_factory=dict)  # the last logged window means
    seconds: dict = field(default_factory=dict)  # wall time per phase: codec, cache, loop
    curve: list = field(default_factory=list)  # (step, loss) at every log point


def train_network(images: np.ndarray, masks: np.ndarray, vae, cfg: TrainValidatorConfig, num_classes: int,
                  seed: int = 0, runtime: Runtime | None = None, generator_unet_state: dict | None = None,
                  checkpoint_dir: str | Path | None = None, curves: Curves | None = None,
                  stop_after: int | None = None, zoom: ZoomConfig | None = None) -> tuple[ValidatorNet, TrainInfo]:
    """Train a validator on images uint8 (N, H, W, 3) and masks uint8 (N, H, W) class indices
    (`num_classes` foreground classes): the mask codec, then the network (both through
    `diffaug.training`, each resumable). Without a `runtime`, on the CPU in float32 with `seed`.
    `zoom` (generate.zoom) adds zoomed windows around the lesions to the training pairs.

    `stop_after` stops after that many optimiser steps of the network as if killed (tests:
    raises `TrainingStopped`). Returns the trained network (CPU, eval mode) and a summary.
    """
    vae = vae.to("cpu").eval().requires_grad_(False)
    if vae.dtype != torch.float32:
        vae = vae.float()
    runtime = runtime if runtime is not None else Runtime(torch.device("cpu"), torch.float32, seed)
    seed = runtime.seed
    model_cfg = model_config_from(cfg, vae, num_classes)
    torch.manual_seed(seed)  # parameter initialisation
    net = ValidatorNet(**model_cfg)
    info = TrainInfo()
    if generator_unet_state is not None and cfg.init_from_generator:
        from diffaug.validator.model import init_from_generator_unet

        info.copied_init_tensors = init_from_generator_unet(net, generator_unet_state)
    # the frozen VAE and the U-Net the encoder is copied from are inputs like the data: new
    # generator weights (e.g. phases (a)/(b) on more frames) must not resume an old validator
    init_state = generator_unet_state if cfg.init_from_generator else None
    fingerprint = run_fingerprint(cfg.model_dump(mode="json"), model_cfg | {"codec_scale": None}, seed,
                                  str(runtime.dtype), runtime.device.type, array_digest(images, masks),
                                  None if zoom is None else zoom.model_dump(mode="json"), code_digest(*TRAINING_MODULES),
                                  state_digest(vae, init_state))
    curves = curves if curves is not None else Curves(None)
    images, masks = expand_training_set(images, masks, num_classes, cfg, zoom, seed)
    info.n_pairs = int(len(images))
    mask_t = torch.from_numpy(masks.astype(np.int64))

    clock = time.perf_counter()
    if net.codec is not None:
        if cfg.codec_steps > 0:
            Trainer(runtime, codec_schedule(cfg), "codec", fingerprint, checkpoint_dir, curves, "codec/",
                    seed=seed, description="train_validator: mask codec").fit(CodecTask(net.codec, mask_t, cfg))
        set_codec_scale(net, mask_t)
        net.codec.requires_grad_(False).eval()
        info.codec_recon_dice_learned = codec_reconstruction_dice(net.codec, mask_t, num_classes)
    codec = net.codec if net.codec is not None else VaeMaskCodec(vae, num_classes)
    if num_classes <= 2:
        info.codec_recon_dice_vae = codec_reconstruction_dice(VaeMaskCodec(vae, num_classes), mask_t, num_classes)
    info.seconds["codec"] = time.perf_counter() - clock
    clock = time.perf_counter()
    cache = build_cache(vae, codec, images, masks, cfg.augment)
    info.seconds["cache"] = time.perf_counter() - clock

    clock = time.perf_counter()
    if isinstance(codec, VaeMaskCodec):
        vae.to(runtime.device)
    task = ValidatorTask(net, codec, cache, cfg, num_classes, runtime.device)
    schedule = cfg.schedule(cfg.checkpoint_every, cfg.log_every)
    trainer = Trainer(runtime, schedule, "network", fingerprint, checkpoint_dir, curves, "train/",
                      seed=seed + 1, stop_after=stop_after, description="train_validator: network")
    fit = trainer.fit(task)
    info.steps, info.resumed_from = fit.steps, fit.resumed_from
    info.history = {k.removeprefix("train/"): v for k, v in fit.last.items()}
    info.curve = [(p["step"], p["train/loss"]) for p in curves.points if "train/loss" in p]
    info.seconds["loop"] = time.perf_counter() - clock
    vae.to("cpu")
    return net.cpu().eval(), info
