"""The throughput check: compare a run's ratios with a stored baseline.

Only ratios are compared (e.g. single-step vs iterative validator throughput measured side by
side in the same run): absolute samples/s depend on the machine and on what else runs on it, a
ratio of two paths measured back to back on the same machine mostly does not. A ratio fails when
it falls more than `tolerance` (relative) below its baseline value; rising is never a failure.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from diffaug.errors import InputError
from diffaug.io import read_json


@dataclass(frozen=True)
class RatioCheck:
    key: str
    baseline: float
    current: float
    floor: float  # baseline * (1 - tolerance): the lowest value that still passes

    @property
    def passed(self) -> bool:
        return self.current >= self.floor

    @property
    def change(self) -> float:
        """Relative change against the baseline (-0.4 = 40 % lower)."""
        return self.current / self.baseline - 1.0 if self.baseline else 0.0


def load_figures(path: str | Path, what: str) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        hint = (
            "write one with `diffaug benchmark --update-baseline`"
            if what == "baseline"
            else "run `diffaug benchmark` (or `dvc repro benchmark`) first"
        )
        raise InputError(f"{path}: {what} benchmark figures not found; {hint}")
    try:
        data = read_json(path)
    except ValueError:
        raise InputError(f"{path}: not valid JSON; rewrite it with `diffaug benchmark --update-baseline`") from None
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a JSON object of flat benchmark keys")
    return data


def _number(figures: dict[str, Any], key: str, path: str | Path, what: str) -> float:
    value = figures.get(key)
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise InputError(
            f"{path}: {what} has no numeric '{key}'; measure it (or remove it from benchmark.check_keys) "
            "and rewrite the baseline with `diffaug benchmark --update-baseline`"
        )
    return float(value)


def compare(
    current: dict[str, Any],
    baseline: dict[str, Any],
    keys: list[str],
    tolerance: float,
    *,
    current_path: str | Path = "current run",
    baseline_path: str | Path = "baseline",
) -> list[RatioCheck]:
    """One RatioCheck per key; raises InputError when a key is missing from either side."""
    checks = []
    for key in keys:
        base = _number(baseline, key, baseline_path, "baseline")
        cur = _number(current, key, current_path, "current run")
        checks.append(RatioCheck(key=key, baseline=base, current=cur, floor=base * (1.0 - tolerance)))
    return checks


def format_checks(checks: list[RatioCheck], tolerance: float) -> str:
    """Plain-text table (one line per ratio) for the terminal and CI logs."""
    lines = [f"throughput check (fail below baseline x {1 - tolerance:.2f}):"]
    width = max(len(c.key) for c in checks)
    for c in checks:
        status = "ok  " if c.passed else "FAIL"
        lines.append(
            f"  {status} {c.key:<{width}}  current {c.current:9.3f}  baseline {c.baseline:9.3f}"
            f"  floor {c.floor:9.3f}  change {c.change:+.1%}"
        )
    return "\n".join(lines)
