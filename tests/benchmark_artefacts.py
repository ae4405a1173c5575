"""Tiny trained-artefact folders (random weights) in the layouts of docs/architecture.md, built
with the other stages' own save functions, so the benchmark runs on real files without training."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

TINY_GENERATOR = {
    "vae": {"block_out_channels": [32, 64], "norm_num_groups": 16},
    "unet": {"block_out_channels": [32, 64], "norm_num_groups": 16, "cross_attention_levels": 1},
}


def build_artefacts(root: Path, image_size: int = 32) -> dict[str, Path]:
    """prepared/ (phantom), generator/, validator/, segmenters/<run>/, synthetic/raw/samples.npz."""
    from diffaug.data.config import PrepareConfig
    from diffaug.data.stage_prepare import run_prepare
    from diffaug.data.prepared import load_split
    from diffaug.generator.config import FinetuneGeneratorConfig
    from diffaug.generator.models import build_backbone, save_generator
    from diffaug.io import save_npz
    from diffaug.segmenter.models import SegmenterNet, save_segmenter
    from diffaug.validator.model import ValidatorNet

    torch.manual_seed(0)
    paths = {k: root / k for k in ("prepared", "generator", "validator", "segmenters")}
    paths["synthetic"] = root / "synthetic" / "raw"
    cfg = PrepareConfig.model_validate({"image_size": image_size, "phantom": {"train": 8, "test": 4, "normals": 4}})
    run_prepare(cfg, 0, paths["prepared"], root / "prepare.json")

    gcfg = FinetuneGeneratorConfig.model_validate(TINY_GENERATOR)
    gen = build_backbone(gcfg, image_size)
    save_generator(gen, paths["generator"])

    factor = 2 ** (len(gen.vae.config.block_out_channels) - 1)
    ValidatorNet(latent_channels=4, vae_downsample=factor, num_classes=1, codec_channels=[16, 16],
                 vision_channels=16, unet_block_out_channels=[16, 32]).save_pretrained(paths["validator"])

    net = SegmenterNet(architecture="unet", num_classes=2, image_size=image_size, channels=[8, 16])
    from diffaug.segmenter.config import TrainSegmenterConfig

    params = TrainSegmenterConfig(channels=[8, 16], batch_size=4).model_dump(mode="json", exclude={"runs", "seeds"})
    save_segmenter(paths["segmenters"] / "none-r0-s0", net, {"variant": "none", "params": params})

    test = load_split(paths["prepared"], "test")
    save_npz(paths["synthetic"] / "samples.npz", images=test.images, masks=test.masks, ids=test.ids)
    return paths


def bench_params(tmp: Path, **benchmark) -> dict:
    """A params dict with the tiny benchmark settings used by the tests."""
    section = {"batch_size": 2, "warmup": 1, "repeats": 1, "min_time_s": 0.0, "generate_steps": 2, "iterative_steps": 6}
    section.update(benchmark)
    return {"base": {"seed": 0, "device": "cpu"}, "benchmark": section, "finetune_generator": TINY_GENERATOR}


def random_images(n: int, size: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)
