"""The `prepare` stage as one library call (`run_prepare`): read (phantom or adapter) → write
atomically → metrics."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from diffaug.data.config import PrepareConfig
from diffaug.data.prepared import write_prepared
from diffaug.data.readers import RESCALED
from diffaug.data.samples import Dataset
from diffaug.io import atomic_dir, write_json


def load_dataset(cfg: PrepareConfig, seed: int) -> Dataset:
    """Phantom frames or a real data set, resized, split and with normal backgrounds."""
    if cfg.dataset == "phantom":
        from diffaug.data.phantom import generate_phantom

        return generate_phantom(cfg, seed)
    from diffaug.data.adapters import load_real_dataset

    return load_real_dataset(cfg, seed)


def run_prepare(cfg: PrepareConfig, seed: int, out_dir: str | Path, metrics_path: str | Path) -> dict[str, Any]:
    """Run the whole stage. All reading and checking happens before anything is written; the
    output folder is built in a temporary sibling and renamed into place, so bad input leaves
    `out_dir` exactly as it was. Returns the metrics written to `metrics_path`."""
    data = load_dataset(cfg, seed)
    # the depth a high_bit_depth image came from goes to the metrics only, so that fixes_total
    # counts each file once
    rescaled = {f"n_{kind}": data.fixes.pop(kind, 0) for kind in RESCALED}
    with atomic_dir(out_dir) as tmp:
        metrics = write_prepared(
            data,
            tmp,
            image_size=cfg.image_size,
            small_area_frac=cfg.small_area_frac,
            flat_contrast=cfg.flat_contrast,
            cdr_normal_max=cfg.cdr_normal_max,
            preview_count=cfg.preview_count,
        )
        # temp files/folders are created private (0600/0700); outputs are ordinary files
        tmp.chmod(0o755)
        for path in tmp.iterdir():
            path.chmod(0o644)
    metrics = {"dataset": cfg.dataset, "family": data.family} | metrics | rescaled
    write_json(metrics_path, metrics)
    return metrics
