"""`benchmark` params section: what to measure, how often, and the `--check` tolerance."""

from __future__ import annotations

from pydantic import Field, field_validator

from diffaug.config import Section

# Ratios where higher is better; `--check` compares these (not absolute times, which depend on
# the machine) with the baseline. See docs/benchmark.md for each one's meaning.
DEFAULT_CHECK_KEYS = [
    "validator_single_step_speedup",
    "generate_speedup_vs_stock",
    "gate_vs_generate_speedup",
]


class BenchmarkConfig(Section):
    """Throughput (samples/s) and peak memory of every stage's model on the trained artefacts."""

    batch_size: int = Field(4, ge=1)  # samples per measured call (paper measures batch 1 on an RTX 4090; GPU profile: 8)
    warmup: int = Field(1, ge=0)  # untimed calls before timing (allocator, lazy init, autotuning)
    repeats: int = Field(3, ge=1)  # timed calls at least; the median is reported
    min_time_s: float = Field(1.0, ge=0.0)  # ...and more calls (max 50) until each compared path ran this long
    generate_steps: int = Field(4, ge=1)  # denoising steps for both samplers in the generate comparison (paper: 50)
    guidance_scale: float = Field(7.5, ge=1.0)  # CFG scale for both samplers (eq. 8; paper: 7.5)
    iterative_steps: int = Field(10, ge=2)  # T of the validator's iterative baseline (single-step needs 1 call)
    segmenter_run: str = ""  # run folder under data/segmenters/ to time; "" = the first one in sorted order
    check_tolerance: float = Field(0.3, gt=0.0, lt=1.0)  # --check fails when a ratio < baseline * (1 - tolerance)
    check_keys: list[str] = Field(default_factory=lambda: list(DEFAULT_CHECK_KEYS))  # ratios (higher is better) --check compares

    @field_validator("check_keys")
    @classmethod
    def _non_empty(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("must name at least one ratio key, e.g. generate_speedup_vs_stock")
        return value
