"""Params of the generator stages: `finetune_generator` (and `generate`, below).

`FinetuneGeneratorConfig` chooses the backbone (a tiny VAE + 9-channel inpainting UNet built
from these params and trained from scratch, or a pretrained diffusers inpainting checkpoint that
the same code fine-tunes), the three training phases and the prompt banks. The prompt banks live
here (`finetune_generator.prompts`) because training captions and generation prompts must come
from the same bank; `generate` declares a params dep on that key.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from diffaug.config import Section
from diffaug.training.config import OptimConfig
from diffaug.zoom import ZoomConfig


def _non_empty(values: list[str], what: str) -> list[str]:
    cleaned = [v.strip() for v in values if v and v.strip()]
    if not cleaned:
        raise ValueError(f"{what} must list at least one non-empty prompt")
    return cleaned


class PolypPromptBank(Section):
    """Polyp prompts: morphology (by size / flatness) × surface (by contrast) × vascular pattern.

    A caption is "<morphology>, <surface>, <vascular>". The morphology list is chosen by what is
    known about the lesion so that captions never contradict the mask.
    """

    family: Literal["polyp"] = "polyp"
    morphology_small: list[str] = [  # lesions of size class "small" (paper: < 5 mm)
        "small sessile polyp under 5mm",
        "diminutive polyp",
    ]
    morphology_medium: list[str] = [  # medium lesions (paper's "sessile polyp 5-10mm")
        "sessile polyp 5-10mm",
        "semi-pedunculated polyp",
    ]
    morphology_large: list[str] = [  # large lesions
        "pedunculated polyp with long stalk",
        "large sessile polyp over 10mm",
    ]
    morphology_flat: list[str] = [  # flat lesions, any size (paper: "flat lesion with unclear borders")
        "flat lesion with unclear borders",
        "slightly elevated flat polyp",
    ]
    surface_smooth: list[str] = ["smooth surface"]  # low-contrast lesions
    surface_irregular: list[str] = ["irregular lobulated surface"]  # high-contrast lesions
    vascular: list[str] = [  # vascular pattern, drawn uniformly
        "visible capillary pattern",
        "regular vascular pattern",
    ]
    basic: str = "colon polyp"  # the single prompt of the "without diverse prompts" ablation (table 6)
    generic: str = "colonoscopy image of colon mucosa"  # caption of self-supervised pretraining (phase b)
    negative: list[str] = ["healthy mucosa", "normal colon tissue"]  # CFG unconditional branch (eq. 8)

    @field_validator(
        "morphology_small", "morphology_medium", "morphology_large", "morphology_flat",
        "surface_smooth", "surface_irregular", "vascular", "negative",
    )
    @classmethod
    def _check_non_empty(cls, v: list[str], info) -> list[str]:
        return _non_empty(v, info.field_name)


class FundusPromptBank(Section):
    """Glaucoma prompts: cup-to-disc ratio stage × rim thinning × RNFL defect.

    A caption is "<cdr stage>, <rim>, <rnfl>"; the CDR stage is chosen from the lesion's own
    cup-to-disc ratio (manifest `cdr`), so an early-glaucoma cup is never called "advanced".
    """

    family: Literal["fundus"] = "fundus"
    cdr_early: list[str] = [  # CDR < cdr_moderate_from (paper's hard case: 0.5-0.6)
        "early glaucomatous cupping",
        "cup-to-disc ratio 0.5",
    ]
    cdr_moderate: list[str] = ["enlarged cup-to-disc ratio 0.7", "moderate glaucomatous cupping"]
    cdr_advanced: list[str] = ["advanced rim loss with vessel displacement", "cup-to-disc ratio 0.9"]
    cdr_moderate_from: float = Field(0.6, gt=0, lt=1)  # CDR at which "moderate" starts
    cdr_advanced_from: float = Field(0.8, gt=0, lt=1)  # CDR at which "advanced" starts
    rim: list[str] = ["inferior rim thinning", "superior rim thinning"]
    rnfl: list[str] = ["RNFL defect", "wedge-shaped RNFL defect"]
    basic: str = "glaucomatous optic disc"  # single prompt of the "without diverse prompts" ablation
    generic: str = "fundus photograph of the retina"  # phase-b caption
    negative: list[str] = ["normal optic disc", "healthy retina"]

    @field_validator("cdr_early", "cdr_moderate", "cdr_advanced", "rim", "rnfl", "negative")
    @classmethod
    def _check_non_empty(cls, v: list[str], info) -> list[str]:
        return _non_empty(v, info.field_name)

    @model_validator(mode="after")
    def _ordered(self) -> FundusPromptBank:
        if self.cdr_advanced_from <= self.cdr_moderate_from:
            raise ValueError("cdr_advanced_from must be greater than cdr_moderate_from")
        return self


PromptBank = PolypPromptBank | FundusPromptBank


class PromptBanks(Section):
    """One bank per image family (fingerprint.json `family`)."""

    polyp: PolypPromptBank = PolypPromptBank()
    fundus: FundusPromptBank = FundusPromptBank()

    def for_family(self, family: str) -> PromptBank:
        from diffaug.errors import InputError

        if family not in ("polyp", "fundus"):
            raise InputError(f"fingerprint family '{family}' has no prompt bank; expected polyp or fundus")
        return getattr(self, family)


class TinyVAEConfig(Section):
    """The tiny AutoencoderKL (backbone: tiny). SD's VAE: (128, 256, 512, 512), f = 8."""

    block_out_channels: list[int] = Field([16, 32, 32], min_length=2)  # f = 2**(len-1) = 4: 64 px -> 16 latent
    layers_per_block: int = Field(1, ge=1)
    latent_channels: int = Field(4, ge=1)  # SD: 4 (eq. 1: 256x256x3 -> 32x32x4)
    norm_num_groups: int = Field(8, ge=1)  # must divide every block width


class TinyUNetConfig(Section):
    """The tiny 9-channel UNet2DConditionModel (backbone: tiny); cross_attention_dim = text dim."""

    block_out_channels: list[int] = Field([32, 64, 64], min_length=2)
    layers_per_block: int = Field(1, ge=1)
    attention_head_dim: int = Field(8, ge=1)
    norm_num_groups: int = Field(16, ge=1)
    cross_attention_levels: int = Field(2, ge=0)  # how many of the deepest levels use cross-attention


class PhaseConfig(OptimConfig):
    """One optimisation phase. Paper (fine-tuning): AdamW lr 1e-5, batch 8, 50,000 steps."""

    steps: int = Field(ge=0)  # optimizer steps; 0 skips the phase
    # at least this many passes over the phase's data: steps = max(steps, ceil(epochs x N / (batch x
    # accum))), so more (unlabelled) frames get more steps; 0 = `steps` whatever N is
    epochs: float = Field(0.0, ge=0)
    lr: float = Field(gt=0)  # peak learning rate (cosine decay to lr * min_lr_ratio after warmup)
    batch_size: int = Field(8, ge=1)  # per process and per accumulation micro-step


class VAEPhaseConfig(PhaseConfig):
    """Phase (a): VAE on every frame prepare has (train, normals, unlabelled). L1 + kl_weight·KL (+ disc_weight·hinge GAN)."""

    steps: int = Field(400, ge=0)
    lr: float = Field(2e-3, gt=0)
    kl_weight: float = Field(1e-6, ge=0)  # SD's VAE: 1e-6
    l2_weight: float = Field(0.0, ge=0)  # optional extra MSE term
    disc_weight: float = Field(0.0, ge=0)  # patch-discriminator adversarial weight; 0 = off
    disc_start: int = Field(0, ge=0)  # step at which the discriminator starts
    disc_lr: float = Field(1e-3, gt=0)
    disc_betas: list[float] = Field([0.5, 0.9], min_length=2, max_length=2)  # Adam betas of the discriminator (GAN practice)
    scale_frames: int = Field(256, ge=1)  # frames whose latents set the VAE scaling factor (1/std)


class UNetPhaseConfig(PhaseConfig):
    """Phases (b) self-supervised inpainting pretraining and (c) lesion fine-tuning."""

    steps: int = Field(200, ge=0)
    lr: float = Field(1e-3, gt=0)


class FinetuneGeneratorConfig(Section):
    """`finetune_generator`: train/fine-tune the text-conditioned latent inpainting model."""

    backbone: str = "tiny"  # "tiny", or a diffusers inpainting checkpoint: hub id or local folder
    revision: str = ""  # hub revision (commit) of a pretrained backbone, pinned for reproducibility
    variant: str = ""  # weights variant of a pretrained backbone (e.g. "fp16"), "" = default
    image_size: int = Field(0, ge=0)  # training resolution; 0 = the prepared image size (paper: 256)
    text_max_length: int = Field(24, ge=4)  # tokens per prompt for the tiny (MiniLM) text encoder
    vae: TinyVAEConfig = TinyVAEConfig()
    unet: TinyUNetConfig = TinyUNetConfig()
    num_train_timesteps: int = Field(1000, ge=10)  # DDPM T of the tiny scheduler (SD: 1000)
    # noise schedule of the tiny scheduler (SD's: scaled_linear 0.00085 -> 0.012); a pretrained
    # backbone keeps the schedule it was trained with
    beta_schedule: Literal["scaled_linear", "linear", "squaredcos_cap_v2"] = "scaled_linear"
    beta_start: float = Field(0.00085, gt=0, lt=1)
    beta_end: float = Field(0.012, gt=0, lt=1)
    # eq. 7 predicts the noise (epsilon; SD 1.5/2 inpainting, SDXL). v_prediction (SD 2-768 style)
    # makes the clean latent outside the mask an identity map at high noise, easier for a tiny
    # UNet trained for a few hundred steps; samplers read it from scheduler/ config.
    # auto = v_prediction for `tiny` (it keeps the tissue outside the mask far better after the
    # default training; docs/training.md), the checkpoint's own type for pretrained.
    prediction_type: Literal["auto", "epsilon", "v_prediction"] = "auto"
    vae_phase: VAEPhaseConfig = VAEPhaseConfig()  # (a)
    pretrain_phase: UNetPhaseConfig = UNetPhaseConfig(steps=300, lr=1e-3)  # (b), random masks
    finetune_phase: UNetPhaseConfig = UNetPhaseConfig(steps=400, lr=5e-4)  # (c), lesion masks + captions
    train_vae: bool = True  # run phase (a); pretrained backbones usually keep their VAE (false)
    pretrain_unet: bool = True  # run phase (b); pretrained inpainting backbones may skip it
    lambda_preserve: float = Field(1.0, ge=0)  # λ_preserve of eq. 7
    snr_gamma: float = Field(5.0, gt=0)  # clamp of the SNR weight of the preservation term (min-SNR-γ)
    cond_dropout: float = Field(0.1, ge=0, lt=1)  # prompt -> "" with this probability (CFG, eq. 8)
    checkpoint_every: int = Field(50, ge=1)  # optimizer steps between resumable checkpoints
    log_every: int = Field(10, ge=1)  # optimizer steps between dvclive points
    prompts: PromptBanks = PromptBanks()


class PlacementConfig(Section):
    """Where and how a bank mask is placed on a normal background (`generate.placement`)."""

    scale_range: list[float] = Field([0.7, 1.3], min_length=2, max_length=2)  # isotropic scale of the bank shape
    max_rotation_deg: float = Field(180.0, ge=0, le=180)  # rotation drawn uniformly in ±this
    flip: bool = True  # random horizontal flip of the shape
    fov_threshold: float = Field(0.08, ge=0, lt=1)  # brightness (0-1) below which a pixel is the black endoscope border
    fov_margin: int = Field(2, ge=0)  # pixels a new lesion keeps from the field-of-view edge
    max_tries: int = Field(30, ge=1)  # placement attempts before the shape is shrunk and tried again
    cdr_range: list[float] = Field([0.6, 0.85], min_length=2, max_length=2)  # fundus: target vertical cup-to-disc ratio of the enlarged cup (glaucoma: > 0.6)
    cup_jitter: float = Field(0.1, ge=0, le=0.5)  # fundus: cup centre offset from the disc centre, fraction of the disc radius

    @field_validator("scale_range", "cdr_range")
    @classmethod
    def _ordered_range(cls, v: list[float], info) -> list[float]:
        lo, hi = v
        if not 0 < lo <= hi:
            raise ValueError(f"{info.field_name} must be [low, high] with 0 < low <= high")
        if info.field_name == "cdr_range" and hi >= 1:
            raise ValueError("cdr_range must stay below 1 (the cup lies inside the disc)")
        return v


class NormalsConfig(Section):
    """How the lesion-free backgrounds are made (`generate.normals`; diffaug.generator.normals)."""

    # classical: keep prepare's fill; generator: repaint the hole of each classically filled
    # background (prepare's `inpainted:` normals) with the generator (on CVC the tiny generator
    # paints lesion-like blobs there: docs/backgrounds.md). Lesion-free frames stay as they are.
    method: Literal["generator", "classical"] = "classical"
    prompt: str = ""  # caption of the removal; "" = the family's generic (phase-b) caption
    # > 1: classifier-free guidance away from the empty prompt, which phase (c)'s conditioning
    # dropout ties to lesion masks; 1 = the caption's branch alone
    guidance_scale: float = Field(1.0, ge=1)
    preview: int = Field(6, ge=1)  # rows of backgrounds.png (frame | classical fill | used background)


class GenerateConfig(Section):
    """`generate`: paint lesions onto every normal background.

    Each background gets `variants` samples drawn from prompt × mask × seed; every sample's seed
    is derived from base.seed, the background index and the variant index (never from the
    process rank), so sharding over GPUs gives the same result as one process.
    """

    variants: int = Field(4, ge=1)  # samples per normal background (paper: 5-10)
    steps: int = Field(20, ge=1)  # denoising steps (paper: 50)
    guidance_scale: float = Field(4.0, ge=1)  # CFG scale s of eq. 8 (paper: 7.5); 1 = no guidance
    scheduler: Literal["ddim", "dpmsolver++"] = "ddim"  # sampler built from the generator's scheduler config
    batch_size: int = Field(8, ge=1)  # samples per denoising call (variants of consecutive backgrounds packed together)
    text_guidance: bool = True  # ablation (table 6): false = empty prompt and no CFG
    single_prompt: bool = False  # ablation (table 6): the bank's one `basic` prompt instead of the diverse bank
    max_backgrounds: int = Field(0, ge=0)  # use only the first N normal backgrounds; 0 = all
    feather_sigma: float = Field(1.0, ge=0)  # Gaussian sigma (px) of the composite's soft edge outside the mask
    feather_dilate: int = Field(1, ge=0)  # pixels the soft edge extends beyond the mask
    trace_unet: bool = True  # TorchScript-trace + freeze the UNet per batch shape (same numbers, less per-layer overhead)
    # what the painted region starts from: noise (eq. 8, the paper) | real_lesion: the bank shape's
    # own training lesion, warped with the shape, noised to `strength` of the schedule and
    # repainted from there (SDEdit; docs/backgrounds.md, "Lesions started from real tissue")
    init: Literal["noise", "real_lesion"] = "noise"
    strength: float = Field(1.0, gt=0, le=1)  # share of the denoising steps run from the init (1 = from pure noise)
    placement: PlacementConfig = PlacementConfig()
    # small lesions painted (and checked by the gate) in a zoomed context window (diffaug.zoom);
    # finetune_generator and train_validator read it too, so they learn that scale
    zoom: ZoomConfig = ZoomConfig()
    normals: NormalsConfig = NormalsConfig()
    compare_stock: bool = True  # time diffusers' StableDiffusionInpaintPipeline side by side (metrics ratio)
    stock_backgrounds: int = Field(4, ge=1)  # backgrounds used for that comparison (kept small: it costs time)
    preview_samples: int = Field(8, ge=1)  # rows of the preview grid (background | mask | result)

    @model_validator(mode="after")
    def _init_strength(self) -> GenerateConfig:
        if self.init == "noise" and self.strength < 1:
            raise ValueError(f"strength {self.strength} < 1 needs an init image; set init: real_lesion (or strength: 1)")
        if self.init == "real_lesion" and self.strength == 1:
            raise ValueError("init: real_lesion with strength 1 starts from pure noise and never uses the lesion; set strength < 1")
        return self
