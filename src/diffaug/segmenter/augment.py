"""`standard` augmentation: rotation, flip, scale and elastic deformation, applied jointly to an
image and its mask with torchvision.transforms.v2 (the mask is a `tv_tensors.Mask`, so every
geometric op resamples it with nearest neighbour and class indices stay class indices).

torchvision draws its random parameters from torch's global RNG; `augment_batch` forks that RNG
and seeds it from the caller's explicit `numpy.random.Generator`, so a run is deterministic per
seed and does not disturb the RNG state of other code.
"""

from __future__ import annotations

import numpy as np
import torch
from torchvision import tv_tensors
from torchvision.transforms import v2

from diffaug.segmenter.config import StandardAugmentConfig


def build_standard_transform(cfg: StandardAugmentConfig) -> v2.Transform:
    """One joint transform for an (image, mask) pair; image float (3, H, W), mask (H, W)."""
    fill = {tv_tensors.Image: 0.0, tv_tensors.Mask: 0}  # outside the rotated frame: black, background
    return v2.Compose(
        [
            v2.RandomHorizontalFlip(p=cfg.flip_prob),
            v2.RandomVerticalFlip(p=cfg.flip_prob),
            v2.RandomAffine(degrees=cfg.rotation_degrees, scale=(cfg.scale_min, cfg.scale_max), fill=fill),
            v2.RandomApply(
                [v2.ElasticTransform(alpha=cfg.elastic_alpha, sigma=cfg.elastic_sigma, fill=fill)],
                p=cfg.elastic_prob,
            ),
        ]
    )


def augment_batch(
    images: torch.Tensor, masks: torch.Tensor, transform: v2.Transform, rng: np.random.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Augment each pair of a batch independently with the same geometry on image and mask.

    images: float (B, 3, H, W); masks: integer (B, H, W). Returns tensors of the same shapes and
    dtypes. Runs on CPU (per-sample ops on 64-256 px images are cheap next to the network).
    """
    seed = int(rng.integers(0, 2**63 - 1))
    out_images, out_masks = [], []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for img, msk in zip(images, masks, strict=True):
            a, b = transform(tv_tensors.Image(img), tv_tensors.Mask(msk))
            out_images.append(a.as_subclass(torch.Tensor))
            out_masks.append(b.as_subclass(torch.Tensor))
    return torch.stack(out_images), torch.stack(out_masks)
