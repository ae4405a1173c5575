"""Names of trained runs: the contract between `train_segmenter` (writes) and `evaluate` (reads).

Every run lives in `data/segmenters/<variant>-r<ratio>-s<seed>/`, e.g. `none-r0-s0`,
`diffaug-r0.5-s1`; dvc.yaml builds the same name from the run spec `<variant>-r<ratio>` (params
`train_segmenter.runs`) and the seed (`train_segmenter.seeds`).
"""

from __future__ import annotations

from typing import NamedTuple

from diffaug.segmenter.config import (
    RATIO_VARIANTS,
    VARIANTS,
    TrainSegmenterConfig,
    format_ratio,
    parse_run_spec,
)


class PlannedRun(NamedTuple):
    variant: str
    ratio: float
    seed: int
    name: str


def run_name(variant: str, ratio: float, seed: int) -> str:
    """`run_name('diffaug', 3, 0) == 'diffaug-r3-s0'`; `run_name('none', 0, 1) == 'none-r0-s1'`."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant '{variant}'; allowed: {', '.join(VARIANTS)}")
    if variant not in RATIO_VARIANTS:
        ratio = 0
    return f"{variant}-r{format_ratio(ratio)}-s{int(seed)}"


def planned_runs(cfg: TrainSegmenterConfig) -> list[PlannedRun]:
    """Every run the params ask for (runs × seeds), in params order."""
    out = []
    for spec in cfg.runs:
        variant, ratio = parse_run_spec(spec)
        for seed in cfg.seeds:
            out.append(PlannedRun(variant, ratio, seed, run_name(variant, ratio, seed)))
    return out
