"""Classifier two-sample test (C2ST): can a small CNN tell synthetic lesion crops from real ones?

Real crops are label 0, synthetic crops label 1. The larger set is subsampled (seeded) to the
size of the smaller one, both are split into `folds` stratified folds, and for each fold a CNN
trained on the other folds scores it. The held-out ROC AUC reads 0.5 when the classifier
cannot tell the sets apart and 1.0 when they are trivially apart; it needs no pretrained
weights. Every synthetic crop also gets an out-of-sample probability of being synthetic and its
rank among the fold's held-out real crops (both from a fold model that never trained on it),
for a per-sample realism gate.

Augmentation is geometric only (flips, 90-degree rotations): colour jitter would teach the
classifier to ignore exactly the colour shifts the test should reveal.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics.functional.classification import binary_auroc

from diffaug.errors import InputError
from diffaug.evaluation.config import C2STConfig
from diffaug.runtime import Runtime
from diffaug.training.trainer import Trainer


@dataclass(frozen=True)
class C2STResult:
    auc: float  # out-of-fold ROC AUC within folds (pair-weighted mean of fold_aucs), real = 0, synthetic = 1
    fold_aucs: tuple[float, ...]  # ROC AUC of each held-out fold
    pooled_auc: float  # one ROC AUC over all out-of-fold scores together (mixes the fold models' scales)
    n_per_class: int  # real and synthetic crops the test used, each (balanced)
    # float64 (n_synth,), for every synthetic crop given, from a fold model that never trained on it:
    synth_prob: np.ndarray  # P(synthetic)
    synth_rank: np.ndarray  # share of that fold's held-out real crops scored below it (0.5 = as real as a typical real crop)


def classifier(width: int) -> nn.Sequential:
    """(B, 3, S, S) -> (B, 1) logit: three conv blocks with 2x pooling, a fourth without, global
    average pool, linear."""

    def block(cin: int, cout: int) -> list[nn.Module]:
        return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]

    w = width
    return nn.Sequential(
        *block(3, w), nn.MaxPool2d(2),  # (B, w, S/2, S/2)
        *block(w, 2 * w), nn.MaxPool2d(2),  # (B, 2w, S/4, S/4)
        *block(2 * w, 4 * w), nn.MaxPool2d(2),  # (B, 4w, S/8, S/8)
        *block(4 * w, 4 * w),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4 * w, 1),  # (B, 1)
    )


def _as_input(crops: np.ndarray, size: int, which: str, folds: int) -> torch.Tensor:
    """uint8 (N, H, W, 3) -> float32 (N, 3, size, size) in [0, 1]."""
    if crops.ndim != 4 or crops.shape[-1] != 3:
        raise InputError(f"two-sample test: {which} crops have shape {crops.shape}; give uint8 (N, H, W, 3) RGB crops")
    if len(crops) < folds:
        raise InputError(
            f"two-sample test: {len(crops)} {which} lesion crop(s), need at least {folds} "
            "(one per fold, evaluate.synthetic.c2st.folds); give more crops or lower the folds"
        )
    x = torch.from_numpy(np.ascontiguousarray(crops)).permute(0, 3, 1, 2).float() / 255.0
    if x.shape[-2:] != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return x


def _dihedral(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Each crop of (B, 3, S, S) under one of the 8 flips / 90-degree rotations, drawn per crop."""
    kind = torch.randint(0, 8, (len(x),), generator=generator)
    out = torch.empty_like(x)
    for k in range(8):
        sel = kind == k
        if sel.any():
            y = torch.rot90(x[sel], k % 4, dims=(2, 3))
            out[sel] = y.flip(3) if k >= 4 else y
    return out


class _Task:
    """Trainer task: binary cross-entropy on augmented random batches of one fold's training crops."""

    def __init__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int) -> None:
        self.model, self.x, self.y = model, x, y  # x (N, 3, S, S), y float (N,) in {0, 1}
        self.batch_size = min(batch_size, len(x))

    def parameters(self) -> list[nn.Parameter]:
        return list(self.model.parameters())

    def batch(self, step: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        idx = torch.randperm(len(self.x), generator=generator)[: self.batch_size]
        return _dihedral(self.x[idx], generator), self.y[idx]

    def losses(self, model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> dict[str, torch.Tensor]:
        x, y = batch
        return {"loss": F.binary_cross_entropy_with_logits(model(x)[:, 0], y)}


@torch.no_grad()
def _prob(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    if not len(x):
        return torch.zeros(0)
    return torch.cat([torch.sigmoid(model(x[i : i + 256])[:, 0]) for i in range(0, len(x), 256)])


def _rank(p: np.ndarray, p_real: np.ndarray) -> np.ndarray:
    """For each score in p (m,): the share of the fold's held-out real scores p_real (r,) below it,
    ties counted half; its mean over a fold's synthetic crops is that fold's ROC AUC."""
    below = (p_real[None, :] < p[:, None]).mean(1)
    ties = (p_real[None, :] == p[:, None]).mean(1)
    return below + 0.5 * ties


def _auc(prob: np.ndarray, labels: np.ndarray) -> float:
    return float(binary_auroc(torch.from_numpy(prob), torch.from_numpy(labels).long()))


def two_sample_test(real: np.ndarray, synth: np.ndarray, cfg: C2STConfig, seed: int) -> C2STResult:
    """Seeded k-fold C2ST of uint8 crops (N, H, W, 3), real vs synthetic; see the module docstring.

    Raises InputError (one line) when a set has fewer crops than folds, an empty set included.
    Runs on the CPU; the global torch RNG is left as it was."""
    x_real = _as_input(real, cfg.crop_size, "real", cfg.folds)
    x_synth = _as_input(synth, cfg.crop_size, "synthetic", cfg.folds)
    rng = np.random.default_rng(seed)
    n = min(len(x_real), len(x_synth), cfg.max_per_class)
    real_idx = rng.permutation(len(x_real))[:n]
    synth_perm = rng.permutation(len(x_synth))
    # stratified: each class split into its own folds, fold f = real part f + synthetic part f
    real_folds, synth_folds = np.array_split(real_idx, cfg.folds), np.array_split(synth_perm[:n], cfg.folds)
    spare_folds = np.array_split(synth_perm[n:], cfg.folds)  # synthetic crops left out by the balancing: scored only

    synth_prob = np.full(len(x_synth), np.nan)
    synth_rank = np.full(len(x_synth), np.nan)
    fold_aucs, pairs, pooled_p, pooled_y = [], [], [], []
    schedule = cfg.schedule()
    runtime = Runtime(device=torch.device("cpu"), dtype=torch.float32, seed=seed)
    with torch.random.fork_rng(devices=[]):  # model init seeds the global CPU RNG: restore it after
        for f in range(cfg.folds):
            train_r = np.concatenate([real_folds[g] for g in range(cfg.folds) if g != f])
            train_s = np.concatenate([synth_folds[g] for g in range(cfg.folds) if g != f])
            x = torch.cat([x_real[train_r], x_synth[train_s]])
            y = torch.cat([torch.zeros(len(train_r)), torch.ones(len(train_s))])
            fold_seed = int(np.random.SeedSequence([seed, f]).generate_state(1)[0])
            torch.manual_seed(fold_seed)
            model = classifier(cfg.width)
            trainer = Trainer(runtime, schedule, name="c2st", fingerprint="", seed=fold_seed,
                              description=f"evaluate: two-sample test, fold {f + 1}/{cfg.folds}")
            trainer.fit(_Task(model, x, y, cfg.batch_size))  # returns the model in eval mode
            p_real = _prob(model, x_real[real_folds[f]]).double().numpy()
            scored = np.concatenate([synth_folds[f], spare_folds[f]])  # every synthetic crop this model never saw
            synth_prob[scored] = _prob(model, x_synth[scored]).double().numpy()
            synth_rank[scored] = _rank(synth_prob[scored], p_real)
            p_synth = synth_prob[synth_folds[f]]
            held = np.concatenate([p_real, p_synth])
            held_y = np.concatenate([np.zeros(len(p_real)), np.ones(len(p_synth))])
            fold_aucs.append(_auc(held, held_y))
            pairs.append(len(p_real) * len(p_synth))
            pooled_p.append(held)
            pooled_y.append(held_y)
    # Within-fold AUC: the share of (real, synthetic) pairs of the same held-out fold ordered
    # right, i.e. the pair-weighted mean of the fold AUCs. Pooling all out-of-fold scores into
    # one AUC would also compare crops scored by different fold models, whose score scales
    # differ after a short training; that pulls a clear separation towards 0.5.
    auc = float(np.average(fold_aucs, weights=pairs))
    pooled = _auc(np.concatenate(pooled_p), np.concatenate(pooled_y))
    return C2STResult(auc, tuple(fold_aucs), pooled, n, synth_prob, synth_rank)
