"""In-memory containers passed from the readers (phantom, adapters) to the writer."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

Family = Literal["polyp", "fundus"]

CLASS_NAMES: dict[str, list[str]] = {
    "polyp": ["background", "polyp"],
    "fundus": ["background", "disc", "cup"],  # disc = the rim (disc minus cup), cup inside it
}


@dataclass
class Split:
    """Images uint8 (N, H, W, 3), masks uint8 (N, H, W) class indices, one id/source per sample.
    `flat` holds the known flatness per sample (phantom ground truth) or None (decided from the
    measured contrast for real data); `groups` what must stay together when a split is cut
    (a CVC-ClinicDB video sequence; by default each frame is its own group)."""

    images: np.ndarray
    masks: np.ndarray
    ids: list[str]
    sources: list[str]
    flat: list[bool | None] = field(default_factory=list)
    groups: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.flat:
            self.flat = [None] * len(self.ids)
        if not self.groups:
            self.groups = [str(i) for i in self.ids]
        n = len(self.ids)
        assert self.images.shape[0] == self.masks.shape[0] == len(self.sources) == len(self.flat) == len(self.groups) == n

    def __len__(self) -> int:
        return len(self.ids)

    @classmethod
    def empty(cls, size: int) -> Split:
        return cls(np.zeros((0, size, size, 3), np.uint8), np.zeros((0, size, size), np.uint8), [], [])

    def take(self, index: np.ndarray | list[int]) -> Split:
        index = list(index)
        return Split(
            self.images[index] if index else self.images[:0],
            self.masks[index] if index else self.masks[:0],
            [self.ids[i] for i in index],
            [self.sources[i] for i in index],
            [self.flat[i] for i in index],
            [self.groups[i] for i in index],
        )


@dataclass
class Dataset:
    """What a reader hands to the writer: three splits at the output size, plus bookkeeping."""

    family: Family
    source: str  # phantom | kvasir_seg | cvc_clinicdb | refuge2 | folder
    train: Split
    test: Split
    normals: Split
    fixes: Counter = field(default_factory=Counter)  # automatic safe fixes, by kind
    split_unit: str = "frame"  # what the train/test split kept together: frame | sequence | official
    normals_method: str = ""  # how lesion-free backgrounds were obtained (documented in the fingerprint)
    unlabelled: Split | None = None  # frames without masks (diffaug.data.unlabelled); None = none

    @property
    def num_classes(self) -> int:
        return len(CLASS_NAMES[self.family])
