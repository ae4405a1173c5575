"""The validator network of eq. 9–13: latent-space segmentation trained with a diffusion objective.

    z_a      = E(I_a)                          frozen generator VAE encoder      (N, c, h, w)
    f_vision = V_psi(z_a)                      trainable vision encoder (eq. 9)  (N, V, h, w)
    f_fused  = psi([z_a ; f_vision])           1x1 projections (eq. 13)          (N, F, h, w)
    eps_hat  = eps_theta([z_t ; f_fused], t)   denoiser U-Net over mask latents  (N, m, h, w)

z_t is the noised mask latent (eq. 10); the clean latent is recovered in one step with eq. 11.
The denoiser is a diffusers `UNet2DModel` whose encoder (conv_in, time embedding, down blocks,
mid block) is initialised from the generator's U-Net wherever tensor names and shapes match (the
paper initialises the encoder from pretrained weights and the decoder from scratch).

`ValidatorNet` is a diffusers model: its config is its `__init__` keyword arguments, and
`save_pretrained(dir)` writes `config.json` + `diffusion_pytorch_model.safetensors`;
`diffaug.validator.loading.load_validator(dir, vae)` restores it and checks that its image-latent
channels match the VAE.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from diffusers import ConfigMixin, ModelMixin, UNet2DModel
from diffusers.configuration_utils import register_to_config
from torch import nn

from diffaug.validator.codec import LearnedMaskCodec


class ResBlock(nn.Module):
    def __init__(self, channels: int, groups: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.GroupNorm(groups, channels), nn.SiLU(), nn.Conv2d(channels, channels, 3, padding=1),
            nn.GroupNorm(groups, channels), nn.SiLU(), nn.Conv2d(channels, channels, 3, padding=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class VisionEncoder(nn.Module):
    """V_psi of eq. 9: adapts the frozen VAE latent to segmentation features at latent resolution.

    (N, c, h, w) -> conv stem + `blocks` residual blocks at (h, w) -> with `levels` > 1, a small
    U-shape: each extra level halves (h, w) (stride-2 conv + residual block), then the features
    are upsampled back and added to the skip of the level above (residual block) -> (N, V, h, w).
    The extra levels widen the receptive field: a lesion is told from a fold by its surroundings,
    which a few 3x3 convolutions at latent resolution do not see.
    """

    def __init__(self, in_channels: int, channels: int, blocks: int, groups: int, levels: int = 1) -> None:
        super().__init__()
        self.stem = nn.Conv2d(in_channels, channels, 3, padding=1)
        self.blocks = nn.Sequential(*[ResBlock(channels, groups) for _ in range(blocks)])
        self.down = nn.ModuleList(
            nn.Sequential(nn.Conv2d(channels, channels, 3, stride=2, padding=1), ResBlock(channels, groups))
            for _ in range(levels - 1)
        )
        self.up = nn.ModuleList(
            nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(channels, channels, 3, padding=1))
            for _ in range(levels - 1)
        )
        self.merge = nn.ModuleList(ResBlock(channels, groups) for _ in range(levels - 1))

    def forward(self, z_a: torch.Tensor) -> torch.Tensor:
        h = self.blocks(self.stem(z_a))
        skips = []
        for down in self.down:  # (h, w) -> (h/2, w/2) -> ...
            skips.append(h)
            h = down(h)
        for up, merge in zip(self.up, self.merge):  # ... back to (h, w), adding each level's skip
            skip = skips.pop()
            h = merge(up(h)[..., : skip.shape[-2], : skip.shape[-1]] + skip)
        return h


class Fusion(nn.Module):
    """psi of eq. 13: concatenation [z_a ; f_vision] then learned 1x1 projections."""

    def __init__(self, latent_channels: int, vision_channels: int, fused_channels: int) -> None:
        super().__init__()
        hidden = max(fused_channels, vision_channels)
        self.proj = nn.Sequential(
            nn.Conv2d(latent_channels + vision_channels, hidden, 1), nn.SiLU(), nn.Conv2d(hidden, fused_channels, 1)
        )

    def forward(self, z_a: torch.Tensor, f_vision: torch.Tensor) -> torch.Tensor:
        return self.proj(torch.cat([z_a, f_vision], dim=1))


class ValidatorNet(ModelMixin, ConfigMixin):
    """eps_theta(z_t, t | f_fused) plus, for the learned codec, the mask codec it was trained with.
    `net.config.<key>` reads the keyword arguments below."""

    @register_to_config
    def __init__(
        self,
        latent_channels: int = 4,  # channels of the VAE image latent z_a (must match the VAE)
        vae_downsample: int = 8,  # VAE spatial factor 2 ** (len(block_out_channels) - 1)
        num_classes: int = 1,  # foreground classes (polyp 1; fundus 2: disc rim, cup)
        mask_codec: str = "learned",  # "learned" | "vae"
        mask_latent_channels: int = 4,  # channels of the mask latent z_0 (VAE codec: the VAE's)
        codec_channels: Sequence[int] = (16, 32),
        codec_scale: float = 1.0,  # learned codec's latent normalisation (1 / std on the training masks)
        vision_channels: int = 32,
        vision_blocks: int = 2,
        vision_levels: int = 1,  # resolution levels of V_psi (1 = latent resolution only)
        fused_channels: int = 8,
        unet_block_out_channels: Sequence[int] = (32, 64),
        unet_layers_per_block: int = 1,
        unet_attention: bool = False,
        norm_num_groups: int = 16,
        num_train_timesteps: int = 1000,
        beta_schedule: str = "scaled_linear",
        beta_start: float = 0.00085,
        beta_end: float = 0.012,
        single_step_timestep: int = 999,
        prediction_type: str = "epsilon",  # what the U-Net outputs: "epsilon" or "v_prediction" (converted to eps_hat)
    ) -> None:
        super().__init__()
        c = self.config
        self.vision = VisionEncoder(c.latent_channels, c.vision_channels, c.vision_blocks, c.norm_num_groups,
                                    c.vision_levels)
        self.fusion = Fusion(c.latent_channels, c.vision_channels, c.fused_channels)
        levels = len(c.unet_block_out_channels)
        down = ["DownBlock2D"] * levels
        up = ["UpBlock2D"] * levels
        if c.unet_attention:
            down[-1], up[0] = "AttnDownBlock2D", "AttnUpBlock2D"
        # The conditioning enters by concatenation with the noisy mask latent (as in SDSeg).
        self.denoiser = UNet2DModel(
            in_channels=c.mask_latent_channels + c.fused_channels,
            out_channels=c.mask_latent_channels,
            block_out_channels=tuple(c.unet_block_out_channels),
            down_block_types=tuple(down),
            up_block_types=tuple(up),
            layers_per_block=c.unet_layers_per_block,
            norm_num_groups=c.norm_num_groups,
            add_attention=c.unet_attention,
        )
        # alphas_cumprod of the forward process (eq. 10), for the v -> eps conversion; rebuilt from the config
        self.register_buffer("alphas_cumprod", make_scheduler(c).alphas_cumprod.float(), persistent=False)
        self.codec = (
            LearnedMaskCodec(c.num_classes, c.mask_latent_channels, c.codec_channels, c.vae_downsample,
                             c.norm_num_groups, c.codec_scale)
            if c.mask_codec == "learned" else None
        )

    def condition(self, z_a: torch.Tensor) -> torch.Tensor:
        """f_fused (eq. 9, 13): depends on the image only, so iterative sampling computes it once.

        z_a is made NCHW-contiguous first: the VAE encodes the permuted (channels-last) image
        faster in that layout and hands z_a on in it, and V_psi's GroupNorm (one channel per group)
        is much slower on CPU in channels-last (docs/validator.md, speed)."""
        z_a = z_a.contiguous()
        return self.fusion(z_a, self.vision(z_a))

    def denoise(self, f_fused: torch.Tensor, z_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """eps_hat_seg of the noisy mask latent z_t at timesteps t (N,).

        With prediction_type "v_prediction" the U-Net outputs v = sqrt(abar) eps - sqrt(1-abar) z0
        and eps_hat = sqrt(abar) v_hat + sqrt(1-abar) z_t: the same eps_hat, eq. 11 and eq. 12, but
        well conditioned at the single-step timestep, where eps-prediction must reproduce z_t to
        within sqrt(abar) ~ 0.07 and eq. 11 multiplies its error by 1/sqrt(abar) ~ 15.
        """
        out = self.denoiser(torch.cat([z_t, f_fused], dim=1), t).sample
        if self.config.prediction_type == "epsilon":
            return out
        ab = self.alphas_cumprod.to(z_t.device)[t.long()].view(-1, 1, 1, 1)
        return ab.sqrt() * out + (1 - ab).sqrt() * z_t

    def forward(self, z_a: torch.Tensor, z_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.denoise(self.condition(z_a), z_t, t)

    def set_codec_scale(self, scale: float) -> None:
        # kept in the config (not a buffer): save_pretrained writes it, from_pretrained rebuilds the codec with it
        self.register_to_config(codec_scale=float(scale))
        if self.codec is not None:
            self.codec.scale = float(scale)


def make_scheduler(config: Any, kind: str = "ddpm"):
    """The forward process of eq. 10 (DDPM) or the DDIM sampler for iterative inference."""
    from diffusers import DDIMScheduler, DDPMScheduler

    kwargs = dict(num_train_timesteps=config.num_train_timesteps, beta_schedule=config.beta_schedule,
                  beta_start=config.beta_start, beta_end=config.beta_end, prediction_type="epsilon",
                  clip_sample=False)
    if kind == "ddim":
        return DDIMScheduler(**kwargs, set_alpha_to_one=False, timestep_spacing="trailing")
    return DDPMScheduler(**kwargs)


def init_from_generator_unet(net: ValidatorNet, unet_state: dict[str, torch.Tensor]) -> int:
    """Copy the generator U-Net's encoder tensors (conv_in, time embedding, down blocks, mid block)
    whose names and shapes match into the denoiser; returns how many were copied."""
    own = net.denoiser.state_dict()
    prefixes = ("conv_in.", "time_embedding.", "down_blocks.", "mid_block.")
    copied = {k: v for k, v in unet_state.items()
              if k.startswith(prefixes) and k in own and tuple(own[k].shape) == tuple(v.shape)}
    net.denoiser.load_state_dict(copied, strict=False)
    return len(copied)


def vae_downsample(vae) -> int:
    return 2 ** (len(vae.config.block_out_channels) - 1)
