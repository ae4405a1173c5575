"""The pseudolabel rival: its teacher is the standard run of the same seed (same weights), only
confident frames outside the validation videos become pairs, the stage records what it used,
and evaluate tests diffaug against it."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from diffaug.config import BaseConfig
from diffaug.evaluation.aggregate import comparisons
from diffaug.io import save_npz
from diffaug.runtime import resolve_runtime
from diffaug.segmenter import load_segmenter, train_segmenter
from diffaug.segmenter.config import TrainSegmenterConfig
from diffaug.segmenter.data import Pairs, load_real
from diffaug.segmenter.models import Segmenter
from diffaug.segmenter.pseudolabel import pseudo_label, pseudolabel_pool
from diffaug.segmenter.stage_train_segmenter import run_train_segmenter
from tests.segmenter_support import toy_pairs, write_gated, write_prepared

TINY = dict(steps=30, warmup_steps=0, eval_every=10, channels=[8, 16], num_res_units=0, batch_size=8, lr=0.01,
            eval_batch_size=16, log_every=5)


@pytest.fixture(scope="module")
def runtime():
    return resolve_runtime(BaseConfig(device="cpu", seed=0))


def _prepared_with_unlabelled(tmp_path, n_unlabelled=20, groups=None):
    prepared = write_prepared(tmp_path / "prepared", n_train=16, size=32)
    images, _ = toy_pairs(n_unlabelled, 32, seed=9)
    ids = np.array([f"u{i:03d}" for i in range(n_unlabelled)])
    save_npz(prepared / "unlabelled.npz", images=images, ids=ids,
             groups=np.array(groups if groups is not None else ids))
    return prepared


def test_teacher_is_the_standard_run_of_the_same_seed(tmp_path, runtime):
    prepared = _prepared_with_unlabelled(tmp_path)
    cfg = TrainSegmenterConfig(**TINY)
    real, num_classes, groups = load_real(prepared)
    standard = train_segmenter(real, num_classes, cfg, "standard", 0.0, 1, runtime, groups=groups)
    images = np.load(prepared / "unlabelled.npz")["images"]
    _, stats = pseudolabel_pool(real, num_classes, groups, images, np.array([f"u{i}" for i in range(20)]), cfg, 1,
                                runtime, checkpoints=tmp_path / "ckpt")
    assert stats["teacher_val_dice"] == standard.summary["val_dice_best"]
    # the teacher's checkpoint holds the standard run's very weights
    teacher_state = tmp_path / "ckpt" / "teacher" / "run"
    assert (teacher_state / "trainer.json").is_file()
    ref = standard.segmenter.net.state_dict()
    again = train_segmenter(real, num_classes, cfg, "standard", 0.0, 1, runtime, groups=groups,
                            checkpoints=tmp_path / "ckpt" / "teacher")  # loads the finished teacher
    assert again.summary["resumed_from_step"] == cfg.steps
    for k, v in again.segmenter.net.state_dict().items():
        assert torch.equal(v, ref[k]), k


def test_without_a_validation_part_every_unlabelled_frame_is_eligible(tmp_path, runtime):
    prepared = _prepared_with_unlabelled(tmp_path)
    real, num_classes, groups = load_real(prepared)
    images = np.load(prepared / "unlabelled.npz")["images"]
    unlabelled_groups = np.array([groups[i % len(groups)] for i in range(20)])  # every frame in a training video
    cfg = TrainSegmenterConfig(**{**TINY, "steps": 10}, select="last", val_fraction=0)
    _, stats = pseudolabel_pool(real, num_classes, groups, images, unlabelled_groups, cfg, 0, runtime)
    assert stats["pseudo_eligible"] == 20 and stats["teacher_val_dice"] is None
    cfg = TrainSegmenterConfig(**{**TINY, "steps": 10})  # a validation part: its videos' frames are left out
    _, stats = pseudolabel_pool(real, num_classes, groups, images, unlabelled_groups, cfg, 0, runtime)
    assert stats["pseudo_eligible"] < 20


def test_only_confident_frames_are_kept():
    class Fixed(Segmenter):  # a teacher whose probabilities we choose: confident on frame 0 only
        def __init__(self):
            pass

        def predict_proba(self, images):
            p = np.full((len(images), 2, 8, 8), 0.5, np.float32)
            p[0, 1], p[0, 0] = 0.95, 0.05
            return p

    images = np.zeros((3, 8, 8, 3), np.uint8)
    pool, conf = pseudo_label(Fixed(), images, 0.9)
    assert len(pool) == 1 and pool.masks[0].all() and np.allclose(conf, [0.95, 0.5, 0.5])
    empty, conf0 = pseudo_label(Fixed(), images[:0], 0.9)
    assert len(empty) == 0 and conf0.shape == (0,)


def test_stage_run_uses_confident_frames_outside_validation_videos(tmp_path, runtime):
    # the real frames of write_prepared have groups = ids; give half the unlabelled frames the
    # group of a validation frame: they must not be used
    prepared = _prepared_with_unlabelled(tmp_path)
    real, _, groups = load_real(prepared)
    from diffaug.data.holdout import holdout

    _, va = holdout(groups, 0.2, 0)
    unl_groups = [groups[va[0]]] * 10 + [f"u{i}" for i in range(10)]
    _prepared_with_unlabelled(tmp_path, groups=unl_groups)
    cfg = TrainSegmenterConfig(**TINY, pseudolabel={"min_confidence": 0.5})
    gated = write_gated(tmp_path / "gated", n=4, size=32)
    out, metrics = tmp_path / "seg" / "pseudolabel-s0", tmp_path / "m.json"
    summary = run_train_segmenter(cfg, BaseConfig(device="cpu", seed=0), "pseudolabel", 0, prepared, gated, out,
                                  metrics, checkpoints=tmp_path / "ckpt")
    m = json.loads(metrics.read_text())
    assert "teacher_seconds" not in m and summary["teacher_seconds"] > 0  # a timing, kept out of the results
    assert "teacher_seconds" not in json.loads((out / "run.json").read_text())["training"]
    assert m["pseudo_unlabelled"] == 20 and m["pseudo_eligible"] == 10
    assert 0 < m["pseudo_confident"] <= 10 and m["synthetic_used"] == min(m["synthetic_requested"], m["pseudo_confident"])
    assert summary["variant"] == "pseudolabel" and load_segmenter(out).spec.num_classes == 2
    # nothing confident enough: trained on real pairs, with a warning
    strict = TrainSegmenterConfig(**TINY, pseudolabel={"min_confidence": 0.999999})
    s2 = run_train_segmenter(strict, BaseConfig(device="cpu", seed=0), "pseudolabel", 0, prepared, gated,
                             tmp_path / "seg2", tmp_path / "m2.json")
    assert s2["n_extra"] == 0 and any("unlabelled.npz holds no confident" in w for w in s2["warnings"])


def test_evaluate_tests_diffaug_against_both_rivals():
    groups = {g: {"variant": g.split("-")[0], "ratio": 1.0 if g != "standard" else 0.0}
              for g in ("standard", "copypaste-r1", "pseudolabel-r1", "diffaug-r1")}
    pairs = comparisons(groups, "standard")
    assert ("diffaug-r1", "pseudolabel-r1") in pairs and ("diffaug-r1", "copypaste-r1") in pairs
    assert ("pseudolabel-r1", "standard") in pairs
