"""Synthetic-quality metrics (table 5): gate statistics, LPIPS and FID with weight files the
tests create (random torchvision backbones saved as state_dicts), and the unavailable path."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
import torchvision

from diffaug.errors import InputError
from diffaug.evaluation.config import SyntheticQualityConfig
from diffaug.evaluation.synthetic import frechet_distance, lesion_crops, synthetic_quality
from diffaug.io import save_npz

SIZE = 32


def _lesion_images(n: int, rng: np.random.Generator, noise: bool = False) -> tuple[np.ndarray, np.ndarray]:
    images = np.zeros((n, SIZE, SIZE, 3), np.uint8)
    images[..., 0], images[..., 1], images[..., 2] = 170, 90, 80  # mucosa-like background
    masks = np.zeros((n, SIZE, SIZE), np.uint8)
    yy, xx = np.mgrid[:SIZE, :SIZE]
    for i in range(n):
        cy, cx, r = rng.integers(10, 22), rng.integers(10, 22), rng.integers(4, 8)
        disc = (yy - cy) ** 2 + (xx - cx) ** 2 < r * r
        masks[i][disc] = 1
        images[i][disc] = (210, 120, 100)  # a brighter bump
        if noise:
            images[i][disc] = rng.integers(0, 256, (int(disc.sum()), 3))
    return images, masks


@pytest.fixture
def gated(tmp_path):
    rng = np.random.default_rng(0)
    real = _lesion_images(8, rng)
    acc = _lesion_images(6, rng)
    rej = _lesion_images(4, rng, noise=True)
    d = tmp_path / "gated"
    for name, (imgs, masks), ious in (("accepted", acc, [0.9, 0.8, 0.85, 0.75, 0.95, 0.8]), ("rejected", rej, [0.2, 0.4, 0.1, 0.5])):
        n = len(imgs)
        ids = np.array([f"{name}-{i}" for i in range(n)])
        save_npz(d / f"{name}.npz", images=imgs, masks=masks, ids=ids, pred_masks=masks)
        bgs = ["bg0", "bg0", "bg1", "bg1", "bg1", "bg2"][:n] if name == "accepted" else ["bg0", "bg2", "bg3", "bg3"]
        pd.DataFrame({"sample_id": ids, "background_id": bgs, "iou": ious}).to_csv(d / f"{name}.csv", index=False)
    return d, real


def test_crops_square_around_the_lesion():
    img = np.zeros((1, 32, 32, 3), np.uint8)
    mask = np.zeros((1, 32, 32), np.uint8)
    mask[0, 4:8, 20:30] = 1
    img[0, 4:8, 20:30] = 255
    crops = lesion_crops(img, mask, 1, 16, 0.0)
    assert crops.shape == (1, 16, 16, 3)
    assert crops[0, 8, 8].tolist() == [255, 255, 255]  # lesion centred
    assert lesion_crops(img, np.zeros_like(mask), 1, 16, 0.25).shape == (0, 16, 16, 3)  # no lesion: no crop


def test_frechet_distance_matches_the_matrix_square_root_form():
    from scipy import linalg

    rng = np.random.default_rng(0)
    a = rng.normal(size=(30, 50))
    b = rng.normal(0.3, 1.0, size=(20, 50)) @ rng.normal(size=(50, 50)) * 0.2
    s_a, s_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    ref = ((a.mean(0) - b.mean(0)) ** 2).sum() + np.trace(s_a + s_b - 2 * linalg.sqrtm(s_a @ s_b).real)
    assert frechet_distance(a, b) == pytest.approx(ref, rel=1e-6)
    assert frechet_distance(b, a) == pytest.approx(ref, rel=1e-6)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-8)


def test_gate_statistics_and_unavailable_backbones(gated):
    d, (images, masks) = gated
    out = synthetic_quality(d, images, masks, 1, SyntheticQualityConfig(crop_size=32), seed=0)
    assert out["n_generated"] == 10 and out["n_accepted"] == 6
    assert out["acceptance_rate"] == pytest.approx(0.6)
    assert out["iou_accepted"] == pytest.approx(np.mean([0.9, 0.8, 0.85, 0.75, 0.95, 0.8]))
    assert out["iou_rejected"] == pytest.approx(0.3)
    assert out["n_backgrounds"] == 4 and out["accepted_per_background"] == pytest.approx(6 / 4)
    assert out["backgrounds_with_accepted"] == 3
    for metric in ("lpips", "fid"):
        assert out[f"{metric}_accepted"] is None and out[f"{metric}_rejected"] is None
        assert out[f"{metric}_status"].startswith("unavailable: no pretrained backbone weights")


def test_no_gate_output_is_unavailable(tmp_path):
    images, masks = _lesion_images(3, np.random.default_rng(0))
    out = synthetic_quality(tmp_path / "missing", images, masks, 1, SyntheticQualityConfig(), seed=0)
    assert out["acceptance_rate"] is None and out["lpips_accepted"] is None
    assert out["status"].startswith("unavailable: no gate output")


@pytest.fixture
def flush_denormals():
    """Random (untrained) backbones produce denormal floats that make CPU convolutions ~10x
    slower; pretrained weights do not. Flush them for the test only."""
    torch.set_flush_denormal(True)
    yield
    torch.set_flush_denormal(False)


def test_lpips_and_fid_with_created_weights(gated, tmp_path, flush_denormals):
    torch.manual_seed(0)
    alex = tmp_path / "alexnet.pth"
    torch.save(torchvision.models.alexnet(weights=None).state_dict(), alex)
    inception = tmp_path / "inception.pth"
    state = torchvision.models.inception_v3(weights=None, aux_logits=True, init_weights=False).state_dict()
    # torch's default conv init shrinks activations layer by layer to denormal floats (slow, and
    # FID ~1e-15); a He-style gain keeps the random features O(1) like pretrained ones.
    torch.save({k: v * 6**0.5 if k.endswith("conv.weight") else v for k, v in state.items()}, inception)
    d, (images, masks) = gated
    cfg = SyntheticQualityConfig(crop_size=32, lpips_weights=str(alex), lpips_pairs=2, fid_weights=str(inception), fid_image_size=75)
    out = synthetic_quality(d, images, masks, 1, cfg, seed=0)
    assert out["lpips_status"] == "ok" and out["fid_status"] == "ok"
    for key in ("lpips_accepted", "lpips_rejected", "fid_accepted", "fid_rejected"):
        assert isinstance(out[key], float) and np.isfinite(out[key]) and out[key] >= 0
    # accepted lesions look like the real ones, rejected ones are noise: closer to real on both
    assert out["lpips_accepted"] < out["lpips_rejected"]
    assert out["fid_accepted"] < out["fid_rejected"]
    lpips_only = cfg.model_copy(update={"fid_weights": None})
    assert synthetic_quality(d, images, masks, 1, lpips_only, seed=0)["lpips_accepted"] == out["lpips_accepted"]


def test_bad_weight_files_are_one_line_errors(gated, tmp_path):
    d, (images, masks) = gated
    missing = SyntheticQualityConfig(lpips_weights=str(tmp_path / "nope.pth"))
    with pytest.raises(InputError, match="nope.pth: evaluate.synthetic.lpips_weights weights file not found"):
        synthetic_quality(d, images, masks, 1, missing, seed=0)
    wrong = tmp_path / "wrong.pth"
    torch.save({"features.0.weight": torch.zeros(3)}, wrong)
    with pytest.raises(InputError, match="not a torchvision alexnet state_dict"):
        synthetic_quality(d, images, masks, 1, SyntheticQualityConfig(lpips_weights=str(wrong)), seed=0)
