"""A truncated weights file (a copy cut short, a full disk) of the generator, the validator or a
segmenter: one InputError line naming the file and the stage to rerun, never a traceback."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from diffaug.cli import app
from diffaug.errors import InputError
from generate_support import make_generator, make_prepared

runner = CliRunner()


def truncate(path: Path) -> None:
    """Keep the first half of the file, as an interrupted copy would."""
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def assert_one_line(exc: InputError, path: Path, stage: str) -> None:
    msg = str(exc)
    assert "\n" not in msg, msg
    assert msg.startswith(f"{path}: unreadable or truncated weights (SafetensorError: "), msg
    assert msg.endswith(f"; rerun dvc repro {stage}"), msg


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("corrupt")
    return make_prepared(root / "prepared", size=32, normals=2, train=4, test=2), make_generator(root / "generator")


@pytest.fixture
def generator_copy(folders, tmp_path):
    """A private copy of the tiny generator folder, so one test's truncation stays its own."""
    return Path(shutil.copytree(folders[1], tmp_path / "generator"))


@pytest.mark.parametrize("part", ["unet", "vae"])
def test_truncated_generator_weights(generator_copy, part):
    from diffaug.generator.models import load_generator

    weights = generator_copy / part / "diffusion_pytorch_model.safetensors"
    truncate(weights)
    with pytest.raises(InputError) as info:
        load_generator(generator_copy)
    assert_one_line(info.value, weights, "finetune_generator")


def test_generate_cli_truncated_unet_one_line_exit_1(folders, generator_copy, tmp_path, write_params):
    weights = generator_copy / "unet" / "diffusion_pytorch_model.safetensors"
    truncate(weights)
    params = write_params({"base": {"seed": 0, "device": "cpu"}, "generate": {"variants": 1, "steps": 1}})
    result = runner.invoke(app, ["generate", "--params", str(params), "--generator", str(generator_copy),
                                 "--prepared", str(folders[0]), "--out", str(tmp_path / "raw"),
                                 "--metrics", str(tmp_path / "generate.json"), "--timings", str(tmp_path / "t.json")])
    assert result.exit_code == 1, result.output
    err = result.stderr.strip()
    assert err.startswith(f"error: {weights}: unreadable or truncated weights (SafetensorError: "), err
    assert "\n" not in err and "Traceback" not in result.output, result.output
    assert not (tmp_path / "raw").exists()


def test_truncated_validator_weights(tmp_path):
    """from_pretrained raises an OSError wrapping safetensors' error; it becomes the same one line."""
    from diffaug.pretrained import WEIGHTS_NAME
    from diffaug.validator.loading import load_validator_net
    from diffaug.validator.model import ValidatorNet

    torch.manual_seed(0)
    net = ValidatorNet(latent_channels=4, vae_downsample=2, num_classes=1, codec_channels=[8, 8],
                       vision_channels=8, unet_block_out_channels=[16, 32], norm_num_groups=8)
    net.save_pretrained(tmp_path / "validator")
    load_validator_net(tmp_path / "validator")  # the intact file loads
    weights = tmp_path / "validator" / WEIGHTS_NAME
    truncate(weights)
    with pytest.raises(InputError) as info:
        load_validator_net(tmp_path / "validator")
    assert_one_line(info.value, weights, "train_validator")


def test_truncated_segmenter_weights(tmp_path):
    from diffaug.pretrained import WEIGHTS_NAME
    from diffaug.segmenter.models import SegmenterNet, load_segmenter, save_segmenter

    torch.manual_seed(0)
    net = SegmenterNet(architecture="unet", num_classes=2, image_size=32, channels=[4, 8])
    save_segmenter(tmp_path / "none-s0", net, {"variant": "none"})
    load_segmenter(tmp_path / "none-s0")
    weights = tmp_path / "none-s0" / WEIGHTS_NAME
    truncate(weights)
    with pytest.raises(InputError) as info:
        load_segmenter(tmp_path / "none-s0")
    assert_one_line(info.value, weights, "train_segmenter")


def test_weights_error_reports_the_safetensors_cause_a_loader_wrapped():
    """diffusers re-raises safetensors' error as a vague OSError; the message keeps the cause."""
    from safetensors import SafetensorError

    from diffaug.io import weights_error

    try:
        try:
            raise SafetensorError("Error while deserializing header: header too small")
        except SafetensorError:
            raise OSError("Unable to load weights from checkpoint file") from None  # as diffusers does
    except OSError as exc:
        msg = str(weights_error(Path("w.safetensors"), exc, "rerun x"))
    assert msg == ("w.safetensors: unreadable or truncated weights "
                   "(SafetensorError: Error while deserializing header: header too small); rerun x")
