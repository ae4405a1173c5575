"""`diffaug generate` end to end on a small phantom set with a tiny random generator: outputs and
their contract, sharding + merge equal to one process, ablation switches, bad inputs."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy import ndimage
from typer.testing import CliRunner

from diffaug.cli import app
from diffaug.config import parse_section
from diffaug.errors import InputError
from diffaug.generator.compositing import feather_alpha
from diffaug.generator.generate import MANIFEST_COLUMNS, generate_shard, load_inputs, merge_shards, plan_background
from diffaug.generator.models import load_generator
from diffaug.io import load_npz
from generate_support import make_generator, make_prepared

runner = CliRunner()
S = 32
GEN = {"variants": 2, "steps": 2, "batch_size": 4, "guidance_scale": 3.0, "stock_backgrounds": 1,
       "preview_samples": 3}


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("generate")
    prepared = make_prepared(root / "prepared", size=S, normals=3)
    generator = make_generator(root / "generator", size=S)
    return prepared, generator


def _run(write_params, prepared, generator, out, metrics, generate=None, extra=None):
    params = write_params({"base": {"seed": 0, "device": "cpu"}, "generate": {**GEN, **(generate or {})}, **(extra or {})})
    return runner.invoke(app, ["generate", "--params", str(params), "--generator", str(generator),
                               "--prepared", str(prepared), "--out", str(out), "--metrics", str(metrics),
                               "--timings", str(metrics.parent / f"{metrics.stem}.timings.json")])


def test_generate_writes_samples_manifest_preview_and_metrics(folders, tmp_path, write_params):
    prepared, generator = folders
    out, metrics = tmp_path / "raw", tmp_path / "generate.json"
    res = _run(write_params, prepared, generator, out, metrics)
    assert res.exit_code == 0, res.output
    data = load_npz(out / "samples.npz")
    normals = load_npz(prepared / "normals.npz")
    n = len(normals["ids"]) * GEN["variants"]
    assert data["images"].shape == (n, S, S, 3) and data["images"].dtype == np.uint8
    assert data["masks"].shape == (n, S, S) and set(np.unique(data["masks"])) <= {0, 1}
    man = pd.read_csv(out / "manifest.csv", keep_default_na=False)
    assert list(man.columns) == MANIFEST_COLUMNS and len(man) == n
    assert list(man["sample_id"]) == list(data["ids"])
    assert (man["steps"] == 2).all() and (man["guidance_scale"] == 3.0).all()
    assert man["negative_prompt"].str.len().gt(0).all() and man["prompt"].str.len().gt(0).all()
    assert man["seed"].nunique() == n
    json.loads(man["transform"][0])
    for k in range(n):
        bg = normals["images"][list(normals["ids"]).index(man["background_id"][k])]
        lesion = data["masks"][k] > 0
        assert lesion.any()
        far = ~ndimage.binary_dilation(lesion, iterations=5)
        assert np.array_equal(data["images"][k][far], bg[far]), "pixels far from the mask must be the original"
    assert (out / "preview.png").stat().st_size > 0
    m = json.loads(metrics.read_text())
    t = json.loads((metrics.parent / f"{metrics.stem}.timings.json").read_text())
    assert m["n_samples"] == n and t["samples_per_s"] > 0 and t["stage_samples_per_s"] > 0
    assert t["ratio_vs_stock"] > 0 and t["stock_samples"] == GEN["variants"] and "samples_per_s" not in m
    assert not list(tmp_path.glob(".raw*")), "no temporary folders left"


def test_sharded_generation_merges_to_the_single_process_result(folders):
    prepared, generator = folders
    cfg = parse_section("generate", {**GEN, "batch_size": 2, "trace_unet": False})
    banks = parse_section("finetune_generator", {}).prompts
    gen = load_generator(generator)
    inputs = load_inputs(prepared)
    one = generate_shard(gen, inputs, cfg, banks, 7, progress=False)
    shards = [generate_shard(gen, inputs, cfg, banks, 7, rank=r, world=2, progress=False) for r in (1, 0)]
    assert all(len(s.index) for s in shards)
    merged = merge_shards(shards)
    assert np.array_equal(merged.index, one.index)
    assert np.array_equal(merged.images, one.images) and np.array_equal(merged.masks, one.masks)
    assert merged.rows == one.rows


def test_ablation_switches(folders):
    """Prompts are fixed at planning time, so the switches are checked on the plan (no sampling)."""
    prepared, _ = folders
    inputs = load_inputs(prepared)
    banks = parse_section("finetune_generator", {}).prompts
    off = plan_background(inputs, 0, parse_section("generate", {**GEN, "text_guidance": False}), banks, 0)
    assert all(s.row["prompt"] == "" and s.row["negative_prompt"] == "" and s.row["guidance_scale"] == 1.0 for s in off)
    single = plan_background(inputs, 0, parse_section("generate", {**GEN, "single_prompt": True, "variants": 4}), banks, 0)
    assert {s.row["prompt"] for s in single} == {"colon polyp"}
    diverse = [s for i in range(3) for s in plan_background(inputs, i, parse_section("generate", GEN), banks, 0)]
    assert len({s.row["prompt"] for s in diverse}) > 1
    # the same seed plans the same samples (placement, prompt, seed)
    again = plan_background(inputs, 0, parse_section("generate", GEN), banks, 0)
    assert [s.row for s in again] == [s.row for s in diverse[:2]]


def test_real_lesion_init_puts_the_bank_shapes_own_tissue_in_the_painted_region(folders):
    prepared, generator = folders
    inputs = load_inputs(prepared)
    banks = parse_section("finetune_generator", {}).prompts
    cfg = parse_section("generate", {**GEN, "init": "real_lesion", "strength": 0.5, "variants": 4, "trace_unet": False})
    specs = [s for i in range(3) for s in plan_background(inputs, i, cfg, banks, 0)]
    noise_plan = [s for i in range(3) for s in plan_background(inputs, i, parse_section("generate", {**GEN, "variants": 4}), banks, 0)]
    for s, n in zip(specs, noise_plan, strict=True):
        assert s.row["init"] == "real_lesion" and s.row["strength"] == 0.5 and n.row["init"] == "noise"
        np.testing.assert_array_equal(s.lesion, n.lesion)  # the same placements as without the init
        bg = inputs.normals[s.bg_index]
        assert (s.init[~s.lesion] == bg[~s.lesion]).all()
        # the region holds pixels of the shape's source frame (the phantom lesion is brighter than the background)
        k = int(np.flatnonzero(inputs.bank_table["mask_id"].astype(str) == s.row["mask_id"])[0])
        source = inputs.train_images[str(inputs.bank_table.iloc[k]["source_id"])]
        bank_shape = inputs.bank[k] > 0
        assert abs(s.init[s.lesion].mean() - source[bank_shape].mean()) < abs(bg[s.lesion].mean() - source[bank_shape].mean())
    # the init reaches the sampler (through paint_regions and the zoom crop): the same samples painted
    # from noise differ inside the lesions, and nowhere beyond the feathered band around them
    gen = load_generator(generator)
    shard = generate_shard(gen, inputs, cfg, banks, 0, progress=False)
    noise = generate_shard(gen, inputs, parse_section("generate", {**GEN, "variants": 4, "trace_unet": False}), banks, 0,
                           progress=False)
    assert len(shard.rows) == 12 and shard.images.dtype == np.uint8
    assert [r["sample_id"] for r in shard.rows] == [r["sample_id"] for r in noise.rows]
    inside = []
    for k in range(12):
        lesion = shard.masks[k] > 0
        band = feather_alpha(lesion, cfg.feather_sigma, cfg.feather_dilate) > 0
        diff = np.abs(shard.images[k].astype(int) - noise.images[k].astype(int)).max(axis=-1)
        assert (diff[~band] == 0).all()
        inside.append(diff[lesion].mean())
    assert min(inside) > 1.0


def test_fundus_samples_get_an_enlarged_cup_inside_the_disc(tmp_path):
    prepared = make_prepared(tmp_path / "prepared", family="fundus", size=S, normals=2)
    generator = make_generator(tmp_path / "generator", family="fundus", size=S)
    cfg = parse_section("generate", {**GEN, "trace_unet": False})
    inputs = load_inputs(prepared)
    shard = generate_shard(load_generator(generator), inputs, cfg, parse_section("finetune_generator", {}).prompts, 0,
                           progress=False)
    for k, row in enumerate(shard.rows):
        i = list(inputs.normal_ids).index(row["background_id"])
        disc = inputs.normal_masks[i] > 0
        cup = shard.masks[k] == 2
        assert cup.sum() > (inputs.normal_masks[i] == 2).sum() and not (cup & ~disc).any()
        assert "cup" in row["prompt"] or "rim" in row["prompt"] or "glaucom" in row["prompt"]
    # a cup is not tissue to paste: starting from a real lesion is refused with one line
    with pytest.raises(InputError, match="real_lesion"):
        plan_background(inputs, 0, parse_section("generate", {**GEN, "init": "real_lesion", "strength": 0.5}),
                        parse_section("finetune_generator", {}).prompts, 0)


def test_real_lesion_init_on_fundus_refused_before_the_generator_is_loaded(tmp_path, write_params):
    """With no generator folder at all, the init is what the one line names: the stage checks it first."""
    prepared = make_prepared(tmp_path / "prepared", family="fundus", size=S, normals=2)
    out = tmp_path / "raw"
    res = _run(write_params, prepared, tmp_path / "no-generator", out, tmp_path / "m.json",
               {"init": "real_lesion", "strength": 0.5})
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert res.exit_code != 0 and len(lines) == 1 and "real_lesion" in lines[0], res.output
    assert not out.exists() and not (tmp_path / "m.json").exists()


@pytest.mark.parametrize(
    ("generate", "extra", "code", "needle"),
    [
        ({"guidance_scale": 0.5}, None, 2, "generate.guidance_scale"),
        ({"steps": 0}, None, 2, "generate.steps"),
        ({"variants": 0}, None, 2, "generate.variants"),
        ({"strength": 0.5}, None, 2, "init: real_lesion"),
        ({"init": "real_lesion"}, None, 2, "strength < 1"),
        ({}, {"finetune_generator": {"prompts": {"polyp": {"negative": []}}}}, 2, "negative"),
    ],
)
def test_bad_params_one_line_no_output(folders, tmp_path, write_params, generate, extra, code, needle):
    prepared, generator = folders
    out = tmp_path / "raw"
    res = _run(write_params, prepared, generator, out, tmp_path / "m.json", generate, extra)
    assert res.exit_code == code
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and needle in lines[0], res.output
    assert not out.exists() and not (tmp_path / "m.json").exists()


def test_bad_generator_folder_one_line_no_output(folders, tmp_path, write_params):
    prepared, generator = folders
    res = _run(write_params, prepared, tmp_path / "missing", tmp_path / "raw", tmp_path / "m.json")
    assert res.exit_code == 1 and "generator folder not found" in res.output and not (tmp_path / "raw").exists()
    # a UNet that is not an inpainting UNet (4 input channels)
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(generator, broken)
    cfg_path = broken / "unet" / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["in_channels"] = 4
    cfg_path.write_text(json.dumps(cfg))
    res = _run(write_params, prepared, broken, tmp_path / "raw", tmp_path / "m.json")
    assert res.exit_code == 1 and "in_channels" in res.output and not (tmp_path / "raw").exists()
    assert len([ln for ln in res.output.splitlines() if ln.strip()]) == 1


def test_small_lesions_are_painted_in_their_zoom_window(folders):
    """A zoomed sample is painted in its window (recorded in the manifest): the same plan as without
    zoom, other pixels inside the lesion, the background's own pixels outside the window."""
    from diffaug.zoom import box_of

    prepared, generator = folders
    banks = parse_section("finetune_generator", {}).prompts
    gen, inputs = load_generator(generator), load_inputs(prepared)
    zoom = {"max_frac": 1.0, "context": 1.5, "min_side": 8}
    on = generate_shard(gen, inputs, parse_section("generate", {**GEN, "zoom": zoom}), banks, 3, progress=False)
    off = generate_shard(gen, inputs, parse_section("generate", {**GEN, "zoom": {**zoom, "enabled": False}}), banks, 3,
                         progress=False)
    assert np.array_equal(on.masks, off.masks)
    zoomed = [k for k, r in enumerate(on.rows) if r["window_side"] > 0]
    assert zoomed and all(r["window_side"] == 0 for r in off.rows)
    normals = dict(zip(inputs.normal_ids, inputs.normals, strict=True))
    for k in zoomed:
        y, x, s = (on.rows[k][c] for c in ("window_y", "window_x", "window_side"))
        y0, x0, y1, x1 = box_of(on.masks[k] > 0)
        assert y <= y0 and x <= x0 and y1 <= y + s and x1 <= x + s and s < S
        outside = np.ones((S, S), bool)
        outside[y:y + s, x:x + s] = False
        bg = normals[on.rows[k]["background_id"]]
        assert np.array_equal(on.images[k][outside], bg[outside])
        lesion = on.masks[k] > 0
        assert not np.array_equal(on.images[k][lesion], off.images[k][lesion])
