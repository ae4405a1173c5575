"""The `train_segmenter` stage as one library call (`run_train_segmenter`): load inputs, train one run,
write its outputs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from diffaug.config import BaseConfig
from diffaug.io import atomic_dir, write_metrics
from diffaug.segmenter.config import TrainSegmenterConfig, parse_run_spec, run_group
from diffaug.segmenter.runs import SUPPLY_KEYS, run_name, synthetic_supply

# flat numbers of the training summary that go into metrics/train_segmenter/<run>.json
METRIC_KEYS = ("loss_first", "loss_last", "train_dice_last", "steps", "n_real", "n_val", "n_extra",
               "real_exposure", "extra_exposure_mean", "extra_weight_mean", "best_step", "val_dice_best")
# and those that go into metrics/timings/train_segmenter/<run>.json (pseudolabel: its teacher's too):
# how the call ran, so a finished run loaded writes the same metrics file as the run that trained
TIMING_KEYS = ("seconds", "teacher_seconds", "resumed_from_step")


def run_train_segmenter(
    cfg: TrainSegmenterConfig, base: BaseConfig, spec: str, seed: int,
    prepared_dir: str | Path, gated_dir: str | Path, out_dir: str | Path, metrics_path: str | Path,
    live_dir: str | Path | None = None, generator_dir: str | Path = "data/generator",
    validator_dir: str | Path = "data/validator", checkpoints: str | Path | None = None,
    timings_path: str | Path | None = None,
) -> dict[str, Any]:
    """Train run spec `spec` (e.g. `diffaug`, `diffaug-r3`) with `seed`; write out_dir (atomically),
    the metrics JSON (results) and `timings_path` (wall-clock seconds; None: not written). The
    dvclive curves go to `live_dir`, moved there only once training
    has finished; `checkpoints` (a folder of this run's own) makes it resumable.
    `architecture: latent` also reads the generator's VAE
    (and U-Net, for `latent.init: scratch`) from generator_dir and the trained validator from
    validator_dir; the U-Net reads neither. `pseudolabel` reads prepare's unlabelled frames and
    trains its teacher first (checkpoints under `checkpoints/teacher`)."""
    from diffaug.runtime import resolve_runtime
    from diffaug.segmenter.data import load_accepted, load_real
    from diffaug.segmenter.models import save_segmenter
    from diffaug.segmenter.train import train_segmenter

    variant, ratio = parse_run_spec(spec, cfg.synthetic_ratio)
    runtime = resolve_runtime(base)
    real, num_classes, groups = load_real(prepared_dir)
    synthetic = load_accepted(gated_dir, real.images.shape[1:3]) if variant == "diffaug" else None
    latent_parts = load_latent_parts(cfg, generator_dir, validator_dir) if cfg.architecture == "latent" else None
    pseudo_stats: dict[str, Any] = {}
    if variant == "pseudolabel":
        from diffaug.data.prepared import load_unlabelled
        from diffaug.segmenter.pseudolabel import pseudolabel_pool

        unl_images, _, unl_groups = load_unlabelled(prepared_dir)
        synthetic, pseudo_stats = pseudolabel_pool(real, num_classes, groups, unl_images, unl_groups, cfg, seed,
                                                   runtime, checkpoints, latent_parts)
    name = run_name(spec, seed)
    result = train_segmenter(real, num_classes, cfg, variant, ratio, seed, runtime, synthetic=synthetic,
                             live_dir=live_dir, latent_parts=latent_parts, groups=groups, checkpoints=checkpoints)
    # kept out of train.py so that its code digest (the checkpoints' validity) stays the same
    result.summary.update(synthetic_supply(variant, ratio, result.summary["n_real"], result.summary["n_extra"]))
    result.summary.update(pseudo_stats)
    meta = {
        "run": {"name": name, "spec": spec, "group": run_group(spec), "variant": variant,
                "ratio": float(ratio), "seed": int(seed), "base_seed": base.seed},
        # wall-clock time and resume point stay out of run.json: equal seeds give identical bytes
        "training": {k: v for k, v in result.summary.items() if k not in TIMING_KEYS},
        "params": cfg.model_dump(mode="json", exclude={"runs", "seeds"}),
    }
    with atomic_dir(out_dir) as tmp:
        save_segmenter(tmp, result.segmenter.net, meta)
    metrics = {"ratio": float(ratio)} | {k: result.summary[k] for k in METRIC_KEYS + SUPPLY_KEYS + ("seconds", "resumed_from_step")}
    metrics |= pseudo_stats  # pseudolabel: what its teacher labelled (teacher_seconds goes to the timings)
    write_metrics(metrics_path, timings_path, metrics | {"n_warnings": len(result.summary["warnings"])}, TIMING_KEYS)
    return result.summary


def load_latent_parts(cfg: TrainSegmenterConfig, generator_dir: str | Path, validator_dir: str | Path):
    """The generator VAE (+ U-Net state for `latent.init: scratch`) and the trained validator."""
    from diffaug.segmenter.latent import LatentParts
    from diffaug.validator.loading import load_generator_parts, load_validator_net

    vae, unet_state = load_generator_parts(generator_dir, need_unet=cfg.latent.init == "scratch")
    return LatentParts(vae=vae, validator=load_validator_net(validator_dir, vae), unet_state=unet_state)
