"""`train_segmenter.architecture: latent`: the validator's latent single-step network as the
downstream segmenter. It is the validator's network (same predictions when started from it),
learns, keeps the VAE encoder and mask codec frozen, and a run folder loads on its own."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from diffaug.cli import app
from diffaug.config import BaseConfig
from diffaug.errors import InputError
from diffaug.runtime import resolve_runtime
from diffaug.segmenter import load_segmenter, save_segmenter, train_segmenter
from diffaug.segmenter.config import TrainSegmenterConfig
from diffaug.segmenter.data import Pairs
from diffaug.segmenter.latent import LatentParts, init_latent_network, latent_config
from diffaug.segmenter.models import SegmenterNet
from diffaug.validator.config import TrainValidatorConfig
from diffaug.validator.inference import Validator
from diffaug.validator.train import train_network
from tests.segmenter_support import toy_pairs, write_gated, write_prepared
from validator_helpers import one_thread, save_generator, small_validator_params, tiny_generator_unet, tiny_vae  # noqa: F401

pytestmark = pytest.mark.usefixtures("one_thread")
LATENT = dict(architecture="latent", batch_size=8, eval_batch_size=16, warmup_steps=0, eval_every=12, log_every=6, latent={"lr": 3e-3})


@pytest.fixture(scope="module")
def parts(one_thread):
    images, masks = toy_pairs(24, 32, seed=0)
    vae = tiny_vae()
    cfg = TrainValidatorConfig(**small_validator_params(steps=30, codec_steps=40))
    net, _ = train_network(images, masks, vae, cfg, 1, seed=0)
    return LatentParts(vae=vae, validator=net, unet_state=tiny_generator_unet().state_dict())


@pytest.fixture(scope="module")
def runtime():
    return resolve_runtime(BaseConfig(device="cpu", seed=0))


def latent_net(parts, init, noise_seed=0):
    """The latent network as train_segmenter builds it: a SegmenterNet's body, given the parts' weights."""
    net = SegmenterNet(architecture="latent", num_classes=2, image_size=32, mean=[0.5] * 3, std=[0.5] * 3,
                       latent=latent_config(parts, noise_seed))
    return init_latent_network(net.body, parts, init)


def test_started_from_the_validator_it_predicts_what_the_validator_predicts(parts):
    images, _ = toy_pairs(6, 32, seed=3)
    net = latent_net(parts, "validator", noise_seed=7).eval()
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1
    with torch.no_grad():
        ours = net(x).softmax(1)
    theirs = Validator(parts.validator, parts.vae).predict_proba(images, "single_step", seed=7)
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-4)
    scratch = latent_net(parts, "scratch")
    # scratch: fresh network, but the same frozen VAE encoder and mask codec
    assert not torch.equal(scratch.net.fusion.proj[0].weight, parts.validator.fusion.proj[0].weight)
    torch.testing.assert_close(scratch.net.codec.decoder[-1].weight, parts.validator.codec.decoder[-1].weight)
    torch.testing.assert_close(scratch.vae.encoder.conv_in.weight, parts.vae.encoder.conv_in.weight)


def test_latent_run_learns_keeps_frozen_parts_and_round_trips(parts, runtime, tmp_path):
    train = Pairs(*toy_pairs(24, 32, seed=0))
    test_images, test_masks = toy_pairs(12, 32, seed=1)
    cfg = TrainSegmenterConfig(steps=36, **LATENT)
    result = train_segmenter(train, 2, cfg, "standard", 0.0, 0, runtime, latent_parts=parts)
    s, seg = result.summary, result.segmenter
    assert seg.spec.architecture == "latent" and s["steps"] == 36
    assert s["loss_last"] < 0.8 * s["loss_first"], s
    pred = seg.predict(test_images)
    p, g = pred > 0, test_masks > 0
    dice = 2 * (p & g).sum() / (p.sum() + g.sum())
    all_lesion = 2 * g.sum() / (g.size + g.sum())  # the best trivial predictor
    print(f"\nlatent toy run: loss {s['loss_first']:.3f} -> {s['loss_last']:.3f}, Dice {dice:.2f} (all-lesion {all_lesion:.2f})")
    assert dice > all_lesion + 0.15, (dice, all_lesion)
    # the VAE encoder and the mask codec did not move; the rest did
    torch.testing.assert_close(seg.net.body.vae.encoder.conv_in.weight, parts.vae.encoder.conv_in.weight)
    torch.testing.assert_close(seg.net.body.net.codec.decoder[-1].weight, parts.validator.codec.decoder[-1].weight)
    # a run folder loads without the generator or the validator, with equal predictions
    save_segmenter(tmp_path / "run", seg.net, {"run": {"variant": "standard"}})
    loaded = load_segmenter(tmp_path / "run")
    np.testing.assert_allclose(loaded.predict_proba(test_images), seg.predict_proba(test_images), atol=1e-5)
    x = torch.from_numpy(test_images[:2]).permute(0, 3, 1, 2).float() / 127.5 - 1
    with torch.no_grad():  # same logits on a fixed input; the codec scale set after construction came along
        torch.testing.assert_close(loaded.net(x), seg.net.cpu().eval()(x), atol=1e-5, rtol=1e-4)
    assert loaded.net.body.net.codec.scale == parts.validator.codec.scale != 1.0
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["latent"]["validator"]["num_classes"] == 1
    assert config["latent"]["validator"]["codec_scale"] == parts.validator.config.codec_scale
    # an unknown key in the nested validator config is a one-line error too
    config["latent"]["validator"]["extra_width"] = 8
    (tmp_path / "run" / "config.json").write_text(json.dumps(config))
    with pytest.raises(InputError) as info:
        load_segmenter(tmp_path / "run")
    assert str(info.value) == (f"{tmp_path / 'run' / 'config.json'} (latent) validator: not a ValidatorNet config "
                               "(unknown keys extra_width); rerun dvc repro train_segmenter")


def test_latent_needs_matching_parts(parts, runtime):
    train = Pairs(*toy_pairs(8, 32, seed=0))
    cfg = TrainSegmenterConfig(steps=3, **LATENT)
    with pytest.raises(InputError, match="needs the generator VAE and the trained validator"):
        train_segmenter(train, 2, cfg, "none", 0.0, 0, runtime)
    other = LatentParts(vae=tiny_vae(latent_channels=8), validator=parts.validator)
    with pytest.raises(InputError, match="does not belong to this generator's VAE"):
        latent_config(other)


def test_cli_latent_run_and_missing_validator(parts, tmp_path, write_params):
    prepared = write_prepared(tmp_path / "prepared", n_train=16, size=32)
    gated = write_gated(tmp_path / "gated", n=4, size=32)
    generator = save_generator(tmp_path / "generator")
    parts.vae.save_pretrained(tmp_path / "generator" / "vae")  # the VAE the validator was trained with
    parts.validator.save_pretrained(tmp_path / "validator")
    params = write_params({"base": {"seed": 0, "device": "cpu"},
                           "train_segmenter": {"steps": 3, "warmup_steps": 0, "architecture": "latent", "batch_size": 8}})
    runner = CliRunner()
    common = ["train_segmenter", "--params", str(params), "--run", "diffaug", "--prepared", str(prepared),
              "--gated", str(gated), "--generator", str(generator)]
    out = tmp_path / "seg"
    res = runner.invoke(app, [*common, "--validator", str(tmp_path / "validator"), "--out", str(out),
                              "--metrics", str(tmp_path / "m.json"), "--timings", str(tmp_path / "t.json")])
    assert res.exit_code == 0, res.output
    assert load_segmenter(out).predict(np.zeros((2, 32, 32, 3), np.uint8)).shape == (2, 32, 32)
    missing = tmp_path / "seg-missing"
    res = runner.invoke(app, [*common, "--validator", str(tmp_path / "nope"), "--out", str(missing),
                              "--metrics", str(tmp_path / "m2.json"), "--timings", str(tmp_path / "t2.json")])
    assert res.exit_code == 1
    assert "no validator checkpoint" in res.output and "Traceback" not in res.output
    assert not missing.exists() and not (tmp_path / "m2.json").exists()


def test_two_class_masks(runtime):
    """Disc + cup style masks: the validator's codec and the latent segmenter handle two classes."""
    from diffaug.validator.metrics import mask_dice

    images, masks = toy_pairs(24, 32, seed=0, two_class=True)
    vae = tiny_vae()
    net, _ = train_network(images, masks, vae, TrainValidatorConfig(**small_validator_params(steps=30, codec_steps=40)),
                           2, seed=0)
    cfg = TrainSegmenterConfig(steps=36, **LATENT)
    result = train_segmenter(Pairs(images, masks), 3, cfg, "standard", 0.0, 0, runtime,
                             latent_parts=LatentParts(vae=vae, validator=net))
    test_images, test_masks = toy_pairs(12, 32, seed=1, two_class=True)
    pred = result.segmenter.predict(test_images)
    assert set(np.unique(pred)) == {0, 1, 2}
    assert mask_dice(pred, test_masks, 2).mean() > 0.4  # measured 0.68
