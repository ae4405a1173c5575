"""Test-time views (diffaug.validator.views, gate.views): the view maps, and what averaging all
eight dihedral views guarantees — a prediction that turns and flips with the image, exactly, which a
single view of a (here random) validator does not."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from diffaug.validator.config import GateConfig, TrainValidatorConfig
from diffaug.validator.inference import Validator
from diffaug.validator.model import ValidatorNet
from diffaug.validator.train import dihedral, model_config_from
from diffaug.validator.views import VIEW_ORDER, ViewAveraged, apply_view, invert_view, view_ids, with_views
from validator_helpers import one_thread, small_validator_params, tiny_vae  # noqa: F401

pytestmark = pytest.mark.usefixtures("one_thread")


def _validator(num_classes: int = 1) -> Validator:
    torch.manual_seed(3)
    cfg = TrainValidatorConfig(**small_validator_params())
    vae = tiny_vae()
    return Validator(ValidatorNet(**model_config_from(cfg, vae, num_classes)).eval(), vae)


def _images(n: int = 3, h: int = 32, w: int = 32) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 255, (n, h, w, 3), dtype=np.uint8)


def test_views_are_the_dihedral_group_and_invert():
    x = torch.arange(2 * 4 * 4, dtype=torch.float32).reshape(2, 4, 4)
    seen = set()
    for k in range(8):
        assert torch.equal(apply_view(x, k), dihedral(x, k))  # the training transforms
        assert torch.equal(invert_view(apply_view(x, k), k), x)
        seen.add(tuple(apply_view(x, k).flatten().tolist()))
    assert len(seen) == 8 and sorted(VIEW_ORDER) == list(range(8))
    # the first 1, 2 and 4 views keep a non-square frame's shape; 8 asks for quarter turns
    rect = torch.zeros(1, 4, 6)
    assert all(apply_view(rect, k).shape == rect.shape for k in view_ids(4, square=True))
    assert view_ids(8, square=False) == view_ids(4, square=True)
    assert view_ids(8, square=True) == VIEW_ORDER and view_ids(1, square=True) == (0,)


def test_one_view_is_the_validator_itself():
    v = _validator()
    images = _images()
    assert with_views(v, 1) is v
    twice = with_views(with_views(v, 8), 4)  # wrapping a wrapped one re-wraps the plain validator
    assert isinstance(twice, ViewAveraged) and twice.inner is v and twice.n_views == 4
    assert with_views(with_views(v, 8), 1) is v
    wrapped = ViewAveraged(v, 1)
    assert np.array_equal(wrapped.predict(images, seed=4), v.predict(images, seed=4))
    assert wrapped.num_classes == v.num_classes  # everything else is the wrapped validator's
    with pytest.raises(ValueError, match="1, 2, 4 or 8"):
        ViewAveraged(v, 3)


@pytest.mark.parametrize("num_classes", [1, 2])
def test_eight_views_turn_and_flip_with_the_image(num_classes):
    """Every view of a turned image is a view of the image, with the same per-sample noise, so
    the 8-view average of the turned image is the turned average: equal up to float rounding."""
    v = _validator(num_classes)
    images = _images()
    seeds = np.array([11, 12, 13])
    avg, single = ViewAveraged(v, 8), ViewAveraged(v, 1)
    p = avg.predict_proba(images, seeds=seeds)
    assert p.shape == (3, num_classes + 1, 32, 32)
    assert torch.allclose(p.sum(1), torch.ones(3, 32, 32), atol=1e-5)
    as_tensor = torch.from_numpy(images).permute(0, 3, 1, 2)
    for k in (1, 4, 6):
        turned = apply_view(as_tensor, k).permute(0, 2, 3, 1).contiguous().numpy()
        assert torch.allclose(avg.predict_proba(turned, seeds=seeds), apply_view(p, k), atol=1e-5)
        # the single view is not: the test would catch a view mapped back the wrong way
        q, q_turned = single.predict_proba(images, seeds=seeds), single.predict_proba(turned, seeds=seeds)
        assert (q_turned - apply_view(q, k)).abs().max() > 1e-3
    masks = avg.predict(images, seeds=seeds)
    assert masks.dtype == np.uint8 and np.array_equal(masks, p.argmax(1).numpy())
    assert avg.predict(images[:0]).shape == (0, 32, 32)
    assert avg.predict_proba(np.zeros((0,), np.uint8)).shape == (0, num_classes + 1, 0, 0)


def test_non_square_frames_use_the_shape_keeping_views():
    v = ViewAveraged(_validator(), 8)
    images = _images(2, 32, 48)
    p = v.predict_proba(images, seed=1)
    assert p.shape == (2, 2, 32, 48)
    assert torch.allclose(p, ViewAveraged(v.inner, 4).predict_proba(images, seed=1))


def test_gate_views_setting():
    from diffaug.config import ConfigError, parse_section

    assert GateConfig().views == 8
    assert parse_section("gate", {"views": 2}).views == 2
    with pytest.raises(ConfigError):
        parse_section("gate", {"views": 3})
