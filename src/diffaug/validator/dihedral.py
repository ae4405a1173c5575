"""The 8 elements of the dihedral group on the pixel grid (quarter turns, each with and without a
left-right flip): the validator trains on all of them (`train`) and the gate reads an image in
them (`views`), so both use these two maps."""

from __future__ import annotations

import torch


def dihedral(x: torch.Tensor, k: int) -> torch.Tensor:
    """k in 0..7: rotate by (k % 4) * 90°, then flip left-right when k >= 4 (last two dims)."""
    x = torch.rot90(x, k % 4, dims=(-2, -1))
    return torch.flip(x, dims=(-1,)) if k >= 4 else x


def inverse_dihedral(x: torch.Tensor, k: int) -> torch.Tensor:
    """The inverse of `dihedral(., k)`."""
    x = torch.flip(x, dims=(-1,)) if k >= 4 else x
    return torch.rot90(x, -(k % 4), dims=(-2, -1))


__all__ = ["dihedral", "inverse_dihedral"]
