"""Generator models: tiny build, save/load round trip, validation of bad folders, the pretrained
(CLIP) backbone path through the real from_pretrained code, and the eq. 7 loss."""

from __future__ import annotations

import json

import pytest
import torch

from diffaug.config import parse_section
from diffaug.errors import InputError
from diffaug.generator.losses import inpainting_loss, random_masks
from diffaug.generator.models import build_backbone, latent_mask, load_generator, save_generator
from diffaug.generator.text import load_text_encoder, minilm_path
from diffaug.imaging import pixels_to_signed, to_model_space
from diffaug.latents import decode_latents, encode_latents
from generator_support import TINY


@pytest.fixture(scope="module")
def tiny_gen():
    cfg = parse_section("finetune_generator", TINY)
    return build_backbone(cfg, 32)


def test_minilm_text_encoder_caches_and_has_meaning():
    text = load_text_encoder({"kind": "minilm", "max_length": 12})
    assert text.dim == 384
    e = text.encode(["small sessile polyp", "", "small sessile polyp"])
    assert e.shape == (3, 12, 384)
    assert torch.equal(e[0], e[2]) and len(text._cache) == 2
    # a real pretrained encoder: related prompts are closer than unrelated ones (mean pooled)
    a, b, c = text.encode(["small polyp", "tiny polyp", "the stock market fell"]).mean(1)
    cos = torch.nn.functional.cosine_similarity
    assert cos(a, b, dim=0) > cos(a, c, dim=0)


def test_tiny_roundtrip(tiny_gen, tmp_path):
    gen = tiny_gen
    assert gen.unet.config.in_channels == 9 and gen.unet.config.cross_attention_dim == 384
    assert gen.vae_scale_factor == 2
    gen.meta.update(family="polyp", image_size=32)
    save_generator(gen, tmp_path / "gen")
    assert (tmp_path / "gen/unet/diffusion_pytorch_model.safetensors").is_file()
    loaded = load_generator(tmp_path / "gen")
    assert loaded.meta["text_encoder"]["kind"] == "minilm" and loaded.meta["family"] == "polyp"
    for k, v in gen.unet.state_dict().items():
        assert torch.equal(v, loaded.unet.state_dict()[k])
    from diffusers import AutoencoderKL, UNet2DConditionModel

    UNet2DConditionModel.from_pretrained(tmp_path / "gen/unet")
    AutoencoderKL.from_pretrained(tmp_path / "gen/vae")


def _edit_config(path, **changes):
    cfg = json.loads(path.read_text())
    cfg.update(changes)
    path.write_text(json.dumps(cfg))


def test_bad_generator_folders(tiny_gen, tmp_path):
    with pytest.raises(InputError, match="generator folder not found"):
        load_generator(tmp_path / "nope")
    save_generator(tiny_gen, tmp_path / "g4")
    _edit_config(tmp_path / "g4/unet/config.json", in_channels=4)
    with pytest.raises(InputError) as exc:
        load_generator(tmp_path / "g4")
    assert "unet/config.json" in str(exc.value) and "in_channels is 4" in str(exc.value)
    save_generator(tiny_gen, tmp_path / "gl")
    _edit_config(tmp_path / "gl/vae/config.json", latent_channels=3)
    with pytest.raises(InputError, match="latent_channels 3 do not match"):
        load_generator(tmp_path / "gl")


def test_pixel_range_and_scaled_latents(tiny_gen):
    """uint8 -> [-1, 1] channels first; z = E(x) · s with s from the VAE config, D(z / s)."""
    import numpy as np

    images = np.stack([np.zeros((32, 32, 3), np.uint8), np.full((32, 32, 3), 255, np.uint8)])
    images[0, 0, 0] = (0, 51, 255)
    x = to_model_space(images[:, ::-1])  # a flipped (negative-stride) view is fine
    assert x.shape == (2, 3, 32, 32) and x.dtype == torch.float32
    assert x[0, :, -1, 0].tolist() == pytest.approx([-1.0, 51 / 127.5 - 1, 1.0]) and (x[1] == 1).all()
    assert torch.equal(pixels_to_signed(torch.from_numpy(images)).permute(0, 3, 1, 2), to_model_space(images))
    vae = tiny_gen.vae.eval()
    vae.register_to_config(scaling_factor=0.25)
    try:
        with torch.no_grad():
            z = encode_latents(vae, x)
            assert torch.equal(z, vae.encode(x).latent_dist.mean * 0.25)  # the posterior mean, scaled
            assert encode_latents(vae, x, torch.float64).dtype == torch.float64  # cast before the scaling
            assert torch.equal(decode_latents(vae, z), vae.decode(z / 0.25).sample)
    finally:
        vae.register_to_config(scaling_factor=1.0)


def test_inpainting_loss_terms():
    torch.manual_seed(0)
    noise = torch.randn(2, 4, 8, 8)
    z0 = torch.randn(2, 4, 8, 8)
    a = torch.tensor([0.9, 0.3])
    z_t = a.sqrt().view(-1, 1, 1, 1) * z0 + (1 - a).sqrt().view(-1, 1, 1, 1) * noise
    m = torch.zeros(2, 1, 8, 8)
    m[..., 2:5, 2:5] = 1
    loss, parts = inpainting_loss(noise.clone(), noise, z_t, z0, m, a, 1.0, 5.0)
    assert loss.item() < 1e-9  # perfect prediction: inside and preserved outside
    pred = noise.clone().requires_grad_(True)
    bad = pred + 1.0 * (1 - m)  # wrong only outside the mask
    loss, parts = inpainting_loss(bad, noise, z_t, z0, m, a, 1.0, 5.0)
    assert parts["masked_noise"].item() < 1e-9 and parts["preserve"].item() > 0.1
    loss.backward()
    assert pred.grad[(1 - m).bool().expand_as(pred)].abs().sum() > 0  # the preservation term has a gradient


def test_inpainting_loss_v_prediction_perfect_is_zero():
    from diffaug.generator.models import train_scheduler

    sched = train_scheduler(100, "v_prediction")
    z0, noise = torch.randn(2, 4, 8, 8), torch.randn(2, 4, 8, 8)
    t = torch.tensor([3, 90])
    z_t = sched.add_noise(z0, noise, t)
    v = sched.get_velocity(z0, noise, t)
    m = (torch.rand(2, 1, 8, 8) > 0.5).float()
    loss, _ = inpainting_loss(v, v, z_t, z0, m, sched.alphas_cumprod[t], 1.0, 5.0, prediction_type="v_prediction")
    assert loss.item() < 1e-8


def test_random_and_latent_masks():
    g1, g2 = torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)
    a, b = random_masks(4, 32, g1), random_masks(4, 32, g2)
    assert torch.equal(a, b) and a.shape == (4, 1, 32, 32)
    frac = a.mean((1, 2, 3))
    assert (frac > 0.005).all() and (frac < 0.6).all()
    m = torch.zeros(1, 1, 32, 32)
    m[..., 5, 5] = 1  # a one-pixel lesion survives downsampling
    assert latent_mask(m, 4).sum() == 1


def _write_pretrained_inpainting(folder):
    """A tiny SD-style inpainting checkpoint saved by diffusers' own pipeline save_pretrained."""
    from diffusers import AutoencoderKL, DDPMScheduler, StableDiffusionInpaintPipeline, UNet2DConditionModel
    from transformers import AutoTokenizer, CLIPTextConfig, CLIPTextModel

    tok = AutoTokenizer.from_pretrained(minilm_path())  # offline tokenizer; CLIP vocab size matches it
    tok.model_max_length = 10
    text = CLIPTextModel(CLIPTextConfig(vocab_size=tok.vocab_size, hidden_size=32, intermediate_size=37,
                                        num_hidden_layers=2, num_attention_heads=4, max_position_embeddings=16))
    vae = AutoencoderKL(block_out_channels=(8, 16), down_block_types=("DownEncoderBlock2D",) * 2,
                        up_block_types=("UpDecoderBlock2D",) * 2, latent_channels=4, norm_num_groups=4, sample_size=32)
    unet = UNet2DConditionModel(sample_size=16, in_channels=9, out_channels=4, block_out_channels=(16, 32),
                                down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                                up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), layers_per_block=1,
                                cross_attention_dim=32, attention_head_dim=4, norm_num_groups=8)
    pipe = StableDiffusionInpaintPipeline(vae=vae, text_encoder=text, tokenizer=tok, unet=unet,
                                          scheduler=DDPMScheduler(num_train_timesteps=100), safety_checker=None,
                                          feature_extractor=None, requires_safety_checker=False)
    pipe.save_pretrained(folder, safe_serialization=True)
    return folder


def test_pretrained_backbone_loads_through_from_pretrained(tmp_path):
    folder = _write_pretrained_inpainting(tmp_path / "sd-inpaint")
    cfg = parse_section("finetune_generator", {"backbone": str(folder), "train_vae": False, "pretrain_unet": False})
    gen = build_backbone(cfg, 32)
    assert gen.text.kind == "clip" and gen.text.dim == 32
    assert gen.text.encode(["flat lesion", ""]).shape == (2, 10, 32)
    save_generator(gen, tmp_path / "out")
    loaded = load_generator(tmp_path / "out")
    assert loaded.text.kind == "clip" and (tmp_path / "out/text_encoder/config.json").is_file()
    assert torch.equal(loaded.text.encode(["flat lesion"]), gen.text.encode(["flat lesion"]))
    assert torch.equal(gen.text.encode(["flat lesion"]), gen.text.encode(["x", "flat lesion"])[1:])


def test_pretrained_backbone_rejects_non_inpainting(tmp_path):
    folder = _write_pretrained_inpainting(tmp_path / "sd")
    _edit_config(folder / "unet/config.json", in_channels=4)
    cfg = parse_section("finetune_generator", {"backbone": str(folder)})
    with pytest.raises(InputError, match="in_channels is 4"):
        build_backbone(cfg, 32)
    cfg = parse_section("finetune_generator", {"backbone": str(tmp_path / "missing")})
    with pytest.raises(InputError, match="backbone checkpoint folder not found"):
        build_backbone(cfg, 32)


def test_sdxl_style_backbone_two_encoders_pooled_and_time_ids(tmp_path):
    """SDXL inpainting layout: text_encoder + text_encoder_2 (with projection), UNet with
    addition_embed_type text_time; the same code path encodes and runs one denoiser call."""
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, UNet2DConditionModel
    from transformers import AutoTokenizer, CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    folder = tmp_path / "sdxl"
    tok = AutoTokenizer.from_pretrained(minilm_path())
    tok.model_max_length = 10
    c1 = CLIPTextConfig(vocab_size=tok.vocab_size, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                        num_attention_heads=2, max_position_embeddings=16)
    c2 = CLIPTextConfig(vocab_size=tok.vocab_size, hidden_size=24, intermediate_size=32, num_hidden_layers=2,
                        num_attention_heads=2, max_position_embeddings=16, projection_dim=12)
    CLIPTextModel(c1).save_pretrained(folder / "text_encoder")
    CLIPTextModelWithProjection(c2).save_pretrained(folder / "text_encoder_2")
    tok.save_pretrained(folder / "tokenizer")
    tok.save_pretrained(folder / "tokenizer_2")
    AutoencoderKL(block_out_channels=(8, 16), down_block_types=("DownEncoderBlock2D",) * 2,
                  up_block_types=("UpDecoderBlock2D",) * 2, latent_channels=4, norm_num_groups=4).save_pretrained(folder / "vae")
    UNet2DConditionModel(sample_size=16, in_channels=9, out_channels=4, block_out_channels=(16, 32),
                         down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                         up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), layers_per_block=1,
                         cross_attention_dim=40, attention_head_dim=4, norm_num_groups=8,
                         addition_embed_type="text_time", addition_time_embed_dim=8,
                         projection_class_embeddings_input_dim=12 + 6 * 8).save_pretrained(folder / "unet")
    EulerDiscreteScheduler(num_train_timesteps=100).save_pretrained(folder / "scheduler")
    cfg = parse_section("finetune_generator", {"backbone": str(folder)})
    gen = build_backbone(cfg, 32)
    assert gen.text.kind == "sdxl" and gen.text.dim == 40 and gen.text.pooled_dim == 12
    prompts = ["flat lesion", ""]
    ctx = gen.text.encode(prompts)
    added = gen.added_cond_kwargs(prompts, 32, 32)
    assert ctx.shape == (2, 10, 40) and added["text_embeds"].shape == (2, 12) and added["time_ids"].shape == (2, 6)
    out = gen.unet(torch.randn(2, 9, 16, 16), torch.tensor([5, 50]), encoder_hidden_states=ctx, added_cond_kwargs=added)
    assert out.sample.shape == (2, 4, 16, 16)
    save_generator(gen, tmp_path / "out")
    assert load_generator(tmp_path / "out").text.kind == "sdxl"
