"""Validator training: the objective goes down, a killed run resumes to the same weights, two classes."""

from __future__ import annotations

import pytest
import torch

from diffaug.validator.config import TrainValidatorConfig
from diffaug.data.holdout import holdout
from diffaug.training.curves import Curves
from diffaug.training.trainer import TrainingStopped
from diffaug.validator.model import ValidatorNet
from diffaug.validator.train import model_config_from, train_network
from diffaug.validator.inference import Validator
from diffaug.validator.metrics import mask_dice
from validator_helpers import blob_data, one_thread, small_validator_params, tiny_vae  # noqa: F401

pytestmark = pytest.mark.usefixtures("one_thread")


def test_resume_gives_the_same_weights_and_loss_falls(tmp_path):
    images, masks = blob_data(16, seed=1)
    cfg = TrainValidatorConfig(**small_validator_params(steps=30, codec_steps=20, log_every=5, checkpoint_every=10))
    vae = tiny_vae()
    full, info = train_network(images, masks, vae, cfg, 1, seed=3, checkpoint_dir=tmp_path / "a")
    assert info.steps == 30 and info.resumed_from == 0
    assert info.curve[-1][1] < info.curve[0][1]  # the eq. 12 loss falls
    torch.manual_seed(3)
    untrained = ValidatorNet(**model_config_from(cfg, vae, 1))
    untrained.set_codec_scale(full.config.codec_scale)
    untrained.codec.load_state_dict(full.codec.state_dict())  # same codec: only the network differs
    dice = {name: float(mask_dice(Validator(n, vae).predict(images), masks).mean())
            for name, n in (("untrained", untrained), ("trained", full))}
    print("train-set Dice before / after 30 steps:", dice)
    assert dice["trained"] > dice["untrained"] + 0.1  # the objective of eq. 12 teaches segmentation

    with pytest.raises(TrainingStopped):  # killed after 25 steps: the last checkpoint is at 20
        train_network(images, masks, vae, cfg, 1, seed=3, checkpoint_dir=tmp_path / "b", stop_after=25)
    resumed, info_b = train_network(images, masks, vae, cfg, 1, seed=3, checkpoint_dir=tmp_path / "b")
    assert info_b.resumed_from == 20 and info_b.steps == 30
    a, b = full.state_dict(), resumed.state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), "weights differ after kill + resume"

    # a resumed run, and a rerun on a finished checkpoint (nothing left to train), still draw the
    # whole curve: the checkpoint carries every log point
    import pandas as pd

    with pytest.raises(TrainingStopped):
        train_network(images, masks, vae, cfg, 1, seed=3, checkpoint_dir=tmp_path / "c", stop_after=20)
    for name in ("resumed", "finished"):
        with Curves(tmp_path / name) as curves:
            _, info_c = train_network(images, masks, vae, cfg, 1, seed=3, checkpoint_dir=tmp_path / "c", curves=curves)
        curve = pd.read_csv(tmp_path / name / "plots" / "metrics" / "train" / "loss.tsv", sep="\t")
        assert curve["step"].tolist() == [5, 10, 15, 20, 25, 30], (name, curve)
        # the last window's losses (metrics final_*) are those of the unbroken run, loaded or not
        assert info_c.history == info.history and "lr" not in info_c.history, (name, info_c.history)

    other = cfg.model_copy(update={"lr": 1e-3})  # other params: the checkpoint is not reused
    with pytest.raises(TrainingStopped):
        train_network(images, masks, vae, other, 1, seed=3, checkpoint_dir=tmp_path / "b", stop_after=0)
    assert not (tmp_path / "b" / "network").exists()  # the foreign checkpoint was removed, none written yet


def test_two_class_masks_train_and_predict():
    from diffaug.validator.inference import Validator

    images, masks = blob_data(8, seed=2, two_class=True)
    cfg = TrainValidatorConfig(**small_validator_params(steps=3, codec_steps=5))
    vae = tiny_vae()
    net, info = train_network(images, masks, vae, cfg, 2, seed=0)
    assert info.codec_recon_dice_vae is not None and info.codec_recon_dice_learned is not None
    pred = Validator(net, vae).predict(images[:2])
    assert pred.shape == (2, 32, 32) and pred.max() <= 2


def test_holdout_keeps_sequences_whole_and_is_seeded():
    groups = [f"seq{i // 5}" for i in range(40)]  # 8 videos of 5 frames
    tr, va = holdout(groups, 0.2, seed=0)
    assert len(va) == 10 and len(tr) == 30 and not set(tr) & set(va)
    assert {groups[i] for i in va}.isdisjoint({groups[i] for i in tr})  # no video on both sides
    assert (holdout(groups, 0.2, seed=0)[1] == va).all()
    assert not (holdout(groups, 0.2, seed=1)[1] == va).all()
    tr, va = holdout([str(i) for i in range(20)], 0.2, seed=0)  # frames as their own groups
    assert len(va) == 4 and len(tr) == 16


def test_new_vae_weights_do_not_resume_an_old_validator(tmp_path):
    # the generator retrained (e.g. on unlabelled frames) gives a VAE with other weights but the
    # same config: a finished validator checkpoint trained on the old latents must not be reused
    images, masks = blob_data(8, seed=2)
    cfg = TrainValidatorConfig(**small_validator_params(steps=4, codec_steps=2, log_every=2, checkpoint_every=2))
    vae = tiny_vae()
    _, first = train_network(images, masks, vae, cfg, 1, seed=0, checkpoint_dir=tmp_path)
    _, same = train_network(images, masks, vae, cfg, 1, seed=0, checkpoint_dir=tmp_path)
    assert first.resumed_from == 0 and same.resumed_from == 4  # same inputs: loaded, not retrained
    with torch.no_grad():
        next(vae.parameters()).add_(0.01)
    _, changed = train_network(images, masks, vae, cfg, 1, seed=0, checkpoint_dir=tmp_path)
    assert changed.resumed_from == 0 and changed.steps == 4
