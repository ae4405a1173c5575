"""Timing/memory utilities and the throughput-check comparison."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from diffaug.benchmark.check import compare, format_checks, load_figures
from diffaug.benchmark.measure import SLOWDOWN_ENV, device_name, injected_slowdown, module_bytes, slowed
from diffaug.errors import ConfigError, InputError
from diffaug.io import write_json
from diffaug.timing import measure


def test_measure_reports_median_and_throughput():
    calls = []

    def fn():
        calls.append(1)
        time.sleep(0.02)

    m = measure(fn, items=4, warmup=2, repeats=3)
    assert len(calls) == 5  # warm-up calls are made but not timed
    assert m.repeats == 3 and m.items == 4
    assert 0.018 <= m.min_s <= m.median_s < 0.2
    assert m.items_per_s == pytest.approx(4 / m.median_s)
    assert m.memory_kind == "cpu_rss_sampled"
    assert m.as_dict()["items_per_s"] == m.items_per_s


def test_cpu_peak_memory_sees_a_large_allocation():
    def alloc():
        a = np.ones(64 * 2**20 // 8)  # 64 MiB, touched so it is resident
        time.sleep(0.03)  # long enough for the 5 ms sampler to see it
        return a.sum()

    m = measure(alloc, items=1, warmup=0, repeats=1)
    assert m.peak_mem_mb > 32

    m_small = measure(lambda: sum(range(10)), items=1, warmup=0, repeats=1)
    assert m_small.peak_mem_mb < 16


def test_measure_rejects_bad_counts():
    with pytest.raises(ValueError):
        measure(lambda: None, items=0)


def test_slowdown_env_wraps_only_when_set(monkeypatch):
    fn = lambda: 3  # noqa: E731
    monkeypatch.delenv(SLOWDOWN_ENV, raising=False)
    assert injected_slowdown() == 1 and slowed(fn) is fn
    monkeypatch.setenv(SLOWDOWN_ENV, "3")

    def work():
        time.sleep(0.02)
        return 3

    m = measure(slowed(work), items=1, warmup=0, repeats=1)
    assert m.median_s >= 0.059  # 3x the call's own 20 ms
    for bad in ("fast", "0.5"):
        monkeypatch.setenv(SLOWDOWN_ENV, bad)
        with pytest.raises(ConfigError, match=SLOWDOWN_ENV):
            injected_slowdown()


def test_device_name_and_module_bytes():
    assert device_name("cpu").startswith("cpu: ")
    lin = torch.nn.Linear(10, 5)  # 55 float32 parameters
    assert module_bytes(lin) == 55 * 4


def test_compare_passes_within_tolerance_and_fails_below(tmp_path):
    baseline = {"a_speedup": 10.0, "b_speedup": 2.0, "device": "cpu"}
    ok = compare({"a_speedup": 7.5, "b_speedup": 3.0}, baseline, ["a_speedup", "b_speedup"], 0.3)
    assert all(c.passed for c in ok)  # 7.5 >= 7.0; rising never fails
    bad = compare({"a_speedup": 6.9, "b_speedup": 2.0}, baseline, ["a_speedup", "b_speedup"], 0.3)
    assert [c.passed for c in bad] == [False, True]
    assert bad[0].change == pytest.approx(-0.31)
    table = format_checks(bad, 0.3)
    assert "FAIL a_speedup" in table and "ok   b_speedup" in table


def test_compare_and_load_errors_are_one_line(tmp_path):
    with pytest.raises(InputError, match="no numeric 'c_speedup'"):
        compare({"c_speedup": 1.0}, {"a": 1}, ["c_speedup"], 0.3, baseline_path="base.json")
    with pytest.raises(InputError, match="--update-baseline"):
        load_figures(tmp_path / "missing.json", "baseline")
    (tmp_path / "bad.json").write_text("{nope")
    with pytest.raises(InputError, match="not valid JSON"):
        load_figures(tmp_path / "bad.json", "baseline")
    write_json(tmp_path / "ok.json", {"x": 1})
    assert load_figures(tmp_path / "ok.json", "baseline") == {"x": 1}


def test_measure_many_interleaves_and_extends_short_calls():
    order = []

    def fast():
        order.append("fast")

    def slow():
        order.append("slow")
        time.sleep(0.01)

    from diffaug.timing import measure_many

    m = measure_many({"fast": fast, "slow": slow}, items=2, warmup=1, repeats=2, min_time_s=0.05)
    assert order[:4] == ["fast", "slow", "fast", "slow"]  # a b a b: same load for both
    assert m["fast"].repeats == m["slow"].repeats >= 5  # rounds added until the 10 ms path ran 50 ms
    assert m["slow"].median_s > m["fast"].median_s


def test_paired_ratio_cancels_a_drifting_machine_speed():
    """Round i of each callable ran next to the other's round i. The machine gets slower and
    faster between rounds (factor below); the second path also has a slow outlier round of its
    own. Per-round ratios recover the true 10x; the ratio of medians does not."""
    from diffaug.timing import Measurement, measure_many, paired_ratio

    speed = [1.0, 1.0, 1.6, 1.6, 1.6, 1.0, 1.0]
    single = [0.01 * s for s in speed]
    iterative = [0.1 * s for s in speed]
    single[1] = 0.02  # a burst of load hit one single call: ratio 5 in that round
    mk = lambda t: Measurement(sorted(t)[len(t) // 2], min(t), len(t), 4, 0.0, "cpu_rss_sampled", tuple(t))  # noqa: E731
    a, b = mk(iterative), mk(single)
    assert paired_ratio(a, b) == pytest.approx(10.0)
    assert a.median_s / b.median_s == pytest.approx(0.1 / 0.016)  # 6.25: slow round of one, fast of the other
    assert "times_s" not in a.as_dict()
    with pytest.raises(ValueError, match="same measure_many"):
        paired_ratio(a, mk(single[:3]))
    m = measure_many({"x": lambda: None, "y": lambda: None}, items=1, repeats=3, memory=False)
    assert len(m["x"].times_s) == len(m["y"].times_s) == m["x"].repeats == 3
