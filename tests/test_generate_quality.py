"""A (briefly) trained tiny generator paints lesion-like pixels where the mask says and keeps the
rest of the frame, compared with the same architecture untrained.

Measures, on the phantom polyp set (32 px):
- inside the mask: the mean colour of the painted region, distance to the mean colour of real
  training lesions (prepared train split) — must be smaller for the trained generator;
- outside the mask, on the raw decoded image (before compositing, so the model itself is judged):
  mean absolute difference to the background — must be smaller for the trained generator (the
  preservation term of eq. 7 and the masked-image conditioning work).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from diffaug.config import BaseConfig, parse_section
from diffaug.data.prepared import load_split
from diffaug.generator.stage_finetune_generator import run_finetune_generator
from diffaug.generator.generate import load_inputs, plan_background
from diffaug.generator.models import load_generator
from diffaug.generator.sampling import InpaintSampler
from generate_support import TINY_GEN, make_generator, make_prepared

S = 32
TRAIN = {
    **TINY_GEN,
    "vae_phase": {"steps": 80, "batch_size": 8, "lr": 3e-3},
    "pretrain_phase": {"steps": 40, "batch_size": 8, "lr": 2e-3},
    "finetune_phase": {"steps": 80, "batch_size": 8, "lr": 2e-3},
    "checkpoint_every": 1000,
}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("quality")
    prepared = make_prepared(root / "prepared", size=S, normals=4, train=32)
    cfg = parse_section("finetune_generator", TRAIN)
    run_finetune_generator(cfg, BaseConfig(seed=0, device="cpu"), prepared, root / "trained", root / "ckpt",
                           root / "live", root / "m.json")
    untrained = make_generator(root / "untrained", size=S)
    return prepared, load_generator(root / "trained"), load_generator(untrained)


def _paint(gen, prepared):
    inputs = load_inputs(prepared)
    gcfg = parse_section("generate", {"variants": 2, "steps": 8, "guidance_scale": 2.0})
    banks = parse_section("finetune_generator", {}).prompts
    specs = [s for i in range(len(inputs.normals)) for s in plan_background(inputs, i, gcfg, banks, 0)]
    bgs = inputs.normals[[s.bg_index for s in specs]]
    masks = np.stack([s.lesion for s in specs])
    sampler = InpaintSampler(gen, "ddim", 8, 2.0, "healthy mucosa, normal colon tissue", trace=False)
    torch.manual_seed(0)
    decoded = sampler(bgs, masks, [s.row["prompt"] for s in specs], [s.row["seed"] for s in specs]) * 255.0
    return bgs.astype(np.float64), masks, decoded.astype(np.float64)


@pytest.mark.slow  # trains a generator (~1-2 min CPU); the equivalence/stage tests cover the code paths
def test_trained_generator_paints_lesions_inside_and_preserves_outside(setup):
    prepared, trained, untrained = setup
    train = load_split(prepared, "train")
    lesion_rgb = np.concatenate([im[m > 0] for im, m in zip(train.images, train.masks)]).astype(float).mean(0)
    result = {}
    for name, gen in (("trained", trained), ("untrained", untrained)):
        bgs, masks, out = _paint(gen, prepared)
        inside = np.concatenate([o[m] for o, m in zip(out, masks)]).mean(0)
        outside = np.mean([np.abs(o[~m] - b[~m]).mean() for o, b, m in zip(out, bgs, masks)])
        result[name] = (float(np.linalg.norm(inside - lesion_rgb)), float(outside))
    print("distance of painted mean colour to real lesions / outside |Δ| to background:", result)
    assert result["trained"][0] < result["untrained"][0]
    assert result["trained"][1] < result["untrained"][1]
    assert result["trained"][1] < 40.0  # a few training steps: coarse, but far from random
