"""pytest-benchmark suite: NOT run by the default test command.

The project's pytest config passes `--benchmark-disable`; these tests are skipped unless
benchmarking is asked for explicitly:

    python -m pytest tests/benchmarks --benchmark-enable            # time them
    python -m pytest tests/benchmarks --benchmark-enable --benchmark-autosave   # keep .benchmarks/
    python -m pytest tests/benchmarks --benchmark-enable --benchmark-compare --benchmark-compare-fail=median:30%

so the default `python -m pytest` collects them, reports them as skipped, and spends no time.
"""

from __future__ import annotations

from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config, items):
    if config.getoption("benchmark_enable", default=False) or config.getoption("benchmark_only", default=False):
        return
    skip = pytest.mark.skip(reason="benchmark suite: run with --benchmark-enable")
    for item in items:
        if HERE in Path(str(item.fspath)).resolve().parents:
            item.add_marker(skip)
