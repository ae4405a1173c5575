"""Training data of `finetune_generator`, read from `prepare`'s folder.

Frames for phases (a)/(b) = train images + normal backgrounds + prepare's unlabelled frames
(`data/prepared/unlabelled.npz`: the stand-in for a pretrained prior); lesion pairs for phase (c) = training
frames whose lesion mask (polyp: the lesion; fundus: the cup) is non-empty, with their
manifest rows for captioning, plus zoomed windows around those lesions (`generate.zoom`:
generate paints a small lesion in such a window, so phase (c) learns what a lesion looks like
at that scale; the window keeps its frame's row, so a zoomed small polyp is still captioned small).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from diffaug.errors import InputError
from diffaug.training.state import array_digest
from diffaug.generator.train import TrainData


def _resize(images: np.ndarray, size: int, masks: bool = False) -> np.ndarray:
    if images.shape[0] == 0:
        return np.zeros((0, size, size, *images.shape[3:]), images.dtype)
    if images.shape[1] == size:
        return images
    import torch
    import torch.nn.functional as F

    t = torch.as_tensor(images).float()
    if masks:
        out = F.interpolate(t[:, None], size=(size, size), mode="nearest")[:, 0]
    else:
        out = F.interpolate(t.permute(0, 3, 1, 2), size=(size, size), mode="bilinear", antialias=True)
        out = out.permute(0, 2, 3, 1)
    return out.round().clamp(0, 255).to(torch.uint8).numpy()


def load_train_data(prepared_dir: str | Path, cfg: Any, zoom: Any = None, seed: int = 0) -> TrainData:
    from diffaug.data.prepared import load_fingerprint, load_split, load_unlabelled
    from diffaug.data.stats import lesion_mask

    fp = load_fingerprint(prepared_dir)
    family = str(fp.get("family", "polyp"))
    train = load_split(prepared_dir, "train")
    normals = load_split(prepared_dir, "normals")
    if train.images is None or len(train) == 0:
        raise InputError(f"{Path(prepared_dir) / 'train.npz'}: no training images; re-run `diffaug prepare`")
    size = cfg.image_size or int(train.images.shape[1])
    factor = 2 ** (len(cfg.vae.block_out_channels) - 1) if cfg.backbone == "tiny" else 8
    if size % (factor * 2 ** (len(cfg.unet.block_out_channels) - 1)) and cfg.backbone == "tiny":
        raise InputError(
            f"image size {size} is not divisible by the VAE x UNet downsampling; "
            "set finetune_generator.image_size to a multiple of it"
        )
    parts = [train.images] + ([normals.images] if normals.images is not None else [])
    parts.append(load_unlabelled(prepared_dir)[0])
    frames = np.concatenate([_resize(p, size) for p in parts])
    les = np.stack([lesion_mask(m, family) for m in train.masks]).astype(np.uint8)
    keep = np.flatnonzero(les.reshape(len(les), -1).any(axis=1))
    if keep.size == 0:
        raise InputError(f"{Path(prepared_dir) / 'train.npz'}: no training frame has a lesion mask; the generator needs lesion examples")
    lesion_images = _resize(train.images[keep], size)
    lesion_masks = _resize(les[keep], size, masks=True)
    stats = [{k: _plain(v) for k, v in row.items()} for row in train.table.iloc[keep].to_dict("records")]
    from diffaug.zoom import zoomed_pairs

    z_images, z_masks, src = zoomed_pairs(lesion_images, lesion_masks, lesion_masks > 0, zoom,
                                          np.random.default_rng([seed, 0x7A]))
    lesion_images = np.concatenate([lesion_images, z_images])
    lesion_masks = np.concatenate([lesion_masks, z_masks])
    stats = stats + [stats[i] for i in src]
    return TrainData(family, frames, lesion_images, lesion_masks, stats, array_digest(frames),
                     array_digest(lesion_images, lesion_masks), len(src))


def _plain(v: Any) -> Any:
    if isinstance(v, np.generic):
        return v.item()
    return v
