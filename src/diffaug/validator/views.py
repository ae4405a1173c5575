"""Test-time views for the validator: average its class probabilities over dihedral views.

The validator trains on all 8 dihedral variants of every pair (rotations by 90° and flips,
`diffaug.validator.dihedral`), so each view of an image is an equally valid reading of it. Its single-step
estimate still carries an orientation-dependent error, and on a small lesion a few pixels of
that error are what keeps the IoU just under θ. Averaging the per-pixel class probabilities of
the views, each mapped back to the image's orientation, before the argmax removes that part of
the error; eq. 14 is then applied to the averaged mask as before. Each view uses the sample's
own noise seed, so the result stays deterministic and independent of batching.

`gate.views` (1, 2, 4, 8) picks how many: 2 adds the left-right flip, 4 the 180° rotation and the
up-down flip (all four keep the frame's shape), 8 the quarter turns too (square frames only; on
other frames the four shape-keeping views are used). Measured in docs/validator.md ("Views").
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from diffaug.validator.codec import probs_to_masks
from diffaug.validator.dihedral import dihedral as apply_view, inverse_dihedral as invert_view
from diffaug.validator.inference import Validator, encode_images

# view k: rotate by (k % 4) quarter turns, then flip left-right when k >= 4 (`diffaug.validator.dihedral`);
# ordered so that the first 1, 2 and 4 keep the frame's shape
VIEW_ORDER = (0, 4, 2, 6, 1, 5, 3, 7)


def view_ids(n_views: int, square: bool) -> tuple[int, ...]:
    """The dihedral elements used for `n_views` views (at most 4 on a non-square frame)."""
    return VIEW_ORDER[: n_views if square else min(n_views, 4)]


def mean_over_views(images: np.ndarray, n_views: int, predict: Callable[[np.ndarray], torch.Tensor]) -> torch.Tensor:
    """uint8 (N, H, W, 3) -> `predict`'s (N, C, H, W) output averaged over the views of each image
    (`view_ids`), each mapped back to the image's orientation before it is added. `predict` takes
    uint8 (N, H', W', 3) images, as the networks' own predict methods do; the gate's validator
    and evaluate's segmenters both go through here."""
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2)  # (N, 3, H, W)
    ks = view_ids(n_views, images.shape[1] == images.shape[2])
    total = None
    for k in ks:
        probs = invert_view(predict(apply_view(x, k).permute(0, 2, 3, 1).contiguous().numpy()), k)
        total = probs if total is None else total + probs
    return total / len(ks)


class ViewAveraged:
    """A `Validator` whose predictions average `n_views` dihedral views (see the module docstring).
    Everything else (num_classes, config, decode, ...) is the wrapped validator's."""

    def __init__(self, validator: Validator, n_views: int) -> None:
        if n_views not in (1, 2, 4, 8):
            raise ValueError(f"n_views must be 1, 2, 4 or 8, got {n_views}")
        self.inner = validator
        self.n_views = n_views

    def __getattr__(self, name: str):
        if name == "inner":  # not set yet (e.g. while copying): no recursion
            raise AttributeError(name)
        return getattr(self.inner, name)

    @torch.no_grad()
    def _probs(self, images: np.ndarray, mode: str, steps: int, seed: int, batch_size: int, seeds) -> torch.Tensor:
        """uint8 (N, H, W, 3) -> mean class probabilities over the views (N, C+1, H, W) float32."""
        v = self.inner
        if len(images) == 0:
            h, w = images.shape[1:3] if images.ndim == 4 else (0, 0)
            return torch.zeros(0, v.num_classes + 1, h, w)

        def predict(xk: np.ndarray) -> torch.Tensor:
            z_a = encode_images(v.vae, xk, batch_size, v.device, v.dtype)
            return v.decode(v.predict_latents(z_a, mode, steps, seed, batch_size, seeds), batch_size)

        return mean_over_views(images, self.n_views, predict)

    def predict_proba(self, images: np.ndarray, mode: str = "single_step", steps: int = 20, seed: int = 0,
                      batch_size: int = 32, seeds=None) -> torch.Tensor:
        """uint8 (N, H, W, 3) -> (N, C+1, H, W) class probabilities, averaged over the views."""
        return self._probs(images, mode, steps, seed, batch_size, seeds)

    def predict(self, images: np.ndarray, mode: str = "single_step", steps: int = 20, seed: int = 0,
                batch_size: int = 32, seeds=None) -> np.ndarray:
        """uint8 (N, H, W, 3) -> uint8 (N, H, W) class indices of the averaged probabilities."""
        return probs_to_masks(self._probs(images, mode, steps, seed, batch_size, seeds)).numpy()


def with_views(validator: Validator | ViewAveraged, n_views: int) -> Validator | ViewAveraged:
    """The plain validator for one view, else it wrapped in `ViewAveraged` (a wrapped one is
    unwrapped first, so wrapping twice is the same as once)."""
    plain = validator.inner if isinstance(validator, ViewAveraged) else validator
    return plain if n_views == 1 else ViewAveraged(plain, n_views)


__all__ = ["VIEW_ORDER", "ViewAveraged", "apply_view", "invert_view", "mean_over_views", "view_ids", "with_views"]
