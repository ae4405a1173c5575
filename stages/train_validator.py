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
    from diffaug.data.prepared import load_fingerprint, load_split
    from diffaug.io import atomic_dir, write_metrics
    from diffaug.runtime import resolve_runtime
    from diffaug.training.curves import Curves
    from diffaug.validator.fit import TIMING_KEYS, train_validator
    from diffaug.validator.loading import load_generator_parts

    base = load_section(params, "base")
    cfg = load_section(params, "train_validator")
    zoom = load_section(params, "generate").zoom  # the gate checks small lesions zoomed: train and report that way
    runtime = resolve_runtime(base)
    train = load_split(prepared, "train")
    num_classes = int(load_fingerprint(prepared)["num_classes"])
    vae, unet_state = load_generator_parts(generator, need_unet=cfg.init_from_generator)
    table = train.table
    with Curves(live_dir) as curves:
        result = train_validator(train.images, train.masks, vae, cfg, num_classes, runtime,
                                 generator_unet_state=unet_state, checkpoint_dir=checkpoints, curves=curves,
                                 size_class=table["size_class"].to_numpy() if "size_class" in table else None,
                                 groups=table["group"].astype(str).to_numpy() if "group" in table else None,
                                 zoom=zoom)
    with atomic_dir(out) as tmp:
        result.net.save_pretrained(tmp)
    write_metrics(metrics, timings, result.metrics, TIMING_KEYS)
    m = result.metrics
    typer.echo(
        f"validator: val Dice {m['val_dice_single']:.3f} (single-step) / {m['val_dice_iterative']:.3f} "
        f"({cfg.iterative_steps}-step), speed ratio {m['speed_ratio']:.1f}x -> {out}"
    )
