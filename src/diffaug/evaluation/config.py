"""`evaluate` section of params.yaml: clinical metrics, lesion-level detection, significance
tests and synthetic-quality metrics (the paper's tables 2, 3, 5 and 7)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from diffaug.config import Section
from diffaug.training.config import OptimConfig


class C2STConfig(OptimConfig):
    """Classifier two-sample test: a small CNN told to separate real from synthetic lesion crops;
    its held-out ROC AUC is a realism score that needs no pretrained weights (docs/evaluation.md).
    The optimisation keys are the trainer's (`OptimConfig`), with defaults for this tiny network."""

    enabled: bool = True  # false = skip the test (c2st_* null with the reason)
    folds: int = Field(5, ge=2, le=20)  # stratified cross-validation folds; each set needs at least this many crops
    crop_size: int = Field(32, ge=16, le=128)  # crops resized to this side for the CNN (three 2x poolings)
    width: int = Field(8, ge=4, le=128)  # channels of the first conv block (doubled twice)
    max_per_class: int = Field(256, ge=2)  # at most this many real and synthetic crops each (seeded); bounds the cost
    steps: int = Field(100, ge=1)  # optimiser steps per fold
    batch_size: int = Field(32, ge=2)  # crops per step (BatchNorm needs at least 2)
    lr: float = Field(2e-3, gt=0)  # peak AdamW learning rate (cosine to min_lr_ratio x lr)

    @model_validator(mode="after")
    def _enough_per_fold(self) -> C2STConfig:
        if self.max_per_class < self.folds:
            raise ValueError(f"max_per_class ({self.max_per_class}) must be >= folds ({self.folds}): every fold needs a crop")
        return self


class SyntheticQualityConfig(Section):
    """Table 5: accepted vs rejected synthetic lesions against real lesion crops."""

    enabled: bool = True  # false = skip the synthetic-quality block (no gate output to read)
    crop_size: int = Field(64, ge=16, le=512)  # lesion crops are resized to this square side (pixels)
    crop_margin: float = Field(0.25, ge=0.0, le=2.0)  # bounding box grown by this fraction of its side on each side
    max_crops: int = Field(256, ge=2)  # at most this many crops per set (seeded sample), bounds LPIPS/FID time
    lpips_net: Literal["alex", "vgg", "squeeze"] = "alex"  # LPIPS backbone (the lpips package's default: alex)
    # torchvision state_dict (.pth) of the LPIPS backbone (alexnet / vgg16 / squeezenet1_1 ImageNet weights,
    # e.g. ~/.cache/torch/hub/checkpoints/alexnet-owt-7be5be79.pth); null = LPIPS reported unavailable
    lpips_weights: str | None = None
    lpips_pairs: int = Field(4, ge=1, le=64)  # real crops each synthetic crop is compared with (seeded); LPIPS = mean
    # torchvision inception_v3 state_dict (.pth, IMAGENET1K_V1, e.g. inception_v3_google-0cc3c7bd.pth);
    # null = FID reported unavailable. Features: the 2048-d pool layer, as the standard FID.
    fid_weights: str | None = None
    fid_image_size: int = Field(299, ge=75, le=512)  # crops resized to this for Inception (standard FID: 299)
    # realism without pretrained weights: classifier two-sample test, real vs synthetic crops (held-out ROC AUC)
    c2st: C2STConfig = C2STConfig()


class EvaluateConfig(Section):
    """`evaluate`: score every trained segmenter on the real test split and compare variants."""

    batch_size: int = Field(32, ge=1)  # test images per forward pass when predicting
    # Test-time views: each segmenter's class probabilities averaged over this many dihedral views of
    # a test image (1 = the image as it is; 2 adds the left-right flip, 4 the 180° turn and the
    # up-down flip, which the standard augmentation's flips cover; 8 the quarter turns too). Every
    # variant is scored the same way; the runs' own model selection uses the image as it is.
    views: Literal[1, 2, 4, 8] = 1
    # Lesion-level detection (table 3): a ground-truth lesion (connected component) is found when the
    # prediction covers at least this fraction of its pixels. The paper does not state its rule; 0.5 is
    # a common choice (any overlap would be ~0).
    detect_fraction: float = Field(0.5, gt=0.0, le=1.0)
    # A lesion is "small" when its area is below this fraction of the image; null = the fingerprint's
    # `small_area_frac` (prepare.small_area_frac, default 0.05). The paper's class is "< 5 mm"; see
    # docs/evaluation.md for the pixel-to-mm assumption.
    small_area_frac: float | None = Field(None, gt=0.0, lt=1.0)
    # Class index whose connected components are the lesions; null = the highest class (polyp: 1 = lesion;
    # fundus: 2 = cup).
    lesion_class: int | None = Field(None, ge=1)
    # Fundus "early glaucoma": images whose cup-to-disc ratio (manifest `cdr`) lies in [low, high]. Paper: 0.5-0.6.
    early_glaucoma_cdr: tuple[float, float] = (0.5, 0.6)
    min_lesions: int = Field(10, ge=1)  # a lesion-level FNR from fewer lesions than this is flagged as not meaningful
    # Significance: with >= 2 seeds per variant, a two-level bootstrap that resamples the paired
    # training runs (seeds) and the test images together gives the p-value and CI the verdict
    # reads; the Wilcoxon signed-rank test over test images of seed-averaged Dice is reported
    # beside it (p_value_images; with one seed it is the test, with a bootstrap CI over images).
    baseline: str = "standard"  # every augmentation is judged against this variant (never `none`)
    # false: test over test images only, as if the trained networks were fixed (they are not: a
    # retraining moves 5-seed differences by about 0.02 Dice on real frames, docs/evaluation.md)
    resample_runs: bool = True
    bootstrap_resamples: int = Field(2000, ge=100)  # bootstrap resamples for the CI (and the runs-and-images p-value)
    confidence: float = Field(0.95, gt=0.5, lt=1.0)  # CI level
    worst_cases: int = Field(4, ge=0, le=32)  # test images with the lowest Dice shown per variant in overlays
    synthetic: SyntheticQualityConfig = SyntheticQualityConfig()

    @model_validator(mode="after")
    def _cdr_range(self) -> EvaluateConfig:
        low, high = self.early_glaucoma_cdr
        if not 0.0 <= low < high <= 1.0:
            raise ValueError("early_glaucoma_cdr must be [low, high] with 0 <= low < high <= 1")
        return self
