"""Atomic writes leave no partial output; npz bytes are deterministic; results and timings go to two files."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from diffaug.io import atomic_dir, atomic_file, read_json, save_npz, split_timings, write_json, write_metrics


def test_atomic_dir_replaces_on_success_and_keeps_old_on_failure(tmp_path):
    out = tmp_path / "out"
    with atomic_dir(out) as tmp:
        (tmp / "a.txt").write_text("first")
    assert (out / "a.txt").read_text() == "first"

    with pytest.raises(RuntimeError):
        with atomic_dir(out) as tmp:
            (tmp / "a.txt").write_text("second")
            raise RuntimeError("boom")
    assert (out / "a.txt").read_text() == "first"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no temp folder left


def test_atomic_file_and_json(tmp_path):
    path = tmp_path / "m.json"
    write_json(path, {"b": np.float32(0.5), "a": float("nan"), "c": np.arange(2)})
    assert read_json(path) == {"a": None, "b": 0.5, "c": [0, 1]}
    with pytest.raises(ValueError):
        with atomic_file(path) as tmp:
            tmp.write_text("partial")
            raise ValueError
    assert read_json(path)["b"] == 0.5
    assert len(list(tmp_path.iterdir())) == 1


def test_npz_bytes_are_deterministic(tmp_path):
    arr = np.random.default_rng(0).integers(0, 255, (4, 8, 8, 3), dtype=np.uint8)
    save_npz(tmp_path / "a.npz", images=arr, ids=np.array(["x", "y", "z", "w"]))
    save_npz(tmp_path / "b.npz", images=arr.copy(), ids=np.array(["x", "y", "z", "w"]))
    digest = [hashlib.md5((tmp_path / n).read_bytes()).hexdigest() for n in ("a.npz", "b.npz")]
    assert digest[0] == digest[1]


def test_write_metrics_puts_the_declared_timings_in_their_own_file(tmp_path):
    metrics = {"dice": 0.5, "seconds": 12.5, "speed": {"ms": 3.0}, "steps": 10}
    assert split_timings(metrics, ("seconds", "speed", "absent")) == (
        {"dice": 0.5, "steps": 10}, {"seconds": 12.5, "speed": {"ms": 3.0}})
    write_metrics(tmp_path / "m.json", tmp_path / "timings" / "m.json", metrics, ("seconds", "speed"))
    assert read_json(tmp_path / "m.json") == {"dice": 0.5, "steps": 10}
    assert read_json(tmp_path / "timings" / "m.json") == {"seconds": 12.5, "speed": {"ms": 3.0}}
    write_metrics(tmp_path / "n.json", None, metrics, ("seconds", "speed"))  # no timings file: dropped
    assert read_json(tmp_path / "n.json") == {"dice": 0.5, "steps": 10}
