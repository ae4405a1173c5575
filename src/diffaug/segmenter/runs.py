"""Names of trained runs: the contract between `train_segmenter` (writes) and `evaluate` (reads).

Every run lives in `data/segmenters/<spec>-s<seed>/`, e.g. `none-s0`, `diffaug-s0`,
`diffaug-r0.5-s1`; dvc.yaml builds the same name from the run spec (params
`train_segmenter.runs`) and the seed (`train_segmenter.seeds`).
"""

from __future__ import annotations

from typing import NamedTuple

from diffaug.segmenter.config import TrainSegmenterConfig, parse_run_spec, run_group


class PlannedRun(NamedTuple):
    variant: str
    ratio: float  # resolved: the spec's own ratio or train_segmenter.synthetic_ratio
    seed: int
    name: str  # folder under data/segmenters/
    group: str  # what evaluate reports it under (seeds pooled)


def run_name(spec: str, seed: int) -> str:
    """`run_name('diffaug-r3', 0) == 'diffaug-r3-s0'`; `run_name('none', 1) == 'none-s1'`."""
    parse_run_spec(spec)  # raises on a malformed spec
    return f"{spec}-s{int(seed)}"


def planned_runs(cfg: TrainSegmenterConfig) -> list[PlannedRun]:
    """Every run the params ask for (runs × seeds), in params order."""
    out = []
    for spec in cfg.runs:
        variant, ratio = parse_run_spec(spec, cfg.synthetic_ratio)
        for seed in cfg.seeds:
            out.append(PlannedRun(variant, ratio, seed, run_name(spec, seed), run_group(spec)))
    return out
