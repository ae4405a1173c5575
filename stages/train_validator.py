"""Train the validator: latent-space segmentation with single-step estimation (eq. 9-13).

Reads the real training split (data/prepared/), the generator's frozen VAE (data/generator/vae)
and its U-Net (data/generator/unet, to initialise the denoiser's encoder). Holds out a validation
part (whole video sequences where the data set has them), trains with the objective of eq. 12
(resumable checkpoints in data/checkpoints/train_validator/), and writes data/validator/
(`save_pretrained`: config.json + diffusion_pytorch_model.safetensors), dvclive curves in --live
(plots/train_validator/ in dvc.yaml), metrics/train_validator.json (validation Dice/IoU
single-step and iterative, held-out discrimination) and --timings
(metrics/timings/train_validator.json: seconds per phase, the single-step vs iterative speed ratio).
"""

from __future__ import annotations

from pathlib import Path

import typer

from diffaug.cli_support import PARAMS_OPTION, stage_command


@stage_command
def main(
    params: Path = PARAMS_OPTION,
    prepared: Path = typer.Option("data/prepared", help="prepared data folder (train.npz, fingerprint.json)"),
    generator: Path = typer.Option("data/generator", help="generator folder (vae/, unet/)"),
    out: Path = typer.Option("data/validator", help="output folder for the trained validator"),
    checkpoints: Path = typer.Option("data/checkpoints/train_validator", help="resumable checkpoints"),
    live_dir: Path = typer.Option("plots/train_validator", "--live", help="dvclive folder (training curves)"),
    metrics: Path = typer.Option("metrics/train_validator.json", help="metrics JSON (results)"),
    timings: Path = typer.Option("metrics/timings/train_validator.json", help="timings JSON (seconds, speed ratio)"),
) -> None:
    from diffaug.config import load_section
    from diffaug.validator.stage_train_validator import run_train_validator

    base = load_section(params, "base")
    cfg = load_section(params, "train_validator")
    zoom = load_section(params, "generate").zoom  # the gate checks small lesions zoomed: train and report that way
    views = load_section(params, "gate").views  # ...averaging dihedral views: report held-out acceptance so
    m = run_train_validator(cfg, base, prepared, generator, out, checkpoints, live_dir, metrics, zoom=zoom,
                            timings_path=timings, views=views)
    typer.echo(
        f"validator: val Dice {m['val_dice_single']:.3f} (single-step) / {m['val_dice_iterative']:.3f} "
        f"({cfg.iterative_steps}-step), speed ratio {m['speed_ratio']:.1f}x -> {out}"
    )
