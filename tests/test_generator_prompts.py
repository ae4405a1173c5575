"""Prompt banks: captions fit the lesion, generation prompts, negative prompt, bad banks."""

from __future__ import annotations

import numpy as np
import pytest

from diffaug.config import load_section, parse_section
from diffaug.errors import ConfigError
from diffaug.generator.config import PromptBanks
from diffaug.generator.prompts import bank_for, caption_for, negative_prompt, sample_prompts


@pytest.fixture
def banks() -> PromptBanks:
    return PromptBanks()


def test_polyp_caption_fits_size_flatness_contrast(banks):
    bank = banks.polyp
    rng = np.random.default_rng(0)
    for _ in range(20):
        small = caption_for({"size_class": "small", "contrast": 0.3, "flat": False}, bank, rng, contrast_split=0.1)
        assert small.split(", ")[0] in bank.morphology_small
        assert small.split(", ")[1] in bank.surface_irregular
        assert small.split(", ")[2] in bank.vascular
        large = caption_for({"size_class": "large", "contrast": 0.3, "flat": "False"}, bank, rng)
        assert large.split(", ")[0] in bank.morphology_medium + bank.morphology_large
        assert large.split(", ")[0] not in bank.morphology_small
        flat = caption_for({"size_class": "large", "contrast": 0.01, "flat": True}, bank, rng, contrast_split=0.1)
        assert flat.split(", ")[0] in bank.morphology_flat
        assert flat.split(", ")[1] in bank.surface_smooth


def test_fundus_caption_follows_cdr(banks):
    bank = banks.fundus
    rng = np.random.default_rng(1)
    assert caption_for({"cdr": 0.55}, bank, rng).split(", ")[0] in bank.cdr_early
    assert caption_for({"cdr": 0.7}, bank, rng).split(", ")[0] in bank.cdr_moderate
    assert caption_for({"cdr": 0.85}, bank, rng).split(", ")[0] in bank.cdr_advanced
    assert caption_for({"cdr": float("nan")}, bank, rng).split(", ")[0] in bank.cdr_early


def test_sample_prompts_deterministic_and_diverse(banks):
    bank = bank_for(banks, "polyp")
    a = sample_prompts(bank, 30, np.random.default_rng(3))
    b = sample_prompts(bank, 30, np.random.default_rng(3))
    assert a == b and len(set(a)) > 5
    assert sample_prompts(bank, 4, np.random.default_rng(3), single_prompt=True) == [bank.basic] * 4
    assert negative_prompt(bank) == "healthy mucosa, normal colon tissue"
    assert negative_prompt(banks.fundus).startswith("normal optic disc")


def test_empty_bank_is_one_line_config_error(write_params):
    path = write_params({"finetune_generator": {"prompts": {"polyp": {"negative": []}}}})
    with pytest.raises(ConfigError) as exc:
        load_section(path, "finetune_generator")
    msg = str(exc.value)
    assert "\n" not in msg and "finetune_generator.prompts.polyp.negative" in msg
    with pytest.raises(ConfigError, match="morphology_small"):
        parse_section("finetune_generator", {"prompts": {"polyp": {"morphology_small": ["  "]}}})


def test_repo_params_section_parses(repo_root):
    cfg = load_section(repo_root / "params.yaml", "finetune_generator")
    assert cfg.backbone == "tiny" and cfg.prompts.polyp.vascular
