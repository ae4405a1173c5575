"""Batched text-guided latent inpainting: our own denoising loop over a diffusers scheduler.

For a batch of B (background, mask, prompt, seed) rows:
1. masked-image latents z_n = E(I ⊙ (1 − M)) · scaling_factor for the whole batch in ONE VAE call
   (posterior mode: deterministic, no generator consumed), mask M↓ at latent size with the same
   max-pool rule training used (`models.latent_mask`). Shapes: (B, 4, h, w), (B, 1, h, w).
2. z_T ~ N(0, I) from a per-sample CPU generator seeded with that sample's seed, so a sample does
   not depend on which batch or process it was drawn in. (B, 4, h, w)
3. T steps of the scheduler (DDIM or DPM-Solver++); UNet input = [z_t | M↓ | z_n] (9 channels,
   eq. 5-6). Classifier-free guidance (eq. 8): ε̂ = ε̂(neg) + s·(ε̂(prompt) − ε̂(neg)), the negative
   prompt ("healthy mucosa") being the unconditional branch; both branches in one UNet call of
   2B. The constant part of the input ([M↓ | z_n], doubled for CFG) and the text context are built
   once per batch, not per step; prompt embeddings come from the text encoder's cache.
4. x̂ = D(z_0 / scaling_factor) in [0, 1], (B, H, W, 3); compositing is the caller's job.

With `strength` < 1 and an init image (SDEdit, Meng et al., ICLR 2022; diffusers' `strength`),
step 2 starts from the init's latents noised to the timestep at that share of the schedule,
z_t = add_noise(E(init) · s, z_T, t_start), and step 3 runs the last ⌊steps · strength⌋ steps:
the painted region keeps the init's structure at low strength and is repainted from scratch at 1.

`stock_pipeline` builds diffusers' `StableDiffusionInpaintPipeline` from the same components for
the side-by-side timing (and the equivalence test) of metrics/generate.json.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from diffaug.generator.fastpath import fast_unet
from diffaug.generator.models import Generator, latent_mask, masked_image
from diffaug.imaging import to_model_space
from diffaug.latents import decode_latents, encode_latents

SCHEDULERS = ("ddim", "dpmsolver++")


def build_scheduler(base: Any, name: str) -> Any:
    """A sampling scheduler from the generator's (training) scheduler config: same β schedule,
    ε-prediction; 'ddim' (η = 0) or 'dpmsolver++' (2nd-order multistep)."""
    from diffusers import DDIMScheduler, DPMSolverMultistepScheduler

    config = dict(base.config)
    if name == "ddim":
        return DDIMScheduler.from_config(config, clip_sample=False, set_alpha_to_one=False)
    if name == "dpmsolver++":
        return DPMSolverMultistepScheduler.from_config(config, algorithm_type="dpmsolver++", solver_order=2)
    raise ValueError(f"scheduler must be one of {SCHEDULERS}, got {name!r}")


def seed_noise(seeds: Sequence[int], shape: tuple[int, ...]) -> torch.Tensor:
    """(B, *shape) standard normal noise, row i from a CPU generator seeded with seeds[i]
    (CPU so that the same seed gives the same noise on every device)."""
    return torch.stack([torch.randn(shape, generator=torch.Generator("cpu").manual_seed(int(s))) for s in seeds])


class InpaintSampler:
    """Our batched sampler; `__call__(images, masks, prompts, seeds[, init]) -> (B, H, W, 3) float [0, 1]`.

    guidance_scale ≤ 1 or use_cfg=False runs the conditional branch alone (the "no text
    guidance" ablation passes empty prompts with use_cfg=False).
    """

    def __init__(
        self,
        gen: Generator,
        scheduler: str,
        steps: int,
        guidance_scale: float,
        negative_prompt: str,
        use_cfg: bool = True,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
        fast: bool = True,
        trace: bool = False,
        strength: float = 1.0,
    ) -> None:
        self.gen = gen
        self.scheduler_name = scheduler
        self.steps = steps
        self.guidance_scale = guidance_scale
        self.negative_prompt = negative_prompt
        self.do_cfg = use_cfg and guidance_scale > 1.0
        self.device = torch.device(device)
        self.dtype = dtype
        self.factor = gen.vae_scale_factor
        self.fast = fast  # exact CFG-prefix sharing + cached cross-attention K/V (fastpath.py)
        self.trace = trace  # TorchScript trace + freeze of the UNet per batch shape (unet_fn)
        self._traced: dict[tuple, Any] = {}
        self._template = build_scheduler(gen.scheduler, scheduler)
        if not 0.0 < strength <= 1.0:
            raise ValueError(f"strength must be in (0, 1], got {strength}")
        self.strength = strength  # share of the schedule run from an init image (1 = from pure noise)

    def new_scheduler(self) -> Any:
        """A fresh scheduler per batch: multistep solvers keep state between steps."""
        sched = type(self._template).from_config(self._template.config)
        sched.set_timesteps(self.steps, device=self.device)
        return sched

    @torch.inference_mode()
    def encode_condition(self, images: np.ndarray, masks: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, H, W, 3) uint8, (B, H, W) bool -> mask latents (B, 1, h, w), masked-image latents (B, C, h, w)."""
        x = to_model_space(images, self.device, self.dtype)
        m = torch.as_tensor(np.ascontiguousarray(masks), device=self.device)[:, None].to(self.dtype)
        z_masked = encode_latents(self.gen.vae, masked_image(x, m))
        return latent_mask(m, self.factor).to(self.dtype), z_masked

    def context(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Text context (B or 2B, L, D): [negative; prompts] under CFG; cached per prompt."""
        cond = self.gen.text.encode(prompts).to(self.device, self.dtype)
        if not self.do_cfg:
            return cond, None
        neg = self.gen.text.encode([self.negative_prompt]).to(self.device, self.dtype).expand_as(cond)
        return torch.cat([neg, cond]), neg

    def added_cond(self, prompts: list[str], height: int, width: int) -> dict[str, Any] | None:
        """SDXL micro-conditioning for both CFG branches (None for SD 1.5/2 and tiny)."""
        kw = self.gen.added_cond_kwargs(prompts, height, width)
        if kw is None or not self.do_cfg:
            return kw
        neg = self.gen.added_cond_kwargs([self.negative_prompt] * len(prompts), height, width)
        return {k: torch.cat([neg[k], kw[k]]).to(self.device, self.dtype) for k in kw}

    def unet_fn(self, z_in: torch.Tensor, static: torch.Tensor, ctx: torch.Tensor, added: dict | None) -> Any:
        """The ε-network as f(x, t, ctx, added): eager, or TorchScript-traced and frozen for this
        batch shape (`trace=True`; same ops, bitwise-equal output on CPU, no Python overhead per
        layer). Tracing is skipped for SDXL's dict conditioning and falls back to eager on error."""
        unet = self.gen.unet

        def eager(x: torch.Tensor, t: torch.Tensor, c: torch.Tensor, a: dict | None) -> torch.Tensor:
            return unet(x, t, encoder_hidden_states=c, added_cond_kwargs=a, return_dict=False)[0]

        if not self.trace or added is not None:
            return eager
        x = torch.cat([z_in, static], dim=1)
        key = (tuple(x.shape), tuple(ctx.shape), str(x.device), x.dtype)
        if key not in self._traced:
            self._traced[key] = _trace(unet, x, ctx)
        traced = self._traced[key]
        if traced is None:
            return eager
        return lambda x, t, c, a: traced(x, t, c)

    @torch.inference_mode()
    def denoise(self, mask_lat: torch.Tensor, z_masked: torch.Tensor, prompts: list[str], seeds: Sequence[int],
                height: int, width: int, noise: torch.Tensor | None = None,
                z_init: torch.Tensor | None = None) -> torch.Tensor:
        """The denoising loop; returns z_0 (B, C, h, w). `z_init` (B, C, h, w): latents of the
        init images, used when strength < 1."""
        B, C, h, w = z_masked.shape
        sched = self.new_scheduler()
        if noise is None:
            noise = seed_noise(seeds, (C, h, w))
        noise = noise.to(self.device, self.dtype)
        timesteps = sched.timesteps
        if z_init is not None and self.strength < 1.0:
            # the last ⌊steps · strength⌋ steps (at least one), from the init noised to the first of them
            run = max(1, int(self.steps * self.strength))
            timesteps = timesteps[(self.steps - run) * sched.order:]
            latents = sched.add_noise(z_init.to(self.dtype), noise, timesteps[:1].repeat(B))
        else:
            latents = noise * sched.init_noise_sigma
        ctx, _ = self.context(prompts)
        added = self.added_cond(prompts, height, width)
        static = torch.cat([mask_lat, z_masked], dim=1)  # [M↓ | z_n], constant over the steps
        if self.do_cfg:
            static = torch.cat([static, static])
        with fast_unet(self.gen.unet, self.do_cfg) if self.fast else contextlib.nullcontext():
            unet = self.unet_fn(torch.cat([latents] * (2 if self.do_cfg else 1)), static, ctx, added)
            for t in timesteps:
                z_in = torch.cat([latents, latents]) if self.do_cfg else latents
                z_in = sched.scale_model_input(z_in, t)
                eps = unet(torch.cat([z_in, static], dim=1), t.reshape(()), ctx, added)
                if self.do_cfg:
                    eps_neg, eps_txt = eps.chunk(2)
                    eps = eps_neg + self.guidance_scale * (eps_txt - eps_neg)  # eq. 8
                latents = sched.step(eps, t, latents, return_dict=False)[0]
        return latents

    @torch.inference_mode()
    def __call__(self, images: np.ndarray, masks: np.ndarray, prompts: list[str], seeds: Sequence[int],
                 init: np.ndarray | None = None) -> np.ndarray:
        """`init` (B, H, W, 3) uint8: what the masked region starts from when strength < 1
        (outside the mask it should equal `images`)."""
        H, W = images.shape[1:3]
        mask_lat, z_masked = self.encode_condition(images, masks)
        z_init = None
        if init is not None and self.strength < 1.0:
            z_init = encode_latents(self.gen.vae, to_model_space(init, self.device, self.dtype))
        z0 = self.denoise(mask_lat, z_masked, prompts, seeds, H, W, z_init=z_init)
        x = decode_latents(self.gen.vae, z0)
        return ((x.float().clamp(-1, 1) + 1) / 2).permute(0, 2, 3, 1).cpu().numpy()


class _UNetCall(torch.nn.Module):
    """Positional-argument view of the UNet for tracing."""

    def __init__(self, unet: torch.nn.Module) -> None:
        super().__init__()
        self.unet = unet

    def forward(self, x: torch.Tensor, t: torch.Tensor, ctx: torch.Tensor) -> torch.Tensor:
        return self.unet(x, t, encoder_hidden_states=ctx, return_dict=False)[0]


def _trace(unet: torch.nn.Module, x: torch.Tensor, ctx: torch.Tensor) -> Any:
    """Trace + freeze the UNet for one input shape; None (use eager) if TorchScript refuses it."""
    import warnings

    t = torch.tensor(500, device=x.device)
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            traced = torch.jit.trace(_UNetCall(unet).eval(), (x.clone(), t, ctx.clone()), check_trace=False)
            return torch.jit.freeze(traced)
    except Exception as exc:  # noqa: BLE001 - any tracing failure only costs speed
        warnings.warn(f"UNet tracing failed ({type(exc).__name__}); sampling in eager mode", stacklevel=2)
        return None


# ---- diffusers' stock pipeline, for the side-by-side comparison --------------------------------

def stock_pipeline(gen: Generator, sampler: InpaintSampler) -> Any:
    """`StableDiffusionInpaintPipeline` (SDXL: `StableDiffusionXLInpaintPipeline`) on the same
    VAE, UNet and sampling scheduler; no safety checker; prompts are given as embeddings."""
    from diffusers import StableDiffusionInpaintPipeline, StableDiffusionXLInpaintPipeline

    sched = type(sampler._template).from_config(sampler._template.config)
    if getattr(gen.unet.config, "addition_embed_type", None) == "text_time":
        pipe = StableDiffusionXLInpaintPipeline(
            vae=gen.vae, text_encoder=None, text_encoder_2=None, tokenizer=None, tokenizer_2=None,
            unet=gen.unet, scheduler=sched, requires_aesthetics_score=False, force_zeros_for_empty_prompt=False,
        )
    else:
        pipe = StableDiffusionInpaintPipeline(
            vae=gen.vae, text_encoder=None, tokenizer=None, unet=gen.unet, scheduler=sched,
            safety_checker=None, feature_extractor=None, requires_safety_checker=False,
        )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def block_mask(masks: np.ndarray, factor: int) -> torch.Tensor:
    """(B, H, W) bool -> (B, 1, H, W) float whose every f×f cell is its max-pooled value, so the
    stock pipeline's nearest-neighbour downsampling gives exactly our latent mask."""
    m = torch.as_tensor(np.ascontiguousarray(masks))[:, None].float()
    lat = latent_mask(m, factor)
    return torch.nn.functional.interpolate(lat, scale_factor=factor, mode="nearest")


def stock_inpaint(pipe: Any, sampler: InpaintSampler, images: np.ndarray, masks: np.ndarray, prompts: list[str],
                  seeds: Sequence[int], **overrides: Any) -> np.ndarray:
    """One call of the stock pipeline on the same inputs as `sampler(...)`: image + mask (it
    encodes the masked images itself), the same prompt embeddings, steps, guidance and batch, a
    per-sample generator list. Returns (B, H, W, 3) float [0, 1]."""
    H, W = images.shape[1:3]
    image = torch.as_tensor(images).permute(0, 3, 1, 2).float() / 255.0
    ctx, neg = sampler.context(prompts)
    cond = ctx[len(prompts):] if sampler.do_cfg else ctx
    kw: dict[str, Any] = dict(
        image=image, mask_image=block_mask(masks, sampler.factor), height=H, width=W,
        prompt_embeds=cond, negative_prompt_embeds=neg,
        num_inference_steps=sampler.steps, guidance_scale=sampler.guidance_scale if sampler.do_cfg else 1.0,
        generator=[torch.Generator("cpu").manual_seed(int(s)) for s in seeds], output_type="np",
    )
    added = sampler.gen.added_cond_kwargs(prompts, H, W)
    if added is not None:
        kw["pooled_prompt_embeds"] = added["text_embeds"]
        if sampler.do_cfg:
            kw["negative_pooled_prompt_embeds"] = sampler.gen.added_cond_kwargs([sampler.negative_prompt] * len(prompts), H, W)["text_embeds"]
    kw.update(overrides)
    with torch.inference_mode():
        return np.asarray(pipe(**kw).images, dtype=np.float32)
