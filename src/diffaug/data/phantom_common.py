"""Building blocks shared by the phantom families: smooth noise, shapes, shading, supersampling.

Everything is drawn in normalised coordinates (x, y in [-1, 1]) at `SUPERSAMPLE`× the output
size and box-averaged down, so edges are anti-aliased like a real camera image and the look does
not depend on `prepare.image_size`. Every random choice comes from the numpy Generator passed in.
"""

from __future__ import annotations

import numpy as np
from PIL import Image
from scipy import ndimage

SUPERSAMPLE = 2  # render at 2× and average 2×2 blocks: soft, camera-like edges


def grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """(yy, xx) float32 (size, size) pixel-centre coordinates in [-1, 1]."""
    t = (np.arange(size, dtype=np.float32) + 0.5) / size * 2.0 - 1.0
    yy, xx = np.meshgrid(t, t, indexing="ij")
    return yy, xx


def smooth_noise(rng: np.random.Generator, size: int, scale: float) -> np.ndarray:
    """Zero-mean, unit-std Gaussian random field whose features are ~`scale` (fraction of the
    image side) wide. (size, size) float32."""
    sigma = max(scale * size, 0.5)
    # Wide features need no fine grid: filter white noise on a grid `step`× coarser and
    # upsample (cubic), so the cost does not grow with sigma (256-px profiles stay fast).
    step = max(1, int(sigma // 3))
    coarse = int(np.ceil(size / step)) + 3
    field = rng.standard_normal((coarse, coarse)).astype(np.float32)
    field = ndimage.gaussian_filter(field, sigma=sigma / step, mode="wrap")
    if step > 1:
        up = coarse * step  # Pillow's bicubic on float images: fast, smooth enough for shading
        field = np.asarray(Image.fromarray(field, mode="F").resize((up, up), Image.Resampling.BICUBIC))
    field = np.ascontiguousarray(field[:size, :size])
    field -= field.mean()
    return field / (field.std() + 1e-8)


def fractal_noise(rng: np.random.Generator, size: int, scales: tuple[float, ...], decay: float = 0.6) -> np.ndarray:
    """Sum of smooth noises at several scales, amplitude × `decay` per octave; unit std."""
    out = np.zeros((size, size), np.float32)
    amp = 1.0
    for s in scales:
        out += amp * smooth_noise(rng, size, s)
        amp *= decay
    return out / (out.std() + 1e-8)


def smoothstep(edge0: float | np.ndarray, edge1: float | np.ndarray, x: np.ndarray) -> np.ndarray:
    t = np.clip((x - edge0) / (edge1 - edge0), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def blob_radius(rng: np.random.Generator, roughness: float, harmonics: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """Random star-shaped outline r(θ) = 1 + Σ_k a_k cos(kθ + φ_k), a_k ~ roughness / k.
    Returns (amplitudes, phases) for `radial_distance`."""
    amps = roughness * rng.uniform(0.2, 1.0, harmonics) / np.arange(1, harmonics + 1) ** 1.2
    phases = rng.uniform(0, 2 * np.pi, harmonics)
    return amps.astype(np.float32), phases.astype(np.float32)


def radial_distance(
    yy: np.ndarray,
    xx: np.ndarray,
    cy: float,
    cx: float,
    ry: float,
    rx: float,
    angle: float,
    outline: tuple[np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """Normalised distance to a rotated, outline-perturbed ellipse: < 1 inside, 1 on the edge."""
    dy, dx = yy - cy, xx - cx
    ca, sa = np.cos(angle), np.sin(angle)
    u = (dx * ca + dy * sa) / rx
    v = (-dx * sa + dy * ca) / ry
    d = np.sqrt(u * u + v * v)
    if outline is not None:
        amps, phases = outline
        theta = np.arctan2(v, u)
        r = np.ones_like(d)
        for k, (a, p) in enumerate(zip(amps, phases, strict=True), start=1):
            r += a * np.cos(k * theta + p)
        d = d / np.maximum(r, 0.3)
    return d


def surface_normals_z(height: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unit normal (nx, ny, nz) of a height field given in normalised units (image side = 2)."""
    size = height.shape[0]
    gy, gx = np.gradient(height)
    gy, gx = gy * size / 2.0, gx * size / 2.0  # per normalised unit, so shading is size-independent
    norm = np.sqrt(1.0 + gx * gx + gy * gy)
    return -gx / norm, -gy / norm, 1.0 / norm


def downsample(img: np.ndarray, factor: int = SUPERSAMPLE) -> np.ndarray:
    """Box-average `factor`×`factor` blocks of an (H, W[, C]) float image."""
    if factor == 1:
        return img
    h, w = img.shape[:2]
    shaped = img.reshape(h // factor, factor, w // factor, factor, *img.shape[2:])
    return shaped.mean(axis=(1, 3))


def downsample_mask(mask: np.ndarray, factor: int = SUPERSAMPLE) -> np.ndarray:
    """Class mask at output size: the class covering most of each block (ties → higher class)."""
    if factor == 1:
        return mask.astype(np.uint8)
    classes = int(mask.max()) + 1
    votes = np.stack([downsample((mask == c).astype(np.float32), factor) for c in range(classes)], axis=-1)
    # a tiny bias towards higher classes so a 50/50 boundary block does not erase thin lesions
    votes += np.arange(classes, dtype=np.float32) * 1e-3
    return votes.argmax(axis=-1).astype(np.uint8)


def to_uint8(img: np.ndarray, rng: np.random.Generator, noise_std: float = 0.012) -> np.ndarray:
    """Add sensor noise, clip to [0, 1] and quantise: (H, W, 3) float → uint8."""
    img = img + rng.normal(0.0, noise_std, img.shape).astype(np.float32)
    return np.clip(np.round(img * 255.0), 0, 255).astype(np.uint8)
