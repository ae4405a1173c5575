"""Paint synthetic lesions onto every normal background with the trained inpainting generator.

Reads params.yaml (base, generate, finetune_generator.prompts), --generator (data/generator/:
vae/, unet/, scheduler/, diffaug_generator.json) and --prepared (data/prepared/: normals.npz,
mask_bank.npz + .csv, manifest.csv, fingerprint.json). For each background, generate.variants
samples from prompt × placed bank mask × seed (CFG with the negative prompt, eq. 8), composited
onto the original pixels outside the mask. Writes --out (data/synthetic/raw/: samples.npz with
images, intended masks, ids; manifest.csv one row per sample; preview.png; backgrounds.npz and
backgrounds.png, the backgrounds painted on), --metrics (metrics/generate.json: counts, prompts,
how the backgrounds were made) and --timings (metrics/timings/generate.json: the stage's and the
sampler's samples/s and the time ratio against diffusers' stock inpainting pipeline). Several GPUs: `accelerate launch --num_processes N $(which diffaug) generate`.
"""

from __future__ import annotations

from pathlib import Path

import typer

from diffaug.cli_support import PARAMS_OPTION, stage_command


@stage_command
def main(
    params: Path = PARAMS_OPTION,
    generator: Path = typer.Option(Path("data/generator"), "--generator", help="trained generator folder"),
    prepared: Path = typer.Option(Path("data/prepared"), "--prepared", help="prepared-data folder"),
    out: Path = typer.Option(Path("data/synthetic/raw"), "--out", help="synthetic-data folder to write"),
    metrics: Path = typer.Option(Path("metrics/generate.json"), "--metrics", help="metrics JSON to write"),
    timings: Path = typer.Option(Path("metrics/timings/generate.json"), "--timings", help="timings JSON to write"),
) -> None:
    from diffaug.config import BaseConfig, load_section
    from diffaug.generator.config import FinetuneGeneratorConfig, GenerateConfig
    from diffaug.generator.stage_generate import run_generate

    base = load_section(params, "base", BaseConfig)
    cfg = load_section(params, "generate", GenerateConfig)
    banks = load_section(params, "finetune_generator", FinetuneGeneratorConfig).prompts
    result = run_generate(generator, prepared, out, metrics, cfg, base, banks, timings_path=timings)
    if result:
        ratio = result.get("ratio_vs_stock")
        vs = f", {ratio:.2f}× the stock pipeline's time" if ratio is not None else ""
        typer.echo(
            f"generate: {result['n_samples']} samples from {result['n_backgrounds']} backgrounds → {out} "
            f"({result['samples_per_s']:.2f} samples/s{vs})"
        )
