"""How real and extra (copy-paste or synthetic) pairs share the training budget.

The budget is counted in passes over the *real* set: each epoch is one shuffled pass, cut into
batches of `batch_size` real indices, so every real image is seen exactly once per epoch in every
variant. Extra pairs are *added* to each batch — `extra_per_batch` of them, drawn from a stream
that walks through shuffled passes of the extra pool so every extra pair is used equally often —
never put in place of real pairs (a naive 1:1 mix that halves real exposure loses Dice).
Two-phase schedule: during the last `real_only_epochs` no extra pairs are added.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def extra_per_batch(batch_size: int, share: float) -> int:
    """Extra pairs added to `batch_size` real ones so they make up `share` of the batch."""
    if share <= 0:
        return 0
    return max(1, round(batch_size * share / (1.0 - share)))


class ExtraStream:
    """Endless stream of pool indices: consecutive shuffled passes over range(n)."""

    def __init__(self, n: int, rng: np.random.Generator):
        self.n, self.rng = n, rng
        self._order = np.empty(0, np.int64)

    def take(self, k: int) -> np.ndarray:
        if self.n == 0 or k == 0:
            return np.empty(0, np.int64)
        while len(self._order) < k:
            self._order = np.concatenate([self._order, self.rng.permutation(self.n)])
        out, self._order = self._order[:k], self._order[k:]
        return out


@dataclass(frozen=True)
class Batch:
    real: np.ndarray  # indices into the real training arrays
    extra: np.ndarray  # indices into the extra pool (may be empty)


def epoch_batches(
    n_real: int, batch_size: int, per_batch: int, stream: ExtraStream | None, rng: np.random.Generator
) -> list[Batch]:
    """One pass over the real set. A last short batch gets a proportional share of extra pairs."""
    order = rng.permutation(n_real)
    batches = []
    for start in range(0, n_real, batch_size):
        real = order[start : start + batch_size]
        k = 0
        if stream is not None and per_batch > 0:
            k = per_batch if len(real) == batch_size else max(1, round(per_batch * len(real) / batch_size))
        extra = stream.take(k) if stream is not None else np.empty(0, np.int64)
        batches.append(Batch(real, extra))
    return batches


def training_plan(
    n_real: int,
    n_extra: int,
    epochs: int,
    batch_size: int,
    share: float,
    real_only_epochs: int,
    rng: np.random.Generator,
) -> list[list[Batch]]:
    """The whole schedule: `epochs` lists of batches (deterministic given `rng`)."""
    per_batch = extra_per_batch(batch_size, share) if n_extra > 0 else 0
    stream = ExtraStream(n_extra, rng) if per_batch > 0 else None
    plan = []
    for epoch in range(epochs):
        use_extra = epoch < epochs - real_only_epochs
        plan.append(epoch_batches(n_real, batch_size, per_batch, stream if use_extra else None, rng))
    return plan


def exposure(plan: list[list[Batch]], n_real: int, n_extra: int) -> tuple[np.ndarray, np.ndarray]:
    """How often each real and each extra pair is seen over the plan."""
    real = np.zeros(n_real, np.int64)
    extra = np.zeros(n_extra, np.int64)
    for batches in plan:
        for b in batches:
            np.add.at(real, b.real, 1)
            np.add.at(extra, b.extra, 1)
    return real, extra
