"""Single-step against iterative inference, measured side by side, and where the time of one
single-step prediction goes.

One batch, one network, the same thread settings; the paths of each group below are timed
INTERLEAVED (one call of each per round, `repeats` rounds after a warm-up; `measure_many`) so that
a burst of load from other processes hits them alike, and the median of each is used. Each ratio's
pair is its own group (and the parts a third), so that no short call is timed right after another
path's large working set:

    single / iterative                 images in, masks out (VAE encoding and mask decoding
                                       included, as the gate runs it)
    latent_single / latent_iterative   z_a in, mask latent out: the network calls only
    encode, condition, denoise, decode the parts of one single-step prediction: VAE encoder
                                       (z_a), f_fused (V_psi + psi, eq. 9/13), one denoiser call
                                       at t_s, the mask decoder

Each ratio is the median over rounds of the two calls' ratio within the round (`paired_ratio`):
on a machine whose speed drifts, the ratio of the two medians can pair a fast round of one path
with a slow round of the other, and the paired ratio cancels the drift (docs/validator.md,
"Speed measurement"). The ratio of medians is reported too (`*_of_medians`).

Both modes compute f_fused once and encode/decode once, so with F = condition and D = denoise
the network-only ratio is (F + T D) / (F + D): it reaches 0.9 T only while
F <= 0.1 T D / (0.9 T - 1), i.e. F <= 0.118 D at T = 20 and 0.114 D at T = 50.
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import Any, Callable

import numpy as np
import torch

from diffaug.timing import measure_many, paired_ratio
from diffaug.validator.inference import Validator, encode_images

PATHS = ("single", "iterative", "latent_single", "latent_iterative", "encode", "condition", "denoise", "decode")


def time_paths(validator: Validator, images: np.ndarray, steps: int, *, repeats: int = 7, warmup: int = 1,
               min_time_s: float = 0.0, context: Callable[[], Any] = nullcontext,
               slow: Callable[[Callable], Callable] = lambda fn: fn, memory: bool = False) -> dict:
    """Median seconds per call of each of `PATHS` on the batch `images` (uint8 (N, H, W, 3)),
    with T = `steps` for the iterative paths. `context` wraps every call (autocast on half-precision
    GPUs); `slow` wraps the single-step path (the benchmark's injected-slowdown check).
    Returns {"<path>": Measurement}."""
    n = len(images)
    dev, dtype, net = validator.device, validator.dtype, validator.net
    with torch.inference_mode(), context():
        z_a = encode_images(validator.vae, images, n, dev, dtype)  # float32 on CPU, as predict_latents takes it
        za = z_a.to(dev, dtype)
        f = net.condition(za)
        z_T = validator._noise(n, *z_a.shape[-2:], 0).to(dev, dtype)
        t = torch.full((n,), validator.t_single, dtype=torch.long, device=dev)
        z0 = validator.latents_single_step(f, z_T)

    def run(fn: Callable[[], Any]) -> Callable[[], Any]:
        def call() -> Any:
            with context():
                return fn()
        return call

    fns = {
        "single": slow(run(lambda: validator.predict(images, "single_step", batch_size=n))),
        "iterative": run(lambda: validator.predict(images, "iterative", steps=steps, batch_size=n)),
        "latent_single": run(lambda: validator.predict_latents(z_a, "single_step", batch_size=n)),
        "latent_iterative": run(lambda: validator.predict_latents(z_a, "iterative", steps, batch_size=n)),
        "encode": run(lambda: encode_images(validator.vae, images, n, dev, dtype)),
        "condition": run(lambda: net.condition(za)),
        "denoise": run(lambda: net.denoise(f, z_T, t)),
        "decode": run(lambda: validator.codec.decode_probs(z0.to(dtype))),
    }
    # each ratio's pair interleaved on its own: in one round robin of all eight the short
    # network-only call follows an images->masks call (VAE pass, large working set) and reads
    # slow (docs/validator.md, "Speed measurement")
    out: dict = {}
    for group in (("single", "iterative"), ("latent_single", "latent_iterative"), PATHS[4:]):
        out |= measure_many({k: fns[k] for k in group}, items=n, device=dev, warmup=warmup, repeats=repeats,
                            min_time_s=min_time_s, memory=memory)
    return out


def speed_summary(m: dict, steps: int) -> dict:
    """Flat metrics from `time_paths`: both ratios (paired per round, and of the medians), the
    goal 0.9 T, and the parts in ms."""
    t = {k: v.median_s for k, v in m.items()}
    n = m["single"].items
    return {
        "speed_batch": n,
        "speed_iterative_steps": steps,
        "single_step_samples_per_s": n / t["single"],
        "iterative_samples_per_s": n / t["iterative"],
        "speed_ratio": paired_ratio(m["iterative"], m["single"]),
        "speed_ratio_latent": paired_ratio(m["latent_iterative"], m["latent_single"]),
        "speed_ratio_of_medians": t["iterative"] / t["single"],
        "speed_ratio_latent_of_medians": t["latent_iterative"] / t["latent_single"],
        "speed_ratio_goal": 0.9 * steps,
        # the parts of one single-step prediction of the whole batch; condition/denoise is F/D above
        **{f"speed_ms_{k}": 1000 * t[k] for k in ("encode", "condition", "denoise", "decode")},
        "speed_condition_per_denoise": t["condition"] / t["denoise"],
    }


__all__ = ["PATHS", "speed_summary", "time_paths"]
