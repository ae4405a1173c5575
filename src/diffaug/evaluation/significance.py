"""Paired significance of one variant against another (issue 5 item 3).

Input: per-image Dice of both variants on the same test images, each already averaged over that
variant's seeds (so seed noise shrinks and the unit of pairing is the test image). Outputs:
- Wilcoxon signed-rank test (scipy.stats.wilcoxon, two-sided) p-value;
- the mean paired difference (a - b) with a seeded percentile-bootstrap confidence interval
  (scipy.stats.bootstrap over test images).
Degenerate inputs give null values with a reason, never an exception or a made-up number.
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
