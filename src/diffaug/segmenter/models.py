"""The downstream segmenter network, its inference wrapper, and saving/loading a trained run.

A run folder (`data/segmenters/<run>/`) holds `model.safetensors` and `config.json`:
`{"spec": SegmenterSpec fields, "run": {variant, ratio, seed, name}, "training": summary}`.
`load_segmenter(run_dir, device)` rebuilds the network from the spec and returns a `Segmenter`
whose `predict(images uint8 (N, H, W, 3)) -> masks uint8 (N, H, W)` is what `evaluate` calls.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from diffaug.errors import InputError

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"


@dataclass
class SegmenterSpec:
    """Everything needed to rebuild the network and feed it images the way it was trained."""

    architecture: str  # "unet" (MONAI UNet) | "latent" (the validator's latent single-step network)
    num_classes: int  # output channels incl. background (polyp 2; fundus 3)
    image_size: int  # training resolution (square); other sizes are resized to it and back
    channels: list[int] = field(default_factory=lambda: [16, 32, 64])  # MONAI UNet widths
    num_res_units: int = 0
    mean: list[float] = field(default_factory=lambda: [0.5, 0.5, 0.5])  # per-channel stats of the real train images, [0, 1] scale
    std: list[float] = field(default_factory=lambda: [0.25, 0.25, 0.25])
    norm: str = "instance"  # MONAI UNet normalisation: batch | instance (MONAI's default)
    latent: dict[str, Any] | None = None  # latent only: {"vae": VAE config, "validator": its config, "noise_seed"}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SegmenterSpec:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def build_network(spec: SegmenterSpec) -> nn.Module:
    """`unet`: MONAI's U-Net (Kerfoot et al.), one stride-2 level per width (the baseline).
    `latent`: the validator's latent single-step network (`diffaug.segmenter.latent`), rebuilt from
    the VAE and validator configs the spec carries; its input is the image in [-1, 1]."""
    if spec.architecture == "latent":
        from diffaug.segmenter.latent import LatentSegmenterNet

        if not spec.latent:
            raise InputError(f"latent segmenter without its 'latent' spec in {CONFIG_NAME}; retrain the run")
        return LatentSegmenterNet(spec.latent["vae"], spec.latent["validator"], spec.latent.get("noise_seed", 0))
    if spec.architecture != "unet":
        raise InputError(f"unknown segmenter architecture '{spec.architecture}' in {CONFIG_NAME}; retrain the run")
    from monai.networks.nets import UNet

    return UNet(
        spatial_dims=2,
        in_channels=3,
        out_channels=spec.num_classes,
        channels=tuple(spec.channels),
        strides=(2,) * (len(spec.channels) - 1),
        num_res_units=spec.num_res_units,
        norm=spec.norm,
    )


def to_input(images: np.ndarray | torch.Tensor, spec: SegmenterSpec, device: torch.device | str = "cpu") -> torch.Tensor:
    """uint8 (N, H, W, 3) -> normalised float (N, 3, H, W) on `device`."""
    x = torch.as_tensor(np.asarray(images)).to(device)
    x = x.permute(0, 3, 1, 2).float() / 255.0
    return normalise(x, spec)


def normalise(x: torch.Tensor, spec: SegmenterSpec) -> torch.Tensor:
    """float (N, 3, H, W) in [0, 1] -> standardised with the training set's channel stats."""
    mean = torch.tensor(spec.mean, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    std = torch.tensor(spec.std, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    return (x - mean) / std


class Segmenter:
    """A trained segmenter ready for inference on uint8 RGB images."""

    def __init__(self, net: nn.Module, spec: SegmenterSpec, meta: dict[str, Any] | None = None,
                 device: torch.device | str = "cpu", batch_size: int = 64) -> None:
        self.net = net.to(device).eval()
        self.spec = spec
        self.meta = meta or {}
        self.device = torch.device(device)
        self.batch_size = batch_size

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


def save_segmenter(out_dir: str | Path, net: nn.Module, spec: SegmenterSpec, meta: dict[str, Any]) -> None:
    """Write model.safetensors + config.json (spec + run metadata + training summary)."""
    from safetensors.torch import save_file

    from diffaug.io import write_json

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    save_file(state, str(out_dir / WEIGHTS_NAME))
    write_json(out_dir / CONFIG_NAME, {"spec": asdict(spec), **meta})


def load_segmenter(run_dir: str | Path, device: torch.device | str = "cpu") -> Segmenter:
    """Rebuild a trained run from `run_dir` (config.json + model.safetensors) for inference."""
    from diffaug.io import load_weights_file

    run_dir = Path(run_dir)
    cfg_file, weights = run_dir / CONFIG_NAME, run_dir / WEIGHTS_NAME
    if not cfg_file.is_file() or not weights.is_file():
        raise InputError(f"{run_dir}: no trained segmenter ({CONFIG_NAME} + {WEIGHTS_NAME}); run `dvc repro train_segmenter`")
    try:
        meta = json.loads(cfg_file.read_text())
        spec = SegmenterSpec.from_dict(meta["spec"])
    except (ValueError, TypeError, KeyError) as exc:
        raise InputError(f"{cfg_file}: not a segmenter config ({exc!r}); retrain with train_segmenter") from None
    net = build_network(spec)
    state = load_weights_file(weights, fix="rerun dvc repro train_segmenter")
    try:
        net.load_state_dict(state)
    except RuntimeError as exc:
        raise InputError(f"{weights}: weights do not match {CONFIG_NAME} ({str(exc).splitlines()[0]}); retrain") from None
    meta.pop("spec", None)
    return Segmenter(net, spec, meta, device=device)
