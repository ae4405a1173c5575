"""Zoomed windows (diffaug.zoom): which lesions are zoomed, where the window lies, and that crop ->
resize -> paste changes nothing outside the window and little inside it."""

from __future__ import annotations

import numpy as np
import pytest

from diffaug.zoom import NOT_ZOOMED, ZoomConfig, crop, paste, training_windows, window_for, windows_array


def _mask(y0, x0, y1, x1, size=64):
    m = np.zeros((size, size), bool)
    m[y0:y1, x0:x1] = True
    return m


def _smooth_image(size=64, seed=0):
    """A frame with structure at every scale a 64 px tissue frame has (a few px and up)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    img = np.zeros((size, size, 3))
    for c in range(3):
        for _ in range(4):
            fy, fx, ph = rng.uniform(0.5, 3, 2).tolist() + [rng.uniform(0, 6)]
            img[..., c] += np.sin(2 * np.pi * (fy * yy + fx * xx) + ph)
    img = (img - img.min()) / (img.max() - img.min())
    return (img * 255).round().astype(np.uint8)


def test_small_lesion_gets_a_square_window_around_it_inside_the_frame():
    cfg = ZoomConfig(context=2.5, min_side=16)
    y, x, s = window_for(_mask(10, 40, 18, 46), cfg)  # box 8 x 6 px
    assert s == 20  # 2.5 x the longer side
    assert y <= 10 and y + s >= 18 and x <= 40 and x + s >= 46  # the box is inside
    y, x, s = window_for(_mask(0, 60, 3, 64), cfg)  # 3 x 4 px in the corner
    assert s == 16  # min_side
    assert (y, x) == (0, 48)  # moved inside the frame, not cut


def test_large_empty_or_disabled_is_not_zoomed():
    assert window_for(_mask(10, 10, 50, 40), ZoomConfig()) == NOT_ZOOMED  # longer side 40 > 0.4 x 64
    assert window_for(np.zeros((64, 64), bool), ZoomConfig()) == NOT_ZOOMED
    assert window_for(_mask(10, 40, 18, 46), ZoomConfig(enabled=False)) == NOT_ZOOMED
    # a window that would cover the whole frame is no zoom
    assert window_for(_mask(20, 20, 44, 44), ZoomConfig(max_frac=0.9, context=3)) == NOT_ZOOMED


def test_crop_resize_paste_round_trip_leaves_outside_untouched():
    img = _smooth_image()
    frames = np.stack([img, img[::-1].copy()])
    win = windows_array([(4, 33, 20), NOT_ZOOMED])
    patches = crop(frames, win)
    assert patches.shape == frames.shape
    np.testing.assert_array_equal(patches[1], frames[1])  # side 0: the frame as it is
    back = paste(frames, patches, win)
    outside = np.ones((64, 64), bool)
    outside[4:24, 33:53] = False
    np.testing.assert_array_equal(back[0][outside], frames[0][outside])
    err = np.abs(back[0].astype(int) - frames[0].astype(int))[~outside]
    assert err.mean() < 2.0 and err.max() <= 12  # up 3.2x, then down again (antialiased)
    # something else pasted in a window changes the window only
    other = paste(frames, np.zeros_like(patches), win)
    assert (other[0][~outside] == 0).all() and (other[0][outside] == frames[0][outside]).all()


def test_mask_crop_keeps_class_indices():
    m = np.zeros((1, 64, 64), np.uint8)
    m[0, 10:18, 40:46] = 1
    m[0, 12:14, 42:44] = 2
    win = windows_array([window_for(m[0] > 0, ZoomConfig())])
    c = crop(m, win, nearest=True)
    assert set(np.unique(c).tolist()) == {0, 1, 2}
    assert (c > 0).mean() > 5 * (m > 0).mean()  # the lesion fills much more of the window
    np.testing.assert_array_equal(paste(m, c, win, nearest=True), m)  # integer scale 64/20 round-trips exactly here


@pytest.mark.parametrize("box", [(10, 40, 18, 46), (8, 8, 50, 40)])
def test_training_windows_are_seeded_and_hold_the_lesion(box):
    cfg = ZoomConfig(train_windows=3)
    m = _mask(*box)
    a = training_windows(m, cfg, np.random.default_rng(0))
    b = training_windows(m, cfg, np.random.default_rng(0))
    assert a == b and 1 <= len(a) <= 3
    for y, x, s in a:
        assert 0 <= y and y + s <= 64 and 0 <= x and x + s <= 64 and 0 < s < 64
        assert m[y:y + s, x:x + s].sum() > 0.5 * m.sum()  # most of the lesion is in the window
