"""Typed, validated configuration read from params.yaml.

Every stage has one section of the same name; `base` is shared (seed, device, dtype). Each
section is a pydantic model that forbids unknown keys, so a typo is an error, not a silent
default. The models live next to the code they configure (e.g. `diffaug.data.config`); this
module only knows where to find them and how to turn validation errors into one line.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from diffaug.errors import ConfigError


class Section(BaseModel):
    """Base of every params section: unknown keys are errors, values are validated on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False)


class BaseConfig(Section):
    """`base`: settings every stage shares."""

    seed: int = 0  # feeds every random choice through explicit generators
    device: Literal["auto", "cpu", "cuda"] = "auto"  # auto = cuda when available, else cpu
    dtype: Literal["float32", "float16", "bfloat16"] = "float32"  # weights/activations on GPU
    num_threads: int = 0  # torch intra-op threads on CPU; 0 = leave torch's default


# Section name -> "module:Class". Imported lazily so that `diffaug --help` stays fast and a
# stage only imports the code it needs.
SECTIONS: dict[str, str] = {
    "base": "diffaug.config:BaseConfig",
    "prepare": "diffaug.data.config:PrepareConfig",
    "finetune_generator": "diffaug.generator.config:FinetuneGeneratorConfig",
    "generate": "diffaug.generator.config:GenerateConfig",
    "train_validator": "diffaug.validator.config:TrainValidatorConfig",
    "gate": "diffaug.validator.config:GateConfig",
    "train_segmenter": "diffaug.segmenter.config:TrainSegmenterConfig",
    "evaluate": "diffaug.evaluation.config:EvaluateConfig",
    "benchmark": "diffaug.benchmark.config:BenchmarkConfig",
}

S = TypeVar("S", bound=Section)


def section_class(name: str) -> type[Section]:
    if name not in SECTIONS:
        raise ConfigError(f"params: unknown section '{name}'; allowed: {', '.join(SECTIONS)}")
    module, cls = SECTIONS[name].split(":")
    return getattr(importlib.import_module(module), cls)


def read_params_file(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: params file not found; run from the repository root or pass --params")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise ConfigError(f"{path}{where}: not valid YAML; fix the syntax") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: top level must be a mapping of sections")
    unknown = sorted(set(raw) - set(SECTIONS))
    if unknown:
        raise ConfigError(
            f"{path}: unknown section '{unknown[0]}'; allowed sections: {', '.join(SECTIONS)}"
        )
    return raw


def format_validation_error(path: str | Path, section: str, exc: ValidationError) -> str:
    """One line: file, dotted key, what is wrong / allowed, and the value given."""
    err = exc.errors()[0]
    key = ".".join([section, *(str(p) for p in err["loc"])])
    msg = err["msg"]
    if err["type"] == "extra_forbidden":
        allowed = ", ".join(section_class(section).model_fields)
        msg = f"unknown key; allowed keys in '{section}': {allowed}"
    elif err["type"].startswith("literal_error"):
        msg = msg.replace("Input should be", "must be one of")
    given = err.get("input")
    # a check over a whole (sub)section gets the section as input: echoing it buries the message
    quiet = err["type"] in ("extra_forbidden", "missing") or isinstance(given, dict)
    given_s = "" if quiet else f" (got {given!r})"
    return f"{path}: {key}: {msg}{given_s}"


def parse_section(name: str, values: dict[str, Any] | None, path: str | Path = "params.yaml") -> Section:
    cls = section_class(name)
    try:
        return cls.model_validate(values or {})
    except ValidationError as exc:
        raise ConfigError(format_validation_error(path, name, exc)) from None


def load_section(path: str | Path, name: str, cls: type[S] | None = None) -> S:
    """Read params.yaml and return the validated section `name` (defaults for absent keys)."""
    raw = read_params_file(path)
    if name in raw and raw[name] is not None and not isinstance(raw[name], dict):
        raise ConfigError(f"{path}: {name}: must be a mapping of keys, got {type(raw[name]).__name__}")
    section = parse_section(name, raw.get(name), path)
    if cls is not None and not isinstance(section, cls):
        raise TypeError(f"section {name} is {type(section).__name__}, expected {cls.__name__}")
    return section  # type: ignore[return-value]


def load_params(path: str | Path, *names: str) -> tuple[BaseConfig, ...]:
    """Validate `base` and the given sections; returns (base, *sections) in that order."""
    base = load_section(path, "base", BaseConfig)
    return (base, *(load_section(path, n) for n in names))


def deep_merge(base: dict[str, Any], overlay: dict[str, Any]) -> dict[str, Any]:
    """Overlay nested mappings key by key (lists and scalars are replaced, not merged)."""
    out = dict(base)
    for key, value in overlay.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def apply_overlay(params_path: str | Path, overlay_path: str | Path) -> dict[str, Any]:
    """Merge a params overlay (e.g. params/sd2_inpainting_kvasir.yaml) into params.yaml in place.

    The merged result is validated section by section before anything is written, so a bad
    overlay leaves params.yaml untouched; comments in params.yaml are kept (ruamel round trip).
    """
    from ruamel.yaml import YAML

    from diffaug.io import atomic_file

    merged = deep_merge(read_params_file(params_path), read_params_file(overlay_path))
    for name, values in merged.items():
        parse_section(name, values, overlay_path)

    rt = YAML()  # round-trip mode keeps comments and key order
    rt.preserve_quotes = True
    rt.width = 4096  # never re-wrap long lines
    # write None as `null`, as params.yaml spells it, not as an empty value
    rt.representer.add_representer(
        type(None), lambda rep, _: rep.represent_scalar("tag:yaml.org,2002:null", "null")
    )
    doc = rt.load(Path(params_path).read_text())

    def _set(node: Any, values: dict[str, Any]) -> None:
        for key, value in values.items():
            if isinstance(value, dict) and isinstance(node.get(key), dict):
                _set(node[key], value)
            else:
                node[key] = value

    _set(doc, read_params_file(overlay_path))
    with atomic_file(params_path) as tmp, open(tmp, "w") as fh:
        rt.dump(doc, fh)
    return merged
