"""Device, precision and seeding, settled in one place (nanoGPT style)."""

from __future__ import annotations

import os
import random
from dataclasses import dataclass

import numpy as np
import torch

from diffaug.config import BaseConfig
from diffaug.errors import ConfigError

_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


@dataclass(frozen=True)
class Runtime:
    device: torch.device
    dtype: torch.dtype  # compute dtype for inference / mixed precision; CPU always float32
    seed: int

    @property
    def mixed_precision(self) -> str:
        """accelerate's name for the precision: 'no' on CPU or float32."""
        if self.device.type != "cuda" or self.dtype == torch.float32:
            return "no"
        return "fp16" if self.dtype == torch.float16 else "bf16"

    def generator(self, offset: int = 0, device: str | torch.device = "cpu") -> torch.Generator:
        """An explicit generator seeded from base.seed (+ offset for independent streams)."""
        return torch.Generator(device=device).manual_seed(self.seed + offset)


def resolve_runtime(base: BaseConfig) -> Runtime:
    if base.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("params.yaml: base.device: 'cuda' requested but no CUDA GPU is visible; use 'auto' or 'cpu'")
    use_cuda = base.device == "cuda" or (base.device == "auto" and torch.cuda.is_available())
    device = torch.device("cuda" if use_cuda else "cpu")
    # Half precision on CPU is slow and inaccurate; keep float32 there whatever params say.
    dtype = _DTYPES[base.dtype] if use_cuda else torch.float32
    if base.num_threads > 0:
        torch.set_num_threads(base.num_threads)
    seed_everything(base.seed)
    return Runtime(device=device, dtype=dtype, seed=base.seed)


def seed_everything(seed: int) -> None:
    """Seed the global RNGs too, for library code that does not take a generator."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    os.environ.setdefault("PYTHONHASHSEED", str(seed))
