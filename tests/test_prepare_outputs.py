"""`diffaug prepare` on the phantom: the prepared-data contract of docs/architecture.md."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml
from PIL import Image
from typer.testing import CliRunner

from diffaug.cli import app
from diffaug.data.prepared import MANIFEST_COLUMNS, load_fingerprint, load_manifest, load_split
from diffaug.data.preview import BANK_COLOURS, LABEL_PX
from diffaug.errors import InputError


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("prep")
    params = tmp / "params.yaml"
    params.write_text(yaml.safe_dump({"base": {"seed": 3}, "prepare": {
        "image_size": 32, "preview_count": 6, "phantom": {"train": 10, "test": 5, "normals": 4, "unlabelled": 7}}}))
    result = CliRunner().invoke(app, ["prepare", "--params", str(params), "--out", str(tmp / "prepared"),
                                      "--metrics", str(tmp / "metrics" / "prepare.json")])
    assert result.exit_code == 0, result.output
    assert "train 10, test 5, normals 4" in result.stdout
    return tmp


def test_split_files_follow_the_contract(prepared):
    out = prepared / "prepared"
    for name, n in (("train", 10), ("test", 5), ("normals", 4)):
        split = load_split(out, name)
        assert split.images.shape == (n, 32, 32, 3) and split.images.dtype == np.uint8
        assert split.masks.shape == (n, 32, 32) and split.masks.dtype == np.uint8
        assert split.ids.dtype.kind == "U" and len(set(split.ids)) == n
        assert list(split.table["id"]) == list(split.ids)  # manifest rows aligned with the arrays
        assert split["images"] is split.images
    with np.load(out / "train.npz", allow_pickle=False) as raw:  # plain npz, no pickles
        assert sorted(raw.files) == ["ids", "images", "masks"]


def test_manifest_mask_bank_fingerprint_preview(prepared):
    out = prepared / "prepared"
    manifest = load_manifest(out)
    assert list(manifest.columns) == MANIFEST_COLUMNS
    assert manifest["split"].value_counts().to_dict() == {"train": 10, "test": 5, "normals": 4}
    lesioned = manifest[manifest.split != "normals"]
    assert (lesioned.lesion_area_frac > 0).all() and set(lesioned.size_class) <= {"small", "large"}
    assert (manifest[manifest.split == "normals"].size_class == "none").all()
    assert manifest.cdr.isna().all() and manifest.flat.dtype == bool

    bank = load_split(out, "mask_bank")
    assert bank.images is None and len(bank) >= 10 and set(np.unique(bank.masks)) == {0, 1}
    assert set(bank.ids) == set(load_split(out, "train").ids)  # one shape per lesion, every frame has one
    row = bank.table.iloc[0]
    ys, xs = np.nonzero(bank.masks[0])
    assert row.height == ys.max() - ys.min() + 1 and row.width == xs.max() - xs.min() + 1
    assert abs(row.area_frac - bank.masks[0].mean()) < 1e-5

    fp = load_fingerprint(out)
    for key in ("family", "num_classes", "class_names", "image_size", "counts", "intensity", "lesion_area",
                "size_classes", "contrast", "fixes", "small_area_frac", "cdr", "threshold_baseline"):
        assert key in fp, key
    assert fp["counts"] == {"train": 10, "test": 5, "normals": 4, "mask_bank": len(bank), "unlabelled": 7}
    assert fp["image_size"] == 32 and fp["size_classes"]["thresholds"]["small"] == 0.05
    assert sum(fp["lesion_area"]["counts"]) == 10 and len(fp["intensity"]["mean"]) == 3
    assert sum(fp["size_classes"]["counts"]["test"].values()) == 5

    with Image.open(out / "preview.png") as im:
        assert im.mode == "RGB"
        pic = np.asarray(im)
    # a title line, then three labelled sections of one row each: the 6 train frames (32 px → 128 px
    # tiles, 2 px gutters), the 4 normals, the first 8 mask-bank shapes (the widest row)
    row = 128 + 2 * 2
    assert pic.shape == (LABEL_PX + 3 * (LABEL_PX + row), 8 * (128 + 2) + 2, 3)
    tops = [0, LABEL_PX, 2 * LABEL_PX + row, 3 * LABEL_PX + 2 * row]  # title, train, normals, bank labels
    for top in tops:  # every label band holds text
        assert (pic[top:top + LABEL_PX].min(axis=2) > 150).sum() > 50, top
    train_label = pic[tops[1]:tops[1] + LABEL_PX].astype(int)  # "polyp" in its contour colour (green)
    assert ((train_label[..., 1] > 150) & (train_label[..., 0] < 120)).sum() > 10
    first_bank = pic[tops[3] + LABEL_PX + 2:tops[3] + LABEL_PX + 2 + 128, 2:130]
    assert set(np.unique(first_bank)) == set(BANK_COLOURS)  # shape light on dark, nothing else
    shape = np.kron(bank.masks[0], np.ones((4, 4)))  # the first bank mask, upscaled like its tile
    assert (first_bank[..., 0] == BANK_COLOURS[1]).mean() == pytest.approx(shape.mean())

    metrics = json.loads((prepared / "metrics" / "prepare.json").read_text())
    assert metrics["n_train"] == 10 and metrics["n_mask_bank"] == len(bank) and metrics["fixes_total"] == 0
    assert all(not isinstance(v, (dict, list)) for v in metrics.values())  # flat keys


def test_loader_says_to_run_prepare_when_missing(tmp_path):
    with pytest.raises(InputError, match="run `dvc repro prepare`"):
        load_split(tmp_path / "nowhere", "train")
    with pytest.raises(InputError, match="fingerprint not found"):
        load_fingerprint(tmp_path)


def test_help_says_what_it_reads_and_writes():
    result = CliRunner().invoke(app, ["prepare", "--help"])
    assert result.exit_code == 0
    for word in ("train.npz", "fingerprint.json", "preview.png", "--out", "--metrics"):
        assert word in result.stdout


def test_mask_bank_has_one_shape_per_lesion(tmp_path):
    from diffaug.data.prepared import write_prepared
    from diffaug.data.samples import Dataset, Split

    masks = np.zeros((2, 16, 16), np.uint8)
    masks[0, 2:5, 2:5] = 1
    masks[0, 10:14, 9:15] = 1  # a second polyp in the same frame
    masks[0, 0, 15] = 1  # a one-pixel speck: annotation noise, not a lesion
    masks[1, 4:12, 4:12] = 1
    images = np.full((2, 16, 16, 3), 120, np.uint8)
    split = Split(images, masks, ["a", "b"], ["a.png", "b.png"])
    data = Dataset("polyp", "folder", split, split.take([1]), Split.empty(16))
    write_prepared(data, tmp_path, image_size=16, small_area_frac=0.05, flat_contrast=0.06,
                   cdr_normal_max=0.5, preview_count=2)
    bank = load_split(tmp_path, "mask_bank")
    assert list(bank.ids) == ["a", "a", "b"]
    assert list(bank.table[["height", "width"]].itertuples(index=False, name=None)) == [(3, 3), (4, 6), (8, 8)]
    assert list(bank.table["cy"]) == [3.0, 11.5, 7.5] and list(bank.table["size_class"]) == ["small", "large", "large"]
