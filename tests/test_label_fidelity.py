"""Label fidelity: how far the lesion a real-only segmenter sees in a sample reaches beyond its label."""

from __future__ import annotations

import numpy as np
import pytest

from diffaug.evaluation.fidelity import label_fidelity


def _square(n: int, side: int, size: int = 16) -> np.ndarray:
    m = np.zeros((n, size, size), np.uint8)
    lo = (size - side) // 2
    m[:, lo:lo + side, lo:lo + side] = 1
    return m


def test_figures_are_the_painted_extent_against_the_label():
    masks = _square(3, 4)                     # 16 px labels
    spread = _square(3, 6)                    # the baseline sees 36 px: 20 px beyond each label
    small = np.array([True, True, False])
    preds = {"accepted": [spread, spread], "test": [masks.copy()]}
    out = label_fidelity(preds, {"accepted": masks, "test": masks}, {"accepted": small, "test": small}, lesion_class=1)
    assert out["fidelity_seeds"] == 1
    for cls in ("all", "small", "large"):
        assert out[f"fidelity_area_ratio_accepted_{cls}"] == pytest.approx(36 / 16)
        assert out[f"fidelity_outside_accepted_{cls}"] == pytest.approx(20 / 16)
        assert out[f"fidelity_area_ratio_test_{cls}"] == pytest.approx(1.0)
        assert out[f"fidelity_outside_test_{cls}"] == 0.0
    assert (out["fidelity_n_accepted_small"], out["fidelity_n_accepted_large"], out["fidelity_n_test_all"]) == (2, 1, 3)


def test_medians_over_samples_mean_over_seeds_and_empty_classes_are_null():
    masks = _square(3, 4)
    missed = np.zeros_like(masks)
    seed_a = np.stack([masks[0], masks[1], _square(1, 6)[0]])   # ratios 1, 1, 2.25 -> median 1
    seed_b = np.stack([missed[0], missed[1], masks[2]])          # ratios 0, 0, 1 -> median 0
    none_small = np.zeros(3, bool)
    out = label_fidelity({"accepted": [seed_a, seed_b], "test": [masks, masks]},
                         {"accepted": masks, "test": np.zeros_like(masks)},
                         {"accepted": none_small, "test": none_small}, lesion_class=1)
    assert out["fidelity_area_ratio_accepted_all"] == pytest.approx(0.5)
    assert out["fidelity_area_ratio_accepted_small"] is None and out["fidelity_n_accepted_small"] == 0
    assert out["fidelity_area_ratio_test_all"] is None  # a test split without lesions
