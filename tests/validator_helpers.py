"""Tiny fixtures shared by the validator and gate tests: a random tiny VAE / generator U-Net saved
with save_pretrained, phantom-like data, and a small validator config."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch


@pytest.fixture(scope="module")
def one_thread():
    """The tiny tensors here gain nothing from a second thread, and on a busy shared CI machine
    two spinning threads per process slow these tests several-fold; restore afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tiny_vae(latent_channels: int = 4, seed: int = 0):
    from diffusers import AutoencoderKL

    torch.manual_seed(seed)
    return AutoencoderKL(block_out_channels=(32, 64), down_block_types=("DownEncoderBlock2D",) * 2,
                         up_block_types=("UpDecoderBlock2D",) * 2, latent_channels=latent_channels,
                         norm_num_groups=32, layers_per_block=1, sample_size=32).eval()


def tiny_generator_unet(latent_channels: int = 4):
    from diffusers import UNet2DConditionModel

    torch.manual_seed(1)
    return UNet2DConditionModel(
        in_channels=2 * latent_channels + 1, out_channels=latent_channels, block_out_channels=(16, 32),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        layers_per_block=1, norm_num_groups=8, cross_attention_dim=32, attention_head_dim=8, sample_size=16,
    )


def save_generator(folder: Path, latent_channels: int = 4) -> Path:
    """The generator folder layout of docs/architecture.md (vae/, unet/) with random tiny models."""
    tiny_vae(latent_channels).save_pretrained(folder / "vae")
    tiny_generator_unet(latent_channels).save_pretrained(folder / "unet")
    return folder


def blob_data(n: int, size: int = 32, seed: int = 0, two_class: bool = False):
    """Textured images with one bright, shaded disc-shaped lesion each; masks 0/1 (or 0/1/2 with a
    cup-like inner class)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    images = np.zeros((n, size, size, 3), np.uint8)
    masks = np.zeros((n, size, size), np.uint8)
    for i in range(n):
        tex = rng.normal(0, 10, (size, size))
        img = np.stack([120 + tex, 60 + tex, 50 + tex], -1)
        r = rng.uniform(size * 0.15, size * 0.28)
        cy, cx = rng.uniform(r + 1, size - r - 1, 2)
        d2 = ((yy - cy) ** 2 + (xx - cx) ** 2) / r**2
        lesion = d2 < 1
        img[lesion] += np.stack([90 * (1 - d2), 90 * (1 - d2), 60 * (1 - d2)], -1)[lesion]
        images[i] = np.clip(img, 0, 255)
        masks[i] = lesion
        if two_class:
            masks[i][d2 < 0.3] = 2
    return images, masks


def small_validator_params(**overrides) -> dict:
    """train_validator params sized for tests (16x16 latents, narrow nets)."""
    cfg = dict(codec_channels=[8, 16], codec_steps=60, vision_channels=16, vision_blocks=1, fused_channels=4,
               unet_block_out_channels=[16, 32], norm_num_groups=8, steps=40, batch_size=8, lr=2e-3,
               checkpoint_every=20, log_every=10, iterative_steps=4, eval_batch_size=16, speed_repeats=1)
    cfg.update(overrides)
    return cfg
