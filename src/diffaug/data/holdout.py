"""The validation part of a real training split, shared by `train_validator` and `train_segmenter`.

Frames of one video are near-duplicates: a validation frame whose neighbours are in training
scores far above what a new video would. So whole groups (manifest.csv `group`: the sequence for
CVC-ClinicDB with a sequence table, else the frame itself) go to one side, drawn in a seeded order
and kept when they bring the validation part closer to `fraction` of the frames.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from diffaug.errors import InputError


def holdout(groups: Sequence[str], fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train indices, validation indices), both sorted, each side at least one frame; `fraction`
    0: every frame trains and the validation part is empty."""
    groups = np.asarray([str(g) for g in groups])
    n = len(groups)
    if fraction == 0:
        return np.arange(n), np.zeros(0, np.int64)
    if n < 2:
        raise InputError(f"train split has {n} sample(s); a validation part needs at least 2 (train + validation)")
    want = min(max(1, int(round(n * fraction))), n - 1)
    unique, counts = np.unique(groups, return_counts=True)
    if len(unique) < 2:  # one video only: it cannot be kept whole on one side
        unique, counts, groups = np.arange(n).astype(str), np.ones(n, int), np.arange(n).astype(str)
    rng = np.random.default_rng([seed, 7])
    chosen, have = [], 0
    for i in rng.permutation(len(unique)):
        if have + counts[i] <= n - 1 and abs(have + counts[i] - want) < abs(have - want):
            chosen.append(unique[i])
            have += int(counts[i])
    if not chosen:  # every group too large to get closer: take the smallest that leaves one for training
        order = np.argsort(counts, kind="stable")
        chosen = [unique[order[0]]]
    val = np.isin(groups, chosen)
    return np.flatnonzero(~val), np.flatnonzero(val)
