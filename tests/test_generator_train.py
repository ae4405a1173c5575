"""finetune_generator training: three phases end to end through the CLI, exact resume after a
simulated kill, bad inputs (one line, non-zero exit, no partial output)."""

from __future__ import annotations

import json

import pytest
from safetensors.torch import load_file
from typer.testing import CliRunner

from diffaug.cli import app
from diffaug.config import BaseConfig, parse_section
from diffaug.generator.stage_finetune_generator import run_finetune_generator
from generator_support import TINY, write_prepared

runner = CliRunner()


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    return write_prepared(tmp_path_factory.mktemp("prep") / "prepared")


def _params(write_params, **overrides):
    section = {**TINY, **overrides}
    return write_params({"base": {"seed": 3, "device": "cpu"}, "finetune_generator": section})


def _cli(params, prepared, root, name):
    return runner.invoke(app, [
        "finetune_generator", "--params", str(params), "--prepared", str(prepared),
        "--out", str(root / f"{name}_gen"), "--checkpoints", str(root / f"{name}_ck"),
        "--live", str(root / f"{name}_live"), "--metrics", str(root / f"{name}.json"),
        "--timings", str(root / f"{name}_timings.json"),
    ])


def test_kill_and_resume_gives_identical_weights(prepared, tmp_path, write_params):
    params = _params(write_params)
    full = _cli(params, prepared, tmp_path, "full")
    assert full.exit_code == 0, full.output
    metrics = json.loads((tmp_path / "full.json").read_text())
    timings = json.loads((tmp_path / "full_timings.json").read_text())
    assert timings["steps_run"] == 12 and timings["resumed_from_step"] == 0
    assert metrics["vae_psnr"] > 5 and metrics["finetune_final_loss"] is not None
    # wall-clock time and how the call ran go to their own file, so `dvc metrics diff` compares
    # results only (a finished run loaded writes the same metrics file as the run that trained)
    assert not {"seconds", "steps_run", "resumed_from_step"} & set(metrics)
    assert sorted(timings) == ["resumed_from_step", "seconds", "steps_run"]
    meta = json.loads((tmp_path / "full_gen/diffaug_generator.json").read_text())
    assert meta["family"] == "polyp" and meta["image_size"] == 32 and meta["text_encoder"]["kind"] == "minilm"
    assert "polyp" in meta["prompts"]
    tsvs = sorted(p.name for p in (tmp_path / "full_live/plots/metrics").rglob("*.tsv"))
    assert "loss.tsv" in tsvs and "psnr.tsv" in tsvs

    # simulated kills: stop mid-VAE (after 3 steps; last checkpoint at 2), then mid-finetune
    cfg = parse_section("finetune_generator", {**TINY})
    base = BaseConfig(seed=3, device="cpu")
    args = (cfg, base, prepared, tmp_path / "k_gen", tmp_path / "k_ck", tmp_path / "k_live", tmp_path / "k.json")
    zoom = parse_section("generate", {}).zoom  # what the CLI passes (generate.zoom)
    assert run_finetune_generator(*args, stop_after=3, zoom=zoom) is None
    assert not (tmp_path / "k_gen").exists() and not (tmp_path / "k.json").exists()  # no partial output
    assert json.loads((tmp_path / "k_ck/vae/trainer.json").read_text())["step"] == 2
    assert run_finetune_generator(*args, stop_after=8, zoom=zoom) is None
    resumed = _cli(params, prepared, tmp_path, "k")
    assert resumed.exit_code == 0, resumed.output
    m2 = json.loads((tmp_path / "k.json").read_text())
    # 4 VAE + 4 pretrain + 2 finetune steps were checkpointed
    assert json.loads((tmp_path / "k_timings.json").read_text())["resumed_from_step"] == 10
    for part in ("unet", "vae"):
        a = load_file(str(tmp_path / f"full_gen/{part}/diffusion_pytorch_model.safetensors"))
        b = load_file(str(tmp_path / f"k_gen/{part}/diffusion_pytorch_model.safetensors"))
        assert a.keys() == b.keys()
        assert all((a[k] == b[k]).all() for k in a), f"{part} weights differ after resume"
    assert json.loads((tmp_path / "k_gen/vae/config.json").read_text())["scaling_factor"] == pytest.approx(
        json.loads((tmp_path / "full_gen/vae/config.json").read_text())["scaling_factor"]
    )
    # the final losses of the resumed run are the unbroken run's (history travels in the checkpoint)
    assert m2["finetune_final_loss"] == pytest.approx(metrics["finetune_final_loss"])
    assert m2["vae_final_loss"] == pytest.approx(metrics["vae_final_loss"])
    # and so is the whole curve, steps before the kills included
    for name in ("vae/loss.tsv", "finetune/loss.tsv", "vae/psnr.tsv"):
        assert (tmp_path / "k_live/plots/metrics" / name).read_text() == \
            (tmp_path / "full_live/plots/metrics" / name).read_text(), name


def test_finished_checkpoint_is_reused_only_by_the_same_code(prepared, tmp_path, write_params, monkeypatch):
    import diffaug.generator.train as train_mod

    cfg = parse_section("finetune_generator", {**TINY})
    base = BaseConfig(seed=3, device="cpu")
    args = (cfg, base, prepared, tmp_path / "g", tmp_path / "ck", tmp_path / "live", tmp_path / "m.json")
    first = run_finetune_generator(*args)
    written = (tmp_path / "m.json").read_text()
    summary = (tmp_path / "live" / "metrics.json").read_text()  # dvclive's summary, in git as plots/
    assert not {"seconds", "steps_run", "resumed_from_step"} & set(json.loads(summary))
    again = run_finetune_generator(*args)  # DVC reran the stage, nothing that matters changed
    assert (tmp_path / "m.json").read_text() == written  # `dvc metrics diff` shows no change
    assert (tmp_path / "live" / "metrics.json").read_text() == summary  # nor `git diff` of plots/
    assert again["steps_run"] == 0 and again["resumed_from_step"] == 12
    assert again["finetune_final_loss"] == pytest.approx(first["finetune_final_loss"])
    # other training code (a changed file among the stage's code deps) must train again
    monkeypatch.setattr(train_mod, "TRAINING_MODULES", train_mod.TRAINING_MODULES + ("diffaug.io",))
    changed = run_finetune_generator(*args)
    assert changed["steps_run"] == 12 and changed["resumed_from_step"] == 0


def test_phase_c_changes_keep_the_earlier_phases(prepared, tmp_path):
    """Each phase's checkpoint fingerprint covers what it and the phases before it read: new phase (c)
    settings or lesion pairs (zoomed windows) retrain phase (c) only."""
    from diffaug.zoom import ZoomConfig

    base = BaseConfig(seed=3, device="cpu")
    args = (base, prepared, tmp_path / "g", tmp_path / "ck", tmp_path / "live", tmp_path / "m.json")
    first = run_finetune_generator(parse_section("finetune_generator", {**TINY}), *args)
    assert first["steps_run"] == 12 and first["n_zoomed_lesions"] == 0
    other = parse_section("finetune_generator", {**TINY, "finetune_phase": {**TINY["finetune_phase"], "lr": 5e-4}})
    assert run_finetune_generator(other, *args)["steps_run"] == 4
    zoomed = run_finetune_generator(other, *args, zoom=ZoomConfig(max_frac=1.0, min_side=8))
    assert zoomed["steps_run"] == 4 and zoomed["n_zoomed_lesions"] > 0
    assert zoomed["n_lesions"] == first["n_lesions"] + zoomed["n_zoomed_lesions"]


def test_changed_params_do_not_resume_stale_checkpoint(prepared, tmp_path, write_params):
    cfg = parse_section("finetune_generator", {**TINY})
    base = BaseConfig(seed=3, device="cpu")
    args = (prepared, tmp_path / "g", tmp_path / "ck", tmp_path / "live", tmp_path / "m.json")
    assert run_finetune_generator(cfg, base, *args, stop_after=2) is None
    other = parse_section("finetune_generator", {**TINY, "lambda_preserve": 0.5, "pretrain_unet": False,
                                                  "vae_phase": {"steps": 2, "batch_size": 2, "disc_weight": 0.5}})
    m = run_finetune_generator(other, base, *args)
    assert m["resumed_from_step"] == 0 and m["steps_run"] == 6  # fresh run (with the patch GAN on)
    assert (tmp_path / "ck/vae/model_1.safetensors").is_file()  # the discriminator travels with the VAE phase


def test_bad_inputs_one_line_no_output(prepared, tmp_path, write_params):
    params = _params(write_params)
    res = _cli(params, tmp_path / "missing", tmp_path, "a")
    assert res.exit_code == 1
    assert res.output.strip().count("\n") == 0 and "not found; run `dvc repro prepare`" in res.output
    assert not (tmp_path / "a_gen").exists() and not (tmp_path / "a.json").exists()
    assert not (tmp_path / "a_timings.json").exists()

    params = _params(write_params, backbone=str(tmp_path / "no_such_checkpoint"))
    res = _cli(params, prepared, tmp_path, "b")
    assert res.exit_code == 1 and "backbone checkpoint folder not found" in res.output
    assert not (tmp_path / "b_gen").exists()

    params = _params(write_params, prompts={"polyp": {"vascular": []}})
    res = _cli(params, prepared, tmp_path, "c")
    assert res.exit_code == 2 and "finetune_generator.prompts.polyp.vascular" in res.output
    assert not (tmp_path / "c_gen").exists()
