"""How real and extra (copy-paste or synthetic) pairs share the training budget.

The budget is `steps` optimiser steps. Step i takes `batch_size` real pairs from a stream of
consecutive shuffled passes over the real set — a stream drawn from its own seed, so it is the
same in every variant and every real image is seen equally often whatever the variant — and adds
`extra_per_batch` extra pairs from a second stream over the extra pool (every extra pair used
equally often). Extra pairs are added, never put in place of real ones (a naive 1:1 mix that
halves real exposure loses Dice). Two-phase schedule: the last `real_only_steps` add none.
The plan is a pure function of its seeds, so a resumed run continues the same plan.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def extra_per_batch(batch_size: int, share: float) -> int:
    """Extra pairs added to `batch_size` real ones so they make up `share` of the batch."""
    if share <= 0:
        return 0
    return max(1, round(batch_size * share / (1.0 - share)))


def index_stream(n: int, length: int, rng: np.random.Generator) -> np.ndarray:
    """`length` indices: consecutive shuffled passes over range(n)."""
    if n == 0 or length == 0:
        return np.zeros(0, np.int64)
    passes = -(-length // n)
    return np.concatenate([rng.permutation(n) for _ in range(passes)])[:length].astype(np.int64)


@dataclass(frozen=True)
class Plan:
    real: np.ndarray  # (steps, batch_size) indices into the real training pairs
    extra: np.ndarray  # (steps, k) indices into the extra pool; k = 0 without extra pairs
    extra_until: int  # steps before this one add extra pairs (the rest: real only)

    def __len__(self) -> int:
        return len(self.real)

    def step(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """(real indices, extra indices) of step i."""
        extra = self.extra[i] if i < self.extra_until else self.extra[i, :0]
        return self.real[i], extra


def training_plan(n_real: int, n_extra: int, steps: int, batch_size: int, share: float,
                  real_only_steps: int, seed: int | list[int]) -> Plan:
    """The whole schedule, deterministic given `seed` (an int or a numpy seed sequence)."""
    seq = np.random.SeedSequence(seed)
    real_rng, extra_rng = (np.random.default_rng(s) for s in seq.spawn(2))
    real = index_stream(n_real, steps * batch_size, real_rng).reshape(steps, batch_size)
    k = extra_per_batch(batch_size, share) if n_extra > 0 else 0
    extra = index_stream(n_extra, steps * k, extra_rng).reshape(steps, k)
    return Plan(real, extra, steps - real_only_steps)


def exposure(plan: Plan, n_real: int, n_extra: int) -> tuple[np.ndarray, np.ndarray]:
    """How often each real and each extra pair is seen over the plan."""
    real = np.bincount(plan.real.ravel(), minlength=n_real)
    used = plan.extra[: plan.extra_until].ravel()
    return real, np.bincount(used, minlength=n_extra) if n_extra else np.zeros(0, np.int64)
