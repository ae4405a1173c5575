"""Names of trained runs and the extra pairs each got: the contract between `train_segmenter`
(writes) and `evaluate` (reads).

Every run lives in `data/segmenters/<spec>-s<seed>/`, e.g. `none-s0`, `diffaug-s0`,
`diffaug-r0.5-s1`; dvc.yaml builds the same name from the run spec (params
`train_segmenter.runs`) and the seed (`train_segmenter.seeds`).
"""

from __future__ import annotations

from typing import Any, NamedTuple

from diffaug.segmenter.config import RATIO_VARIANTS, TrainSegmenterConfig, parse_run_spec, run_group

# what a run asked for and got, in run.json's training summary and metrics/train_segmenter/<run>.json
SUPPLY_KEYS = ("synthetic_requested", "synthetic_used", "synthetic_shortfall")


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


def synthetic_supply(variant: str, ratio: float, n_real: int, n_extra: int) -> dict[str, Any]:
    """Extra pairs a run asked for and got. copypaste, pseudolabel and diffaug ask for round(ratio × N_real)
    (N_real: the real training pairs after the validation holdout; `train.build_extra_pairs`);
    diffaug gets fewer when the gate accepted fewer, pseudolabel when fewer unlabelled frames are
    confident, copypaste none when no mask has a lesion.
    `synthetic_shortfall` is true when it got fewer than it asked for: then a higher
    `train_segmenter.synthetic_ratio` adds nothing."""
    requested = int(round(ratio * n_real)) if variant in RATIO_VARIANTS else 0
    return {"synthetic_requested": requested, "synthetic_used": int(n_extra),
            "synthetic_shortfall": bool(n_extra < requested)}
