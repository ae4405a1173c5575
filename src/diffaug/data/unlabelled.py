"""Unlabelled frames: images without masks, the CPU profile's stand-in for a pretrained prior.

Researchers nearly always hold many more frames than masks (every colonoscopy video is thousands
of frames). `prepare` collects them into `data/prepared/unlabelled.npz` (images uint8 (N, H, W, 3),
ids str (N,), groups str (N,): the video sequence, else the frame itself) from
- `prepare.unlabelled`: a folder of frames in any format the readers take (relative paths are
  under `prepare.root`; every file is checked like a labelled image), and/or
- `prepare.unlabelled_from_train`: the data set's own training frames beyond
  `prepare.train_limit`, images only. They come from the training split, so whole sequences stay
  on their side and no test frame is ever among them.
The generator's phases (a) and (b) learn from them; the `pseudolabel` run labels them with a
teacher. The phantom renders `prepare.phantom.unlabelled` frames of its own.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from diffaug.data.config import PrepareConfig
from diffaug.data.readers import list_images, read_image
from diffaug.data.samples import Split
from diffaug.errors import InputError
from diffaug.progress import track


def images_only(images: np.ndarray, ids: list[str], sources: list[str], groups: list[str]) -> Split:
    """A Split of frames without masks (its masks are zeros and are never written)."""
    return Split(images, np.zeros(images.shape[:3], np.uint8), list(ids), list(sources), groups=list(groups))


def folder_path(cfg: PrepareConfig) -> Path:
    path = Path(cfg.unlabelled or "")
    return path if path.is_absolute() or not cfg.root else Path(cfg.root) / path


def read_unlabelled_folder(cfg: PrepareConfig, fixes: Counter, test_stems: set[str],
                           rng: np.random.Generator) -> Split:
    """Every image under `prepare.unlabelled` (at most `prepare.max_unlabelled`, a seeded
    subset), resized like labelled frames. A file named like a test frame is refused: it
    could be that very frame, and the test split must stay unseen."""
    from diffaug.data.adapters import resize_image

    folder = folder_path(cfg)
    if not folder.is_dir():
        raise InputError(f"{folder}: unlabelled frames folder not found; fix prepare.unlabelled or set it to null")
    files = list_images(folder, "unlabelled")
    stems = sorted(files)
    for stem in stems:
        if stem in test_stems:
            raise InputError(f"{files[stem]}: has the name of a test frame; remove it from {folder} "
                             "(frames of the test split must not be used for training)")
    if cfg.max_unlabelled and len(stems) > cfg.max_unlabelled:
        stems = sorted(stems[i] for i in rng.permutation(len(stems))[: cfg.max_unlabelled])
    images = np.zeros((len(stems), cfg.image_size, cfg.image_size, 3), np.uint8)
    for i, stem in enumerate(track(stems, "prepare: reading unlabelled frames")):
        images[i] = resize_image(read_image(files[stem], fixes), cfg.image_size)
    sources = [str(files[s].relative_to(folder)) for s in stems]
    return images_only(images, [f"unlabelled:{s}" for s in stems], sources, [f"unlabelled:{s}" for s in stems])


def concat(parts: list[Split], size: int) -> Split:
    parts = [p for p in parts if len(p)]
    if not parts:
        return images_only(np.zeros((0, size, size, 3), np.uint8), [], [], [])
    return images_only(np.concatenate([p.images for p in parts]), [i for p in parts for i in p.ids],
                       [s for p in parts for s in p.sources], [g for p in parts for g in p.groups])
