"""The training objective of the latent-space segmentation network (eq. 10–12), per sample.

Shared by `train_validator` (the gate's validator) and `train_segmenter` with
`architecture: latent` (the same network used as the downstream segmenter):

    z_t    = sqrt(abar_t) z0 + sqrt(1 - abar_t) eps                  eq. 10
    z0_hat = (z_t - sqrt(1 - abar_t) eps_hat) / sqrt(abar_t)          eq. 11
    L      = |eps - eps_hat|_1 + l_latent |z0 - z0_hat|_1 + l_dice Dice(D(z0_hat), M)   eq. 12

Timesteps are drawn uniformly, except that a share `single_step_fraction` of each batch is drawn
at the single-step timestep t_s used at inference, so the one call the gate makes is the one the
network practised most.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


def draw_timesteps(n: int, t_single: int, num_train_timesteps: int, single_step_fraction: float,
                   generator: torch.Generator) -> torch.Tensor:
    """(n,) long timesteps: t_s with probability `single_step_fraction`, else uniform in [0, T)."""
    at_single = torch.rand(n, generator=generator) < single_step_fraction
    uniform = torch.randint(num_train_timesteps, (n,), generator=generator)
    return torch.where(at_single, torch.full((n,), t_single), uniform)


@dataclass
class Eq12Terms:
    """Per-sample terms of eq. 12, each (N,), and the estimate they came from."""

    noise: torch.Tensor  # |eps - eps_hat|_1 (mean over latent elements)
    latent: torch.Tensor  # |z0 - z0_hat|_1
    dice: torch.Tensor  # 1 - Dice(D(z0_hat), M) over foreground classes (zeros when l_dice = 0)
    z0_hat: torch.Tensor  # (N, m, h, w)
    probs: torch.Tensor | None  # (N, C+1, H, W) decoded class probabilities (None when l_dice = 0)

    def total(self, lambda_latent: float, lambda_dice: float) -> torch.Tensor:
        return self.noise + lambda_latent * self.latent + lambda_dice * self.dice


def eq12_terms(net, codec, z_a: torch.Tensor, z0: torch.Tensor, masks: torch.Tensor, t: torch.Tensor,
               eps: torch.Tensor, alphas_cumprod: torch.Tensor, num_classes: int, with_dice: bool = True) -> Eq12Terms:
    """Noise z0 to z_t (eq. 10), predict eps_hat with `net(z_a, z_t, t)`, recover z0_hat (eq. 11) and
    return the eq. 12 terms per sample. z_a (N, c, h, w), z0 and eps (N, m, h, w), masks (N, H, W)."""
    from monai.losses import DiceLoss

    from diffaug.validator.codec import one_hot
    from diffaug.validator.inference import single_step_estimate

    ab = alphas_cumprod[t].view(-1, 1, 1, 1)
    z_t = ab.sqrt() * z0 + (1 - ab).sqrt() * eps  # eq. 10
    eps_hat = net(z_a, z_t, t)
    z0_hat = single_step_estimate(z_t, eps_hat, alphas_cumprod[t])  # eq. 11
    noise = (eps_hat - eps).abs().flatten(1).mean(1)
    latent = (z0_hat - z0).abs().flatten(1).mean(1)
    if not with_dice:
        return Eq12Terms(noise, latent, torch.zeros_like(noise), z0_hat, None)
    probs = codec.decode_probs(z0_hat)
    dice = DiceLoss(include_background=False, softmax=False, reduction="none")(probs, one_hot(masks, num_classes))
    return Eq12Terms(noise, latent, dice.flatten(1).mean(1), z0_hat, probs)


__all__ = ["Eq12Terms", "draw_timesteps", "eq12_terms"]
