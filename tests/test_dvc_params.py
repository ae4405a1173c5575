"""dvc.yaml's params lists: a setting a stage reads but does not list would let `dvc exp run -S`
change it without rerunning the stage, and the result would silently be the old one."""

from __future__ import annotations

from pathlib import Path

import yaml

from diffaug.segmenter.config import TrainSegmenterConfig

ROOT = Path(__file__).resolve().parents[1]


def _stages() -> dict:
    return yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


def test_train_segmenter_lists_every_setting_but_runs_and_seeds():
    listed = {p.removeprefix("train_segmenter.") for p in _stages()["train_segmenter"]["params"] if p != "base"}
    # runs and seeds are the matrix: adding one trains only the new entries
    expected = set(TrainSegmenterConfig.model_fields) - {"runs", "seeds"}
    assert listed == expected, {"missing": sorted(expected - listed), "not a setting": sorted(listed - expected)}


def test_every_listed_param_is_in_params_yaml():
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    for name, stage in _stages().items():
        for key in stage.get("params", []):
            node = params
            for part in key.split("."):
                assert isinstance(node, dict) and part in node, f"{name}: {key} is not in params.yaml"
                node = node[part]
