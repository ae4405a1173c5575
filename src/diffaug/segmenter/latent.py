"""`architecture: latent`: the validator's latent-space single-step network as the downstream
segmenter (the paper's own segmenter).

    x (N, 3, H, W) in [-1, 1] --frozen VAE encoder--> z_a (N, c, h, w)
        --V_psi, psi (eq. 9, 13)--> f_fused --denoiser at t_s on seeded noise z_T--> eps_hat
        --eq. 11--> z0_hat (N, m, h, w) --mask decoder D--> class logits (N, C+1, H, W)

Training uses the validator's objective (eq. 10–12, `diffaug.validator.objective`) on the
variant's (augmented) batches, each sample weighted like the U-Net's loss. The architecture and
the fitted mask codec come from the trained validator (`data/validator`): the codec stays frozen,
so every variant decodes masks the same way. `init: scratch` starts V_psi, psi and the denoiser
afresh (the denoiser's encoder copied from the generator U-Net where names and shapes match, as
`train_validator` does); `init: validator` starts from the trained validator's weights.

The network is the `body` of a `SegmenterNet` (`architecture: latent`), built from the
`latent` entry of its config (`latent_config`: the VAE's and the validator's configs, the noise
seed), then given the generator's and the validator's weights (`init_latent_network`). A run
folder is self-contained: the frozen VAE encoder's weights are saved with the network and both
configs travel in its `config.json`, so `evaluate` and `benchmark` load it with `load_segmenter`
alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from diffaug.errors import InputError
from diffaug.latents import encode_latents
from diffaug.pretrained import public_config


@dataclass
class LatentParts:
    """What a latent segmenter is built from: the generator's VAE, the trained validator and
    (for `init: scratch`) the generator U-Net's state to copy the denoiser's encoder from."""

    vae: Any  # diffusers AutoencoderKL (frozen)
    validator: Any  # diffaug.validator.model.ValidatorNet (trained, learned mask codec)
    unet_state: dict[str, torch.Tensor] | None = None


LATENT_KEYS = ("vae", "validator", "noise_seed")


def latent_config(parts: LatentParts, noise_seed: int = 0) -> dict[str, Any]:
    """The `latent` entry of a latent `SegmenterNet`'s config: the configs of the generator's VAE
    and of the trained validator (without diffusers' bookkeeping keys) and the noise seed."""
    from diffaug.validator.model import vae_downsample

    validator = parts.validator
    if validator.config.latent_channels != int(parts.vae.config.latent_channels) or \
            validator.config.vae_downsample != vae_downsample(parts.vae):
        raise InputError("the validator does not belong to this generator's VAE (latent channels or downsampling "
                         "differ); rerun `dvc repro train_validator`")
    if validator.config.mask_codec != "learned":
        raise InputError("train_segmenter.architecture latent needs a validator with the learned mask codec "
                         "(train_validator.mask_codec: learned)")
    return {"vae": public_config(parts.vae.config), "validator": public_config(validator.config),
            "noise_seed": int(noise_seed)}


def check_latent_config(latent: Any, where: str, fix: str) -> None:
    """InputError unless `latent` is a `latent_config`: its keys, and the validator's config keys."""
    from diffaug.pretrained import check_config_keys
    from diffaug.validator.model import ValidatorNet

    ok = isinstance(latent, Mapping) and set(latent) == set(LATENT_KEYS) and isinstance(latent["validator"], Mapping)
    if not ok:
        raise InputError(f"{where}: not a latent segmenter config (keys {', '.join(LATENT_KEYS)}); {fix}")
    check_config_keys(latent["validator"], ValidatorNet, f"{where} validator", fix)


def vae_encoder_only(vae_config: dict[str, Any]):
    """An AutoencoderKL built from its config with the decoder side dropped (only E is needed)."""
    from diffusers import AutoencoderKL

    vae = AutoencoderKL.from_config(vae_config)
    vae.decoder = None
    vae.post_quant_conv = None
    return vae.requires_grad_(False).eval()


class LatentSegmenterNet(nn.Module):
    """Image -> class logits through the latent single-step network; `training_terms` gives eq. 12."""

    def __init__(self, vae_config: Mapping[str, Any], validator_config: Mapping[str, Any], noise_seed: int = 0) -> None:
        super().__init__()
        from diffaug.validator.model import ValidatorNet

        if validator_config.get("mask_codec", "learned") != "learned":
            raise ValueError("a latent segmenter needs a validator with the learned mask codec")
        self.vae = vae_encoder_only(vae_config)
        self.net = ValidatorNet(**public_config(validator_config))
        self.net.codec.requires_grad_(False)
        self.noise_seed = int(noise_seed)

    def train(self, mode: bool = True) -> LatentSegmenterNet:
        super().train(mode)
        self.vae.eval()  # frozen parts stay in eval mode
        self.net.codec.eval()
        return self

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """z_a = E(x) · scaling_factor (eq. 1, `diffaug.latents`), (N, c, h, w) in the VAE's dtype; x in [-1, 1]."""
        return encode_latents(self.vae, x.to(self.vae.dtype))

    def forward(self, x: torch.Tensor, masks: torch.Tensor | None = None, single_step_fraction: float = 0.5,
                generator: torch.Generator | None = None, lambda_latent: float = 1.0, lambda_dice: float = 1.0):
        """Without masks, single-step inference (eq. 11): class logits (N, C+1, H, W) for x
        (N, 3, H, W) in [-1, 1]; the noise z_T is drawn from `noise_seed` on every call, so
        predictions are deterministic. With masks (N, H, W), training: the eq. 12 loss per sample
        (N,) and the decoded probabilities (N, C+1, H, W)."""
        from diffaug.validator.inference import single_step_latents

        if masks is not None:
            terms = self.training_terms(x, masks, single_step_fraction, generator)
            return terms.total(lambda_latent, lambda_dice), terms.probs
        z_a = self.encode(x).to(x.dtype)
        c = self.net.config
        g = torch.Generator().manual_seed(self.noise_seed)
        z_T = torch.randn(len(x), c.mask_latent_channels, *z_a.shape[-2:], generator=g).to(x.device, x.dtype)
        z0 = single_step_latents(self.net, self.net.condition(z_a), z_T, self.net.alphas_cumprod[c.single_step_timestep])
        return self.net.codec.decode_logits(z0.to(x.dtype))

    def training_terms(self, x: torch.Tensor, masks: torch.Tensor, single_step_fraction: float,
                       generator: torch.Generator | None):
        """eq. 12 terms per sample for a batch x (N, 3, H, W) in [-1, 1] with masks (N, H, W)."""
        from diffaug.validator.objective import draw_timesteps, eq12_terms

        c = self.net.config
        generator = generator if generator is not None else torch.Generator().manual_seed(self.noise_seed)
        z_a = self.encode(x).to(x.dtype)
        with torch.no_grad():
            z0 = self.net.codec.encode(masks)
        t = draw_timesteps(len(x), c.single_step_timestep, c.num_train_timesteps, single_step_fraction,
                           generator).to(x.device)
        eps = torch.randn(z0.shape, generator=generator).to(x.device, z0.dtype)
        return eq12_terms(self.net, self.net.codec, z_a, z0, masks, t, eps, self.net.alphas_cumprod,
                          c.num_classes)


def init_latent_network(net: LatentSegmenterNet, parts: LatentParts, init: str) -> LatentSegmenterNet:
    """Give a latent network (a `SegmenterNet`'s body, built from `latent_config(parts)`) the
    generator's VAE encoder and the validator's mask codec; the rest from the validator
    (`init: validator`) or fresh (`init: scratch`, the denoiser's encoder from the generator U-Net)."""
    from diffaug.validator.model import init_from_generator_unet

    own = net.state_dict()
    vae_state = {f"vae.{k}": v for k, v in parts.vae.state_dict().items() if f"vae.{k}" in own}
    net.load_state_dict(vae_state, strict=False)
    codec_state = {f"net.{k}": v for k, v in parts.validator.state_dict().items() if k.startswith("codec.")}
    net.load_state_dict(codec_state, strict=False)
    if init == "validator":
        net.net.load_state_dict(parts.validator.state_dict())
    elif parts.unet_state is not None:
        init_from_generator_unet(net.net, parts.unet_state)
    return net


__all__ = ["LatentParts", "LatentSegmenterNet", "check_latent_config", "init_latent_network", "latent_config",
           "vae_encoder_only"]
