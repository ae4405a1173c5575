"""Training losses of the generator: eq. 7 for the inpainting UNet, L1 + KL (+ patch GAN) for the
tiny VAE, and the random masks of self-supervised inpainting pretraining.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


def inpainting_loss(
    noise_pred: torch.Tensor,
    noise: torch.Tensor,
    z_t: torch.Tensor,
    z_n: torch.Tensor,
    mask_lat: torch.Tensor,
    alphas_cumprod_t: torch.Tensor,
    lambda_preserve: float,
    snr_gamma: float,
    prediction_type: str = "epsilon",
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Eq. 7 with a preservation term that has a gradient.

    Shapes: noise_pred, noise, z_t, z_n (B, C, h, w); mask_lat (B, 1, h, w) in {0, 1};
    alphas_cumprod_t (B,) = ᾱ_t.

    L = mean_{inside M} (ε − ε̂)²                                            (masked noise term)
      + λ_preserve · mean_{outside M} min(SNR_t, γ) · (ẑ_0 − z_n)²           (preservation term)
    with the implied clean latent ẑ_0 = (z_t − √(1−ᾱ_t) ε̂) / √ᾱ_t (eq. 3 solved for z_0) and
    SNR_t = ᾱ_t / (1−ᾱ_t). The printed term ‖(1−M)⊙(z_t − √ᾱ_t z_n)‖² has no θ in it; ours asks
    the model's own estimate of the clean image to keep the normal tissue outside the mask. z_n is
    the latent of the unmasked training frame: outside the mask it *is* the normal tissue (the
    lesion lies inside M). The min-SNR-γ weight (Hang et al. 2023) keeps ẑ_0's 1/√ᾱ_t blow-up at
    large t from dominating: since ẑ_0 − z_0 = (ε − ε̂)/√SNR_t, the term equals
    min(1, γ/SNR_t)·(ε − ε̂)² outside the mask. Means are over the region's elements, so small
    lesions weigh as much as large ones.

    `prediction_type="v_prediction"`: the network predicts v = √ᾱ_t ε − √(1−ᾱ_t) z_0 (Salimans &
    Ho 2022) instead of ε; then `noise_pred` is v̂, `noise` is the v target, the first term is the
    masked v error (a per-timestep reweighting of the ε error) and ẑ_0 = √ᾱ_t z_t − √(1−ᾱ_t) v̂.
    """
    m = mask_lat.to(noise.dtype).expand_as(noise)
    inside = (m * (noise - noise_pred) ** 2).sum() / m.sum().clamp_min(1.0)
    a = alphas_cumprod_t.to(noise.dtype).view(-1, 1, 1, 1)
    if prediction_type == "v_prediction":
        z0_hat = a.sqrt() * z_t - (1 - a).sqrt() * noise_pred
    else:
        z0_hat = (z_t - (1 - a).sqrt() * noise_pred) / a.sqrt()
    weight = (a / (1 - a)).clamp(max=snr_gamma)
    out = 1 - m
    preserve = (out * weight * (z0_hat - z_n) ** 2).sum() / out.sum().clamp_min(1.0)
    loss = inside + lambda_preserve * preserve
    return loss, {"masked_noise": inside.detach(), "preserve": preserve.detach()}


def random_masks(n: int, size: int, generator: torch.Generator, min_r: float = 0.08, max_r: float = 0.3) -> torch.Tensor:
    """(n, 1, size, size) {0,1} random rotated ellipses (lesion-like blobs) for phase (b).

    Radii are fractions of the image side in [min_r, max_r]; centres keep the blob mostly inside.
    """
    u = torch.rand(n, 5, generator=generator)
    ry = (min_r + (max_r - min_r) * u[:, 0]) * size
    rx = (min_r + (max_r - min_r) * u[:, 1]) * size
    cy = (0.2 + 0.6 * u[:, 2]) * size
    cx = (0.2 + 0.6 * u[:, 3]) * size
    theta = u[:, 4] * torch.pi
    yy, xx = torch.meshgrid(torch.arange(size) + 0.5, torch.arange(size) + 0.5, indexing="ij")
    dy = yy[None] - cy[:, None, None]
    dx = xx[None] - cx[:, None, None]
    c, s = theta.cos()[:, None, None], theta.sin()[:, None, None]
    e = ((dy * c + dx * s) / ry[:, None, None]) ** 2 + ((dx * c - dy * s) / rx[:, None, None]) ** 2
    return (e <= 1).float()[:, None]


@dataclass(frozen=True)
class PatchDiscriminatorConfig:
    channels: int = 32
    layers: int = 2


class PatchDiscriminator(nn.Module):
    """Small PatchGAN (pix2pix / taming style) trained from scratch to sharpen the tiny VAE without
    pretrained perceptual weights. (B, 3, H, W) -> (B, 1, H/2**layers, W/2**layers) logits."""

    def __init__(self, cfg: PatchDiscriminatorConfig = PatchDiscriminatorConfig()) -> None:
        super().__init__()
        mods: list[nn.Module] = []
        ch_in, ch = 3, cfg.channels
        for i in range(cfg.layers):
            mods += [nn.Conv2d(ch_in, ch, 4, stride=2, padding=1)]
            if i > 0:
                mods += [nn.GroupNorm(8, ch)]
            mods += [nn.LeakyReLU(0.2)]
            ch_in, ch = ch, ch * 2
        mods += [nn.Conv2d(ch_in, 1, 3, padding=1)]
        self.net = nn.Sequential(*mods)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def hinge_d_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    return 0.5 * (F.relu(1 - real_logits).mean() + F.relu(1 + fake_logits).mean())


def vae_loss(
    x: torch.Tensor,
    rec: torch.Tensor,
    kl: torch.Tensor,
    kl_weight: float,
    l2_weight: float,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """L1 (+ l2_weight·MSE) per pixel + kl_weight · KL per pixel (SD's VAE objective with sums
    replaced by per-pixel means; `kl` is the posterior's per-sample KL summed over latent dims)."""
    l1 = (x - rec).abs().mean()
    l2 = ((x - rec) ** 2).mean()
    pixels = x[0].numel()
    kl_term = kl.mean() / pixels
    loss = l1 + l2_weight * l2 + kl_weight * kl_term
    return loss, {"l1": l1.detach(), "kl": kl.mean().detach()}


def psnr(x: torch.Tensor, y: torch.Tensor) -> float:
    """PSNR in dB of images in [-1, 1] (peak-to-peak 2)."""
    mse = ((x.clamp(-1, 1) - y.clamp(-1, 1)) ** 2).mean().item()
    return float("inf") if mse == 0 else 10.0 * torch.log10(torch.tensor(4.0 / mse)).item()
