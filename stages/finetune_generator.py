"""Train the text-guided latent-diffusion inpainting generator (eq. 1-7).

Reads data/prepared/ (train + normals frames, manifest, fingerprint). Phases: (a) the VAE on every
frame, (b) self-supervised inpainting pretraining of the 9-channel UNet with random masks, (c)
fine-tuning on lesion masks with captions from the prompt bank (loss eq. 7). `backbone: tiny`
trains small models from scratch; a diffusers inpainting checkpoint (local folder or hub id +
revision) is fine-tuned by the same code. Writes data/generator/ (vae/, unet/, scheduler/,
diffaug_generator.json), plots/finetune_generator/ (dvclive curves), metrics/finetune_generator.json
(results) and metrics/timings/finetune_generator.json (wall-clock seconds); resumable checkpoints
in data/checkpoints/finetune_generator/ (a killed run resumes there).
"""

from __future__ import annotations

from pathlib import Path

import typer

from diffaug.cli_support import PARAMS_OPTION, stage_command


@stage_command
def main(
    params: Path = PARAMS_OPTION,
    prepared: Path = typer.Option(Path("data/prepared"), help="prepared data folder (prepare's output)"),
    out: Path = typer.Option(Path("data/generator"), help="generator folder to write"),
    checkpoints: Path = typer.Option(Path("data/checkpoints/finetune_generator"), help="resumable checkpoints (persistent)"),
    live: Path = typer.Option(Path("plots/finetune_generator"), help="dvclive curves folder to write"),
    metrics: Path = typer.Option(Path("metrics/finetune_generator.json"), help="metrics JSON to write (results)"),
    timings: Path = typer.Option(Path("metrics/timings/finetune_generator.json"),
                                 help="timings JSON to write (wall-clock seconds)"),
) -> None:
    import os

    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    from diffaug.config import load_section
    from diffaug.generator.stage_finetune_generator import run_finetune_generator

    base = load_section(params, "base")
    cfg = load_section(params, "finetune_generator")
    zoom = load_section(params, "generate").zoom  # phase (c) learns the scale generate paints small lesions at
    result = run_finetune_generator(cfg, base, prepared, out, checkpoints, live, metrics, zoom=zoom,
                                    timings_path=timings)
    if result is not None:
        typer.echo(
            f"generator written to {out}: vae PSNR {result['vae_psnr']:.2f} dB, "
            f"finetune loss {result['finetune_final_loss']}, {result['seconds']} s"
        )
