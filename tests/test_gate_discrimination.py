"""The gate discriminates. Synthetic pairs are built on phantom frames whose lesion
is clearly painted (large, raised, recoloured: prepare.phantom.small_share = flat_share = 0): a
right pair is a frame with the mask of its painted lesion, a wrong pair the same frame with the
mask moved away from it. A validator trained on the phantom training frames, over the latent
space of a generator VAE trained by `finetune_generator`'s VAE phase, must accept most right pairs
and reject most wrong ones at the default threshold (0.7).

The hard cases of the default phantom mix (small and flat lesions) are measured by
`train_validator` itself (`disc_accept_right_<th>_<size>`; docs/validator.md): there the gate
rejects most right pairs too, which is why this test paints conspicuous lesions."""

from __future__ import annotations

import numpy as np
import pytest

from diffaug.validator.config import GateConfig, TrainValidatorConfig
from diffaug.validator.discrimination import auc, moved_away
from diffaug.validator.train import train_network
from generate_support import TINY_GEN, make_prepared
from validator_helpers import one_thread, small_validator_params  # noqa: F401

pytestmark = pytest.mark.usefixtures("one_thread")
SIZE = 32
# Data, VAE and validator seed. Measured right pairs accepted at theta 0.7 for seeds 0 / 1 / 2:
# 0.52 / 0.60 / 0.69 (moved pairs rejected 1.00 each, AUC 0.97-1.00); 1 is the middle one.
# Those were one view; with the gate's default 8 views seed 1 gives 0.65 (AUC 1.00).
SEED = 1


@pytest.fixture(scope="module")
def prepared(tmp_path_factory, one_thread):
    root = tmp_path_factory.mktemp("disc") / "prepared"
    return make_prepared(root, size=SIZE, normals=4, train=96, test=48, seed=SEED, small_share=0.0, flat_share=0.0)


@pytest.fixture(scope="module")
def vae(prepared):
    """The generator's VAE after its own training phase (a) on these frames (400 steps; the
    U-Net phases are skipped: the gate uses only the VAE). A random VAE's 4-channel latent
    keeps too little of the lesion cues: with one, 80 validator steps and 48 mixed-difficulty
    frames this test accepted 4 % of right pairs."""
    from diffaug.config import BaseConfig, parse_section
    from diffaug.generator.stage_finetune_generator import run_finetune_generator
    from diffaug.generator.models import load_generator

    root = prepared.parent
    cfg = parse_section("finetune_generator", {
        **TINY_GEN, "vae": {"block_out_channels": [16, 32], "norm_num_groups": 8, "latent_channels": 4},  # f = 2: 16x16
        "checkpoint_every": 1000, "vae_phase": {"steps": 400, "batch_size": 8, "lr": 2e-3},
        "pretrain_unet": False, "finetune_phase": {"steps": 0, "lr": 1e-3}})
    run_finetune_generator(cfg, BaseConfig(seed=SEED, device="cpu"), prepared, root / "generator", root / "ckpt",
                           root / "live", root / "generator.json")
    return load_generator(root / "generator").vae


@pytest.fixture(scope="module")
def validator(prepared, vae):
    from diffaug.data.prepared import load_split
    from diffaug.validator.inference import Validator

    train = load_split(prepared, "train")
    cfg = TrainValidatorConfig(**small_validator_params(steps=800, codec_steps=40, batch_size=16, lr=3e-3))
    net, _ = train_network(train.images, train.masks, vae, cfg, 1, seed=SEED)
    return Validator(net, vae)


def test_gate_accepts_right_masks_and_rejects_moved_ones(prepared, validator, tmp_path):
    from diffaug.data.prepared import load_split
    from diffaug.validator.gate import gate_samples

    from test_gate_cli import _write_raw

    test = load_split(prepared, "test")
    keep = (test.masks > 0).sum((1, 2)) > 0
    images, masks = test.images[keep], test.masks[keep]
    n = len(images)
    assert n >= 40
    _write_raw(tmp_path / "raw", np.concatenate([images, images]), np.concatenate([masks, moved_away(masks)]))
    report = gate_samples(tmp_path / "raw", validator, GateConfig())  # default threshold 0.7
    acc = report.accepted
    right, wrong = acc[:n].mean(), 1 - acc[n:].mean()
    iou = report.manifest["iou"].to_numpy()
    score = auc(iou[:n], iou[n:])
    print(f"\nphantom gate (theta {GateConfig().threshold}): right pairs accepted {right:.2f} (IoU mean "
          f"{iou[:n].mean():.2f}, quartiles {np.quantile(iou[:n], [0.25, 0.5, 0.75]).round(2)}); moved pairs "
          f"rejected {wrong:.2f} (IoU mean {iou[n:].mean():.2f}, max {iou[n:].max():.2f}); AUC {score:.2f}; n = {n} each")
    assert right > 0.5  # most right pairs pass the gate
    assert wrong >= 0.95  # moved masks are rejected
    assert score >= 0.9  # a right pair outscores a moved one almost always


@pytest.fixture(scope="module")
def small_prepared(tmp_path_factory, one_thread):
    """Phantom frames whose lesions are all small (clearly painted: not flat)."""
    root = tmp_path_factory.mktemp("disc_small") / "prepared"
    return make_prepared(root, size=SIZE, normals=4, train=96, test=48, seed=SEED, small_share=1.0, flat_share=0.0)


def test_gate_checks_small_lesions_zoomed(small_prepared, vae, tmp_path):
    """Small lesions (docs/zoom.md): a validator trained with zoomed windows, and the gate checking
    each small lesion in its window, accepts most right small pairs and rejects their masks moved away."""
    from diffaug.data.prepared import load_split
    from diffaug.validator.gate import gate_samples
    from diffaug.validator.inference import Validator
    from diffaug.validator.views import with_views
    from diffaug.zoom import ZoomConfig, window_for

    from test_gate_cli import _write_raw

    zoom = ZoomConfig(context=1.6, min_side=8, train_windows=3)
    train, test = load_split(small_prepared, "train"), load_split(small_prepared, "test")
    cfg = TrainValidatorConfig(**small_validator_params(steps=1500, codec_steps=40, batch_size=16, lr=3e-3))
    net, info = train_network(train.images, train.masks, vae, cfg, 1, seed=SEED, zoom=zoom)
    assert info.n_pairs > 2 * len(train.images)  # the zoomed windows joined the training pairs
    validator = Validator(net, vae)
    keep = (test.masks > 0).sum((1, 2)) > 0
    images, masks = test.images[keep], test.masks[keep]
    moved = moved_away(masks)
    n = len(images)
    both = np.concatenate([masks, moved])
    wins = np.array([window_for(m > 0, zoom) for m in both])
    assert (wins[:n, 2] > 0).mean() > 0.8  # nearly every right pair is zoomed
    results = {}
    for name, w, views in (("zoomed", wins, 1), ("full frame", np.zeros_like(wins), 1), ("zoomed, 8 views", wins, 8)):
        _write_raw(tmp_path / name, np.concatenate([images, images]), both, windows=w)
        report = gate_samples(tmp_path / name, with_views(validator, views), GateConfig(views=views))
        results[name] = (report.accepted[:n].mean(), 1 - report.accepted[n:].mean(), report.manifest["iou"][:n].mean())
    print(f"\nsmall phantom lesions, gate at theta 0.7 (right accepted, moved rejected): {results}; n = {n} each")
    # measured (seed 1): zoomed 42 % accepted (IoU mean 0.60), moved 98 % rejected; full frame 0 %
    # (IoU 0.04); zoomed with 8 views 50 % (IoU 0.62), moved 100 % rejected. With AdamW's fused
    # kernel (other rounding, other weights): zoomed 40 % (19 of 48, IoU 0.60), 8 views 46 %, moved
    # 98 % / 96 % rejected; the bound leaves room for a couple of pairs either way
    right, wrong, _ = results["zoomed"]
    assert right >= 0.35
    assert wrong >= 0.95
    assert right > results["full frame"][0] + 0.3  # zoom is what lets them through
    right8, wrong8, _ = results["zoomed, 8 views"]
    assert right8 >= right and wrong8 >= 0.95  # the views lift right pairs without letting moved ones in

