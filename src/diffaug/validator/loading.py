"""Load the generator parts the validator needs: its frozen VAE and (for initialisation) its U-Net.

Read straight from the diffusers folders (`vae/`, `unet/` of data/generator/) with
`from_pretrained`, offline; a missing or broken folder is one-line InputError.
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
