"""The `gate` stage as one library call (`run_gate`): load the validator with the generator's VAE,
validate every generated sample (`gate.gate_samples`, eq. 14), write the accepted/rejected sets
(`gate.write_gate_outputs`), the metrics and the timings."""

from __future__ import annotations

from pathlib import Path

from diffaug.config import BaseConfig
from diffaug.validator.config import GateConfig
from diffaug.validator.gate import TIMING_KEYS, GateReport, gate_samples, write_gate_outputs


def run_gate(cfg: GateConfig, base: BaseConfig, raw_dir: str | Path, validator_dir: str | Path,
             generator_dir: str | Path, out_dir: str | Path, metrics_path: str | Path,
             timings_path: str | Path | None = None, generate_timings: str | Path | None = None,
             prepared_dir: str | Path | None = None) -> GateReport:
    """Gate raw_dir's samples with the validator in validator_dir (and generator_dir's VAE); write
    out_dir (atomically), `metrics_path` (results) and `timings_path` (the `TIMING_KEYS`; None: not
    written). `generate_timings` (metrics/timings/generate.json, optional) prices the gate against
    generation; `prepared_dir` gives the training split the realism criterion (gate.realism_max)
    compares with. Returns the report (`report.metrics`: results and timings in one dict)."""
    from diffaug.io import write_metrics
    from diffaug.runtime import resolve_runtime
    from diffaug.validator.loading import load_vae, load_validator

    runtime = resolve_runtime(base)
    model = load_validator(validator_dir, load_vae(generator_dir), device=runtime.device, dtype=runtime.dtype)
    train = None
    if cfg.realism_max is not None and prepared_dir is not None:
        from diffaug.validator.realism import load_train_lesions

        train = load_train_lesions(prepared_dir)
    report = gate_samples(raw_dir, model, cfg, seed=runtime.seed, generate_metrics=generate_timings, train=train)
    write_gate_outputs(report, out_dir, cfg)
    write_metrics(metrics_path, timings_path, report.metrics, TIMING_KEYS)
    return report


__all__ = ["TIMING_KEYS", "run_gate"]
