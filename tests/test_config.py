"""params.yaml parsing: typed sections, one-line errors naming the key."""

from __future__ import annotations

import pytest

from diffaug.config import BaseConfig, load_params, load_section
from diffaug.errors import ConfigError


def test_defaults_when_section_absent(write_params):
    path = write_params({"base": {"seed": 3}})
    base = load_section(path, "base", BaseConfig)
    assert base.seed == 3 and base.device == "auto" and base.dtype == "float32"


def test_repository_params_are_valid(repo_root):
    """Every section of the shipped params.yaml validates (so `dvc repro` cannot fail on params)."""
    from diffaug.config import SECTIONS, read_params_file, section_class

    raw = read_params_file(repo_root / "params.yaml")
    for name in raw:
        assert name in SECTIONS
        section_class(name).model_validate(raw[name] or {})


@pytest.mark.parametrize(
    ("sections", "expected"),
    [
        ({"base": {"sed": 1}}, "base.sed: unknown key; allowed keys in 'base': seed, device"),
        ({"base": {"seed": "abc"}}, "base.seed: Input should be a valid integer"),
        ({"base": {"device": "tpu"}}, "base.device: must be one of 'auto', 'cpu' or 'cuda' (got 'tpu')"),
        ({"bse": {}}, "unknown section 'bse'; allowed sections: base, prepare"),
        ({"base": [1, 2]}, "base: must be a mapping of keys"),
    ],
)
def test_bad_values_give_one_line_naming_the_key(write_params, sections, expected):
    path = write_params(sections)
    with pytest.raises(ConfigError) as exc:
        load_params(path)
    msg = str(exc.value)
    assert expected in msg
    assert "\n" not in msg
    assert str(path) in msg
    assert exc.value.exit_code == 2


def test_missing_and_malformed_file(tmp_path):
    with pytest.raises(ConfigError, match="params file not found"):
        load_params(tmp_path / "nope.yaml")
    bad = tmp_path / "params.yaml"
    bad.write_text("base: [unclosed\n")
    with pytest.raises(ConfigError, match=r"not valid YAML"):
        load_params(bad)


def test_overlay_merges_validates_and_keeps_comments(tmp_path):
    from diffaug.config import apply_overlay

    params = tmp_path / "params.yaml"
    params.write_text("base:\n  seed: 1  # the seed\n  device: cpu\n")
    overlay = tmp_path / "overlay.yaml"
    overlay.write_text("base:\n  seed: 7\n")
    merged = apply_overlay(params, overlay)
    assert merged["base"] == {"seed": 7, "device": "cpu"}
    text = params.read_text()
    assert "# the seed" in text and "seed: 7" in text

    overlay.write_text("base:\n  device: tpu\n")
    with pytest.raises(ConfigError, match="base.device"):
        apply_overlay(params, overlay)
    assert "seed: 7" in params.read_text() and "device: cpu" in params.read_text()


def test_overlay_command(tmp_path, repo_root):
    import shutil

    from typer.testing import CliRunner

    from diffaug.cli import app

    params = tmp_path / "params.yaml"
    shutil.copy(repo_root / "params.yaml", params)
    runner = CliRunner()
    res = runner.invoke(app, ["overlay", str(repo_root / "params" / "smoke.yaml"), "--params", str(params)])
    assert res.exit_code == 0, res.output
    text = params.read_text()
    assert "    train: 24             # labelled training frames" in text  # value changed, comment kept
    assert "root: null" in text  # nulls stay spelt as in params.yaml
    assert load_params(params, "generate")[1].variants == 2

    bad = tmp_path / "bad.yaml"
    bad.write_text("gate:\n  threshold: 1.5\n")
    before = params.read_text()
    res = runner.invoke(app, ["overlay", str(bad), "--params", str(params)])
    assert res.exit_code == 2 and "gate.threshold" in res.output and res.output.strip().count("\n") == 0
    assert params.read_text() == before
    res = runner.invoke(app, ["overlay", str(tmp_path / "missing.yaml"), "--params", str(params)])
    assert res.exit_code == 1 and "overlay not found" in res.output
