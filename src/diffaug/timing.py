"""Timing and peak memory of one callable, on CPU or CUDA: what the benchmark measures with, and
train_validator's speed comparison (`diffaug.validator.speed`).

Timing: `warmup` untimed calls (allocator, kernel autotuning, lazy init), then `repeats` timed
calls; the MEDIAN wall time is reported because on a shared machine the distribution has a long
right tail (other processes) and the median ignores it. Paths that are compared with each other
are timed interleaved (`measure_many`: a b a b ...) so a burst of load hits both alike. On CUDA
every timed call is bracketed by `torch.cuda.synchronize()` so queued kernels are counted.

Peak memory:
- CUDA: `torch.cuda.max_memory_allocated` after `reset_peak_memory_stats`, minus the memory
  allocated before the call (the maximum over the timed calls): the extra memory the call needed
  (weights already on the GPU are not counted; the benchmark reports them apart, `module_bytes`).
- CPU: the process's resident set size (RSS) sampled by a background thread every
  `sample_interval_s` with psutil; the peak RSS during the calls minus the RSS before them. RSS is
  what the OS sees (torch's CPU allocator and numpy both land there; tracemalloc would miss torch
  tensors), at the cost of missing spikes shorter than the sampling interval; and memory that the
  allocator freed but kept from an earlier call (warm-up, another path) is reused without growing
  the RSS, so the CPU figure is the growth a call still needed, a lower bound of its working set.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import psutil
import torch


@dataclass(frozen=True)
class Measurement:
    """Result of timing one callable that processes `items` samples per call."""

    median_s: float  # median wall time of one call
    min_s: float
    repeats: int
    items: int  # samples processed per call
    peak_mem_mb: float  # extra memory at peak during the calls (see module docstring)
    memory_kind: str  # 'cuda_max_allocated' or 'cpu_rss_sampled'
    # every timed call in round order (measure_many: round i of each interleaved callable ran
    # back to back, so ratios can be paired per round; `paired_ratio`); not in as_dict
    times_s: tuple[float, ...] = field(default=(), repr=False, compare=False)

    @property
    def items_per_s(self) -> float:
        return self.items / self.median_s if self.median_s > 0 else float("inf")

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("times_s")
        return {**d, "items_per_s": self.items_per_s}


def paired_ratio(num: Measurement, den: Measurement) -> float:
    """Median over rounds of num / den, each round's two calls timed next to each other by
    `measure_many`. On a machine whose speed drifts (shared cores, clock changes), the ratio of
    the two medians can pair a fast round of one with a slow round of the other; a per-round
    ratio cancels the drift."""
    if not num.times_s or len(num.times_s) != len(den.times_s):
        raise ValueError("paired_ratio: both measurements must come from the same measure_many call")
    return statistics.median(a / b for a, b in zip(num.times_s, den.times_s))


class _RssSampler:
    """Background thread recording the highest RSS of this process while it runs."""

    def __init__(self, interval_s: float) -> None:
        self.interval_s = interval_s
        self.process = psutil.Process()
        self.start_rss = self.process.memory_info().rss
        self.peak_rss = self.start_rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak_rss = max(self.peak_rss, self.process.memory_info().rss)
            self._stop.wait(self.interval_s)

    def __enter__(self) -> _RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_rss = max(self.peak_rss, self.process.memory_info().rss)

    @property
    def peak_delta_bytes(self) -> int:
        return max(0, self.peak_rss - self.start_rss)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed_call(fn: Callable[[], Any], device: torch.device, sample_interval_s: float) -> tuple[float, int]:
    """(wall seconds, extra peak bytes) of one call."""
    if device.type == "cuda":
        _sync(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        t0 = time.perf_counter()
        fn()
        _sync(device)
        return time.perf_counter() - t0, torch.cuda.max_memory_allocated(device) - before
    with _RssSampler(sample_interval_s) as sampler:
        t0 = time.perf_counter()
        fn()
        elapsed = time.perf_counter() - t0
    return elapsed, sampler.peak_delta_bytes


def _time_only(fn: Callable[[], Any], device: torch.device) -> tuple[float, int]:
    _sync(device)
    t0 = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - t0, 0


def measure_many(
    fns: dict[str, Callable[[], Any]],
    *,
    items: int,
    device: torch.device | str = "cpu",
    warmup: int = 1,
    repeats: int = 3,
    min_time_s: float = 0.0,
    max_rounds: int = 50,
    sample_interval_s: float = 0.005,
    memory: bool = True,
) -> dict[str, Measurement]:
    """Time several callables that each process `items` samples per call, INTERLEAVED
    (a b a b ...) so that a burst of load from other processes hits all of them alike: the
    ratios between them stay meaningful on a shared machine. At least `repeats` rounds, and more
    (up to `max_rounds`) until every callable has run for `min_time_s` in total, so that short
    calls get enough samples for a stable median. Runs under `torch.inference_mode()`.
    `memory=False` times only (no RSS sampling thread competing for the CPU; peak_mem_mb 0)."""
    if items < 1 or repeats < 1 or warmup < 0:
        raise ValueError("measure: items and repeats must be >= 1, warmup >= 0")
    device = torch.device(device)
    times: dict[str, list[float]] = {name: [] for name in fns}
    peaks: dict[str, int] = {name: 0 for name in fns}
    with torch.inference_mode():
        for _ in range(warmup):
            for fn in fns.values():
                fn()
        rounds = 0
        while rounds < repeats or (rounds < max_rounds and min(sum(t) for t in times.values()) < min_time_s):
            for name, fn in fns.items():
                elapsed, peak = _timed_call(fn, device, sample_interval_s) if memory else _time_only(fn, device)
                times[name].append(elapsed)
                peaks[name] = max(peaks[name], peak)
            rounds += 1
    kind = "cuda_max_allocated" if device.type == "cuda" else "cpu_rss_sampled"
    return {
        name: Measurement(
            median_s=statistics.median(times[name]),
            min_s=min(times[name]),
            repeats=len(times[name]),
            items=items,
            peak_mem_mb=peaks[name] / 2**20,
            memory_kind=kind,
            times_s=tuple(times[name]),
        )
        for name in fns
    }


def measure(fn: Callable[[], Any], *, items: int, **kwargs: Any) -> Measurement:
    """Time one callable (see `measure_many`): warm-up, then `repeats` timed calls, median."""
    return measure_many({"fn": fn}, items=items, **kwargs)["fn"]


def measure_training(step: Callable[[], Any], *, items: int, device: torch.device | str = "cpu", repeats: int = 3,
                     warmup: int = 1) -> Measurement:
    """Time a training step (forward, backward, optimiser): `measure` runs under inference mode,
    which autograd cannot leave, so this times with gradients on, warm-up first, median of `repeats`."""
    import statistics

    device = torch.device(device)
    with torch.inference_mode(False), torch.enable_grad():
        for _ in range(max(1, warmup)):  # optimizer state allocation, kernel selection
            step()
        times, peak = [], 0
        for _ in range(repeats):
            elapsed, p = _timed_call(step, device, 0.005)
            times.append(elapsed)
            peak = max(peak, p)
    kind = "cuda_max_allocated" if device.type == "cuda" else "cpu_rss_sampled"
    return Measurement(statistics.median(times), min(times), repeats, items, peak / 2**20, kind)
