"""Lesion placement (inside the field of view, off existing lesions; fundus cup inside the disc),
feathered compositing and per-sample seeds."""

from __future__ import annotations

import json

import numpy as np
from scipy import ndimage

from diffaug.generator.compositing import composite, feather_alpha
from diffaug.generator.config import PlacementConfig
from diffaug.generator.generate import sample_seed
from diffaug.generator.placement import field_of_view, place_lesion, transform_patch, transform_shape

S = 48
YY, XX = np.mgrid[:S, :S]


def _endoscope_frame() -> np.ndarray:
    img = np.zeros((S, S, 3), np.uint8)  # black border outside a lit disc of radius 20
    img[(YY - 24) ** 2 + (XX - 24) ** 2 < 20**2] = (170, 80, 70)
    return img


def _bank() -> np.ndarray:
    bank = np.zeros((3, S, S), np.uint8)
    bank[0, 5:15, 5:11] = 1
    bank[1][(YY - 30) ** 2 + (XX - 20) ** 2 < 36] = 1
    bank[2, 40:43, 40:44] = 1
    return bank


def test_polyp_lesions_stay_inside_the_field_of_view_and_off_existing_lesions():
    img = _endoscope_frame()
    existing = np.zeros((S, S), np.uint8)
    existing[20:26, 20:26] = 1
    cfg = PlacementConfig(fov_margin=2)
    fov = field_of_view(img, cfg.fov_threshold, cfg.fov_margin)
    rng = np.random.default_rng(0)
    for _ in range(20):
        p = place_lesion(img, existing, _bank(), "polyp", cfg, rng)
        assert p.lesion.any()
        assert not (p.lesion & ~fov).any(), "lesion touches the black border"
        assert not (p.lesion & ndimage.binary_dilation(existing > 0)).any(), "lesion overlaps an existing one"
        assert set(np.unique(p.intended)) <= {0, 1}
        assert (p.intended[existing > 0] == 1).all() and (p.intended[p.lesion] == 1).all()  # union
        tf = json.loads(p.transform_json())
        assert {"scale", "angle", "flip", "cy", "cx"} <= set(tf)
        assert abs(tf["cy"] - ndimage.center_of_mass(p.lesion)[0]) < 0.01


def test_placement_is_deterministic_for_a_seed():
    a = place_lesion(_endoscope_frame(), np.zeros((S, S), np.uint8), _bank(), "polyp", PlacementConfig(), np.random.default_rng(5))
    b = place_lesion(_endoscope_frame(), np.zeros((S, S), np.uint8), _bank(), "polyp", PlacementConfig(), np.random.default_rng(5))
    assert np.array_equal(a.lesion, b.lesion) and a.transform == b.transform


def test_fundus_cup_is_enlarged_inside_the_existing_disc():
    existing = np.zeros((S, S), np.uint8)
    disc = (YY - 24) ** 2 + (XX - 22) ** 2 < 12**2
    existing[disc] = 1
    existing[(YY - 24) ** 2 + (XX - 22) ** 2 < 4**2] = 2  # a normal cup, CDR about 0.3
    cfg = PlacementConfig(cdr_range=[0.6, 0.8])
    rng = np.random.default_rng(1)
    for _ in range(10):
        p = place_lesion(_endoscope_frame(), existing, _bank(), "fundus", cfg, rng)
        cup = p.intended == 2
        assert not (cup & ~disc).any(), "new cup leaves the disc"
        assert (p.intended[disc] >= 1).all() and (p.intended[~disc] == 0).all()
        assert cup[existing == 2].all(), "the enlarged cup covers the old cup"
        rows = np.flatnonzero(cup.any(axis=1))
        cdr = (rows[-1] - rows[0] + 1) / 23.0
        assert 0.45 < cdr < 0.9 and cup.sum() > (existing == 2).sum()


def test_transform_shape_scales_and_rotates():
    shape = np.zeros((20, 6), bool)
    shape[:, :] = True
    assert transform_shape(shape, 1.0, 90.0, False).shape[1] >= 19  # tall becomes wide
    big = transform_shape(shape, 2.0, 0.0, False)
    assert 38 <= big.shape[0] <= 42


def test_transform_patch_warps_pixels_with_the_shape():
    shape = np.zeros((9, 14), bool)
    shape[1:8, 2:13] = (YY[:7, :11] - 3) ** 2 / 9 + (XX[:7, :11] - 5) ** 2 / 30 < 1
    pixels = np.zeros((9, 14, 3), np.uint8)
    pixels[..., 0] = np.arange(14) * 18  # red grows left to right
    pixels[..., 1] = 90
    for scale, angle, flip in [(1.0, 0.0, False), (1.3, 37.0, True), (0.6, -120.0, False), (2.0, 180.0, True)]:
        mask, warped = transform_patch(shape, pixels, scale, angle, flip)
        np.testing.assert_array_equal(mask, transform_shape(shape, scale, angle, flip))  # the placement's shape
        assert warped.shape == (*mask.shape, 3) and (warped[..., 1] == 90).all()  # a constant channel stays constant
    # mirrored: red now grows right to left under the shape
    mask, warped = transform_patch(shape, pixels, 1.0, 0.0, True)
    red = np.where(mask, warped[..., 0].astype(float), np.nan)
    assert np.nanmean(red[:, : mask.shape[1] // 2]) > np.nanmean(red[:, mask.shape[1] // 2 :]) + 50


def test_feathered_composite_keeps_original_pixels_away_from_the_mask():
    rng = np.random.default_rng(0)
    original = rng.integers(0, 255, (S, S, 3), dtype=np.uint8)
    decoded = np.ones((S, S, 3), np.float32)  # white
    mask = np.zeros((S, S), bool)
    mask[20:30, 20:30] = True
    out = composite(original, decoded, mask, sigma=1.0, dilate=1)
    assert (out[mask] == 255).all()
    far = ~ndimage.binary_dilation(mask, iterations=6)
    assert np.array_equal(out[far], original[far])
    alpha = feather_alpha(mask, 1.0, 1)
    band = ndimage.binary_dilation(mask, iterations=2) & ~mask
    assert 0 < alpha[band].mean() < 1  # a soft edge, not a hard cut


def test_sample_seeds_depend_on_background_and_variant_only():
    seeds = {sample_seed(0, i, v) for i in range(20) for v in range(5)}
    assert len(seeds) == 100
    assert sample_seed(0, 3, 2) == sample_seed(0, 3, 2) != sample_seed(1, 3, 2)
