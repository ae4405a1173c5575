"""Colonoscopy-like phantom frames with polyp-like lesions.

The scene is a height field lit from the camera (the endoscope carries its light):
- the colon wall is a cone rising away from the lumen (so it is seen obliquely and the dark lumen
  is far away), with haustral folds as warped concentric ridges around the lumen;
- albedo = pink mucosa with fractal texture and a dark-red capillary network;
- diffuse shading = n_z (light at the camera), depth falloff darkens the lumen, specular
  highlights (Blinn-Phong with a high exponent) appear where a fold crest or a polyp dome faces the
  camera, and the frame is cut by the dark, vignetted, octagon-cornered field of view.
A polyp is a dome added to the height field (so it gets a shaded rim and a highlight on top)
with its own albedo (paler or redder, pit-pattern texture) and an outline perturbed by random
harmonics. Sizes are drawn from a mixture so that about a third are small (< 5 % of the frame;
`prepare.phantom.small_share`); a quarter (`flat_share`) of the lesions are "flat": barely
raised and barely recoloured (the hard cases of the paper's Table 3). Colour shifts go both ways
and the illumination varies by a large factor across the frame, so no single colour/intensity
threshold separates lesion from mucosa.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from diffaug.data.phantom_common import (
    SUPERSAMPLE,
    blob_radius,
    downsample,
    downsample_mask,
    fractal_noise,
    grid,
    radial_distance,
    smooth_noise,
    smoothstep,
    surface_normals_z,
    to_uint8,
)

SMALL_RANGE = (0.006, 0.045)  # lesion area as a fraction of the frame
LARGE_RANGE = (0.05, 0.28)


@dataclass
class Lesion:
    cy: float
    cx: float
    area_frac: float
    flat: bool


def _field_of_view(yy: np.ndarray, xx: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Soft FOV: a disc clipped by a square (the octagon-like shape of endoscope frames)."""
    r_disc = rng.uniform(1.02, 1.25)
    r_box = rng.uniform(0.9, 0.97)
    d = np.maximum(np.hypot(yy, xx) / r_disc, np.maximum(np.abs(yy), np.abs(xx)) / r_box)
    return smoothstep(1.0, 0.93, d)  # 1 inside, fading to 0 over a few pixels


def _draw_lesions(rng: np.random.Generator, n: int, lumen: tuple[float, float], small_share: float,
                  flat_share: float) -> list[Lesion]:
    lesions = []
    for _ in range(n):
        lo, hi = SMALL_RANGE if rng.random() < small_share else LARGE_RANGE
        area = float(np.exp(rng.uniform(np.log(lo), np.log(hi))))
        radius = np.sqrt(area * 4.0 / np.pi)  # normalised units: the frame is 2 × 2
        for _ in range(50):  # inside the FOV, mostly outside the deep lumen
            cy, cx = rng.uniform(-0.75 + radius * 0.5, 0.75 - radius * 0.5, 2)
            if np.hypot(cy - lumen[0], cx - lumen[1]) > 0.2 + 0.5 * radius:
                break
        lesions.append(Lesion(float(cy), float(cx), area, bool(rng.random() < flat_share)))
    return lesions


def render_polyp_frame(rng: np.random.Generator, size: int, with_lesion: bool, small_share: float = 0.35,
                       flat_share: float = 0.25) -> tuple[np.ndarray, np.ndarray, list[Lesion]]:
    """One frame: image uint8 (size, size, 3), mask uint8 (size, size) in {0, 1}, lesions drawn.
    `small_share` / `flat_share`: probability that a lesion is drawn from the small size range /
    is flat (prepare.phantom). The draws that compare against them happen whatever their values,
    so a frame whose lesions they leave as they were comes out identical."""
    S = size * SUPERSAMPLE
    yy, xx = grid(S)
    fov = _field_of_view(yy, xx, rng)

    # Lumen and wall: distance from the lumen centre, warped so the folds are not perfect circles.
    lumen = (float(rng.uniform(-0.45, 0.45)), float(rng.uniform(-0.45, 0.45)))
    warp = 0.12 * smooth_noise(rng, S, 0.18)
    d = np.hypot(yy - lumen[0], (xx - lumen[1]) * rng.uniform(0.8, 1.25)) + warp
    lumen_r = rng.uniform(0.12, 0.3)
    cone = rng.uniform(0.7, 1.3) * d  # wall rises towards the camera away from the lumen
    fold_freq = rng.uniform(2.0, 4.0)
    fold_phase = rng.uniform(0, 2 * np.pi)
    # folds get wider apart towards the camera (perspective: d²) and are broken up along their
    # length, so they read as haustral folds rather than perfect rings
    ridge = (0.5 + 0.5 * np.sin(2 * np.pi * fold_freq * (d + rng.uniform(0.0, 0.4) * d * d) + fold_phase)) ** 3
    broken = smoothstep(-0.6, 0.4, smooth_noise(rng, S, 0.12))
    folds = rng.uniform(0.05, 0.11) * ridge * broken * smoothstep(0.0, 0.3, d)
    bumps = 0.012 * fractal_noise(rng, S, (0.03, 0.012))
    relief = folds + bumps  # polyps sit on top of this and hide it
    occlusion = np.zeros((S, S), np.float32)  # shadow at a raised lesion's base

    # Mucosa albedo: pink-red base, fractal texture, capillaries (zero-crossings of a smooth field).
    base = np.array([0.86, 0.46, 0.38], np.float32) * rng.uniform(0.85, 1.1, 3).astype(np.float32)
    tex = fractal_noise(rng, S, (0.12, 0.05, 0.02))
    albedo = base * (1.0 + 0.07 * tex)[..., None]
    vessels = np.exp(-((smooth_noise(rng, S, 0.04) / 0.12) ** 2)) * smoothstep(-0.5, 1.0, smooth_noise(rng, S, 0.2))
    albedo *= 1.0 - rng.uniform(0.15, 0.35) * vessels[..., None] * np.array([0.4, 1.0, 0.9], np.float32)

    mask = np.zeros((S, S), np.uint8)
    lesions = _draw_lesions(rng, 1 + int(rng.random() < 0.12), lumen, small_share, flat_share) if with_lesion else []
    for les in lesions:
        radius = np.sqrt(les.area_frac * 4.0 / np.pi)
        aspect = rng.uniform(0.7, 1.0)
        outline = blob_radius(rng, roughness=rng.uniform(0.1, 0.45) if not les.flat else rng.uniform(0.3, 0.6))
        dist = radial_distance(yy, xx, les.cy, les.cx, radius * aspect, radius, rng.uniform(0, np.pi), outline)
        inside = dist < 1.0
        # Dome profile (1 - d²)^p: steep rim (dark in camera light), a top that catches a highlight.
        h = (rng.uniform(0.25, 0.6) if not les.flat else rng.uniform(0.02, 0.06)) * radius
        profile = np.clip(1.0 - dist**2, 0.0, 1.0) ** rng.uniform(0.6, 1.2)
        relief = relief * (1.0 - smoothstep(1.2, 0.9, dist)) + h * profile
        if not les.flat:
            occlusion = np.maximum(occlusion, rng.uniform(0.25, 0.5) * np.exp(-(((dist - 1.0) / 0.12) ** 2)))
        # Own colour: paler (adenoma) or redder (hyperaemic); flat lesions only slightly different.
        strength = rng.uniform(0.05, 0.25) if not les.flat else rng.uniform(0.02, 0.06)
        direction = rng.choice([-1.0, 1.0])
        shift = np.array([0.2, 1.0, 0.9], np.float32) * direction * strength
        pit = fractal_noise(rng, S, (0.015, 0.008))  # pit pattern: finer texture than the mucosa
        feather = smoothstep(1.0, 0.8, dist)[..., None]
        lesion_albedo = base * (1.0 + shift) * (1.0 + rng.uniform(0.05, 0.12) * pit)[..., None]
        albedo = albedo * (1 - feather) + lesion_albedo * feather
        mask[inside] = 1

    _, _, nz = surface_normals_z(cone + relief)
    # lumen far away → dark; raised tissue is nearer the light → brighter
    depth_light = np.clip(smoothstep(0.0, lumen_r * 3.0, d + 3.0 * relief) ** 1.3 * 0.9 + 0.05, 0, 1)
    spot = 1.0 - 0.35 * (yy**2 + xx**2)  # light cone of the endoscope
    diffuse = 0.2 + 0.8 * np.clip(nz, 0, 1)
    specular = np.clip(nz, 0, 1) ** rng.uniform(150, 400) * rng.uniform(1.2, 2.5)  # saturates, like real glare
    shade = (depth_light * spot * diffuse * (1.0 - occlusion))[..., None]
    img = albedo * shade * rng.uniform(1.0, 1.3) + (specular * depth_light)[..., None]
    img = img * fov[..., None] + 0.01  # dark border with a little sensor floor
    mask = mask * (fov > 0.5)

    img = downsample(img.astype(np.float32))
    return to_uint8(img, rng), downsample_mask(mask), lesions
