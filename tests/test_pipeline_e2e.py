"""End to end: the real `dvc repro` of all eight stages in a fresh git repo, on the fastest
params (params/smoke.yaml), then the properties users rely on: a second repro does nothing, a
changed param reruns only the stages that read it, and `dvc exp run -S` moves a metric."""

from __future__ import annotations

import json

import pytest
import yaml

from tests.dvc_repo import REPO, make_repo, run

pytestmark = pytest.mark.slow

STAGES = [
    "prepare",
    "finetune_generator",
    "train_validator",
    "generate",
    "gate",
    "train_segmenter",
    "evaluate",
    "benchmark",
]


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    repo = make_repo(tmp_path_factory.mktemp("e2e"), overlay=REPO / "params" / "smoke.yaml")
    proc = run(["dvc", "repro"], repo, timeout=1200)
    return repo, proc.stdout


def test_every_stage_runs_and_writes_its_outputs(pipeline):
    repo, log = pipeline
    listed = run(["dvc", "stage", "list", "--name-only"], repo).stdout.split()
    for stage in STAGES:
        assert any(name == stage or name.startswith(f"{stage}@") for name in listed), stage
        assert (repo / "metrics" / f"{stage}.json").is_file(), f"metrics/{stage}.json missing"
    prepared = repo / "data" / "prepared"
    for name in ("train.npz", "test.npz", "normals.npz", "mask_bank.npz", "fingerprint.json", "preview.png"):
        assert (prepared / name).is_file(), name
    assert (repo / "data" / "generator" / "unet" / "config.json").is_file()
    assert (repo / "data" / "synthetic" / "raw" / "preview.png").is_file()
    assert (repo / "data" / "synthetic" / "gated" / "grid.png").is_file()
    gate = json.loads((repo / "metrics" / "gate.json").read_text())
    assert gate["n_generated"] > 0
    evaluate = json.loads((repo / "metrics" / "evaluate.json").read_text())
    assert evaluate, "evaluate.json is empty"


def test_second_repro_does_nothing(pipeline):
    repo, _ = pipeline
    proc = run(["dvc", "repro"], repo)
    assert "Data and pipelines are up to date" in proc.stdout
    assert "Running stage" not in proc.stdout


def test_changed_param_reruns_only_its_readers(pipeline):
    repo, _ = pipeline
    params = yaml.safe_load((repo / "params.yaml").read_text())
    status = run(["dvc", "status", "--json"], repo).stdout
    assert json.loads(status or "{}") == {}
    run(["dvc", "exp", "run", "--dry", "-S", f"gate.threshold={params['gate']['threshold'] / 2}"], repo)
    # --dry lists what would run without running it: the gate and its consumers, never the
    # stages upstream of it.
    proc = run(["dvc", "exp", "run", "--dry", "-S", f"gate.threshold={params['gate']['threshold'] / 2}"], repo)
    ran = {line.split("'")[1].split("@")[0] for line in proc.stdout.splitlines() if line.startswith("Running stage")}
    assert "gate" in ran
    assert not ran & {"prepare", "finetune_generator", "train_validator", "generate"}
