"""The benchmark's own measuring aids: the injected slowdown that `--check` must catch, the name of
the device and the memory the weights take. The timing itself is `diffaug.timing`, shared with
train_validator's speed comparison (`diffaug.validator.speed`).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

import torch

# Env var that makes every call of diffaug's own measured code paths take FACTOR times as long
# (a sleep of (FACTOR - 1) x the call's own time after it), to demonstrate that
# `diffaug benchmark --check` fails on a slowed build (docs/benchmark.md). A factor rather than a
# fixed delay: the slowdown is then the same on any machine and under any load.
SLOWDOWN_ENV = "DIFFAUG_BENCH_SLOWDOWN"


def injected_slowdown() -> float:
    """The slowdown factor asked for through DIFFAUG_BENCH_SLOWDOWN (1 = none, when unset)."""
    raw = os.environ.get(SLOWDOWN_ENV, "").strip()
    if not raw:
        return 1.0
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not value >= 1.0:
        from diffaug.errors import ConfigError

        raise ConfigError(f"{SLOWDOWN_ENV}={raw!r}: must be a factor >= 1, e.g. 2 (twice as slow)")
    return value


def slowed(fn: Callable[[], Any]) -> Callable[[], Any]:
    """Wrap one of diffaug's own code paths with the injected slowdown (a no-op when it is 1).

    The sleep happens inside the timed call, so throughput and every ratio built on the wrapped
    path fall exactly as they would if the code itself had become slower."""
    factor = injected_slowdown()
    if factor == 1.0:
        return fn

    def _slow() -> Any:
        t0 = time.perf_counter()
        result = fn()
        time.sleep((factor - 1.0) * (time.perf_counter() - t0))
        return result

    return _slow


def device_name(device: torch.device | str) -> str:
    """Human name of the device the figures were measured on, e.g. 'NVIDIA H100 80GB HBM3' or
    'cpu: x86_64, 2 threads'."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    import platform

    return f"cpu: {platform.machine() or 'unknown'}, {torch.get_num_threads()} threads"


def module_bytes(*modules: torch.nn.Module) -> int:
    """Bytes held by the parameters and buffers of the given modules (weights memory)."""
    total = 0
    for module in modules:
        for tensor in [*module.parameters(), *module.buffers()]:
            total += tensor.numel() * tensor.element_size()
    return total
