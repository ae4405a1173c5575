"""Building blocks of the generator's training tasks (train.py): the VAE step that DDP can wrap
and random flips."""

from __future__ import annotations

from typing import Any

import torch


class VAETrainStep(torch.nn.Module):
    """encode -> sample -> decode in one forward, so DDP (several GPUs) wraps one call and syncs
    the VAE's gradients. Returns the reconstruction (B, 3, H, W) and the per-sample KL (B,)."""

    def __init__(self, vae: Any) -> None:
        super().__init__()
        self.vae = vae

    def forward(self, x: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        post = self.vae.encode(x).latent_dist
        rec = self.vae.decode(post.sample(generator=generator)).sample
        return rec, post.kl()


def flip_random(x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Per-sample random horizontal/vertical flips (u: (B, 2) uniform draws)."""
    h = (u[:, 0] < 0.5).to(x.device).view(-1, 1, 1, 1)
    v = (u[:, 1] < 0.5).to(x.device).view(-1, 1, 1, 1)
    x = torch.where(h, x.flip(-1), x)
    return torch.where(v, x.flip(-2), x)


def flip_fixed(x: torch.Tensor, h: bool, v: bool) -> torch.Tensor:
    if h:
        x = x.flip(-1)
    if v:
        x = x.flip(-2)
    return x
