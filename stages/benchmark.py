"""Measure throughput (samples/s) and peak memory of every stage's model; check them against a baseline.

Reads params.yaml (base, benchmark, generate.scheduler, finetune_generator.prompts, gate) and the
trained artefacts: --generator (data/generator), --validator (data/validator), --segmenters
(data/segmenters, one run timed), --prepared (data/prepared: normal backgrounds, mask bank) and
--synthetic (data/synthetic/raw/samples.npz, the images the gate sees). Writes --out
(metrics/benchmark.json): flat keys, ratios beside absolute figures, the device named.

--update-baseline writes the figures to --baseline (metrics/benchmark_baseline.json, committed).
--check compares the ratios named in benchmark.check_keys with the baseline and exits 1 when one
falls more than benchmark.check_tolerance below it (ratios, not absolute times: machines differ).
With --check or --update-baseline the figures go to --out only when --out is given, so a check
never overwrites the pipeline's metrics; --measured FILE checks an existing figures file instead
of measuring again. DIFFAUG_BENCH_SLOWDOWN=<factor> makes each call of diffaug's own paths
(sampler, single-step validator, gate) take that many times as long, to show the check failing
(docs/benchmark.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from diffaug.cli_support import PARAMS_OPTION, stage_command


@stage_command
def main(
    params: Path = PARAMS_OPTION,
    generator: Path = typer.Option(Path("data/generator"), "--generator", help="trained generator folder"),
    validator: Path = typer.Option(Path("data/validator"), "--validator", help="trained validator folder"),
    segmenters: Path = typer.Option(Path("data/segmenters"), "--segmenters", help="folder of trained segmenter runs"),
    prepared: Path = typer.Option(Path("data/prepared"), "--prepared", help="prepared-data folder"),
    synthetic: Path = typer.Option(Path("data/synthetic/raw"), "--synthetic", help="generated samples folder"),
    out: Optional[Path] = typer.Option(None, "--out", help="figures JSON to write [default: metrics/benchmark.json, "
                                       "not written under --check / --update-baseline unless given]"),
    check: bool = typer.Option(False, "--check", help="compare the ratios with --baseline; exit 1 on a regression"),
    update_baseline: bool = typer.Option(False, "--update-baseline", help="write the figures to --baseline"),
    baseline: Path = typer.Option(Path("metrics/benchmark_baseline.json"), "--baseline", help="stored baseline figures"),
    measured: Optional[Path] = typer.Option(None, "--measured", help="use this figures JSON instead of measuring"),
) -> None:
    from diffaug.benchmark.check import format_checks
    from diffaug.benchmark.config import BenchmarkConfig
    from diffaug.benchmark.stage_benchmark import run_benchmark
    from diffaug.benchmark.suite import BenchmarkInputs
    from diffaug.config import BaseConfig, load_section
    from diffaug.errors import DiffaugError

    base = load_section(params, "base", BaseConfig)
    cfg = load_section(params, "benchmark", BenchmarkConfig)
    result = run_benchmark(
        cfg, base, BenchmarkInputs(generator, validator, segmenters, prepared, synthetic),
        prompt_banks=load_section(params, "finetune_generator").prompts,
        scheduler=load_section(params, "generate").scheduler,
        gate_cfg=load_section(params, "gate"),
        out=out, check=check, update_baseline=update_baseline, baseline=baseline, measured_path=measured,
    )
    figures = result.figures
    if result.measured:
        keys = [k for k in figures if k.endswith("_per_s") or "speedup" in k]
        print(f"benchmark on {figures['device']} ({figures['seconds']:.1f} s):")
        for key in sorted(keys):
            print(f"  {key:<36} {figures[key]:10.3f}")
    if update_baseline:
        print(f"baseline written to {baseline}")
    if result.checks is not None:
        print(format_checks(result.checks, cfg.check_tolerance))
        if result.failed:
            raise DiffaugError(
                f"throughput check failed: {', '.join(result.failed)} fell more than "
                f"{cfg.check_tolerance:.0%} below {baseline}; find the slowdown or, if intended, "
                "rerun with --update-baseline"
            )
        print("throughput check passed")
