"""Evaluate every trained segmenter on the real test split; compare the variants.

Reads params.yaml (base, evaluate; train_segmenter.runs and .seeds say which
runs), --prepared (test.npz, manifest.csv, fingerprint.json), --segmenters
(<variant>-r<ratio>-s<seed>/ per run) and --gated (accepted/rejected synthetic
sets). Writes --out (data/evaluate/: per-image, per-lesion, per-run and
per-variant CSVs, plots, worst-case overlays, report.md) and --metrics
(metrics/evaluate.json: Dice, IoU, sensitivity, FNR, specificity as mean ± std
over seeds per variant; lesion-level FNR of small / flat / early-glaucoma
lesions with their counts; extra pairs each copypaste / diffaug variant
used of those it requested (from the run folders' run.json); Wilcoxon
p-values, bootstrap CIs and a verdict reading both, against standard and
copypaste; LPIPS/FID of accepted vs rejected synthetic lesions,
or why they are unavailable).
"""

from __future__ import annotations

from pathlib import Path

import typer

from diffaug.cli_support import PARAMS_OPTION, stage_command


@stage_command
def main(
    params: Path = PARAMS_OPTION,
    prepared: Path = typer.Option(Path("data/prepared"), "--prepared", help="prepared-data folder (test split)"),
    segmenters: Path = typer.Option(Path("data/segmenters"), "--segmenters", help="folder of trained runs"),
    gated: Path = typer.Option(Path("data/synthetic/gated"), "--gated", help="gate output (accepted/rejected)"),
    out: Path = typer.Option(Path("data/evaluate"), "--out", help="folder for tables, plots, overlays, report.md"),
    metrics: Path = typer.Option(Path("metrics/evaluate.json"), "--metrics", help="metrics JSON to write"),
) -> None:
    from diffaug.config import BaseConfig, load_section
    from diffaug.evaluation.config import EvaluateConfig
    from diffaug.evaluation.stage_evaluate import run_evaluate
    from diffaug.segmenter import planned_runs
    from diffaug.segmenter.config import TrainSegmenterConfig

    base = load_section(params, "base", BaseConfig)
    cfg = load_section(params, "evaluate", EvaluateConfig)
    seg_cfg = load_section(params, "train_segmenter", TrainSegmenterConfig)
    result = run_evaluate(prepared, segmenters, gated, out, metrics, cfg, base, planned_runs(seg_cfg))
    for name, block in result.items():
        if isinstance(block, dict) and "dice_mean" in block:
            dice = block["dice_mean"]
            std = block["dice_std"]
            fnr = block.get("fnr_small")
            typer.echo(
                f"evaluate: {name:<14} Dice {dice if dice is None else f'{dice:.3f}'}"
                f"{'' if std is None else f' ± {std:.3f}'}  small-lesion FNR "
                f"{'—' if fnr is None else f'{fnr:.3f}'} (n={block.get('n_small')})"
            )
            if block.get("synthetic_shortfall"):
                typer.echo(
                    f"evaluate: {name:<14} trained on {block['synthetic_used']} of {block['synthetic_requested']} "
                    "requested extra pairs (a higher train_segmenter.synthetic_ratio adds nothing)"
                )
    for name, res in result.get("significance", {}).items():
        p = res.get("p_value")
        d = res.get("mean_diff")
        typer.echo(f"evaluate: {name}: ΔDice {'—' if d is None else f'{d:+.3f}'}, p = {'—' if p is None else f'{p:.2g}'}: {res.get('verdict')} ({res.get('status')})")
    typer.echo(f"evaluate: report → {out / 'report.md'}")
