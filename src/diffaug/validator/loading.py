"""Loading what the validator is made of and the trained validator itself.

- the generator parts it needs, its frozen VAE and (for initialisation) its U-Net, read straight
  from the diffusers folders (`vae/`, `unet/` of data/generator/) with `from_pretrained`, offline;
- the trained network (`load_validator_net`: data/validator/, written by `save_pretrained`) and
  the network with its VAE ready for inference (`load_validator`).

A missing or broken folder is one-line InputError.
"""

from __future__ import annotations

from pathlib import Path

import torch

from diffaug.errors import InputError


def load_vae(generator_dir: str | Path):
    from diffusers import AutoencoderKL

    path = Path(generator_dir) / "vae"
    if not (path / "config.json").is_file():
        raise InputError(f"{path}: no VAE (config.json missing); run `dvc repro finetune_generator` first")
    try:
        vae = AutoencoderKL.from_pretrained(str(path), local_files_only=True)
    except (OSError, ValueError, RuntimeError) as exc:
        raise InputError(f"{path}: cannot load the VAE ({str(exc).splitlines()[0]}); rerun finetune_generator") from None
    return vae.eval().requires_grad_(False)


def load_unet_state(generator_dir: str | Path) -> dict[str, torch.Tensor]:
    from diffusers import UNet2DConditionModel

    path = Path(generator_dir) / "unet"
    if not (path / "config.json").is_file():
        raise InputError(f"{path}: no U-Net (config.json missing); run finetune_generator or set "
                         "train_validator.init_from_generator: false")
    try:
        unet = UNet2DConditionModel.from_pretrained(str(path), local_files_only=True)
    except (OSError, ValueError, RuntimeError) as exc:
        raise InputError(f"{path}: cannot load the U-Net ({str(exc).splitlines()[0]}); rerun finetune_generator") from None
    return {k: v.detach().clone() for k, v in unet.state_dict().items()}


def load_generator_parts(generator_dir: str | Path, need_unet: bool = True):
    """(vae, unet_state or None)."""
    return load_vae(generator_dir), (load_unet_state(generator_dir) if need_unet else None)


VALIDATOR_FIX = "rerun dvc repro train_validator"


def load_validator_net(path: str | Path, vae=None):
    """The trained `ValidatorNet` of `path` (config.json + diffusion_pytorch_model.safetensors),
    in eval mode on the CPU; with a VAE, first checked to belong to it (image latent channels
    and spatial factor)."""
    from diffaug.pretrained import load_pretrained, read_config
    from diffaug.validator.model import ValidatorNet, vae_downsample

    path = Path(path)
    if vae is not None and (path / "config.json").is_file():
        config = read_config(path, ValidatorNet, VALIDATOR_FIX)
        vae_c, vae_f = int(vae.config.latent_channels), vae_downsample(vae)
        if config["latent_channels"] != vae_c:
            raise InputError(
                f"{path / 'config.json'}: validator expects {config['latent_channels']} latent channels but the "
                f"VAE has {vae_c}; retrain the validator with this generator (dvc repro train_validator)"
            )
        if config["vae_downsample"] != vae_f:
            raise InputError(
                f"{path / 'config.json'}: validator expects VAE downsampling {config['vae_downsample']}, the VAE "
                f"has {vae_f}; retrain the validator with this generator (dvc repro train_validator)"
            )
    return load_pretrained(ValidatorNet, path, VALIDATOR_FIX, "validator checkpoint")


def load_validator(path: str | Path, vae, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32):
    """The trained validator ready for inference: `Validator.predict(images) -> masks`."""
    from diffaug.validator.inference import Validator

    return Validator(load_validator_net(path, vae), vae, device=device, dtype=dtype)
