"""Params of the `train_validator` and `gate` stages.

The paper trains an SD-family segmentation U-Net on 32×32×4 latents for 100k iterations with
AdamW lr 1e-5 → 1e-6 (cosine), batch 4 × 4 accumulation; the tiny CPU defaults below train a
small network from (mostly) scratch, so they use a larger lr and far fewer steps.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from diffaug.config import Section
from diffaug.evaluation.config import C2STConfig
from diffaug.training.config import OptimConfig


class TrainValidatorConfig(OptimConfig):
    """`train_validator`: the latent-space segmentation network of eq. 9–13 and its training."""

    # --- data ---
    val_fraction: float = Field(0.2, gt=0, lt=1)  # share of the real train split held out for validation
    augment: bool = True  # flips / 90° rotations applied jointly to image and mask (standard augmentation)
    # copies of every training pair (and zoomed window) moved by train_segmenter's standard
    # augmentation (rotation, scale, translation, elastic, colour), encoded once into the latent cache
    augment_copies: int = Field(0, ge=0)
    # lesion-free windows (real tissue away from every annotation, resized to the frame) with empty
    # masks, this share of the training frames in number: without them the validator never sees a
    # frame without a lesion and draws one everywhere, which blinds the gate's background check
    # (diffaug.validator.backgrounds). 0 = none
    negative_share: float = Field(0.0, ge=0, le=4)

    # --- mask latents (eq. 10; D of eq. 12) ---
    # "learned": a light conv autoencoder for masks, fitted first (masks are not tissue images);
    # "vae": SDSeg's way, the generator's VAE on the mask replicated to 3 channels.
    mask_codec: Literal["learned", "vae"] = "learned"
    codec_channels: list[int] = Field(default_factory=lambda: [8, 16], min_length=1)  # widths of the learned mask codec
    mask_latent_channels: int = Field(4, ge=1)  # channels of the learned mask latent (the VAE codec uses the VAE's)
    codec_steps: int = Field(150, ge=0)  # optimisation steps fitting the learned mask codec
    codec_lr: float = Field(2e-3, gt=0)  # Adam lr of the mask codec (constant)
    codec_latent_noise: float = Field(0.1, ge=0)  # std of the noise on the codec latent while fitting: the decoder learns to tolerate z0_hat's error

    # --- network (eq. 9, 13 and the denoiser) ---
    vision_channels: int = Field(16, ge=1)  # width of the trainable vision encoder V_psi (eq. 9)
    vision_blocks: int = Field(2, ge=1)  # residual blocks in V_psi
    vision_levels: int = Field(1, ge=1)  # resolution levels of V_psi (U-shaped; > 1 widens its receptive field)
    fused_channels: int = Field(8, ge=1)  # channels of f_fused after the 1x1 projections (eq. 13)
    unet_block_out_channels: list[int] = Field(default_factory=lambda: [32, 64, 64], min_length=1)  # denoiser U-Net widths
    unet_layers_per_block: int = Field(1, ge=1)  # resnets per denoiser level
    unet_attention: bool = False  # self-attention in the lowest denoiser level (SD U-Nets have it; slow on CPU)
    norm_num_groups: int = Field(16, ge=1)  # GroupNorm groups; must divide the U-Net and V_psi widths
    init_from_generator: bool = True  # copy the generator U-Net's encoder tensors whose names and shapes match

    # --- diffusion (eq. 10, 11) ---
    num_train_timesteps: int = Field(1000, ge=2)  # T of the forward process (SD: 1000)
    beta_schedule: Literal["scaled_linear", "linear", "squaredcos_cap_v2"] = "scaled_linear"  # SD's schedule
    beta_start: float = Field(0.00085, gt=0, lt=1)  # SD's beta_1
    beta_end: float = Field(0.012, gt=0, lt=1)  # SD's beta_T
    # Timestep of single-step inference: at test time the mask latent is unknown, so the input z_t
    # must carry (almost) no information about z_0; only at the last timestep (sqrt(abar) ~ 0.07
    # with SD's schedule) does pure noise match what training saw. -1 = num_train_timesteps - 1.
    single_step_timestep: int = Field(-1, ge=-1)
    # What the denoiser U-Net outputs; both give eps_hat_seg for eq. 11/12. "epsilon" is the paper's;
    # "v_prediction" (diffusers/SD2 v-parameterisation) is well conditioned at the single-step timestep.
    prediction_type: Literal["epsilon", "v_prediction"] = "v_prediction"
    single_step_fraction: float = Field(0.5, ge=0, le=1)  # share of training samples drawn at that timestep (see docs)

    # --- objective eq. 12 (the paper gives no values for the lambdas) ---
    lambda_latent: float = Field(1.0, ge=0)  # weight of |z0 - z0_hat|_1 (eq. 11 estimate)
    lambda_dice: float = Field(1.0, ge=0)  # weight of Dice(D(z0_hat), M_gt)

    # --- optimisation (paper: AdamW (0.9, 0.999) wd 0.01, cosine 1e-5 -> 1e-6, batch 4x4, 100k it) ---
    steps: int = Field(2000, ge=1)  # optimiser steps
    batch_size: int = Field(16, ge=1)
    lr: float = Field(1e-3, gt=0)  # peak AdamW lr
    min_lr_ratio: float = Field(0.1, ge=0, le=1)  # cosine end as a fraction of lr (paper: 1e-6 / 1e-5)
    weight_decay: float = Field(0.01, ge=0)
    grad_clip: float = Field(0.0, ge=0)  # max gradient norm; 0 = none (the paper clips nothing)
    checkpoint_every: int = Field(100, ge=1)  # steps between resumable checkpoints
    log_every: int = Field(10, ge=1)  # steps between dvclive points

    # --- evaluation ---
    iterative_steps: int = Field(20, ge=1)  # T of iterative DDIM sampling (ablation "without latent estimation"; paper 50)
    eval_batch_size: int = Field(32, ge=1)
    speed_repeats: int = Field(15, ge=1)  # interleaved timed rounds (median) of single-step vs iterative
    # gate thresholds at which the validation frames' true masks (accepted?) and moved masks
    # (rejected?) are reported (metrics disc_accept_right_<th>, disc_reject_moved_<th>)
    report_thresholds: list[Annotated[float, Field(gt=0, lt=1)]] = Field(default_factory=lambda: [0.3, 0.5, 0.7])

    @model_validator(mode="after")
    def _check(self) -> TrainValidatorConfig:
        if self.single_step_timestep >= self.num_train_timesteps:
            raise ValueError(
                f"single_step_timestep must be < num_train_timesteps ({self.num_train_timesteps}) or -1"
            )
        if self.beta_end <= self.beta_start:
            raise ValueError("beta_end must be larger than beta_start")
        widths = [*self.unet_block_out_channels, self.vision_channels]
        bad = [w for w in widths if w % self.norm_num_groups]
        if bad:
            raise ValueError(f"norm_num_groups ({self.norm_num_groups}) must divide every width, not {bad[0]}")
        return self


class GateConfig(Section):
    """`gate`: keep a synthetic pair iff IoU(intended mask, predicted mask) > threshold (eq. 14)."""

    enabled: bool = True  # false accepts every sample (ablation "without validation", table 6)
    threshold: float = Field(0.7, gt=0, lt=1)  # theta_quality; paper 0.7 (its sweep: 0.5-0.9)
    mode: Literal["single_step", "iterative"] = "single_step"  # validator inference mode
    iterative_steps: int = Field(20, ge=1)  # DDIM steps when mode = iterative
    # Dihedral views whose class probabilities are averaged before the IoU (diffaug.validator.views):
    # 1 = the image as it is; 8 = all rotations/flips the validator trained on (square frames; 4 on
    # others); each view costs one more validator pass. It lifts small true masks over theta on real
    # frames (docs/validator.md, "Views"). train_validator reports its held-out acceptance this way too.
    views: Literal[1, 2, 4, 8] = 8
    # Two-class masks (fundus disc/cup): IoU per foreground class present in either mask, then the
    # mean ("mean_foreground"), or IoU of the union of foreground classes ("union").
    class_combine: Literal["mean_foreground", "union"] = "mean_foreground"
    batch_size: int = Field(32, ge=1)
    grid_samples: int = Field(6, ge=1)  # accepted and rejected samples shown in grid.png (each)
    histogram_bins: int = Field(20, ge=2)  # bins of iou.csv over [0, 1]
    # Background check (diffaug.validator.backgrounds): a background in which the validator finds lesion
    # pixels (outside the background's own annotation) on more than this share of the frame counts as
    # still holding lesion tissue (gate.json: background_residual_fraction)...
    background_max_lesion_frac: float = Field(0.01, ge=0, lt=1)
    # ...and with `background_reject` the samples painted on it are rejected. Off: the tiny validator
    # finds "lesion" in most lesion-free tissue too (docs/backgrounds.md).
    background_reject: bool = False
    # Realism criterion (diffaug.validator.realism): reject a sample whose classifier two-sample-test
    # rank against the training split's real lesions is above this (0.5 = as real-looking as a typical
    # real lesion, 1 = more synthetic-looking than all of them). null = off (keep it off unless it
    # improves downstream Dice).
    realism_max: float | None = Field(None, gt=0, le=1)
    realism: C2STConfig = C2STConfig()  # the test's classifier (as evaluate.synthetic.c2st)
