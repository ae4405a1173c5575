"""Helpers of the generate tests: a small phantom prepared folder (the real `prepare`) and a tiny
random generator folder written with the real `save_generator` (loaded back by `load_generator`)."""

from __future__ import annotations

from pathlib import Path

from diffaug.config import parse_section

TINY_GEN = {
    "vae": {"block_out_channels": [8, 16], "norm_num_groups": 4, "latent_channels": 4},
    "unet": {"block_out_channels": [16, 32], "norm_num_groups": 8, "attention_head_dim": 4, "cross_attention_levels": 1},
    "text_max_length": 8,
    "num_train_timesteps": 100,
}


def make_prepared(root: Path, family: str = "polyp", size: int = 32, normals: int = 3, train: int = 10,
                  test: int = 2, seed: int = 0, **phantom) -> Path:
    """`prepare` of a small phantom set; `phantom` adds prepare.phantom keys (small_share, ...)."""
    from diffaug.data.stage_prepare import run_prepare

    cfg = parse_section("prepare", {"image_size": size, "preview_count": 2, "phantom": {
        "family": family, "train": train, "test": test, "normals": normals, **phantom}})
    run_prepare(cfg, seed, root, root.parent / f"{root.name}.json")
    return root


def make_generator(root: Path, family: str = "polyp", size: int = 32, seed: int = 0) -> Path:
    """Random tiny generator (untrained) saved in the generator folder layout."""
    import torch

    from diffaug.generator.models import build_backbone, save_generator

    torch.manual_seed(seed)
    cfg = parse_section("finetune_generator", TINY_GEN)
    gen = build_backbone(cfg, size)
    gen.meta.update({"family": family, "image_size": size})
    save_generator(gen, root)
    return root
