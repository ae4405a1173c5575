"""Quality gate: keep a generated sample iff IoU(intended mask, validator's mask) > gate.threshold (eq. 14).

Reads data/synthetic/raw/ (samples.npz, manifest.csv), the validator (data/validator/) with the
generator's VAE (data/generator/vae) and, if present, metrics/timings/generate.json (to price the gate
against generation). Writes data/synthetic/gated/ (accepted.npz/.csv, rejected.npz/.csv with the
IoU of every row, iou.csv histogram, grid.png), metrics/gate.json (acceptance, the background
check) and metrics/timings/gate.json (images/s, cost against generation). gate.enabled: false accepts
every sample (ablation "without validation").
"""

from __future__ import annotations

from pathlib import Path

import typer

from diffaug.cli_support import PARAMS_OPTION, stage_command


@stage_command
def main(
    params: Path = PARAMS_OPTION,
    raw: Path = typer.Option("data/synthetic/raw", help="generated samples (samples.npz, manifest.csv)"),
    validator: Path = typer.Option("data/validator", help="trained validator folder"),
    generator: Path = typer.Option("data/generator", help="generator folder (its vae/ is used)"),
    prepared: Path = typer.Option("data/prepared", help="prepared data (its training split: gate.realism_max)"),
    generate_timings: Path = typer.Option("metrics/timings/generate.json", help="generate's timings (samples_per_s), optional"),
    out: Path = typer.Option("data/synthetic/gated", help="output folder"),
    metrics: Path = typer.Option("metrics/gate.json", help="metrics JSON"),
    timings: Path = typer.Option("metrics/timings/gate.json", help="timings JSON"),
) -> None:
    import sys

    from diffaug.config import load_section
    from diffaug.validator.stage_gate import run_gate

    base = load_section(params, "base")
    cfg = load_section(params, "gate")
    m = run_gate(cfg, base, raw, validator, generator, out, metrics, timings_path=timings,
                 generate_timings=generate_timings, prepared_dir=prepared).metrics
    if m["n_generated"] == 0:
        print(f"warning: {raw}: no generated samples; wrote empty accepted/rejected sets", file=sys.stderr)
    typer.echo(f"gate: accepted {m['n_accepted']}/{m['n_generated']} (rate {m['acceptance_rate']:.2f}) -> {out}")
