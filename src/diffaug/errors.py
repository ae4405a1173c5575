"""Errors that the CLI turns into one clear line and a non-zero exit code.

Library code raises these instead of printing; `diffaug.cli_support.stage_command` catches them.
"""

from __future__ import annotations


class DiffaugError(Exception):
    """A problem the user can fix: the message says what, which file, and what to do."""

    exit_code = 1


class ConfigError(DiffaugError):
    """A bad value in params.yaml (unknown key, wrong type, out of range)."""

    exit_code = 2


class InputError(DiffaugError):
    """Bad input data: unreadable file, missing mask, mismatched sizes, missing checkpoint."""

    exit_code = 1
