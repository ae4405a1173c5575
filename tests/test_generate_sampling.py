"""Our batched sampler: equal to diffusers' stock inpainting pipeline on the same inputs, the
exact fast path (CFG prefix sharing, cached cross-attention K/V, traced UNet), seeds."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from diffaug.generator.models import load_generator
from diffaug.generator.sampling import InpaintSampler, seed_noise, stock_inpaint, stock_pipeline
from diffaug.imaging import to_model_space
from diffaug.latents import decode_latents, encode_latents
from generate_support import make_generator

B, S = 3, 32


@pytest.fixture(scope="module")
def gen(tmp_path_factory):
    folder = make_generator(tmp_path_factory.mktemp("gen") / "generator", size=S)
    return load_generator(folder)


@pytest.fixture(scope="module")
def batch():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (B, S, S, 3), dtype=np.uint8)
    masks = np.zeros((B, S, S), bool)
    masks[0, 8:20, 8:18] = True
    masks[1, 2:6, 20:30] = True
    masks[2, 14:30, 4:16] = True
    prompts = ["sessile polyp 5-10mm, smooth surface", "diminutive polyp", "flat lesion with unclear borders"]
    return images, masks, prompts, [11, 12, 13]


@pytest.mark.parametrize("scheduler", ["ddim", "dpmsolver++"])
def test_denoising_loop_matches_the_stock_pipeline(gen, batch, scheduler):
    images, masks, prompts, seeds = batch
    s = InpaintSampler(gen, scheduler, steps=3, guidance_scale=5.0, negative_prompt="healthy mucosa", fast=True)
    mask_lat, z_masked = s.encode_condition(images, masks)
    noise = seed_noise(seeds, tuple(z_masked.shape[1:]))
    with torch.inference_mode():
        ours = ((decode_latents(gen.vae, s.denoise(mask_lat, z_masked, prompts, seeds, S, S, noise=noise)) + 1) / 2)
    ours = ours.clamp(0, 1).permute(0, 2, 3, 1).numpy()
    # the stock pipeline on the same noise, masked-image latents, latent mask and embeddings
    stock = stock_inpaint(stock_pipeline(gen, s), s, images, masks, prompts, seeds, latents=noise, masked_image_latents=z_masked)
    np.testing.assert_allclose(ours, stock, atol=1e-4)


def test_fast_path_and_trace_are_exact(gen, batch):
    images, masks, prompts, seeds = batch
    plain = InpaintSampler(gen, "ddim", 3, 4.0, "healthy mucosa", fast=False, trace=False)(images, masks, prompts, seeds)
    fast = InpaintSampler(gen, "ddim", 3, 4.0, "healthy mucosa", fast=True, trace=True)
    out = fast(images, masks, prompts, seeds)
    assert any(v is not None for v in fast._traced.values())
    np.testing.assert_allclose(out, plain, atol=1e-5)
    # the patches are gone afterwards: the UNet is stock again
    assert "forward" not in gen.unet.conv_in.__dict__
    assert out.shape == (B, S, S, 3) and 0 <= out.min() and out.max() <= 1


def test_a_sample_depends_on_its_seed_not_on_its_batch(gen, batch):
    images, masks, prompts, seeds = batch
    s = InpaintSampler(gen, "ddim", 2, 4.0, "healthy mucosa", trace=False)
    together = s(images, masks, prompts, seeds)
    alone = s(images[1:2], masks[1:2], prompts[1:2], seeds[1:2])
    np.testing.assert_allclose(together[1], alone[0], atol=1e-4)
    other = s(images[1:2], masks[1:2], prompts[1:2], [99])
    assert np.abs(other[0] - alone[0]).max() > 1e-3


def test_without_text_guidance_one_branch_runs(gen, batch):
    images, masks, _, seeds = batch
    s = InpaintSampler(gen, "ddim", 2, 7.5, "", use_cfg=False)
    assert not s.do_cfg
    out = s(images, masks, [""] * B, seeds)
    assert out.shape == (B, S, S, 3) and np.isfinite(out).all()


def test_strength_starts_from_the_init_image(gen, batch):
    """SDEdit: strength 1 ignores the init (pure noise, bit for bit); a low strength keeps the
    painted region near the init, and every strength depends on the seed only as before."""
    images, masks, prompts, seeds = batch
    init = images.copy()
    init[masks] = (200, 40, 40)  # a red "lesion" in the painted region
    full = InpaintSampler(gen, "ddim", 10, 4.0, "healthy mucosa", trace=False)
    np.testing.assert_array_equal(full(images, masks, prompts, seeds, init=init), full(images, masks, prompts, seeds))
    low = InpaintSampler(gen, "ddim", 10, 4.0, "healthy mucosa", trace=False, strength=0.1)
    out_low, out_full = low(images, masks, prompts, seeds, init=init), full(images, masks, prompts, seeds)
    with torch.inference_mode():  # what the (random) VAE makes of the init: the start of a low-strength run
        z = encode_latents(gen.vae, to_model_space(init))
        recon = ((decode_latents(gen.vae, z).clamp(-1, 1) + 1) / 2).permute(0, 2, 3, 1).numpy()
    err_low, err_full = np.abs(out_low - recon)[masks].mean(), np.abs(out_full - recon)[masks].mean()
    assert err_low < 0.5 * err_full, (err_low, err_full)
    np.testing.assert_array_equal(out_low, low(images, masks, prompts, seeds, init=init))
    with pytest.raises(ValueError, match="strength"):
        InpaintSampler(gen, "ddim", 10, 4.0, "", strength=0.0)
