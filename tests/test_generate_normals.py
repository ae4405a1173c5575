"""Lesion-free backgrounds made by the generator (`generate.normals`): on a folder data set whose
normals are prepare's classical fills, generate repaints each lesion hole from the original frame
with a tiny generator, records the method, writes backgrounds.npz and the before/after preview;
`classical` keeps prepare's fill; a generator without phase (b) is refused in one line."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from scipy import ndimage

from diffaug.config import BaseConfig, parse_section
from diffaug.data.normals import lesion_hole
from diffaug.errors import InputError
from diffaug.generator.stage_generate import run_generate
from diffaug.io import load_npz
from generate_support import make_generator
from prepare_trees import write_folder

S = 32
GEN = {"variants": 1, "steps": 2, "batch_size": 4, "compare_stock": False, "preview_samples": 2}


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    from diffaug.data.stage_prepare import run_prepare

    root = tmp_path_factory.mktemp("normals")
    data = write_folder(root / "folder", n=8, size=S)
    cfg = parse_section("prepare", {"dataset": "folder", "root": str(data), "image_size": S, "preview_count": 2,
                                    "test_ratio": 0.25})
    run_prepare(cfg, 0, root / "prepared", root / "prepare.json")
    generator = make_generator(root / "generator", size=S)
    meta = json.loads((generator / "diffaug_generator.json").read_text())
    meta["phases"] = {"vae": 2, "pretrain": 2, "finetune": 2}  # as finetune_generator records them
    (generator / "diffaug_generator.json").write_text(json.dumps(meta))
    return root / "prepared", generator


def _generate(prepared, generator, out, **normals):
    cfg = parse_section("generate", {**GEN, "normals": normals})
    banks = parse_section("finetune_generator", {}).prompts
    return run_generate(generator, prepared, out, out.parent / f"{out.name}.json", cfg, BaseConfig(seed=0, device="cpu"), banks)


def test_generator_repaints_the_hole_of_every_filled_background(folders, tmp_path):
    prepared, generator = folders
    normals, train = load_npz(prepared / "normals.npz"), load_npz(prepared / "train.npz")
    sources = pd.read_csv(prepared / "manifest.csv").query("split == 'normals'")["source"]
    assert sources.str.startswith("inpainted:").all() and len(normals["ids"]) > 0

    metrics = _generate(prepared, generator, tmp_path / "raw", method="generator")
    bg = load_npz(tmp_path / "raw" / "backgrounds.npz")
    assert list(bg["ids"]) == list(normals["ids"]) and set(bg["methods"]) == {"generator"}
    assert metrics["n_backgrounds_generator"] == len(normals["ids"]) and metrics["normals_method"] == "generator"
    where = {f"normal-{t}": k for k, t in enumerate(train["ids"])}
    for i, nid in enumerate(bg["ids"]):
        frame, mask = train["images"][where[nid]], train["masks"][where[nid]] >= 1
        hole = lesion_hole(mask)
        far = ~ndimage.binary_dilation(hole, iterations=6)
        assert np.array_equal(bg["images"][i][far], frame[far]), "outside the hole the frame's own pixels"
        assert not np.array_equal(bg["images"][i][hole], normals["images"][i][hole]), "the hole is repainted"
        assert not np.array_equal(bg["images"][i][mask], frame[mask]), "the lesion is gone"
    man = pd.read_csv(tmp_path / "raw" / "manifest.csv")
    assert set(man["background_method"]) == {"generator"}
    with Image.open(tmp_path / "raw" / "backgrounds.png") as im:
        assert im.width > 3 * S and im.height > S

    again = _generate(prepared, generator, tmp_path / "raw2", method="generator")
    assert np.array_equal(load_npz(tmp_path / "raw2" / "backgrounds.npz")["images"], bg["images"])
    assert again["n_samples"] == metrics["n_samples"]


def test_classical_keeps_prepares_fill(folders, tmp_path):
    prepared, generator = folders
    _generate(prepared, generator, tmp_path / "raw")  # the default
    bg = load_npz(tmp_path / "raw" / "backgrounds.npz")
    assert np.array_equal(bg["images"], load_npz(prepared / "normals.npz")["images"])
    assert set(bg["methods"]) == {"classical"}


def test_generator_without_phase_b_is_refused_in_one_line(folders, tmp_path):
    prepared, _ = folders
    bare = make_generator(tmp_path / "bare", size=S)  # no recorded phases: never trained to fill holes
    with pytest.raises(InputError) as err:
        _generate(prepared, bare, tmp_path / "raw", method="generator")
    msg = str(err.value)
    assert "phase-(b)" in msg and "generate.normals.method: classical" in msg and "\n" not in msg
    assert not (tmp_path / "raw").exists()
