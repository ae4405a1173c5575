"""dvclive curves: a run redrawn from a checkpoint's points writes the files the logging run wrote."""

from __future__ import annotations

import json

from diffaug.training.curves import Curves


def test_restored_points_write_the_same_curves_and_summary(tmp_path):
    points = [{"step": s, "loss": 1.0 / s, "l1": 0.5 / s, "kl": 10.0 * s, "lr": 0.1} for s in (5, 10, 15)]
    with Curves(tmp_path / "logged") as live:
        for p in points:
            live.log(p["step"], {k: v for k, v in p.items() if k != "step"})
    # a checkpoint stores the points with sorted keys (trainer.json is written with sort_keys)
    stored = json.loads(json.dumps(points, sort_keys=True))
    with Curves(tmp_path / "restored") as live:
        live.restore(stored)
    files = sorted(p.relative_to(tmp_path / "logged") for p in (tmp_path / "logged").rglob("*") if p.is_file())
    assert any(p.name == "metrics.json" for p in files) and any(p.suffix == ".tsv" for p in files)
    for rel in files:
        assert (tmp_path / "restored" / rel).read_bytes() == (tmp_path / "logged" / rel).read_bytes(), rel
