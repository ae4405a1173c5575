"""Params of the `train_segmenter` stage (the paper's table 7 ratio sweep).

One DVC matrix entry trains one run: a *run spec* from `runs` × a seed from `seeds`. A spec is a
bare variant (`none`, `standard`, `copypaste`, `diffaug`: the last two add `synthetic_ratio` × N
extra pairs, so `dvc exp run -S train_segmenter.synthetic_ratio=3` changes them) or a variant with
its own ratio (`diffaug-r3`, for sweeps that train several ratios at once). The run's folder is
`data/segmenters/<spec>-s<seed>` (see `run_name`).

Variants:
- `none`: real training images as they are.
- `standard`: rotation, flip, scale and elastic deformation, applied jointly to image and mask.
- `copypaste`: standard + round(ratio × N_real) composites of real lesions pasted (rescaled,
  feathered) onto other training images: the cheap baseline diffaug must beat.
- `pseudolabel`: standard + round(ratio × N_real) unlabelled frames (data/prepared/unlabelled.npz)
  with a teacher's masks: the teacher is the `standard` run of the same seed (trained again
  inside this run, identical by determinism), frames whose mean max-probability is above
  `pseudolabel.min_confidence` qualify. The rival that uses the unlabelled frames too.
- `diffaug`: standard + round(ratio × N_real) accepted synthetic pairs from the gate.

Exposure (why the mix is not a naive 1:1): the budget is `steps` optimiser steps and every batch
holds `batch_size` *real* samples drawn in the same order in every variant, so each real image is
seen equally often whatever the variant. Extra samples are *added* to each batch (their number
set by `synthetic_share`), never put in place of real ones.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from diffaug.config import Section
from diffaug.training.config import OptimConfig

VARIANTS = ("none", "standard", "copypaste", "pseudolabel", "diffaug")
# Variants that add extra pairs and therefore take a ratio > 0; the others must say r0.
RATIO_VARIANTS = ("copypaste", "pseudolabel", "diffaug")
_SPEC = re.compile(r"^(?P<variant>[a-z_]+)(?:-r(?P<ratio>-?[0-9]+(?:\.[0-9]+)?))?$")


def format_ratio(ratio: float) -> str:
    """Canonical text of a ratio in run names: 3 -> '3', 0.5 -> '0.5', 3.0 -> '3'."""
    return f"{float(ratio):g}"


def parse_run_spec(spec: str, synthetic_ratio: float = 1.0) -> tuple[str, float]:
    """`'diffaug-r3'` -> `('diffaug', 3.0)`; `'diffaug'` -> `('diffaug', synthetic_ratio)`;
    `'standard'` / `'standard-r0'` -> `('standard', 0.0)`. Raises ValueError with a one-line reason."""
    m = _SPEC.match(str(spec))
    if m is None:
        raise ValueError(
            f"run '{spec}' must be a variant ({', '.join(VARIANTS)}) or '<variant>-r<ratio>', e.g. 'diffaug-r3'"
        )
    variant = m["variant"]
    if variant not in VARIANTS:
        raise ValueError(f"run '{spec}': unknown variant '{variant}'; allowed: {', '.join(VARIANTS)}")
    if m["ratio"] is None:
        return variant, (float(synthetic_ratio) if variant in RATIO_VARIANTS else 0.0)
    ratio = float(m["ratio"])
    if ratio < 0:
        raise ValueError(f"run '{spec}': the synthetic ratio must be >= 0 (paper sweep 0.5-5)")
    if variant in RATIO_VARIANTS and ratio <= 0:
        raise ValueError(f"run '{spec}': variant '{variant}' needs a ratio > 0 (paper sweep 0.5-5, best 3)")
    if variant not in RATIO_VARIANTS and ratio != 0:
        raise ValueError(f"run '{spec}': variant '{variant}' adds no pairs; write '{variant}'")
    canonical = f"{variant}-r{format_ratio(ratio)}"
    if spec != canonical:
        raise ValueError(f"run '{spec}': write it as '{canonical}' (the folder name evaluate looks for)")
    return variant, ratio


def run_group(spec: str) -> str:
    """What evaluate reports a run spec under (seeds pooled): the spec without a `-r0`, so
    `standard-r0` and `standard` both report as `standard` and `diffaug` stays `diffaug` whatever
    `synthetic_ratio` is (metric keys then diff across experiments)."""
    return spec[:-3] if spec.endswith("-r0") else spec


class StandardAugmentConfig(Section):
    """Augmentation shared by standard/copypaste/diffaug: each sample its own random geometry
    (flips, rotation, zoom, shift, elastic warp; image and mask together) and colour."""

    flip_prob: float = Field(0.5, ge=0, le=1)  # horizontal and vertical flip, each with this probability
    rotation_degrees: float = Field(45.0, ge=0, le=180)  # uniform rotation in [-d, d]
    scale_min: float = Field(0.7, gt=0)  # log-uniform zoom range (paper: "scale")
    scale_max: float = Field(1.4, gt=0)
    translate: float = Field(0.1, ge=0, le=0.5)  # shift of up to this fraction of the side, each axis
    elastic_prob: float = Field(0.5, ge=0, le=1)  # share of samples also warped elastically
    elastic_alpha: float = Field(8.0, ge=0)  # largest displacement (px) of the elastic warp
    elastic_spacing: float = Field(8.0, gt=1)  # px between the displacement field's control points (smoothness)
    brightness: float = Field(0.3, ge=0, lt=1)  # brightness factor in [1 - b, 1 + b]
    contrast: float = Field(0.3, ge=0, lt=1)  # contrast factor in [1 - c, 1 + c]
    saturation: float = Field(0.2, ge=0, lt=1)  # saturation factor in [1 - s, 1 + s]
    # what changes between videos and endoscopes rather than within a frame; 0 = off (no draw)
    colour_cast: float = Field(0.0, ge=0, lt=1)  # a gain per colour channel in [1 - c, 1 + c] (white balance)
    gamma: float = Field(0.0, ge=0, lt=1)  # x ** gamma, gamma log-uniform in [1 / (1 + g), 1 + g] (exposure curve)
    blur_prob: float = Field(0.0, ge=0, le=1)  # share of samples blurred (defocus), Gaussian sigma uniform in (0, blur_sigma] px
    blur_sigma: float = Field(1.0, gt=0, le=4)

    @model_validator(mode="after")
    def _check(self) -> StandardAugmentConfig:
        if self.scale_max < self.scale_min:
            raise ValueError("scale_max must be >= scale_min")
        return self


class CopyPasteConfig(Section):
    """How `copypaste` composes its extra pairs (one pasted lesion per composite)."""

    scale_min: float = Field(0.6, gt=0)  # rescale factor of the cut-out lesion
    scale_max: float = Field(1.3, gt=0)
    feather_sigma: float = Field(1.5, ge=0)  # Gaussian blur (px) of the paste alpha: soft edges
    min_brightness: float = Field(0.15, ge=0, le=1)  # plausible place: mean intensity above this (not the dark border)
    tries: int = Field(20, ge=1)  # placements tried before accepting overlap with an existing lesion

    @model_validator(mode="after")
    def _check(self) -> CopyPasteConfig:
        if self.scale_max < self.scale_min:
            raise ValueError("scale_max must be >= scale_min")
        return self


class PseudolabelConfig(Section):
    """How `pseudolabel` turns unlabelled frames into extra pairs (self-training, one round)."""

    # a frame qualifies when the teacher's max class probability, averaged over its pixels, is
    # above this (the usual confidence filter of self-training)
    min_confidence: float = Field(0.9, ge=0, lt=1)


class LatentSegmenterConfig(Section):
    """`architecture: latent`: the validator's network trained as the segmenter (eq. 10–12 objective).
    Its sizes and mask codec come from the trained validator (data/validator/config.json)."""

    # scratch: fresh V_psi, psi and denoiser (encoder copied from the generator U-Net), as the paper
    # trains its segmenter; validator: start from the trained validator's weights (fine-tuning)
    init: Literal["scratch", "validator"] = "scratch"
    lr: float = Field(1e-3, gt=0)  # AdamW peak lr (train_validator's; the U-Net's `lr` is not used)
    single_step_fraction: float = Field(0.5, ge=0, le=1)  # share of samples at the single-step timestep
    lambda_latent: float = Field(1.0, ge=0)  # eq. 12 weight of |z0 - z0_hat|_1
    lambda_dice: float = Field(1.0, ge=0)  # eq. 12 weight of the Dice term
    noise_seed: int = Field(0, ge=0)  # seed of the fixed z_T of single-step inference


class TrainSegmenterConfig(OptimConfig):
    """`train_segmenter`: downstream segmenters over augmentation variants × ratios × seeds."""

    # --- what `dvc repro` trains (DVC matrix: runs × seeds) ---
    runs: list[str] = Field(
        default_factory=lambda: ["none", "standard", "copypaste", "pseudolabel", "diffaug"], min_length=1
    )  # a variant (ratio from synthetic_ratio) or '<variant>-r<ratio>'; paper sweep 0.5, 1, 2, 3, 5 (best 3)
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1)  # >= 5 for the full comparison (params/full_comparison.yaml)

    # --- network ---
    # unet: MONAI U-Net (the baseline); latent: the validator's latent single-step network
    # (the paper's own segmenter; needs data/generator and data/validator, see `latent` below)
    architecture: Literal["unet", "latent"] = "unet"
    channels: list[int] = Field(default_factory=lambda: [16, 32, 64, 128, 256], min_length=2)  # MONAI UNet widths per level
    num_res_units: int = Field(0, ge=0)  # residual units per MONAI UNet level
    norm: Literal["batch", "instance"] = "batch"  # normalisation after every convolution
    # activation after every normalisation: prelu is MONAI's default; relu computes the same kind
    # of network without PReLU's per-channel slope, whose backward pass is slow on a CPU
    act: Literal["prelu", "relu", "leakyrelu"] = "prelu"
    # unet: feed each batch in the channels-last memory layout (N, H, W, C strides), in which
    # oneDNN's CPU convolutions run without reordering: the same network and loss, rounded
    # differently; 1.4x per step for this batch-norm U-Net on 2 cores, 0.87-0.99x for the phantom's
    # instance-norm one (docs/segmenter.md); false: NCHW
    channels_last: bool = True

    # --- budget: optimiser steps, each `batch_size` real pairs (+ extra pairs on top) ---
    steps: int = Field(1500, ge=1)
    batch_size: int = Field(16, ge=1)
    lr: float = Field(1e-3, gt=0)
    min_lr_ratio: float = Field(0.0, ge=0, le=1)
    warmup_steps: int = Field(50, ge=0)
    weight_decay: float = Field(1e-4, ge=0)
    grad_clip: float = Field(0.0, ge=0)
    dice_weight: float = Field(1.0, ge=0)  # loss = cross-entropy + dice_weight * soft Dice (per sample)
    # > 0: the run validates and keeps an exponential moving average of its weights (batch-norm
    # statistics included), updated every step with this decay; 0 = the weights as trained
    ema_decay: float = Field(0.0, ge=0, lt=1)

    # --- model selection on a validation part of the real training split ---
    # best: the weights of the validation step with the best Dice are the run's model; last: the
    # last step's (validation, when there is a part, is still scored and logged). A validation part
    # of a few videos can pick steps worse than the last one at long budgets (docs/segmenter.md).
    select: Literal["best", "last"] = "best"
    # share of the real training frames held out (whole sequences); 0 (select last only): every
    # real frame trains and nothing is validated
    val_fraction: float = Field(0.2, ge=0, lt=1)
    eval_every: int = Field(100, ge=1)  # steps between validations
    checkpoint_every: int = Field(250, ge=1)  # steps between resumable checkpoints
    log_every: int = Field(25, ge=1)  # steps between dvclive points

    # --- extra pairs (copypaste / diffaug) ---
    # extra pairs = round(synthetic_ratio x N_real) for the specs without their own `-r<ratio>`
    synthetic_ratio: float = Field(1.0, gt=0)
    # Share of each batch that is synthetic: n_syn = round(batch_size * s / (1 - s)) added to the
    # batch_size real samples. Paper-like proportional mixing would be s = ratio / (1 + ratio).
    synthetic_share: float = Field(0.2, ge=0, lt=1)
    synthetic_loss_weight: float = Field(1.0, ge=0)  # per-sample loss weight of extra pairs (real = 1)
    weight_by_gate_iou: bool = False  # diffaug: also multiply by the gate's IoU (accepted.csv `iou`) as a soft weight
    # diffaug: background pixels within this many px of a synthetic pair's lesion are left out of
    # the loss. A painted lesion's edge (the feathered blend, the generator's 4-px latent cells) is
    # not where its mask says; calling lesion-looking pixels background teaches the segmenter to
    # under-segment small lesions (evaluate's label fidelity, docs/segmenter.md). 0 = off.
    # architecture unet only: the latent network's loss is eq. 12 on whole masks.
    ignore_band: int = Field(0, ge=0)
    real_only_steps: int = Field(0, ge=0)  # two-phase schedule: the last N steps use real pairs only
    # diffaug with no accepted samples: "warn" trains on real + standard only and records it;
    # "error" stops with a one-line message.
    on_empty_synthetic: Literal["warn", "error"] = "warn"

    augment: StandardAugmentConfig = Field(default_factory=StandardAugmentConfig)
    copypaste: CopyPasteConfig = Field(default_factory=CopyPasteConfig)
    pseudolabel: PseudolabelConfig = Field(default_factory=PseudolabelConfig)
    latent: LatentSegmenterConfig = Field(default_factory=LatentSegmenterConfig)

    eval_batch_size: int = Field(64, ge=1)  # images per forward pass at inference

    @field_validator("runs")
    @classmethod
    def _check_runs(cls, runs: list[str]) -> list[str]:
        for spec in runs:
            parse_run_spec(spec)
        if len(set(runs)) != len(runs) or len({run_group(s) for s in runs}) != len(runs):
            raise ValueError("runs must not repeat an entry (standard and standard-r0 are the same run)")
        return runs

    @field_validator("seeds")
    @classmethod
    def _check_seeds(cls, seeds: list[int]) -> list[int]:
        if any(s < 0 for s in seeds) or len(set(seeds)) != len(seeds):
            raise ValueError("seeds must be distinct integers >= 0")
        return seeds

    @model_validator(mode="after")
    def _check(self) -> TrainSegmenterConfig:
        if self.real_only_steps >= self.steps and self.real_only_steps > 0:
            raise ValueError(f"real_only_steps ({self.real_only_steps}) must be < steps ({self.steps})")
        if self.val_fraction == 0 and self.select == "best":
            raise ValueError("val_fraction 0 leaves no validation frames to select a step on; "
                             "set select: last or val_fraction > 0")
        return self
