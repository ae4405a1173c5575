"""Unlabelled frames: prepare collects them (phantom, a folder, the training frames beyond the
limit), bad files are one line, no test frame gets in, and the generator's phases (a)/(b) learn
from them with steps that grow with them."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from pydantic import ValidationError

from diffaug.data.config import PhantomConfig, PrepareConfig
from diffaug.data.prepared import load_fingerprint, load_manifest, load_split, load_unlabelled
from diffaug.data.stage_prepare import run_prepare
from diffaug.errors import InputError
from diffaug.generator.config import FinetuneGeneratorConfig
from diffaug.generator.train import effective_steps, phase_steps
from diffaug.generator.train_data import load_train_data
from tests.prepare_trees import polyp_pair, write_cvc, write_folder, write_sequence_table

SMALL_PHANTOM = PhantomConfig(train=8, test=4, normals=3, unlabelled=6)


def _prepare(tmp_path, **cfg):
    out = tmp_path / "prepared"
    metrics = run_prepare(PrepareConfig(image_size=32, **cfg), 0, out, tmp_path / "prepare.json")
    return out, metrics


def _frames_folder(path, n, seed=3, size=40):
    path.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        Image.fromarray(polyp_pair(rng, size, size + 8)[0]).save(path / f"frame{i:03d}.jpg", quality=90)
    return path


def test_phantom_renders_unlabelled_frames_of_their_own(tmp_path):
    out, metrics = _prepare(tmp_path, phantom=SMALL_PHANTOM)
    images, ids, groups = load_unlabelled(out)
    assert images.shape == (6, 32, 32, 3) and images.dtype == np.uint8 and metrics["n_unlabelled"] == 6
    assert load_fingerprint(out)["counts"]["unlabelled"] == 6
    train = load_split(out, "train")
    assert not set(ids) & set(train.ids) and list(groups) == list(ids)
    # drawn with their own seeds: no unlabelled frame repeats a training frame
    assert all(np.abs(images[:, None].astype(int) - train.images[None].astype(int)).max(axis=(2, 3, 4)).min(axis=1) > 0)
    # the manifest (what is labelled) is unchanged by them
    assert set(load_manifest(out)["split"]) == {"train", "test", "normals"}
    none_out, none_metrics = _prepare(tmp_path / "off", phantom=SMALL_PHANTOM.model_copy(update={"unlabelled": 0}))
    assert load_unlabelled(none_out)[0].shape == (0, 32, 32, 3) and none_metrics["n_unlabelled"] == 0
    # and labelled frames do not depend on them
    assert (load_split(none_out, "train").images == train.images).all()


def test_unlabelled_folder_is_read_resized_and_checked(tmp_path):
    root = write_folder(tmp_path / "data", n=6, size=32)
    _frames_folder(root / "frames", 5)
    out, metrics = _prepare(tmp_path, dataset="folder", root=str(root), unlabelled="frames")
    images, ids, _ = load_unlabelled(out)
    assert images.shape == (5, 32, 32, 3) and metrics["n_unlabelled"] == 5 and ids[0] == "unlabelled:frame000"
    # max_unlabelled: a seeded subset
    out2, _ = _prepare(tmp_path / "cap", dataset="folder", root=str(root), unlabelled="frames", max_unlabelled=2)
    assert load_unlabelled(out2)[0].shape[0] == 2


@pytest.mark.parametrize("problem", ["missing", "corrupt", "test_name"])
def test_bad_unlabelled_input_is_one_line_and_writes_nothing(tmp_path, problem):
    root = write_folder(tmp_path / "data", n=6, size=32)
    frames = _frames_folder(root / "frames", 3)
    if problem == "corrupt":
        (frames / "broken.png").write_bytes(b"not a png")
    if problem == "test_name":
        # a frame named like a labelled test frame could be that frame: refused
        out, _ = _prepare(tmp_path / "probe", dataset="folder", root=str(root))
        test_id = load_split(out, "test").ids[0]
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(frames / f"{test_id}.png")
    cfg = dict(dataset="folder", root=str(root), unlabelled="nowhere" if problem == "missing" else "frames")
    with pytest.raises(InputError) as err:
        _prepare(tmp_path, **cfg)
    msg = str(err.value)
    assert "\n" not in msg and ("nowhere" in msg or "frames" in msg)
    assert {"missing": "prepare.unlabelled", "corrupt": "broken.png", "test_name": "test frame"}[problem] in msg
    assert not (tmp_path / "prepared").exists()


def test_training_frames_beyond_the_limit_become_unlabelled_never_test_frames(tmp_path):
    root = write_cvc(tmp_path / "CVC", n=24, float_frame=None)
    write_sequence_table(root / "sequences.csv", n=24, per_sequence=3)
    out, metrics = _prepare(tmp_path, dataset="cvc_clinicdb", root=str(root), sequence_table="sequences.csv",
                            test_ratio=0.25, train_limit=6, unlabelled_from_train=True)
    manifest = load_manifest(out)
    train_ids = set(manifest.loc[manifest.split == "train", "id"])
    test_ids = set(manifest.loc[manifest.split == "test", "id"])
    images, ids, groups = load_unlabelled(out)
    assert len(train_ids) == 6 and len(ids) == 24 - len(test_ids) - 6 == metrics["n_unlabelled"]
    assert not set(ids) & train_ids and not set(ids) & test_ids
    # each keeps its video, and no video of the test split is among them
    seq = {str(i): f"seq{(i - 1) // 3 + 1}" for i in range(1, 25)}
    assert [seq[i] for i in ids] == list(groups)
    assert not {seq[i] for i in ids} & {seq[i] for i in test_ids}
    # the labelled frames are the same as without the option
    plain, _ = _prepare(tmp_path / "plain", dataset="cvc_clinicdb", root=str(root), sequence_table="sequences.csv",
                        test_ratio=0.25, train_limit=6)
    assert list(load_split(plain, "train").ids) == list(load_split(out, "train").ids)


def test_unlabelled_from_train_needs_a_limit_and_real_data():
    with pytest.raises(ValidationError, match="train_limit"):
        PrepareConfig(dataset="folder", root="x", unlabelled_from_train=True)
    with pytest.raises(ValidationError, match="phantom"):
        PrepareConfig(unlabelled_from_train=True, train_limit=5)


def test_generator_phases_a_b_see_the_unlabelled_frames_and_scale_their_steps(tmp_path):
    out, _ = _prepare(tmp_path, phantom=SMALL_PHANTOM)
    cfg = FinetuneGeneratorConfig.model_validate({"vae": {"block_out_channels": [8, 8]},
                                                  "unet": {"block_out_channels": [16, 16], "norm_num_groups": 8},
                                                  "vae_phase": {"steps": 2, "epochs": 2, "batch_size": 4},
                                                  "pretrain_phase": {"steps": 20, "epochs": 2, "batch_size": 4},
                                                  "finetune_phase": {"steps": 3, "batch_size": 4}})
    data = load_train_data(out, cfg)
    images = load_unlabelled(out)[0]
    assert len(data.frames) == 8 + 3 + 6  # train + normals + unlabelled
    assert (data.frames[-6:] == images).all()
    # (a): 2 passes over 17 frames of batch 4 = 9 steps > 2; (b): 20 already covers 2 passes; (c): lesions only
    assert phase_steps(cfg, data) == {"vae": 9, "pretrain": 20, "finetune": 3}
    assert effective_steps(cfg.finetune_phase, 10_000) == 3  # epochs 0: steps as set
    assert effective_steps(cfg.vae_phase.model_copy(update={"steps": 0}), 100) == 0  # 0 still skips the phase
