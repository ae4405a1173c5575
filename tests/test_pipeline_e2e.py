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
    # as a user would before experimenting: experiments start from HEAD
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-qm", "baseline run"], repo)
    return repo, proc.stdout


def test_every_stage_runs_and_writes_its_outputs(pipeline):
    repo, log = pipeline
    listed = run(["dvc", "stage", "list", "--name-only"], repo).stdout.split()
    for stage in STAGES:
        assert any(name == stage or name.startswith(f"{stage}@") for name in listed), stage
        assert f"Running stage '{stage}" in log, f"{stage} did not run"
        if stage != "train_segmenter":
            assert (repo / "metrics" / f"{stage}.json").is_file(), f"metrics/{stage}.json missing"
    runs = sorted(p.stem for p in (repo / "metrics" / "train_segmenter").glob("*.json"))
    assert runs == ["copypaste-s0", "diffaug-s0", "none-s0", "pseudolabel-s0", "standard-s0"]
    # wall-clock figures sit beside the results, in metrics/timings/ (git-tracked, not DVC metrics)
    timed = ["finetune_generator", "train_validator", *(f"train_segmenter/{r}" for r in runs)]
    for name, key in (("generate", "samples_per_s"), ("gate", "images_per_s")):
        t = json.loads((repo / "metrics" / "timings" / f"{name}.json").read_text())
        assert key in t and key not in json.loads((repo / "metrics" / f"{name}.json").read_text()), name
    for name in timed:
        timings = json.loads((repo / "metrics" / "timings" / f"{name}.json").read_text())
        results = json.loads((repo / "metrics" / f"{name}.json").read_text())
        assert timings["seconds"] > 0 and "seconds" not in results and not set(results) & set(timings), name
    shown = json.loads(run(["dvc", "metrics", "show", "--json"], repo).stdout)
    paths = {p for rev in shown.values() for p in (rev.get("data") or {})}
    assert "metrics/evaluate.json" in paths and not any(p.startswith("metrics/timings/") for p in paths), paths
    ignored = run(["git", "check-ignore", "-q", "metrics/timings/train_validator.json"], repo, check=False)
    assert ignored.returncode == 1  # committed to git like metrics/, not cached by DVC
    # training curves for `dvc plots show`, kept in git beside metrics/
    for live in ["finetune_generator", "train_validator", *(f"train_segmenter/{r}" for r in runs)]:
        assert list((repo / "plots" / live / "plots" / "metrics").rglob("*.tsv")), live
    plots = run(["dvc", "plots", "show", "--json"], repo).stdout
    assert "plots/train_segmenter/diffaug-s0/plots/metrics" in plots
    prepared = repo / "data" / "prepared"
    for name in ("train.npz", "test.npz", "normals.npz", "mask_bank.npz", "unlabelled.npz", "fingerprint.json",
                 "preview.png"):
        assert (prepared / name).is_file(), name
    assert (repo / "data" / "generator" / "unet" / "config.json").is_file()
    assert (repo / "data" / "synthetic" / "raw" / "preview.png").is_file()
    assert (repo / "data" / "synthetic" / "gated" / "grid.png").is_file()
    assert (repo / "data" / "evaluate" / "report.md").is_file()
    gate = json.loads((repo / "metrics" / "gate.json").read_text())
    # smoke params: 6 normal backgrounds x 2 variants
    assert gate["n_generated"] == 12
    assert 0.0 <= gate["acceptance_rate"] <= 1.0
    evaluate = json.loads((repo / "metrics" / "evaluate.json").read_text())
    for group in ("none", "standard", "copypaste", "pseudolabel", "diffaug"):
        assert 0.0 <= evaluate[group]["dice_mean"] <= 1.0, group
    # the pseudolabel rival labelled the smoke phantom's unlabelled frames with its teacher
    pseudo = json.loads((repo / "metrics" / "train_segmenter" / "pseudolabel-s0.json").read_text())
    assert pseudo["pseudo_unlabelled"] == 12 and "diffaug_vs_pseudolabel" in evaluate["significance"]
    sig = evaluate["significance"]["diffaug_vs_standard"]
    # a p-value, or (smoke models: the gate may accept nothing, then diffaug trains exactly like
    # standard) the reason there is none
    assert (sig["status"] == "ok" and 0.0 <= sig["p_value"] <= 1.0) or (
        sig["p_value"] is None and sig["status"].startswith("undefined")
    ), sig
    bench = json.loads((repo / "metrics" / "benchmark.json").read_text())
    assert bench["validator_single_step_speedup"] > 0


def test_second_repro_does_nothing(pipeline):
    repo, _ = pipeline
    proc = run(["dvc", "repro"], repo)
    assert "Data and pipelines are up to date" in proc.stdout
    assert "Running stage" not in proc.stdout


def _stages_ran(log: str) -> set[str]:
    """Stage names in a `dvc repro` / `dvc exp run` log (matrix entries by stage name)."""
    return {line.split("'")[1].split("@")[0] for line in log.splitlines() if line.startswith("Running stage")}


def _would_run(repo, section: str, key: str, value) -> set[str]:
    """Stages `dvc repro --dry` lists after one param change (matrix entries by stage name)."""
    path = repo / "params.yaml"
    params = yaml.safe_load(path.read_text())
    params[section][key] = value
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    try:
        proc = run(["dvc", "repro", "--dry"], repo)
    finally:
        run(["git", "checkout", "--", "params.yaml"], repo)
    return _stages_ran(proc.stdout)


def test_changed_param_reruns_only_its_readers(pipeline):
    repo, _ = pipeline
    assert json.loads(run(["dvc", "status", "--json"], repo).stdout or "{}") == {}
    # `--dry` lists the stages that read the changed param (their consumers follow once their
    # inputs really change: see the experiment below), never the stages upstream of it
    assert _would_run(repo, "gate", "threshold", 0.35) == {"gate", "benchmark"}
    assert _would_run(repo, "evaluate", "detect_fraction", 0.3) == {"evaluate"}
    assert _would_run(repo, "train_segmenter", "synthetic_ratio", 2.0) == {"train_segmenter", "evaluate"}


def _exp_metric(exp_show: list, path: str, key: str) -> dict[str, float]:
    """{experiment name or 'workspace'/'main': value} of one metric in `dvc exp show --json`."""
    found: dict[str, float] = {}

    def visit(entry: dict) -> None:
        data = entry.get("data") or {}
        metrics = (data.get("metrics") or {}).get(path, {}).get("data", {})
        if key in metrics:
            found[entry.get("name") or entry.get("rev")] = metrics[key]
        for exp in entry.get("experiments") or []:
            for rev in exp.get("revs") or []:
                visit(rev)

    for entry in exp_show:
        visit(entry)
    return found


def test_exp_run_with_a_changed_param_moves_the_metric(pipeline):
    repo, _ = pipeline
    before = json.loads((repo / "metrics" / "gate.json").read_text())["acceptance_rate"]
    # the table-6 ablation "without validation": the gate accepts every sample
    proc = run(["dvc", "exp", "run", "-n", "no-gate", "-S", "gate.enabled=false"], repo, timeout=900)
    ran = _stages_ran(proc.stdout)
    assert ran == {"gate", "train_segmenter", "evaluate", "benchmark"}, ran
    shown = json.loads(run(["dvc", "exp", "show", "--json"], repo).stdout)
    rates = _exp_metric(shown, "metrics/gate.json", "acceptance_rate")
    assert rates.get("no-gate") == 1.0, rates
    assert rates.get("main") == before
