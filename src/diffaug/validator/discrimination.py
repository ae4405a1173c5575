"""Does the gate tell right intended masks from wrong ones? (docs/validator.md)

A right pair is an image with the mask of its lesion; a wrong pair is the same image with the mask
moved away from the lesion (`moved_away`). The validator's prediction is compared with both by the
gate's IoU (eq. 14). `discrimination_metrics` reports the IoU means, the share of right pairs that
score above a wrong one (ROC AUC of IoU as a score: threshold-free) and the acceptance of each kind
at given thresholds. `train_validator` reports them on its held-out validation frames.
"""

from __future__ import annotations

import numpy as np

from diffaug.validator.metrics import mask_iou


def moved_away(masks: np.ndarray) -> np.ndarray:
    """Each mask (N, H, W) shifted by half the image in both axes (with wrap-around): the intended
    lesion is then where there is none. Frames whose shifted mask still overlaps the original by
    more than 10% of its area are shifted by a quarter instead."""
    h, w = masks.shape[1:3]
    out = np.roll(masks, (h // 2, w // 2), axis=(1, 2))
    for i in range(len(masks)):
        inter = ((out[i] > 0) & (masks[i] > 0)).sum()
        if inter > 0.1 * max(1, (masks[i] > 0).sum()):
            out[i] = np.roll(masks[i], (h // 4, -w // 4), axis=(0, 1))
    return out


def auc(right: np.ndarray, wrong: np.ndarray) -> float:
    """P(score of a right pair > score of a wrong pair), ties counted half (ROC AUC)."""
    if len(right) == 0 or len(wrong) == 0:
        return float("nan")
    r, w = np.asarray(right, float)[:, None], np.asarray(wrong, float)[None, :]
    return float(((r > w).sum() + 0.5 * (r == w).sum()) / (r.size * w.size))


def _tag(th: float) -> str:
    """A threshold as 2-digit hundredths in metric names (0.7 -> "70")."""
    return f"{int(round(th * 100)):02d}"


def discrimination_metrics(pred: np.ndarray, masks: np.ndarray, num_classes: int, thresholds: list[float],
                           combine: str = "mean_foreground", groups: np.ndarray | None = None) -> dict[str, float]:
    """pred and masks uint8 (N, H, W); frames without a lesion are left out (moving an empty mask
    changes nothing). Keys: disc_n, disc_iou_right_mean, disc_iou_moved_mean, disc_auc and, per
    threshold th, disc_accept_right_<th> / disc_reject_moved_<th> (th as 2-digit hundredths).

    `groups` (N,) labels (e.g. the manifest's size_class: small / large) add, per label g,
    disc_n_<g> and disc_accept_right_<th>_<g>: how often right masks of each kind pass."""
    keep = (masks > 0).reshape(len(masks), -1).any(1)
    pred, masks = pred[keep], masks[keep]
    right = mask_iou(pred, masks, num_classes, combine)
    wrong = mask_iou(pred, moved_away(masks), num_classes, combine)
    return summarise(right, wrong, thresholds, None if groups is None else np.asarray(groups).astype(str)[keep])


def zoomed_discrimination(predict, images: np.ndarray, masks: np.ndarray, num_classes: int, thresholds: list[float],
                          zoom, combine: str = "mean_foreground", groups: np.ndarray | None = None) -> dict[str, float]:
    """As `discrimination_metrics`, but every pair is judged the way the gate judges a generated
    sample: a lesion whose box is small is cropped to its zoom window (`diffaug.zoom.window_for`),
    the image and mask resized to the frame size, and the IoU taken at window resolution. A moved
    mask gets the window of the moved lesion, so the validator looks where the lesion is said to be.
    `predict` maps uint8 images (N, H, W, 3) to masks (N, H, W). Keys as there, prefixed disc_zoom_,
    plus disc_zoom_zoomed (share of right pairs cropped)."""
    from diffaug.zoom import crop, window_for, windows_array

    keep = (masks > 0).reshape(len(masks), -1).any(1)
    images, masks = images[keep], masks[keep]
    moved = moved_away(masks)
    scores, zoomed = [], []
    for target in (masks, moved):
        win = windows_array([window_for(m == num_classes, zoom) for m in target])
        zoomed.append(float((win[:, 2] > 0).mean()) if len(win) else float("nan"))
        scores.append(mask_iou(predict(crop(images, win)), crop(target, win, nearest=True), num_classes, combine))
    out = summarise(*scores, thresholds, None if groups is None else np.asarray(groups).astype(str)[keep])
    out = {k.replace("disc_", "disc_zoom_", 1): v for k, v in out.items()}
    return out | {"disc_zoom_zoomed": zoomed[0]}


def summarise(right: np.ndarray, wrong: np.ndarray, thresholds: list[float], groups: np.ndarray | None) -> dict[str, float]:
    """The disc_* keys from the IoU of right and of moved pairs (aligned, one per frame)."""
    out = {"disc_n": int(len(right)),
           "disc_iou_right_mean": float(right.mean()) if len(right) else float("nan"),
           "disc_iou_moved_mean": float(wrong.mean()) if len(wrong) else float("nan"),
           "disc_auc": auc(right, wrong)}
    for th in thresholds:
        tag = _tag(th)
        out[f"disc_accept_right_{tag}"] = float((right > th).mean()) if len(right) else float("nan")
        out[f"disc_reject_moved_{tag}"] = float((wrong <= th).mean()) if len(wrong) else float("nan")
    for g in sorted(set(groups.tolist())) if groups is not None else []:
        sel = groups == g
        out[f"disc_n_{g}"] = int(sel.sum())
        for th in thresholds:
            out[f"disc_accept_right_{_tag(th)}_{g}"] = float((right[sel] > th).mean())
            out[f"disc_reject_moved_{_tag(th)}_{g}"] = float((wrong[sel] <= th).mean())
    return out


__all__ = ["auc", "discrimination_metrics", "moved_away", "summarise", "zoomed_discrimination"]
