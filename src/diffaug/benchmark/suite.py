"""The benchmark stage's measurements (`measure_all`), on the pipeline's own trained artefacts; the
stage around them (figures file, baseline, `--check`): `stage_benchmark.run_benchmark`.

Every figure is produced by the other stages' public code paths (no re-implementation here):
- VAE encode / decode: `diffaug.latents.encode_latents` / `decode_latents` on the generator's VAE.
- generate: diffaug's `generator.sampling.InpaintSampler` vs diffusers' stock
  `StableDiffusionInpaintPipeline` built by `generator.sampling.stock_pipeline` from the SAME VAE,
  UNet, scheduler, prompt embeddings, steps, guidance and batch (`stock_inpaint`).
- validator: `Validator.predict` single-step (eq. 11, one network call) vs iterative (T DDIM
  steps) on the same network and batch, images to masks and network calls only, and the parts
  of a single-step prediction (`validator.speed.time_paths`, shared with train_validator).
- gate: the gate's decision on generated samples: `Validator.predict` in `gate.mode`, IoU with the
  intended mask (`validator.metrics.mask_iou`, eq. 14), threshold -- the computation of
  `validator.gate.gate_samples` without its reading of the whole raw folder from disk; timed
  interleaved with generation so `gate_vs_generate_speedup` compares the two under the same load.
- segmenter: `Segmenter.predict` of one trained run, and one training step of its recipe.

Ratios (higher is better) sit beside the absolute figures; `--check` compares only ratios.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from diffaug.benchmark.config import BenchmarkConfig
from diffaug.benchmark.measure import device_name, injected_slowdown, module_bytes, slowed
from diffaug.errors import InputError
from diffaug.progress import track
from diffaug.runtime import Runtime
from diffaug.timing import Measurement, measure, measure_many, measure_training


@dataclass(frozen=True)
class BenchmarkInputs:
    """Where the trained artefacts live (the dvc.yaml deps of the stage)."""

    generator: Path
    validator: Path
    segmenters: Path
    prepared: Path
    synthetic: Path


def _batch(arr: np.ndarray, n: int) -> np.ndarray:
    """The first n rows of arr, repeated cyclically when arr has fewer (timing needs a full batch)."""
    if len(arr) == 0:
        raise ValueError("empty array")
    idx = np.arange(n) % len(arr)
    return np.ascontiguousarray(arr[idx])


def amp(rt: Runtime) -> Any:
    """Autocast in the run's half dtype (no-op in float32). The validator's inference feeds
    float32 latents/noise to its network, which in half precision needs autocast to cast them."""
    return torch.autocast(rt.device.type, dtype=rt.dtype, enabled=rt.dtype != torch.float32)


def _record(out: dict[str, Any], prefix: str, m: Measurement, rate_name: str = "samples_per_s") -> float:
    out[f"{prefix}_{rate_name}"] = m.items_per_s
    out[f"{prefix}_median_s"] = m.median_s
    out[f"{prefix}_peak_mem_mb"] = m.peak_mem_mb
    return m.items_per_s


def bench_vae(vae: Any, images: np.ndarray, cfg: BenchmarkConfig, rt: Runtime, out: dict[str, Any]) -> None:
    """VAE encode (eq. 1) and decode throughput on one batch of real frames."""
    from diffaug.imaging import to_model_space
    from diffaug.latents import decode_latents, encode_latents

    x = to_model_space(images, rt.device, rt.dtype)
    z = encode_latents(vae, x)
    kw = dict(items=len(images), device=rt.device, warmup=cfg.warmup, repeats=cfg.repeats)
    _record(out, "vae_encode", measure(lambda: encode_latents(vae, x), **kw))
    _record(out, "vae_decode", measure(lambda: decode_latents(vae, z), **kw))
    out["vae_latent_shape"] = "x".join(str(s) for s in z.shape[1:])


def bench_generate_and_gate(gen: Any, validator: Any, backgrounds: np.ndarray, masks: np.ndarray, prompts: list[str],
                            negative: str, scheduler: str, gate_images: np.ndarray, gate_masks: np.ndarray,
                            gate_cfg: Any, cfg: BenchmarkConfig, rt: Runtime, out: dict[str, Any]) -> None:
    """diffaug's sampler vs the stock diffusers pipeline (same weights, scheduler, prompt
    embeddings, steps, guidance, batch and seeds), and the gate's decision per generated image
    (`Validator.predict` in gate.mode, IoU with the intended mask of eq. 14, threshold), all three
    timed interleaved so both ratios compare paths measured under the same load."""
    from diffaug.generator.sampling import InpaintSampler, stock_inpaint, stock_pipeline
    from diffaug.validator.metrics import mask_iou
    from diffaug.validator.views import with_views

    sampler = InpaintSampler(gen, scheduler, cfg.generate_steps, cfg.guidance_scale, negative,
                             device=rt.device, dtype=rt.dtype)
    pipe = stock_pipeline(gen, sampler)
    seeds = list(range(rt.seed, rt.seed + len(backgrounds)))

    judge = with_views(validator, gate_cfg.views)  # the gate's prediction: gate.views dihedral views averaged

    def gate() -> np.ndarray:
        with amp(rt):
            pred = judge.predict(gate_images, mode=gate_cfg.mode, steps=gate_cfg.iterative_steps, seed=rt.seed,
                                     batch_size=gate_cfg.batch_size)
        return mask_iou(pred, gate_masks, validator.num_classes, gate_cfg.class_combine) > gate_cfg.threshold

    m = measure_many({
        "own": slowed(lambda: sampler(backgrounds, masks, prompts, seeds)),
        "stock": lambda: stock_inpaint(pipe, sampler, backgrounds, masks, prompts, seeds),
        "gate": slowed(gate),
    }, items=len(backgrounds), device=rt.device, warmup=cfg.warmup, repeats=cfg.repeats, min_time_s=cfg.min_time_s)
    own = _record(out, "generate", m["own"])
    stock = _record(out, "generate_stock", m["stock"])
    gate_rate = _record(out, "gate", m["gate"], rate_name="images_per_s")
    out["generate_speedup_vs_stock"] = own / stock
    out["gate_vs_generate_speedup"] = gate_rate / own
    out["generate_steps"] = cfg.generate_steps
    out["generate_scheduler"] = scheduler
    out["gate_mode"] = gate_cfg.mode


def bench_validator(validator: Any, images: np.ndarray, cfg: BenchmarkConfig, rt: Runtime, out: dict[str, Any]) -> None:
    """Single-step (1 network call, eq. 11) vs iterative (T DDIM calls) on the same net and batch,
    images to masks and network calls only, and the parts of one single-step prediction
    (`diffaug.validator.speed`: VAE encoding, f_fused, one denoiser call, mask decoding)."""
    from diffaug.validator.speed import speed_summary, time_paths

    m = time_paths(validator, images, cfg.iterative_steps, repeats=cfg.repeats, warmup=cfg.warmup,
                   min_time_s=cfg.min_time_s, context=lambda: amp(rt), slow=slowed, memory=True)
    single = _record(out, "validator_single_step", m["single"])
    iterative = _record(out, "validator_iterative", m["iterative"])
    out["validator_single_step_speedup"] = single / iterative
    s = speed_summary(m, cfg.iterative_steps)  # the ratios and parts as train_validator reports them
    out["validator_latent_speedup"] = s["speed_ratio_latent"]
    out["validator_iterative_steps"] = cfg.iterative_steps
    for part in ("encode", "condition", "denoise", "decode"):
        out[f"validator_ms_{part}"] = s[f"speed_ms_{part}"]


def bench_segmenter(segmenter: Any, images: np.ndarray, masks: np.ndarray, cfg: BenchmarkConfig, rt: Runtime,
                    out: dict[str, Any]) -> None:
    """Inference (images/s) and one training step of the run's own recipe (steps/s): augmentation,
    forward, backward and AdamW on `train_segmenter.batch_size` pairs, through the trainer's task;
    and the same step in the other input layout, for the channels-last speed-up."""
    kw = dict(items=len(images), device=rt.device, warmup=cfg.warmup, repeats=cfg.repeats)
    _record(out, "segmenter", measure(lambda: segmenter.predict(images), **kw))
    out["segmenter_train_steps_per_s"] = out["segmenter_train_channels_last_speedup"] = None
    params = segmenter.meta.get("params")
    if segmenter.spec.architecture != "unet" or not params:
        return  # the latent network trains through the validator's parts; timed by train_segmenter itself
    from diffaug.pretrained import public_config
    from diffaug.segmenter.config import TrainSegmenterConfig
    from diffaug.segmenter.data import Pairs
    from diffaug.segmenter.mixing import training_plan
    from diffaug.segmenter.models import SegmenterNet
    from diffaug.segmenter.train import SegmenterTask
    from diffaug.training.trainer import build_optimizer

    tcfg = TrainSegmenterConfig.model_validate(params)
    pairs = Pairs(_batch(images, tcfg.batch_size), _batch(masks.astype(np.uint8), tcfg.batch_size))

    def training_step(c: TrainSegmenterConfig):
        net = SegmenterNet(**public_config(segmenter.spec)).to(rt.device).train()  # fresh weights, the run's network
        plan = training_plan(len(pairs), 0, 1, c.batch_size, 0.0, 0, rt.seed)
        task = SegmenterTask(net, c, plan, pairs, None, np.zeros(0, np.float32), pairs, True, rt.device)
        opt = build_optimizer(net.parameters(), c.schedule())  # the trainer's optimiser
        g = torch.Generator().manual_seed(rt.seed)

        def step() -> None:
            loss = task.losses(net, task.batch(0, g))["loss"]
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        return step

    kw = dict(items=1, device=rt.device, repeats=max(cfg.repeats, 5), warmup=cfg.warmup)
    m = measure_training(training_step(tcfg), **kw)
    _record(out, "segmenter_train", m, rate_name="steps_per_s")
    # the run's input layout against the other one, same network and batch: NCHW time / channels-last time
    other = measure_training(training_step(tcfg.model_copy(update={"channels_last": not tcfg.channels_last})), **kw)
    cl, nchw = (m, other) if tcfg.channels_last else (other, m)
    out["segmenter_train_channels_last_speedup"] = nchw.median_s / cl.median_s


def pick_segmenter_run(segmenters: Path, name: str) -> Path:
    """The run folder to time: `benchmark.segmenter_run`, or the first trained run in sorted order."""
    from diffaug.segmenter.models import RUN_FILE, is_run_folder

    if name:
        run = segmenters / name
        if not is_run_folder(run):
            raise InputError(f"{run}: benchmark.segmenter_run names no trained segmenter; pick a folder of {segmenters}")
        return run
    runs = sorted(p.parent for p in segmenters.glob(f"*/{RUN_FILE}") if is_run_folder(p.parent))
    if not runs:
        raise InputError(f"{segmenters}: no trained segmenter found; run `dvc repro train_segmenter` first")
    return runs[0]


def _synthetic_or_real(synthetic: Path, prepared: Path, n: int) -> tuple[np.ndarray, np.ndarray, str]:
    """Generated samples with their intended masks (what the gate sees), else real test images."""
    from diffaug.io import load_npz

    path = synthetic / "samples.npz"
    if path.is_file():
        arrays = load_npz(path)
        if len(arrays["images"]):
            return _batch(arrays["images"], n), _batch(arrays["masks"], n), "synthetic"
    from diffaug.data.prepared import load_split

    test = load_split(prepared, "test")
    return _batch(test.images, n), _batch(test.masks, n), "real_test"


def measure_all(inputs: BenchmarkInputs, cfg: BenchmarkConfig, rt: Runtime, *, prompt_banks: Any,
                scheduler: str, gate_cfg: Any) -> dict[str, Any]:
    """Measure every stage's model; returns the flat dict written to metrics/benchmark.json."""
    from diffaug.data.prepared import load_fingerprint, load_split
    from diffaug.generator.models import load_generator
    from diffaug.generator.prompts import bank_for, negative_prompt, sample_prompts
    from diffaug.segmenter import load_segmenter
    from diffaug.validator.loading import load_validator

    t_start = time.perf_counter()
    n = cfg.batch_size
    out: dict[str, Any] = {
        "device": device_name(rt.device),
        "dtype": str(rt.dtype).removeprefix("torch."),
        "torch_version": torch.__version__,
        "batch_size": n,
        "warmup": cfg.warmup,
        "repeats": cfg.repeats,
        "min_time_s": cfg.min_time_s,
        "injected_slowdown": injected_slowdown(),
        "memory_kind": "cuda_max_allocated" if rt.device.type == "cuda" else "cpu_rss_sampled",
    }
    family = load_fingerprint(inputs.prepared)["family"]
    normals = load_split(inputs.prepared, "normals")
    bank_masks = load_split(inputs.prepared, "mask_bank").masks
    backgrounds = _batch(normals.images, n)
    masks = _batch(bank_masks, n).astype(bool)
    if masks.shape[1:] != backgrounds.shape[1:3]:
        raise InputError(f"{inputs.prepared}: mask bank size {masks.shape[1:]} != image size {backgrounds.shape[1:3]}; re-run prepare")
    bank = bank_for(prompt_banks, family)
    prompts = sample_prompts(bank, n, np.random.default_rng(rt.seed))
    eval_images, eval_masks, eval_source = _synthetic_or_real(inputs.synthetic, inputs.prepared, n)
    out["gate_input"] = eval_source
    out["image_size"] = int(backgrounds.shape[1])

    gen = load_generator(inputs.generator, rt.device, rt.dtype)
    validator = load_validator(inputs.validator, gen.vae, rt.device, rt.dtype)
    run = pick_segmenter_run(inputs.segmenters, cfg.segmenter_run)
    segmenter = load_segmenter(run, rt.device)
    out["generator_weights_mb"] = module_bytes(gen.vae, gen.unet) / 2**20
    out["validator_weights_mb"] = module_bytes(validator.net) / 2**20
    out["segmenter_weights_mb"] = module_bytes(segmenter.net) / 2**20
    out["segmenter_run"] = run.name

    for step in track(["vae", "generate + gate", "validator", "segmenter"], "benchmark"):
        if step == "vae":
            bench_vae(gen.vae, backgrounds, cfg, rt, out)
        elif step == "generate + gate":
            bench_generate_and_gate(gen, validator, backgrounds, masks, prompts, negative_prompt(bank), scheduler,
                                    eval_images, eval_masks, gate_cfg, cfg, rt, out)
        elif step == "validator":
            bench_validator(validator, eval_images, cfg, rt, out)
        else:
            bench_segmenter(segmenter, eval_images, eval_masks, cfg, rt, out)
    out["seconds"] = time.perf_counter() - t_start
    return out
