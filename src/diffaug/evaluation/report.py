"""report.md: the tables (paper tables 2, 3, 5, 7 and the significance tests) and pictures of
one evaluation, in one Markdown file next to its PNGs (data/evaluate/)."""

from __future__ import annotations

import math
from typing import Any

from diffaug.evaluation.lesions import LESION_CLASSES
from diffaug.evaluation.significance import ALPHA


def _num(v: Any, digits: int = 3) -> str:
    if v is None:
        return "—"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def _p(v: float | None) -> str:
    return "—" if v is None else f"{v:.2g}"


def _seed_range(v: dict[str, Any]) -> str:
    """The paired runs' differences, lowest to highest (— when the test was over images only)."""
    low, high = v.get("run_diff_min"), v.get("run_diff_max")
    return "—" if low is None or high is None else f"{low:+.3f} … {high:+.3f}"


def _pm(block: dict[str, Any], key: str) -> str:
    mean, std = block.get(f"{key}_mean"), block.get(f"{key}_std")
    if mean is None:
        return "undefined"
    return _num(mean) if std is None else f"{mean:.3f} ± {std:.3f}"


def _fnr(block: dict[str, Any], name: str) -> str:
    n = block.get(f"n_{name}")
    if n is None:
        return "n/a"
    v = block.get(f"fnr_{name}")
    return f"{_num(v)} (n={n})" + (" *" if f"fnr_{name}_status" in block and v is not None else "")


def _c2st(syn: dict[str, Any], name: str) -> str:
    """AUC with n per class and the chance band: under "indistinguishable" the AUC of n vs n
    independent scores has sd sqrt((2n + 1) / (12 n^2)) (Mann-Whitney U / n^2); ± 2 sd shown."""
    auc, n = syn.get(f"c2st_auc_{name}"), syn.get(f"c2st_n_{name}")
    if auc is None or not n:
        return "—"
    return f"{auc:.3f} (n={n}; chance 0.5 ± {2 * math.sqrt((2 * n + 1) / (12 * n * n)):.2f})"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header), *("| " + " | ".join(r) + " |" for r in rows)]


def _supply(groups: dict[str, dict[str, Any]]) -> list[str]:
    """A note on the extra pairs of each copypaste / diffaug group: used of requested, and for a
    group that got fewer, why (then a higher synthetic ratio changes nothing for it)."""
    parts, short = [], []
    for g, b in groups.items():
        if "synthetic_requested" not in b:
            continue
        used, req = b["synthetic_used"], b["synthetic_requested"]
        parts.append(f"{g} {used} of {req}")
        if b.get("synthetic_shortfall"):
            if b["variant"] == "diffaug":
                accepted = "none" if used == 0 else f"only {used}"
                why = (f"the gate accepted {accepted}; a higher `train_segmenter.synthetic_ratio` adds nothing "
                       "until it accepts more")
            elif b["variant"] == "pseudolabel":
                why = (f"only {used} unlabelled frames were confident enough; add unlabelled frames or lower "
                       "`train_segmenter.pseudolabel.min_confidence`")
            else:
                why = "no lesion in the training masks to paste"
            short.append(f"**{g} trained on {used} of the {req} extra pairs it asked for**: {why}.")
    if not parts:
        return []
    head = "Extra training pairs used of requested (ratio × real training pairs): " + "; ".join(parts) + "."
    return ["", " ".join([head, *short])]


def render_report(metrics: dict[str, Any], groups: dict[str, dict[str, Any]], pictures: dict[str, Any]) -> str:
    """Markdown text; `pictures` maps 'variants', 'ratio', 'training' to PNG paths relative to the
    report (or None) and 'overlays' to {group: path}."""
    lines = [
        "# DiffAug evaluation report",
        "",
        f"Real test split: {metrics['n_test_images']} images ({metrics.get('family')}); {metrics['n_runs']} trained runs. "
        f"Per-image metrics averaged over test images, then mean ± std over seeds. Lesion class: "
        f"`{metrics['lesion_class']}`; a lesion is found when the prediction covers ≥ {metrics['detect_fraction']:g} of it; "
        f"small = area < {metrics['small_area_frac']:g} of the image. "
        f"{_views_sentence(metrics.get('views', 1))}Every augmentation is judged against `{metrics['baseline']}`.",
        "",
        "## Segmentation (table 2)",
        "",
    ]
    rows = [[g, str(b["n_seeds"]), *(_pm(b, k) for k in ("dice", "iou", "sensitivity", "fnr", "specificity"))] for g, b in groups.items()]
    lines += _table(["variant", "seeds", "Dice", "IoU", "sensitivity", "FNR", "specificity"], rows)
    lines += _supply(groups)
    if pictures.get("variants"):
        lines += ["", f"![Dice per variant]({pictures['variants']})"]
    classes = [c for c in LESION_CLASSES if any(f"n_{c}" in b for b in groups.values())]
    lines += ["", "## Lesion-level detection (table 3)", "", "False-negative rate of ground-truth lesions (n = lesions in the class; * = too few or undefined, see metrics `*_status`).", ""]
    lines += _table(["variant", *(f"FNR {c.replace('_', ' ')}" for c in classes)], [[g, *(_fnr(b, c) for c in classes)] for g, b in groups.items()])

    sig = metrics.get("significance", {})
    lines += ["", "## Significance", "", "Mean paired difference of per-image Dice. With two or more seeds per variant, "
              "the CI and the p-value come from a seeded two-level bootstrap that resamples the training runs (seed s "
              "of one variant paired with seed s of the other) and the test images together, so a difference that "
              "another training of the same networks would not repeat is not called significant; Δ per seed gives "
              "the range of the paired runs' differences. p (images): Wilcoxon signed-rank over test images on "
              "seed-averaged Dice, which treats the trained networks as fixed (with one seed it is the test, with a "
              f"bootstrap CI over images). Verdict: better / worse only when p < {ALPHA:g} and the CI lies above / "
              "below 0; otherwise it says which of the two fails. Status: whether the test could be computed.", ""]
    if sig:
        lines += _table(
            ["comparison", "mean ΔDice", "CI", "p-value", "Δ per seed", "p (images)", "wins / losses", "verdict", "status"],
            [[k, _num(v.get("mean_diff")), f"[{_num(v.get('ci_low'))}, {_num(v.get('ci_high'))}]", _p(v.get("p_value")),
              _seed_range(v), _p(v.get("p_value_images")), f"{v.get('wins')} / {v.get('losses')}",
              str(v.get("verdict", "—")), str(v.get("status"))]
             for k, v in sig.items()],
        )
    else:
        lines.append(metrics.get("significance_status", "No comparison: the runs list has no augmentation to compare."))

    det = metrics.get("detection_significance", {})
    if det:
        lines += ["", "Lesion detection, paired per ground-truth lesion (share of seeds that found it): ΔFNR = FNR(a) − FNR(b) "
                  "with its CI and p-value from the same two-level bootstrap over paired runs and lesions (one seed: "
                  "no CI); lesions a finds more / less often, and their exact sign test (p (lesions)).", ""]
        lines += _table(["comparison", "lesions", "n", "FNR a", "FNR b", "ΔFNR", "CI", "p-value", "wins / losses", "p (lesions)"],
                        [[k, c, str(v.get("n_lesions")), _num(v.get("fnr_a")), _num(v.get("fnr_b")),
                          _num(v.get("fnr_diff")), f"[{_num(v.get('ci_low'))}, {_num(v.get('ci_high'))}]",
                          _p(v.get("p_value")), f"{v.get('wins')} / {v.get('losses')}", _p(v.get("p_value_lesions"))]
                         for k, block in det.items() for c, v in block.items()])

    ratio_rows = [(b["ratio"], g, b) for g, b in groups.items() if b["variant"] in ("diffaug", "standard")]
    if len(ratio_rows) > 1:
        lines += ["", "## Synthetic volume (table 7)", ""]
        lines += _table(["ratio", "variant", "Dice"], [[f"{r:g}", g, _pm(b, "dice")] for r, g, b in sorted(ratio_rows)])
        if pictures.get("ratio"):
            lines += ["", f"![Dice vs synthetic ratio]({pictures['ratio']})"]

    syn = metrics.get("synthetic")
    if syn:
        lines += ["", "## Synthetic quality (table 5)", ""]
        if syn.get("status") != "ok":
            lines.append(str(syn.get("status")))
        else:
            lines += _table(
                ["set", "samples", "validation IoU", "LPIPS vs real", "FID vs real", "C2ST AUC vs real"],
                [["accepted", _num(syn.get("n_accepted")), _num(syn.get("iou_accepted")), _num(syn.get("lpips_accepted")),
                  _num(syn.get("fid_accepted"), 1), _c2st(syn, "accepted")],
                 ["rejected", _num((syn.get("n_generated") or 0) - (syn.get("n_accepted") or 0)), _num(syn.get("iou_rejected")),
                  _num(syn.get("lpips_rejected")), _num(syn.get("fid_rejected"), 1), _c2st(syn, "rejected")]],
            )
            lines += ["", f"Acceptance rate {_num(syn.get('acceptance_rate'))}; accepted variants per background "
                      f"{_num(syn.get('accepted_per_background'), 2)} over {syn.get('n_backgrounds')} backgrounds. "
                      f"LPIPS: {syn.get('lpips_status')}. FID: {syn.get('fid_status')}. "
                      "C2ST AUC: held-out ROC AUC of a small CNN trained to tell the set's lesion crops from real "
                      f"{syn.get('c2st_real_split', 'test')}-split ones (n = crops per class); 0.5 = it cannot tell them apart, 1 = trivially apart, "
                      "lower is more realistic, and a value inside the chance band is no evidence of a difference: "
                      f"{syn.get('c2st_status')}."]
            if syn.get("fidelity_seeds"):
                lines += ["", f"Label fidelity, as the {metrics.get('baseline')} runs (never trained on a synthetic pair) see it: "
                          "medians per sample, mean over their seeds; > 1 and > 0 = lesion-looking tissue beyond the label "
                          "(the real test lesions are the reference).", ""]
                lines += _table(
                    ["", "accepted small", "real test small", "accepted large", "real test large"],
                    [[label] + [_num(syn.get(f"fidelity_{key}_{s}_{c}")) for c in ("small", "large") for s in ("accepted", "test")]
                     for label, key in (("predicted / intended lesion area", "area_ratio"),
                                        ("lesion predicted outside the mask / mask area", "outside"))]
                    + [["samples"] + [_num(syn.get(f"fidelity_n_{s}_{c}")) for c in ("small", "large") for s in ("accepted", "test")]],
                )
    if pictures.get("training"):
        lines += ["", "## Training curves", "", f"![training loss]({pictures['training']})"]
    if pictures.get("overlays"):
        lines += ["", "## Worst test cases", "", "Image | ground truth | prediction (green: lesion / disc rim, red: cup)."]
        for g, path in pictures["overlays"].items():
            lines += ["", f"### {g}", "", f"![{g} worst cases]({path})"]
    return "\n".join(lines) + "\n"


def _views_sentence(views: int) -> str:
    """What `evaluate.views` did, for the report's first paragraph ('' for the plain prediction)."""
    if views == 1:
        return ""
    return f"Each segmenter's class probabilities are averaged over {views} test-time views (`evaluate.views`). "
