"""The `generate` stage's library: plan, paint, composite, shard/merge, write.

For every normal background b (index i) and variant v < `generate.variants`:
- a bank mask is placed (placement.py), a prompt chosen that fits the placed lesion
  (`prompts.caption_for`: size class from the placed area, flatness/contrast of the bank shape's
  source lesion, fundus CDR of the enlarged cup), with the bank's negative prompt for CFG;
- sample seed = f(base.seed, i, v) (`sample_seed`); placement and prompt draws come from a
  generator seeded with (base.seed, i), so nothing depends on the process that draws it;
- a small lesion (`generate.zoom`) is painted in its context window: the window of background and
  mask resized to the frame size goes into the same batch as the others, and the result is
  resized back into the frame before compositing; the manifest records the window
  (window_y, window_x, window_side; side 0 = not zoomed), which the gate checks the sample in;
- with `generate.init: real_lesion` (polyps) the painted region starts from the bank shape's own
  training lesion, warped with the shape (`real_lesion_init`), noised to `generate.strength` of
  the schedule (SDEdit); the default paints from pure noise (eq. 8).
Backgrounds are grouped in fixed consecutive groups (⌊batch_size / variants⌋ backgrounds, i.e.
their variants batched together, one VAE encode per batch); groups, not samples, are sharded
across processes (group g → process g mod world). A group is computed identically whatever the
number of processes, so merging the shards sorted by sample index equals the one-process run.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from diffaug.errors import InputError
from diffaug.generator.compositing import paint_regions
from diffaug.generator.config import GenerateConfig, PromptBanks
from diffaug.generator.normals import Backgrounds, check_can_remove, remove_with_generator, removable
from diffaug.generator.placement import Placement, content_box, place_lesion, transform_patch
from diffaug.generator.prompts import caption_for, negative_prompt
from diffaug.zoom import window_for, windows_array

MANIFEST_COLUMNS = [
    "sample_id", "background_id", "prompt", "negative_prompt", "mask_id", "transform", "seed", "steps",
    "guidance_scale", "scheduler", "variant", "lesion_area_frac", "size_class", "window_y", "window_x", "window_side",
    "background_method", "init", "strength",
]


def sample_seed(base_seed: int, background_index: int, variant: int) -> int:
    """Per-sample noise seed from (base.seed, background index, variant): a hash, never the rank."""
    return int(np.random.SeedSequence([base_seed, background_index, variant]).generate_state(1)[0])


@dataclass
class GenerateInputs:
    """What generate reads from data/prepared/ (normals, mask bank, the train rows of the manifest)."""

    family: str
    normals: np.ndarray  # (M, H, W, 3) uint8
    normal_masks: np.ndarray  # (M, H, W) uint8 lesions already there
    normal_ids: np.ndarray  # (M,) str
    bank: np.ndarray  # (K, H, W) uint8 binary shapes
    bank_table: pd.DataFrame  # mask_bank.csv rows, aligned with bank
    source_stats: dict[str, dict[str, Any]]  # manifest row (flat, contrast, ...) per train id
    small_area_frac: float
    backgrounds: Backgrounds  # how each normal was made; `normals` = backgrounds.images once chosen
    prepared_normals: np.ndarray  # (M, H, W, 3) prepare's normals (the classical fill), for the preview
    train_images: dict[str, np.ndarray] = field(default_factory=dict)  # (H, W, 3) uint8 per train id: the bank's source lesions (init: real_lesion)


def load_inputs(prepared_dir: str | Path) -> GenerateInputs:
    from diffaug.data.prepared import load_fingerprint, load_split

    fp = load_fingerprint(prepared_dir)
    normals = load_split(prepared_dir, "normals")
    bank = load_split(prepared_dir, "mask_bank")
    train = load_split(prepared_dir, "train")
    if len(normals) == 0:
        raise InputError(f"{Path(prepared_dir) / 'normals.npz'}: no normal backgrounds; prepare must produce some")
    if len(bank) == 0:
        raise InputError(f"{Path(prepared_dir) / 'mask_bank.npz'}: the mask bank is empty; prepare needs training lesions")
    if normals.images.shape[1:3] != bank.masks.shape[1:3]:
        raise InputError(f"{prepared_dir}: normals and mask bank differ in size; re-run prepare")
    stats = {str(r["id"]): dict(r) for r in train.table.to_dict("records")}
    sources = normals.table["source"].astype(str).tolist() if "source" in normals.table.columns else [""] * len(normals)
    bg = removable(normals.ids, sources, train.ids, train.images, train.masks, normals.images)
    return GenerateInputs(
        family=str(fp["family"]), normals=normals.images, normal_masks=normals.masks,
        normal_ids=normals.ids.astype(str), bank=bank.masks, bank_table=bank.table, source_stats=stats,
        small_area_frac=float(fp.get("small_area_frac", 0.05)), backgrounds=bg, prepared_normals=normals.images,
        train_images=dict(zip(train.ids.astype(str), train.images, strict=True)),
    )


def choose_backgrounds(gen: Any, inputs: GenerateInputs, cfg: GenerateConfig, banks: PromptBanks, base_seed: int,
                       device: Any, dtype: Any, where: str) -> None:
    """Set `inputs.normals` to the backgrounds of `generate.normals.method` (generator: repaint the
    classically filled holes; every process computes all of them, identically)."""
    from diffaug.generator.prompts import generic_prompt
    from diffaug.generator.sampling import InpaintSampler

    bg = inputs.backgrounds
    if cfg.normals.method == "generator" and (bg.methods == "classical").any():
        check_can_remove(gen.meta, where)
        bank = banks.for_family(inputs.family)
        sampler = InpaintSampler(gen, cfg.scheduler, cfg.steps, cfg.normals.guidance_scale, "",
                                 use_cfg=cfg.normals.guidance_scale > 1, device=device, dtype=dtype, trace=cfg.trace_unet)
        bg = remove_with_generator(sampler, bg, cfg.normals.prompt or generic_prompt(bank), cfg.zoom, cfg.batch_size,
                                   cfg.feather_sigma, cfg.feather_dilate, base_seed, n_backgrounds(inputs, cfg))
    inputs.backgrounds = bg
    inputs.normals = bg.images


@dataclass
class SampleSpec:
    index: int  # global sample order: background index · variants + variant
    bg_index: int
    variant: int
    lesion: np.ndarray  # (H, W) bool, region the generator paints
    intended: np.ndarray  # (H, W) uint8 class indices
    row: dict[str, Any] = field(default_factory=dict)  # manifest row
    init: np.ndarray | None = None  # (H, W, 3) uint8: the background with a real lesion in `lesion` (init: real_lesion)


def real_lesion_init(inputs: GenerateInputs, i: int, p: Placement, source_id: str) -> np.ndarray:
    """Background i with the placed bank shape's own training lesion in the placed region: the
    source frame's pixels under the shape, warped with the shape's scale, rotation and mirror.
    -> (H, W, 3) uint8 (equal to the background outside `p.lesion`)."""
    if source_id not in inputs.train_images:
        raise InputError(f"mask_bank.csv: mask {p.bank_index} names source '{source_id}', which is not in train.npz; re-run prepare")
    shape = inputs.bank[p.bank_index] > 0
    box = content_box(shape)
    warped, pixels = transform_patch(shape[box], inputs.train_images[source_id][box], *p.warp)
    rows, cols = content_box(p.lesion)
    if warped.shape != p.lesion[rows, cols].shape:  # the same warp as placement: a mismatch is a bug, not bad input
        raise AssertionError(f"warped lesion {warped.shape} does not match its placement {p.lesion[rows, cols].shape}")
    out = inputs.normals[i].copy()
    region = out[rows, cols]
    region[warped] = pixels[warped]
    return out


def check_init(cfg: GenerateConfig, family: str) -> None:
    """`generate.init: real_lesion` needs real polyp tissue to start from; fundus cups have none."""
    if cfg.init == "real_lesion" and family != "polyp":
        raise InputError(f"generate.init: real_lesion pastes real polyp tissue; the {family} family has no such "
                         "lesion to start from (set generate.init: noise, strength: 1)")


def plan_background(inputs: GenerateInputs, i: int, cfg: GenerateConfig, banks: PromptBanks, base_seed: int) -> list[SampleSpec]:
    """The `variants` samples of background i: placement, prompt, negative prompt, seed."""
    bank_prompts = banks.for_family(inputs.family)
    neg = negative_prompt(bank_prompts) if cfg.text_guidance else ""
    rng = np.random.default_rng([base_seed, i, 0x6E])  # placement + prompt stream of this background
    H, W = inputs.normal_masks.shape[1:]
    check_init(cfg, inputs.family)
    specs = []
    for v in range(cfg.variants):
        p = place_lesion(inputs.normals[i], inputs.normal_masks[i], inputs.bank, inputs.family, cfg.placement, rng)
        brow = inputs.bank_table.iloc[p.bank_index]
        source_id = str(brow.get("source_id", ""))
        source = inputs.source_stats.get(source_id, {})
        area = float(p.lesion.sum()) / (H * W)
        size_class = "small" if area < inputs.small_area_frac else "large"
        if not cfg.text_guidance:
            prompt = ""  # ablation: no text at all, no CFG
        elif cfg.single_prompt:
            prompt = bank_prompts.basic  # ablation: one basic prompt instead of the diverse bank
        else:
            lesion_stats = {"size_class": size_class, "flat": source.get("flat"), "contrast": source.get("contrast"),
                            "cdr": p.transform.get("cdr")}
            prompt = caption_for(lesion_stats, bank_prompts, rng)
        seed = sample_seed(base_seed, i, v)
        bg_id = str(inputs.normal_ids[i])
        wy, wx, ws = window_for(p.lesion, cfg.zoom)
        row = {
            "sample_id": f"{bg_id}-v{v}", "background_id": bg_id, "prompt": prompt, "negative_prompt": neg,
            "mask_id": str(brow.get("mask_id", p.bank_index)), "transform": p.transform_json(), "seed": seed,
            "steps": cfg.steps, "guidance_scale": cfg.guidance_scale if cfg.text_guidance else 1.0,
            "scheduler": cfg.scheduler, "variant": v, "lesion_area_frac": round(area, 6), "size_class": size_class,
            "window_y": wy, "window_x": wx, "window_side": ws,
            "background_method": str(inputs.backgrounds.methods[i]), "init": cfg.init, "strength": cfg.strength,
        }
        init = real_lesion_init(inputs, i, p, source_id) if cfg.init == "real_lesion" else None
        specs.append(SampleSpec(i * cfg.variants + v, i, v, p.lesion, p.intended, row, init))
    return specs


def background_groups(n_backgrounds: int, cfg: GenerateConfig) -> list[list[int]]:
    """Fixed groups of consecutive backgrounds whose variants share one batch (rank-independent)."""
    per = max(1, cfg.batch_size // cfg.variants)
    return [list(range(s, min(s + per, n_backgrounds))) for s in range(0, n_backgrounds, per)]


def batches(specs: list[SampleSpec], batch_size: int) -> Iterable[list[SampleSpec]]:
    for s in range(0, len(specs), batch_size):
        yield specs[s : s + batch_size]


@dataclass
class Shard:
    """Samples of one process, in global index order. images (S, H, W, 3) uint8, masks (S, H, W)."""

    index: np.ndarray
    images: np.ndarray
    masks: np.ndarray
    rows: list[dict[str, Any]]
    seconds: float = 0.0

    def save(self, path: str | Path) -> None:
        from diffaug.io import save_npz

        save_npz(path, index=self.index, images=self.images, masks=self.masks,
                 rows=np.array([json.dumps(r, sort_keys=True) for r in self.rows]))

    @classmethod
    def load(cls, path: str | Path) -> Shard:
        from diffaug.io import load_npz

        d = load_npz(path)
        return cls(d["index"], d["images"], d["masks"], [json.loads(str(r)) for r in d["rows"]])


def n_backgrounds(inputs: GenerateInputs, cfg: GenerateConfig) -> int:
    n = len(inputs.normals)
    return min(n, cfg.max_backgrounds) if cfg.max_backgrounds > 0 else n


def make_sampler(gen: Any, cfg: GenerateConfig, banks: PromptBanks, family: str, device: Any, dtype: Any) -> Any:
    from diffaug.generator.sampling import InpaintSampler

    neg = negative_prompt(banks.for_family(family)) if cfg.text_guidance else ""
    return InpaintSampler(gen, cfg.scheduler, cfg.steps, cfg.guidance_scale, neg, use_cfg=cfg.text_guidance,
                          device=device, dtype=dtype, trace=cfg.trace_unet, strength=cfg.strength)


def paint(sampler: Any, inputs: GenerateInputs, specs: list[SampleSpec], cfg: GenerateConfig) -> tuple[np.ndarray, np.ndarray]:
    """Sample one batch (zoomed samples as their windows, resized to the frame) and composite each
    result onto its background. -> images, intended masks."""
    win = windows_array([(s.row["window_y"], s.row["window_x"], s.row["window_side"]) for s in specs])
    init = np.stack([s.init for s in specs]) if cfg.init == "real_lesion" else None
    out = paint_regions(sampler, inputs.normals[[s.bg_index for s in specs]], np.stack([s.lesion for s in specs]), win,
                        [s.row["prompt"] for s in specs], [s.row["seed"] for s in specs], cfg.feather_sigma, cfg.feather_dilate,
                        init=init)
    return out, np.stack([s.intended for s in specs])


def generate_shard(gen: Any, inputs: GenerateInputs, cfg: GenerateConfig, banks: PromptBanks, base_seed: int,
                   rank: int = 0, world: int = 1, device: Any = "cpu", dtype: Any = None, sampler: Any = None,
                   progress: bool = True) -> Shard:
    """Generate the groups g with g mod world == rank; one process = rank 0 of world 1."""
    import torch

    from diffaug.progress import track

    sampler = sampler or make_sampler(gen, cfg, banks, inputs.family, device, dtype or torch.float32)
    groups = background_groups(n_backgrounds(inputs, cfg), cfg)[rank::world]
    H, W = inputs.normals.shape[1:3]
    images, masks, rows, index = [], [], [], []
    t0 = time.perf_counter()
    work = track(groups, f"generate (process {rank})" if world > 1 else "generate") if progress else groups
    for group in work:
        specs = [s for i in group for s in plan_background(inputs, i, cfg, banks, base_seed)]
        for chunk in batches(specs, cfg.batch_size):
            out, intended = paint(sampler, inputs, chunk, cfg)
            images.append(out)
            masks.append(intended)
            rows.extend(s.row for s in chunk)
            index.extend(s.index for s in chunk)
    seconds = time.perf_counter() - t0
    if not rows:
        return Shard(np.zeros(0, np.int64), np.zeros((0, H, W, 3), np.uint8), np.zeros((0, H, W), np.uint8), [], seconds)
    return Shard(np.array(index, np.int64), np.concatenate(images), np.concatenate(masks), rows, seconds)


def merge_shards(shards: list[Shard]) -> Shard:
    """Concatenate shards and order by global sample index (deterministic, rank-independent)."""
    nonempty = [s for s in shards if len(s.index)] or shards[:1]
    index = np.concatenate([s.index for s in nonempty])
    order = np.argsort(index, kind="stable")
    if len(np.unique(index)) != len(index):
        raise ValueError("generate: two shards hold the same sample; each group must go to one process")
    rows = [r for s in nonempty for r in s.rows]
    return Shard(index[order], np.concatenate([s.images for s in nonempty])[order],
                 np.concatenate([s.masks for s in nonempty])[order], [rows[k] for k in order],
                 max((s.seconds for s in shards), default=0.0))


def write_outputs(merged: Shard, inputs: GenerateInputs, out_dir: Path, cfg: GenerateConfig) -> None:
    """samples.npz, manifest.csv, preview.png, backgrounds.npz and backgrounds.png into `out_dir`
    (call inside atomic_dir)."""
    from diffaug.generator.preview import save_backgrounds_preview, save_generate_preview
    from diffaug.io import save_npz

    ids = np.array([r["sample_id"] for r in merged.rows], dtype=str)
    save_npz(out_dir / "samples.npz", images=merged.images, masks=merged.masks, ids=ids)
    bg, nb = inputs.backgrounds, n_backgrounds(inputs, cfg)
    # the backgrounds the samples were painted on, for the gate's background check
    save_npz(out_dir / "backgrounds.npz", images=bg.images[:nb], masks=inputs.normal_masks[:nb],
             ids=inputs.normal_ids[:nb].astype(str), methods=bg.methods[:nb].astype(str))
    save_backgrounds_preview(out_dir / "backgrounds.png", bg, inputs.prepared_normals, cfg.normals.preview)
    pd.DataFrame(merged.rows, columns=MANIFEST_COLUMNS).to_csv(out_dir / "manifest.csv", index=False)
    pos = {str(b): k for k, b in enumerate(inputs.normal_ids)}
    n = min(cfg.preview_samples, len(ids))
    bg_index = [pos[r["background_id"]] for r in merged.rows[:n]]
    lesions = [(merged.masks[k] > 0) & (merged.masks[k] != inputs.normal_masks[bg_index[k]]) for k in range(n)]
    save_generate_preview(out_dir / "preview.png", inputs.normals[bg_index], inputs.normal_masks[bg_index],
                          np.array(lesions).reshape(n, *merged.masks.shape[1:]), merged.images[:n], merged.masks[:n],
                          windows=windows_array([(r["window_y"], r["window_x"], r["window_side"]) for r in merged.rows[:n]]))


def summary_metrics(merged: Shard, inputs: GenerateInputs, cfg: GenerateConfig, seconds: float) -> dict[str, Any]:
    n = len(merged.index)
    area = [float(r["lesion_area_frac"]) for r in merged.rows]
    return {
        "n_samples": n,
        "n_backgrounds": n_backgrounds(inputs, cfg),
        "variants": cfg.variants,
        "steps": cfg.steps,
        "guidance_scale": cfg.guidance_scale if cfg.text_guidance else 1.0,
        "scheduler": cfg.scheduler,
        "init": cfg.init,
        "strength": cfg.strength,
        "text_guidance": cfg.text_guidance,
        "single_prompt": cfg.single_prompt,
        "distinct_prompts": len({r["prompt"] for r in merged.rows}),
        "lesion_area_frac_mean": float(np.mean(area)) if area else math.nan,
        "small_fraction": float(np.mean([r["size_class"] == "small" for r in merged.rows])) if n else math.nan,
        "zoomed_fraction": float(np.mean([int(r["window_side"]) > 0 for r in merged.rows])) if n else math.nan,
        "normals_method": cfg.normals.method,
        **{f"n_backgrounds_{m}": int((inputs.backgrounds.methods[: n_backgrounds(inputs, cfg)] == m).sum())
           for m in ("generator", "classical", "as_is")},
        "seconds": round(seconds, 3),
        "samples_per_s": n / seconds if seconds > 0 else math.nan,
    }
