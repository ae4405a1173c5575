"""`standard` augmentation: flips, rotation, scale, translation, elastic deformation, brightness,
contrast and saturation (and, when set, a colour cast, gamma and Gaussian blur), each sample with
its own random parameters, applied jointly to an image and its mask.

The geometry of a whole batch is one sampling grid: per sample an affine matrix (flip × rotation
× scale + translation, mapped as `torch.nn.functional.affine_grid` does) plus, for a share of the samples, a
smooth random displacement (random offsets on a coarse grid of control points, interpolated,
as MONAI's `Rand2DElastic` builds it), read once with bilinear interpolation for the image and nearest
neighbour for the mask (class indices stay class indices; outside the frame: black, background).
One batched grid, not per-sample torchvision transforms: those cost as much as the network's
training step on a CPU (docs/segmenter.md, "Measurements behind the defaults").
Photometric changes are torchvision's formulas (brightness scales, contrast and saturation blend
with the mean grey / the greyscale image) with a factor per sample.

Every draw comes from the caller's CPU `torch.Generator`, so a run is deterministic per seed.
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F
from torchvision.transforms.v2 import functional as TF

from diffaug.segmenter.config import StandardAugmentConfig


def _uniform(g: torch.Generator, n: int, lo: float, hi: float) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=g)


def affine_matrices(cfg: StandardAugmentConfig, n: int, g: torch.Generator) -> torch.Tensor:
    """(n, 2, 3) inverse maps (output -> input coordinates in [-1, 1]) for `affine_grid`."""
    angle = _uniform(g, n, -1, 1) * math.radians(cfg.rotation_degrees)
    scale = torch.exp(_uniform(g, n, math.log(cfg.scale_min), math.log(cfg.scale_max)))  # log-uniform zoom
    fx = torch.where(torch.rand(n, generator=g) < cfg.flip_prob, -1.0, 1.0)
    fy = torch.where(torch.rand(n, generator=g) < cfg.flip_prob, -1.0, 1.0)
    shift = _uniform(g, 2 * n, -2 * cfg.translate, 2 * cfg.translate).view(n, 2)  # fraction of the side -> [-1, 1] units
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    row0 = torch.stack([cos * fx, -sin * fy, shift[:, 0]], dim=1)
    row1 = torch.stack([sin * fx, cos * fy, shift[:, 1]], dim=1)
    return torch.stack([row0, row1], dim=1)


def elastic_offsets(cfg: StandardAugmentConfig, n: int, h: int, w: int, g: torch.Generator) -> torch.Tensor:
    """(n, h, w, 2) smooth displacements in grid units, of at most `elastic_alpha` px; zero for
    the samples that are not warped (a share `elastic_prob`). Random offsets on control points
    `elastic_spacing` px apart, interpolated bicubically (MONAI's Rand2DElastic recipe)."""
    on = torch.rand(n, generator=g) < cfg.elastic_prob
    ch, cw = (max(2, math.ceil(side / cfg.elastic_spacing) + 1) for side in (h, w))
    coarse = torch.rand(n, 2, ch, cw, generator=g) * 2 - 1  # drawn for all: the stream does not depend on `on`
    out = torch.zeros(n, h, w, 2)
    if bool(on.any()):  # interpolated for the warped samples only
        # bicubic upsampling is separable: rows and columns each a (side, control points) matrix
        field = torch.einsum("ia,ncab,jb->ncij", _bicubic_matrix(ch, h), coarse[on], _bicubic_matrix(cw, w))
        field = field / field.abs().amax(dim=(1, 2, 3), keepdim=True).clamp_min(1e-6)
        px_to_grid = torch.tensor([2.0 / w, 2.0 / h]).view(1, 2, 1, 1)
        out[on] = (field * cfg.elastic_alpha * px_to_grid).permute(0, 2, 3, 1)
    return out


@functools.lru_cache(maxsize=8)
def _bicubic_matrix(n_in: int, n_out: int) -> torch.Tensor:
    """(n_out, n_in) weights of torch's 1-D bicubic resampling (align_corners=True): the columns
    are the identity's rows resampled, so `A @ v` is `F.interpolate` of v along that axis."""
    eye = torch.eye(n_in).view(n_in, 1, 1, n_in)
    return F.interpolate(eye, size=(1, n_out), mode="bicubic", align_corners=True).view(n_in, n_out).T


def affine_sampling_grid(theta: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """(n, h, w, 2) = `F.affine_grid(theta, [n, c, h, w], align_corners=False)`: each pixel centre
    ((2i + 1) / side - 1 in [-1, 1] units) mapped by its sample's (2, 3) matrix, as one small
    product (torch's CPU affine_grid took 1.6 ms per batch of 20 at 64 px, this ~0.1 ms)."""
    xs = (torch.arange(w, dtype=theta.dtype) * 2 + 1) / w - 1
    ys = (torch.arange(h, dtype=theta.dtype) * 2 + 1) / h - 1
    base = torch.stack([xs.expand(h, w), ys.view(h, 1).expand(h, w), torch.ones(h, w, dtype=theta.dtype)], dim=-1)
    return torch.einsum("hwk,nck->nhwc", base, theta)


def photometric(x: torch.Tensor, cfg: StandardAugmentConfig, g: torch.Generator) -> torch.Tensor:
    """Brightness, contrast, saturation with one factor per sample in [1 - a, 1 + a]; then, when
    set, per-channel gains, a gamma curve and a blur, each drawn per sample; x in [0, 1]."""
    n = len(x)
    if cfg.brightness > 0:
        x = x * _uniform(g, n, 1 - cfg.brightness, 1 + cfg.brightness).view(n, 1, 1, 1)
    if cfg.contrast > 0:
        grey = TF.rgb_to_grayscale(x.clamp(0, 1)).mean(dim=(1, 2, 3), keepdim=True)
        c = _uniform(g, n, 1 - cfg.contrast, 1 + cfg.contrast).view(n, 1, 1, 1)
        x = grey + c * (x - grey)
    if cfg.saturation > 0:
        grey = TF.rgb_to_grayscale(x.clamp(0, 1))
        sat = _uniform(g, n, 1 - cfg.saturation, 1 + cfg.saturation).view(n, 1, 1, 1)
        x = grey + sat * (x - grey)
    if cfg.colour_cast > 0:
        x = x * _uniform(g, 3 * n, 1 - cfg.colour_cast, 1 + cfg.colour_cast).view(n, 3, 1, 1)
    if cfg.gamma > 0:
        lg = math.log1p(cfg.gamma)
        x = x.clamp(0, 1).pow(torch.exp(_uniform(g, n, -lg, lg)).view(n, 1, 1, 1))
    if cfg.blur_prob > 0:
        sigma = _uniform(g, n, 0, cfg.blur_sigma) * (torch.rand(n, generator=g) < cfg.blur_prob)
        x = gaussian_blur(x, sigma)
    return x.clamp(0, 1)


def gaussian_blur(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """x (B, C, H, W) each sample blurred with its own Gaussian sigma (B,) px (0: unchanged): two
    separable passes, each a weighted sum of the 2r + 1 shifted copies of the reflect-padded
    samples (cheaper on a CPU than a grouped convolution of per-sample kernels)."""
    on = sigma > 0
    if not bool(on.any()):
        return x
    sub, s = x[on], sigma[on]
    r = max(1, math.ceil(3 * float(s.max())))
    t = torch.arange(-r, r + 1, dtype=x.dtype)
    k = torch.exp(-0.5 * (t / s.view(-1, 1)) ** 2)
    k = (k / k.sum(dim=1, keepdim=True)).view(len(s), 1, 1, 1, -1)  # (n, 1, 1, 1, 2r + 1)
    h, w = sub.shape[-2:]
    y = F.pad(sub, (r, r, 0, 0), mode="reflect")
    y = sum(k[..., j] * y[..., j:j + w] for j in range(2 * r + 1))
    y = F.pad(y, (0, 0, r, r), mode="reflect")
    y = sum(k[..., j] * y[..., j:j + h, :] for j in range(2 * r + 1))
    out = x.clone()
    out[on] = y
    return out


def augment_batch(images: torch.Tensor, masks: torch.Tensor, cfg: StandardAugmentConfig,
                  generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """images float (B, 3, H, W) in [0, 1], masks integer (B, H, W) -> the same shapes and dtypes,
    every pair moved by its own random geometry (the same for image and mask)."""
    n, _, h, w = images.shape
    if n == 0:
        return images, masks
    theta = affine_matrices(cfg, n, generator)
    grid = affine_sampling_grid(theta, h, w)
    if cfg.elastic_prob > 0 and cfg.elastic_alpha > 0:
        grid = grid + elastic_offsets(cfg, n, h, w, generator)
    out = F.grid_sample(images.float(), grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    m = F.grid_sample(masks[:, None].float(), grid, mode="nearest", padding_mode="zeros", align_corners=False)
    return photometric(out, cfg, generator), m[:, 0].round().to(masks.dtype)
