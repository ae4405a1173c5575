"""Extra pairs add to the real data, never displace it: equal real exposure in every variant."""

from __future__ import annotations

import numpy as np
import pytest

from diffaug.segmenter.mixing import exposure, extra_per_batch, index_stream, training_plan


@pytest.mark.parametrize("share,n_extra", [(0.0, 0), (0.2, 30), (0.5, 120), (0.75, 7)])
def test_real_batches_are_the_same_whatever_the_mix(share, n_extra):
    n_real, steps, batch = 37, 40, 8  # 320 real draws: 8 passes and a part
    plan = training_plan(n_real, n_extra, steps, batch, share, 0, [0, 1])
    none = training_plan(n_real, 0, steps, batch, 0.0, 0, [0, 1])
    assert np.array_equal(plan.real, none.real)  # the same real pairs, step by step, as `none`
    real, extra = exposure(plan, n_real, n_extra)
    assert real.max() - real.min() <= 1 and real.sum() == steps * batch
    if n_extra:
        assert extra.max() - extra.min() <= 1  # the extra pool is used evenly
        assert all(len(plan.step(i)[1]) == extra_per_batch(batch, share) for i in range(steps))


def test_share_sets_extra_per_batch():
    assert extra_per_batch(16, 0.0) == 0
    assert extra_per_batch(16, 0.2) == 4  # 4 / (16 + 4) = 0.2
    assert extra_per_batch(16, 0.5) == 16  # 1:1 on top of the real batch, not instead of it
    assert extra_per_batch(2, 0.01) == 1


def test_two_phase_schedule_ends_real_only():
    plan = training_plan(20, 10, 12, 4, 0.5, 4, 1)
    assert all(len(plan.step(i)[1]) > 0 for i in range(8))
    assert all(len(plan.step(i)[1]) == 0 for i in range(8, 12))
    real, extra = exposure(plan, 20, 10)
    assert (real == 12 * 4 // 20).sum() + (real == 12 * 4 // 20 + 1).sum() == 20
    assert extra.sum() == 8 * extra_per_batch(4, 0.5)


def test_stream_and_plan_are_deterministic():
    a = training_plan(10, 5, 3, 4, 0.3, 0, 3)
    b = training_plan(10, 5, 3, 4, 0.3, 0, 3)
    assert np.array_equal(a.real, b.real) and np.array_equal(a.extra, b.extra)
    assert not np.array_equal(a.real, training_plan(10, 5, 3, 4, 0.3, 0, 4).real)
    s = index_stream(3, 10, np.random.default_rng(0))
    assert sorted(s[:3].tolist()) == [0, 1, 2] and len(s) == 10
