"""The embedded default data set: phantom frames generated deterministically from the seed.

Every frame has its own numpy Generator seeded with (base.seed, family, split, index), so the
arrays — and the npz bytes, hence the DVC hashes — depend only on the seed and the params, and a
frame does not change when the counts of other splits do.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from diffaug.data.config import PrepareConfig
from diffaug.data.phantom_fundus import render_fundus_frame
from diffaug.data.phantom_polyp import render_polyp_frame
from diffaug.data.samples import Dataset, Split
from diffaug.progress import track

_SPLIT_CODE = {"train": 0, "test": 1, "normals": 2, "unlabelled": 3}
_FAMILY_CODE = {"polyp": 11, "fundus": 23}


def _render_split(cfg: PrepareConfig, seed: int, split: str, count: int) -> Split:
    family = cfg.phantom.family
    size = cfg.image_size
    images = np.zeros((count, size, size, 3), np.uint8)
    masks = np.zeros((count, size, size), np.uint8)
    flat: list[bool | None] = []
    for i in track(range(count), f"prepare: phantom {family} {split}"):
        rng = np.random.default_rng([seed, _FAMILY_CODE[family], _SPLIT_CODE[split], i])
        if family == "polyp":
            images[i], masks[i], lesions = render_polyp_frame(
                rng, size, with_lesion=split != "normals",
                small_share=cfg.phantom.small_share, flat_share=cfg.phantom.flat_share)
            # a frame counts as flat when all its lesions are flat (the hard case)
            flat.append(bool(lesions) and all(les.flat for les in lesions))
        else:
            images[i], masks[i], _ = render_fundus_frame(rng, size, normal=split == "normals",
                                                         cdr_normal_max=cfg.cdr_normal_max)
            flat.append(False)
    ids = [f"{family}-{split}-{i:05d}" for i in range(count)]
    return Split(images, masks, ids, [f"phantom:{family}"] * count, flat)


def generate_phantom(cfg: PrepareConfig, seed: int) -> Dataset:
    """Render train/test/normals for `cfg.phantom.family` at `cfg.image_size`."""
    p = cfg.phantom
    fixes: Counter = Counter()  # automatic fixes of the unlabelled folder's files, if one is read
    normals_method = (
        "phantom frames rendered without a lesion"
        if p.family == "polyp"
        else f"phantom fundus frames with CDR < {cfg.cdr_normal_max} (disc/cup kept as the existing mask)"
    )
    return Dataset(
        family=p.family,
        source="phantom",
        # prepare.train_limit (the low-data regime) applies to the phantom too
        train=_render_split(cfg, seed, "train", min(p.train, cfg.train_limit or p.train)),
        test=_render_split(cfg, seed, "test", p.test),
        normals=_render_split(cfg, seed, "normals", p.normals),
        split_unit="frame",
        normals_method=normals_method,
        fixes=fixes,
        unlabelled=_unlabelled(cfg, seed, fixes),
    )


def _unlabelled(cfg: PrepareConfig, seed: int, fixes: Counter) -> Split:
    """Frames drawn like the training ones (their own seeds), lesions included, masks dropped;
    plus a folder of frames when prepare.unlabelled names one."""
    from diffaug.data.unlabelled import concat, images_only, read_unlabelled_folder

    rendered = _render_split(cfg, seed, "unlabelled", cfg.phantom.unlabelled)
    parts = [images_only(rendered.images, rendered.ids, rendered.sources, rendered.ids)]
    if cfg.unlabelled:
        parts.append(read_unlabelled_folder(cfg, fixes, set(), np.random.default_rng([seed, 103])))
    return concat(parts, cfg.image_size)
