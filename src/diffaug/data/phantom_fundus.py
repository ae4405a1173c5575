"""Fundus-like phantom frames: retina, vessel tree, optic disc and cup (two-class mask).

A posterior-pole view, zoomed so the disc is large enough to segment at 64 px: orange-red retina
with choroidal texture and strong vignetting inside the round, black-bordered field of view; a
darker macula temporal to the disc; a yellow-pink optic disc (vertically oval, slightly irregular)
whose pale cup has a soft edge (the cup border is the hard part in real images); vessels leave
the disc in four arcades, curve and branch, and cross the disc. The cup-to-disc ratio (vertical)
is drawn from a mixture spread over the normal (< 0.5), early-glaucoma (0.5–0.6) and glaucomatous
(≥ 0.6) ranges; glaucomatous cups are often shifted up/down (rim thinning). Normal backgrounds
use only CDRs below `prepare.cdr_normal_max`. Mask classes: 0 background, 1 disc rim, 2 cup.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from diffaug.data.phantom_common import (
    SUPERSAMPLE,
    blob_radius,
    downsample,
    downsample_mask,
    fractal_noise,
    grid,
    radial_distance,
    smoothstep,
    to_uint8,
)
from diffaug.data.stats import cup_to_disc_ratio

VESSEL_WIDTHS = (0.034, 0.022, 0.012)  # half-widths (normalised units) of main, branch, twig vessels


def draw_cdr(rng: np.random.Generator, normal: bool, normal_max: float) -> float:
    if normal:
        return float(rng.uniform(0.2, normal_max - 0.04))
    u = rng.random()
    if u < 0.45:
        return float(rng.uniform(0.25, 0.5))
    if u < 0.7:
        return float(rng.uniform(0.5, 0.6))
    return float(rng.uniform(0.6, 0.88))


def _vessel_points(rng: np.random.Generator, cy: float, cx: float, temporal: float) -> list[list[tuple[float, float]]]:
    """Polylines (one list of (y, x) per width level) of four arcades with two levels of branches."""
    levels: list[list[tuple[float, float]]] = [[] for _ in VESSEL_WIDTHS]

    def walk(y: float, x: float, angle: float, bend: float, level: int, length: float) -> None:
        step = 0.008
        for i in range(int(length / step)):
            angle += bend * step + rng.normal(0, 0.04)
            y, x = y + step * np.sin(angle), x + step * np.cos(angle)
            if abs(y) > 1.05 or abs(x) > 1.05:
                return
            levels[level].append((y, x))
            if level + 1 < len(VESSEL_WIDTHS) and i > 8 and rng.random() < 0.035:
                child = angle + rng.choice([-1, 1]) * rng.uniform(0.4, 0.9)
                walk(y, x, child, rng.normal(0, 1.5), level + 1, length * rng.uniform(0.25, 0.5))

    # arcades: superior/inferior temporal curve round the macula, nasal ones run straight-ish
    # (they leave the disc nearly vertically from its nasal side, then arc; angle 0 = +x)
    nasal_x = cx - temporal * rng.uniform(0.02, 0.06)
    for vert in (-1.0, 1.0):
        start = np.arctan2(vert, temporal * rng.uniform(0.15, 0.4))
        walk(cy, nasal_x, start, -vert * temporal * rng.uniform(1.0, 1.8), 0, rng.uniform(1.4, 2.0))
        start = np.arctan2(vert, -temporal * rng.uniform(0.3, 0.8))
        walk(cy, nasal_x, start, vert * temporal * rng.uniform(0.2, 0.8), 0, rng.uniform(0.9, 1.4))
    return levels


def _vessel_map(levels: list[list[tuple[float, float]]], S: int) -> np.ndarray:
    """Soft (S, S) vessel coverage in [0, 1] from the sampled centre lines."""
    out = np.zeros((S, S), np.float32)
    for pts, half_width in zip(levels, VESSEL_WIDTHS, strict=True):
        if not pts:
            continue
        arr = np.asarray(pts)
        iy = np.clip(((arr[:, 0] + 1) / 2 * S).astype(int), 0, S - 1)
        ix = np.clip(((arr[:, 1] + 1) / 2 * S).astype(int), 0, S - 1)
        centre = np.ones((S, S), bool)
        centre[iy, ix] = False
        dist = ndimage.distance_transform_edt(centre) / S * 2.0  # normalised units
        out = np.maximum(out, smoothstep(half_width, half_width * 0.3, dist))
    return out


def render_fundus_frame(
    rng: np.random.Generator, size: int, normal: bool, cdr_normal_max: float = 0.5
) -> tuple[np.ndarray, np.ndarray, float]:
    """One frame: image uint8 (size, size, 3), mask uint8 (size, size) in {0, 1, 2}, drawn CDR."""
    S = size * SUPERSAMPLE
    yy, xx = grid(S)
    fov_r = rng.uniform(0.9, 1.0)
    r = np.hypot(yy, xx)
    fov = smoothstep(fov_r, fov_r - 0.04, r)

    # Retina: orange-red, brighter centre, choroidal texture, darker macula temporal to the disc.
    base = np.array([0.80, 0.34, 0.13], np.float32) * rng.uniform(0.8, 1.15, 3).astype(np.float32)
    cy, cx = rng.uniform(-0.2, 0.2), rng.uniform(-0.3, 0.3)
    temporal = rng.choice([-1.0, 1.0])  # left or right eye
    light = 0.55 + 0.45 * smoothstep(1.1, 0.1, np.hypot(yy - cy * 0.5, xx - cx * 0.5))
    tex = fractal_noise(rng, S, (0.1, 0.03, 0.012))
    img = base * (light * (1.0 + 0.06 * tex))[..., None]
    mac = np.exp(-((yy - cy - 0.1) ** 2 + (xx - cx - temporal * 1.2) ** 2) / (2 * 0.3**2))
    img *= (1.0 - 0.35 * mac)[..., None]

    # Optic disc and cup.
    rd = rng.uniform(0.26, 0.36)  # a disc-centred view, like REFUGE crops
    disc_ry, disc_rx = rd * rng.uniform(1.0, 1.15), rd
    disc_d = radial_distance(yy, xx, cy, cx, disc_ry, disc_rx, rng.normal(0, 0.15), blob_radius(rng, 0.06, 3))
    for _ in range(20):  # the measured (vertical, pixel) CDR must fall in the drawn range
        cdr = draw_cdr(rng, normal, cdr_normal_max)
        shift = rng.uniform(-1, 1) * (1 - cdr) * 0.6 * disc_ry if cdr >= 0.5 and rng.random() < 0.5 else 0.0
        cup_ry = cdr * disc_ry
        cup_rx = min(cdr * disc_rx * rng.uniform(0.85, 1.1), 0.92 * disc_rx)
        cup_cy, cup_cx = cy + shift, cx + temporal * rng.uniform(0.0, 0.2) * (disc_rx - cup_rx)
        cup_d = radial_distance(yy, xx, cup_cy, cup_cx, cup_ry, cup_rx, rng.normal(0, 0.2), blob_radius(rng, 0.08, 3))
        mask = np.where(disc_d < 1.0, 1, 0).astype(np.uint8)
        mask[(cup_d < 1.0) & (disc_d < 1.0)] = 2
        small = downsample_mask(mask)
        measured = cup_to_disc_ratio(small)
        if measured is not None and (not normal or measured < cdr_normal_max):
            break
    # The rim is pink-orange (pale in some eyes); pallor marks the cup only loosely: its extent
    # differs from the cup's (the cup is a depression, defined by its contour, not its colour),
    # so brightness alone cannot find the cup edge. The cup wall facing away from the light is
    # shaded: the shape cue a network can use.
    rim_colour = np.array([0.98, 0.62, 0.42], np.float32) * rng.uniform(0.8, 1.05)
    rim_colour = rim_colour + rng.uniform(0.0, 0.35) * (np.array([1.0, 0.85, 0.7], np.float32) - rim_colour)
    cup_colour = np.array([1.0, 0.86, 0.68], np.float32) * rng.uniform(0.85, 1.05)
    disc_w = smoothstep(1.08, 0.92, disc_d)[..., None]
    pallor_d = cup_d / rng.uniform(0.7, 1.2)
    cup_w = smoothstep(1.0 + rng.uniform(0.1, 0.5), 0.5, pallor_d)[..., None] * disc_w * rng.uniform(0.5, 0.95)
    img = img * (1 - disc_w) + rim_colour * (0.9 + 0.05 * tex[..., None]) * disc_w
    img = img * (1 - cup_w) + cup_colour * cup_w
    wall_dir = rng.uniform(0, 2 * np.pi)
    side = np.cos(np.arctan2(yy - cup_cy, xx - cup_cx) - wall_dir)
    wall = np.exp(-(((cup_d - 0.85) / 0.15) ** 2)) * np.clip(side, 0, 1) * rng.uniform(0.15, 0.35)
    img *= (1.0 - wall * (disc_d < 1.0))[..., None]

    # Peripapillary atrophy: a pale crescent hugging the disc on the temporal side (more often
    # in glaucoma), and a nerve-fibre-layer sheen: bright, bluish-white streaks near the disc.
    # Both are as pale as the disc/cup, so colour alone does not delimit them.
    if rng.random() < (0.6 if cdr >= 0.5 else 0.3):
        ang = np.arctan2(yy - cy, (xx - cx) * temporal)
        crescent = smoothstep(1.0 + rng.uniform(0.2, 0.5), 1.0, disc_d) * (disc_d >= 0.97)
        crescent = crescent * smoothstep(rng.uniform(0.6, 1.2), 0.0, np.abs(ang))
        pale = np.array([0.95, 0.8, 0.62], np.float32) * rng.uniform(0.8, 1.0)
        img = img * (1 - crescent[..., None]) + pale * crescent[..., None]
    sheen = np.clip(fractal_noise(rng, S, (0.03, 0.012)) - 1.0, 0, None) * smoothstep(1.4, 0.5, disc_d / 2.5)
    img = img + rng.uniform(0.0, 0.35) * sheen[..., None] * np.array([0.7, 0.75, 0.8], np.float32)

    # Vessels over everything (they emerge from the disc), darker and slightly purple.
    vessels = _vessel_map(_vessel_points(rng, cy, cx, temporal), S) * rng.uniform(0.7, 0.95)
    img *= (1.0 - vessels[..., None] * np.array([0.45, 0.65, 0.55], np.float32))

    # exposure and white balance vary per camera and photo
    cast = rng.uniform([0.9, 0.8, 0.6], [1.1, 1.15, 1.5]).astype(np.float32)
    img = img * cast * fov[..., None] * rng.uniform(0.65, 1.25) + 0.008
    img = downsample(img.astype(np.float32))
    return to_uint8(img, rng, noise_std=0.01), small * (downsample(fov) > 0.5), float(measured or 0.0)
