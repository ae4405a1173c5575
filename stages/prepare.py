"""Prepare the data set: phantom (from base.seed) or Kvasir-SEG / CVC-ClinicDB / REFUGE2 / folder.

Reads params.yaml (base, prepare) and, for real data, the folder prepare.root. Writes into
--out (data/prepared/): train.npz, test.npz, normals.npz (images, class-index masks, ids),
mask_bank.npz + mask_bank.csv (real lesion shapes), manifest.csv (one row per sample),
fingerprint.json (classes, counts, intensity, lesion sizes, contrast, CDR, automatic fixes) and
preview.png; and --metrics (metrics/prepare.json). Bad input stops with one line naming the file
and leaves --out unchanged.
"""

from __future__ import annotations

from pathlib import Path

import typer

from diffaug.cli_support import PARAMS_OPTION, stage_command


@stage_command
def main(
    params: Path = PARAMS_OPTION,
    out: Path = typer.Option(Path("data/prepared"), "--out", help="prepared-data folder to write"),
    metrics: Path = typer.Option(Path("metrics/prepare.json"), "--metrics", help="metrics JSON to write"),
) -> None:
    from diffaug.config import BaseConfig, load_section
    from diffaug.data.config import PrepareConfig
    from diffaug.data.stage_prepare import run_prepare

    base = load_section(params, "base", BaseConfig)
    cfg = load_section(params, "prepare", PrepareConfig)
    result = run_prepare(cfg, base.seed, out, metrics)
    typer.echo(
        f"prepare: {cfg.dataset} ({result['family']}) → {out}: train {result['n_train']}, "
        f"test {result['n_test']}, normals {result['n_normals']}, mask bank {result['n_mask_bank']}, unlabelled {result['n_unlabelled']}, "
        f"automatic fixes {result['fixes_total']}"
    )
