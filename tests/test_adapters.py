"""Real data-set adapters on small trees written in the distributed formats."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from PIL import Image

from diffaug.data.adapters import resize_mask
from diffaug.data.config import PrepareConfig, SplitFiles
from diffaug.data.stage_prepare import run_prepare
from diffaug.data.prepared import load_fingerprint, load_manifest, load_split
from diffaug.data.readers import read_binary_mask, read_image
from tests.prepare_trees import write_cvc, write_folder, write_kvasir, write_refuge, write_sequence_table


def _run(tmp_path, **cfg):
    out = tmp_path / "prepared"
    metrics = run_prepare(PrepareConfig(image_size=32, **cfg), 0, out, tmp_path / "prepare.json")
    return out, metrics


def test_kvasir_jpeg_masks_varied_sizes_seeded_split(tmp_path):
    root = write_kvasir(tmp_path / "kvasir", n=10)
    out, metrics = _run(tmp_path, dataset="kvasir_seg", root=str(root), test_ratio=0.2)
    train, test = load_split(out, "train"), load_split(out, "test")
    assert (len(train), len(test)) == (8, 2) and metrics["n_train"] == 8
    assert train.images.shape == (8, 32, 32, 3) and set(np.unique(train.masks)) <= {0, 1}
    assert not set(train.ids) & set(test.ids)
    fp = load_fingerprint(out)
    assert fp["fixes"]["binarised_masks"] == 10  # every noisy JPEG mask binarised and counted
    assert fp["split_unit"] == "frame" and fp["family"] == "polyp"
    # normals: training frames with the lesion filled in, marked, zero masks
    normals = load_split(out, "normals")
    assert len(normals) == 8 and normals.masks.max() == 0
    assert normals.table["source"].str.startswith("inpainted:images/").all()
    # the filled region looks like the surrounding tissue, not like the paler lesion
    i = list(train.ids).index(normals.ids[0].removeprefix("normal-"))
    lesion = train.masks[i] == 1
    before = train.images[i][lesion].mean(axis=0)
    after = normals.images[0][lesion].mean(axis=0)
    tissue = train.images[i][~lesion].mean(axis=0)
    assert np.abs(after - tissue).sum() < np.abs(before - tissue).sum() / 2


def test_kvasir_official_split_files_and_train_limit(tmp_path):
    root = write_kvasir(tmp_path / "kvasir", n=10)
    (root / "train.txt").write_text("\n".join(f"cju{i:04d}" for i in range(7)) + "\n")
    (root / "val.txt").write_text("cju0007.jpg\ncju0008\n")
    out, _ = _run(tmp_path, dataset="kvasir_seg", root=str(root),
                  split_files=SplitFiles(train="train.txt", test="val.txt"), train_limit=4)
    train, test = load_split(out, "train"), load_split(out, "test")
    assert list(test.ids) == ["cju0007", "cju0008"]  # cju0009 is in neither list: left out
    assert len(train) == 4 and set(train.ids) <= {f"cju{i:04d}" for i in range(7)}
    assert load_fingerprint(out)["split_unit"] == "official"


def test_cvc_tiff_layout_split_by_sequence(tmp_path):
    root = write_cvc(tmp_path / "CVC-ClinicDB", n=12, float_frame=3)
    with pytest.raises(Exception):  # the float frame is one Pillow refuses
        with Image.open(root / "Original" / "3.tif") as im:
            im.load()
    write_sequence_table(root / "sequences.csv", n=12, per_sequence=3)
    out, _ = _run(tmp_path, dataset="cvc_clinicdb", root=str(root), sequence_table="sequences.csv", test_ratio=0.25)
    manifest = load_manifest(out)
    seq = {str(i): (i - 1) // 3 for i in range(1, 13)}
    train_seqs = {seq[i] for i in manifest.loc[manifest.split == "train", "id"]}
    test_seqs = {seq[i] for i in manifest.loc[manifest.split == "test", "id"]}
    assert test_seqs and not train_seqs & test_seqs  # no sequence straddles train and test
    assert (manifest.split == "test").sum() == 3
    assert "3" in set(manifest["id"])  # the float TIFF was read (by tifffile)
    assert load_fingerprint(out)["split_unit"] == "sequence"


def test_refuge_grey_levels_become_disc_and_cup(tmp_path):
    cdrs = [0.3, 0.35, 0.4, 0.45, 0.55, 0.65, 0.7, 0.8, 0.42, 0.75]
    root = write_refuge(tmp_path / "REFUGE", cdrs)
    out, metrics = _run(tmp_path, dataset="refuge2", root=str(root))
    train = load_split(out, "train")
    assert set(np.unique(train.masks)) == {0, 1, 2}
    # 255 → background at the corners, 0 → cup at the centre of the disc
    assert (train.masks[:, 0, 0] == 0).all() and (train.masks[:, 16, 16] == 2).all()
    fp = load_fingerprint(out)
    assert fp["family"] == "fundus" and fp["num_classes"] == 3 and fp["cdr"] is not None
    normals = load_split(out, "normals")  # CDR < 0.5, disc/cup masks kept
    assert len(normals) >= 1 and normals.masks.max() == 2
    assert (normals.table["cdr"] < 0.5).all()
    assert metrics["cdr_mean_train"] is not None


def test_refuge_plain_layout_png_with_folder_override_and_crop(tmp_path):
    src = write_refuge(tmp_path / "src", [0.3, 0.5, 0.7, 0.4])
    root = tmp_path / "refuge_png"
    (root / "fundus").mkdir(parents=True)
    (root / "gt").mkdir()
    for p in (src / "Training400").rglob("*.jpg"):
        Image.open(p).save(root / "fundus" / f"{p.stem}.png")
    for p in (src / "Annotation-Training400").rglob("*.bmp"):
        Image.open(p).save(root / "gt" / f"{p.stem}.png")
    out, _ = _run(tmp_path, dataset="refuge2", root=str(root), images_dir="fundus", masks_dir="gt",
                  fundus_crop=2.0, test_ratio=0.25)
    train = load_split(out, "train")
    # cropped to 2 disc diameters: the disc fills about half the side
    disc_rows = (train.masks >= 1).any(axis=2).sum(axis=1)
    assert (disc_rows > 12).all()


def test_folder_png_pairs(tmp_path):
    root = write_folder(tmp_path / "mydata", n=8)
    out, metrics = _run(tmp_path, dataset="folder", root=str(root), test_ratio=0.25)
    assert (metrics["n_train"], metrics["n_test"]) == (6, 2)
    bank = load_split(out, "mask_bank")
    assert len(bank) == 6 and list(bank.table.columns) == [
        "mask_id", "source_id", "area_frac", "size_class", "cy", "cx", "height", "width"]
    assert set(bank.table["source_id"]) == set(load_split(out, "train").ids)


def test_safe_fixes_grayscale_rgba_and_noisy_masks(tmp_path):
    fixes: Counter = Counter()
    grey = tmp_path / "g.png"
    Image.fromarray(np.full((8, 8), 100, np.uint8)).save(grey)
    rgba = tmp_path / "a.png"
    Image.fromarray(np.full((8, 8, 4), 100, np.uint8)).save(rgba)
    assert read_image(grey, fixes).shape == (8, 8, 3) and read_image(rgba, fixes).shape == (8, 8, 3)
    noisy = np.zeros((20, 20), np.uint8)
    noisy[5:15, 5:15] = 250
    noisy[5, 5:15] = 140  # compression-like grey edge
    noisy[0, 0] = 3
    path = tmp_path / "m.png"
    Image.fromarray(noisy).save(path)
    mask = read_binary_mask(path, fixes)
    assert mask.sum() == 100 and fixes == Counter(grayscale_to_rgb=1, rgba_to_rgb=1, binarised_masks=1)
    # 12-bit grey frame in a 16-bit TIFF, and a palette PNG
    import tifffile

    tifffile.imwrite(tmp_path / "deep.tif", np.full((8, 8), 4095, np.uint16))
    deep = read_image(tmp_path / "deep.tif", fixes)
    assert deep.shape == (8, 8, 3) and deep.max() == 255
    Image.fromarray(np.full((8, 8, 3), 90, np.uint8)).convert("P").save(tmp_path / "pal.png")
    assert read_image(tmp_path / "pal.png", fixes).shape == (8, 8, 3)
    assert fixes["high_bit_depth"] == 1 and fixes["grayscale_to_rgb"] == 2 and fixes["palette_to_rgb"] == 1


def test_mask_resize_votes_by_area():
    mask = np.zeros((64, 64), np.uint8)
    mask[8:11, 20:23] = 1  # 9 of the 16 pixels of one 4×4 output block → that block is lesion
    mask[40:60, 4:30] = 2  # a larger region of an inner class keeps its area
    small = resize_mask(mask, 16, 3)
    assert small[2, 5] == 1 and (small == 1).sum() == 1
    assert abs((small == 2).mean() - (mask == 2).mean()) < 0.02


def test_refuge_mask_noise_is_snapped_and_foreign_masks_refused(tmp_path):
    from diffaug.data.readers import read_refuge_mask
    from diffaug.errors import InputError

    grey = np.full((16, 16), 255, np.uint8)
    grey[4:12, 4:12] = 128
    grey[6:10, 6:10] = 0
    grey[4, 4] = 140  # compression noise near the 128 level
    path = tmp_path / "n.png"
    Image.fromarray(grey).save(path)
    fixes: Counter = Counter()
    mask = read_refuge_mask(path, fixes)
    assert (mask == 2).sum() == 16 and (mask == 1).sum() == 48 and fixes["quantised_masks"] == 1
    Image.fromarray(np.tile(np.linspace(0, 255, 16), (16, 1)).astype(np.uint8)).save(path)
    with pytest.raises(InputError, match="not a REFUGE disc/cup mask"):
        read_refuge_mask(path, fixes)
