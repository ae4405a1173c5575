"""The `diffaug` command: one typer app, one command per pipeline stage.

Each command lives in `stages/<name>.py` as a thin wrapper (parse args, load config, call the
library, write outputs); the library functions it calls are what the tests call directly.
"""

from __future__ import annotations

import importlib

import typer

import diffaug  # noqa: F401  (sets the OpenMP wait policy before any stage imports torch)

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
    """Keeps `diffaug <stage>` a sub-command even while only one stage is registered (typer
    would otherwise collapse a one-command app into that command)."""


for _name in STAGES:
    _module = importlib.import_module(f"stages.{_name}")
    app.command(name=_name, help=_module.__doc__)(_module.main)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
