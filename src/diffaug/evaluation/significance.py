"""Paired significance of one variant against another (docs/evaluation.md).

Two sources of chance decide a comparison: which test images were drawn, and how each network
happened to train (initialisation, batch order, float rounding: a change of memory layout alone
moved a 5-seed difference by 0.02 Dice on CVC-ClinicDB, docs/evaluation.md). Input: per-image
Dice of both variants on the same test images, each averaged over that variant's seeds, and, when
given, the same scores per training run, (S, N) per variant with rows paired by seed. Outputs:
- with S >= 2 paired runs (`test: runs_and_images`): a two-level bootstrap that resamples the
  training runs and the test images together (Saravanan et al., "Application of the hierarchical
  bootstrap to multi-level data in neuroscience", 2020): the CI of the mean paired difference and
  a two-sided bootstrap p-value, what the verdict reads;
- always: the Wilcoxon signed-rank test over test images on seed-averaged Dice
  (scipy.stats.wilcoxon, two-sided; `p_value_images`), which asks only whether these trained
  networks differ on this test distribution; with one run per variant (`test: images`) it is the
  p-value, with a seeded percentile-bootstrap CI over test images (scipy.stats.bootstrap);
- a verdict that reads both: "better" / "worse" only when p < ALPHA and the CI lies on one side
  of 0 (in the direction of the mean difference); otherwise it says which of the two fails.
Degenerate inputs give null values with a reason, never an exception or a made-up number.

`paired_detection` does the same for lesion-level detection (the hard cases: small, flat): per
ground-truth lesion the share of seeds that found it, under both variants; with paired runs the
same two-level bootstrap over runs and lesions, else (and always as `p_value_lesions`) an exact
two-sided sign test over the lesions where the two differ (McNemar's exact test when each variant
has one seed).
"""

from __future__ import annotations

import numpy as np
from scipy import stats

ALPHA = 0.05  # significance level of the verdict


def _level(confidence: float) -> str:
    return f"{confidence * 100:g} %"


def verdict(
    p_value: float | None, ci_low: float | None, ci_high: float | None, confidence: float = 0.95,
    alpha: float = ALPHA, status: str = "ok",
) -> str:
    """One phrase that states the test and the CI together, e.g. "better (p < 0.05, 95 % CI above 0)"
    or "not shown: p = 0.034 but the 95 % CI includes 0"."""
    level = _level(confidence)
    if status.startswith("undefined: every paired difference is zero"):
        return "no difference: identical predictions"
    if p_value is None or ci_low is None or ci_high is None:
        return "not tested (see status)"
    side = "above" if ci_low > 0 else "below" if ci_high < 0 else None
    if p_value < alpha and side is not None:
        return f"{'better' if side == 'above' else 'worse'} (p < {alpha:g}, {level} CI {side} 0)"
    if p_value < alpha:
        return f"not shown: p = {p_value:.2g} but the {level} CI includes 0"
    if side is not None:
        return f"not shown: the {level} CI is {side} 0 but p = {p_value:.2g} ≥ {alpha:g}"
    return f"no difference shown (p = {p_value:.2g}, {level} CI includes 0)"


def run_bootstrap(diff: np.ndarray, seed: int, resamples: int, confidence: float) -> dict[str, float]:
    """diff (S, N): paired differences of S training runs on N units (test images, lesions).
    Each resample draws S runs and N units with replacement, and its mean over the S x N grid of
    the drawn pairs is one bootstrap mean (the grid's product structure makes it w_run . diff . w_unit
    with the draw counts as weights). Percentile CI; two-sided p = twice the smaller share of
    bootstrap means on either side of 0, counted as (k + 1) / (resamples + 1) so it is never 0."""
    s, n = diff.shape
    rng = np.random.default_rng(seed)
    w_run = np.stack([np.bincount(rng.integers(0, s, s), minlength=s) for _ in range(resamples)]) / s  # (R, S)
    w_unit = np.stack([np.bincount(rng.integers(0, n, n), minlength=n) for _ in range(resamples)]) / n  # (R, N)
    means = np.einsum("rs,sn,rn->r", w_run, diff, w_unit)
    tail = (1 - confidence) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    side = min(int((means <= 0).sum()), int((means >= 0).sum()))
    per_run = diff.mean(axis=1)
    return {"p_value": min(1.0, 2 * (side + 1) / (resamples + 1)), "ci_low": float(low), "ci_high": float(high),
            "n_runs": int(s), "run_diff_min": float(per_run.min()), "run_diff_max": float(per_run.max())}


def paired_runs(runs: tuple[np.ndarray, np.ndarray] | None) -> np.ndarray | None:
    """(S, N) differences of the paired runs over the units every run scored, or None when fewer
    than 2 runs are paired (then only the unit-level test applies)."""
    if runs is None:
        return None
    a, b = (np.asarray(x, dtype=float) for x in runs)
    if a.shape != b.shape:
        raise ValueError(f"paired runs differ in shape: {a.shape} vs {b.shape}")
    diff = a - b
    diff = diff[:, np.isfinite(diff).all(axis=0)]
    return diff if diff.shape[0] >= 2 and diff.shape[1] >= 2 else None


def paired_comparison(
    a: np.ndarray, b: np.ndarray, seed: int, resamples: int = 2000, confidence: float = 0.95, alpha: float = ALPHA,
    runs: tuple[np.ndarray, np.ndarray] | None = None,
) -> dict[str, float | int | str | None]:
    """Compare per-image scores `a` against `b` (same images, same order; each averaged over its
    seeds). `runs`: the same scores per training run, (S, N) each, rows paired by seed; with two or
    more, p-value and CI account for the runs too (`test: runs_and_images`). `status` says whether
    the test could be computed, `verdict` what it shows (see `verdict`)."""
    out = _paired_comparison(a, b, seed, resamples, confidence)
    out["p_value_images"] = out["p_value"]
    out["test"] = "images"
    diff = paired_runs(runs)
    if diff is not None and out["status"] == "ok":
        out.update(run_bootstrap(diff, seed, resamples, confidence), test="runs_and_images")
    out["verdict"] = verdict(out["p_value"], out["ci_low"], out["ci_high"], confidence, alpha, str(out["status"]))
    return out


def _paired_comparison(
    a: np.ndarray, b: np.ndarray, seed: int, resamples: int, confidence: float
) -> dict[str, float | int | str | None]:
    a = np.asarray(a, dtype=float)
    b = np.asarray(b, dtype=float)
    if a.shape != b.shape:
        raise ValueError(f"paired scores differ in length: {a.shape} vs {b.shape}")
    keep = np.isfinite(a) & np.isfinite(b)
    diff = a[keep] - b[keep]
    out: dict[str, float | int | str | None] = {
        "n_images": int(diff.size),
        "mean_diff": float(diff.mean()) if diff.size else None,
        "p_value": None,
        "ci_low": None,
        "ci_high": None,
        "wins": int((diff > 0).sum()),
        "losses": int((diff < 0).sum()),
    }
    if diff.size < 2:
        out["status"] = f"undefined: {diff.size} paired test image(s); need at least 2"
        return out
    if not np.any(diff != 0):
        out["status"] = "undefined: every paired difference is zero (identical predictions)"
        out["ci_low"] = out["ci_high"] = 0.0
        return out
    out["p_value"] = float(stats.wilcoxon(diff, zero_method="wilcox", alternative="two-sided").pvalue)
    rng = np.random.default_rng(seed)
    ci = stats.bootstrap(
        (diff,), np.mean, n_resamples=resamples, confidence_level=confidence, method="percentile", rng=rng
    ).confidence_interval
    out["ci_low"], out["ci_high"] = float(ci.low), float(ci.high)
    out["status"] = "ok"
    return out


def paired_detection(a_found: np.ndarray, b_found: np.ndarray, runs: tuple[np.ndarray, np.ndarray] | None = None,
                     seed: int = 0, resamples: int = 2000, confidence: float = 0.95) -> dict[str, float | int | str | None]:
    """Per-lesion detection rates (same lesions, same order; each in [0, 1], averaged over seeds)
    of variant a and b -> FNR of each, their difference, lesions a finds more often (wins) or less
    often (losses) and the sign-test p-value (`p_value_lesions`). `runs`: found (1) or missed (0)
    per paired run and lesion, (S, L) each; with two or more the p-value and the CI of the FNR
    difference come from the two-level bootstrap over runs and lesions (`test: runs_and_lesions`)."""
    a = np.asarray(a_found, dtype=float)
    b = np.asarray(b_found, dtype=float)
    if a.shape != b.shape:
        raise ValueError(f"paired detections differ in length: {a.shape} vs {b.shape}")
    wins, losses = int((a > b).sum()), int((a < b).sum())
    out: dict[str, float | int | str | None] = {
        "n_lesions": int(a.size), "fnr_a": float(1 - a.mean()) if a.size else None,
        "fnr_b": float(1 - b.mean()) if b.size else None,
        "fnr_diff": float(b.mean() - a.mean()) if a.size else None,  # FNR(a) - FNR(b): < 0 = a misses fewer
        "wins": wins, "losses": losses, "p_value": None,
    }
    out.update(p_value_lesions=None, test="lesions")
    if wins + losses == 0:
        out["status"] = "undefined: no lesion in this class" if a.size == 0 else "undefined: both variants find the same lesions"
        return out
    out["p_value"] = out["p_value_lesions"] = float(stats.binomtest(wins, wins + losses, 0.5, alternative="two-sided").pvalue)
    out["status"] = "ok"
    diff = paired_runs(runs)
    if diff is not None:
        boot = run_bootstrap(-diff, seed, resamples, confidence)  # FNR(a) - FNR(b) = found(b) - found(a)
        out.update(p_value=boot["p_value"], ci_low=boot["ci_low"], ci_high=boot["ci_high"], n_runs=boot["n_runs"],
                   test="runs_and_lesions")
    return out
