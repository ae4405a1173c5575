"""Extra pairs add to the real data, never displace it: equal real exposure in every variant."""

from __future__ import annotations

import numpy as np
import pytest

from diffaug.segmenter.mixing import ExtraStream, exposure, extra_per_batch, training_plan


@pytest.mark.parametrize("share,n_extra", [(0.0, 0), (0.2, 30), (0.5, 120), (0.75, 7)])
def test_each_real_image_seen_once_per_epoch_whatever_the_mix(share, n_extra):
    n_real, epochs, batch = 37, 5, 8
    plan = training_plan(n_real, n_extra, epochs, batch, share, 0, np.random.default_rng(0))
    real, extra = exposure(plan, n_real, n_extra)
    assert (real == epochs).all()
    assert sum(len(b) for b in plan) == epochs * int(np.ceil(n_real / batch))  # same steps as `none`
    if n_extra:
        assert extra.max() - extra.min() <= 1  # the extra pool is used evenly
        full = [b for batches in plan for b in batches if len(b.real) == batch]
        assert all(len(b.extra) == extra_per_batch(batch, share) for b in full)


def test_share_sets_extra_per_batch():
    assert extra_per_batch(16, 0.0) == 0
    assert extra_per_batch(16, 0.2) == 4  # 4 / (16 + 4) = 0.2
    assert extra_per_batch(16, 0.5) == 16  # 1:1 on top of the real batch, not instead of it
    assert extra_per_batch(2, 0.01) == 1


def test_two_phase_schedule_ends_real_only():
    plan = training_plan(20, 10, 6, 4, 0.5, 2, np.random.default_rng(1))
    assert all(len(b.extra) > 0 for b in plan[0] + plan[3])
    assert all(len(b.extra) == 0 for b in plan[4] + plan[5])
    real, _ = exposure(plan, 20, 10)
    assert (real == 6).all()


def test_stream_and_plan_are_deterministic():
    a = training_plan(10, 5, 3, 4, 0.3, 0, np.random.default_rng(3))
    b = training_plan(10, 5, 3, 4, 0.3, 0, np.random.default_rng(3))
    flat = lambda p: [(x.real.tolist(), x.extra.tolist()) for bs in p for x in bs]  # noqa: E731
    assert flat(a) == flat(b)
    s = ExtraStream(3, np.random.default_rng(0))
    assert sorted(s.take(3).tolist()) == [0, 1, 2]
    assert len(s.take(7)) == 7
