"""A throwaway copy of this repository as its own git + DVC repo, for end-to-end tests."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def repo_files() -> list[str]:
    """Tracked files plus untracked ones git does not ignore (what a fresh clone would hold,
    including work not committed yet), minus generated metrics."""
    out = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO, check=True, capture_output=True, text=True
    ).stdout.split("\n")
    return [f for f in out if f and (REPO / f).is_file() and not f.startswith("metrics/")]


def env() -> dict[str, str]:
    e = dict(os.environ)
    # `diffaug` must resolve to this interpreter's console script, activated venv or not.
    e["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{e.get('PATH', '')}"
    e.update(DVC_NO_ANALYTICS="1", HF_HUB_OFFLINE="1", DIFFAUG_QUIET="1", GIT_TERMINAL_PROMPT="0")
    e.setdefault("GIT_AUTHOR_NAME", "diffaug-test")
    e.setdefault("GIT_AUTHOR_EMAIL", "test@example.invalid")
    e.setdefault("GIT_COMMITTER_NAME", "diffaug-test")
    e.setdefault("GIT_COMMITTER_EMAIL", "test@example.invalid")
    return e


def run(args: list[str], cwd: Path, check: bool = True, timeout: float = 900) -> subprocess.CompletedProcess:
    proc = subprocess.run(args, cwd=cwd, env=env(), capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(args)} exited {proc.returncode}\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return proc


def make_repo(dest: Path, overlay: Path | None = None) -> Path:
    """Copy the project into `dest`, apply a params overlay, and commit it as a fresh git repo."""
    from diffaug.config import apply_overlay

    for rel in repo_files():
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / rel, target)
    (dest / "metrics").mkdir(exist_ok=True)
    if overlay is not None:
        apply_overlay(dest / "params.yaml", overlay)
    run(["git", "init", "-q", "-b", "main"], dest)
    if not (dest / ".dvc").exists():
        run(["dvc", "init", "-q"], dest)
    run(["git", "add", "-A"], dest)
    run(["git", "commit", "-qm", "test repo"], dest)
    return dest
