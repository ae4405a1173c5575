"""Small I/O helpers: atomic writes (no partial output on failure), JSON, a stage's metrics split
from its timings, npz, safetensors weights.

A stage writes each output to a temporary sibling and renames it into place only when the whole
output is complete, so a failed run leaves the previous output (or nothing) untouched.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from diffaug.errors import InputError


@contextlib.contextmanager
def atomic_dir(final: str | Path) -> Iterator[Path]:
    """Yield a temporary folder beside `final`; on success it replaces `final` in one rename."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    if final.exists():
        old = final.with_name(f".{final.name}.old-{os.getpid()}")
        shutil.rmtree(old, ignore_errors=True)
        final.rename(old)
    tmp.rename(final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def atomic_file(final: str | Path) -> Iterator[Path]:
    """Yield a temporary file path beside `final`; renamed onto `final` on success."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{final.name}.tmp-", dir=final.parent, suffix=final.suffix)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, final)


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None  # JSON has no NaN; None means "undefined" (documented per metric)
    if isinstance(obj, Path):
        return str(obj)
    return obj


def write_json(path: str | Path, obj: Any) -> None:
    """Write JSON atomically with sorted keys and a trailing newline (diff-friendly)."""
    with atomic_file(path) as tmp:
        tmp.write_text(json.dumps(_jsonable(obj), indent=2, sort_keys=True) + "\n")


def read_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text())


def split_timings(metrics: Mapping[str, Any], timing_keys: Iterable[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(results, timings) of a stage's metrics: the top-level keys the stage lists in `timing_keys`
    (wall-clock seconds, throughput, memory, what they were measured on) go to timings, every other
    key to results. A listed key the metrics lack is skipped (not every run times everything)."""
    keys = set(timing_keys)
    return ({k: v for k, v in metrics.items() if k not in keys}, {k: v for k, v in metrics.items() if k in keys})


def write_metrics(metrics_path: str | Path, timings_path: str | Path | None, metrics: Mapping[str, Any],
                  timing_keys: Iterable[str]) -> None:
    """Write a stage's results to `metrics_path` (metrics/<stage>.json, a DVC metrics file: what
    `dvc metrics diff` and `dvc exp show` compare) and its timings to `timings_path`
    (metrics/timings/<stage>.json, a plain git-tracked out: they differ on every run, so comparing
    runs would otherwise be half timings); `timings_path` None drops them."""
    results, timings = split_timings(metrics, timing_keys)
    if timings_path is not None:
        write_json(timings_path, timings)
    write_json(metrics_path, results)


def save_npz(path: str | Path, **arrays: np.ndarray) -> None:
    """Uncompressed npz: deterministic bytes for identical arrays (so DVC hashes are stable)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # np.savez writes zip entries with a fixed date, so equal arrays give equal files.
    with open(path, "wb") as fh:
        np.savez(fh, **arrays)


def load_npz(path: str | Path) -> dict[str, np.ndarray]:
    with np.load(Path(path), allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


def weights_error(path: str | Path, exc: BaseException, fix: str) -> InputError:
    """`<path>: unreadable or truncated weights (<cause>); <fix>` as one line. The cause is
    safetensors' own error when a loader (diffusers) wrapped it in a vaguer one."""
    cause: BaseException | None = exc
    while cause is not None and not type(cause).__module__.startswith("safetensors"):
        cause = cause.__cause__ or cause.__context__
    cause = cause or exc
    first = str(cause).splitlines()[0].strip() if str(cause).strip() else ""
    what = f"{type(cause).__name__}: {first}" if first else type(cause).__name__
    return InputError(f"{path}: unreadable or truncated weights ({what}); {fix}")


def load_weights_file(path: str | Path, fix: str = "delete it and rerun the stage that writes it") -> dict[str, Any]:
    """A safetensors file as a state dict; a corrupt or truncated file is a one-line InputError."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except (SafetensorError, OSError) as exc:  # bad header / short file; missing file or not a file
        raise weights_error(path, exc, fix) from None
