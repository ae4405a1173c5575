"""Paired significance of one variant against another (issue 5 item 3).

Input: per-image Dice of both variants on the same test images, each already averaged over that
variant's seeds (so seed noise shrinks and the unit of pairing is the test image). Outputs:
- Wilcoxon signed-rank test (scipy.stats.wilcoxon, two-sided) p-value;
- the mean paired difference (a - b) with a seeded percentile-bootstrap confidence interval
  (scipy.stats.bootstrap over test images).
Degenerate inputs give null values with a reason, never an exception or a made-up number.

`paired_detection` does the same for lesion-level detection (the hard cases: small, flat): per
ground-truth lesion the share of seeds that found it, under both variants; an exact two-sided sign
test over the lesions where the two differ (McNemar's exact test when each variant has one seed).
"""

from __future__ import annotations

import numpy as np
from scipy import stats


def paired_comparison(
    a: np.ndarray, b: np.ndarray, seed: int, resamples: int = 2000, confidence: float = 0.95
) -> dict[str, float | int | str | None]:
    """Compare per-image scores `a` against `b` (same images, same order)."""
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
