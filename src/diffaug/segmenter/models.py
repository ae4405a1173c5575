"""The downstream segmenter network, its inference wrapper, and saving/loading a trained run.

`SegmenterNet` is a diffusers model whose config holds everything needed to rebuild the network
and feed it images the way it was trained. A run folder (`data/segmenters/<run>/`) holds what
`save_pretrained` writes, `config.json` + `diffusion_pytorch_model.safetensors`, and the run's
metadata in `run.json`: `{"run": {variant, ratio, seed, name, ...}, "training": summary, "params"}`.
`load_segmenter(run_dir, device)` returns a `Segmenter` whose
`predict(images uint8 (N, H, W, 3)) -> masks uint8 (N, H, W)` is what `evaluate` calls.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from torch import nn

from diffaug.errors import InputError
from diffaug.pretrained import CONFIG_NAME, WEIGHTS_NAME

RUN_FILE = "run.json"  # the run's metadata; diffusers' config.json is the network's
ARCHITECTURES = ("unet", "latent")
FIX = "rerun dvc repro train_segmenter"


class SegmenterNet(ModelMixin, ConfigMixin):
    """`unet`: MONAI's U-Net (Kerfoot et al.), one stride-2 level per width (the baseline).
    `latent`: the validator's latent single-step network (`diffaug.segmenter.latent`), rebuilt from
    the VAE and validator configs in `latent`; its input is the image in [-1, 1].
    Either is `body`; `forward` hands its arguments on to it."""

    @register_to_config
    def __init__(
        self,
        architecture: str = "unet",  # "unet" (MONAI UNet) | "latent"
        num_classes: int = 2,  # output channels incl. background (polyp 2; fundus 3)
        image_size: int = 64,  # training resolution (square); other sizes are resized to it and back
        channels: Sequence[int] = (16, 32, 64),  # MONAI UNet widths
        num_res_units: int = 0,
        mean: Sequence[float] = (0.5, 0.5, 0.5),  # per-channel stats of the real train images, [0, 1] scale
        std: Sequence[float] = (0.25, 0.25, 0.25),
        norm: str = "instance",  # MONAI UNet normalisation: batch | instance (MONAI's default)
        act: str = "prelu",  # MONAI UNet activation: prelu (MONAI's default) | relu | leakyrelu
        latent: dict[str, Any] | None = None,  # latent only: {"vae": VAE config, "validator": its config, "noise_seed"}
    ) -> None:
        super().__init__()
        if architecture == "latent":
            from diffaug.segmenter.latent import LatentSegmenterNet

            if not latent:
                raise ValueError("a latent segmenter needs its 'latent' config (VAE, validator, noise seed)")
            self.body = LatentSegmenterNet(latent["vae"], latent["validator"], latent["noise_seed"])
        elif architecture == "unet":
            from monai.networks.nets import UNet

            self.body = UNet(spatial_dims=2, in_channels=3, out_channels=num_classes, channels=tuple(channels),
                             strides=(2,) * (len(channels) - 1), num_res_units=num_res_units, norm=norm, act=act)
        else:
            raise ValueError(f"unknown segmenter architecture '{architecture}'; allowed: {', '.join(ARCHITECTURES)}")

    def forward(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        """Class logits (N, C, H, W) of normalised images x (N, 3, H, W); the latent network's
        training call (x, masks, ...) passes through as well."""
        return self.body(x, *args, **kwargs)

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]  # latent: the VAE and the codec are frozen


def to_input(images: np.ndarray | torch.Tensor, spec: Any, device: torch.device | str = "cpu") -> torch.Tensor:
    """uint8 (N, H, W, 3) -> normalised float (N, 3, H, W) on `device`; `spec`: a `SegmenterNet` config."""
    x = torch.as_tensor(np.asarray(images)).to(device)
    x = x.permute(0, 3, 1, 2).float() / 255.0
    return normalise(x, spec)


def normalise(x: torch.Tensor, spec: Any) -> torch.Tensor:
    """float (N, 3, H, W) in [0, 1] -> standardised with the training set's channel stats."""
    mean = torch.tensor(spec.mean, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    std = torch.tensor(spec.std, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    return (x - mean) / std


class Segmenter:
    """A trained segmenter ready for inference on uint8 RGB images; `meta` is its run.json."""

    def __init__(self, net: SegmenterNet, meta: dict[str, Any] | None = None,
                 device: torch.device | str = "cpu", batch_size: int = 64) -> None:
        self.net = net.to(device).eval()
        self.meta = meta or {}
        self.device = torch.device(device)
        self.batch_size = batch_size

    @property
    def spec(self) -> Any:
        """The network's config: architecture, num_classes, image_size, mean, std, ..."""
        return self.net.config

    @torch.no_grad()
    def predict_proba(self, images: np.ndarray) -> np.ndarray:
        """Class probabilities float32 (N, C, H, W) for uint8 images (N, H, W, 3)."""
        images = np.asarray(images)
        if images.ndim != 4 or images.shape[-1] != 3:
            raise InputError(f"segmenter input must be uint8 (N, H, W, 3) RGB images, got shape {images.shape}")
        out = []
        size = self.spec.image_size
        for start in range(0, len(images), self.batch_size):
            x = to_input(images[start : start + self.batch_size], self.spec, self.device)
            hw = x.shape[-2:]
            if tuple(hw) != (size, size):  # the network was trained at `size`; resize in and out
                x = nn.functional.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
            logits = self.net(x).float()
            if tuple(logits.shape[-2:]) != tuple(hw):
                logits = nn.functional.interpolate(logits, size=tuple(hw), mode="bilinear", align_corners=False)
            out.append(torch.softmax(logits, dim=1).cpu().numpy())
        if not out:
            return np.zeros((0, self.spec.num_classes, *images.shape[1:3]), np.float32)
        return np.concatenate(out).astype(np.float32)

    def predict(self, images: np.ndarray) -> np.ndarray:
        """Masks uint8 (N, H, W) of class indices (0 = background) for uint8 images (N, H, W, 3)."""
        return self.predict_proba(images).argmax(axis=1).astype(np.uint8)


def save_segmenter(out_dir: str | Path, net: SegmenterNet, meta: dict[str, Any]) -> None:
    """The network with `save_pretrained` (config.json + weights) and `meta` as run.json."""
    from diffaug.io import write_json

    out_dir = Path(out_dir)
    net.save_pretrained(out_dir)
    write_json(out_dir / RUN_FILE, meta)


def is_run_folder(path: str | Path) -> bool:
    path = Path(path)
    return all((path / name).is_file() for name in (CONFIG_NAME, WEIGHTS_NAME, RUN_FILE))


def load_segmenter(run_dir: str | Path, device: torch.device | str = "cpu") -> Segmenter:
    """Rebuild a trained run from `run_dir` (config.json, weights, run.json) for inference."""
    from diffaug.pretrained import load_pretrained, read_config

    run_dir = Path(run_dir)
    if not is_run_folder(run_dir):
        raise InputError(f"{run_dir}: no trained segmenter ({CONFIG_NAME} + {WEIGHTS_NAME} + {RUN_FILE}); "
                         "run `dvc repro train_segmenter`")
    config = read_config(run_dir, SegmenterNet, FIX)
    if config["architecture"] not in ARCHITECTURES:
        raise InputError(f"{run_dir / CONFIG_NAME}: unknown segmenter architecture '{config['architecture']}'; {FIX}")
    if config["architecture"] == "latent":
        from diffaug.segmenter.latent import check_latent_config

        check_latent_config(config["latent"], f"{run_dir / CONFIG_NAME} (latent)", FIX)
    net = load_pretrained(SegmenterNet, run_dir, FIX, "trained segmenter")
    try:
        meta = json.loads((run_dir / RUN_FILE).read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"{run_dir / RUN_FILE}: unreadable run metadata ({exc}); {FIX}") from None
    return Segmenter(net, meta, device=device)
