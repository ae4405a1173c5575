"""`diffaug train_segmenter` through the CLI: a run's outputs, and bad input as one line."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from diffaug.cli import app
from diffaug.config import parse_section
from diffaug.errors import ConfigError
from diffaug.segmenter import load_segmenter, planned_runs
from tests.segmenter_support import write_gated, write_prepared

runner = CliRunner()
TINY = {"steps": 6, "warmup_steps": 0, "eval_every": 3, "channels": [8, 16], "num_res_units": 0, "batch_size": 8}


@pytest.fixture
def setup(tmp_path, write_params):
    prepared = write_prepared(tmp_path / "prepared", n_train=16, size=32)
    gated = write_gated(tmp_path / "gated", n=6, size=32)
    params = write_params({"base": {"seed": 0, "device": "cpu"}, "train_segmenter": TINY})
    return tmp_path, prepared, gated, params


def _invoke(params, *args):
    return runner.invoke(app, ["train_segmenter", "--params", str(params), *args])


def test_diffaug_run_writes_model_config_curves_metrics(setup):
    tmp, prepared, gated, params = setup
    out, metrics = tmp / "segmenters" / "diffaug-r0.5-s1", tmp / "metrics" / "diffaug-r0.5-s1.json"
    live, ckpt = tmp / "plots" / "diffaug-r0.5-s1", tmp / "ckpt" / "diffaug-r0.5-s1"
    timings = tmp / "metrics" / "timings" / "diffaug-r0.5-s1.json"
    res = _invoke(params, "--run", "diffaug-r0.5", "--seed", "1", "--prepared", prepared, "--gated", gated,
                  "--out", out, "--metrics", metrics, "--live", live, "--checkpoints", ckpt, "--timings", timings)
    assert res.exit_code == 0, res.output
    assert "diffaug-r0.5-s1" in res.output and "best validation Dice" in res.output
    assert {p.name for p in out.iterdir()} == {"config.json", "diffusion_pytorch_model.safetensors", "run.json"}
    assert (live / "plots" / "metrics" / "train" / "loss.tsv").is_file()
    assert not (live / "metrics.json").exists()  # the run's metrics file is metrics/train_segmenter/<run>.json
    assert json.loads((ckpt / "run" / "trainer.json").read_text())["step"] == 6
    assert json.loads((out / "config.json").read_text())["architecture"] == "unet"  # the network's config
    config = json.loads((out / "run.json").read_text())
    assert config["run"] == {"name": "diffaug-r0.5-s1", "spec": "diffaug-r0.5", "group": "diffaug-r0.5",
                             "variant": "diffaug", "ratio": 0.5, "seed": 1, "base_seed": 0}
    assert config["training"]["n_extra"] == 6 and config["training"]["real_exposure"] == 3  # 48 draws over 13
    m = json.loads(metrics.read_text())
    assert m["n_real"] == 13 and m["n_val"] == 3 and m["loss_last"] > 0 and m["best_step"] in (3, 6)
    # round(0.5 x 13) = 6 asked for, the gate accepted 6: no shortfall
    supply = {"synthetic_requested": 6, "synthetic_used": 6, "synthetic_shortfall": False}
    assert {k: m[k] for k in supply} == supply and m["n_warnings"] == 0
    assert {k: config["training"][k] for k in supply} == supply  # what evaluate reads
    # wall-clock time in its own file (not a DVC metric), and in neither metrics nor run.json
    t = json.loads(timings.read_text())
    assert t.keys() == {"seconds", "resumed_from_step"} and t["seconds"] > 0 and t["resumed_from_step"] == 0
    assert not {"seconds", "resumed_from_step"} & (set(m) | set(config["training"]))
    # DVC reran the stage for nothing that matters: the finished run is loaded, and its metrics,
    # and run.json are the bytes the training run wrote
    written = {p: p.read_bytes() for p in (metrics, out / "run.json")}
    again = _invoke(params, "--run", "diffaug-r0.5", "--seed", "1", "--prepared", prepared, "--gated", gated,
                    "--out", out, "--metrics", metrics, "--live", live, "--checkpoints", ckpt, "--timings", timings)
    assert again.exit_code == 0, again.output
    assert json.loads(timings.read_text())["resumed_from_step"] == 6
    assert {p: p.read_bytes() for p in written} == written
    seg = load_segmenter(out, "cpu")
    assert seg.predict(__import__("numpy").zeros((3, 32, 32, 3), "uint8")).shape == (3, 32, 32)


@pytest.mark.parametrize("val_fraction, said, n_val", [(0.2, "last step kept (3 held-out frames scored)", 3),
                                                     (0.0, "last step kept, no frame held out", 0)])
def test_select_last_run_says_what_it_kept(tmp_path, write_params, val_fraction, said, n_val):
    prepared = write_prepared(tmp_path / "prepared", n_train=16, size=32)
    params = write_params({"base": {"seed": 0, "device": "cpu"},
                           "train_segmenter": {**TINY, "select": "last", "val_fraction": val_fraction}})
    metrics = tmp_path / "m.json"
    res = _invoke(params, "--run", "standard", "--seed", "0", "--prepared", prepared, "--gated",
                  write_gated(tmp_path / "gated", n=2, size=32), "--out", tmp_path / "out", "--metrics", metrics,
                  "--timings", tmp_path / "t.json")
    assert res.exit_code == 0, res.output
    assert said in res.output
    m = json.loads(metrics.read_text())
    assert m["best_step"] is None and m["val_dice_best"] is None and m["n_val"] == n_val and m["n_real"] == 16 - n_val


def test_ratio_beyond_the_accepted_pool_is_a_shortfall_in_the_metrics(setup):
    tmp, prepared, gated, params = setup
    out, metrics = tmp / "segmenters" / "diffaug-r3-s0", tmp / "metrics" / "diffaug-r3-s0.json"
    res = _invoke(params, "--run", "diffaug-r3", "--prepared", prepared, "--gated", gated, "--out", out,
                  "--metrics", metrics, "--timings", tmp / "timings.json")
    assert res.exit_code == 0, res.output
    assert "the gate accepted 6" in res.output
    m = json.loads(metrics.read_text())  # 3 x 13 real pairs asked for, 6 accepted
    supply = {"synthetic_requested": 39, "synthetic_used": 6, "synthetic_shortfall": True}
    assert {k: m[k] for k in supply} == supply and m["n_extra"] == 6 and m["n_warnings"] == 1
    assert {k: json.loads((out / "run.json").read_text())["training"][k] for k in supply} == supply


@pytest.mark.parametrize(
    "run,code,message",
    [
        ("diffaug-r-1", 2, "ratio must be >= 0"),
        ("fancy-r0", 2, "unknown variant 'fancy'"),
        ("none-r2", 2, "adds no pairs"),
        ("diffaug-r0", 2, "needs a ratio > 0"),
        ("diffaug-r3.0", 2, "write it as 'diffaug-r3'"),
    ],
)
def test_bad_run_spec_is_one_line(setup, run, code, message):
    tmp, prepared, gated, params = setup
    res = _invoke(params, "--run", run, "--prepared", prepared, "--out", tmp / "o")
    assert res.exit_code == code
    assert message in res.output and res.output.count("\n") == 1 and "Traceback" not in res.output
    assert not (tmp / "o").exists()


def test_missing_inputs_fail_cleanly(setup):
    tmp, prepared, _, params = setup
    res = _invoke(params, "--run", "standard-r0", "--prepared", tmp / "nope", "--out", tmp / "o")
    assert res.exit_code == 1 and "prepare" in res.output and not (tmp / "o").exists()
    res = _invoke(params, "--run", "diffaug-r1", "--prepared", prepared, "--gated", tmp / "nogate", "--out", tmp / "o")
    assert res.exit_code == 1 and "accepted.npz" in res.output and not (tmp / "o").exists()


def test_empty_gate_with_error_policy(setup, write_params):
    tmp, prepared, _, _ = setup
    gated = write_gated(tmp / "empty_gate", n=0, size=32)
    params = write_params({"train_segmenter": TINY | {"on_empty_synthetic": "error"}}, name="p2.yaml")
    res = _invoke(params, "--run", "diffaug-r1", "--prepared", prepared, "--gated", gated, "--out", tmp / "o",
                  "--metrics", tmp / "m.json", "--timings", tmp / "t.json")
    assert res.exit_code == 1 and "no accepted synthetic pairs" in res.output
    assert not (tmp / "o").exists() and not (tmp / "m.json").exists() and not (tmp / "t.json").exists()


@pytest.mark.parametrize(
    "values,key",
    [
        ({"runs": ["standard-r0", "mixup-r0"]}, "unknown variant 'mixup'"),
        ({"synthetic_share": 1.0}, "train_segmenter.synthetic_share"),
        ({"seeds": [0, 0]}, "distinct"),
        ({"steps": 3, "warmup_steps": 0, "real_only_steps": 3}, "real_only_steps"),
        ({"steps": 3}, "warmup_steps"),
        ({"augment": {"elastic_prob": 2}}, "train_segmenter.augment.elastic_prob"),
        ({"lr": 0.01, "batch": 3}, "unknown key"),
        ({"ignore_band": -1}, "train_segmenter.ignore_band"),
    ],
)
def test_bad_params_name_the_key(values, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.").replace("(", r"\(")):
        parse_section("train_segmenter", values)


def test_planned_runs_cross_specs_and_seeds():
    cfg = parse_section("train_segmenter", {"runs": ["none-r0", "diffaug-r0.5", "diffaug-r3"], "seeds": [0, 1]})
    names = [r.name for r in planned_runs(cfg)]
    assert names == ["none-r0-s0", "none-r0-s1", "diffaug-r0.5-s0", "diffaug-r0.5-s1", "diffaug-r3-s0", "diffaug-r3-s1"]
    assert [r.group for r in planned_runs(cfg)][::2] == ["none", "diffaug-r0.5", "diffaug-r3"]


def test_bare_specs_take_the_synthetic_ratio():
    cfg = parse_section("train_segmenter", {"runs": ["none", "standard", "copypaste", "diffaug", "diffaug-r3"],
                                            "synthetic_ratio": 2.5})
    runs = planned_runs(cfg)
    assert [(r.name, r.group, r.ratio) for r in runs] == [
        ("none-s0", "none", 0.0), ("standard-s0", "standard", 0.0), ("copypaste-s0", "copypaste", 2.5),
        ("diffaug-s0", "diffaug", 2.5), ("diffaug-r3-s0", "diffaug-r3", 3.0)]
    with pytest.raises(ConfigError, match="same run"):
        parse_section("train_segmenter", {"runs": ["standard", "standard-r0"]})
    with pytest.raises(ConfigError, match="synthetic_ratio"):
        parse_section("train_segmenter", {"synthetic_ratio": -1})
