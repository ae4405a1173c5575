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

accelerate handles device, mixed precision and several processes; every random draw comes from
one CPU `torch.Generator` per phase (global batch drawn, then sliced by process rank), whose state
is checkpointed with the weights, optimizer and lr scheduler, so a killed run resumes exactly.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from diffaug.generator.checkpoint import load_checkpoint, run_fingerprint, save_checkpoint, source_digest
from diffaug.generator.losses import (
    PatchDiscriminator,
    hinge_d_loss,
    inpainting_loss,
    psnr,
    random_masks,
    vae_loss,
)
from diffaug.generator.models import (
    Generator,
    build_backbone,
    encode_latents,
    inpaint_input,
    latent_mask,
    masked_image,
    to_model_space,
)
from diffaug.generator.prompts import caption_for, generic_prompt
from diffaug.generator.train_parts import VAETrainStep, flip_fixed, flip_random, lr_lambda, truncate_live
from diffaug.progress import track
from diffaug.runtime import Runtime

PHASES = ("vae", "pretrain", "finetune")
# the code a checkpoint depends on (= the code deps of the finetune_generator stage in dvc.yaml)
TRAINING_MODULES = tuple(
    f"diffaug.generator.{m}"
    for m in ("config", "models", "text", "prompts", "losses", "checkpoint", "train", "train_parts", "train_data",
              "finetune")
) + ("diffaug.data.prepared", "diffaug.data.stats")


@dataclass
class TrainData:
    """What training reads (see train_data.load_train_data). Arrays uint8 at `image_size`."""

    family: str
    frames: np.ndarray  # (N, H, W, 3) every frame for phases (a) and (b)
    lesion_images: np.ndarray  # (K, H, W, 3) training frames that have a lesion
    lesion_masks: np.ndarray  # (K, H, W) {0, 1}: the region phase (c) paints (polyp; fundus cup)
    lesion_stats: list[dict[str, Any]]  # manifest rows of those frames (size_class, contrast, flat, cdr)
    digest: str = ""  # content hash, part of the checkpoint fingerprint

    @property
    def image_size(self) -> int:
        return int(self.frames.shape[1])


@dataclass
class TrainResult:
    generator: Generator | None  # None when stopped early (stop_after)
    metrics: dict[str, Any] = field(default_factory=dict)
    captions: list[str] = field(default_factory=list)


class _Stopped(Exception):
    """Raised when `stop_after` optimizer steps ran (simulates a killed run in tests)."""


class _Trainer:
    def __init__(self, cfg: Any, runtime: Runtime, data: TrainData, ckpt_dir: Path, stop_after: int | None) -> None:
        from accelerate import Accelerator

        self.cfg, self.runtime, self.data = cfg, runtime, data
        self.acc = Accelerator(mixed_precision=runtime.mixed_precision, cpu=runtime.device.type == "cpu")
        self.device = self.acc.device
        self.ckpt_dir = Path(ckpt_dir)
        self.stop_after = stop_after
        self.steps_run = 0
        self.gen = build_backbone(cfg, data.image_size, self.device, torch.float32)
        self.gen.vae.to(self.device)
        self.gen.unet.to(self.device)
        self.factor = self.gen.vae_scale_factor
        self.bank = cfg.prompts.for_family(data.family)
        self.disc = PatchDiscriminator().to(self.device) if cfg.vae_phase.disc_weight > 0 else None
        # Captions are fixed once per lesion from the seed (numpy stream independent of training).
        rng = np.random.default_rng(runtime.seed)
        contrasts = [float(s["contrast"]) for s in data.lesion_stats if _is_number(s.get("contrast"))]
        split = float(np.median(contrasts)) if contrasts else None
        self.captions = [caption_for(s, self.bank, rng, contrast_split=split) for s in data.lesion_stats]
        self.fingerprint = run_fingerprint(
            cfg.model_dump(), runtime.seed, data.digest, self.acc.num_processes, str(runtime.dtype),
            source_digest(*TRAINING_MODULES),
        )
        self.history: dict[str, list[float]] = {}
        self.live: Any = None

    # ---- helpers ------------------------------------------------------------------------------
    def _global_step_offset(self, phase: str) -> int:
        steps = self._phase_steps()
        return sum(steps[p] for p in PHASES[: PHASES.index(phase)])

    def _phase_steps(self) -> dict[str, int]:
        c = self.cfg
        return {
            "vae": c.vae_phase.steps if c.train_vae else 0,
            "pretrain": c.pretrain_phase.steps if c.pretrain_unet else 0,
            "finetune": c.finetune_phase.steps,
        }

    def _draw_index(self, n_items: int, batch: int, g: torch.Generator) -> torch.Tensor:
        """Global batch of indices drawn on CPU, then this process's slice (same draws whatever
        the number of processes)."""
        p, r = self.acc.num_processes, self.acc.process_index
        idx = torch.randint(0, n_items, (batch * p,), generator=g)
        return idx[r * batch : (r + 1) * batch]

    def _rank_slice(self, t: torch.Tensor, batch: int) -> torch.Tensor:
        r = self.acc.process_index
        return t[r * batch : (r + 1) * batch]

    def _batch_images(self, images: np.ndarray, idx: torch.Tensor) -> torch.Tensor:
        return to_model_space(images[idx.numpy()], self.device)

    # ---- phase (a): VAE -----------------------------------------------------------------------
    def _vae_step(self, vae: Any, step: int, g: torch.Generator) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        pc = self.cfg.vae_phase
        idx = self._draw_index(len(self.data.frames), pc.batch_size, g)
        flips = self._rank_slice(torch.rand(pc.batch_size * self.acc.num_processes, 2, generator=g), pc.batch_size)
        x = flip_random(self._batch_images(self.data.frames, idx), flips)
        rec, kl = vae(x, g)
        loss, parts = vae_loss(x, rec, kl, pc.kl_weight, pc.l2_weight)
        if self.disc is not None and step >= pc.disc_start:
            # Discriminator step first (hinge loss on real vs detached reconstructions), then the
            # VAE's adversarial term through the updated, frozen discriminator: its weights must
            # not change between this forward and the VAE's backward.
            d_loss = hinge_d_loss(self.disc(x), self.disc(rec.detach()))
            self.disc_opt.zero_grad(set_to_none=True)
            d_loss.backward()
            self.disc_opt.step()
            self.disc.requires_grad_(False)
            adv = -self.disc(rec).mean()
            self.disc.requires_grad_(True)
            loss = loss + pc.disc_weight * adv
            parts["disc"] = d_loss.detach()
        return loss, parts

    # ---- phases (b), (c): inpainting UNet ------------------------------------------------------
    def _cache_latents(self) -> None:
        """Latents of every frame (phase b) and of lesion frames, their masked versions and
        latent masks under the 4 flips (phase c); the VAE is frozen from here on."""
        vae = self.gen.vae.eval().requires_grad_(False)
        with torch.no_grad():
            self.frame_latents = self._encode_all(self.data.frames)
            zs, zms, ms = [], [], []
            masks = torch.as_tensor(self.data.lesion_masks).float()[:, None]
            for flip in ((False, False), (True, False), (False, True), (True, True)):
                x = flip_fixed(to_model_space(self.data.lesion_images), *flip)
                m = flip_fixed(masks, *flip)
                zs.append(self._encode_all_t(x))
                zms.append(self._encode_all_t(masked_image(x, m)))
                ms.append(latent_mask(m, self.factor))
            self.les_z, self.les_zm, self.les_m = torch.cat(zs), torch.cat(zms), torch.cat(ms)
        del vae

    def _encode_all(self, images: np.ndarray) -> torch.Tensor:
        return self._encode_all_t(to_model_space(images))

    def _encode_all_t(self, x: torch.Tensor, chunk: int = 64) -> torch.Tensor:
        out = [encode_latents(self.gen.vae, x[i : i + chunk].to(self.device)).cpu() for i in range(0, len(x), chunk)]
        return torch.cat(out) if out else torch.zeros(0)

    def _unet_forward(self, unet: Any, z0: torch.Tensor, zm: torch.Tensor, m: torch.Tensor, prompts: list[str], g: torch.Generator, batch: int):
        sched = self.gen.scheduler
        p = self.acc.num_processes
        noise = self._rank_slice(torch.randn((batch * p, *z0.shape[1:]), generator=g), batch).to(self.device)
        t = self._rank_slice(torch.randint(0, sched.config.num_train_timesteps, (batch * p,), generator=g), batch)
        drop = self._rank_slice(torch.rand(batch * p, generator=g), batch) < self.cfg.cond_dropout
        prompts = ["" if d else pr for pr, d in zip(prompts, drop.tolist())]
        z0, zm, m = z0.to(self.device), zm.to(self.device), m.to(self.device)
        t_dev = t.to(self.device)
        z_t = sched.add_noise(z0, noise, t_dev)
        ctx = self.gen.text.encode(prompts)
        h = z0.shape[-2] * self.factor
        added = self.gen.added_cond_kwargs(prompts, h, z0.shape[-1] * self.factor)
        kw = {"added_cond_kwargs": added} if added is not None else {}
        with self.acc.autocast():
            pred = unet(inpaint_input(z_t, m, zm), t_dev, encoder_hidden_states=ctx, **kw).sample
        a = sched.alphas_cumprod.to(self.device)[t_dev]
        ptype = sched.config.prediction_type
        target = sched.get_velocity(z0, noise, t_dev) if ptype == "v_prediction" else noise
        return inpainting_loss(
            pred.float(), target, z_t, z0, m, a, self.cfg.lambda_preserve, self.cfg.snr_gamma, prediction_type=ptype
        )

    def _pretrain_step(self, unet: Any, step: int, g: torch.Generator):
        b = self.cfg.pretrain_phase.batch_size
        idx = self._draw_index(len(self.data.frames), b, g)
        size = self.data.image_size
        masks = self._rank_slice(random_masks(b * self.acc.num_processes, size, g), b)
        x = self._batch_images(self.data.frames, idx)
        with torch.no_grad():
            zm = encode_latents(self.gen.vae, masked_image(x, masks.to(self.device)))
        z0 = self.frame_latents[idx]
        prompts = [generic_prompt(self.bank)] * b
        return self._unet_forward(unet, z0, zm, latent_mask(masks, self.factor), prompts, g, b)

    def _finetune_step(self, unet: Any, step: int, g: torch.Generator):
        b = self.cfg.finetune_phase.batch_size
        idx = self._draw_index(len(self.les_z), b, g)
        k = len(self.captions)
        prompts = [self.captions[i % k] for i in idx.tolist()]
        return self._unet_forward(unet, self.les_z[idx], self.les_zm[idx], self.les_m[idx], prompts, g, b)

    # ---- the generic phase loop ----------------------------------------------------------------
    def _run_phase(self, phase: str, model: Any, step_fn: Callable, resume: dict[str, Any] | None) -> None:
        pc = {"vae": self.cfg.vae_phase, "pretrain": self.cfg.pretrain_phase, "finetune": self.cfg.finetune_phase}[phase]
        steps = self._phase_steps()[phase]
        model.train().requires_grad_(True)
        params = [p for p in model.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=pc.lr, betas=(0.9, 0.999), weight_decay=pc.weight_decay)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(pc))
        if self.disc is not None and phase == "vae":
            self.disc_opt = torch.optim.AdamW(self.disc.parameters(), lr=pc.disc_lr, betas=(0.5, 0.9))
        wrapped, opt = self.acc.prepare(model, opt)
        g = torch.Generator().manual_seed(self.runtime.seed + 1000 * (PHASES.index(phase) + 1))
        start = 0
        if resume is not None:
            opt.load_state_dict(resume["opt"])
            sched.load_state_dict(resume["sched"])
            g.set_state(resume["rng"])
            if "disc_opt" in resume and self.disc is not None:
                self.disc_opt.load_state_dict(resume["disc_opt"])
            start = int(resume["step"])
        offset = self._global_step_offset(phase)
        acc_steps = pc.accumulation
        window: dict[str, list[float]] = {}
        todo = range(start, steps)
        for step in (track(todo, f"finetune_generator: {phase}") if self.acc.is_main_process else todo):
            if self.stop_after is not None and self.steps_run >= self.stop_after:
                raise _Stopped
            opt.zero_grad(set_to_none=True)
            for micro in range(acc_steps):
                sync = contextlib.nullcontext() if micro == acc_steps - 1 else self.acc.no_sync(wrapped)
                with sync:
                    loss, parts = step_fn(wrapped, step, g)
                    self.acc.backward(loss / acc_steps)
                for k_, v in {"loss": loss.detach(), **parts}.items():
                    window.setdefault(k_, []).append(float(v))
            self.acc.clip_grad_norm_(params, 1.0)
            opt.step()
            sched.step()
            self.steps_run += 1
            done = step + 1
            is_ckpt = done % self.cfg.checkpoint_every == 0 or done == steps
            if done % max(1, min(10, self.cfg.checkpoint_every)) == 0 or is_ckpt:
                self._log(phase, offset + done, window, with_psnr=is_ckpt)
                window = {}
            if is_ckpt:
                states = {"opt": opt.state_dict(), "sched": sched.state_dict(), "rng": g.get_state(), "step": done}
                if self.disc is not None and phase == "vae":
                    states["disc_opt"] = self.disc_opt.state_dict()
                nxt = (phase, done) if done < steps else (_next_phase(phase), 0)
                self._save(nxt, states if done < steps else {})
        self.acc.wait_for_everyone()
        model.eval().requires_grad_(False)

    def _log(self, phase: str, global_step: int, window: dict[str, list[float]], with_psnr: bool) -> None:
        for k_, vals in window.items():
            mean = float(np.mean(vals))
            self.history.setdefault(f"{phase}/{k_}", []).append(mean)
            if self.live is not None:
                self.live.step = global_step
                self.live.log_metric(f"{phase}/{k_}", mean)
        if phase == "vae" and with_psnr and self.live is not None:
            self.live.log_metric("vae/psnr", self.eval_psnr())

    def _save(self, nxt: tuple[str, int], states: dict[str, Any]) -> None:
        if not self.acc.is_main_process:
            return
        models = {"vae": self.gen.vae, "unet": self.gen.unet}
        if self.disc is not None:
            models["disc"] = self.disc
        progress = {
            "phase": nxt[0],
            "step": nxt[1],
            "scaling_factor": float(self.gen.vae.config.scaling_factor),
            "fingerprint": self.fingerprint,
            "steps_run_total": self.steps_run,
            # logged loss means so far: a resumed run reports the same final losses as an unbroken one
            "history": self.history,
        }
        save_checkpoint(self.ckpt_dir, models, states, progress)

    @torch.no_grad()
    def eval_psnr(self, n: int = 32) -> float:
        """Reconstruction PSNR (posterior mode) on the first `n` frames (fixed set)."""
        vae = self.gen.vae
        was_training = vae.training
        vae.eval()
        x = to_model_space(self.data.frames[:n], self.device)
        rec = vae.decode(vae.encode(x).latent_dist.mode()).sample
        vae.train(was_training)
        return psnr(rec, x)

    # ---- entry ---------------------------------------------------------------------------------
    def run(self, live_dir: Path | None) -> TrainResult:
        t0 = time.perf_counter()
        ck = load_checkpoint(self.ckpt_dir, self.fingerprint)
        phase, step, resume = "vae", 0, None
        resumed_from = 0
        if ck is not None:
            models, states, progress = ck
            self.gen.vae.load_state_dict(models["vae"])
            self.gen.unet.load_state_dict(models["unet"])
            if self.disc is not None and "disc" in models:
                self.disc.load_state_dict(models["disc"])
            self.gen.vae.register_to_config(scaling_factor=progress["scaling_factor"])
            phase, step = progress["phase"], int(progress["step"])
            self.history = {k: list(v) for k, v in progress.get("history", {}).items()}
            resume = states if step > 0 else None
            resumed_from = (self._global_step_offset(phase) + step) if phase in PHASES else sum(self._phase_steps().values())
        if live_dir is not None and self.acc.is_main_process:
            from dvclive import Live

            truncate_live(live_dir, resumed_from)
            self.live = Live(dir=str(live_dir), resume=ck is not None, save_dvc_exp=False, dvcyaml=None, report=None)
        try:
            start_i = PHASES.index(phase) if phase in PHASES else len(PHASES)
            for ph in PHASES[start_i:]:
                if self._phase_steps()[ph] == 0:
                    continue
                r = resume if ph == phase else None
                if ph == "vae":
                    self._run_phase("vae", VAETrainStep(self.gen.vae), self._vae_step, r)
                    if self.cfg.backbone == "tiny":
                        self._set_scaling_factor()
                        self._save(("pretrain", 0), {})
                    continue
                if not hasattr(self, "les_z"):
                    self._cache_latents()
                fn = self._pretrain_step if ph == "pretrain" else self._finetune_step
                self._run_phase(ph, self.gen.unet, fn, r)
        except _Stopped:
            if self.live is not None:
                self.live.end()
            return TrainResult(None, {"stopped_after_steps": self.steps_run}, self.captions)
        self.gen.vae = self.acc.unwrap_model(self.gen.vae).eval()
        self.gen.unet = self.acc.unwrap_model(self.gen.unet).eval()
        metrics = self._metrics(time.perf_counter() - t0, resumed_from)
        if self.live is not None:
            self.live.summary.update({k: v for k, v in metrics.items() if isinstance(v, (int, float))})
            self.live.end()
        return TrainResult(self.gen, metrics, self.captions)

    @torch.no_grad()
    def _set_scaling_factor(self) -> None:
        """scaling_factor = 1/std of the unscaled latents, so the diffusion sees unit variance."""
        self.gen.vae.register_to_config(scaling_factor=1.0)
        z = self._encode_all(self.data.frames[:256])
        self.gen.vae.register_to_config(scaling_factor=float(1.0 / z.std().clamp_min(1e-6)))

    def _metrics(self, seconds: float, resumed_from: int) -> dict[str, Any]:
        steps = self._phase_steps()

        def last(name: str) -> float | None:
            vals = self.history.get(name)
            return float(np.mean(vals[-3:])) if vals else None

        return {
            "vae_psnr": self.eval_psnr(),
            "vae_scaling_factor": float(self.gen.vae.config.scaling_factor),
            "vae_final_loss": last("vae/loss"),
            "pretrain_final_loss": last("pretrain/loss"),
            "finetune_final_loss": last("finetune/loss"),
            "finetune_final_masked_noise": last("finetune/masked_noise"),
            "finetune_final_preserve": last("finetune/preserve"),
            "vae_steps": steps["vae"],
            "pretrain_steps": steps["pretrain"],
            "finetune_steps": steps["finetune"],
            "steps_run": self.steps_run,
            "resumed_from_step": resumed_from,
            "seconds": round(seconds, 2),
            "n_frames": int(len(self.data.frames)),
            "n_lesions": int(len(self.data.lesion_images)),
        }


def _next_phase(phase: str) -> str:
    i = PHASES.index(phase)
    return PHASES[i + 1] if i + 1 < len(PHASES) else "done"


def _is_number(v: Any) -> bool:
    try:
        return v is not None and not math.isnan(float(v))
    except (TypeError, ValueError):
        return False


def finetune_generator(
    cfg: Any,
    runtime: Runtime,
    data: TrainData,
    ckpt_dir: str | Path,
    live_dir: str | Path | None = None,
    stop_after: int | None = None,
) -> TrainResult:
    """Run (or resume) the three phases; returns the trained Generator and metrics.

    `stop_after` = optimizer steps to run in this call before stopping as if killed (tests);
    the result then has `generator=None`. Checkpoints go to `ckpt_dir`, dvclive curves to
    `live_dir` (kept across resumes).
    """
    trainer = _Trainer(cfg, runtime, data, Path(ckpt_dir), stop_after)
    return trainer.run(Path(live_dir) if live_dir is not None else None)
