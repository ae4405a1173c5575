"""Validator inference: image -> mask, single-step (eq. 11, the default) or iterative DDIM.

Single-step: z_T ~ N(0, I) (seeded), one call eps_hat = eps_theta([z_T ; f_fused], t_s) at the
single-step timestep t_s (the last training timestep: there z_t carries almost no information
about the unknown mask latent, so pure noise is what training saw), then eq. 11
z0_hat = (z_T - sqrt(1 - abar) eps_hat) / sqrt(abar), decoded to a mask.
Iterative ("without latent estimation", table 6): T DDIM steps from z_T with trailing spacing
(so the first step is also t_s); f_fused is computed once per image in both modes.
"""

from __future__ import annotations

import numpy as np
import torch

from diffaug.imaging import to_model_space
from diffaug.latents import encode_latents
from diffaug.validator.codec import VaeMaskCodec, probs_to_masks
from diffaug.validator.model import ValidatorNet, make_scheduler


@torch.no_grad()
def encode_images(vae, images: np.ndarray | torch.Tensor, batch_size: int = 32, device="cpu", dtype=torch.float32) -> torch.Tensor:
    """z_a = E(I) · scaling_factor (eq. 1, `diffaug.latents`: the posterior mean, deterministic) in
    batches, (N, c, H/f, W/f) float32 on CPU. `images`: uint8 (N, H, W, 3) or float (N, 3, H, W)
    already in [-1, 1]; mapped to [-1, 1] in float32 on the CPU, then cast to `dtype` per batch."""
    x = to_model_space(images) if isinstance(images, np.ndarray) else images
    out = [encode_latents(vae, x[i:i + batch_size].to(device, dtype), torch.float32).cpu()
           for i in range(0, len(x), batch_size)]
    return torch.cat(out) if out else torch.zeros(0)


def single_step_estimate(z_t: torch.Tensor, eps_hat: torch.Tensor, alpha_bar: torch.Tensor) -> torch.Tensor:
    """eq. 11: z0_hat = (z_t - sqrt(1 - abar_t) eps_hat) / sqrt(abar_t); alpha_bar (N,) or scalar."""
    a = alpha_bar.reshape(-1, *([1] * (z_t.dim() - 1))) if alpha_bar.dim() else alpha_bar
    return (z_t - (1 - a).sqrt() * eps_hat) / a.sqrt()


def single_step_latents(net: ValidatorNet, f_fused: torch.Tensor, z_T: torch.Tensor,
                        alpha_bar: torch.Tensor) -> torch.Tensor:
    """One denoiser call at the single-step timestep t_s and eq. 11: z0_hat (N, m, h, w) float32.
    `alpha_bar` is abar at t_s in float32: eq. 11 divides by sqrt(abar) ~ 0.07, so it is evaluated
    in float32 whatever the network's dtype."""
    t = torch.full((len(z_T),), net.config.single_step_timestep, dtype=torch.long, device=z_T.device)
    eps = net.denoise(f_fused, z_T, t)
    return single_step_estimate(z_T.float(), eps.float(), alpha_bar.float())


class Validator:
    """A trained validator with its VAE: `predict(images) -> masks`, `predict_proba`."""

    def __init__(self, net: ValidatorNet, vae, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32) -> None:
        self.device = torch.device(device)
        self.dtype = dtype
        # the whole validator runs in `dtype` (the gate's base.dtype); eq. 11 itself is evaluated in
        # float32 below, since it divides by sqrt(abar_ts) ~ 0.07 and would amplify half-precision error
        self.net = net.to(self.device).eval()
        if self.net.dtype != dtype:  # only then: diffusers' ModelMixin.to logs a warning on every dtype cast
            self.net = self.net.to(dtype=dtype)
        self.vae = vae.to(self.device).eval()
        if self.vae.dtype != dtype:
            self.vae = self.vae.to(dtype=dtype)
        self.config = net.config
        self.num_classes = net.config.num_classes
        self.codec = net.codec if net.codec is not None else VaeMaskCodec(self.vae, self.num_classes)
        self.ddpm = make_scheduler(net.config, "ddpm")
        self.ddim = make_scheduler(net.config, "ddim")
        self.t_single = net.config.single_step_timestep

    def _noise(self, n: int, h: int, w: int, seed: int, seeds=None) -> torch.Tensor:
        # all samples' noise drawn up front (results do not depend on the batch size); with
        # per-sample `seeds` each sample's own, so they do not depend on how a set is chunked either
        shape = (self.config.mask_latent_channels, h, w)
        if seeds is not None:
            return torch.stack([torch.randn(shape, generator=torch.Generator().manual_seed(int(s))) for s in seeds]) \
                if len(seeds) else torch.zeros(0, *shape)
        g = torch.Generator().manual_seed(seed)
        return torch.randn(n, *shape, generator=g)

    @torch.no_grad()
    def latents_single_step(self, f_fused: torch.Tensor, z_T: torch.Tensor) -> torch.Tensor:
        return single_step_latents(self.net, f_fused, z_T, self.ddpm.alphas_cumprod[self.t_single].to(self.device))

    @torch.no_grad()
    def latents_iterative(self, f_fused: torch.Tensor, z_T: torch.Tensor, steps: int) -> torch.Tensor:
        self.ddim.set_timesteps(steps, device=self.device)
        z = z0 = z_T.float()
        for t in self.ddim.timesteps:
            eps = self.net.denoise(f_fused, z.to(self.dtype), t.expand(len(z)))
            out = self.ddim.step(eps.float(), t, z)  # the sampler's state stays float32
            z, z0 = out.prev_sample, out.pred_original_sample
        return z0  # the last step's clean-latent estimate

    @torch.no_grad()
    def predict_latents(self, z_a: torch.Tensor, mode: str = "single_step", steps: int = 20, seed: int = 0,
                        batch_size: int = 32, seeds=None) -> torch.Tensor:
        """z_a (N, c, h, w) -> z0_hat (N, m, h, w); `seeds` (N,) per-sample noise seeds instead of `seed`."""
        n, _, h, w = z_a.shape
        noise = self._noise(n, h, w, seed, seeds)
        out = []
        for i in range(0, n, batch_size):
            # z_a (float32 from encode_images) and the float32 noise in the network's dtype (half on GPU)
            za = z_a[i:i + batch_size].to(self.device, self.dtype)
            f = self.net.condition(za)
            zT = noise[i:i + batch_size].to(self.device, self.dtype)
            z0 = self.latents_single_step(f, zT) if mode == "single_step" else self.latents_iterative(f, zT, steps)
            out.append(z0.float().cpu())
        return torch.cat(out) if out else torch.zeros(0, self.config.mask_latent_channels, h, w)

    @torch.no_grad()
    def decode(self, z0: torch.Tensor, batch_size: int = 32, masks: bool = False) -> torch.Tensor:
        """z0_hat (N, m, h, w) -> class probabilities (N, C+1, H, W) float32, or with `masks` the
        class indices (N, H, W) uint8, decided on the device so that only the masks come back to
        the host."""
        out = []
        for i in range(0, len(z0), batch_size):
            probs = self.codec.decode_probs(z0[i:i + batch_size].to(self.device, self.dtype)).float()
            out.append((probs_to_masks(probs) if masks else probs).cpu())
        return torch.cat(out)

    @torch.no_grad()
    def _predict(self, images: np.ndarray, mode: str, steps: int, seed: int, batch_size: int,
                 masks: bool, seeds=None) -> torch.Tensor:
        if len(images) == 0:
            h, w = images.shape[1:3] if images.ndim == 4 else (0, 0)
            return torch.zeros((0, h, w) if masks else (0, self.num_classes + 1, h, w),
                               dtype=torch.uint8 if masks else torch.float32)
        z_a = encode_images(self.vae, images, batch_size, self.device, self.dtype)
        return self.decode(self.predict_latents(z_a, mode, steps, seed, batch_size, seeds), batch_size, masks)

    def predict_proba(self, images: np.ndarray, mode: str = "single_step", steps: int = 20, seed: int = 0,
                      batch_size: int = 32) -> torch.Tensor:
        """uint8 (N, H, W, 3) -> (N, C+1, H, W) class probabilities."""
        return self._predict(images, mode, steps, seed, batch_size, masks=False)

    def predict(self, images: np.ndarray, mode: str = "single_step", steps: int = 20, seed: int = 0,
                batch_size: int = 32, seeds=None) -> np.ndarray:
        """uint8 (N, H, W, 3) -> uint8 (N, H, W) class indices; `seeds` (N,) per-sample noise seeds."""
        return self._predict(images, mode, steps, seed, batch_size, masks=True, seeds=seeds).numpy()
