"""Every overlay formulation, written once: pure tensor code, any device, no host synchronisation.

Latent formulations combine the latents of ``k`` sources and are decoded afterwards:

- ``sum``: ``sum_i w_i z_i``, the paper's literal method;
- ``mean``: ``sum_i w_i z_i / sum_i w_i``;
- ``offset``: ``z_bg + sum_i w_i (z_i - z_bg)``, offsets relative to a defect-free latent ``z_bg``.

Pixel formulations composite onto an image ``x`` (a real image, or a decoded background):

- ``residual``: ``x + sum_i w_i (decode(z_i) - decode(z_bg))``: each source's *decoded* difference
  from the defect-free reference;
- ``transplant``: each defect's *real* pixels under its soft mask (see :mod:`augvae.overlay.extract`),
  moved by a random flip / 90-degree rotation / translation / zoom and blended onto ``x`` by one of
  :data:`BLENDS`: ``add`` (``x + w m r``, the residual ``r = image - projection``), ``paste``
  (``x (1 - w m) + w m image``, a feathered paste) or ``poisson`` (a seamless, gradient-domain paste).

Example:
    >>> import torch
    >>> combine_latents(torch.tensor([[[1.0, 0.0], [0.0, 2.0]]])).tolist()
    [[1.0, 2.0]]
    >>> base = torch.zeros(1, 1, 8, 8)
    >>> image = torch.ones(1, 1, 1, 8, 8)                 # one defect: a bright square
    >>> mask = torch.zeros(1, 1, 1, 8, 8); mask[..., 2:4, 2:4] = 1
    >>> out = transplant(base, image, image, mask, placement_matrix(torch.zeros(1, 1, 4) + 0.5, 8, 8), torch.ones(1, 1),
    ...                  torch.zeros(1, 1, dtype=torch.long))
    >>> float(out.sum())                                   # the 2x2 defect, nothing else
    4.0
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from augvae._imageops import resize
from augvae.config import TRANSPLANT_TRANSLATE, check_choice
from augvae.errors import ConfigError, InputError
from augvae.overlay._names import BLENDS, FORMULATIONS, LATENT_FORMULATIONS, PIXEL_FORMULATIONS

__all__ = [
    "FORMULATIONS",
    "LATENT_FORMULATIONS",
    "PIXEL_FORMULATIONS",
    "BLENDS",
    "check_formulation",
    "combine_latents",
    "combine_rows",
    "residual_composite",
    "perturb",
    "sample_around",
    "placement_matrix",
    "symmetry_code",
    "warp",
    "transplant",
    "poisson_blend",
]



def check_formulation(value: Any, allowed: tuple[str, ...] = FORMULATIONS, what: str = "formulation") -> str:
    """Return ``value`` if it is a string in ``allowed``, else raise :class:`ConfigError` listing them.

    Example:
        >>> check_formulation("sum")
        'sum'
    """
    if not isinstance(value, str):
        raise ConfigError(f"{what} must be a string, one of {', '.join(allowed)}; got {value!r}")
    return check_choice(value, allowed, what)


# ---------------------------------------------------------------------------------- latent space
def combine_latents(z: Tensor, formulation: str = "sum", z_background: Tensor | None = None, weights: Any = None) -> Tensor:
    """Combine source latents ``z`` (B, k, D) into one latent per row (B, D) by a latent formulation.

    Args:
        z: (B, k, D) source latents.
        formulation: ``sum``, ``mean`` or ``offset``.
        z_background: (D,) or (B, D) defect-free latent; needed by ``offset``.
        weights: k weights shared by every row, or (B, k) weights per row (default all 1).

    Example:
        >>> combine_latents(torch.tensor([[[1.0, 0.0], [0.0, 2.0]]]), "mean", weights=[[1.0, 3.0]]).tolist()
        [[0.25, 1.5]]
    """
    check_formulation(formulation, LATENT_FORMULATIONS, "latent formulation")
    if not isinstance(z, Tensor) or z.ndim != 3:
        raise InputError(f"source latents must have shape (B, k, D), got {tuple(getattr(z, 'shape', ()))}")
    b, k, _ = z.shape
    w = _weights(weights, b, k, z)
    zb = _background_latent(z_background, z) if formulation == "offset" else None
    return combine_rows(z, w, formulation, zb)


def _weights(weights: Any, b: int, k: int, like: Tensor) -> Tensor:
    if weights is None:
        return torch.ones(b, k, dtype=like.dtype, device=like.device)
    w = torch.as_tensor(weights, dtype=like.dtype, device=like.device)
    if w.ndim == 2:
        if tuple(w.shape) != (b, k) or not bool(torch.isfinite(w).all()):
            raise ConfigError(f"per-row weights must be ({b}, {k}) finite numbers, got {list(w.shape)}")
        return w
    if tuple(w.shape) != (k,) or not bool(torch.isfinite(w).all()):
        raise ConfigError(f"weights must be {k} finite numbers (one per source), got {list(w.shape)}")
    return w[None].expand(b, -1)


def _background_latent(z_background: Tensor | None, z: Tensor) -> Tensor:
    if z_background is None:
        raise ConfigError("the offset and residual formulations need a background latent (a defect-free image's mean): pass "
                          "z_background, or train with a --background image or a --background-class")
    zb = z_background.to(z)
    if zb.ndim == 1:
        zb = zb[None]
    if zb.shape[-1] != z.shape[-1]:
        raise InputError(f"background latent has {zb.shape[-1]} dimensions, the sources {z.shape[-1]}")
    return zb.expand(z.shape[0], -1)


def combine_rows(z: Tensor, w: Tensor, formulation: str, zb: Tensor | None) -> Tensor:
    """:func:`combine_latents` without its checks: z (B, k, D), w (B, k), zb (B, D) for ``offset``."""
    w = w[..., None]  # (B, k, 1)
    if formulation == "sum":
        return (w * z).sum(1)
    if formulation == "mean":
        total = w.sum(1)  # (B, 1); a row whose weights are all 0 combines nothing: the zero vector
        return (w * z).sum(1) / torch.where(total == 0, torch.ones_like(total), total)
    assert zb is not None
    return zb + (w * (z - zb[:, None])).sum(1)


def perturb(mu: Tensor, logvar: Tensor, scale: float, noise: Tensor) -> Tensor:
    """``mu + scale * std * noise``: a point near each cluster centre (``scale = 0`` gives the centre)."""
    if scale == 0:
        return mu
    return mu + scale * torch.exp(0.5 * logvar) * noise.to(mu)


def sample_around(mu: Tensor, logvar: Tensor, scale: float, generator: torch.Generator | None = None) -> Tensor:
    """:func:`perturb` with fresh standard-normal noise from ``generator``.

    Example:
        >>> mu = torch.zeros(2, 3)
        >>> bool(torch.equal(sample_around(mu, mu, 0.0), mu))
        True
    """
    if scale < 0:
        raise ConfigError(f"sampling scale must be >= 0, got {scale}")
    if scale == 0:
        return mu
    return perturb(mu, logvar, scale, torch.randn(mu.shape, generator=generator))


# ---------------------------------------------------------------------------------- pixel space
def residual_composite(base: Tensor, decoded: Tensor, reference: Tensor, w: Tensor, center: bool = False) -> Tensor:
    """``base + sum_i w_i (decoded_i - reference)``, resized to the base, clipped to [0, 1].

    Args:
        base: (B, C', H, W) images to composite onto (C' may be 3 for a 1-channel model).
        decoded: (B, k, C, S, S) decoded sources.
        reference: (B or 1, C, S, S) decoded defect-free reference.
        w: (B, k) weights (0 for unused slots).
        center: Zero-centre each residual image (when the reference is only the sources' centroid,
            an uncentred residual mostly shifts the brightness).
    """
    residual = (w[:, :, None, None, None] * (decoded - reference[:, None])).sum(1)  # (B, C, S, S)
    if center:
        residual = residual - residual.mean((-2, -1), keepdim=True)
    return (base + resize(residual, base.shape[-2], base.shape[-1])).clamp(0.0, 1.0)


def symmetry_code(u: Tensor, flip: bool = True, rotate: bool = True, square: bool = True) -> Tensor:
    """Which of the 8 symmetries of the square each uniform ``u`` in [0, 1) picks (int64, same shape).

    Bit 0 flips x, bit 1 flips y, bit 2 transposes: codes 0-3 are the flips, 4-7 add the transpose.
    ``rotate=False`` draws from the 4 flips only; ``flip=False`` always gives 0 (the identity).
    ``square=False`` (a non-square image, which a transpose would stretch) drops the transpose bit,
    so the code says what is applied; the flip drawn from ``u`` is the same as on a square image.

    Example:
        >>> symmetry_code(torch.tensor([0.1, 0.6, 0.99])).tolist()
        [0, 4, 7]
        >>> symmetry_code(torch.tensor([0.6, 0.99]), rotate=False).tolist()
        [2, 3]
        >>> symmetry_code(torch.tensor([0.6, 0.99]), square=False).tolist()
        [0, 3]
    """
    if not flip:
        return torch.zeros_like(u, dtype=torch.long)
    n = 8 if rotate else 4
    code = (u * n).long().clamp(0, n - 1)
    return code if square else code & 3


def placement_matrix(u: Tensor, height: int, width: int, translate: float = TRANSPLANT_TRANSLATE,
                     zoom: tuple[float, float] = (1.0, 1.0), flip: bool = True, rotate: bool = True) -> Tensor:
    """Sampling matrices (..., 2, 3) of a random placement, from uniforms ``u`` (..., 4) in [0, 1).

    ``u[..., 0]`` picks one of the 8 flips / 90-degree rotations (only the 4 flips where ``rotate``
    is False, and on non-square images, where a rotation would stretch; none where ``flip`` is
    False), ``u[..., 1:3]`` a translation of up to ``translate`` times the side, rounded to whole
    pixels so that the real pixels stay sharp, and ``u[..., 3]`` a zoom in ``zoom``. The matrices
    map output coordinates to source coordinates, as ``F.affine_grid`` wants.
    """
    code = symmetry_code(u[..., 0], flip, rotate, square=height == width)
    t = ((code >> 2) & 1).to(u.dtype)
    fx = 1.0 - 2.0 * (code & 1).to(u.dtype)
    fy = 1.0 - 2.0 * ((code >> 1) & 1).to(u.dtype)
    dx = torch.round((2 * u[..., 1] - 1) * translate * width) * (2.0 / width)
    dy = torch.round((2 * u[..., 2] - 1) * translate * height) * (2.0 / height)
    lo, hi = zoom
    s = lo + (hi - lo) * u[..., 3]
    # source = R (output - shift) / zoom, with R one of the 8 symmetries of the square.
    r00, r01, r10, r11 = fx * (1 - t), fx * t, fy * t, fy * (1 - t)
    row0 = torch.stack([r00 / s, r01 / s, -(r00 * dx + r01 * dy) / s], -1)
    row1 = torch.stack([r10 / s, r11 / s, -(r10 * dx + r11 * dy) / s], -1)
    return torch.stack([row0, row1], -2)


def warp(x: Tensor, theta: Tensor, height: int, width: int) -> Tensor:
    """Resample ``x`` (N, C, S, S) to (N, C, height, width) through sampling matrices ``theta`` (N, 2, 3).

    The source is first resized to the output's size (antialiased when shrinking), so that a
    flip, a 90-degree rotation or a whole-pixel shift moves pixels exactly; outside the source is 0.
    """
    x = resize(x, height, width)
    grid = F.affine_grid(theta.to(x.dtype), [x.shape[0], x.shape[1], height, width], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def poisson_blend(base: Tensor, source: Tensor, mask: Tensor, iterations: int = 40) -> Tensor:
    """A seamless paste: ``base + g`` where ``g`` keeps the gradients of ``source - base`` inside the mask.

    ``g`` solves the Poisson equation ``lap(g) = lap(source - base)`` on the region where ``mask >
    0.5``, with ``g = 0`` outside it, by Jacobi iterations (a fixed number, so the cost and the
    shapes are static), first on a half-resolution grid, then on the full one. The result matches
    ``base`` at the region's border and has the defect's own gradients inside (Perez et al. 2003).
    """
    region = (mask > 0.5).to(base.dtype)
    d = (source - base) * torch.ones_like(base)  # (B, C, H, W), broadcast over the base's channels
    h, w = base.shape[-2:]
    if min(h, w) >= 16:  # coarse grid first: Jacobi alone moves information one pixel per iteration
        half = (h // 2, w // 2)
        coarse_region = (resize(region, *half) > 0.5).to(base.dtype)
        g = resize(_relax(resize(d, *half) * coarse_region, resize(d, *half), coarse_region, iterations), h, w) * region
    else:
        g = d * region
    return base + _relax(g, d, region, iterations)


def _relax(g: Tensor, d: Tensor, region: Tensor, n: int) -> Tensor:
    """``n`` Jacobi iterations of ``g = region * (d + mean4(g - d))``: ``lap(g) = lap(d)`` inside the region, 0 outside."""
    b, c, h, w = d.shape
    kernel = torch.tensor([[0.0, 0.25, 0.0], [0.25, 0.0, 0.25], [0.0, 0.25, 0.0]], dtype=d.dtype, device=d.device)
    kernel = kernel.view(1, 1, 3, 3).expand(c, 1, 3, 3)
    for _ in range(n):
        g = region * (d + F.conv2d(F.pad(g - d, (1, 1, 1, 1), mode="replicate"), kernel, groups=c))
    return g


def transplant(base: Tensor, image: Tensor, residual: Tensor, mask: Tensor, theta: Tensor, w: Tensor, blend: Tensor,
               blends: tuple[str, ...] = BLENDS, poisson_iterations: int = 40) -> Tensor:
    """Put ``k`` defects onto each base image, one after the other, each under its mask.

    Args:
        base: (B, C', H, W) defect-free images in [0, 1] (C' may be 3 for 1-channel defects).
        image, residual: (B, k, C, S, S) each defect's real image and its residual (image - projection).
        mask: (B, k, 1, S, S) soft masks in [0, 1].
        theta: (B, k, 2, 3) placements (:func:`placement_matrix`).
        w: (B, k) weights; 0 leaves a slot out.
        blend: (B, k) int64 codes into :data:`BLENDS`.
        blends: The blends that may occur (a static choice: ``poisson`` costs iterations, so it is
            only computed when listed).
        poisson_iterations: Jacobi iterations per level of :func:`poisson_blend`.

    Returns:
        (B, C', H, W) in [0, 1]. Outside every (moved) mask the base is unchanged.
    """
    b, k = w.shape
    h, wd = base.shape[-2:]

    def moved(t: Tensor) -> Tensor:  # (B, k, C, S, S) -> (B, k, C, H, W)
        out = warp(t.reshape(b * k, t.shape[2], *t.shape[-2:]), theta.reshape(b * k, 2, 3), h, wd)
        return out.view(b, k, t.shape[2], h, wd)

    img_m, res_m, m_m = moved(image), moved(residual), moved(mask).clamp(0.0, 1.0)
    out = base
    for j in range(k):
        wm = w[:, j, None, None, None] * m_m[:, j]  # (B, 1, H, W); a 1-channel defect broadcasts over RGB
        src_img, src_res = img_m[:, j], res_m[:, j]
        code = blend[:, j, None, None, None]
        result = torch.zeros_like(out)
        if "add" in blends:
            result = torch.where(code == 0, out + wm * src_res, result)
        if "paste" in blends:
            result = torch.where(code == 1, out * (1 - wm) + wm * src_img, result)
        if "poisson" in blends:
            seamless = poisson_blend(out, src_img, m_m[:, j], poisson_iterations)
            result = torch.where(code == 2, out + w[:, j, None, None, None] * (seamless - out), result)
        out = result.clamp(0.0, 1.0)
    return out
