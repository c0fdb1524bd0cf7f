"""Latent-space tools: encoding sets, grid traversals and interpolation (paper Figures 2 and 3).

Latent arithmetic uses the encoder *mean* unless ``sample=True`` is asked for: a sample adds noise
(pythae's ``embed`` returns samples; augvae does not).

Example:
    >>> import torch
    >>> from augvae import ConvVAE
    >>> from augvae.latent import encode, interpolate
    >>> model = ConvVAE(image_size=28)
    >>> lat = encode(model, torch.rand(5, 1, 28, 28))
    >>> lat.mu.shape
    torch.Size([5, 2])
    >>> interpolate(model, torch.rand(1, 28, 28), torch.rand(1, 28, 28), steps=4).shape
    torch.Size([4, 1, 28, 28])
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import Tensor

from augvae.data.images import ImageSet
from augvae.errors import ConfigError, InputError
from augvae.model import ConvVAE, check_images

__all__ = ["LatentSet", "encode", "grid_latents", "pca_plane", "traverse_grid", "interpolate", "GridResult"]


@dataclass
class LatentSet:
    """Latent means and log-variances of a set of images, with their labels and names."""

    mu: Tensor  #: (N, D)
    logvar: Tensor  #: (N, D)
    labels: Tensor  #: (N,) int64 indices into ``classes``
    classes: list[str] = field(default_factory=list)
    names: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return self.mu.shape[0]

    def label_names(self) -> list[str]:
        """The class name of each point."""
        return [self.classes[i] if i < len(self.classes) else str(i) for i in self.labels.tolist()]

    def rows(self) -> list[dict[str, object]]:
        """One dict per point (name, class, mu_*, var_*) for a CSV."""
        out: list[dict[str, object]] = []
        names = self.names or [str(i) for i in range(len(self))]
        for i, cls in enumerate(self.label_names()):
            row: dict[str, object] = {"name": names[i], "class": cls}
            row.update({f"mu_{d}": round(float(v), 6) for d, v in enumerate(self.mu[i])})
            row.update({f"var_{d}": round(float(v), 6) for d, v in enumerate(self.logvar[i].exp())})
            out.append(row)
        return out


def encode(model: ConvVAE, images: ImageSet | Tensor, batch_size: int = 256) -> LatentSet:
    """Encode images to latent means and log-variances (CPU tensors)."""
    if isinstance(images, ImageSet):
        mu, logvar = model.encode_batched(images.images, batch_size)
        return LatentSet(mu, logvar, images.labels.clone(), list(images.classes), [p.rsplit("/", 1)[-1] for p in images.paths])
    mu, logvar = model.encode_batched(images, batch_size)
    return LatentSet(mu, logvar, torch.zeros(mu.shape[0], dtype=torch.long), ["images"], [str(i) for i in range(mu.shape[0])])


def pca_plane(mu: Tensor) -> tuple[Tensor, Tensor]:
    """Centre (D,) and the first two principal axes (2, D) of latent means (N, D)."""
    if mu.shape[0] < 2:
        raise InputError("a PCA plane needs the means of at least 2 images")
    centre = mu.mean(0)
    # Rows of Vh are the principal directions, largest variance first.
    _, _, vh = torch.linalg.svd(mu - centre, full_matrices=False)
    axes = vh[:2]
    if axes.shape[0] < 2:  # D == 1
        raise InputError("a 2-D plane needs a latent space of at least 2 dimensions")
    return centre, axes


@dataclass
class GridResult:
    """A decoded grid: ``images[r * len(xs) + c]`` is the point ``(xs[c], ys[r])``."""

    images: Tensor  #: (rows * cols, C, S, S)
    xs: list[float]
    ys: list[float]  #: top row first (largest y), as in a plot
    step: tuple[float, float]  #: the step between displayed cells (the requested step, or a multiple if thinned)
    requested_cells: int  #: cells of the full grid at the requested step


def grid_latents(
    latent_dim: int,
    x_range: tuple[float, float] = (-15.0, 15.0),
    y_range: tuple[float, float] = (-10.0, 10.0),
    step: float = 0.1,
    max_side: int = 31,
    dims: tuple[int, int] = (0, 1),
    centre: Tensor | None = None,
    axes: Tensor | None = None,
) -> tuple[Tensor, list[float], list[float], tuple[float, float], int]:
    """Latent points of a grid over ``x_range x y_range`` (paper default: [-15, 15] x [-10, 10], step 0.1).

    The full grid can be large (301 x 201 at the paper's step), so for display it is thinned to at
    most ``max_side`` cells per side by taking every k-th point. With ``axes`` (2, D) the grid lies in
    the plane ``centre + x * axes[0] + y * axes[1]``; otherwise in dimensions ``dims`` (others 0).
    """
    if step <= 0 or not math.isfinite(step):
        raise ConfigError(f"grid step must be > 0, got {step}")
    for name, (lo, hi) in (("x_range", x_range), ("y_range", y_range)):
        if not lo < hi:
            raise ConfigError(f"{name} must be (low, high) with low < high, got ({lo}, {hi})")
    if max_side < 2:
        raise ConfigError(f"max_side must be >= 2, got {max_side}")
    nx = int(round((x_range[1] - x_range[0]) / step)) + 1
    ny = int(round((y_range[1] - y_range[0]) / step)) + 1
    kx, ky = max(1, math.ceil((nx - 1) / (max_side - 1))), max(1, math.ceil((ny - 1) / (max_side - 1)))
    xs = [x_range[0] + i * step for i in range(0, nx, kx)]
    ys = [y_range[0] + i * step for i in range(0, ny, ky)][::-1]
    gx = torch.tensor(xs).repeat(len(ys))  # row-major: x varies fastest
    gy = torch.tensor(ys).repeat_interleave(len(xs))
    if axes is not None:
        c = centre if centre is not None else torch.zeros(latent_dim)
        z = c + gx[:, None] * axes[0] + gy[:, None] * axes[1]
    else:
        if latent_dim < 2 or not all(0 <= d < latent_dim for d in dims) or dims[0] == dims[1]:
            raise ConfigError(f"dims must be two different latent dimensions in [0, {latent_dim}), got {dims}")
        z = torch.zeros(len(gx), latent_dim) if centre is None else centre.repeat(len(gx), 1).clone()
        z[:, dims[0]], z[:, dims[1]] = gx, gy
    return z, xs, ys, (kx * step, ky * step), nx * ny


def traverse_grid(
    model: ConvVAE,
    x_range: tuple[float, float] = (-15.0, 15.0),
    y_range: tuple[float, float] = (-10.0, 10.0),
    step: float = 0.1,
    max_side: int = 31,
    plane: str = "dims",
    dims: tuple[int, int] = (0, 1),
    data_mu: Tensor | None = None,
) -> GridResult:
    """Decode a latent grid (paper Figure 3).

    Args:
        plane: ``"dims"``: the grid spans latent dimensions ``dims``; ``"pca"``: it spans the first
            two principal axes of ``data_mu`` through their centre (for latent sizes above 2).
    """
    d = model.config.latent_dim
    centre = axes = None
    if plane == "pca":
        if data_mu is None:
            raise ConfigError("plane='pca' needs the data's latent means (data_mu)")
        centre, axes = pca_plane(data_mu)
    elif plane != "dims":
        raise ConfigError(f"unknown plane {plane!r}; expected dims or pca")
    if d == 1:
        raise ConfigError("a grid traversal needs a latent space of at least 2 dimensions")
    z, xs, ys, st, n = grid_latents(d, x_range, y_range, step, max_side, dims, centre, axes)
    return GridResult(model.decode_batched(z), xs, ys, st, n)


def interpolate(model: ConvVAE, a: Tensor, b: Tensor, steps: int = 10, sample: bool = False, generator: torch.Generator | None = None) -> Tensor:
    """Decode ``steps`` points on the straight latent path from image ``a`` to image ``b``.

    Args:
        a, b: Images (C, S, S) in [0, 1].
        sample: Use posterior samples instead of the means at both ends.

    Returns:
        (steps, C, S, S) images; the first and last are the reconstructions of ``a`` and ``b``.
    """
    if steps < 2:
        raise ConfigError(f"steps must be >= 2, got {steps}")
    x = check_images(torch.stack([a, b]), model.config.channels, model.config.image_size, "interpolation endpoints")
    with torch.no_grad():
        mu, logvar = model.encode(x.to(model.device))
        z = model.reparameterize(mu, logvar, generator) if sample else mu
        t = torch.linspace(0, 1, steps, device=z.device)[:, None]
        return model.decode((1 - t) * z[0] + t * z[1]).cpu()
