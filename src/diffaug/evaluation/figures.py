"""Pictures of an evaluation: worst-case overlays per group and the charts of report.md.

Overlays are drawn with Pillow (image | ground truth | prediction, class colours blended with
contours); charts with matplotlib (Agg backend, no display). `dvc plots` draws its own charts
from the CSVs the stage writes (see dvc.yaml `plots:`); these PNGs are for report.md.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw
from scipy import ndimage

# class index -> RGB; 1 = lesion (polyp) / disc rim (fundus), 2 = cup
PALETTE = np.array([[0, 0, 0], [40, 220, 90], [240, 60, 60], [60, 140, 255], [250, 210, 40]], np.uint8)
_ALPHA = 0.4


def overlay(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """uint8 (H, W, 3) image with each foreground class tinted and outlined in its colour."""
    out = image.astype(np.float32).copy()
    for c in range(1, int(mask.max()) + 1):
        region = mask == c
        if not region.any():
            continue
        colour = PALETTE[c % len(PALETTE)].astype(np.float32)
        out[region] = (1 - _ALPHA) * out[region] + _ALPHA * colour
        edge = region & ~ndimage.binary_erosion(region)
        out[edge] = colour
    return out.clip(0, 255).astype(np.uint8)


def _panel(arr: np.ndarray, scale: int) -> Image.Image:
    return Image.fromarray(arr).resize((arr.shape[1] * scale, arr.shape[0] * scale), Image.NEAREST)


def overlay_grid(
    images: np.ndarray, gt: np.ndarray, pred: np.ndarray, labels: list[str], title: str, path: str | Path
) -> None:
    """One row per case: image | ground truth | prediction, a caption per row, title on top."""
    h, w = images.shape[1:3]
    scale = max(1, int(np.ceil(128 / max(h, w))))
    ph, pw, pad, head, cap = h * scale, w * scale, 6, 20, 14
    rows = max(1, len(images))
    canvas = Image.new("RGB", (3 * pw + 4 * pad, head + rows * (ph + cap + pad) + pad), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    draw.text((pad, 4), title, fill=(0, 0, 0))
    for col, name in enumerate(("image", "ground truth", "prediction")):
        draw.text((pad + col * (pw + pad), head - 2), name, fill=(90, 90, 90))
    for r in range(len(images)):
        y = head + cap + r * (ph + cap + pad)
        panels = (images[r], overlay(images[r], gt[r]), overlay(images[r], pred[r]))
        for col, arr in enumerate(panels):
            canvas.paste(_panel(arr, scale), (pad + col * (pw + pad), y))
        draw.text((pad, y + ph + 1), labels[r], fill=(0, 0, 0))
    canvas.save(path)


def worst_case_overlays(
    per_image: pd.DataFrame, predictions: dict[str, np.ndarray], images: np.ndarray, gt: np.ndarray,
    ids: np.ndarray, k: int, out_dir: str | Path,
) -> dict[str, str]:
    """Per group: the k test images with the lowest seed-averaged Dice, shown with the prediction
    of the group's first run (lowest seed). Returns group -> PNG file name."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    index = {str(i): n for n, i in enumerate(ids)}
    files = {}
    for group, rows in per_image.groupby("group", sort=False):
        dice = rows.groupby("id")["dice"].mean().sort_values(kind="stable")
        worst = [index[i] for i in dice.index[:k]]
        first = rows.sort_values("seed")["run"].iloc[0]
        labels = [f"{ids[n]}  Dice {dice.iloc[j]:.2f} (mean over seeds)" for j, n in enumerate(worst)]
        name = f"worst_{group}.png"
        overlay_grid(images[worst], gt[worst], predictions[first][worst], labels,
                     f"{group}: {len(worst)} worst test images (prediction of {first})", out_dir / name)
        files[str(group)] = name
    return files


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def seed_spread(n_seeds: pd.Series | list[int]) -> str:
    """What the bars and whiskers of a chart over groups show, from each group's seed count:
    "one seed, no spread", "mean ± std over 5 seeds" or, mixed, "mean ± std over 1–5 seeds
    (no whisker where one seed)"."""
    counts = sorted({int(n) for n in n_seeds})
    if not counts or counts == [1]:
        return "one seed, no spread"
    if len(counts) == 1:
        return f"mean ± std over {counts[0]} seeds"
    note = " (no whisker where one seed)" if counts[0] == 1 else ""
    return f"mean ± std over {counts[0]}–{counts[-1]} seeds{note}"


def variant_bars(groups: pd.DataFrame, path: str | Path) -> str:
    """Dice per group, horizontal bars (mean over seeds, whiskers ± std); returns the axis label,
    which says how many seeds are drawn."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 0.5 * len(groups) + 1.2))
    y = np.arange(len(groups))
    err = groups["dice_std"].astype(float).to_numpy()  # NaN (one seed): no whisker
    ax.barh(y, groups["dice_mean"].astype(float), xerr=err if np.isfinite(err).any() else None, color="#4c72b0",
            capsize=3)
    ax.set_yticks(y, groups["group"])
    ax.invert_yaxis()
    label = f"Dice (mean over test images; {seed_spread(groups['n_seeds'])})"
    ax.set_xlabel(label)
    ax.set_xlim(0, 1)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return label


def ratio_curve(ratio: pd.DataFrame, path: str | Path) -> None:
    """Table 7: Dice against the synthetic ratio (0 = standard augmentation only)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 3.2))
    err = ratio["dice_std"].astype(float).to_numpy()  # NaN (one seed): no whisker
    ax.errorbar(ratio["ratio"], ratio["dice_mean"], yerr=err if np.isfinite(err).any() else None, marker="o",
                capsize=3)
    ax.set_xlabel("synthetic ratio (× real training images)")
    ax.set_ylabel("Dice")
    if "n_seeds" in ratio:
        ax.set_title(seed_spread(ratio["n_seeds"]), fontsize=9)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def training_curves(curves: dict[str, pd.DataFrame], path: str | Path) -> bool:
    """Loss curves of the runs (dvclive TSVs: step, value). False when no curve was found."""
    if not curves:
        return False
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for name, df in curves.items():
        ax.plot(df["step"], df.iloc[:, -1], label=name, lw=1)
    ax.set_xlabel("step")
    ax.set_ylabel("training loss")
    ax.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True
