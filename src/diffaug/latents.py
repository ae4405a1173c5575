"""The VAE's latent space (eq. 1): z = E(x) · s and x̂ = D(z / s), s = `vae.config.scaling_factor`.

s brings the latents to unit variance, so the diffusion noise levels (eq. 2-3, eq. 10) mean the
same for every VAE; it is read from the VAE's config (SD: 0.18215; the tiny profile estimates it
after training the VAE). E(x) is the posterior's mean, which is also its mode (a diagonal
Gaussian), so encoding is deterministic. Every stage goes through these two functions: the
generator's training and sampling, the validator's image and mask latents, the latent segmenter.
"""

from __future__ import annotations

from typing import Any

import torch


def encode_latents(vae: Any, x: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
    """x (N, 3, H, W) in [-1, 1], on the VAE's device and in its dtype -> z = E(x) · s, (N, c, H/f, W/f).

    `dtype`: cast E(x) before the scaling (float32 latents out of a half-precision VAE, with the
    product taken in float32); None keeps the VAE's dtype."""
    z = vae.encode(x).latent_dist.mode()
    return (z if dtype is None else z.to(dtype)) * vae.config.scaling_factor


def decode_latents(vae: Any, z: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
    """z (N, c, h, w) -> x̂ = D(z / s), (N, 3, H, W), about [-1, 1], in the VAE's dtype.

    `dtype`: cast z / s to it (the VAE's dtype) after the division, so float32 latents are
    unscaled in float32; None feeds z / s as it is."""
    z = z / vae.config.scaling_factor
    return vae.decode(z if dtype is None else z.to(dtype)).sample
