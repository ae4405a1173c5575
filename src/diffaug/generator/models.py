"""The generator's models: VAE (eq. 1), 9-channel inpainting UNet ε_θ (eq. 5-6), scheduler
(eq. 2-3) and text encoder (eq. 4); building the tiny backbone, loading a pretrained one, and
saving / loading the trained generator folder.

Generator folder layout (docs/architecture.md): `vae/`, `unet/`, `scheduler/` written with
diffusers `save_pretrained` (safetensors), `diffaug_generator.json` (backbone, text encoder spec,
image size, family, prompt banks) and, for CLIP backbones, `text_encoder*/` + `tokenizer*/`.

Latent helpers shared with `generate`: `latent_mask`, `masked_image`, `inpaint_input` — the
UNet input of diffusers' inpainting pipelines is `cat([z_t, mask↓, z_masked])` along channels
(4 + 1 + 4 = 9). Pixels in [-1, 1] and the scaled VAE latents of eq. 1 are `diffaug.imaging`
and `diffaug.latents`, shared with the validator and the segmenter.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from diffaug.errors import InputError
from diffaug.generator.text import TextEncoder, detect_text_kind, load_text_encoder

META_FILE = "diffaug_generator.json"
INPAINT_CHANNELS = 9  # 4 noisy latents + 1 mask + 4 masked-image latents (SD inpainting)


@dataclass
class Generator:
    vae: Any  # diffusers AutoencoderKL
    unet: Any  # diffusers UNet2DConditionModel, in_channels 9
    scheduler: Any  # diffusers scheduler (training: DDPMScheduler)
    text: TextEncoder
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def vae_scale_factor(self) -> int:
        """Pixel -> latent downsampling factor f (SD: 8), read from the VAE config."""
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    @property
    def latent_channels(self) -> int:
        return int(self.vae.config.latent_channels)

    def added_cond_kwargs(self, prompts: list[str], height: int, width: int) -> dict[str, Any] | None:
        """SDXL's extra UNet conditioning (pooled text + size/crop time ids); None for SD 1.5/2/tiny."""
        if getattr(self.unet.config, "addition_embed_type", None) != "text_time":
            return None
        pooled = self.text.encode_pooled(prompts)
        # time ids: original size, crop top-left, target size (SDXL micro-conditioning).
        ids = torch.tensor([height, width, 0, 0, height, width], dtype=pooled.dtype, device=pooled.device)
        return {"text_embeds": pooled, "time_ids": ids.expand(len(prompts), -1)}


def check_inpainting(vae_config: Any, unet_config: Any, where: str | Path) -> None:
    """A generator needs a 9-channel UNet whose latent width matches the VAE's."""
    in_ch = int(unet_config.in_channels)
    if in_ch != INPAINT_CHANNELS:
        raise InputError(
            f"{where}: unet in_channels is {in_ch}, not {INPAINT_CHANNELS}; "
            "use an inpainting checkpoint (noisy latents + mask + masked-image latents)"
        )
    noisy = (in_ch - 1) // 2
    lat = int(vae_config.latent_channels)
    if lat != noisy or int(unet_config.out_channels) != lat:
        raise InputError(
            f"{where}: VAE latent_channels {lat} do not match the UNet's {noisy} noisy-latent channels; "
            "use a VAE and UNet from the same checkpoint"
        )


def train_scheduler(num_train_timesteps: int = 1000, prediction_type: str = "epsilon",
                    beta_schedule: str = "scaled_linear", beta_start: float = 0.00085, beta_end: float = 0.012) -> Any:
    """The training noise schedule; the defaults are SD's (scaled-linear β 0.00085 → 0.012)."""
    from diffusers import DDPMScheduler

    return DDPMScheduler(
        num_train_timesteps=num_train_timesteps,
        beta_schedule=beta_schedule,
        beta_start=beta_start,
        beta_end=beta_end,
        prediction_type=prediction_type,
        clip_sample=False,
        steps_offset=1,
    )


def build_tiny_vae(cfg: Any, image_size: int) -> Any:
    """Small AutoencoderKL from `finetune_generator.vae` (f = 2**(levels-1))."""
    from diffusers import AutoencoderKL

    n = len(cfg.block_out_channels)
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * n,
        up_block_types=("UpDecoderBlock2D",) * n,
        block_out_channels=tuple(cfg.block_out_channels),
        layers_per_block=cfg.layers_per_block,
        latent_channels=cfg.latent_channels,
        norm_num_groups=cfg.norm_num_groups,
        sample_size=image_size,
        scaling_factor=1.0,  # re-estimated after phase (a) as 1/std of the latents (how SD got 0.18215)
    )


def build_tiny_unet(cfg: Any, latent_channels: int, latent_size: int, cross_attention_dim: int) -> Any:
    """Small 9-channel UNet2DConditionModel; the deepest `cross_attention_levels` levels attend to text."""
    from diffusers import UNet2DConditionModel

    n = len(cfg.block_out_channels)
    k = min(cfg.cross_attention_levels, n)
    down = tuple("CrossAttnDownBlock2D" if i >= n - k else "DownBlock2D" for i in range(n))
    up = tuple("CrossAttnUpBlock2D" if i < k else "UpBlock2D" for i in range(n))
    return UNet2DConditionModel(
        sample_size=latent_size,
        in_channels=2 * latent_channels + 1,
        out_channels=latent_channels,
        down_block_types=down,
        up_block_types=up,
        block_out_channels=tuple(cfg.block_out_channels),
        layers_per_block=cfg.layers_per_block,
        attention_head_dim=cfg.attention_head_dim,
        norm_num_groups=cfg.norm_num_groups,
        cross_attention_dim=cross_attention_dim,
    )


def build_backbone(cfg: Any, image_size: int, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> Generator:
    """The starting point of training: tiny models from params, or a pretrained inpainting checkpoint.

    Pretrained: `vae/`, `unet/`, `scheduler/` (noise schedule only; training always uses a
    DDPMScheduler built from its config) and the checkpoint's own text encoder(s), from a local
    folder or hub id at `cfg.revision` (offline: the hub cache must already hold it).
    """
    if cfg.backbone == "tiny":
        text = load_text_encoder({"kind": "minilm", "max_length": cfg.text_max_length}, device=device, dtype=dtype)
        vae = build_tiny_vae(cfg.vae, image_size)
        factor = 2 ** (len(vae.config.block_out_channels) - 1)
        unet = build_tiny_unet(cfg.unet, cfg.vae.latent_channels, image_size // factor, text.dim)
        meta = {"backbone": "tiny", "revision": ""}
        ptype = "v_prediction" if cfg.prediction_type == "auto" else cfg.prediction_type
        sched = train_scheduler(cfg.num_train_timesteps, ptype, cfg.beta_schedule, cfg.beta_start, cfg.beta_end)
        return Generator(vae, unet, sched, text, meta)

    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel

    source = cfg.backbone
    local = Path(source)
    looks_local = local.is_absolute() or source.startswith(".") or local.exists()
    if looks_local and not local.is_dir():
        raise InputError(f"{source}: backbone checkpoint folder not found; set finetune_generator.backbone to a diffusers inpainting checkpoint or 'tiny'")
    kw: dict[str, Any] = {}
    if cfg.revision:
        kw["revision"] = cfg.revision
    if cfg.variant:
        kw["variant"] = cfg.variant
    try:
        unet_config = UNet2DConditionModel.load_config(source, subfolder="unet", **{k: v for k, v in kw.items() if k == "revision"})
        vae_config = AutoencoderKL.load_config(source, subfolder="vae", **{k: v for k, v in kw.items() if k == "revision"})
    except (OSError, ValueError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputError(f"{source}: cannot read unet/ or vae/ config ({first}); check finetune_generator.backbone and revision") from None
    check_inpainting(_Cfg(vae_config), _Cfg(unet_config), Path(source) / "unet" / "config.json")
    vae = AutoencoderKL.from_pretrained(source, subfolder="vae", **kw)
    unet = UNet2DConditionModel.from_pretrained(source, subfolder="unet", **kw)
    sched_cfg = DDPMScheduler.load_config(source, subfolder="scheduler", **{k: v for k, v in kw.items() if k == "revision"})
    ptype = sched_cfg.get("prediction_type", "epsilon") if cfg.prediction_type == "auto" else cfg.prediction_type
    scheduler = DDPMScheduler.from_config(sched_cfg, prediction_type=ptype)
    kind = detect_text_kind(source, cfg.revision or None)
    text = load_text_encoder({"kind": kind}, source, revision=cfg.revision or None, device=device, dtype=dtype)
    if text.dim != int(unet.config.cross_attention_dim):
        raise InputError(f"{source}: text encoder width {text.dim} != unet cross_attention_dim {unet.config.cross_attention_dim}")
    meta = {"backbone": source, "revision": cfg.revision}
    return Generator(vae, unet, scheduler, text, meta)


class _Cfg:
    """Attribute access to a config dict (diffusers load_config returns dicts)."""

    def __init__(self, d: dict[str, Any]) -> None:
        self.__dict__.update(d)


def save_generator(gen: Generator, folder: str | Path) -> None:
    """Write the generator folder (call inside `diffaug.io.atomic_dir`)."""
    folder = Path(folder)
    gen.vae.save_pretrained(folder / "vae", safe_serialization=True)
    gen.unet.save_pretrained(folder / "unet", safe_serialization=True)
    gen.scheduler.save_pretrained(folder / "scheduler")
    gen.text.save_pretrained(folder)
    meta = dict(gen.meta)
    meta["text_encoder"] = gen.text.spec()
    (folder / META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")


def load_generator(path: str | Path, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> Generator:
    """Load a trained generator folder; checks it is a 9-channel inpainting model whose VAE
    latents match the UNet (one-line InputError otherwise)."""
    import diffusers
    from diffusers import AutoencoderKL, UNet2DConditionModel

    path = Path(path)
    if not path.is_dir():
        raise InputError(f"{path}: generator folder not found; run `diffaug finetune_generator` (or `dvc repro finetune_generator`) first")
    for sub in ("vae/config.json", "unet/config.json", "scheduler/scheduler_config.json", META_FILE):
        if not (path / sub).is_file():
            raise InputError(f"{path / sub}: missing from the generator folder; re-run `diffaug finetune_generator`")
    try:
        meta = json.loads((path / META_FILE).read_text())
        unet_cfg = json.loads((path / "unet/config.json").read_text())
        vae_cfg = json.loads((path / "vae/config.json").read_text())
    except json.JSONDecodeError:
        raise InputError(f"{path}: a config file of the generator is not valid JSON; re-run `diffaug finetune_generator`") from None
    check_inpainting(_Cfg(vae_cfg), _Cfg(unet_cfg), path / "unet" / "config.json")
    vae = _load_part(AutoencoderKL, path / "vae", dtype).to(device).eval()
    unet = _load_part(UNet2DConditionModel, path / "unet", dtype).to(device).eval()
    sched_cfg = json.loads((path / "scheduler/scheduler_config.json").read_text())
    cls = getattr(diffusers, sched_cfg.get("_class_name", "DDPMScheduler"))
    scheduler = cls.from_pretrained(path / "scheduler")
    text = load_text_encoder(meta.get("text_encoder", {}), path, device=device, dtype=dtype)
    if text.dim != int(unet.config.cross_attention_dim):
        raise InputError(f"{path}: text encoder width {text.dim} != unet cross_attention_dim {unet.config.cross_attention_dim}")
    return Generator(vae, unet, scheduler, text, meta)


def _load_part(cls: Any, folder: Path, dtype: torch.dtype) -> Any:
    """`from_pretrained` of vae/ or unet/; a missing, truncated or corrupt weights file is one line."""
    from safetensors import SafetensorError, safe_open

    from diffaug.io import weights_error

    fix = "rerun dvc repro finetune_generator"
    weights = sorted(folder.glob("*.safetensors"))
    if not weights:
        raise InputError(f"{folder}: no *.safetensors weights in the generator folder; {fix}")
    try:
        # torch_dtype at load (not .to(dtype) after) so diffusers keeps the modules it needs in float32
        return cls.from_pretrained(folder, torch_dtype=dtype)
    except (OSError, SafetensorError) as exc:  # diffusers wraps safetensors' error in an OSError
        bad = folder
        for w in weights:  # name the broken shard (large UNets are saved in several files)
            try:
                with safe_open(str(w), "pt"):
                    pass
            except (SafetensorError, OSError):
                bad = w
                break
        raise weights_error(bad, exc, fix) from None


# ---- latent helpers (shared by training and generation) -------------------------------------

def latent_mask(mask: torch.Tensor, factor: int) -> torch.Tensor:
    """(N, 1, H, W) {0,1} -> (N, 1, H/f, W/f): a latent cell is 'inside' if any pixel is (max-pool),
    so small lesions survive the downsampling. Training and generation must use this same rule."""
    return F.max_pool2d(mask.float(), kernel_size=factor, stride=factor)


def masked_image(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Image with the region to paint blanked to 0 (mid-grey in [-1, 1]), as diffusers does."""
    return x * (mask < 0.5).to(x.dtype)


def inpaint_input(z_t: torch.Tensor, mask_lat: torch.Tensor, z_masked: torch.Tensor) -> torch.Tensor:
    """UNet input (N, 9, h, w) = [noisy latents | mask | masked-image latents]."""
    return torch.cat([z_t, mask_lat.to(z_t.dtype), z_masked], dim=1)
