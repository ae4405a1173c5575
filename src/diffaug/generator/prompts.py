"""Prompt banks: training captions that fit each lesion, generation prompts, negative prompts
for classifier-free guidance (eq. 8).

The bank models are `PolypPromptBank` / `FundusPromptBank` (params `finetune_generator.prompts`);
`bank_for(banks, family)` picks the one for the data set's family (fingerprint.json).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from diffaug.errors import InputError
from diffaug.generator.config import FundusPromptBank, PolypPromptBank, PromptBank, PromptBanks

__all__ = [
    "FundusPromptBank",
    "PolypPromptBank",
    "PromptBank",
    "PromptBanks",
    "bank_for",
    "caption_for",
    "generic_prompt",
    "negative_prompt",
    "sample_prompts",
]


def bank_for(banks: PromptBanks, family: str) -> PromptBank:
    return banks.for_family(family)


def _pick(options: list[str], rng: np.random.Generator) -> str:
    if not options:
        raise InputError("prompt bank has an empty list; fill finetune_generator.prompts in params.yaml")
    return options[int(rng.integers(len(options)))]


def _truthy(v: Any) -> bool:
    if isinstance(v, str):
        return v.strip().lower() in ("1", "true", "yes", "y", "flat")
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return False
    return bool(v)


DEFAULT_CONTRAST_SPLIT = 0.1  # luminance contrast (fraction of 255) below which a lesion is "low contrast"


def _is_high_contrast(v: Any, split: float) -> bool:
    """Manifest `contrast` is the lesion-vs-ring luminance contrast in [0, 1] (prepare's
    `stats.contrast`); a label ('low'/'high') is accepted too; unknown counts as high."""
    if isinstance(v, str):
        s = v.strip().lower()
        if not s:
            return True
        try:
            return float(s) >= split
        except ValueError:
            return s not in ("low", "subtle", "faint")
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return True
    return float(v) >= split


def caption_for(
    lesion: dict[str, Any], bank: PromptBank, rng: np.random.Generator, contrast_split: float | None = None
) -> str:
    """A training caption that fits what the manifest/fingerprint say about this lesion.

    Polyp (keys from manifest.csv: `size_class`, `contrast`, `flat`):
      morphology — `flat` true → morphology_flat; else by `size_class` (prepare: "small" = area
        below `small_area_frac`, else "large"): "small" → morphology_small, "large" →
        morphology_medium + morphology_large (a ≥ 5 % lesion may be 5-10 mm or bigger), anything
        else → morphology_medium;
      surface — `contrast` below `contrast_split` (the trainer passes the training set's median
        contrast; default 0.1) → surface_smooth, otherwise surface_irregular (a high-contrast
        lesion has the marked, lobulated outline);
      vascular — any entry of `vascular`.
    Fundus (key `cdr`): CDR < cdr_moderate_from → cdr_early, < cdr_advanced_from → cdr_moderate,
      else cdr_advanced; then any `rim` and `rnfl` entry. A missing CDR counts as early.
    The choice within a list is drawn from `rng`, so the same seed gives the same captions.
    """
    if isinstance(bank, PolypPromptBank):
        if _truthy(lesion.get("flat")):
            morph = bank.morphology_flat
        else:
            size = str(lesion.get("size_class", "")).strip().lower()
            morph = {
                "small": bank.morphology_small,
                "large": [*bank.morphology_medium, *bank.morphology_large],
            }.get(size, bank.morphology_medium)
        split = DEFAULT_CONTRAST_SPLIT if contrast_split is None else contrast_split
        surface = bank.surface_irregular if _is_high_contrast(lesion.get("contrast"), split) else bank.surface_smooth
        return ", ".join([_pick(morph, rng), _pick(surface, rng), _pick(bank.vascular, rng)])
    cdr = lesion.get("cdr")
    try:
        cdr_f = float(cdr)
    except (TypeError, ValueError):
        cdr_f = float("nan")
    if math.isnan(cdr_f) or cdr_f < bank.cdr_moderate_from:
        stage = bank.cdr_early
    elif cdr_f < bank.cdr_advanced_from:
        stage = bank.cdr_moderate
    else:
        stage = bank.cdr_advanced
    return ", ".join([_pick(stage, rng), _pick(bank.rim, rng), _pick(bank.rnfl, rng)])


def _all_morphology(bank: PromptBank) -> list[str]:
    if isinstance(bank, PolypPromptBank):
        return [*bank.morphology_small, *bank.morphology_medium, *bank.morphology_large, *bank.morphology_flat]
    return [*bank.cdr_early, *bank.cdr_moderate, *bank.cdr_advanced]


def sample_prompts(bank: PromptBank, n: int, rng: np.random.Generator, single_prompt: bool = False) -> list[str]:
    """`n` generation prompts drawn from the bank's full combination space (morphology × surface
    × vascular; CDR stage × rim × RNFL); `single_prompt` gives the bank's one basic prompt for the
    "without diverse prompts" ablation (table 6)."""
    if single_prompt:
        return [bank.basic] * n
    first = _all_morphology(bank)
    if isinstance(bank, PolypPromptBank):
        second = [*bank.surface_smooth, *bank.surface_irregular]
        third = bank.vascular
    else:
        second, third = bank.rim, bank.rnfl
    return [", ".join([_pick(first, rng), _pick(second, rng), _pick(third, rng)]) for _ in range(n)]


def negative_prompt(bank: PromptBank) -> str:
    """The negative prompt (normal tissue) used as CFG's unconditional branch."""
    if not bank.negative:
        raise InputError("finetune_generator.prompts: negative prompt list is empty; add e.g. 'healthy mucosa'")
    return ", ".join(bank.negative)


def generic_prompt(bank: PromptBank) -> str:
    """Caption of phase (b): a frame of this family with no lesion description."""
    return bank.generic
