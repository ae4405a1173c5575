"""Shared test fixtures."""

from __future__ import annotations

import os
from pathlib import Path

# Before torch loads: passive OpenMP waiting, since the suite may share its cores with other
# torch processes (CI, the `dvc repro` it starts); see diffaug/__init__.py and README.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest  # noqa: E402
import torch  # noqa: E402

REPO = Path(__file__).resolve().parents[1]

# Tests run on 2-core CI machines; keep torch from oversubscribing them.
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("DIFFAUG_QUIET", "1")


@pytest.fixture
def repo_root() -> Path:
    return REPO


@pytest.fixture
def write_params(tmp_path):
    """Write a params.yaml from a dict of sections and return its path."""
    import yaml

    def _write(sections: dict, name: str = "params.yaml") -> Path:
        path = tmp_path / name
        path.write_text(yaml.safe_dump(sections, sort_keys=False))
        return path

    return _write
