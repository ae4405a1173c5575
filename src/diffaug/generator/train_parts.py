"""Building blocks of the generator's training loop (train.py): the learning-rate schedule, the
VAE step that DDP can wrap, random flips, and trimming dvclive curves on resume."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch


def lr_lambda(pcfg: Any) -> Callable[[int], float]:
    """Linear warmup, then cosine decay from 1 to min_lr_ratio."""

    def f(step: int) -> float:
        if pcfg.warmup_steps and step < pcfg.warmup_steps:
            return (step + 1) / pcfg.warmup_steps
        span = max(1, pcfg.steps - pcfg.warmup_steps)
        prog = min(1.0, (step - pcfg.warmup_steps) / span)
        return pcfg.min_lr_ratio + (1 - pcfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * prog))

    return f


class VAETrainStep(torch.nn.Module):
    """encode -> sample -> decode in one forward, so DDP (several GPUs) wraps one call and syncs
    the VAE's gradients. Returns the reconstruction (B, 3, H, W) and the per-sample KL (B,)."""

    def __init__(self, vae: Any) -> None:
        super().__init__()
        self.vae = vae

    def forward(self, x: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        post = self.vae.encode(x).latent_dist
        rec = self.vae.decode(post.sample(generator=generator)).sample
        return rec, post.kl()


def flip_random(x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Per-sample random horizontal/vertical flips (u: (B, 2) uniform draws)."""
    h = (u[:, 0] < 0.5).to(x.device).view(-1, 1, 1, 1)
    v = (u[:, 1] < 0.5).to(x.device).view(-1, 1, 1, 1)
    x = torch.where(h, x.flip(-1), x)
    return torch.where(v, x.flip(-2), x)


def flip_fixed(x: torch.Tensor, h: bool, v: bool) -> torch.Tensor:
    if h:
        x = x.flip(-1)
    if v:
        x = x.flip(-2)
    return x


def truncate_live(live_dir: Path, step: int) -> None:
    """Drop logged rows after the resumed step (they belong to the lost, un-checkpointed steps)."""
    for tsv in Path(live_dir).glob("plots/metrics/**/*.tsv"):
        lines = tsv.read_text().splitlines()
        if not lines:
            continue
        header, rows = lines[0], lines[1:]
        col = header.split("\t").index("step") if "step" in header.split("\t") else None
        if col is None:
            continue
        keep = [r for r in rows if int(float(r.split("\t")[col])) <= step]
        tsv.write_text("\n".join([header, *keep]) + "\n")
