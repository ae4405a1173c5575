"""The embedded phantom data set: deterministic, realistic statistics, hard for a threshold."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from diffaug.data.config import PhantomConfig, PrepareConfig
from diffaug.data.phantom import generate_phantom
from diffaug.data.stage_prepare import run_prepare
from diffaug.data.prepared import load_fingerprint, load_split
from diffaug.data.stats import cup_to_disc_ratio, threshold_baseline


def _digests(folder):
    return {p.name: hashlib.md5(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


@pytest.fixture(scope="module")
def default_polyp():
    """The default profile: 64 px, 120 train / 60 test / 40 normals."""
    return generate_phantom(PrepareConfig(), seed=0)


def test_same_seed_gives_identical_files_and_other_seed_differs(tmp_path):
    cfg = PrepareConfig(phantom=PhantomConfig(train=6, test=3, normals=2, unlabelled=4), image_size=32)
    run_prepare(cfg, 7, tmp_path / "a", tmp_path / "a.json")
    run_prepare(cfg, 7, tmp_path / "b", tmp_path / "b.json")
    run_prepare(cfg, 8, tmp_path / "c", tmp_path / "c.json")
    a, b, c = _digests(tmp_path / "a"), _digests(tmp_path / "b"), _digests(tmp_path / "c")
    assert set(a) == {"train.npz", "test.npz", "normals.npz", "mask_bank.npz", "mask_bank.csv", "manifest.csv",
                      "fingerprint.json", "preview.png", "unlabelled.npz"}
    assert a == b  # identical bytes → identical DVC hashes
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()
    assert a["train.npz"] != c["train.npz"] and a["unlabelled.npz"] != c["unlabelled.npz"]


def test_polyp_frames_look_like_endoscopy(default_polyp):
    train, normals = default_polyp.train, default_polyp.normals
    assert train.images.shape == (120, 64, 64, 3) and train.images.dtype == np.uint8
    assert set(np.unique(train.masks)) == {0, 1}
    # dark vignetted border, bright mucosa inside; reddish tissue (R > G > B on average)
    corners = train.images[:, :3, :3].mean()
    centre = train.images[:, 16:48, 16:48].reshape(-1, 3).astype(float)
    assert corners < 15 and centre.mean() > 40
    r, g, b = centre.mean(axis=0)
    assert r > g > b * 0.9
    # specular highlights: near-white pixels exist but are rare
    white = (train.images.min(axis=-1) > 230).mean()
    assert 1e-4 < white < 0.02
    # normals are lesion-free, every labelled frame has a lesion
    assert normals.masks.max() == 0 and all(m.any() for m in train.masks)


def test_polyp_sizes_include_small_and_flat_lesions(default_polyp):
    area = default_polyp.train.masks.reshape(120, -1).mean(axis=1)
    small = (area < 0.05).mean()
    assert 0.2 < small < 0.6 and area.max() > 0.15  # small ones, and big ones too
    flat = np.mean([f for f in default_polyp.train.flat])
    assert 0.1 < flat < 0.45


def test_hard_case_shares_are_params_and_zero_gives_only_conspicuous_lesions():
    cfg = PrepareConfig(phantom=PhantomConfig(train=40, test=2, normals=1, small_share=0.0, flat_share=0.0))
    easy = generate_phantom(cfg, seed=0).train
    area = easy.masks.reshape(40, -1).mean(axis=1)
    # a frame's largest lesion is never from the small range; frames rarely carry a second lesion
    assert (area >= 0.04).all() and not any(easy.flat)
    # the same random draws decide everything else: where the default mix drew only large,
    # raised lesions, the frame is identical
    from diffaug.data.phantom_polyp import render_polyp_frame

    same = 0
    for i in range(12):
        default = render_polyp_frame(np.random.default_rng([0, i]), 32, True)
        conspicuous = render_polyp_frame(np.random.default_rng([0, i]), 32, True, small_share=0.0, flat_share=0.0)
        if all(les.area_frac >= 0.05 and not les.flat for les in default[2]):
            same += 1
            np.testing.assert_array_equal(conspicuous[0], default[0])
            np.testing.assert_array_equal(conspicuous[1], default[1])
    assert same >= 3
    with pytest.raises(ValueError, match="small_share"):
        PhantomConfig(small_share=1.5)


def test_best_single_threshold_fails_on_polyp_phantom(default_polyp):
    """Searched on train over R, G, B, luma, redness and saturation: Dice on test stays < 0.6,
    so a segmenter has to learn shape, shading and texture."""
    tr, te = default_polyp.train, default_polyp.test
    best = threshold_baseline(tr.images, tr.masks >= 1, te.images, te.masks >= 1)
    assert best["dice_test"] < 0.6, best
    assert 0.0 < best["dice_train"] < 0.6


def test_fundus_family_has_disc_cup_and_a_spread_of_cdr(tmp_path):
    cfg = PrepareConfig(phantom=PhantomConfig(family="fundus", train=40, test=12, normals=8), preview_count=8)
    run_prepare(cfg, 0, tmp_path / "f", tmp_path / "f.json")
    train, normals = load_split(tmp_path / "f", "train"), load_split(tmp_path / "f", "normals")
    assert set(np.unique(train.masks)) == {0, 1, 2}
    for m in train.masks:  # the cup lies inside the disc, and the disc has a rim
        cup = m == 2
        assert cup.any() and (m >= 1).sum() > cup.sum()
        ys, xs = np.nonzero(cup)
        assert (m[ys.min():ys.max() + 1, xs.min():xs.max() + 1] >= 1).mean() > 0.7
    cdrs = np.array([cup_to_disc_ratio(m) for m in train.masks])
    assert (cdrs < 0.5).any() and ((cdrs >= 0.5) & (cdrs < 0.6)).any() and (cdrs >= 0.65).any()
    assert all(cup_to_disc_ratio(m) < 0.5 for m in normals.masks)  # normals: CDR below cdr_normal_max
    fp = load_fingerprint(tmp_path / "f")
    assert fp["family"] == "fundus" and fp["num_classes"] == 3 and fp["class_names"] == ["background", "disc", "cup"]
    assert fp["cdr"]["train"]["early_glaucoma"] >= 1 and sum(fp["cdr"]["train"]["counts"]) == 40
    assert train.table["cdr"].notna().all()
    # the cup (the lesion of the fundus family) is not found by a colour threshold either
    test = load_split(tmp_path / "f", "test")
    assert threshold_baseline(train.images, train.masks == 2, test.images, test.masks == 2)["dice_test"] < 0.6
    assert fp["threshold_baseline"]["dice_test"] < 0.6
    bank = load_split(tmp_path / "f", "mask_bank")  # fundus bank = the cups
    assert len(bank) == 40 and bank.masks.max() == 1


def test_train_limit_keeps_the_first_frames(tmp_path):
    full = generate_phantom(PrepareConfig(image_size=32, phantom=PhantomConfig(train=6, test=2, normals=1)), 0)
    few = generate_phantom(PrepareConfig(image_size=32, train_limit=3, phantom=PhantomConfig(train=6, test=2, normals=1)), 0)
    assert len(few.train) == 3 and np.array_equal(few.train.images, full.train.images[:3])
    assert np.array_equal(few.test.images, full.test.images)  # other splits do not move
