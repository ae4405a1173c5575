"""Synthetic-quality metrics (table 5): gate statistics, LPIPS and FID with weight files the
tests create (random torchvision backbones saved as state_dicts), the C2ST realism score (no
weights needed), the unavailable paths and the report's table."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
import torchvision

from diffaug.errors import InputError
from diffaug.evaluation.config import C2STConfig, SyntheticQualityConfig
from diffaug.evaluation.report import render_report
from diffaug.evaluation.synthetic import fid_to_real, lesion_crops, real_fid, synthetic_quality
from diffaug.io import save_npz

SIZE = 32
FAST_C2ST = C2STConfig(folds=2, crop_size=16, steps=20)  # the gated fixture has 4-8 crops per set
NO_C2ST = C2STConfig(enabled=False)


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


class _Flatten(torch.nn.Module):
    """Feature extractor for the FID test: uint8 (N, 3, 4, 4) -> float32 (N, 48), the raw pixels."""

    num_features = 48

    def forward(self, imgs: torch.Tensor) -> torch.Tensor:
        return imgs.float().flatten(1)


def test_fid_matches_the_matrix_square_root_form_against_the_same_real_set():
    from scipy import linalg

    rng = np.random.default_rng(0)
    real = rng.integers(0, 256, (80, 4, 4, 3), dtype=np.uint8)
    sets = {"a": rng.integers(30, 256, (60, 4, 4, 3), dtype=np.uint8),
            "b": (rng.integers(0, 200, (70, 4, 4, 3)) * rng.uniform(0.5, 1.0, (1, 4, 4, 3))).astype(np.uint8)}

    def feats(crops: np.ndarray) -> np.ndarray:  # what _Flatten sees: channels first
        return crops.transpose(0, 3, 1, 2).reshape(len(crops), -1).astype(np.float64)

    def reference(x: np.ndarray, y: np.ndarray) -> float:
        s_x, s_y = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
        return float(((x.mean(0) - y.mean(0)) ** 2).sum() + np.trace(s_x + s_y - 2 * linalg.sqrtm(s_x @ s_y).real))

    metric = real_fid(_Flatten(), real)
    first = {k: fid_to_real(metric, v) for k, v in sets.items()}
    for k, v in sets.items():
        assert first[k] == pytest.approx(reference(feats(v), feats(real)), rel=1e-4)
    # the real features stay, the previous synthetic set goes: scoring "a" again gives the same value
    assert fid_to_real(metric, sets["a"]) == pytest.approx(first["a"], rel=1e-6)
    assert fid_to_real(metric, real) == pytest.approx(0.0, abs=1e-2 * first["a"])


def test_gate_statistics_and_unavailable_backbones(gated):
    d, (images, masks) = gated
    out = synthetic_quality(d, images, masks, 1, SyntheticQualityConfig(crop_size=32, c2st=FAST_C2ST), seed=0)
    assert out["n_generated"] == 10 and out["n_accepted"] == 6
    assert out["acceptance_rate"] == pytest.approx(0.6)
    assert out["iou_accepted"] == pytest.approx(np.mean([0.9, 0.8, 0.85, 0.75, 0.95, 0.8]))
    assert out["iou_rejected"] == pytest.approx(0.3)
    assert out["n_backgrounds"] == 4 and out["accepted_per_background"] == pytest.approx(6 / 4)
    assert out["backgrounds_with_accepted"] == 3
    for metric in ("lpips", "fid"):
        assert out[f"{metric}_accepted"] is None and out[f"{metric}_rejected"] is None
        assert out[f"{metric}_status"].startswith("unavailable: no pretrained backbone weights")
    # the two-sample test needs no weights: accepted lesions are drawn like the real ones, the
    # rejected ones are noise, which a classifier tells apart
    assert out["c2st_status"] == "ok"
    assert (out["c2st_n_accepted"], out["c2st_n_rejected"]) == (6, 4)
    assert out["c2st_auc_rejected"] == pytest.approx(1.0)
    assert 0.0 <= out["c2st_auc_accepted"] < out["c2st_auc_rejected"]  # 6 crops each: noisy, no closer bound


def test_c2st_too_few_crops_or_disabled_is_null_with_the_reason(gated):
    d, (images, masks) = gated
    five = SyntheticQualityConfig(crop_size=32, c2st=FAST_C2ST.model_copy(update={"folds": 5}))
    out = synthetic_quality(d, images, masks, 1, five, seed=0)
    assert isinstance(out["c2st_auc_accepted"], float) and out["c2st_auc_rejected"] is None
    assert out["c2st_status"] == "partial: too few crops (rejected: 4 crop(s)); need at least 5 (evaluate.synthetic.c2st.folds)"
    out = synthetic_quality(d, images, masks, 1, SyntheticQualityConfig(c2st=NO_C2ST), seed=0)
    assert out["c2st_auc_accepted"] is None and out["c2st_status"].startswith("disabled")
    nine = SyntheticQualityConfig(c2st=FAST_C2ST.model_copy(update={"folds": 9}))
    out = synthetic_quality(d, images, masks, 1, nine, seed=0)  # 8 real crops
    assert out["c2st_auc_accepted"] is None and out["c2st_status"].startswith("undefined: 8 real lesion crop(s)")


def test_no_gate_output_is_unavailable(tmp_path):
    images, masks = _lesion_images(3, np.random.default_rng(0))
    out = synthetic_quality(tmp_path / "missing", images, masks, 1, SyntheticQualityConfig(), seed=0)
    assert out["acceptance_rate"] is None and out["lpips_accepted"] is None and out["c2st_auc_accepted"] is None
    assert out["status"].startswith("unavailable: no gate output") and out["c2st_status"] == out["status"]


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
    cfg = SyntheticQualityConfig(crop_size=32, lpips_weights=str(alex), lpips_pairs=2, fid_weights=str(inception),
                                 fid_image_size=75, c2st=NO_C2ST)
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


def test_report_table5_has_the_c2st_column_beside_lpips_and_fid():
    syn = {"status": "ok", "n_generated": 160, "n_accepted": 35, "iou_accepted": 0.77, "iou_rejected": 0.37,
           "acceptance_rate": 0.22, "accepted_per_background": 0.88, "n_backgrounds": 40,
           "lpips_accepted": None, "lpips_rejected": None, "lpips_status": "unavailable: x",
           "fid_accepted": 41.5, "fid_rejected": 80.25, "fid_status": "ok",
           "c2st_auc_accepted": 0.61, "c2st_auc_rejected": 0.93, "c2st_n_accepted": 35, "c2st_n_rejected": 60,
           "c2st_status": "ok"}
    metrics = {"n_test_images": 60, "n_runs": 0, "family": "polyp", "lesion_class": 1, "detect_fraction": 0.5,
               "small_area_frac": 0.05, "baseline": "standard", "synthetic": syn}
    text = render_report(metrics, {}, {})
    assert "| set | samples | validation IoU | LPIPS vs real | FID vs real | C2ST AUC vs real |" in text
    # chance band 0.5 ± 2 sqrt((2n + 1) / (12 n^2)): n = 35 -> 0.139, n = 60 -> 0.106
    assert "| accepted | 35 | 0.770 | — | 41.5 | 0.610 (n=35; chance 0.5 ± 0.14) |" in text
    assert "| rejected | 125 | 0.370 | — | 80.2 | 0.930 (n=60; chance 0.5 ± 0.11) |" in text
    assert "0.5 = it cannot tell them apart" in text
