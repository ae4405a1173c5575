"""The pipeline's own networks (validator, segmenter) as diffusers models, and loading them.

A model folder holds diffusers' `config.json` (the model's `__init__` keyword arguments) and
`diffusion_pytorch_model.safetensors`, written by `save_pretrained`. `load_pretrained` reads it
back with `from_pretrained`, but checks the config's keys against `__init__` first: on its own,
`from_pretrained` drops a key it does not know (a log line) and fills a missing one with its
default, so a folder written by other code would load as a different network. Every way a folder
can be broken is one line of InputError, `<file>: <what>; <fix>`.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from diffaug.errors import InputError

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "diffusion_pytorch_model.safetensors"


def public_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """A model's config without diffusers' bookkeeping (`_class_name`, `_name_or_path`, ...):
    exactly its `__init__` keyword arguments, e.g. to store one model's config in another's."""
    return {k: v for k, v in dict(config).items() if not k.startswith("_")}


def init_keys(cls: type) -> set[str]:
    """The config keys of a `@register_to_config` model class: its `__init__` parameters."""
    params = inspect.signature(cls.__init__).parameters  # follows the decorator's __wrapped__
    ignored = set(getattr(cls, "ignore_for_config", []))
    return {k for k in params if k != "self" and k not in ignored}


def check_config_keys(data: Mapping[str, Any], cls: type, where: str, fix: str) -> None:
    """InputError unless the public keys of `data` are exactly `cls`'s config keys."""
    keys, expected = {k for k in data if not k.startswith("_")}, init_keys(cls)
    unknown, missing = sorted(keys - expected), sorted(expected - keys)
    if unknown or missing:
        what = "; ".join(f"{label} {', '.join(names)}" for label, names in (("unknown keys", unknown),
                                                                             ("missing keys", missing)) if names)
        raise InputError(f"{where}: not a {cls.__name__} config ({what}); {fix}")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0].strip() if text else type(exc).__name__


def read_config(folder: str | Path, cls: type, fix: str) -> dict[str, Any]:
    """`folder/config.json` as a dict, checked to be a config of `cls` (`check_config_keys`)."""
    file = Path(folder) / CONFIG_NAME
    try:
        data = json.loads(file.read_text())
    except (OSError, ValueError) as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise InputError(f"{file}: unreadable config ({_first_line(exc)}); {fix}") from None
    if not isinstance(data, dict):
        raise InputError(f"{file}: not a {cls.__name__} config (not a JSON object); {fix}")
    name = data.get("_class_name", cls.__name__)
    if name != cls.__name__:
        raise InputError(f"{file}: a {name} config, not a {cls.__name__} one; {fix}")
    check_config_keys(data, cls, str(file), fix)
    return data


@contextmanager
def _quiet_diffusers():
    """diffusers logs missing / unexpected tensors as warnings; they become the InputError here."""
    from diffusers.utils import logging as dlogging

    level = dlogging.get_verbosity()
    dlogging.set_verbosity_error()
    try:
        yield
    finally:
        dlogging.set_verbosity(level)


def _names(keys: list[str], most: int = 3) -> str:
    shown = ", ".join(sorted(keys)[:most])
    return shown + (f" (+{len(keys) - most} more)" if len(keys) > most else "")


def load_pretrained(cls: Any, folder: str | Path, fix: str, what: str) -> Any:
    """`cls.from_pretrained(folder)` on the CPU in eval mode, its config checked first
    (`read_config`). A missing folder or file, a truncated weights file (`diffaug.io.weights_error`)
    and weights that do not fit the config are each one InputError line ending in `fix`."""
    from safetensors import SafetensorError

    from diffaug.io import weights_error

    folder = Path(folder)
    weights = folder / WEIGHTS_NAME
    if not (folder / CONFIG_NAME).is_file() or not weights.is_file():
        raise InputError(f"{folder}: no {what} ({CONFIG_NAME} + {WEIGHTS_NAME}); {fix}")
    read_config(folder, cls, fix)
    try:
        with _quiet_diffusers():
            model, info = cls.from_pretrained(folder, use_safetensors=True, local_files_only=True,
                                              output_loading_info=True)
    except InputError:
        raise
    except (OSError, SafetensorError) as exc:  # diffusers wraps safetensors' error in an OSError
        raise weights_error(weights, exc, fix) from None
    except (ValueError, RuntimeError, TypeError) as exc:  # a tensor shape, or a value, the config does not build
        raise InputError(f"{weights}: does not fit {CONFIG_NAME} ({_first_line(exc)}); {fix}") from None
    problems = [f"{label} {_names(info[key])}" for label, key in (("missing tensors", "missing_keys"),
                                                                 ("unexpected tensors", "unexpected_keys"))
                if info[key]]
    if problems:
        raise InputError(f"{weights}: does not fit {CONFIG_NAME} ({'; '.join(problems)}); {fix}")
    return model.eval()


__all__ = ["CONFIG_NAME", "WEIGHTS_NAME", "check_config_keys", "init_keys", "load_pretrained", "public_config",
           "read_config"]
