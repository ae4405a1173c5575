"""Pixel range of the models: uint8 RGB images as floats in [-1, 1].

    x = I / 127.5 - 1,   I in {0, ..., 255}  ->  x in [-1, 1]

The VAE (eq. 1) is trained and used on this range, and LPIPS and the FID backbone take it too,
so every stage maps pixels with these functions and the same image always becomes the same
tensor. No inverse is kept here: generation decodes to [0, 1] and composites in float
(`diffaug.generator.compositing`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch


def pixels_to_signed(pixels: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """uint8 pixels of any layout ((N, 3, H, W) or (N, H, W, 3)) -> float in [-1, 1], same layout.

    The cast to `dtype` comes before the arithmetic: a half-precision caller gets the division in
    half precision (as the generator has always done), float32 callers `x.float() / 127.5 - 1`."""
    return pixels.to(dtype) / 127.5 - 1.0


def to_model_space(images: Any, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """uint8 (N, H, W, 3) array or tensor -> float (N, 3, H, W) in [-1, 1] on `device` (moved as
    uint8, then scaled there)."""
    x = torch.as_tensor(np.ascontiguousarray(images) if isinstance(images, np.ndarray) else images)
    return pixels_to_signed(x.permute(0, 3, 1, 2).to(device), dtype)
