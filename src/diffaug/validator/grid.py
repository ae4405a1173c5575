"""grid.png of the gate: accepted samples (top rows) and rejected ones (bottom rows), each with the
intended mask contour (green) and the validator's predicted mask contour (magenta); a sample the
gate checked zoomed shows its window (yellow square)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _pick(idx: np.ndarray, iou: np.ndarray, k: int) -> np.ndarray:
    """Up to k samples spread over the IoU range (sorted), so the grid shows typical and edge cases."""
    if len(idx) <= k:
        return idx[np.argsort(-iou[idx])]
    order = idx[np.argsort(-iou[idx])]
    return order[np.linspace(0, len(order) - 1, k).round().astype(int)]


def save_grid(path: str | Path, images: np.ndarray, masks: np.ndarray, pred: np.ndarray, iou: np.ndarray,
              accepted: np.ndarray, k: int, title: str = "", windows: np.ndarray | None = None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [("accepted", _pick(np.flatnonzero(accepted), iou, k)), ("rejected", _pick(np.flatnonzero(~accepted), iou, k))]
    fig, axes = plt.subplots(2, k, figsize=(1.7 * k, 4.0), squeeze=False)
    for r, (name, idx) in enumerate(rows):
        for c in range(k):
            ax = axes[r, c]
            ax.set_axis_off()
            if c >= len(idx):
                if c == 0:
                    ax.text(0.5, 0.5, f"no {name}\nsamples", ha="center", va="center", fontsize=8)
                continue
            i = idx[c]
            ax.imshow(images[i], interpolation="nearest")
            levels = sorted(set(np.unique(masks[i])) | set(np.unique(pred[i])) - {0})
            for lvl in [v for v in levels if v > 0]:
                for m, colour in ((masks[i], "lime"), (pred[i], "magenta")):
                    if (m >= lvl).any() and not (m >= lvl).all():
                        ax.contour((m >= lvl).astype(float), levels=[0.5], colors=colour, linewidths=0.8)
            zoomed = windows is not None and windows[i][2] > 0
            if zoomed:
                y, x, side = (int(v) for v in windows[i])
                ax.add_patch(plt.Rectangle((x - 0.5, y - 0.5), side, side, fill=False, edgecolor="yellow", linewidth=0.8))
            # 3 digits: a 0.698 must not read as the 0.7 threshold
            ax.set_title(f"{name[:3]} IoU {iou[i]:.3f}" + (" zoom" if zoomed else ""), fontsize=7)
    fig.suptitle(f"{title}   green: intended mask, magenta: predicted, yellow: zoom window", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
