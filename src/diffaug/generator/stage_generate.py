"""`run_generate`: the whole `generate` stage as one library call (the CLI wrapper calls it).

One process: generate every group, write data/synthetic/raw/ atomically, then (main process,
`generate.compare_stock`) time our sampler against diffusers' stock inpainting pipeline side by
side on the first `stock_backgrounds` backgrounds, and write metrics/generate.json.

Several processes (`accelerate launch -m diffaug.cli generate ...` or `accelerate launch
$(which diffaug) generate`): each process generates its groups (group g → process g mod N) and
writes a shard beside the output; the main process waits, merges the shards by sample index
(the result equals a one-process run) and writes the outputs; shards are then removed.
"""

from __future__ import annotations

import math
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from diffaug.config import BaseConfig
from diffaug.errors import InputError
from diffaug.generator.config import GenerateConfig, PromptBanks
from diffaug.generator.generate import (
    GenerateInputs,
    Shard,
    background_groups,
    batches,
    check_init,
    choose_backgrounds,
    generate_shard,
    load_inputs,
    make_sampler,
    merge_shards,
    n_backgrounds,
    plan_background,
    summary_metrics,
    write_outputs,
)
from diffaug.io import atomic_dir, write_metrics

# metrics/timings/generate.json, kept out of the compared metrics (they change on every run)
TIMING_KEYS = ("seconds", "samples_per_s", "backgrounds_seconds", "stage_seconds", "stage_samples_per_s", "stock_samples",
               "stock_seconds", "stock_samples_per_s", "ours_seconds_same_batches", "ours_samples_per_s_same_batches",
               "ratio_vs_stock", "device", "processes", "traced_unet")


def _sync(device: Any) -> None:
    import torch

    if getattr(device, "type", str(device)) == "cuda":
        torch.cuda.synchronize()


def compare_with_stock(gen: Any, sampler: Any, inputs: GenerateInputs, cfg: GenerateConfig, banks: PromptBanks,
                       base_seed: int, repeats: int = 3) -> dict[str, Any]:
    """Seconds of our sampler vs `StableDiffusionInpaintPipeline` on the same weights, scheduler,
    prompt embeddings, steps, guidance, batches and seeds, interleaved (ours/stock, then
    stock/ours) so machine load hits both alike; per batch the fastest of `repeats` runs counts.
    ratio = ours / stock (goal ≤ 0.8). Both include VAE encode + denoising + decode, and both run
    the whole schedule from noise: with `generate.init: real_lesion` the stage's own samples run
    only the last `strength` share of it, so this compares the two samplers, not the stage."""
    from diffaug.generator.sampling import stock_inpaint, stock_pipeline

    pipe = stock_pipeline(gen, sampler)
    nb = min(cfg.stock_backgrounds, n_backgrounds(inputs, cfg))
    chunks = []
    for group in background_groups(nb, cfg):
        specs = [s for i in group for s in plan_background(inputs, i, cfg, banks, base_seed)]
        chunks.extend(batches(specs, cfg.batch_size))
    ours_t, stock_t = 0.0, 0.0
    n = 0
    for chunk in chunks:
        args = (inputs.normals[[s.bg_index for s in chunk]], np.stack([s.lesion for s in chunk]),
                [s.row["prompt"] for s in chunk], [s.row["seed"] for s in chunk])
        stock_inpaint(pipe, sampler, *args, num_inference_steps=1)  # warm-up (first-call allocations)
        sampler(*args)  # warm-up (traces this batch shape if not done yet)
        best = {"ours": math.inf, "stock": math.inf}
        for r in range(repeats):
            order = ("ours", "stock") if r % 2 == 0 else ("stock", "ours")
            for which in order:
                _sync(sampler.device)
                t0 = time.perf_counter()
                if which == "ours":
                    sampler(*args)
                else:
                    stock_inpaint(pipe, sampler, *args)
                _sync(sampler.device)
                best[which] = min(best[which], time.perf_counter() - t0)
        ours_t += best["ours"]
        stock_t += best["stock"]
        n += len(chunk)
    return {
        "stock_samples": n,
        "stock_seconds": round(stock_t, 4),
        "ours_seconds_same_batches": round(ours_t, 4),
        "ratio_vs_stock": ours_t / stock_t if stock_t > 0 else math.nan,
        "stock_samples_per_s": n / stock_t if stock_t > 0 else math.nan,
        "ours_samples_per_s_same_batches": n / ours_t if ours_t > 0 else math.nan,
    }


def _check_generator(gen: Any, inputs: GenerateInputs, generator_dir: Path) -> None:
    size = int(inputs.normals.shape[1])
    want = gen.meta.get("image_size")
    if want and int(want) != size:
        raise InputError(
            f"{generator_dir}: generator trained at {want} px but the normals are {size} px; "
            "re-run finetune_generator on this prepared data"
        )
    if size % gen.vae_scale_factor:
        raise InputError(f"{generator_dir}: image size {size} is not a multiple of the VAE factor {gen.vae_scale_factor}")
    fam = gen.meta.get("family")
    if fam and fam != inputs.family:
        raise InputError(f"{generator_dir}: generator trained on '{fam}' images, prepared data is '{inputs.family}'; re-run finetune_generator")


def run_generate(generator_dir: str | Path, prepared_dir: str | Path, out_dir: str | Path, metrics_path: str | Path,
                 cfg: GenerateConfig, base: BaseConfig, banks: PromptBanks,
                 timings_path: str | Path | None = None) -> dict[str, Any]:
    """Run the stage; returns results and timings in one dict (empty on non-main processes)."""
    from accelerate import PartialState

    from diffaug.generator.models import load_generator
    from diffaug.runtime import resolve_runtime

    t_stage = time.perf_counter()
    runtime = resolve_runtime(base)
    state = PartialState(cpu=runtime.device.type == "cpu")
    rank, world = state.process_index, state.num_processes
    device = state.device if world > 1 else runtime.device
    generator_dir, out_dir = Path(generator_dir), Path(out_dir)
    inputs = load_inputs(prepared_dir)
    banks.for_family(inputs.family)
    check_init(cfg, inputs.family)  # before the generator is loaded and the backgrounds repainted
    gen = load_generator(generator_dir, device, runtime.dtype)
    _check_generator(gen, inputs, generator_dir)
    sampler = make_sampler(gen, cfg, banks, inputs.family, device, runtime.dtype)
    t_bg = time.perf_counter()
    choose_backgrounds(gen, inputs, cfg, banks, base.seed, device, runtime.dtype, str(generator_dir))
    bg_seconds = time.perf_counter() - t_bg

    t0 = time.perf_counter()
    shard = generate_shard(gen, inputs, cfg, banks, base.seed, rank, world, sampler=sampler)
    if world > 1:
        shard_dir = out_dir.parent / f".{out_dir.name}.shards"
        if state.is_main_process:
            shutil.rmtree(shard_dir, ignore_errors=True)
        state.wait_for_everyone()
        shard_dir.mkdir(parents=True, exist_ok=True)
        shard.save(shard_dir / f"shard-{rank:03d}.npz")
        state.wait_for_everyone()
        if not state.is_main_process:
            return {}
        merged = merge_shards([Shard.load(p) for p in sorted(shard_dir.glob("shard-*.npz"))])
        shutil.rmtree(shard_dir, ignore_errors=True)
    else:
        merged = shard
    seconds = time.perf_counter() - t0

    metrics = summary_metrics(merged, inputs, cfg, seconds)
    metrics.update({"device": str(device), "processes": world, "traced_unet": bool(sampler.trace and sampler._traced
                    and any(v is not None for v in sampler._traced.values()))})
    if cfg.compare_stock and len(merged.index):
        metrics.update(compare_with_stock(gen, sampler, inputs, cfg, banks, base.seed))
    metrics["backgrounds_seconds"] = round(bg_seconds, 3)
    with atomic_dir(out_dir) as tmp:
        write_outputs(merged, inputs, tmp, cfg)
    # the whole stage (loading, background removal, sampling, stock timing, writing) beside the sampler's own rate
    stage = time.perf_counter() - t_stage
    metrics.update({"stage_seconds": round(stage, 3), "stage_samples_per_s": len(merged.index) / stage if stage > 0 else math.nan})
    write_metrics(metrics_path, timings_path, metrics, TIMING_KEYS)
    return metrics
