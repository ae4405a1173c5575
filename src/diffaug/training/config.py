"""The optimisation keys every trained network's params share (one spelling, one meaning).

`finetune_generator.<phase>_phase`, `train_validator` and `train_segmenter` extend `OptimConfig`
with their own defaults; `schedule()` turns the keys into the trainer's `Schedule`.
"""

from __future__ import annotations

from pydantic import Field, field_validator, model_validator

from diffaug.config import Section
from diffaug.training.schedule import Schedule


class OptimConfig(Section):
    """AdamW with linear warmup and cosine decay, gradient accumulation and clipping."""

    steps: int = Field(1000, ge=1)  # optimiser steps (independent of the data set's size)
    batch_size: int = Field(16, ge=1)  # samples per micro-batch
    lr: float = Field(1e-3, gt=0)  # peak AdamW learning rate
    min_lr_ratio: float = Field(0.1, ge=0, le=1)  # cosine end as a fraction of lr (0 = diffusers' cosine to 0)
    warmup_steps: int = Field(0, ge=0)  # linear warmup from 0 to lr
    weight_decay: float = Field(0.01, ge=0)  # AdamW decoupled weight decay
    betas: list[float] = Field(default_factory=lambda: [0.9, 0.999], min_length=2, max_length=2)  # AdamW (beta1, beta2)
    grad_accum: int = Field(1, ge=1)  # micro-batches per optimiser step (effective batch = batch_size x grad_accum)
    grad_clip: float = Field(1.0, ge=0)  # max gradient norm; 0 = no clipping
    # torch's fused AdamW kernel (one pass over all tensors): the same update as the default
    # per-tensor-list kernel up to float rounding, about 5x faster per step on a CPU (docs/training.md)
    fused: bool = True

    @field_validator("betas")
    @classmethod
    def _betas(cls, v: list[float]) -> list[float]:
        if not all(0 <= b < 1 for b in v):
            raise ValueError("betas must be two numbers in [0, 1)")
        return v

    @model_validator(mode="after")
    def _warmup(self) -> OptimConfig:
        if self.warmup_steps >= self.steps and self.warmup_steps > 0:
            raise ValueError(f"warmup_steps ({self.warmup_steps}) must be < steps ({self.steps})")
        return self

    def schedule(self, checkpoint_every: int = 0, log_every: int = 10, eval_every: int = 0) -> Schedule:
        return Schedule(
            steps=self.steps, lr=self.lr, min_lr_ratio=self.min_lr_ratio, warmup_steps=self.warmup_steps,
            weight_decay=self.weight_decay, betas=(float(self.betas[0]), float(self.betas[1])),
            grad_accum=self.grad_accum, grad_clip=self.grad_clip, fused=self.fused, checkpoint_every=checkpoint_every,
            log_every=log_every, eval_every=eval_every,
        )
