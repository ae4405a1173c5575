"""Lesion-free backgrounds made with the method's own tool (`generate.normals`).

Polyp data sets have no polyp-free frames, so prepare makes backgrounds from training frames with
a classical fill (`diffaug.data.normals`, manifest source `inpainted:<src>`): a large hole becomes a
flat noisy patch, and a bulge of the removed polyp can stay visible. With `method: generator`,
generate redoes each of those backgrounds from its original training frame: the same hole
(`lesion_hole`, the dilated lesion) is painted by the fine-tuned generator conditioned on the
family's lesion-free caption, the caption phase (b) trained with random holes in real frames
("colonoscopy image of colon mucosa"); a small hole is painted in its zoom window as small
lesions are, then composited with the feathered edge like every sample. Backgrounds that were
lesion-free already (frames with empty masks, phantom normals, fundus normals with their
disc/cup) are kept as they are. The method per background ("generator", "classical", "as_is")
goes into the manifest and into backgrounds.npz, which the gate's background check reads.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from diffaug.errors import InputError
from diffaug.generator.compositing import paint_regions
from diffaug.zoom import window_for, windows_array

PREFIX = "inpainted:"


@dataclass
class Backgrounds:
    """The backgrounds generate paints on, aligned with the prepared normals.

    images (M, H, W, 3) uint8; originals (M, H, W, 3) uint8 = the training frame a background was
    made from (the background itself when it was lesion-free already); holes (M, H, W) bool = the
    refilled region; methods (M,) "generator" | "classical" | "as_is"."""

    images: np.ndarray
    originals: np.ndarray
    holes: np.ndarray
    methods: np.ndarray


def removable(normal_ids: np.ndarray, sources: list[str], train_ids: np.ndarray, train_images: np.ndarray,
              train_masks: np.ndarray, normals: np.ndarray) -> Backgrounds:
    """Pair each classically filled normal (`normal-<train id>`, source `inpainted:...`) with its
    training frame and hole; the rest are "as_is"."""
    from diffaug.data.normals import lesion_hole

    where = {f"normal-{t}": k for k, t in enumerate(train_ids.astype(str))}
    originals, holes = normals.copy(), np.zeros(normals.shape[:3], bool)
    methods = np.full(len(normals), "as_is", dtype=object)
    for i, (nid, src) in enumerate(zip(normal_ids.astype(str), sources, strict=True)):
        k = where.get(nid)
        if not str(src).startswith(PREFIX) or k is None or not (train_masks[k] >= 1).any():
            continue
        originals[i], holes[i], methods[i] = train_images[k], lesion_hole(train_masks[k] >= 1), "classical"
    return Backgrounds(normals.copy(), originals, holes, methods.astype(str))


def check_can_remove(meta: dict[str, Any], where: str) -> None:
    """The tiny backbone learns to fill holes with tissue only in phase (b); without it the
    'normal' fill would be whatever phase (c) paints: lesions."""
    if meta.get("backbone", "tiny") != "tiny":
        return  # a pretrained inpainting backbone fills holes from its own pretraining
    steps = (meta.get("phases") or {}).get("pretrain")
    if not steps:
        raise InputError(
            f"{where}: generator has no phase-(b) inpainting weights (finetune_generator.pretrain_phase "
            f"steps = {steps or 0}), needed by generate.normals.method: generator; train phase (b) or set "
            "generate.normals.method: classical"
        )


def removal_seed(base_seed: int, background_index: int) -> int:
    """Noise seed of a background's removal: its own stream, apart from the samples' seeds."""
    return int(np.random.SeedSequence([base_seed, background_index, 0xB6]).generate_state(1)[0])


def remove_with_generator(sampler: Any, bg: Backgrounds, prompt: str, zoom: Any, batch_size: int,
                          feather_sigma: float, feather_dilate: int, base_seed: int, limit: int) -> Backgrounds:
    """Repaint the hole of every "classical" background among the first `limit` from its original
    frame with `sampler` (an InpaintSampler for the lesion-free caption); those become "generator"."""
    todo = np.flatnonzero(bg.methods[:limit] == "classical")
    images, methods = bg.images.copy(), bg.methods.astype(object).copy()
    for s in range(0, len(todo), batch_size):
        idx = todo[s : s + batch_size]
        holes = bg.holes[idx]
        win = windows_array([window_for(h, zoom) for h in holes])  # small holes: painted zoomed, like small lesions
        images[idx] = paint_regions(sampler, bg.originals[idx], holes, win, [prompt] * len(idx),
                                    [removal_seed(base_seed, int(i)) for i in idx], feather_sigma, feather_dilate)
        methods[idx] = "generator"
    return Backgrounds(images, bg.originals, bg.holes, methods.astype(str))
