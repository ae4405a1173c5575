"""The validator network (eq. 9-13), its codecs, eq. 10/11 and save/load."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch

from diffaug.errors import InputError
from diffaug.validator.codec import LearnedMaskCodec, VaeMaskCodec, probs_to_masks
from diffaug.validator.config import TrainValidatorConfig
from diffaug.validator.inference import Validator, encode_images, single_step_estimate
from diffaug.validator.metrics import mask_dice, mask_iou
from diffaug.validator.loading import load_validator, load_validator_net
from diffaug.validator.model import ValidatorNet, init_from_generator_unet, make_scheduler
from diffaug.validator.train import dihedral, model_config_from
from validator_helpers import one_thread, small_validator_params, tiny_generator_unet, tiny_vae  # noqa: F401

pytestmark = pytest.mark.usefixtures("one_thread")


def _net(num_classes=1, **kw):
    cfg = TrainValidatorConfig(**small_validator_params(**kw))
    return ValidatorNet(**model_config_from(cfg, tiny_vae(), num_classes))


def test_shapes_of_every_part():
    net = _net()
    z_a = torch.randn(3, 4, 16, 16)  # VAE latent of a 32x32 image (factor 2)
    f = net.condition(z_a)
    assert f.shape == (3, 4, 16, 16)  # fused_channels
    eps = net.denoise(f, torch.randn(3, 4, 16, 16), torch.tensor([0, 500, 999]))
    assert eps.shape == (3, 4, 16, 16)
    probs = net.codec.decode_probs(net.codec.encode(torch.zeros(3, 32, 32, dtype=torch.long)))
    assert probs.shape == (3, 2, 32, 32)
    assert torch.allclose(probs.sum(1), torch.ones(3, 32, 32), atol=1e-5)
    # a U-shaped V_psi (vision_levels > 1) keeps latent resolution, also for odd latent sizes
    deep = _net(vision_levels=3)
    assert len(deep.vision.down) == 2
    assert deep.condition(z_a).shape == (3, 4, 16, 16)
    assert deep.vision(torch.randn(2, 4, 9, 9)).shape == (2, 16, 9, 9)


def test_single_step_estimate_inverts_forward_process():
    """eq. 11 with the true noise recovers z0 exactly from eq. 10's z_t."""
    sched = make_scheduler(_net().config)
    z0, eps = torch.randn(4, 4, 8, 8), torch.randn(4, 4, 8, 8)
    t = torch.tensor([1, 250, 700, 999])
    z_t = sched.add_noise(z0, eps, t)
    assert torch.allclose(single_step_estimate(z_t, eps, sched.alphas_cumprod[t]), z0, atol=1e-3)


def test_codecs_handle_two_classes():
    masks = torch.zeros(2, 32, 32, dtype=torch.long)
    masks[:, 8:24, 8:24] = 1
    masks[:, 12:20, 12:20] = 2
    learned = LearnedMaskCodec(2, 4, [8, 16], 2, 8)
    assert learned.encode(masks).shape == (2, 4, 16, 16)
    assert learned.decode_probs(learned.encode(masks)).shape == (2, 3, 32, 32)
    vae_codec = VaeMaskCodec(tiny_vae(), 2)
    with torch.no_grad():
        probs = vae_codec.decode_probs(vae_codec.encode(masks))
    assert probs.shape == (2, 3, 32, 32)
    assert torch.allclose(probs.sum(1), torch.ones(2, 32, 32), atol=1e-5)
    assert probs_to_masks(probs).dtype == torch.uint8


def test_dihedral_moves_image_and_mask_together():
    x = torch.arange(16.0).reshape(1, 1, 4, 4)
    seen = {tuple(dihedral(x, k).flatten().tolist()) for k in range(8)}
    assert len(seen) == 8  # all 8 flips/rotations differ
    img, mask = torch.zeros(1, 3, 8, 8), torch.zeros(1, 8, 8)
    img[..., 0, 1], mask[..., 0, 1] = 1, 1
    for k in range(8):
        assert torch.equal(dihedral(img, k)[0, 0] > 0, dihedral(mask, k)[0] > 0)


def test_init_from_generator_copies_matching_encoder_tensors():
    net = _net()
    unet_state = tiny_generator_unet().state_dict()
    copied = init_from_generator_unet(net, unet_state)
    assert copied > 10
    own = net.denoiser.state_dict()
    key = "down_blocks.0.resnets.0.conv1.weight"
    assert torch.equal(own[key], unet_state[key])
    up = [k for k in own if k.startswith("up_blocks.") and k.endswith("conv1.weight") and k in unet_state
          and own[k].shape == unet_state[k].shape]
    assert up and not any(torch.equal(own[k], unet_state[k]) for k in up)  # the decoder stays from scratch


def test_save_load_round_trip(tmp_path):
    vae = tiny_vae()
    net = _net().eval()
    net.save_pretrained(tmp_path / "v")
    assert {p.name for p in (tmp_path / "v").iterdir()} == {"diffusion_pytorch_model.safetensors", "config.json"}
    loaded = load_validator(tmp_path / "v", vae)
    assert isinstance(loaded, Validator)
    images = np.random.default_rng(0).integers(0, 255, (3, 32, 32, 3), dtype=np.uint8)
    ref = Validator(net, vae).predict(images)
    out = loaded.predict(images)
    assert out.shape == (3, 32, 32) and out.dtype == np.uint8
    assert np.array_equal(ref, out)
    assert np.array_equal(out, loaded.predict(images, batch_size=2))  # batch size does not change results
    it = loaded.predict(images, mode="iterative", steps=3)
    assert it.shape == (3, 32, 32)


def test_class_decision_is_argmax_with_ties_to_the_lower_class():
    g = torch.Generator().manual_seed(0)
    for classes in (2, 3):
        probs = torch.rand(4, classes, 9, 7, generator=g).softmax(1)
        assert torch.equal(probs_to_masks(probs), probs.argmax(1).to(torch.uint8))
    tied = torch.tensor([[[[0.4]], [[0.3]], [[0.3]]], [[[0.2]], [[0.4]], [[0.4]]]])  # (2, 3, 1, 1)
    assert probs_to_masks(tied).flatten().tolist() == [0, 1]


def test_predict_is_the_class_decision_of_predict_proba():
    """`predict` decides on the device and copies back uint8 masks; same answer as deciding on
    the probabilities `predict_proba` returns, in both modes, for one and two classes."""
    vae = tiny_vae()
    images = np.random.default_rng(1).integers(0, 255, (5, 32, 32, 3), dtype=np.uint8)
    for classes in (1, 2):
        torch.manual_seed(classes)
        v = Validator(_net(num_classes=classes).eval(), vae)
        for mode in ("single_step", "iterative"):
            probs = v.predict_proba(images, mode=mode, steps=2, batch_size=2)
            masks = v.predict(images, mode=mode, steps=2, batch_size=2)
            assert masks.dtype == np.uint8 and masks.shape == (5, 32, 32)
            assert np.array_equal(masks, probs_to_masks(probs).numpy())
    assert v.predict(images[:0]).shape == (0, 32, 32)


def test_vision_encoder_runs_on_nchw_latents():
    """The VAE hands z_a on channels-last (it encodes the permuted image that way); V_psi must
    get it NCHW-contiguous, where its one-channel-per-group GroupNorm is ~8x faster on CPU.
    Checked on what V_psi receives in prediction and on a direct call; the values are unchanged."""
    vae = tiny_vae()
    images = np.random.default_rng(2).integers(0, 255, (4, 32, 32, 3), dtype=np.uint8)
    z_a = encode_images(vae, images)
    assert z_a.is_contiguous(memory_format=torch.channels_last) and not z_a.is_contiguous()
    net = _net().eval()
    seen = []
    net.vision.register_forward_pre_hook(lambda _m, args: seen.append(args[0].is_contiguous()))
    Validator(net, vae).predict(images)
    with torch.no_grad():
        f_cl = net.condition(z_a)
        f_nchw = net.condition(z_a.contiguous())
    assert seen == [True, True, True]
    assert torch.equal(f_cl, f_nchw)


def test_save_pretrained_from_pretrained_round_trip_keeps_outputs_and_codec_scale(tmp_path):
    """The codec scale is set after construction (from the training masks): it travels in the
    config and the loaded codec uses it; the network's outputs on a fixed input are the same
    (v-prediction: the eps conversion's alphas_cumprod buffer is rebuilt from the config)."""
    torch.manual_seed(0)
    net = _net(prediction_type="v_prediction").eval()
    net.set_codec_scale(2.5)
    net.save_pretrained(tmp_path / "v")
    assert json.loads((tmp_path / "v" / "config.json").read_text())["codec_scale"] == 2.5
    loaded = load_validator_net(tmp_path / "v", tiny_vae())
    assert isinstance(loaded, ValidatorNet) and not loaded.training
    assert loaded.config.codec_scale == 2.5 and loaded.codec.scale == 2.5
    g = torch.Generator().manual_seed(1)
    z_a, z_t = torch.randn(2, 4, 16, 16, generator=g), torch.randn(2, 4, 16, 16, generator=g)
    t = torch.tensor([10, 999])
    masks = torch.zeros(2, 32, 32, dtype=torch.long)
    masks[:, 8:20, 8:20] = 1
    with torch.no_grad():
        assert torch.equal(loaded(z_a, z_t, t), net(z_a, z_t, t))
        assert torch.equal(loaded.codec.encode(masks), net.codec.encode(masks))
    assert torch.equal(loaded.alphas_cumprod, net.alphas_cumprod)


@pytest.mark.parametrize("change", ["unknown", "missing"])
def test_config_with_unknown_or_missing_key_is_one_line(tmp_path, change):
    """diffusers alone would drop an unknown key and fill a missing one with its default."""
    _net().save_pretrained(tmp_path / "v")
    file = tmp_path / "v" / "config.json"
    config = json.loads(file.read_text())
    if change == "unknown":
        config["vision_width"] = 64
    else:
        del config["fused_channels"]
    file.write_text(json.dumps(config))
    with pytest.raises(InputError) as info:
        load_validator_net(tmp_path / "v")
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith(f"{file}: not a ValidatorNet config (")
    assert ("unknown keys vision_width" if change == "unknown" else "missing keys fused_channels") in msg
    assert msg.endswith("; rerun dvc repro train_validator")


def test_weights_of_another_config_are_one_line(tmp_path):
    _net().save_pretrained(tmp_path / "v")
    _net(vision_channels=8).save_pretrained(tmp_path / "w")
    weights = "diffusion_pytorch_model.safetensors"
    (tmp_path / "v" / weights).replace(tmp_path / "w" / weights)  # V_psi 16 wide, the config says 8
    with pytest.raises(InputError) as info:
        load_validator_net(tmp_path / "w")
    msg = str(info.value)
    assert "\n" not in msg and "does not fit config.json" in msg and msg.endswith("; rerun dvc repro train_validator")


def test_load_rejects_vae_with_other_latent_channels(tmp_path):
    _net().save_pretrained(tmp_path / "v")
    with pytest.raises(InputError, match="latent channels"):
        load_validator(tmp_path / "v", tiny_vae(latent_channels=8))
    with pytest.raises(InputError, match="no validator checkpoint"):
        load_validator(tmp_path / "missing", tiny_vae())


def test_iou_and_dice_values():
    a = np.zeros((4, 4, 4), np.uint8)
    b = np.zeros((4, 4, 4), np.uint8)
    a[0, :2], b[0, :2] = 1, 1  # identical -> 1
    a[1, :2], b[1, 2:] = 1, 1  # disjoint -> 0
    a[2, :2], b[2, :1] = 1, 1  # 4 of 8 -> 0.5
    # sample 3: both empty -> 1 (nothing asked, nothing found)
    assert np.allclose(mask_iou(a, b), [1, 0, 0.5, 1])
    assert np.allclose(mask_dice(a, b), [1, 0, 2 * 4 / 12, 1])
    c = np.zeros((1, 4, 4), np.uint8)
    d = np.zeros((1, 4, 4), np.uint8)
    c[0, :2], d[0, :2] = 1, 1
    c[0, 0, 0], d[0, 3, 3] = 2, 2  # cup class disagrees completely
    assert mask_iou(c, d, 2)[0] == pytest.approx((7 / 8 + 0) / 2)
    assert mask_iou(c, d, 2, "union")[0] == pytest.approx(8 / 9)


def test_predict_in_half_precision_matches_float32():
    """The gate runs the validator in base.dtype (float16 on GPUs): z_a and the noise must be cast to
    the network's dtype (a dtype mismatch used to raise here)."""
    vae = tiny_vae()
    net = _net().eval()
    images = np.random.default_rng(0).integers(0, 255, (2, 32, 32, 3), dtype=np.uint8)
    ref = Validator(net, vae).predict_proba(images)
    try:
        half = Validator(copy.deepcopy(net).half(), copy.deepcopy(vae), dtype=torch.float16)
        out = half.predict_proba(images)
        it = half.predict(images, mode="iterative", steps=2)
    except NotImplementedError as exc:  # an old CPU build without float16 kernels
        pytest.skip(f"no float16 kernels on this device: {exc}")
    assert out.dtype == torch.float32 and out.shape == ref.shape
    assert (out - ref).abs().max() < 0.05
    assert it.shape == (2, 32, 32)
