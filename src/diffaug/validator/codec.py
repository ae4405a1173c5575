"""Mask latents: how a segmentation mask becomes the latent z_0 of eq. 10 and how an estimated
latent is decoded back to a mask (the D of eq. 12 and eq. 14).

Two codecs, chosen by `train_validator.mask_codec`:

- `LearnedMaskCodec` (default): a light conv autoencoder over one-hot masks, fitted on the
  training masks before the validator. Masks are piecewise-constant label maps, not tissue
  photographs; a small codec reconstructs them almost exactly, is cheap to backpropagate through
  for the Dice term, and handles any number of classes natively (one-hot in, softmax out).
- `VaeMaskCodec`: SDSeg's choice, the generator's frozen VAE on the mask replicated to three
  channels in [-1, 1]. It needs no extra training, but the VAE was trained on tissue images and
  reconstructs masks less faithfully (train_validator measures both and writes the reconstruction
  Dice of each to its metrics). Two-class masks are packed into RGB as (region, cup, region),
  region = any foreground class.

Both decode to per-class probabilities (N, C+1, H, W), class 0 = background.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from diffaug.latents import decode_latents, encode_latents


def one_hot(masks: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(N, H, W) class indices -> (N, C+1, H, W) float one-hot, C = foreground classes."""
    return F.one_hot(masks.long(), num_classes + 1).permute(0, 3, 1, 2).float()


class LearnedMaskCodec(nn.Module):
    """Conv encoder (one-hot mask -> latent at the VAE's latent resolution) and decoder (latent ->
    class logits at mask resolution). `scale` normalises latents to unit std, like the VAE's
    scaling_factor, so the diffusion noise levels of eq. 10 mean the same for masks and images."""

    def __init__(self, num_classes: int, latent_channels: int, channels: list[int], downsample: int,
                 norm_groups: int, scale: float = 1.0) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.latent_channels = latent_channels
        self.scale = scale
        n_down = max(0, int(round(torch.log2(torch.tensor(float(downsample))).item())))
        if 2**n_down != downsample:
            raise ValueError(f"mask codec: VAE downsampling factor {downsample} is not a power of 2")
        widths = [channels[min(i, len(channels) - 1)] for i in range(n_down + 1)]

        def block(cin: int, cout: int) -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.GroupNorm(math.gcd(norm_groups, cout), cout), nn.SiLU())

        enc: list[nn.Module] = [block(num_classes + 1, widths[0])]
        for i in range(n_down):  # each level halves H, W
            enc += [nn.Conv2d(widths[i], widths[i + 1], 3, stride=2, padding=1), block(widths[i + 1], widths[i + 1])]
        enc.append(nn.Conv2d(widths[-1], latent_channels, 1))
        self.encoder = nn.Sequential(*enc)

        dec: list[nn.Module] = [block(latent_channels, widths[-1])]
        for i in reversed(range(n_down)):
            dec += [nn.Upsample(scale_factor=2, mode="nearest"), block(widths[i + 1], widths[i])]
        dec.append(nn.Conv2d(widths[0], num_classes + 1, 3, padding=1))
        self.decoder = nn.Sequential(*dec)

    def encode(self, masks: torch.Tensor) -> torch.Tensor:
        """(N, H, W) class indices -> (N, c, H/f, W/f) scaled latents."""
        return self.encode_raw(masks) * self.scale

    def encode_raw(self, masks: torch.Tensor) -> torch.Tensor:
        # tanh bounds the latent so that its scale (hence the noise levels of eq. 10) is set once
        return torch.tanh(self.encoder(one_hot(masks, self.num_classes)))

    def decode_logits(self, latents: torch.Tensor) -> torch.Tensor:
        return self.decoder(latents / self.scale)

    def decode_probs(self, latents: torch.Tensor) -> torch.Tensor:
        """(N, c, h, w) latents -> (N, C+1, H, W) class probabilities."""
        return self.decode_logits(latents).softmax(dim=1)


class VaeMaskCodec:
    """SDSeg-style: the frozen generator VAE on the mask replicated to RGB (not an nn.Module of
    the validator: the VAE belongs to the generator and is not saved with the validator)."""

    def __init__(self, vae: nn.Module, num_classes: int) -> None:
        if num_classes > 2:
            raise ValueError("VAE mask codec packs at most 2 foreground classes into RGB")
        self.vae = vae
        self.num_classes = num_classes
        self.latent_channels = int(vae.config.latent_channels)

    def _to_rgb(self, masks: torch.Tensor) -> torch.Tensor:
        region = (masks >= 1).float()
        second = (masks == 2).float() if self.num_classes == 2 else region
        return torch.stack([region, second, region], dim=1) * 2 - 1  # [-1, 1] like images

    def encode(self, masks: torch.Tensor) -> torch.Tensor:
        """(N, H, W) class indices -> float32 (N, c, H/f, W/f) scaled latents, E(rgb) · s."""
        return encode_latents(self.vae, self._to_rgb(masks).to(self.vae.dtype), torch.float32)

    def decode_probs(self, latents: torch.Tensor) -> torch.Tensor:
        """(N, c, h, w) scaled latents -> (N, C+1, H, W) class probabilities read off D(z / s)."""
        rgb = decode_latents(self.vae, latents, self.vae.dtype).float()
        p = ((rgb + 1) / 2).clamp(0, 1)  # (N, 3, H, W)
        region = (p[:, 0] + p[:, 2]) / 2
        if self.num_classes == 1:
            fg = (region + p[:, 1]) / 2
            return torch.stack([1 - fg, fg], dim=1)
        cup = torch.minimum(p[:, 1], region)
        return torch.stack([1 - region, region - cup, cup], dim=1)


def probs_to_masks(probs: torch.Tensor) -> torch.Tensor:
    """(N, C+1, H, W) probabilities -> (N, H, W) uint8 class indices (argmax; ties go to the lower
    class, as with `argmax`). One comparison per class instead of `argmax(dim=1)`, whose reduction
    over the strided class axis is slow on a CPU (docs/validator.md, "Speed measurement")."""
    best = probs[:, 0]
    idx = torch.zeros(best.shape, dtype=torch.uint8, device=probs.device)
    for c in range(1, probs.shape[1]):
        better = probs[:, c] > best
        idx = torch.where(better, torch.full_like(idx, c), idx)
        best = torch.maximum(best, probs[:, c])
    return idx
