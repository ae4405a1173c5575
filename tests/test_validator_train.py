"""Validator training: the objective goes down, a killed run resumes to the same weights, two classes."""

from __future__ import annotations

import pytest
import torch

from diffaug.validator.config import TrainValidatorConfig
from diffaug.validator.fit import split_train_val
from diffaug.validator.train import train_network
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
    untrained, _ = train_network(images, masks, vae, cfg, 1, seed=3, max_steps=0)
    dice = {name: float(mask_dice(Validator(n, vae).predict(images), masks).mean())
            for name, n in (("untrained", untrained), ("trained", full))}
    print("train-set Dice before / after 30 steps:", dice)
    assert dice["trained"] > dice["untrained"] + 0.1  # the objective of eq. 12 teaches segmentation

    _, part = train_network(images, masks, vae, cfg, 1, seed=3, checkpoint_dir=tmp_path / "b", max_steps=20)
    assert part.steps == 20
    resumed, info_b = train_network(images, masks, vae, cfg, 1, seed=3, checkpoint_dir=tmp_path / "b")
    assert info_b.resumed_from == 20 and info_b.steps == 30
    a, b = full.state_dict(), resumed.state_dict()
    assert a.keys() == b.keys()
    assert all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)

    # a resumed run, and a rerun on a finished checkpoint (nothing left to train), still draw the
    # whole curve: the checkpoint carries every log point
    from dvclive import Live

    for name, ckpt in (("resumed", "c"), ("finished", "c")):
        if name == "resumed":
            train_network(images, masks, vae, cfg, 1, seed=3, checkpoint_dir=tmp_path / ckpt, max_steps=20)
        with Live(dir=str(tmp_path / name), save_dvc_exp=False, dvcyaml=None, report=None) as live:
            train_network(images, masks, vae, cfg, 1, seed=3, checkpoint_dir=tmp_path / ckpt, live=live)
        import pandas as pd

        curve = pd.read_csv(tmp_path / name / "plots" / "metrics" / "train" / "loss.tsv", sep="\t")
        assert curve["step"].tolist() == [5, 10, 15, 20, 25, 30], (name, curve)

    other = cfg.model_copy(update={"lr": 1e-3})  # other params: the checkpoint is not reused
    _, info_c = train_network(images, masks, vae, other, 1, seed=3, checkpoint_dir=tmp_path / "b", max_steps=0)
    assert info_c.resumed_from == 0


def test_two_class_masks_train_and_predict():
    from diffaug.validator.inference import Validator

    images, masks = blob_data(8, seed=2, two_class=True)
    cfg = TrainValidatorConfig(**small_validator_params(steps=3, codec_steps=5))
    vae = tiny_vae()
    net, info = train_network(images, masks, vae, cfg, 2, seed=0)
    assert info.codec_recon_dice_vae is not None and info.codec_recon_dice_learned is not None
    pred = Validator(net, vae).predict(images[:2])
    assert pred.shape == (2, 32, 32) and pred.max() <= 2


def test_split_is_seeded_and_disjoint():
    tr, va = split_train_val(20, 0.2, seed=0)
    assert len(va) == 4 and len(tr) == 16 and not set(tr) & set(va)
    assert (split_train_val(20, 0.2, seed=0)[1] == va).all()
