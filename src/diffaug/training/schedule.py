"""The trainer's optimisation settings (no torch import: params validation builds it)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Schedule:
    """How one network is optimised (each stage builds it from its params section)."""

    steps: int  # optimiser steps
    lr: float  # peak AdamW learning rate
    min_lr_ratio: float = 0.0  # cosine end as a fraction of lr
    warmup_steps: int = 0  # linear warmup from 0
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    grad_accum: int = 1  # micro-batches per optimiser step
    grad_clip: float = 0.0  # max gradient norm; 0 = no clipping
    fused: bool = True  # torch's fused AdamW kernel (False: its default foreach kernel)
    checkpoint_every: int = 0  # optimiser steps between checkpoints; 0 = only the finished run
    log_every: int = 10  # optimiser steps between curve points (mean of the window)
    eval_every: int = 0  # optimiser steps between validations; 0 = none (the last weights are the model)
    ema_decay: float = 0.0  # > 0: an exponential moving average of the weights is validated and kept; 0 = off
