"""The `diffaug` command: one typer app, one command per pipeline stage.

Each command lives in `stages/<name>.py` as a thin wrapper (parse args, load config, call the
library, write outputs); the library functions it calls are what the tests call directly.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path

import typer

import diffaug  # noqa: F401  (OpenMP's wait policy stays at its default: see diffaug/__init__.py)
from diffaug.cli_support import stage_command

# Pipeline order; stage name = params section = CLI command = stages/<name>.py.
STAGES = [
    "prepare",
    "finetune_generator",
    "train_validator",
    "generate",
    "gate",
    "train_segmenter",
    "evaluate",
    "benchmark",
]

app = typer.Typer(
    name="diffaug",
    help="DiffAug: diffusion-based data augmentation for medical image segmentation. "
    "Each command is one stage of dvc.yaml; run the whole pipeline with `dvc repro`.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

@app.callback()
def _root() -> None:
    """Keeps `diffaug <stage>` a sub-command (typer would otherwise collapse a one-command app)."""
    from diffaug.progress import progress_enabled

    if not progress_enabled():
        # the Hugging Face libraries' own tqdm bars (weight loading) stay out of CI and DVC logs
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")


for _name in STAGES:
    _module = importlib.import_module(f"stages.{_name}")
    app.command(name=_name, help=_module.__doc__)(_module.main)


@app.command(name="overlay")
def overlay(
    overlay_file: Path = typer.Argument(..., help="overlay YAML, e.g. params/sd2_inpainting_kvasir.yaml"),
    params: Path = typer.Option(Path("params.yaml"), "--params", "-p", help="params file to update in place"),
) -> None:
    """Merge a params overlay (params/*.yaml) into params.yaml, keeping its comments. The merged
    file is validated first; a bad overlay leaves params.yaml untouched. Not a pipeline stage."""
    _apply_overlay(overlay_file, params)


@stage_command
def _apply_overlay(overlay_file: Path, params: Path) -> None:
    from diffaug.config import apply_overlay
    from diffaug.errors import InputError

    if not overlay_file.is_file():
        raise InputError(f"{overlay_file}: overlay not found; see params/ for the ones that ship")
    apply_overlay(params, overlay_file)
    typer.echo(f"overlay: {overlay_file} merged into {params}")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
