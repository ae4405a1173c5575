"""Train one downstream segmenter: an augmentation variant × synthetic ratio × seed.

Reads params.yaml (base, train_segmenter), --prepared (train.npz, fingerprint.json) and, for the
`diffaug` variant, --gated (accepted.npz + accepted.csv with the gate's IoU); with
train_segmenter.architecture latent, also --generator (its VAE) and --validator (the trained
validator whose network becomes the segmenter). --run is a run spec
from train_segmenter.runs (none, standard, copypaste, diffaug: ratio from
train_segmenter.synthetic_ratio; or with its own ratio, e.g. diffaug-r3) and --seed one of
train_segmenter.seeds; dvc.yaml's matrix runs every pair. Writes --out
(data/segmenters/<spec>-s<seed>/): the network as diffusers writes it (config.json,
diffusion_pytorch_model.safetensors) and run.json (variant, ratio, seed, training summary); --live (dvclive training curves, plots/train_segmenter/<run>/ in
dvc.yaml); --checkpoints (resumable state, data/checkpoints/train_segmenter/<run>/); --metrics
(metrics/train_segmenter/<run>.json: results) and --timings (metrics/timings/train_segmenter/<run>.json:
wall-clock seconds). Bad input stops with one line and writes nothing.
"""

from __future__ import annotations

from pathlib import Path

import typer

from diffaug.cli_support import PARAMS_OPTION, stage_command


@stage_command
def main(
    params: Path = PARAMS_OPTION,
    run: str = typer.Option("none", "--run", help="run spec: none, standard, copypaste, diffaug or <variant>-r<ratio>, e.g. diffaug-r3"),
    seed: int = typer.Option(0, "--seed", min=0, help="training seed of this run (one of train_segmenter.seeds)"),
    prepared: Path = typer.Option(Path("data/prepared"), "--prepared", help="prepared-data folder (train.npz, fingerprint.json)"),
    gated: Path = typer.Option(Path("data/synthetic/gated"), "--gated", help="gate output (accepted.npz, accepted.csv); read by diffaug only"),
    generator: Path = typer.Option(Path("data/generator"), "--generator", help="generator folder (vae/, unet/); read by architecture latent only"),
    validator: Path = typer.Option(Path("data/validator"), "--validator", help="trained validator; read by architecture latent only"),
    out: Path = typer.Option(None, "--out", help="run folder to write; default data/segmenters/<spec>-s<seed>"),
    live: Path = typer.Option(None, "--live", help="dvclive curves folder; default: no curves"),
    metrics: Path = typer.Option(None, "--metrics", help="metrics JSON; default metrics/train_segmenter/<run name>.json"),
    checkpoints: Path = typer.Option(None, "--checkpoints", help="resumable checkpoints of this run (dvc.yaml: data/checkpoints/train_segmenter/<run>); default: none"),
    timings: Path = typer.Option(None, "--timings", help="timings JSON (wall-clock seconds); default metrics/timings/train_segmenter/<run name>.json"),
) -> None:
    from diffaug.config import BaseConfig, load_section
    from diffaug.errors import ConfigError
    from diffaug.segmenter.config import TrainSegmenterConfig, parse_run_spec
    from diffaug.segmenter.stage_train_segmenter import run_train_segmenter
    from diffaug.segmenter.runs import run_name

    base = load_section(params, "base", BaseConfig)
    cfg = load_section(params, "train_segmenter", TrainSegmenterConfig)
    try:
        parse_run_spec(run)
    except ValueError as exc:
        raise ConfigError(f"--run: {exc}") from None
    name = run_name(run, seed)
    out = out or Path("data/segmenters") / name
    metrics = metrics or Path("metrics/train_segmenter") / f"{name}.json"
    timings = timings or Path("metrics/timings/train_segmenter") / f"{name}.json"
    summary = run_train_segmenter(cfg, base, run, seed, prepared, gated, out, metrics, live, generator, validator,
                                  checkpoints, timings_path=timings)
    warn = f" (warning: {'; '.join(summary['warnings'])})" if summary["warnings"] else ""
    if summary["best_step"] is not None:
        kept = (f"best validation Dice {summary['val_dice_best']:.3f} at step {summary['best_step']} of "
                f"{summary['n_val']} held-out frames")
    else:  # select: last
        kept = f"last step kept ({summary['n_val']} held-out frames scored)" if summary["n_val"] else (
            "last step kept, no frame held out")
    typer.echo(
        f"train_segmenter: {name} → {out}: {summary['n_real']} real + {summary['n_extra']} extra pairs, "
        f"{summary['steps']} steps, loss {summary['loss_first']:.3f} → {summary['loss_last']:.3f}, "
        f"{kept}, {summary['seconds']:.1f} s{warn}"
    )
