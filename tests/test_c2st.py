"""Classifier two-sample test on phantom lesion crops: real vs real is near chance, blurred or
colour-shifted crops are told apart, the per-crop probabilities single out the altered ones,
same seed same result, and a set too small for the folds is a one-line error."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from scipy import ndimage
from torchmetrics.functional.classification import binary_auroc

from diffaug.data.phantom_polyp import render_polyp_frame
from diffaug.errors import InputError
from diffaug.evaluation.c2st import two_sample_test
from diffaug.evaluation.config import C2STConfig
from diffaug.evaluation.synthetic import lesion_crops

CROP = 16  # crops made at the test's CNN size, so a blur is not undone by a resize
# small and quick: 3 folds, 40 steps per fold
CFG = C2STConfig(folds=3, crop_size=CROP, width=8, steps=40, batch_size=32, lr=3e-3)
N = 72  # phantom frames per set


def _crops(stream: int, n: int = N) -> np.ndarray:
    """Lesion crops uint8 (n, CROP, CROP, 3) of phantom polyp frames from an independent seed stream."""
    frames = [render_polyp_frame(np.random.default_rng([stream, i]), 64, True) for i in range(n)]
    images, masks = np.stack([f[0] for f in frames]), np.stack([f[1] for f in frames])
    return lesion_crops(images, masks, 1, CROP, 0.25)


@pytest.fixture(scope="module")
def real() -> tuple[np.ndarray, np.ndarray]:
    return _crops(0), _crops(1)  # two independent samples of the same distribution


def _blur(crops: np.ndarray, sigma: float = 1.0) -> np.ndarray:
    out = ndimage.gaussian_filter(crops.astype(np.float32), (0, sigma, sigma, 0))
    return out.round().clip(0, 255).astype(np.uint8)


def _shift(crops: np.ndarray) -> np.ndarray:
    return np.clip(crops.astype(np.int16) + np.array([12, -6, -6]), 0, 255).astype(np.uint8)  # redder


def test_same_distribution_is_near_chance(real):
    a, b = real
    r = two_sample_test(a, b, CFG, seed=0)
    assert r.n_per_class == min(len(a), len(b)) and len(r.fold_aucs) == CFG.folds
    assert 0.35 < r.auc < 0.65


@pytest.mark.parametrize("alter", [_blur, _shift], ids=["blurred", "colour-shifted"])
def test_altered_crops_are_told_apart(real, alter):
    a, b = real
    r = two_sample_test(a, alter(b), CFG, seed=0)
    assert r.auc > 0.9
    assert min(r.fold_aucs) > 0.8


def test_per_crop_probability_singles_out_the_altered_crops(real):
    a, b = real
    half = len(b) // 2
    synth = np.concatenate([b[:half], _blur(b[half:], 1.5)])
    # more synthetic crops than real ones: the balanced test leaves some out, they are scored too
    synth = np.concatenate([synth, _blur(a[: len(a) // 3], 1.5)])
    # half the synthetic crops look real: a harder task than the others, so twice the steps
    r = two_sample_test(a[len(a) // 3 :], synth, CFG.model_copy(update={"steps": 80}), seed=0)
    blurred = torch.from_numpy(np.arange(len(synth)) >= half).long()
    for per_crop in (r.synth_prob, r.synth_rank):
        assert per_crop.shape == (len(synth),) and np.all((per_crop >= 0) & (per_crop <= 1))
        assert float(binary_auroc(torch.from_numpy(per_crop), blurred)) > 0.85


def test_seeded_deterministic_and_leaves_the_global_rng_alone(real):
    a, b = real
    cfg = CFG.model_copy(update={"steps": 15})  # determinism needs no accuracy
    state = torch.get_rng_state()
    r1 = two_sample_test(a, _blur(b, 0.6), cfg, seed=3)
    assert torch.equal(torch.get_rng_state(), state)
    torch.manual_seed(123)  # a different global state does not change the result
    r2 = two_sample_test(a, _blur(b, 0.6), cfg, seed=3)
    assert r1.auc == r2.auc and r1.fold_aucs == r2.fold_aucs
    np.testing.assert_array_equal(r1.synth_prob, r2.synth_prob)
    assert two_sample_test(a, _blur(b, 0.6), cfg, seed=4).fold_aucs != r1.fold_aucs


@pytest.mark.parametrize(("n_real", "n_synth", "which"), [(10, 0, "0 synthetic"), (2, 10, "2 real")])
def test_too_few_crops_is_one_line(n_real, n_synth, which):
    crops = np.zeros((10, CROP, CROP, 3), np.uint8)
    with pytest.raises(InputError) as exc:
        two_sample_test(crops[:n_real], crops[:n_synth], CFG, seed=0)
    msg = str(exc.value)
    assert msg.startswith(f"two-sample test: {which} lesion crop(s), need at least 3") and "\n" not in msg
    assert "evaluate.synthetic.c2st.folds" in msg


@pytest.mark.parametrize(("c2st", "expected"), [
    ({"folds": 1}, "evaluate.synthetic.c2st.folds: Input should be greater than or equal to 2"),
    ({"max_per_class": 3}, "evaluate.synthetic.c2st: Value error, max_per_class (3) must be >= folds (5)"),
])
def test_params_are_validated_with_the_key_named(write_params, c2st, expected):
    from diffaug.config import load_section
    from diffaug.errors import ConfigError

    path = write_params({"evaluate": {"synthetic": {"c2st": c2st}}})
    with pytest.raises(ConfigError, match=re.escape(expected)):
        load_section(path, "evaluate")
    ok = write_params({"evaluate": {"synthetic": {"c2st": {"folds": 3, "steps": 20, "crop_size": 16}}}}, "ok.yaml")
    assert load_section(ok, "evaluate").synthetic.c2st.folds == 3
