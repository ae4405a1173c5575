"""Paired significance of one variant against another (docs/evaluation.md).

Input: per-image Dice of both variants on the same test images, each already averaged over that
variant's seeds (so seed noise shrinks and the unit of pairing is the test image). Outputs:
- Wilcoxon signed-rank test (scipy.stats.wilcoxon, two-sided) p-value;
- the mean paired difference (a - b) with a seeded percentile-bootstrap confidence interval
  (scipy.stats.bootstrap over test images);
- a verdict that reads both: "better" / "worse" only when p < ALPHA and the CI lies on one side
  of 0 (in the direction of the mean difference); otherwise it says which of the two fails.
Degenerate inputs give null values with a reason, never an exception or a made-up number.

`paired_detection` does the same for lesion-level detection (the hard cases: small, flat): per
ground-truth lesion the share of seeds that found it, under both variants; an exact two-sided sign
test over the lesions where the two differ (McNemar's exact test when each variant has one seed).
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


def paired_comparison(
    a: np.ndarray, b: np.ndarray, seed: int, resamples: int = 2000, confidence: float = 0.95, alpha: float = ALPHA
) -> dict[str, float | int | str | None]:
    """Compare per-image scores `a` against `b` (same images, same order). `status` says whether the
    test could be computed, `verdict` what it shows (see `verdict`)."""
    out = _paired_comparison(a, b, seed, resamples, confidence)
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


def paired_detection(a_found: np.ndarray, b_found: np.ndarray) -> dict[str, float | int | str | None]:
    """Per-lesion detection rates (same lesions, same order; each in [0, 1], averaged over seeds)
    of variant a and b -> FNR of each, their difference, lesions a finds more often (wins) or less
    often (losses) and the sign-test p-value."""
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
    if wins + losses == 0:
        out["status"] = "undefined: no lesion in this class" if a.size == 0 else "undefined: both variants find the same lesions"
        return out
    out["p_value"] = float(stats.binomtest(wins, wins + losses, 0.5, alternative="two-sided").pvalue)
    out["status"] = "ok"
    return out
