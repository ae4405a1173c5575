"""`finetune_generator`: train the text-conditioned latent inpainting model in three phases.

(a) VAE on every available frame (train + normals + optional unlabelled frames): L1 + KL
    (+ optional patch GAN); then its latent scaling factor is set to 1/std of the latents, the
    way Stable Diffusion's 0.18215 was obtained. Reported: reconstruction PSNR.
(b) Self-supervised inpainting pretraining of the 9-channel UNet on the frames' latents with
    random elliptical masks and the family's generic caption (the prior SD's inpainting model got
    from its own pretraining).
(c) Fine-tuning on the real lesion masks with captions that fit each lesion (prompts.caption_for),
    loss eq. 7 (losses.inpainting_loss), conditioning dropout for classifier-free guidance.
A pretrained backbone goes through the same code; `train_vae` / `pretrain_unet` switch (a)/(b).

Each phase is a task of `diffaug.training.Trainer` (checkpoints `<ckpt>/<phase>/`, one dvclive
folder for all three, steps counted globally). Every random draw comes from the trainer's CPU
generator: a global batch is drawn, then sliced by process rank, so several processes draw what
one would.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from diffaug.generator.losses import PatchDiscriminator, hinge_d_loss, inpainting_loss, psnr, random_masks, vae_loss
from diffaug.generator.models import Generator, build_backbone, inpaint_input, latent_mask, masked_image
from diffaug.generator.prompts import caption_for, generic_prompt
from diffaug.generator.train_parts import VAETrainStep, flip_fixed, flip_random
from diffaug.imaging import to_model_space
from diffaug.latents import encode_latents
from diffaug.runtime import Runtime
from diffaug.training.curves import Curves
from diffaug.training.state import code_digest, run_fingerprint
from diffaug.training.trainer import Trainer, TrainingStopped

PHASES = ("vae", "pretrain", "finetune")
# metrics that say how this call ran, not what it learned: they go to the timings file
# (metrics/timings/finetune_generator.json) and stay out of the dvclive summary, so a finished
# run loaded writes the same summary
TIMING_KEYS = ("seconds", "steps_run", "resumed_from_step")
# the code a checkpoint depends on (= the code deps of the finetune_generator stage in dvc.yaml)
TRAINING_MODULES = tuple(
    f"diffaug.generator.{m}" for m in ("config", "models", "text", "prompts", "losses", "train", "train_parts",
                                      "train_data", "stage_finetune_generator")
) + ("diffaug.imaging", "diffaug.latents", "diffaug.data.prepared", "diffaug.data.stats", "diffaug.training.trainer")


@dataclass
class TrainData:
    """What training reads (see train_data.load_train_data). Arrays uint8 at `image_size`."""

    family: str
    frames: np.ndarray  # (N, H, W, 3) every frame for phases (a) and (b)
    lesion_images: np.ndarray  # (K, H, W, 3) training frames that have a lesion
    lesion_masks: np.ndarray  # (K, H, W) {0, 1}: the region phase (c) paints (polyp; fundus cup)
    lesion_stats: list[dict[str, Any]]  # manifest rows of those frames (size_class, contrast, flat, cdr)
    digest: str = ""  # content hash of `frames`, part of the checkpoint fingerprints
    lesion_digest: str = ""  # content hash of the lesion pairs (phase c's fingerprint)
    n_zoomed: int = 0  # of the lesion pairs, zoomed windows around a real lesion (generate.zoom)

    @property
    def image_size(self) -> int:
        return int(self.frames.shape[1])


@dataclass
class GeneratorTrainResult:
    generator: Generator | None  # None when stopped early (stop_after)
    metrics: dict[str, Any] = field(default_factory=dict)
    captions: list[str] = field(default_factory=list)


class _Ranks:
    """Global batches drawn on the CPU, then this process's slice (same draws for any process count)."""

    def __init__(self) -> None:
        from accelerate import PartialState

        state = PartialState()
        self.world, self.rank = state.num_processes, state.process_index

    def index(self, n_items: int, batch: int, g: torch.Generator) -> torch.Tensor:
        return self.slice(torch.randint(0, n_items, (batch * self.world,), generator=g), batch)

    def slice(self, t: torch.Tensor, batch: int) -> torch.Tensor:
        return t[self.rank * batch:(self.rank + 1) * batch]


class VAETask:
    """Phase (a): L1 + KL (+ hinge GAN after `disc_start`) on randomly flipped frames."""

    def __init__(self, gen: Generator, data: TrainData, cfg: Any, device: torch.device) -> None:
        self.model, self.data, self.pc, self.device = VAETrainStep(gen.vae), data, cfg.vae_phase, device
        self.ranks = _Ranks()
        self.aux_models, self.aux_optimizers = [], []
        if self.pc.disc_weight > 0:
            disc = PatchDiscriminator().to(device)
            self.aux_models = [disc]
            self.aux_optimizers = [torch.optim.AdamW(disc.parameters(), lr=self.pc.disc_lr, betas=tuple(self.pc.disc_betas))]

    def parameters(self):
        return list(self.model.parameters())

    def batch(self, step: int, g: torch.Generator):
        b = self.pc.batch_size
        idx = self.ranks.index(len(self.data.frames), b, g)
        flips = self.ranks.slice(torch.rand(b * self.ranks.world, 2, generator=g), b)
        posterior = torch.Generator().manual_seed(int(torch.randint(0, 2**62, (1,), generator=g)))
        return step, idx, flips, posterior

    def losses(self, model, batch) -> dict[str, torch.Tensor]:
        step, idx, flips, posterior = batch
        x = flip_random(to_model_space(self.data.frames[idx.numpy()], self.device), flips)
        rec, kl = model(x, posterior)
        loss, parts = vae_loss(x, rec, kl, self.pc.kl_weight, self.pc.l2_weight)
        if self.aux_models and step >= self.pc.disc_start:
            # Discriminator step first (hinge loss on real vs detached reconstructions), then the
            # VAE's adversarial term through the updated, frozen discriminator: its weights must
            # not change between this forward and the VAE's backward.
            disc, disc_opt = self.aux_models[0], self.aux_optimizers[0]
            d_loss = hinge_d_loss(disc(x), disc(rec.detach()))
            disc_opt.zero_grad(set_to_none=True)
            d_loss.backward()
            disc_opt.step()
            disc.requires_grad_(False)
            adv = -disc(rec).mean()
            disc.requires_grad_(True)
            loss = loss + self.pc.disc_weight * adv
            parts["disc"] = d_loss.detach()
        return {"loss": loss, **parts}


class InpaintTask:
    """Phases (b) and (c): eq. 7 on noised latents of the frames (random masks, generic caption)
    or of the lesion frames (their masks under the 4 flips, their captions)."""

    def __init__(self, phase: str, gen: Generator, data: TrainData, cfg: Any, latents: dict[str, Any],
                 captions: list[str], bank: Any, device: torch.device) -> None:
        self.phase, self.gen, self.data, self.cfg, self.device = phase, gen, data, cfg, device
        self.model = gen.unet
        self.pc = cfg.pretrain_phase if phase == "pretrain" else cfg.finetune_phase
        self.lat, self.captions, self.bank = latents, captions, bank
        self.ranks = _Ranks()

    def parameters(self):
        return [p for p in self.model.parameters() if p.requires_grad]

    def batch(self, step: int, g: torch.Generator):
        b, r = self.pc.batch_size, self.ranks
        T = self.gen.scheduler.config.num_train_timesteps
        if self.phase == "pretrain":
            idx = r.index(len(self.data.frames), b, g)
            masks = r.slice(random_masks(b * r.world, self.data.image_size, g), b)
            draw = {"idx": idx, "masks": masks, "prompts": [generic_prompt(self.bank)] * b}
        else:
            idx = r.index(len(self.lat["les_z"]), b, g)
            k = len(self.captions)
            draw = {"idx": idx, "prompts": [self.captions[i % k] for i in idx.tolist()]}
        shape = self.lat["frame_z" if self.phase == "pretrain" else "les_z"].shape[1:]
        draw["noise"] = r.slice(torch.randn((b * r.world, *shape), generator=g), b)
        draw["t"] = r.slice(torch.randint(0, T, (b * r.world,), generator=g), b)
        drop = r.slice(torch.rand(b * r.world, generator=g), b) < self.cfg.cond_dropout
        draw["prompts"] = ["" if d else p for p, d in zip(draw["prompts"], drop.tolist(), strict=True)]
        return draw

    def losses(self, unet, d) -> dict[str, torch.Tensor]:
        gen, dev, factor = self.gen, self.device, self.gen.vae_scale_factor
        if self.phase == "pretrain":
            x = to_model_space(self.data.frames[d["idx"].numpy()], dev)
            with torch.no_grad():
                zm = encode_latents(gen.vae, masked_image(x, d["masks"].to(dev)))
            z0, m = self.lat["frame_z"][d["idx"]], latent_mask(d["masks"], factor)
        else:
            z0, zm, m = self.lat["les_z"][d["idx"]], self.lat["les_zm"][d["idx"]], self.lat["les_m"][d["idx"]]
        z0, zm, m, noise, t = z0.to(dev), zm.to(dev), m.to(dev), d["noise"].to(dev), d["t"].to(dev)
        sched = gen.scheduler
        z_t = sched.add_noise(z0, noise, t)
        ctx = gen.text.encode(d["prompts"])
        added = gen.added_cond_kwargs(d["prompts"], z0.shape[-2] * factor, z0.shape[-1] * factor)
        kw = {"added_cond_kwargs": added} if added is not None else {}
        pred = unet(inpaint_input(z_t, m, zm), t, encoder_hidden_states=ctx, **kw).sample
        a = sched.alphas_cumprod.to(dev)[t]
        ptype = sched.config.prediction_type
        target = sched.get_velocity(z0, noise, t) if ptype == "v_prediction" else noise
        loss, parts = inpainting_loss(pred.float(), target, z_t, z0, m, a, self.cfg.lambda_preserve,
                                      self.cfg.snr_gamma, prediction_type=ptype)
        return {"loss": loss, **parts}


@torch.no_grad()
def encode_all(vae: Any, x: torch.Tensor, device: torch.device, chunk: int = 64) -> torch.Tensor:
    out = [encode_latents(vae, x[i:i + chunk].to(device)).cpu() for i in range(0, len(x), chunk)]
    return torch.cat(out) if out else torch.zeros(0)


@torch.no_grad()
def cache_latents(gen: Generator, data: TrainData, device: torch.device) -> dict[str, torch.Tensor]:
    """Latents of every frame (phase b) and of lesion frames, their masked versions and latent
    masks under the 4 flips (phase c); the VAE is frozen from here on."""
    vae = gen.vae.eval().requires_grad_(False)
    zs, zms, ms = [], [], []
    masks = torch.as_tensor(data.lesion_masks).float()[:, None]
    for flip in ((False, False), (True, False), (False, True), (True, True)):
        x = flip_fixed(to_model_space(data.lesion_images), *flip)
        m = flip_fixed(masks, *flip)
        zs.append(encode_all(vae, x, device))
        zms.append(encode_all(vae, masked_image(x, m), device))
        ms.append(latent_mask(m, gen.vae_scale_factor))
    return {"frame_z": encode_all(vae, to_model_space(data.frames), device),
            "les_z": torch.cat(zs), "les_zm": torch.cat(zms), "les_m": torch.cat(ms)}


@torch.no_grad()
def set_scaling_factor(gen: Generator, data: TrainData, n_frames: int, device: torch.device) -> None:
    """scaling_factor = 1/std of the unscaled latents, so the diffusion sees unit variance."""
    gen.vae.register_to_config(scaling_factor=1.0)
    z = encode_all(gen.vae.eval(), to_model_space(data.frames[:n_frames]), device)
    gen.vae.register_to_config(scaling_factor=float(1.0 / z.std().clamp_min(1e-6)))


@torch.no_grad()
def eval_psnr(vae: Any, frames: np.ndarray, device: torch.device, n: int = 32) -> float:
    """Reconstruction PSNR (posterior mode) on the first `n` frames (fixed set)."""
    was_training = vae.training
    vae.eval()
    x = to_model_space(frames[:n], device)
    # the VAE alone, D(E(x)), not diffaug.latents: s would cancel in D(E(x)·s / s) but add rounding
    rec = vae.decode(vae.encode(x).latent_dist.mode()).sample
    vae.train(was_training)
    return psnr(rec, x)


def _is_number(v: Any) -> bool:
    try:
        return v is not None and not math.isnan(float(v))
    except (TypeError, ValueError):
        return False


# what only phases (b)/(c) read: a change there keeps the VAE of phase (a), one in phase (c)'s
# settings or lesion pairs keeps (a) and (b)
_UNET_KEYS = ("pretrain_phase", "finetune_phase", "pretrain_unet", "lambda_preserve", "snr_gamma", "cond_dropout", "prompts")


def phase_fingerprints(cfg: Any, runtime: Runtime, data: TrainData, captions: list[str], processes: int) -> dict[str, str]:
    """A checkpoint fingerprint per phase, each over what that phase and the phases before it read."""
    dump = cfg.model_dump(mode="json")
    vae = run_fingerprint({k: v for k, v in dump.items() if k not in _UNET_KEYS}, runtime.seed, data.digest, processes,
                          str(runtime.dtype), runtime.device.type, code_digest(*TRAINING_MODULES))
    pretrain = run_fingerprint(vae, {k: dump[k] for k in _UNET_KEYS if k != "finetune_phase"})
    finetune = run_fingerprint(pretrain, dump["finetune_phase"], data.lesion_digest, captions)
    return {"vae": vae, "pretrain": pretrain, "finetune": finetune}


def effective_steps(phase: Any, n_items: int) -> int:
    """`phase.steps`, raised to `phase.epochs` passes over `n_items` when that needs more."""
    per_step = phase.batch_size * phase.grad_accum
    return max(phase.steps, math.ceil(phase.epochs * n_items / per_step)) if phase.steps else 0


def phase_steps(cfg: Any, data: TrainData) -> dict[str, int]:
    """Optimiser steps per phase: (a)/(b) over every frame (labelled + normals + unlabelled),
    (c) over the lesion pairs (zoomed windows included)."""
    n_frames, n_lesions = len(data.frames), len(data.lesion_images)
    return {"vae": effective_steps(cfg.vae_phase, n_frames) if cfg.train_vae else 0,
            "pretrain": effective_steps(cfg.pretrain_phase, n_frames) if cfg.pretrain_unet else 0,
            "finetune": effective_steps(cfg.finetune_phase, n_lesions)}


def finetune_generator(cfg: Any, runtime: Runtime, data: TrainData, ckpt_dir: str | Path,
                       live_dir: str | Path | None = None, stop_after: int | None = None) -> GeneratorTrainResult:
    """Run (or resume) the three phases; returns the trained Generator and metrics.

    `stop_after` = optimizer steps to run in this call before stopping as if killed (tests);
    the result then has `generator=None`. Checkpoints go to `ckpt_dir/<phase>/`, dvclive curves to
    `live_dir` (written in full at the end, including the steps before a resume).
    """
    import time

    t0 = time.perf_counter()
    device = runtime.device
    gen = build_backbone(cfg, data.image_size, device, torch.float32)
    gen.vae.to(device)
    gen.unet.to(device)
    bank = cfg.prompts.for_family(data.family)
    # Captions are fixed once per lesion from the seed (numpy stream independent of training).
    rng = np.random.default_rng(runtime.seed)
    contrasts = [float(s["contrast"]) for s in data.lesion_stats if _is_number(s.get("contrast"))]
    split = float(np.median(contrasts)) if contrasts else None
    captions = [caption_for(s, bank, rng, contrast_split=split) for s in data.lesion_stats]
    from accelerate import PartialState

    fingerprints = phase_fingerprints(cfg, runtime, data, captions, PartialState().num_processes)
    steps = phase_steps(cfg, data)
    phase_cfg = {"vae": cfg.vae_phase, "pretrain": cfg.pretrain_phase, "finetune": cfg.finetune_phase}
    offset, steps_run, resumed_from, latents = 0, 0, 0, None
    curves = Curves(live_dir)
    try:
        for i, phase in enumerate(PHASES):
            if steps[phase] == 0:
                continue
            if phase != "vae" and latents is None:
                latents = cache_latents(gen, data, device)
            task = VAETask(gen, data, cfg, device) if phase == "vae" else \
                InpaintTask(phase, gen, data, cfg, latents, captions, bank, device)
            task.model.train().requires_grad_(True)
            schedule = phase_cfg[phase].schedule(cfg.checkpoint_every, cfg.log_every)
            schedule = replace(schedule, steps=steps[phase])
            trainer = Trainer(runtime, schedule, phase, fingerprints[phase], ckpt_dir, curves, f"{phase}/", offset,
                              seed=runtime.seed + 1000 * (i + 1),
                              stop_after=None if stop_after is None else stop_after - steps_run,
                              description=f"finetune_generator: {phase}")
            fit = trainer.fit(task)
            task.model.eval().requires_grad_(False)
            if fit.resumed_from:
                resumed_from = offset + fit.resumed_from
            steps_run += fit.steps_run
            offset += steps[phase]
            if phase == "vae" and cfg.backbone == "tiny":
                set_scaling_factor(gen, data, cfg.vae_phase.scale_frames, device)
                curves.log(offset, {"vae/psnr": eval_psnr(gen.vae, data.frames, device)})
    except TrainingStopped:
        curves.discard()
        return GeneratorTrainResult(None, {"stopped_after_steps": stop_after}, captions)

    def last(name: str) -> float | None:
        return curves.last(name, n=3)

    metrics = {
        "vae_psnr": eval_psnr(gen.vae, data.frames, device),
        "vae_scaling_factor": float(gen.vae.config.scaling_factor),
        "vae_final_loss": last("vae/loss"),
        "pretrain_final_loss": last("pretrain/loss"),
        "finetune_final_loss": last("finetune/loss"),
        "finetune_final_masked_noise": last("finetune/masked_noise"),
        "finetune_final_preserve": last("finetune/preserve"),
        "vae_steps": steps["vae"],
        "pretrain_steps": steps["pretrain"],
        "finetune_steps": steps["finetune"],
        "steps_run": steps_run,
        "resumed_from_step": resumed_from,
        "seconds": round(time.perf_counter() - t0, 2),
        "n_frames": int(len(data.frames)),
        "n_lesions": int(len(data.lesion_images)),
        "n_zoomed_lesions": int(data.n_zoomed),
    }
    curves.summary.update({k: v for k, v in metrics.items() if isinstance(v, (int, float)) and k not in TIMING_KEYS})
    curves.close()
    return GeneratorTrainResult(gen, metrics, captions)
