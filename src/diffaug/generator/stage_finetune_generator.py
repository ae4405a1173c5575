"""The `finetune_generator` stage as one library call: read prepared data, train (resuming from
the last checkpoint), write the generator folder, the dvclive curves, the metrics and the
timings, each atomically (a failure leaves no partial output)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from diffaug.config import BaseConfig
from diffaug.generator.config import FinetuneGeneratorConfig
from diffaug.generator.models import save_generator
from diffaug.generator.train import TIMING_KEYS, finetune_generator
from diffaug.generator.train_data import load_train_data
from diffaug.io import atomic_dir, write_metrics
from diffaug.runtime import resolve_runtime


def run_finetune_generator(
    cfg: FinetuneGeneratorConfig,
    base: BaseConfig,
    prepared_dir: str | Path,
    out_dir: str | Path,
    ckpt_dir: str | Path,
    live_dir: str | Path,
    metrics_path: str | Path,
    stop_after: int | None = None,
    zoom: Any = None,
    timings_path: str | Path | None = None,
) -> dict[str, Any] | None:
    """Train and write `out_dir` (generator folder), `live_dir`, `metrics_path` (results) and
    `timings_path` (the `TIMING_KEYS`; None: not written).

    The curves of every phase, those before a resume included (they travel in the checkpoints),
    are written to `live_dir` at the end. Returns the metrics and timings in one dict, or None
    when `stop_after` stopped the run early (nothing but the checkpoints is written then). `zoom`
    (generate.zoom) adds zoomed windows around the lesions to phase (c).
    """
    runtime = resolve_runtime(base)
    data = load_train_data(prepared_dir, cfg, zoom, base.seed)
    ckpt_dir = Path(ckpt_dir)
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    result = finetune_generator(cfg, runtime, data, ckpt_dir, live_dir, stop_after=stop_after)
    if result.generator is None:
        return None
    gen = result.generator
    gen.meta.update(
        {
            "family": data.family,
            "image_size": data.image_size,
            "vae_scale_factor": gen.vae_scale_factor,
            "num_train_timesteps": int(gen.scheduler.config.num_train_timesteps),
            "prompts": cfg.prompts.model_dump(),
            "phases": {k: result.metrics[f"{k}_steps"] for k in ("vae", "pretrain", "finetune")},
            "seed": base.seed,
        }
    )
    with atomic_dir(out_dir) as tmp:
        save_generator(gen, tmp)
    write_metrics(metrics_path, timings_path, result.metrics, TIMING_KEYS)
    return result.metrics
