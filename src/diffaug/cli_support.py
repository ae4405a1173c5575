"""Glue between typer commands and library functions: one-line errors, exit codes."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import typer

from diffaug.errors import DiffaugError

F = TypeVar("F", bound=Callable[..., Any])


def stage_command(fn: F) -> F:
    """Wrap a typer command: a DiffaugError becomes `error: <message>` on stderr and its exit
    code (2 for params errors, 1 for bad input); no traceback reaches the user."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except DiffaugError as exc:
            msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            print(f"error: {msg}", file=sys.stderr)
            raise typer.Exit(exc.exit_code) from None

    return wrapper  # type: ignore[return-value]


PARAMS_OPTION = typer.Option("params.yaml", "--params", "-p", help="params file to read (base + this stage's section)")
