"""Procedural steel-surface images with defects, each with a pixel mask.

This is augvae's embedded default dataset and the measuring stick for what a VAE overlay keeps of a
defect. It mimics the three image features named by Malyshev et al. (GraphiCon 2021): the surface
*texture* of rolled metal, *sharp transitions* (the boundary of a product against its background)
and *broken lines* (cracks). Every image is grayscale ``float32`` in ``[0, 1]`` with shape
``(H, W)``, and every defect comes with a boolean mask of the pixels it covers, so the effect of an
augmentation can be measured on the defect and on the background separately.

Everything is deterministic: the same arguments always give bit-identical arrays (all randomness
comes from :func:`numpy.random.default_rng` seeded through :class:`numpy.random.SeedSequence`).
Sizes are relative, so an image of size 256 shows the same kind of picture as one of size 64 at a
higher resolution. A defect changes no pixel farther than ``ceil(size / 20) + 2`` pixels from its
mask (soft edges, a faint shadow around cracks, a light rim on pores); beyond that the image is
exactly the surface it was drawn on.

Example:
    >>> from augvae.data.synthetic import make_image
    >>> sample = make_image("crack", size=64, seed=1)
    >>> sample.image.shape, sample.image.dtype.name, bool(sample.mask.any())
    ((64, 64), 'float32', True)
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

from augvae._io import write_bytes, write_csv
from augvae.errors import ConfigError, InputError

__all__ = [
    "DEFECT_KINDS",
    "SyntheticImage",
    "add_crack",
    "add_pore",
    "add_scratch",
    "make_dataset",
    "make_image",
    "make_overlay_sources",
    "make_surface",
    "write_dataset",
    "write_overlay_sources",
]

DEFECT_KINDS: tuple[str, ...] = ("crack", "pore", "scratch")
"""The defect kinds the generator can draw; ``"clean"`` is the defect-free class."""

_ALL_KINDS: tuple[str, ...] = ("clean", *DEFECT_KINDS)
_MIN_SIZE = 16
_MAX_SIZE = 1024
_MANIFEST_FIELDS = ("path", "class", "seed", "mask_path")
# Streams of the per-image seed sequence: the surface and the defect never share random numbers.
_SURFACE_STREAM = 0
_DEFECT_STREAM = 1
_OVERLAY_STREAM = 2
_MAX_TRIES = 24


@dataclass(frozen=True, eq=False)
class SyntheticImage:
    """One generated image with its defect mask.

    Instances compare by identity (``eq=False``): comparing numpy arrays with ``==`` has no single
    truth value. Compare the fields with :func:`numpy.array_equal` instead.

    Attributes:
        image: ``(H, W)`` ``float32`` grayscale in ``[0, 1]``.
        mask: ``(H, W)`` ``bool``, ``True`` where the defect is; all ``False`` for ``"clean"``.
        kind: ``"clean"`` or one of :data:`DEFECT_KINDS`.
        seed: The seed the defect (and, unless another surface seed was given, the surface) was
            drawn from; ``make_image(kind, size, seed)`` rebuilds the image.

    Example:
        >>> s = make_image("clean", size=32, seed=0)
        >>> s.kind, s.seed, int(s.mask.sum())
        ('clean', 0, 0)
    """

    image: np.ndarray
    mask: np.ndarray
    kind: str
    seed: int


# --------------------------------------------------------------------------------------------------
# validation


def _check_size(size: object) -> int:
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)):
        raise ConfigError(
            f"size must be an int in [{_MIN_SIZE}, {_MAX_SIZE}], got {size!r} of type {type(size).__name__}; pass e.g. size=64"
        )
    if not _MIN_SIZE <= int(size) <= _MAX_SIZE:
        raise ConfigError(f"size must be an int in [{_MIN_SIZE}, {_MAX_SIZE}], got {size}; pass e.g. size=64")
    return int(size)


def _check_seed(seed: object, name: str = "seed") -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or int(seed) < 0:
        raise ConfigError(f"{name} must be a non-negative int, got {seed!r}; pass e.g. {name}=0")
    return int(seed)


def _check_kind(kind: object) -> str:
    if not isinstance(kind, str) or kind not in _ALL_KINDS:
        raise ConfigError(f"unknown image kind {kind!r}; valid kinds are {', '.join(_ALL_KINDS)}")
    return kind


def _check_prob(p: object, name: str) -> float:
    if isinstance(p, bool) or not isinstance(p, (int, float, np.integer, np.floating)) or not 0.0 <= float(p) <= 1.0:
        raise ConfigError(f"{name} must be a number in [0, 1], got {p!r}")
    return float(p)


def _check_classes(classes: Sequence[str]) -> tuple[str, ...]:
    if isinstance(classes, str):
        raise ConfigError(f"classes must be a sequence of class names, got the string {classes!r}; pass e.g. ({classes!r},)")
    names = tuple(classes)
    if not names:
        raise ConfigError(f"classes must name at least one class; valid classes are {', '.join(_ALL_KINDS)}")
    for name in names:
        _check_kind(name)
    if len(set(names)) != len(names):
        raise ConfigError(f"classes must not repeat a class, got {names!r}")
    return names


def _check_count(n: object) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or int(n) < 0:
        raise ConfigError(f"n_per_class must be a non-negative int, got {n!r}")
    return int(n)


def _as_image(image: object) -> np.ndarray:
    arr = np.asarray(image)
    if arr.ndim != 2 or min(arr.shape) < 2:
        raise InputError(f"image must be a 2-D (H, W) grayscale array, got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.floating):
        raise InputError(f"image must be a float array with values in [0, 1], got dtype {arr.dtype}")
    return arr.astype(np.float32, copy=True)


# --------------------------------------------------------------------------------------------------
# numeric helpers


def _upsampled_noise(rng: np.random.Generator, cells: tuple[int, int], shape: tuple[int, int]) -> np.ndarray:
    """Smooth noise: a coarse grid of N(0, 1) values, bicubically resized to ``shape`` (H, W)."""
    coarse = rng.standard_normal((cells[0] + 1, cells[1] + 1)).astype(np.float32)
    out = Image.fromarray(coarse).resize((shape[1], shape[0]), Image.Resampling.BICUBIC)
    return np.asarray(out, dtype=np.float32)


def _smooth_1d(rng: np.random.Generator, n: int, knots: int) -> np.ndarray:
    """A smooth random curve of ``n`` samples, about N(0, 1) in value."""
    values = rng.standard_normal(knots + 1)
    return np.interp(np.linspace(0.0, knots, n), np.arange(knots + 1), values)


def _blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur with mirrored borders, out to 3 sigma (``scipy.ndimage.gaussian_filter``)."""
    if sigma <= 0:
        return image
    return ndimage.gaussian_filter(image, sigma, mode="mirror", truncate=3.0)


def _capsule_coverage(shape: tuple[int, int], polylines: Sequence[tuple[np.ndarray, np.ndarray]], soft: float) -> np.ndarray:
    """Antialiased coverage in ``[0, 1]`` of thick polylines with a radius per vertex.

    Each segment is a capsule whose radius varies linearly between its end vertices; coverage is
    ``clip((radius - distance) / soft + 0.5, 0, 1)`` maxed over all segments, so it is exactly 0
    farther than ``radius + soft / 2`` from the line and ``>= 0.5`` exactly within ``radius``.
    Points are ``(x, y)`` = (column, row) in pixels.
    """
    h, w = shape
    p0 = np.concatenate([pts[:-1] for pts, _ in polylines]).astype(np.float64)
    p1 = np.concatenate([pts[1:] for pts, _ in polylines]).astype(np.float64)
    r0 = np.concatenate([r[:-1] for _, r in polylines]).astype(np.float64)
    r1 = np.concatenate([r[1:] for _, r in polylines]).astype(np.float64)
    reach = np.maximum(r0, r1) + soft
    lo = np.minimum(p0, p1) - reach[:, None]
    hi = np.maximum(p0, p1) + reach[:, None]
    inside = (hi[:, 0] >= 0) & (lo[:, 0] <= w - 1) & (hi[:, 1] >= 0) & (lo[:, 1] <= h - 1)
    out = np.zeros(h * w, dtype=np.float64)
    if not inside.any():
        return out.reshape(h, w).astype(np.float32)
    p0, p1, r0, r1 = p0[inside], p1[inside], r0[inside], r1[inside]
    d = p1 - p0
    half = 0.5 * np.sqrt((d**2).sum(axis=1))
    radius = math.ceil(half.max() + max(r0.max(), r1.max()) + soft + 1.0)
    grid = np.arange(-radius, radius + 1)
    oy, ox = (a.ravel() for a in np.meshgrid(grid, grid, indexing="ij"))
    mid = np.rint(0.5 * (p0 + p1)).astype(np.int64)
    qx = mid[:, 0:1] + ox[None, :]
    qy = mid[:, 1:2] + oy[None, :]
    len2 = np.maximum((d**2).sum(axis=1), 1e-12)[:, None]
    t = np.clip(((qx - p0[:, 0:1]) * d[:, 0:1] + (qy - p0[:, 1:2]) * d[:, 1:2]) / len2, 0.0, 1.0)
    dist = np.hypot(qx - (p0[:, 0:1] + t * d[:, 0:1]), qy - (p0[:, 1:2] + t * d[:, 1:2]))
    rad = r0[:, None] + t * (r1 - r0)[:, None]
    val = np.clip((rad - dist) / soft + 0.5, 0.0, 1.0)
    keep = (val > 0) & (qx >= 0) & (qx < w) & (qy >= 0) & (qy < h)
    np.maximum.at(out, qy[keep] * w + qx[keep], val[keep])
    return out.reshape(h, w).astype(np.float32)


def _broken_path(
    rng: np.random.Generator, theta0: float, length: float, step: float, scale_px: float, wiggle: float
) -> tuple[np.ndarray, np.ndarray]:
    """A jagged "broken line" from the origin: straight pieces at random angles about ``theta0``.

    Returns the vertices ``(n + 1, 2)`` as (x, y) and the heading of each of the ``n`` steps.
    """
    n = max(2, math.ceil(length / step))
    n_pieces = math.ceil(length / (0.04 * scale_px)) + 2
    edges = np.cumsum(rng.uniform(0.04, 0.12, n_pieces) * scale_px)
    piece = np.searchsorted(edges, np.arange(n) * step, side="right")
    deviation = rng.normal(0.0, wiggle, n_pieces + 1)
    heading = theta0 + deviation[piece] + 0.25 * _smooth_1d(rng, n, 3) + rng.normal(0.0, 0.06, n)
    steps = step * np.stack([np.cos(heading), np.sin(heading)], axis=1)
    pts = np.concatenate([np.zeros((1, 2)), np.cumsum(steps, axis=0)])
    return pts, heading


# --------------------------------------------------------------------------------------------------
# surface


def make_surface(size: int, rng: np.random.Generator, boundary_prob: float = 0.3) -> np.ndarray:
    """Draw a defect-free rolled-metal surface, sometimes with a sharp product boundary.

    The surface is mid-grey (a level in ``[0.55, 0.7]``) with smooth noise at four scales, fine
    grain and, usually, faint streaks along the rolling direction. With probability
    ``boundary_prob`` a straight edge at a random angle cuts off part of the image (at most about
    40 %), beyond which the image is much darker (background) or much lighter (glare): the
    *sharp transition* feature of the paper.

    Args:
        size: Side of the square image in pixels, in ``[16, 1024]``.
        rng: The random generator; the result is a function of its state only.
        boundary_prob: Probability in ``[0, 1]`` of drawing a product boundary.

    Returns:
        A ``(size, size)`` ``float32`` array in ``[0, 1]``.

    Raises:
        ConfigError: If ``size`` or ``boundary_prob`` is out of range.

    Example:
        >>> import numpy as np
        >>> surface = make_surface(64, np.random.default_rng(0), boundary_prob=0.0)
        >>> surface.shape, 0.4 < float(surface.mean()) < 0.8
        ((64, 64), True)
    """
    size = _check_size(size)
    boundary_prob = _check_prob(boundary_prob, "boundary_prob")
    return _surface(size, rng, boundary_prob)[0]


def _surface(size: int, rng: np.random.Generator, boundary_prob: float) -> tuple[np.ndarray, np.ndarray]:
    """:func:`make_surface` plus the mask of the product side, a few pixels clear of any boundary."""
    shape = (size, size)
    # Scene decisions first and size-independent draws next, so that one rng state gives the same
    # scene (level, streak direction, boundary) at every size; per-pixel noise comes last.
    level = rng.uniform(0.55, 0.7)
    octaves = [(cells, amp * rng.uniform(0.6, 1.2)) for cells, amp in ((2, 0.055), (4, 0.035), (8, 0.024), (16, 0.014))]
    streak_amp = rng.uniform(0.01, 0.03) if rng.random() < 0.75 else 0.0
    streak_transpose = rng.random() < 0.5
    grain_sigma = rng.uniform(0.012, 0.022)
    boundary = _boundary_params(rng) if rng.random() < boundary_prob else None
    img = np.full(shape, level, dtype=np.float32)
    # Multi-scale smooth texture; cells are relative to the image so every size shows the same scene.
    for cells, amp in octaves:
        img += amp * _upsampled_noise(rng, (cells, cells), shape)
    other_texture = _upsampled_noise(rng, (6, 6), shape) if boundary is not None else None
    # Rolling streaks: noise stretched along one axis.
    if streak_amp > 0:
        streaks = _blur(_upsampled_noise(rng, (max(4, size // 2), 3), shape), 0.4 * size / 64)
        img += streak_amp * (streaks.T if streak_transpose else streaks)
    # Fine grain: per-pixel noise plus a slightly blurred component.
    img += rng.normal(0.0, grain_sigma, shape).astype(np.float32)
    img += _blur(rng.normal(0.0, 0.03, shape).astype(np.float32), 0.7)
    product = np.ones(shape, dtype=bool)
    if boundary is not None:
        assert other_texture is not None
        img, dist = _add_boundary(img, boundary, other_texture)
        product = dist < -(2.0 + size / 32)
    return np.clip(img, 0.0, 1.0).astype(np.float32), product


def _boundary_params(rng: np.random.Generator) -> dict[str, float]:
    theta = rng.uniform(0.0, 2 * np.pi)
    offset = rng.uniform(0.1, 0.35)  # fraction of the side; the far side is the smaller part
    other = rng.uniform(0.06, 0.28) if rng.random() < 0.65 else rng.uniform(0.86, 0.97)
    chamfer = rng.uniform(0.06, 0.15) if rng.random() < 0.5 else 0.0
    return {"theta": theta, "offset": offset, "other": other, "chamfer": chamfer}


def _add_boundary(img: np.ndarray, params: dict[str, float], other_texture: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    size = img.shape[0]
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    c = (size - 1) / 2
    theta = params["theta"]
    dist = (xx - c) * np.cos(theta) + (yy - c) * np.sin(theta) - params["offset"] * size
    beyond = np.clip(dist + 0.5, 0.0, 1.0)  # a one-pixel antialiased, i.e. sharp, edge
    other_img = params["other"] + 0.25 * (img - img.mean()) + 0.02 * other_texture
    out = img * (1 - beyond) + other_img * beyond
    if params["chamfer"] > 0:  # a bright chamfer along the edge, just inside the product
        width = max(0.6, 0.9 * size / 64)
        out += params["chamfer"] * np.exp(-0.5 * ((dist + width) / width) ** 2)
    return out, dist


# --------------------------------------------------------------------------------------------------
# defects


def _dilate(mask: np.ndarray, px: int) -> np.ndarray:
    """Grow a boolean mask by ``px`` pixels in every direction (a square of side ``2 px + 1``; ``scipy.ndimage``)."""
    if px <= 0:
        return mask.copy()
    return ndimage.maximum_filter(mask, size=2 * px + 1, mode="constant", cval=False)


def _influence_margin(side: int) -> int:
    """How far (in pixels, per axis) from its mask a defect may change the image."""
    return math.ceil(side / 20) + 2


def _finish(before: np.ndarray, after: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Clip to [0, 1] and keep ``before`` outside the mask grown by the influence margin."""
    near = _dilate(mask, _influence_margin(min(mask.shape)))
    out = np.where(near, np.clip(after, 0.0, 1.0), before)
    return out.astype(np.float32), mask


def add_crack(
    image: np.ndarray,
    rng: np.random.Generator,
    *,
    center: tuple[float, float] | None = None,
    angle: float | None = None,
    length: float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Draw a dark branching crack, a *broken line* of varying width.

    The trunk is a jagged random walk (straight pieces at random angles about a main direction) of
    width 1-3 px at size 64, scaled with the image, tapering at its ends, with one to three
    thinner branches. Crack pixels are pulled toward a dark value in ``[0.04, 0.15]``, so on a
    mid-grey surface the crack is at least 0.25 darker; a faint shadow surrounds it.

    Args:
        image: ``(H, W)`` float grayscale in ``[0, 1]``; not modified.
        rng: The random generator.
        center: Optional ``(x, y)`` of the trunk's middle, as fractions of width and height;
            random in ``[0.25, 0.75]`` if not given.
        angle: Optional main direction of the trunk in radians; random if not given.
        length: Optional trunk length as a fraction of the image side; random in
            ``[0.45, 0.85]`` if not given.

    Returns:
        ``(new_image, mask)``: the ``float32`` image with the crack and the ``bool`` mask of the
        pixels within the crack's width.

    Raises:
        InputError: If ``image`` is not a 2-D float array.

    Example:
        >>> import numpy as np
        >>> surface = np.full((64, 64), 0.6, dtype=np.float32)
        >>> img, mask = add_crack(surface, np.random.default_rng(0))
        >>> bool(mask.any()), float(surface[mask].mean() - img[mask].mean()) > 0.25
        (True, True)
    """
    img = _as_image(image)
    h, w = img.shape
    side = float(min(h, w))
    scale = side / 64.0
    step = 0.5 * scale
    cx, cy = center if center is not None else rng.uniform(0.25, 0.75, 2)
    theta0 = float(angle) if angle is not None else rng.uniform(0.0, np.pi)
    trunk_len = (float(length) if length is not None else rng.uniform(0.45, 0.85)) * side
    pts, heading = _broken_path(rng, theta0, trunk_len, step, side, wiggle=0.35)
    pts += np.array([cx * (w - 1), cy * (h - 1)]) - pts[len(pts) // 2]
    n = len(pts)
    t = np.linspace(0.0, 1.0, n)
    base = rng.uniform(0.5, 1.5) * scale
    taper = np.clip(np.sin(np.pi * t) * 3.0, 0.35, 1.0)
    radii = np.maximum(base * (0.8 + 0.3 * _smooth_1d(rng, n, 5)) * taper, max(0.45 * scale, 0.5))
    polylines = [(pts, radii)]
    for _ in range(int(rng.integers(1, 4))):
        j = int(rng.integers(int(0.15 * (n - 1)), int(0.85 * (n - 1)) + 1))
        b_theta = heading[min(j, len(heading) - 1)] + rng.choice([-1.0, 1.0]) * rng.uniform(0.35, 1.0)
        b_pts, _ = _broken_path(rng, b_theta, rng.uniform(0.12, 0.35) * side, step, side, wiggle=0.3)
        b_pts += pts[j]
        b_radii = np.linspace(max(0.75 * radii[j], 0.5 * scale, 0.5), max(0.4 * scale, 0.5), len(b_pts))
        polylines.append((b_pts, b_radii))
    soft = 0.75 * math.sqrt(max(scale, 1.0))
    core = _capsule_coverage((h, w), polylines, soft)
    halo_lines = [(p, r + 1.2 * scale) for p, r in polylines]
    halo = _capsule_coverage((h, w), halo_lines, 1.5 * scale)
    depth = np.clip(0.92 + 0.08 * _upsampled_noise(rng, (4, 4), (h, w)), 0.7, 1.0)
    alpha = np.maximum(core * depth, rng.uniform(0.08, 0.16) * halo)
    dark = rng.uniform(0.04, 0.15)
    out = img + alpha * (dark - img)
    return _finish(img, out, core >= 0.5)


def add_pore(
    image: np.ndarray,
    rng: np.random.Generator,
    *,
    center: tuple[float, float] | None = None,
    radius: float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Draw a dark, roughly round pore (pit) with soft edges and a faint light rim.

    Args:
        image: ``(H, W)`` float grayscale in ``[0, 1]``; not modified.
        rng: The random generator.
        center: Optional ``(x, y)`` as fractions of width and height; random in ``[0.2, 0.8]``.
        radius: Optional mean radius as a fraction of the image side; random in
            ``[0.04, 0.10]``.

    Returns:
        ``(new_image, mask)``; the mask is the pore's core, where the darkening is at least half
        its full strength.

    Raises:
        InputError: If ``image`` is not a 2-D float array.

    Example:
        >>> import numpy as np
        >>> surface = np.full((64, 64), 0.6, dtype=np.float32)
        >>> img, mask = add_pore(surface, np.random.default_rng(0))
        >>> bool(mask.any()), float(img[mask].mean()) < 0.4
        (True, True)
    """
    img = _as_image(image)
    h, w = img.shape
    side = float(min(h, w))
    cx, cy = center if center is not None else rng.uniform(0.2, 0.8, 2)
    r0 = max((float(radius) if radius is not None else rng.uniform(0.04, 0.10)) * side, 1.5)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    dx, dy = xx - cx * (w - 1), yy - cy * (h - 1)
    rho = np.hypot(dx, dy)
    phi = np.arctan2(dy, dx)
    wobble = np.zeros_like(phi)
    for k, amp in ((2, 0.12), (3, 0.07), (4, 0.04), (5, 0.03)):
        wobble += rng.uniform(0.0, amp) * np.cos(k * phi + rng.uniform(0.0, 2 * np.pi))
    r_phi = r0 * (1.0 + wobble)
    soft = 0.22 * r0 + 0.5
    s = np.clip((r_phi - rho) / (2 * soft) + 0.5, 0.0, 1.0)
    alpha = s * s * (3 - 2 * s)  # smoothstep: soft edge, >= 0.5 exactly where rho <= r_phi
    depth_profile = np.clip(rho / np.maximum(r_phi, 1e-6), 0.0, 1.0) ** 2
    target = rng.uniform(0.04, 0.14) + 0.1 * depth_profile + 0.02 * _upsampled_noise(rng, (5, 5), (h, w))
    out = img + alpha * (target - img)
    # A light rim on the side facing the light, compactly supported near the edge.
    rim_w = 0.2 * r0 + 0.5
    rim_d = (rho - r_phi) / rim_w
    light = rng.uniform(0.0, 2 * np.pi)
    rim = np.exp(-(rim_d**2)) * np.clip(np.cos(phi - light), 0.0, 1.0) * (np.abs(rim_d) < 2.0)
    out += rng.uniform(0.04, 0.12) * rim * (rho > r_phi)
    return _finish(img, out, alpha >= 0.5)


def add_scratch(image: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Draw a thin, long, nearly straight scratch, lighter or darker than the surface.

    Args:
        image: ``(H, W)`` float grayscale in ``[0, 1]``; not modified.
        rng: The random generator.

    Returns:
        ``(new_image, mask)``; the mask covers the scratch's width (1-1.6 px at size 64).

    Raises:
        InputError: If ``image`` is not a 2-D float array.

    Example:
        >>> import numpy as np
        >>> surface = np.full((64, 64), 0.6, dtype=np.float32)
        >>> img, mask = add_scratch(surface, np.random.default_rng(0))
        >>> bool(mask.any()), float(np.abs(img - surface)[mask].mean()) > 0.1
        (True, True)
    """
    img = _as_image(image)
    h, w = img.shape
    side = float(min(h, w))
    scale = side / 64.0
    cx, cy = rng.uniform(0.3, 0.7, 2)
    theta = rng.uniform(0.0, np.pi)
    length = rng.uniform(0.5, 0.95) * side
    n = max(8, math.ceil(length / (0.75 * scale)))
    u = np.linspace(-0.5, 0.5, n) * length
    bow = rng.uniform(-0.05, 0.05) * side * (1.0 - (2 * u / length) ** 2)
    bow += 0.3 * scale * _smooth_1d(rng, n, 6)
    direction = np.array([np.cos(theta), np.sin(theta)])
    normal = np.array([-np.sin(theta), np.cos(theta)])
    pts = np.array([cx * (w - 1), cy * (h - 1)]) + u[:, None] * direction + bow[:, None] * normal
    radii = np.full(n, max(rng.uniform(0.5, 0.8) * scale, 0.5))
    cov = _capsule_coverage((h, w), [(pts, radii)], 0.7 * math.sqrt(max(scale, 1.0)))
    fade = np.clip(0.8 + 0.25 * _upsampled_noise(rng, (3, 3), (h, w)), 0.5, 1.0)
    sign = 1.0 if rng.random() < 0.6 else -1.0
    out = img + sign * rng.uniform(0.22, 0.35) * cov * fade
    return _finish(img, out, cov >= 0.5)


_Adder = Callable[[np.ndarray, np.random.Generator], tuple[np.ndarray, np.ndarray]]
_ADDERS: dict[str, _Adder] = {"crack": add_crack, "pore": add_pore, "scratch": add_scratch}


# --------------------------------------------------------------------------------------------------
# images and datasets


def _rng(seed: int, stream: int, *extra: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, stream, *extra]))


def make_image(
    kind: str,
    size: int = 64,
    seed: int = 0,
    surface_seed: int | None = None,
    boundary_prob: float = 0.3,
) -> SyntheticImage:
    """Generate one image: a surface plus (unless ``kind == "clean"``) one defect.

    The surface is drawn from ``surface_seed`` if given, else from ``seed``; the defect always from
    ``seed``. So ``make_image(k, seed=s)`` lies on the same surface as ``make_image("clean",
    seed=s)``, and several defects can share one surface through ``surface_seed``. The defect is
    redrawn from the same random stream (up to 24 times, deterministically) until its mask is
    non-empty and lies on the product side of any boundary, so that it contrasts with the metal.

    Args:
        kind: ``"clean"`` or one of :data:`DEFECT_KINDS`.
        size: Side of the square image in pixels, in ``[16, 1024]``.
        seed: Non-negative int seed of the defect (and of the surface by default).
        surface_seed: Optional non-negative int seed of the surface.
        boundary_prob: Probability in ``[0, 1]`` that the surface shows a product boundary.

    Returns:
        The :class:`SyntheticImage`.

    Raises:
        ConfigError: If ``kind`` is unknown (the message lists the valid kinds) or ``size``,
            ``seed``, ``surface_seed`` or ``boundary_prob`` is out of range.

    Example:
        >>> import numpy as np
        >>> a = make_image("pore", size=32, seed=3)
        >>> b = make_image("pore", size=32, seed=3)
        >>> np.array_equal(a.image, b.image), a.kind
        (True, 'pore')
    """
    kind = _check_kind(kind)
    size = _check_size(size)
    seed = _check_seed(seed)
    s_seed = seed if surface_seed is None else _check_seed(surface_seed, "surface_seed")
    boundary_prob = _check_prob(boundary_prob, "boundary_prob")
    surface, product = _surface(size, _rng(s_seed, _SURFACE_STREAM), boundary_prob)
    if kind == "clean":
        return SyntheticImage(surface, np.zeros(surface.shape, dtype=bool), kind, seed)
    # Redraw (deterministically) until the defect is in frame and on the product, not beyond its
    # boundary; keep the best try if none is perfect.
    rng = _rng(seed, _DEFECT_STREAM)
    best: tuple[float, np.ndarray, np.ndarray] | None = None
    for _ in range(_MAX_TRIES):
        image, mask = _ADDERS[kind](surface, rng)
        area = int(mask.sum())
        off = float((mask & ~product).sum()) / area if area else 2.0
        if best is None or off < best[0]:
            best = (off, image, mask)
        if off == 0.0:
            break
    assert best is not None
    return SyntheticImage(best[1], best[2], kind, seed)


def make_overlay_sources(size: int = 64, seed: int = 0) -> dict[str, SyntheticImage]:
    """Build the paper's overlay experiment: one clean surface and three defects drawn on it.

    The surface has no product boundary, so the defects dominate. ``"crack1"`` lies in the upper
    half of the image and ``"crack2"`` in the lower half at a direction 50-90 degrees away from
    it; ``"pore"`` sits in a free corner. The three defects are placed so that their masks, grown
    by a few pixels, do not touch. Each defect image is exactly ``"background"`` except within
    ``ceil(size / 20) + 2`` pixels of its mask.

    Args:
        size: Side of the square images in pixels, in ``[16, 1024]``.
        seed: Non-negative int seed.

    Returns:
        ``{"background": ..., "crack1": ..., "crack2": ..., "pore": ...}`` in that order.

    Raises:
        ConfigError: If ``size`` or ``seed`` is out of range.

    Example:
        >>> import numpy as np
        >>> src = make_overlay_sources(size=64, seed=0)
        >>> list(src)
        ['background', 'crack1', 'crack2', 'pore']
        >>> bool((src["crack1"].mask & src["crack2"].mask).any())
        False
    """
    size = _check_size(size)
    seed = _check_seed(seed)
    surface = make_surface(size, _rng(seed, _SURFACE_STREAM), boundary_prob=0.0)
    rng = _rng(seed, _OVERLAY_STREAM)
    gap = max(1, math.ceil(size / 32))
    best: tuple[int, list[tuple[np.ndarray, np.ndarray]]] | None = None
    for _ in range(64):
        flip = rng.random() < 0.5  # mirror the layout left-right
        theta1 = rng.uniform(-np.pi / 7, np.pi / 7)
        c1 = (rng.uniform(0.3, 0.45), rng.uniform(0.22, 0.32))
        theta2 = theta1 + rng.choice([-1.0, 1.0]) * rng.uniform(np.radians(50), np.radians(90))
        c2 = (rng.uniform(0.55, 0.7), rng.uniform(0.62, 0.75))
        cp = (rng.uniform(0.18, 0.28), rng.uniform(0.72, 0.82))
        if flip:
            c1, c2, cp = (1 - c1[0], c1[1]), (1 - c2[0], c2[1]), (1 - cp[0], cp[1])
            theta1, theta2 = np.pi - theta1, np.pi - theta2
        crack1 = add_crack(surface, rng, center=c1, angle=theta1, length=rng.uniform(0.45, 0.6))
        crack2 = add_crack(surface, rng, center=c2, angle=theta2, length=rng.uniform(0.45, 0.6))
        pore = add_pore(surface, rng, center=cp, radius=rng.uniform(0.06, 0.09))
        grown = [_dilate(m, gap) for _, m in (crack1, crack2, pore)]
        clash = int((grown[0] & grown[1]).sum() + (grown[0] & grown[2]).sum() + (grown[1] & grown[2]).sum())
        if best is None or clash < best[0]:
            best = (clash, [crack1, crack2, pore])
        if clash == 0:
            break
    assert best is not None
    (i1, m1), (i2, m2), (ip, mp) = best[1]
    return {
        "background": SyntheticImage(surface, np.zeros(surface.shape, dtype=bool), "clean", seed),
        "crack1": SyntheticImage(i1, m1, "crack", seed),
        "crack2": SyntheticImage(i2, m2, "crack", seed),
        "pore": SyntheticImage(ip, mp, "pore", seed),
    }


def _image_seed(seed: int, kind: str, index: int) -> int:
    """The seed of image ``index`` of class ``kind``; independent of which other classes exist."""
    state = np.random.SeedSequence([seed, _ALL_KINDS.index(kind), index]).generate_state(1)
    return int(state[0])


def make_dataset(
    n_per_class: int,
    size: int = 64,
    seed: int = 0,
    classes: Sequence[str] = ("crack", "pore", "scratch", "clean"),
    boundary_prob: float = 0.3,
) -> list[SyntheticImage]:
    """Generate ``n_per_class`` images of each class, class by class.

    Image ``i`` of class ``c`` uses the seed derived from ``(seed, c, i)`` through
    :class:`numpy.random.SeedSequence`, where ``c`` is the class's fixed index among
    ``("clean", "crack", "pore", "scratch")``; so an image does not depend on which other classes
    are asked for, nor on their order, nor on ``n_per_class``.

    Args:
        n_per_class: Non-negative number of images per class.
        size: Side of the square images in pixels, in ``[16, 1024]``.
        seed: Non-negative int seed of the whole dataset.
        classes: Class names, each ``"clean"`` or one of :data:`DEFECT_KINDS`, without repeats.
        boundary_prob: Probability in ``[0, 1]`` that a surface shows a product boundary.

    Returns:
        ``len(classes) * n_per_class`` images, the first ``n_per_class`` of ``classes[0]``, ...

    Raises:
        ConfigError: If an argument is out of range or a class is unknown.

    Example:
        >>> data = make_dataset(2, size=32, seed=0, classes=("crack", "clean"))
        >>> [s.kind for s in data]
        ['crack', 'crack', 'clean', 'clean']
    """
    n_per_class = _check_count(n_per_class)
    size = _check_size(size)
    seed = _check_seed(seed)
    names = _check_classes(classes)
    boundary_prob = _check_prob(boundary_prob, "boundary_prob")
    return [
        make_image(kind, size=size, seed=_image_seed(seed, kind, i), boundary_prob=boundary_prob)
        for kind in names
        for i in range(n_per_class)
    ]


def _png_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def _to_uint8(image: np.ndarray) -> np.ndarray:
    return np.rint(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8)


def _write_sample(root: Path, rel_image: str, rel_mask: str | None, sample: SyntheticImage) -> None:
    write_bytes(root / rel_image, _png_bytes(_to_uint8(sample.image)))
    if rel_mask is not None:
        write_bytes(root / rel_mask, _png_bytes(sample.mask.astype(np.uint8) * 255))


def write_dataset(
    root: str | Path,
    n_per_class: int,
    size: int = 64,
    seed: int = 0,
    classes: Sequence[str] = ("crack", "pore", "scratch", "clean"),
    masks: bool = True,
    boundary_prob: float = 0.3,
) -> Path:
    """Write :func:`make_dataset` as PNG files, one folder per class, with masks and a manifest.

    Layout: ``root/images/<class>/<class>_<i>.png`` (8-bit grayscale), with ``masks``
    ``root/masks/<class>/<class>_<i>.png`` (0 or 255), and ``root/manifest.csv`` with columns
    ``path, class, seed, mask_path`` (paths relative to ``root`` with ``/``; ``mask_path`` empty
    without masks). Every file is written atomically. Files already in ``root`` are overwritten
    where names clash and otherwise left alone.

    Args:
        root: The output folder; created if needed.
        n_per_class: Non-negative number of images per class.
        size: Side of the square images in pixels, in ``[16, 1024]``.
        seed: Non-negative int seed of the whole dataset.
        classes: Class names, each ``"clean"`` or one of :data:`DEFECT_KINDS`, without repeats.
        masks: Whether to write the masks.
        boundary_prob: Probability in ``[0, 1]`` that a surface shows a product boundary.

    Returns:
        ``root/images``, the folder with one subfolder per class.

    Raises:
        ConfigError: If an argument is out of range or a class is unknown.

    Example:
        >>> import tempfile
        >>> images = write_dataset(tempfile.mkdtemp(), 1, size=16, classes=("pore", "clean"))
        >>> sorted(p.name for p in images.iterdir())
        ['clean', 'pore']
    """
    root = Path(root)
    names = _check_classes(classes)
    data = make_dataset(n_per_class, size=size, seed=seed, classes=names, boundary_prob=boundary_prob)
    rows = []
    for j, sample in enumerate(data):
        i = j % n_per_class
        stem = f"{sample.kind}/{sample.kind}_{i}.png"
        rel_mask = f"masks/{stem}" if masks else None
        _write_sample(root, f"images/{stem}", rel_mask, sample)
        rows.append({"path": f"images/{stem}", "class": sample.kind, "seed": sample.seed, "mask_path": rel_mask or ""})
    for kind in names:  # an empty class still gets its folder
        (root / "images" / kind).mkdir(parents=True, exist_ok=True)
    write_csv(root / "manifest.csv", rows, _MANIFEST_FIELDS)
    return root / "images"


def write_overlay_sources(root: str | Path, size: int = 64, seed: int = 0) -> Path:
    """Write :func:`make_overlay_sources` as PNG files with masks and a manifest.

    Writes ``root/images/<name>.png`` and ``root/masks/<name>.png`` for ``name`` in
    ``background, crack1, crack2, pore`` (the background mask is all 0), and
    ``root/manifest.csv`` as :func:`write_dataset` does (``class`` is the name).

    Args:
        root: The output folder; created if needed.
        size: Side of the square images in pixels, in ``[16, 1024]``.
        seed: Non-negative int seed.

    Returns:
        ``root/images``.

    Raises:
        ConfigError: If ``size`` or ``seed`` is out of range.

    Example:
        >>> import tempfile
        >>> images = write_overlay_sources(tempfile.mkdtemp(), size=32)
        >>> sorted(p.name for p in images.iterdir())
        ['background.png', 'crack1.png', 'crack2.png', 'pore.png']
    """
    root = Path(root)
    rows = []
    for name, sample in make_overlay_sources(size=size, seed=seed).items():
        _write_sample(root, f"images/{name}.png", f"masks/{name}.png", sample)
        rows.append({"path": f"images/{name}.png", "class": name, "seed": sample.seed, "mask_path": f"masks/{name}.png"})
    write_csv(root / "manifest.csv", rows, _MANIFEST_FIELDS)
    return root / "images"
