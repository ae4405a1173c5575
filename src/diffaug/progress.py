"""Progress for long work: rich bars with rate and ETA on a terminal; without one (a stage under
`dvc repro` writing to a log) a plain line now and then, so a long stage is never silent; nothing
under DIFFAUG_QUIET=1 or CI=true."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable, Iterator
from typing import TypeVar

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

T = TypeVar("T")


# seconds between plain progress lines when there is no terminal for a bar
PLAIN_EVERY_S = 30.0


def quiet() -> bool:
    return os.environ.get("DIFFAUG_QUIET") == "1" or os.environ.get("CI", "").lower() in ("1", "true")


def progress_enabled() -> bool:
    """Bars only on an interactive terminal and never under CI (CI=true) or DIFFAUG_QUIET=1."""
    return not quiet() and sys.stderr.isatty()


def note(message: str) -> None:
    """One line on stderr for the user (resumed runs, set-aside checkpoints); silent when quiet."""
    if not quiet():
        print(message, file=sys.stderr, flush=True)


def _plain(items: Iterable[T], description: str, total: int | None) -> Iterator[T]:
    """`description: i/total (rate, elapsed)` every PLAIN_EVERY_S seconds and at the end."""
    t0 = last = time.monotonic()
    i = 0
    for item in items:
        yield item
        i += 1
        now = time.monotonic()
        if now - last >= PLAIN_EVERY_S or (total is not None and i == total and now - t0 >= PLAIN_EVERY_S):
            last = now
            of = f"/{total}" if total is not None else ""
            note(f"{description}: {i}{of} ({i / max(now - t0, 1e-9):.2f} it/s, {now - t0:.0f} s)")


def make_progress() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        TextColumn("[cyan]{task.fields[rate]}"),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        disable=not progress_enabled(),
        transient=False,
    )


def track(items: Iterable[T], description: str, total: int | None = None) -> Iterator[T]:
    """Iterate with a progress bar showing count, rate (it/s) and ETA."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    if not progress_enabled():
        yield from _plain(items, description, total) if not quiet() else items
        return
    with make_progress() as progress:
        task = progress.add_task(description, total=total, rate="")
        for item in items:
            yield item
            progress.advance(task)
            speed = progress.tasks[0].speed
            if speed:
                progress.update(task, rate=f"{speed:.2f} it/s")
