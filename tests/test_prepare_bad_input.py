"""Every bad input (docs/datasets.md, "What is checked") through the real CLI: one line naming
the file and what to do, a non-zero exit, and the output folder exactly as it was."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import yaml
from PIL import Image
from typer.testing import CliRunner

from diffaug.cli import app
from tests.prepare_trees import write_deep_tiff, write_folder, write_kvasir

runner = CliRunner()


def _snapshot(folder):
    """Every file under `folder` (and the folder's siblings) with its content hash."""
    return {
        str(p.relative_to(folder.parent)): hashlib.md5(p.read_bytes()).hexdigest() if p.is_file() else "dir"
        for p in sorted(folder.parent.rglob("*"))
    }


@pytest.fixture
def workspace(tmp_path):
    """A good prepared output already in place (data/prepared), plus a params writer."""
    data = tmp_path / "data"
    root = write_folder(tmp_path / "raw", n=6, size=24)
    params = tmp_path / "params.yaml"

    def invoke(prepare: dict):
        params.write_text(yaml.safe_dump({"base": {"seed": 0}, "prepare": {"image_size": 16, **prepare}}))
        return runner.invoke(app, ["prepare", "--params", str(params), "--out", str(data / "prepared"),
                                   "--metrics", str(data / "prepare.json")])

    ok = invoke({"dataset": "folder", "root": str(root)})
    assert ok.exit_code == 0, ok.output
    return root, data, invoke


def _grey(arr):
    return Image.fromarray(np.asarray(arr, np.uint8))


CASES = {
    # name: (how to break the tree, text the one-line message must contain)
    "truncated_image": (lambda r: (r / "images" / "case00.png").write_bytes((r / "images" / "case00.png").read_bytes()[:200]),
                        "case00.png: cannot read image"),
    "image_without_mask": (lambda r: (r / "masks" / "case01.png").unlink(), "case01.png: image has no mask"),
    "mask_without_image": (lambda r: (r / "images" / "case02.png").unlink(), "case02.png: mask has no image"),
    "mask_size_differs": (lambda r: _grey(np.pad(np.asarray(Image.open(r / "masks" / "case03.png")), 2)).save(r / "masks" / "case03.png"),
                          "case03.png: mask is 28×28 but its image case03.png is 24×24"),
    "empty_mask": (lambda r: _grey(np.zeros((24, 24))).save(r / "masks" / "case04.png"), "case04.png: mask is empty"),
    "non_binary_mask": (lambda r: _grey(np.arange(24 * 24).reshape(24, 24) % 3).save(r / "masks" / "case05.png"),
                        "case05.png: mask is not binary"),
    "grey_photo_as_mask": (lambda r: _grey(np.tile(np.linspace(0, 255, 24), (24, 1))).save(r / "masks" / "case05.png"),
                           "case05.png: mask is not binary"),
    "duplicate_stems": (lambda r: Image.open(r / "images" / "case00.png").convert("RGB").save(r / "images" / "case00.jpg"),
                        "duplicate stem 'case00'"),
    "empty_folder": (lambda r: [p.unlink() for p in (r / "images").iterdir()], "no images"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_one_line_nonzero_exit_output_unchanged(workspace, case):
    root, data, invoke = workspace
    before = _snapshot(data / "prepared")
    breaker, expected = CASES[case]
    breaker(root)
    result = invoke({"dataset": "folder", "root": str(root)})
    assert result.exit_code == 1, result.output
    err = result.stderr.strip()
    assert err.startswith("error: ") and "\n" not in err, err
    assert expected in err, err
    assert "Traceback" not in result.output
    assert _snapshot(data / "prepared") == before  # no partial output, no temp folders left


def test_empty_masks_can_be_used_as_normals(workspace):
    root, data, invoke = workspace
    _grey(np.zeros((24, 24))).save(root / "masks" / "case04.png")
    result = invoke({"dataset": "folder", "root": str(root), "empty_masks": "normal", "test_ratio": 0.2})
    assert result.exit_code == 0, result.output
    from diffaug.data.prepared import load_split

    normals = load_split(data / "prepared", "normals")
    train, test = load_split(data / "prepared", "train"), load_split(data / "prepared", "test")
    if "case04" in set(test.ids):  # a lesion-free test frame stays, as a negative
        assert test.masks[list(test.ids).index("case04")].max() == 0
    else:
        assert "normal-case04" in set(normals.ids) and "case04" not in set(train.ids)


def test_grayscale_and_rgba_images_are_fixed_and_counted(workspace):
    root, data, invoke = workspace
    Image.open(root / "images" / "case00.png").convert("L").save(root / "images" / "case00.png")
    Image.open(root / "images" / "case01.png").convert("RGBA").save(root / "images" / "case01.png")
    result = invoke({"dataset": "folder", "root": str(root)})
    assert result.exit_code == 0, result.output
    from diffaug.data.prepared import load_fingerprint

    fixes = load_fingerprint(data / "prepared")["fixes"]
    assert fixes["grayscale_to_rgb"] == 1 and fixes["rgba_to_rgb"] == 1


@pytest.mark.parametrize(
    ("prepare", "code", "expected"),
    [
        ({"dataset": "imagenet"}, 2, "prepare.dataset: must be one of 'phantom', 'kvasir_seg'"),
        ({"dataset": "kvasir_seg"}, 2, "dataset 'kvasir_seg' needs prepare.root"),
        ({"dataset": "kvasir_seg", "root": "/nonexistent/kvasir"}, 1, "/nonexistent/kvasir: prepare.root does not exist"),
        ({"image_size": 60}, 2, "prepare.image_size: Value error, must be a multiple of 8"),
        ({"phantom": {"family": "retina"}}, 2, "prepare.phantom.family: must be one of 'polyp' or 'fundus'"),
        ({"test_ratio": 1.5}, 2, "prepare.test_ratio: Input should be less than 1"),
    ],
)
def test_bad_params_and_missing_root(workspace, prepare, code, expected):
    _, data, invoke = workspace
    before = _snapshot(data / "prepared")
    result = invoke(prepare)
    assert result.exit_code == code, result.output
    err = result.stderr.strip()
    assert expected in err and "\n" not in err, err
    assert _snapshot(data / "prepared") == before


def test_root_that_is_a_file_gets_its_own_line(workspace):
    root, data, invoke = workspace
    path = root / "images" / "case00.png"
    result = invoke({"dataset": "folder", "root": str(path)})
    assert result.exit_code == 1, result.output
    assert result.stderr.strip() == f"error: {path}: is a file, not a folder; set prepare.root to the data set's folder"


def test_missing_root_is_one_short_line_without_the_params_section(workspace):
    _, data, invoke = workspace
    before = _snapshot(data / "prepared")
    result = invoke({"dataset": "kvasir_seg", "test_ratio": 0.2, "train_limit": 100, "small_area_frac": 0.05,
                     "flat_contrast": 0.06, "max_normals": 200, "empty_masks": "error", "preview_count": 24,
                     "images_dir": "images", "masks_dir": "masks", "split_files": {"train": "train.txt"}})
    assert result.exit_code == 2, result.output
    err = result.stderr.strip()
    assert err.endswith("prepare: Value error, dataset 'kvasir_seg' needs prepare.root: the folder holding the data set"), err
    assert "\n" not in err and "{" not in err and len(err) < 200, err
    assert _snapshot(data / "prepared") == before


@pytest.mark.parametrize("bits", [12, 16])
def test_deep_rgb_tiff_is_rescaled_by_its_bit_depth_and_counted(workspace, bits):
    """Pillow opens a 16-bit RGB TIFF as 8-bit RGB from the high bytes (a 12-bit frame comes out
    nearly black); prepare reads the full samples and gives the same frame as the 8-bit PNG."""
    import json

    from diffaug.data.prepared import load_fingerprint, load_split

    root, data, invoke = workspace

    def frame(stem):
        for split in ("train", "test"):
            s = load_split(data / "prepared", split)
            if stem in s.ids:
                return s.images[list(s.ids).index(stem)]
        raise AssertionError(stem)

    expected = frame("case00")
    png = root / "images" / "case00.png"
    tif = write_deep_tiff(root / "images" / "case00.tif", np.asarray(Image.open(png).convert("RGB")), bits)
    png.unlink()
    if bits == 12:
        with Image.open(tif) as im:
            assert im.mode == "RGB" and np.asarray(im).max() <= 15  # the fault: high bytes only
    result = invoke({"dataset": "folder", "root": str(root)})
    assert result.exit_code == 0, result.output
    np.testing.assert_array_equal(frame("case00"), expected)
    metrics = json.loads((data / "prepare.json").read_text())
    other = 16 if bits == 12 else 12
    assert metrics[f"n_rescaled_{bits}bit"] == 1 and metrics[f"n_rescaled_{other}bit"] == 0
    fixes = load_fingerprint(data / "prepared")["fixes"]
    assert fixes == {"high_bit_depth": 1} and metrics["fixes_total"] == 1  # docs: 16-bit → 8-bit is a counted fix


def test_wrong_layout_says_which_folders_were_tried(tmp_path):
    root = write_kvasir(tmp_path / "kv", n=3)
    (root / "masks").rename(root / "labels")
    params = tmp_path / "p.yaml"
    params.write_text(yaml.safe_dump({"prepare": {"dataset": "kvasir_seg", "root": str(root), "image_size": 16}}))
    result = runner.invoke(app, ["prepare", "--params", str(params), "--out", str(tmp_path / "out"),
                                 "--metrics", str(tmp_path / "m.json")])
    assert result.exit_code == 1
    assert "no kvasir_seg layout found (tried images/ + masks/" in result.stderr
    assert "prepare.images_dir" in result.stderr and not (tmp_path / "out").exists()
