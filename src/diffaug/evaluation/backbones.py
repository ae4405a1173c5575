"""Pretrained feature networks for the synthetic-quality metrics, loaded from local files.

LPIPS (the `lpips` package) and FID need ImageNet-pretrained backbones that torchvision would
download; this pipeline never downloads at run time. Params point to local torchvision
state_dicts (.pth, loaded with `torch.load(weights_only=True)`); without them the metrics are
reported unavailable with the reason, never a made-up number.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import nn

from diffaug.errors import InputError
from diffaug.imaging import pixels_to_signed

# lpips net name -> torchvision constructor name of the backbone whose `.features` lpips slices.
_LPIPS_BACKBONES = {"alex": "alexnet", "vgg": "vgg16", "squeeze": "squeezenet1_1"}


def _load_state(path: str | Path, key: str) -> dict[str, torch.Tensor]:
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: {key} weights file not found; fix the path in params.yaml or set it to null")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a corrupt / non-tensor file
        raise InputError(f"{path}: cannot read {key} weights ({type(exc).__name__}); give a torchvision state_dict .pth") from None
    if not isinstance(state, dict):
        raise InputError(f"{path}: {key} weights are not a state_dict; give a torchvision state_dict .pth")
    return state


def load_lpips(net: str, weights: str | Path, device: torch.device | str = "cpu") -> nn.Module:
    """lpips.LPIPS with its backbone loaded from a local torchvision state_dict.

    The LPIPS linear heads (v0.1) ship inside the lpips package; only the backbone needs the
    ImageNet weights, which lpips would otherwise fetch through torchvision."""
    import lpips
    import torchvision

    state = _load_state(weights, "evaluate.synthetic.lpips_weights")
    backbone = getattr(torchvision.models, _LPIPS_BACKBONES[net])(weights=None)
    try:
        backbone.load_state_dict(state)
    except RuntimeError:
        raise InputError(
            f"{weights}: not a torchvision {_LPIPS_BACKBONES[net]} state_dict (keys or shapes differ); "
            f"give the {_LPIPS_BACKBONES[net]} ImageNet weights or change evaluate.synthetic.lpips_net"
        ) from None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # lpips passes torchvision's deprecated `pretrained=False`
        model = lpips.LPIPS(net=net, pretrained=True, pnet_rand=True, verbose=False)
    # lpips splits backbone.features into slices whose children keep their original indices.
    features = backbone.features
    for s in range(1, model.net.N_slices + 1):
        for name, module in getattr(model.net, f"slice{s}").named_children():
            module.load_state_dict(features[int(name)].state_dict())
    return model.eval().to(device)


class InceptionPool(nn.Module):
    """torchvision Inception-v3 up to its 2048-d average pool: the features FID compares; the
    feature extractor of torchmetrics' `FrechetInceptionDistance` (synthetic.py).

    Takes uint8 (N, 3, H, W) images, resizes to `image_size`
    and scales to [-1, 1], the input range of the original (Google) Inception weights that
    torchvision's IMAGENET1K_V1 reproduces with `transform_input`. Returns float32 (N, 2048).
    Always in eval mode: BatchNorm must use the pretrained statistics, even when the metric
    holding it is switched to train()."""

    num_features = 2048  # read by torchmetrics instead of probing with a dummy image

    def __init__(self, state: dict[str, torch.Tensor], image_size: int = 299) -> None:
        import torchvision

        super().__init__()
        net = torchvision.models.inception_v3(weights=None, aux_logits=True, init_weights=False, transform_input=False)
        try:
            net.load_state_dict(state)
        except RuntimeError:
            raise InputError(
                "evaluate.synthetic.fid_weights: not a torchvision inception_v3 state_dict (keys or shapes differ); "
                "give inception_v3 IMAGENET1K_V1 weights"
            ) from None
        net.fc = nn.Identity()  # logits layer removed: forward returns the pooled features
        self.net = net.eval()
        self.image_size = image_size

    def train(self, mode: bool = True) -> InceptionPool:
        return super().train(False)

    @torch.no_grad()
    def forward(self, imgs: torch.Tensor) -> torch.Tensor:
        x = pixels_to_signed(imgs)
        x = nn.functional.interpolate(x, size=(self.image_size, self.image_size), mode="bilinear", align_corners=False)
        return self.net(x)


def load_inception(weights: str | Path, image_size: int = 299) -> InceptionPool:
    return InceptionPool(_load_state(weights, "evaluate.synthetic.fid_weights"), image_size)
