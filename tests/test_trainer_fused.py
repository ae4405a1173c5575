"""The trainer's `fused` key: torch's fused AdamW kernel gives the default kernel's update up to
float rounding, so switching it (the default since 2026-12-02) changes weights only at rounding
level, and both train."""

from __future__ import annotations

import torch
from torch import nn

from diffaug.config import BaseConfig
from diffaug.runtime import resolve_runtime
from diffaug.training.schedule import Schedule
from diffaug.training.trainer import Trainer


class _Regression:
    """A small conv net fitted to a fixed random target: every draw from the trainer's generator."""

    def __init__(self) -> None:
        torch.manual_seed(0)
        self.model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 1, 1))
        g = torch.Generator().manual_seed(1)
        self.x = torch.randn(32, 3, 8, 8, generator=g)
        self.y = torch.randn(32, 1, 8, 8, generator=g) * 0.1 + self.x[:, :1]

    def parameters(self) -> list[nn.Parameter]:
        return list(self.model.parameters())

    def batch(self, step: int, generator: torch.Generator):
        i = torch.randint(0, len(self.x), (8,), generator=generator)
        return self.x[i], self.y[i]

    def losses(self, model: nn.Module, batch) -> dict[str, torch.Tensor]:
        x, y = batch
        return {"loss": ((model(x) - y) ** 2).mean()}


def _fit(fused: bool) -> tuple[list[torch.Tensor], float, float]:
    task = _Regression()
    with torch.no_grad():
        before = task.losses(task.model, (task.x, task.y))["loss"].item()
    s = Schedule(steps=40, lr=1e-2, weight_decay=0.01, grad_clip=1.0, fused=fused)
    Trainer(resolve_runtime(BaseConfig(seed=0, device="cpu")), s, name="t", fingerprint="", seed=3).fit(task)
    with torch.no_grad():
        after = task.losses(task.model, (task.x, task.y))["loss"].item()
    return [p.detach().clone() for p in task.model.parameters()], before, after


def test_fused_adamw_is_the_default_update_up_to_rounding():
    fused, before, after_fused = _fit(True)
    plain, _, after_plain = _fit(False)
    assert after_fused < 0.5 * before and after_plain < 0.5 * before
    for a, b in zip(fused, plain, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    again, _, _ = _fit(True)  # same seed, same machine: the same weights
    assert all(torch.equal(a, b) for a, b in zip(fused, again, strict=True))
