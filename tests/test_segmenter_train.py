"""A short training run learns and is selected on validation; kill + resume; save/load round trip;
extra pairs keep real exposure; determinism."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from diffaug.config import BaseConfig
from diffaug.errors import InputError
from diffaug.runtime import resolve_runtime
from diffaug.segmenter import load_segmenter, run_name, save_segmenter, train_segmenter
from diffaug.segmenter.config import TrainSegmenterConfig
from diffaug.segmenter.data import Pairs
from diffaug.training.trainer import TrainingStopped
from tests.segmenter_support import toy_pairs

FAST = dict(channels=[8, 16], num_res_units=0, batch_size=8, lr=0.01, warmup_steps=0, eval_batch_size=16,
            eval_every=25, log_every=5)


def _dice(pred, gt):
    p, g = pred > 0, gt > 0
    return 2 * (p & g).sum() / max(1, p.sum() + g.sum())


@pytest.fixture(scope="module")
def runtime():
    return resolve_runtime(BaseConfig(device="cpu", seed=0))


@pytest.fixture(scope="module")
def data():
    train = Pairs(*toy_pairs(24, 32, seed=0))
    test = toy_pairs(12, 32, seed=1)
    return train, test


@pytest.fixture(scope="module")
def trained(data, runtime, tmp_path_factory):
    train, _ = data
    cfg = TrainSegmenterConfig(steps=75, **FAST)
    live = tmp_path_factory.mktemp("live")
    return train_segmenter(train, 2, cfg, "standard", 0.0, 0, runtime, live_dir=live), live


def test_short_run_lowers_loss_and_beats_trivial_predictors(trained, data):
    result, live = trained
    _, (test_images, test_masks) = data
    s = result.summary
    assert s["loss_last"] < 0.6 * s["loss_first"]
    pred = result.segmenter.predict(test_images)
    assert pred.shape == test_masks.shape and pred.dtype == np.uint8
    dice = _dice(pred, test_masks)
    all_lesion = _dice(np.ones_like(test_masks), test_masks)  # the best trivial predictor
    assert dice > max(0.7, all_lesion + 0.3), (dice, all_lesion)
    assert (live / "plots" / "metrics" / "train" / "loss.tsv").is_file()  # dvclive curve
    val = (live / "plots" / "metrics" / "train" / "val" / "dice.tsv").read_text().splitlines()
    assert [r.split("\t")[0] for r in val[1:]] == ["25", "50", "75"]  # validated every eval_every steps
    assert s["best_step"] in (25, 50, 75) and s["n_val"] == 5 and s["n_real"] == 19
    best = max(float(r.split("\t")[1]) for r in val[1:])
    assert s["val_dice_best"] == pytest.approx(best)


def test_kill_and_resume_gives_the_same_weights(data, runtime, tmp_path):
    from diffaug.training.trainer import TrainingStopped

    train, _ = data
    synthetic = Pairs(*toy_pairs(10, 32, seed=9), iou=np.full(10, 0.8, np.float32))
    cfg = TrainSegmenterConfig(steps=20, checkpoint_every=5, **{**FAST, "eval_every": 5})
    full = train_segmenter(train, 2, cfg, "diffaug", 1.0, 0, runtime, synthetic=synthetic,
                           checkpoints=tmp_path / "a", live_dir=tmp_path / "live_a")
    with pytest.raises(TrainingStopped):  # killed after 13 steps: the last checkpoint is at 10
        train_segmenter(train, 2, cfg, "diffaug", 1.0, 0, runtime, synthetic=synthetic,
                        checkpoints=tmp_path / "b", stop_after=13)
    assert not (tmp_path / "live_b").exists()
    resumed = train_segmenter(train, 2, cfg, "diffaug", 1.0, 0, runtime, synthetic=synthetic,
                              checkpoints=tmp_path / "b", live_dir=tmp_path / "live_b")
    assert resumed.summary["resumed_from_step"] == 10
    a, b = full.segmenter.net.state_dict(), resumed.segmenter.net.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a), "weights differ after kill + resume"
    assert resumed.summary["best_step"] == full.summary["best_step"]
    for tsv in ("train/loss.tsv", "train/val/dice.tsv"):
        assert (tmp_path / "live_b/plots/metrics" / tsv).read_text() == (tmp_path / "live_a/plots/metrics" / tsv).read_text()
    again = train_segmenter(train, 2, cfg, "diffaug", 1.0, 0, runtime, synthetic=synthetic, checkpoints=tmp_path / "b")
    assert again.summary["resumed_from_step"] == 20  # a finished run is loaded, not retrained
    assert all(torch.equal(a[k], again.segmenter.net.state_dict()[k]) for k in a)


def test_moving_average_is_what_the_run_keeps_and_survives_a_resume(data, runtime, tmp_path):
    """ema_decay: a decay near 0 gives back the trained weights (the average follows the very
    network it should, batch-norm statistics included); 0.9 gives other weights; a killed run with
    the average resumes to the weights of an unbroken one (the average is checkpointed)."""
    train, _ = data
    args = dict(steps=20, checkpoint_every=5, **{**FAST, "norm": "batch", "eval_every": 20})
    plain = train_segmenter(train, 2, TrainSegmenterConfig(**args), "standard", 0.0, 0, runtime).segmenter.net.state_dict()
    near = train_segmenter(train, 2, TrainSegmenterConfig(**args, ema_decay=1e-6), "standard", 0.0, 0,
                           runtime).segmenter.net.state_dict()
    assert all(torch.allclose(plain[k].float(), near[k].float(), atol=1e-4) for k in plain)
    cfg = TrainSegmenterConfig(**args, ema_decay=0.9)
    full = train_segmenter(train, 2, cfg, "standard", 0.0, 0, runtime, checkpoints=tmp_path / "a").segmenter.net.state_dict()
    moved = [k for k in plain if not torch.allclose(plain[k].float(), full[k].float(), atol=1e-3)]
    assert any("running_mean" in k for k in moved) and any(k.endswith("weight") for k in moved)
    with pytest.raises(TrainingStopped):
        train_segmenter(train, 2, cfg, "standard", 0.0, 0, runtime, checkpoints=tmp_path / "b", stop_after=13)
    assert (tmp_path / "b" / "run" / "ema.safetensors").is_file()
    resumed = train_segmenter(train, 2, cfg, "standard", 0.0, 0, runtime, checkpoints=tmp_path / "b")
    assert resumed.summary["resumed_from_step"] == 10
    b = resumed.segmenter.net.state_dict()
    assert all(torch.equal(full[k], b[k]) for k in full), "the moving average differs after kill + resume"


def test_select_last_keeps_the_last_step_and_val_fraction_0_trains_on_every_frame(data, runtime, tmp_path):
    """select last: the run's model is its last step's weights (the checkpoint's), while the
    validation curve is still drawn; with val_fraction 0 all frames train and nothing is
    validated; val_fraction 0 with select best is a config error."""
    from safetensors.torch import load_file

    train, _ = data
    args = dict(steps=30, checkpoint_every=30, **{**FAST, "eval_every": 10})
    best = train_segmenter(train, 2, TrainSegmenterConfig(**args), "standard", 0.0, 0, runtime,
                           checkpoints=tmp_path / "best")
    last = train_segmenter(train, 2, TrainSegmenterConfig(**args, select="last"), "standard", 0.0, 0, runtime,
                           checkpoints=tmp_path / "last", live_dir=tmp_path / "live")
    final = load_file(tmp_path / "best" / "run" / "model.safetensors")  # the best run's last step
    kept = last.segmenter.net.state_dict()
    assert all(torch.equal(kept[k], final[k]) for k in final), "select last did not keep the last step"
    assert best.summary["best_step"] < 30  # so the two runs keep different weights
    chosen = best.segmenter.net.state_dict()
    assert not all(torch.equal(chosen[k], final[k]) for k in final)
    assert last.summary["best_step"] is None and last.summary["n_val"] == 5
    val = (tmp_path / "live" / "plots" / "metrics" / "train" / "val" / "dice.tsv").read_text().splitlines()
    assert [r.split("\t")[0] for r in val[1:]] == ["10", "20", "30"]

    every = train_segmenter(train, 2, TrainSegmenterConfig(**args, select="last", val_fraction=0), "standard", 0.0,
                            0, runtime, live_dir=tmp_path / "live0")
    assert every.summary["n_real"] == 24 and every.summary["n_val"] == 0 and every.summary["val_dice_best"] is None
    assert not (tmp_path / "live0" / "plots" / "metrics" / "train" / "val").exists()
    with pytest.raises(ValueError, match="set select: last or val_fraction > 0"):
        TrainSegmenterConfig(val_fraction=0)


def test_save_load_round_trip(trained, data, tmp_path):
    result, _ = trained
    _, (test_images, _) = data
    save_segmenter(tmp_path / "run", result.segmenter.net, {"run": {"variant": "standard"}})
    # the network as diffusers writes it, the run's metadata beside it
    assert {p.name for p in (tmp_path / "run").iterdir()} == {"config.json", "diffusion_pytorch_model.safetensors",
                                                              "run.json"}
    loaded = load_segmenter(tmp_path / "run", "cpu")
    np.testing.assert_allclose(loaded.predict_proba(test_images), result.segmenter.predict_proba(test_images), atol=1e-5)
    x = torch.from_numpy(test_images[:3]).permute(0, 3, 1, 2).float() / 255
    with torch.no_grad():  # the same outputs on a fixed input, also the raw logits
        assert torch.equal(loaded.net(x), result.segmenter.net.to("cpu").eval()(x))
    assert loaded.meta["run"]["variant"] == "standard"
    assert (loaded.spec.mean, loaded.spec.std) == (result.segmenter.spec.mean, result.segmenter.spec.std)
    # other image sizes are resized to the training size and back
    assert loaded.predict(np.zeros((2, 40, 40, 3), np.uint8)).shape == (2, 40, 40)


def test_load_segmenter_bad_folder(tmp_path):
    with pytest.raises(InputError, match="no trained segmenter"):
        load_segmenter(tmp_path, "cpu")


def test_segmenter_config_with_unknown_key_is_one_line(trained, tmp_path):
    result, _ = trained
    save_segmenter(tmp_path / "run", result.segmenter.net, {"run": {"variant": "standard"}})
    file = tmp_path / "run" / "config.json"
    file.write_text(json.dumps(json.loads(file.read_text()) | {"depth": 3}))
    with pytest.raises(InputError) as info:
        load_segmenter(tmp_path / "run")
    assert str(info.value) == (f"{file}: not a SegmenterNet config (unknown keys depth); "
                               "rerun dvc repro train_segmenter")


def test_extra_pairs_keep_real_exposure_and_weights(data, runtime):
    train, _ = data
    synthetic = Pairs(*toy_pairs(10, 32, seed=9), iou=np.linspace(0.7, 0.9, 10).astype(np.float32))
    cfg = TrainSegmenterConfig(steps=6, synthetic_share=0.5, weight_by_gate_iou=True, **FAST)
    none = train_segmenter(train, 2, cfg, "none", 0.0, 0, runtime).summary
    diff = train_segmenter(train, 2, cfg, "diffaug", 2.0, 0, runtime, synthetic=synthetic).summary
    cp = train_segmenter(train, 2, cfg, "copypaste", 0.5, 0, runtime).summary
    assert none["real_exposure"] == diff["real_exposure"] == cp["real_exposure"] == 2  # 6 x 8 draws over 19 pairs
    assert none["steps"] == diff["steps"] == cp["steps"] == 6
    assert diff["n_extra"] == 10 and any("accepted 10" in w for w in diff["warnings"])  # asked 38, pool 10
    assert 0.7 <= diff["extra_weight_mean"] <= 0.9
    assert cp["n_extra"] == 10  # copypaste adds round(ratio x N_real) = 0.5 x 19, like diffaug
    # what the stage writes to the run's metrics: the request as build_extra_pairs makes it
    from diffaug.segmenter.runs import synthetic_supply

    def supply(s):
        return synthetic_supply(s["variant"], s["ratio"], s["n_real"], s["n_extra"])

    assert supply(none) == {"synthetic_requested": 0, "synthetic_used": 0, "synthetic_shortfall": False}
    assert supply(diff) == {"synthetic_requested": 38, "synthetic_used": 10, "synthetic_shortfall": True}
    assert supply(cp) == {"synthetic_requested": 10, "synthetic_used": 10, "synthetic_shortfall": False}


def test_empty_synthetic_warns_or_errors(data, runtime):
    train, _ = data
    empty = Pairs(np.zeros((0, 32, 32, 3), np.uint8), np.zeros((0, 32, 32), np.uint8))
    cfg = TrainSegmenterConfig(steps=3, **FAST)
    s = train_segmenter(train, 2, cfg, "diffaug", 1.0, 0, runtime, synthetic=empty).summary
    assert s["n_extra"] == 0 and "no accepted synthetic pairs" in s["warnings"][0]
    cfg.on_empty_synthetic = "error"
    with pytest.raises(InputError, match="no accepted synthetic pairs"):
        train_segmenter(train, 2, cfg, "diffaug", 1.0, 0, runtime, synthetic=empty)


def test_same_seed_same_weights_other_seed_differs(data, runtime):
    train, _ = data
    cfg = TrainSegmenterConfig(steps=3, **FAST)
    a = train_segmenter(train, 2, cfg, "standard", 0.0, 3, runtime).segmenter.net.state_dict()
    b = train_segmenter(train, 2, cfg, "standard", 0.0, 3, runtime).segmenter.net.state_dict()
    c = train_segmenter(train, 2, cfg, "standard", 0.0, 4, runtime).segmenter.net.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_run_names():
    assert run_name("diffaug-r3", 0) == "diffaug-r3-s0"
    assert run_name("diffaug-r0.5", 2) == "diffaug-r0.5-s2"
    assert run_name("none", 1) == "none-s1"
    assert run_name("diffaug", 0) == "diffaug-s0"
    with pytest.raises(ValueError, match="unknown variant"):
        run_name("mixup", 0)


def test_ignore_band_marks_the_background_ring_and_survives_augmentation():
    from diffaug.segmenter.augment import augment_batch
    from diffaug.segmenter.config import StandardAugmentConfig
    from diffaug.segmenter.train import IGNORE, ignore_band

    y = torch.zeros(2, 16, 16, dtype=torch.long)
    y[0, 6:9, 6:9] = 1  # a 3 x 3 lesion; the second mask is lesion-free
    band = ignore_band(y, 2)
    assert torch.equal(band[0] == 1, y[0] == 1)  # the lesion keeps its label
    ring = torch.zeros(16, 16, dtype=torch.bool)
    ring[4:11, 4:11] = True
    ring[6:9, 6:9] = False
    assert torch.equal(band[0] == IGNORE, ring)  # 7 x 7 square minus the lesion: 40 px
    assert torch.equal(band[1], y[1]) and torch.equal(ignore_band(y, 0), y)
    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    _, moved = augment_batch(x, band, StandardAugmentConfig(), torch.Generator().manual_seed(1))
    assert set(moved.unique().tolist()) <= {0, 1, IGNORE} and (moved == IGNORE).any()


def test_ignored_pixels_count_in_neither_loss_term():
    from monai.losses import DiceLoss, MaskedDiceLoss

    from diffaug.segmenter.train import IGNORE, ignore_band, per_sample_loss

    dice = DiceLoss(include_background=False, to_onehot_y=True, softmax=True, reduction="none")
    masked = MaskedDiceLoss(include_background=False, to_onehot_y=True, softmax=True, reduction="none")
    y = torch.zeros(3, 16, 16, dtype=torch.long)
    y[:, 5:10, 5:10] = 1
    logits = torch.randn(3, 2, 16, 16, generator=torch.Generator().manual_seed(0), requires_grad=True)
    plain = per_sample_loss(logits, y, 1.0, dice, masked)
    assert torch.equal(plain, per_sample_loss(logits, y, 1.0, dice))  # no IGNORE: the unmasked loss
    banded = ignore_band(y, 1)
    loss = per_sample_loss(logits, banded, 1.0, dice, masked)
    assert not torch.allclose(loss, plain)
    loss.sum().backward()
    ring = (banded == IGNORE).unsqueeze(1).expand_as(logits)
    assert logits.grad[ring].abs().max() == 0 and logits.grad[~ring].abs().max() > 0
    # by hand: CE over the kept pixels + 1 - soft Dice of the foreground over them
    keep = (banded != IGNORE).float()
    p, t = logits.detach().softmax(1)[:, 1], (banded == 1).float()
    ce = torch.nn.functional.cross_entropy(logits.detach(), banded.masked_fill(banded == IGNORE, 0), reduction="none")
    want = (ce * keep).sum((1, 2)) / keep.sum((1, 2)) + 1 - 2 * (p * t * keep).sum((1, 2)) / (
        (p * keep).sum((1, 2)) + (t * keep).sum((1, 2)))
    assert torch.allclose(loss.detach(), want, atol=1e-4)


def test_ignore_band_changes_only_the_diffaug_runs(data, runtime):
    train, _ = data
    synthetic = Pairs(*toy_pairs(10, 32, seed=9))
    base = TrainSegmenterConfig(steps=4, **FAST)
    banded = TrainSegmenterConfig(steps=4, ignore_band=2, **FAST)

    def weights(cfg, variant, ratio):
        net = train_segmenter(train, 2, cfg, variant, ratio, 0, runtime, synthetic=synthetic).segmenter.net
        return net.state_dict()

    a, b = weights(base, "standard", 0.0), weights(banded, "standard", 0.0)
    assert all(torch.equal(a[k], b[k]) for k in a)  # real pairs carry no band
    a, b = weights(base, "copypaste", 1.0), weights(banded, "copypaste", 1.0)
    assert all(torch.equal(a[k], b[k]) for k in a)  # pasted real lesions carry no band
    a, b = weights(base, "diffaug", 1.0), weights(banded, "diffaug", 1.0)
    assert not all(torch.equal(a[k], b[k]) for k in a)


def test_hard_dice_is_the_dice_of_the_argmax_ties_included():
    from diffaug.segmenter.train import hard_dice

    g = torch.Generator().manual_seed(0)
    for classes in (2, 3):
        # coarse logits so that ties between classes occur (argmax gives them to the lower class)
        logits = torch.randint(-2, 3, (6, classes, 16, 16), generator=g).float()
        target = torch.randint(0, classes, (6, 16, 16), generator=g)
        pred, gt = logits.argmax(1) > 0, target > 0
        ties = (logits[:, 1:].amax(1) == logits[:, 0]).sum()
        assert ties > 0
        expected = 2 * (pred & gt).sum().item() / (pred.sum() + gt.sum()).item()
        assert hard_dice(logits, target).item() == pytest.approx(expected, abs=1e-7)
    assert hard_dice(torch.zeros(1, 2, 4, 4), torch.zeros(1, 4, 4, dtype=torch.long)).item() == 1.0


@pytest.mark.parametrize("channels_last", [True, False])
def test_channels_last_reaches_the_convolutions_and_computes_the_same_loss(data, runtime, channels_last):
    """The layout key decides the memory format the U-Net's first convolution sees; the loss of one
    batch is the same in both layouts up to float rounding, and the weights stay NCHW-contiguous
    (checkpoints and save_pretrained store them with safetensors, which refuses strided tensors)."""
    from diffaug.segmenter.mixing import training_plan
    from diffaug.segmenter.models import SegmenterNet
    from diffaug.segmenter.train import SegmenterTask

    train, _ = data
    cfg = TrainSegmenterConfig(steps=1, channels_last=channels_last, **FAST)
    other = cfg.model_copy(update={"channels_last": not channels_last})
    torch.manual_seed(0)
    net = SegmenterNet(channels=cfg.channels, norm="batch", image_size=32).train()
    plan = training_plan(len(train), 0, 1, cfg.batch_size, 0.0, 0, 0)
    seen = []
    first = next(m for m in net.modules() if isinstance(m, torch.nn.Conv2d))
    first.register_forward_pre_hook(lambda _m, args: seen.append(args[0].is_contiguous(memory_format=torch.channels_last)))
    losses = []
    for c in (cfg, other):
        task = SegmenterTask(net, c, plan, train, None, np.zeros(0, np.float32), train, True, runtime.device)
        losses.append(task.losses(net, task.batch(0, torch.Generator().manual_seed(3)))["loss"])
    assert seen == [channels_last, not channels_last]
    assert torch.allclose(losses[0], losses[1], rtol=1e-4, atol=1e-5)
    assert all(p.is_contiguous() for p in net.parameters())


def test_activation_key_builds_the_network_and_survives_save_load(data, runtime, tmp_path):
    """`act` replaces MONAI's PReLU in every layer; the run folder's config rebuilds the same
    activation (a ReLU network has no PReLU weights, so a wrong rebuild could not load); folders
    written before the key existed lack it and are refused in one line (dvc retrains them anyway:
    the segmenter code is a dependency of every run)."""
    from diffaug.segmenter.models import SegmenterNet

    train, (test_images, _) = data
    cfg = TrainSegmenterConfig(steps=3, act="relu", **FAST)
    result = train_segmenter(train, 2, cfg, "standard", 0.0, 0, runtime)
    kinds = {type(m) for m in result.segmenter.net.modules()}
    assert torch.nn.ReLU in kinds and torch.nn.PReLU not in kinds
    save_segmenter(tmp_path / "relu", result.segmenter.net, {"run": {"variant": "standard"}})
    loaded = load_segmenter(tmp_path / "relu", "cpu")
    assert loaded.spec.act == "relu"
    np.testing.assert_allclose(loaded.predict_proba(test_images), result.segmenter.predict_proba(test_images), atol=1e-6)
    old = SegmenterNet(channels=[8, 16], image_size=32)
    save_segmenter(tmp_path / "old", old, {"run": {"variant": "standard"}})
    config = json.loads((tmp_path / "old" / "config.json").read_text())
    config.pop("act")
    (tmp_path / "old" / "config.json").write_text(json.dumps(config))
    with pytest.raises(InputError, match=r"missing keys act\); rerun dvc repro train_segmenter"):
        load_segmenter(tmp_path / "old", "cpu")
    assert any(isinstance(m, torch.nn.PReLU) for m in old.modules())  # the default stays MONAI's
    with pytest.raises(ValueError, match="act"):
        TrainSegmenterConfig(act="gelu")
