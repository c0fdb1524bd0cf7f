"""Overlay generation (paper section 4, Figure 5): combine sources in latent space, then decode.

Each source image is one cluster in latent space (its encoder mean is the cluster centre). An
overlay of sources ``i, j, ...`` is made by one of four *formulations*:

- ``sum``: ``decode(sum_i w_i z_i)``, the paper's literal method;
- ``mean``: ``decode(sum_i w_i z_i / sum_i w_i)``;
- ``offset``: ``decode(z_bg + sum_i w_i (z_i - z_bg))``, offsets relative to a defect-free
  background's latent ``z_bg``;
- ``residual``: ``x_bg + sum_i w_i (decode(z_i) - decode(z_bg))`` clipped to [0, 1]: each source's
  decoded difference from the background, composited in pixel space onto the background image
  ``x_bg`` (the decoded background, or a real image such as a transform's input).

The default, :data:`DEFAULT_FORMULATION`, is the one that measured best on procedural data where
every defect's pixels are known (``benchmarks/overlay_formulations.py``; table in the README).

Example:
    >>> import torch
    >>> from augvae import ConvVAE
    >>> model = ConvVAE(image_size=28, latent_dim=4)
    >>> z = torch.randn(3, 4)                      # three source centres
    >>> overlay(model, z[None, :2], formulation="sum").shape
    torch.Size([1, 1, 28, 28])
    >>> overlay(model, z[None, :2], formulation="residual", z_background=z[2:3]).shape
    torch.Size([1, 1, 28, 28])
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from augvae.config import check_choice
from augvae.errors import ConfigError, InputError
from augvae.model import ConvVAE

__all__ = [
    "FORMULATIONS",
    "DEFAULT_FORMULATION",
    "combine_latents",
    "overlay",
    "random_overlays",
    "OverlayRecord",
    "sample_around",
]

FORMULATIONS = ("sum", "mean", "offset", "residual")
#: Chosen by measurement (README, "Which overlay formulation"): keeps every source's defect pixels.
DEFAULT_FORMULATION = "residual"


def _weights(k: int, weights: Tensor | list[float] | None, like: Tensor) -> Tensor:
    if weights is None:
        return torch.ones(k, dtype=like.dtype, device=like.device)
    w = torch.as_tensor(weights, dtype=like.dtype, device=like.device)
    if w.shape != (k,) or not bool(torch.isfinite(w).all()):
        raise ConfigError(f"weights must be {k} finite numbers (one per source), got {list(w.shape)}")
    return w


def combine_latents(z: Tensor, formulation: str = "sum", z_background: Tensor | None = None, weights: Any = None) -> Tensor:
    """Combine source latents ``z`` (B, k, D) into one latent per row (B, D) (``sum``/``mean``/``offset``).

    Args:
        z: (B, k, D) source latents.
        formulation: ``sum`` (the paper's: ``sum_i w_i z_i``), ``mean`` (``sum_i w_i z_i / sum_i w_i``) or
            ``offset`` (``z_bg + sum_i w_i (z_i - z_bg)``).
        z_background: (D,) or (B, D) defect-free latent; needed by ``offset``.
        weights: k weights shared by every row, or (B, k) weights per row (default all 1).

    Example:
        >>> combine_latents(torch.tensor([[[1.0, 0.0], [0.0, 2.0]]])).tolist()
        [[1.0, 2.0]]
        >>> combine_latents(torch.tensor([[[1.0, 0.0], [0.0, 2.0]]]), "mean", weights=[[1.0, 3.0]]).tolist()
        [[0.25, 1.5]]
    """
    check_choice(formulation, ("sum", "mean", "offset"), "latent formulation")
    if z.ndim != 3:
        raise InputError(f"source latents must have shape (B, k, D), got {tuple(z.shape)}")
    b, k, _ = z.shape
    if weights is not None and torch.as_tensor(weights).ndim == 2:
        w = torch.as_tensor(weights, dtype=z.dtype, device=z.device)
        if w.shape != (b, k) or not bool(torch.isfinite(w).all()):
            raise ConfigError(f"per-row weights must be ({b}, {k}) finite numbers, got {list(w.shape)}")
    else:
        w = _weights(k, weights, z)[None].expand(b, k)
    return _combine_rows(z, w, formulation, _background(z_background, z) if formulation == "offset" else None)


def _combine_rows(z: Tensor, w: Tensor, formulation: str, zb: Tensor | None) -> Tensor:
    """:func:`combine_latents` without its checks (no host synchronisation): z (B, k, D), w (B, k), zb (B, D)."""
    w = w[..., None]  # (B, k, 1)
    if formulation == "sum":
        return (w * z).sum(1)
    if formulation == "mean":
        total = w.sum(1)  # (B, 1); a row whose weights are all 0 combines nothing: the zero vector
        return (w * z).sum(1) / torch.where(total == 0, torch.ones_like(total), total)
    assert zb is not None
    return zb + (w * (z - zb[:, None])).sum(1)


def _background(z_background: Tensor | None, z: Tensor) -> Tensor:
    if z_background is None:
        raise ConfigError(
            "the offset and residual formulations need a background latent (a defect-free image's mean): pass "
            "z_background, or a --background source"
        )
    zb = z_background.to(z)
    if zb.ndim == 1:
        zb = zb[None]
    if zb.shape[-1] != z.shape[-1]:
        raise InputError(f"background latent has {zb.shape[-1]} dimensions, the sources {z.shape[-1]}")
    return zb.expand(z.shape[0], -1)


def overlay(
    model: ConvVAE,
    z: Tensor,
    formulation: str = DEFAULT_FORMULATION,
    z_background: Tensor | None = None,
    x_background: Tensor | None = None,
    weights: Any = None,
    center_residual: bool = False,
) -> Tensor:
    """Decode overlays of ``k`` sources for a batch, in one decoder pass.

    Args:
        model: The VAE.
        z: (B, k, D) source latents (cluster centres, or samples around them).
        formulation: One of :data:`FORMULATIONS`.
        z_background: (D,) or (B, D) defect-free latent; needed by ``offset`` and ``residual``.
        x_background: (B, C, S, S) images to composite onto (``residual`` only); default the
            decoded ``z_background``.
        weights: k weights (default all 1, the paper's plain sum).
        center_residual: ``residual`` only: zero-centre each residual image, for when ``z_background``
            is only the centroid of the sources rather than a defect-free image (then an uncentred
            residual mostly shifts the brightness).

    Returns:
        (B, C, S, S) images in [0, 1], on the model's device.
    """
    check_choice(formulation, FORMULATIONS, "formulation")
    z = z.to(model.device)
    if formulation != "residual":
        return model.decode(combine_latents(z, formulation, z_background, weights))
    b, k, d = z.shape
    zb = _background(z_background, z)
    w = _weights(k, weights, z)
    # One background latent for every row (the usual case) is decoded once, not B times.
    shared = z_background is not None and (z_background.ndim == 1 or z_background.shape[0] == 1)
    # One decoder pass for the sources and the background(s) together: (B*k + 1 or B*k + B, D).
    dec = model.decode(torch.cat([z.reshape(b * k, d), zb[:1] if shared else zb]))
    x_src, x_bg_dec = dec[: b * k].view(b, k, *dec.shape[1:]), dec[b * k :]
    if shared:
        x_bg_dec = x_bg_dec.expand(b, *dec.shape[1:])
    base = x_bg_dec if x_background is None else x_background.to(dec)
    residual = (w.view(1, k, 1, 1, 1) * (x_src - x_bg_dec[:, None])).sum(1)
    if center_residual:
        residual = residual - residual.mean((-2, -1), keepdim=True)
    return (base + residual).clamp_(0.0, 1.0)


def sample_around(mu: Tensor, logvar: Tensor, scale: float, generator: torch.Generator | None = None) -> Tensor:
    """``mu + scale * std * eps``: a point near each cluster centre (``scale=0`` gives the centre)."""
    if scale < 0:
        raise ConfigError(f"sampling scale must be >= 0, got {scale}")
    if scale == 0:
        return mu
    eps = torch.randn(mu.shape, generator=generator).to(mu)
    return mu + scale * eps * (0.5 * logvar).exp()


@dataclass
class OverlayRecord:
    """Which sources (and classes) one generated image combines."""

    index: int
    sources: list[str]
    classes: list[str]
    formulation: str
    background: str | None

    def row(self) -> dict[str, Any]:
        """A flat dict for a CSV manifest."""
        return {
            "index": self.index,
            "sources": "+".join(self.sources),
            "classes": "+".join(self.classes),
            "formulation": self.formulation,
            "background": self.background or "",
        }


@torch.no_grad()
def random_overlays(
    model: ConvVAE,
    mu: Tensor,
    logvar: Tensor,
    names: list[str],
    classes: list[str],
    n: int,
    k: int = 2,
    formulation: str = DEFAULT_FORMULATION,
    background: int | None = None,
    scale: float = 0.0,
    same_class: bool = False,
    generator: torch.Generator | None = None,
    batch_size: int = 256,
) -> tuple[Tensor, list[OverlayRecord]]:
    """``n`` overlays, each of ``k`` distinct randomly drawn sources.

    Args:
        mu, logvar: (N, D) latents of the N sources.
        names, classes: Per-source name and class name (for the records).
        background: Index of the defect-free source (used by ``offset``/``residual`` and never drawn
            as a defect); default for those formulations: the centroid of all sources.
        scale: Sample around each centre with this multiple of the posterior std (0 = centres).
        same_class: Draw the k sources from one class only.

    Returns:
        ``(images (n, C, S, S) on CPU, records)``.
    """
    if n < 1 or k < 1:
        raise ConfigError(f"n and k must be >= 1, got n={n}, k={k}")
    check_choice(formulation, FORMULATIONS, "formulation")
    pool = [i for i in range(mu.shape[0]) if i != background]
    if same_class:
        groups: dict[str, list[int]] = {}
        for i in pool:
            groups.setdefault(classes[i], []).append(i)
        eligible = [g for g in groups.values() if len(g) >= k]
        if not eligible:
            raise ConfigError(f"no class has {k} distinct sources to combine; lower k or drop same_class")
    elif len(pool) < k:
        raise ConfigError(f"k={k} distinct sources were asked for but only {len(pool)} are available; lower k")
    gen = generator if generator is not None else torch.Generator().manual_seed(0)
    picks: list[list[int]] = []
    for _ in range(n):
        cand = eligible[int(torch.randint(len(eligible), (1,), generator=gen))] if same_class else pool
        perm = torch.randperm(len(cand), generator=gen)[:k].tolist()
        picks.append([cand[p] for p in perm])
    idx = torch.tensor(picks)  # (n, k)
    z = sample_around(mu[idx], logvar[idx], scale, gen)  # (n, k, D)
    zb = None
    if formulation in ("offset", "residual"):
        zb = mu[background] if background is not None else mu.mean(0)
    center = formulation == "residual" and background is None
    out = torch.cat([overlay(model, z[s : s + batch_size], formulation, zb, center_residual=center).cpu() for s in range(0, n, batch_size)])
    bg_name = names[background] if background is not None else ("centroid" if zb is not None else None)
    records = [OverlayRecord(i, [names[j] for j in p], [classes[j] for j in p], formulation, bg_name) for i, p in enumerate(picks)]
    return out, records
