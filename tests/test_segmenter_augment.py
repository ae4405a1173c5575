"""`standard` augmentation moves image and mask together; copy-paste pastes what its masks say."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from diffaug.segmenter.augment import affine_sampling_grid, augment_batch, elastic_offsets
from diffaug.segmenter.config import CopyPasteConfig, StandardAugmentConfig
from diffaug.segmenter.copypaste import extract_lesions, make_copypaste_set, paste
from tests.segmenter_support import toy_pairs


def _batch(two_class=False):
    images, masks = toy_pairs(8, 32, seed=3, two_class=two_class)
    # channel 0 encodes the mask exactly, so geometry on the image can be read back and compared
    images[..., 0] = np.where(masks > 0, 255, 0)
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
    return x, torch.from_numpy(masks).long()


def test_same_geometry_on_image_and_mask():
    x, y = _batch()
    cfg = StandardAugmentConfig(rotation_degrees=40, scale_min=0.8, scale_max=1.2, elastic_prob=1.0, elastic_alpha=6,
                                brightness=0, contrast=0, saturation=0)
    xa, ya = augment_batch(x, y, cfg, torch.Generator().manual_seed(0))
    assert xa.shape == x.shape and ya.shape == y.shape and ya.dtype == y.dtype
    assert not torch.equal(ya, y), "augmentation changed nothing"
    from_image = xa[:, 0] > 0.5
    from_mask = ya > 0
    inter = (from_image & from_mask).sum().item()
    union = (from_image | from_mask).sum().item()
    # bilinear image vs nearest mask differ only on edge pixels
    assert inter / union > 0.9


def test_class_indices_survive_and_seed_determines_output():
    x, y = _batch(two_class=True)
    cfg = StandardAugmentConfig(elastic_prob=1.0)
    a = augment_batch(x, y, cfg, torch.Generator().manual_seed(7))
    b = augment_batch(x, y, cfg, torch.Generator().manual_seed(7))
    c = augment_batch(x, y, cfg, torch.Generator().manual_seed(8))
    assert set(torch.unique(a[1]).tolist()) <= {0, 1, 2}
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[1], c[1])


def test_each_sample_gets_its_own_geometry_and_identity_settings_change_nothing():
    x, y = _batch()
    x, y = x[:1].repeat(6, 1, 1, 1), y[:1].repeat(6, 1, 1)  # six copies of one pair
    xa, ya = augment_batch(x, y, StandardAugmentConfig(), torch.Generator().manual_seed(1))
    assert len({tuple(m.flatten().tolist()) for m in ya}) == 6  # six different draws
    assert 0 <= xa.min() and xa.max() <= 1
    still = StandardAugmentConfig(flip_prob=0, rotation_degrees=0, scale_min=1, scale_max=1, translate=0,
                                  elastic_prob=0, brightness=0, contrast=0, saturation=0)
    xs, ys = augment_batch(x, y, still, torch.Generator().manual_seed(1))
    assert torch.equal(ys, y) and torch.allclose(xs, x, atol=1e-5)


def test_blur_is_torchvisions_gaussian_per_sample_and_sigma_0_is_the_identity():
    from torchvision.transforms.v2 import functional as TF

    from diffaug.segmenter.augment import gaussian_blur

    x, _ = _batch()
    sigma = torch.tensor([0.0, 0.5, 1.0, 1.7, 0.0, 2.5, 0.3, 1.2])
    out = gaussian_blur(x, sigma)
    r = int(np.ceil(3 * float(sigma.max())))
    for i, s in enumerate(sigma.tolist()):
        want = x[i] if s == 0 else TF.gaussian_blur(x[i], [2 * r + 1] * 2, [s, s])
        assert torch.allclose(out[i], want, atol=1e-5), f"sample {i} (sigma {s})"
    assert torch.equal(gaussian_blur(x, torch.zeros(8)), x)


def test_colour_cast_gamma_and_blur_change_colour_per_sample_not_geometry():
    x, y = _batch()
    x = x.clamp(0.05, 0.8)  # below 1 / 1.2: no gain clips
    still = dict(flip_prob=0, rotation_degrees=0, scale_min=1, scale_max=1, translate=0, elastic_prob=0,
                 brightness=0, contrast=0, saturation=0)
    g = lambda: torch.Generator().manual_seed(2)  # noqa: E731
    # off (the default): no draw, the output of the settings before these keys existed
    plain = augment_batch(x, y, StandardAugmentConfig(**still), g())
    assert torch.allclose(plain[0], x, atol=1e-5)
    cast, ycast = augment_batch(x, y, StandardAugmentConfig(**still, colour_cast=0.2), g())
    gains = (cast / x).mean(dim=(2, 3))  # (B, 3): one gain per sample and channel
    assert torch.allclose(cast, x * gains[:, :, None, None], atol=1e-4)
    assert (gains - 1).abs().max() <= 0.2 + 1e-4 and gains.std(dim=0).min() > 0.01 and torch.equal(ycast, y)
    gam, _ = augment_batch(x, y, StandardAugmentConfig(**still, gamma=0.5), g())
    exponent = (gam.log() / x.log()).mean(dim=(1, 2, 3))  # x ** gamma, one gamma per sample
    assert torch.allclose(gam, x ** exponent[:, None, None, None], atol=1e-4)
    assert ((exponent >= 1 / 1.5 - 1e-4) & (exponent <= 1.5 + 1e-4)).all() and exponent.std() > 0.05
    blur, yblur = augment_batch(x, y, StandardAugmentConfig(**still, blur_prob=0.5, blur_sigma=2.0), g())
    changed = (blur - x).abs().amax(dim=(1, 2, 3)) > 1e-3
    assert 0 < int(changed.sum()) < len(x) and torch.equal(yblur, y)  # some samples blurred, masks untouched


def test_copypaste_count_and_masks_match_pasted_pixels():
    images, masks = toy_pairs(10, 32, seed=1, two_class=True)
    cfg = CopyPasteConfig(feather_sigma=1.0)
    cp = make_copypaste_set(images, masks, 17, cfg, np.random.default_rng(0))
    assert cp.images.shape == (17, 32, 32, 3) and cp.masks.shape == (17, 32, 32)
    assert (cp.targets != cp.sources).all()  # pasted onto another image
    for k in range(17):
        target_img, target_mask = images[cp.targets[k]], masks[cp.targets[k]]
        labelled = cp.pasted[k]
        assert labelled.sum() >= 4  # one lesion per composite
        changed_mask = cp.masks[k] != target_mask
        assert not (changed_mask & ~labelled).any()  # the mask changes only where the lesion was pasted
        assert (cp.masks[k][labelled] > 0).all()  # every pasted lesion pixel carries a lesion class
        assert set(np.unique(cp.masks[k][labelled])) <= {1, 2}
        # pixels far from the paste keep the target's values (the feather is local)
        from scipy import ndimage

        near = ndimage.binary_dilation(labelled, iterations=int(np.ceil(3 * cfg.feather_sigma)) + 1)
        assert np.array_equal(cp.images[k][~near], target_img[~near])


def test_paste_alpha_threshold_is_the_mask():
    # a constant lesion on a constant background: pasted pixels >= half way to the lesion colour
    target = np.full((24, 24, 3), 40, np.uint8)
    lesion_img = np.full((6, 6, 3), 1.0, np.float32)
    lesion_mask = np.zeros((6, 6), np.uint8)
    lesion_mask[1:5, 1:5] = 1
    img, mask, labelled = paste(target, np.zeros((24, 24), np.uint8), lesion_img, lesion_mask, 9, 9, 1.5)
    half = (40 + 255) / 2
    assert labelled.sum() == 16 and np.array_equal(mask > 0, labelled)
    assert (img[..., 0][labelled] >= half - 1).all()
    assert (img[..., 0][~labelled] < half).all()


def test_extract_lesions_and_no_lesion_error():
    images, masks = toy_pairs(4, 32)
    assert len(extract_lesions(images, masks)) == 4
    with pytest.raises(ValueError, match="no lesion"):
        make_copypaste_set(images, np.zeros_like(masks), 3, CopyPasteConfig(), np.random.default_rng(0))


def test_sampling_grid_is_torchs_affine_grid():
    """The batch's sampling grid is F.affine_grid's (align_corners=False) for any matrices and shapes."""
    g = torch.Generator().manual_seed(5)
    for n, h, w in ((1, 8, 8), (6, 64, 64), (3, 16, 24)):
        theta = torch.randn(n, 2, 3, generator=g)
        want = torch.nn.functional.affine_grid(theta, [n, 3, h, w], align_corners=False)
        torch.testing.assert_close(affine_sampling_grid(theta, h, w), want, atol=1e-6, rtol=1e-5)


def test_elastic_field_only_on_the_warped_share_and_independent_of_the_others():
    """Samples not warped get exactly zero displacement; a warped sample's field is at most
    elastic_alpha px and is the same whichever other samples are warped (one draw per sample)."""
    cfg = StandardAugmentConfig(elastic_prob=0.5, elastic_alpha=3.0, elastic_spacing=16)
    off = elastic_offsets(cfg, 12, 32, 32, torch.Generator().manual_seed(1))
    moved = off.abs().amax(dim=(1, 2, 3)) > 0
    assert 0 < int(moved.sum()) < 12
    px = off * torch.tensor([32 / 2.0, 32 / 2.0])  # grid units -> px
    assert float(px.abs().max()) == pytest.approx(3.0, rel=1e-5)
    every = elastic_offsets(cfg.model_copy(update={"elastic_prob": 1.0}), 12, 32, 32, torch.Generator().manual_seed(1))
    torch.testing.assert_close(off[moved], every[moved])


def test_separable_bicubic_field_is_torchs_bicubic_interpolation():
    from diffaug.segmenter.augment import _bicubic_matrix

    coarse = torch.rand(4, 2, 5, 6, generator=torch.Generator().manual_seed(2)) * 2 - 1
    want = torch.nn.functional.interpolate(coarse, size=(64, 48), mode="bicubic", align_corners=True)
    got = torch.einsum("ia,ncab,jb->ncij", _bicubic_matrix(5, 64), coarse, _bicubic_matrix(6, 48))
    torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-5)
