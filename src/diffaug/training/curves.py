"""dvclive training curves that survive a resume.

Every logged point is kept in memory and written into each checkpoint (`Trainer`), so a resumed
run redraws the whole curve — steps before the kill included — rather than appending to whatever
a killed run left behind (DVC removes a stage's non-persistent outputs before it reruns). The
curves are written into a folder beside `live_dir` and renamed into place by `close()`, so a
failed run leaves no partial curves.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any


class Curves:
    """One dvclive folder; several `Trainer.fit` calls (the generator's phases) log into it."""

    def __init__(self, live_dir: str | Path | None, keep_summary: bool = True) -> None:
        self.final = Path(live_dir) if live_dir is not None else None
        self.keep_summary = keep_summary  # False: drop dvclive's metrics.json (the stage writes its own)
        self.points: list[dict[str, float]] = []  # {"step": s, name: value, ...} in logging order
        self.summary: dict[str, Any] = {}
        self._live = None
        self._tmp: Path | None = None

    def _open(self) -> None:
        if self.final is None or self._live is not None:
            return
        from dvclive import Live

        self.final.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = Path(tempfile.mkdtemp(prefix=f".{self.final.name}.tmp-", dir=self.final.parent))
        self._live = Live(dir=str(self._tmp), save_dvc_exp=False, dvcyaml=None, report=None)

    def _draw(self, point: dict[str, float]) -> None:
        self._open()
        if self._live is None:
            return
        self._live.step = int(point["step"])
        # sorted: a run redrawn from a checkpoint (whose points are stored with sorted keys) then
        # writes dvclive's summary in the same key order as the run that logged them
        for k, v in sorted(point.items()):
            if k != "step":
                self._live.log_metric(k, float(v))

    def log(self, step: int, values: dict[str, float]) -> None:
        point = {"step": int(step), **{k: float(v) for k, v in values.items()}}
        self.points.append(point)
        self._draw(point)

    def restore(self, points: list[dict[str, float]]) -> None:
        """Replace what was logged with a checkpoint's points and redraw them from scratch."""
        self.discard()
        self.points = []
        for p in points:
            self.log(int(p["step"]), {k: v for k, v in p.items() if k != "step"})

    def last(self, name: str, n: int = 1) -> float | None:
        """Mean of the last `n` logged values of `name` (None if never logged)."""
        vals = [p[name] for p in self.points if name in p]
        return float(sum(vals[-n:]) / len(vals[-n:])) if vals else None

    def close(self) -> None:
        """Write dvclive's summary and move the folder into place (replacing an older one)."""
        if self.final is None:
            return
        self._open()
        self._live.summary.update(self.summary)
        self._live.end()
        if not self.keep_summary:
            (Path(self._tmp) / "metrics.json").unlink(missing_ok=True)
        shutil.rmtree(self.final, ignore_errors=True)
        Path(self._tmp).rename(self.final)
        self._live, self._tmp = None, None

    def discard(self) -> None:
        """Drop the folder being written (a failed or simulated-killed run)."""
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
        self._live, self._tmp = None, None

    def __enter__(self) -> Curves:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.discard()
