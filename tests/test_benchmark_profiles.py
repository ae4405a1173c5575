"""The pretrained-profile overlays stay valid against the real params models, and the
architecture-size profile code runs (tiny size) so the GPU figures in docs/gpu.md can be rerun."""

from __future__ import annotations

import shutil

import pytest
import yaml

from diffaug.config import SECTIONS, apply_overlay, load_section

OVERLAYS = ["params/sd2_inpainting_kvasir.yaml", "params/sdxl_inpainting_kvasir.yaml"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_applies_and_validates(overlay, repo_root, tmp_path):
    params = tmp_path / "params.yaml"
    shutil.copy(repo_root / "params.yaml", params)
    apply_overlay(params, repo_root / overlay)
    for section in yaml.safe_load(params.read_text()):
        load_section(params, section)  # raises ConfigError on any stale or misspelt key
    ft = load_section(params, "finetune_generator")
    assert ft.backbone in ("stabilityai/stable-diffusion-2-inpainting", "diffusers/stable-diffusion-xl-1.0-inpainting-0.1")
    assert len(ft.revision) == 40 and int(ft.revision, 16) >= 0  # a pinned commit, not a branch
    assert ft.image_size == 256 and ft.finetune_phase.lr == 1e-5 and ft.finetune_phase.batch_size == 8
    assert load_section(params, "prepare").dataset == "kvasir_seg"
    assert load_section(params, "generate").steps == 50
    assert load_section(params, "base").device == "cuda"
    overlay_sections = set(yaml.safe_load((repo_root / overlay).read_text()))
    assert overlay_sections <= set(SECTIONS)


def test_profile_runs_every_measurement_on_tiny_models():
    """The SDXL code path (two text encoders, pooled embeddings, time ids) at toy size."""
    from diffaug.benchmark.profile import measure_profile

    out = measure_profile("tiny_xl", image_size=16, batch=1, dtype="float32", steps=2, iterative_steps=2,
                          repeats=1, device="cpu")
    assert out["weights"].startswith("random") and out["device"].startswith("cpu")
    for key in ("vae_encode_samples_per_s", "generate_samples_per_s", "generate_stock_samples_per_s",
                "gate_images_per_s", "validator_single_step_samples_per_s", "segmenter_samples_per_s",
                "finetune_step_samples_per_s", "validator_latent_speedup", "validator_ms_encode",
                "validator_ms_condition", "validator_ms_denoise", "validator_ms_decode"):
        assert out[key] > 0, key
    assert out["finetune_unet_params_m"] > 0


@pytest.mark.parametrize("overlay", ["params/real_cpu.yaml", *OVERLAYS])
def test_real_data_overlays_carry_the_real_data_segmenter_recipe(overlay, repo_root, tmp_path):
    """The phantom default trains a small, mildly augmented U-Net; every real-data overlay must bring
    back the recipe measured on real frames (docs/segmenter.md), or its comparison runs undertrained."""
    params = tmp_path / "params.yaml"
    shutil.copy(repo_root / "params.yaml", params)
    default = load_section(params, "train_segmenter")
    apply_overlay(params, repo_root / overlay)
    for section in yaml.safe_load(params.read_text()):
        load_section(params, section)
    seg = load_section(params, "train_segmenter")
    assert seg.norm == "batch" and len(seg.channels) == 5 and seg.steps >= 1500
    assert (seg.augment.rotation_degrees, seg.augment.scale_min, seg.augment.scale_max) == (45, 0.7, 1.4)
    assert (seg.augment.elastic_prob, seg.augment.brightness, seg.augment.contrast, seg.augment.saturation) == (0.5, 0.3, 0.3, 0.2)
    assert (seg.augment.colour_cast, seg.augment.gamma, seg.augment.blur_prob) == (0.1, 0.3, 0.3)
    size = load_section(params, "prepare").image_size
    assert seg.augment.blur_sigma * 64 / size == 1.0  # 1 px at 64 px, scaled with the frame
    assert (default.norm, len(default.channels), default.augment.brightness) == ("instance", 3, 0.1)
    # channels-last batches: faster for the batch-norm U-Net on a CPU, slower for the phantom's
    assert not default.channels_last and (seg.channels_last or overlay != "params/real_cpu.yaml")
    # ReLU: level Dice, 10 % less time per step than MONAI's PReLU on a CPU; GPU profiles keep PReLU
    assert default.act == "prelu" and (seg.act == "relu") == (overlay == "params/real_cpu.yaml")
    assert default.ignore_band > 0 and seg.ignore_band == 0  # the band helped the phantom, not real frames
