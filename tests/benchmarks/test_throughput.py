"""pytest-benchmark timings of each stage's hot path on tiny models (random weights): VAE
encode/decode, diffaug's sampler vs diffusers' stock inpainting pipeline, validator single-step vs
iterative, the gate's decision, segmenter inference. `pytest-benchmark compare` tracks them across
commits; the ratio check users put in CI is `diffaug benchmark --check` (docs/benchmark.md)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from diffaug.benchmark.profile import build_generator, build_segmenter, build_validator

SIZE, BATCH, STEPS = 32, 4, 4
DEVICE = torch.device("cpu")


@pytest.fixture(scope="module")
def models():
    torch.manual_seed(0)
    gen = build_generator("tiny", DEVICE, torch.float32, SIZE)
    validator = build_validator("tiny", gen.vae, DEVICE, torch.float32)
    segmenter = build_segmenter("tiny", SIZE, DEVICE)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (BATCH, SIZE, SIZE, 3), dtype=np.uint8)
    masks = np.zeros((BATCH, SIZE, SIZE), dtype=bool)
    masks[:, 8:20, 8:20] = True
    return gen, validator, segmenter, images, masks


@pytest.fixture(scope="module")
def sampler(models):
    from diffaug.generator.sampling import InpaintSampler

    gen = models[0]
    return InpaintSampler(gen, "ddim", STEPS, 7.5, "healthy mucosa", device=DEVICE)


PROMPTS = ["sessile polyp , smooth surface"] * BATCH
SEEDS = list(range(BATCH))


def test_vae_encode(benchmark, models):
    from diffaug.imaging import to_model_space
    from diffaug.latents import encode_latents

    gen, _, _, images, _ = models
    x = to_model_space(images)
    with torch.inference_mode():
        z = benchmark(encode_latents, gen.vae, x)
    assert z.shape == (BATCH, 4, SIZE // 2, SIZE // 2)


def test_vae_decode(benchmark, models):
    from diffaug.latents import decode_latents

    gen = models[0]
    z = torch.randn(BATCH, 4, SIZE // 2, SIZE // 2)
    with torch.inference_mode():
        x = benchmark(decode_latents, gen.vae, z)
    assert x.shape == (BATCH, 3, SIZE, SIZE)


def test_generate_diffaug_sampler(benchmark, models, sampler):
    _, _, _, images, masks = models
    out = benchmark(sampler, images, masks, PROMPTS, SEEDS)
    assert out.shape == (BATCH, SIZE, SIZE, 3)


def test_generate_stock_pipeline(benchmark, models, sampler):
    from diffaug.generator.sampling import stock_inpaint, stock_pipeline

    gen, _, _, images, masks = models
    pipe = stock_pipeline(gen, sampler)
    out = benchmark(stock_inpaint, pipe, sampler, images, masks, PROMPTS, SEEDS)
    assert out.shape == (BATCH, SIZE, SIZE, 3)


@pytest.mark.parametrize("mode", ["single_step", "iterative"])
def test_validator(benchmark, models, mode):
    _, validator, _, images, _ = models
    pred = benchmark(validator.predict, images, mode=mode, steps=10, batch_size=BATCH)
    assert pred.shape == (BATCH, SIZE, SIZE)


def test_gate_decision(benchmark, models):
    from diffaug.validator.metrics import mask_iou

    _, validator, _, images, masks = models

    def gate():
        return mask_iou(validator.predict(images, batch_size=BATCH), masks.astype(np.uint8)) > 0.7

    assert benchmark(gate).shape == (BATCH,)


def test_segmenter(benchmark, models):
    _, _, segmenter, images, _ = models
    assert benchmark(segmenter.predict, images).shape == (BATCH, SIZE, SIZE)
