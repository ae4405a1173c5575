"""The `benchmark` stage as one library call (`run_benchmark`): measure every stage's model on the
trained artefacts (`suite.measure_all`) or read figures measured before, write them, update the
baseline and compare the ratios with it (`check.compare`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from diffaug.benchmark.check import RatioCheck, compare, load_figures
from diffaug.benchmark.config import BenchmarkConfig
from diffaug.benchmark.suite import BenchmarkInputs, measure_all
from diffaug.config import BaseConfig
from diffaug.io import write_json

DEFAULT_OUT = Path("metrics/benchmark.json")


@dataclass
class BenchmarkOutcome:
    figures: dict[str, Any]
    measured: bool  # False: the figures were read from `measured_path`
    out: Path | None  # where the figures were written (None: nowhere)
    checks: list[RatioCheck] | None  # None without `check`

    @property
    def failed(self) -> list[str]:
        """Keys of the ratios that fell more than the tolerance below the baseline."""
        return [c.key for c in self.checks or () if not c.passed]


def run_benchmark(cfg: BenchmarkConfig, base: BaseConfig, inputs: BenchmarkInputs, *, prompt_banks: Any,
                  scheduler: str, gate_cfg: Any, out: Path | None = None, check: bool = False,
                  update_baseline: bool = False, baseline: Path = Path("metrics/benchmark_baseline.json"),
                  measured_path: Path | None = None) -> BenchmarkOutcome:
    """Measure (or, with `measured_path`, read) the figures; write them to `out` (default
    metrics/benchmark.json, but under `check` / `update_baseline` only when `out` is given, so a
    check never overwrites the pipeline's metrics; never when they were read); with
    `update_baseline` write them to `baseline`; with `check` compare `cfg.check_keys` with the
    baseline, which is read first, so a bad baseline fails before minutes of measuring."""
    stored = load_figures(baseline, "baseline") if check else None
    target = None
    if measured_path is not None:
        figures = load_figures(measured_path, "measured")
    else:
        from diffaug.runtime import resolve_runtime

        figures = measure_all(inputs, cfg, resolve_runtime(base), prompt_banks=prompt_banks, scheduler=scheduler,
                              gate_cfg=gate_cfg)
        target = out if out is not None else (None if (check or update_baseline) else DEFAULT_OUT)
        if target is not None:
            write_json(target, figures)
    if update_baseline:
        write_json(baseline, figures)
    checks = None
    if check:
        checks = compare(figures, stored, cfg.check_keys, cfg.check_tolerance,
                         current_path=measured_path or "current run", baseline_path=baseline)
    return BenchmarkOutcome(figures, measured_path is None, target, checks)


__all__ = ["BenchmarkOutcome", "DEFAULT_OUT", "run_benchmark"]
