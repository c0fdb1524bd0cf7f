"""Figures: loss history, latent scatter (paper Fig. 2), image mosaics (Figs. 3 and 5).

Plots use matplotlib's non-interactive Agg backend and are written atomically as PNG.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from augvae._io import write_bytes

__all__ = ["plot_history", "plot_latent_scatter", "plot_defects", "save_mosaic", "mosaic", "save_png", "to_uint8"]


def _figure(**kw: Any) -> Any:
    from matplotlib.figure import Figure

    return Figure(**kw)  # no pyplot: no global state, no GUI backend


def _save_fig(fig: Any, path: str | os.PathLike[str]) -> None:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    write_bytes(path, buf.getvalue())


def plot_history(history: Sequence[dict[str, float]], path: str | os.PathLike[str]) -> None:
    """Plot loss, reconstruction and KL per epoch to a PNG."""
    fig = _figure(figsize=(8, 3))
    epochs = [r["epoch"] for r in history]
    for i, key in enumerate(("loss", "recon", "kl")):
        ax = fig.add_subplot(1, 3, i + 1)
        ax.plot(epochs, [r[key] for r in history])
        ax.set_title(key)
        ax.set_xlabel("epoch")
    fig.tight_layout()
    _save_fig(fig, path)


def plot_latent_scatter(
    mu: Tensor, labels: Sequence[str], path: str | os.PathLike[str], title: str = "latent means", dims: tuple[int, int] = (0, 1),
    logvar: Tensor | None = None, names: Sequence[str] | None = None,
) -> None:
    """Scatter the latent means coloured by class (paper Figure 2).

    With ``logvar``, each point also gets its posterior cloud (the ellipse of two posterior standard
    deviations in the two plotted dimensions); with ``names``, each point is labelled (up to 40).
    """
    from matplotlib.patches import Ellipse

    m = mu.detach().cpu().float()
    var = logvar.detach().cpu().float().exp() if logvar is not None else None
    axis_names = (f"z{dims[0] + 1}", f"z{dims[1] + 1}")
    if m.shape[1] > 2 and m.shape[0] >= 2:  # more than 2 dimensions: the plane of the means' two principal axes
        centre = m.mean(0)
        axes = torch.linalg.svd(m - centre, full_matrices=False)[2][:2]  # (2, D)
        m = (m - centre) @ axes.T
        var = var @ (axes**2).T if var is not None else None  # each point's posterior variance along the two axes
        dims, axis_names = (0, 1), ("first principal axis of the means", "second principal axis")
    pts = m.numpy()
    std = var.sqrt().numpy() if var is not None else None
    fig = _figure(figsize=(5.5, 5))
    ax = fig.add_subplot(1, 1, 1)
    two_d = pts.shape[1] > 1
    for name in sorted(set(labels)):
        sel = np.array([lbl == name for lbl in labels])
        y = pts[sel, dims[1]] if two_d else np.zeros(sel.sum())
        dots = ax.scatter(pts[sel, dims[0]], y, s=14, label=name, alpha=0.85, zorder=3)
        if std is not None:
            for (cx, cy), (sx, sy) in zip(zip(pts[sel, dims[0]], y), zip(std[sel, dims[0]], std[sel, dims[1]] if two_d else std[sel, 0])):
                ax.add_patch(Ellipse((cx, cy), 4 * sx, 4 * sy, color=dots.get_facecolor()[0], alpha=0.15, lw=0))
    if names is not None and len(names) <= 40:
        for i, n in enumerate(names):
            ax.annotate(n, (pts[i, dims[0]], pts[i, dims[1]] if two_d else 0.0), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel(axis_names[0])
    ax.set_ylabel(axis_names[1] if two_d else "")
    ax.set_title(title)
    ax.autoscale_view()
    if len(set(labels)) <= 20:
        ax.legend(fontsize=7, markerscale=1.5)
    _save_fig(fig, path)


def plot_defects(defects: dict[str, Tensor], names: Sequence[str], classes: Sequence[str], path: str | os.PathLike[str],
                 max_rows: int = 12) -> None:
    """One row per defect source: the image, its projection onto the defect-free surface, the residual, the mask.

    A person checks at a glance whether the VAE found the defect: the projection should look like the
    same surface without it, and the mask should cover the defect and little else. A mask with no
    pixel above 0.5 is marked: that defect is never transplanted.
    """
    from augvae.overlay.extract import usable_defects

    n = min(max_rows, defects["image"].shape[0])
    usable = usable_defects(defects["mask"][:n]).tolist()
    cols = [("image", defects["image"][:n]), ("projection", defects["projection"][:n]),
            ("residual (grey = 0)", (defects["residual"][:n] * 2 + 0.5).clamp(0, 1)), ("mask", defects["mask"][:n])]
    fig = _figure(figsize=(7.2, 1.8 * n + 0.4))
    for r in range(n):
        for c, (title, imgs) in enumerate(cols):
            ax = fig.add_subplot(n, 4, r * 4 + c + 1)
            img = imgs[r].detach().cpu()
            ax.imshow(img[0] if img.shape[0] == 1 else img.permute(1, 2, 0), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(title, fontsize=8)
            if c == 0:
                ax.set_ylabel(f"{names[r]}\n({classes[r]})", fontsize=7)
            if c == 3 and not usable[r]:
                ax.set_xlabel("empty: not transplanted", fontsize=7, color="tab:red")
    fig.tight_layout()
    _save_fig(fig, path)


def to_uint8(images: Tensor) -> np.ndarray:
    """(B, C, H, W) float in [0, 1] -> (B, H, W, C) uint8."""
    return (images.detach().cpu().clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


def mosaic(images: Tensor, cols: int, pad: int = 1) -> np.ndarray:
    """Tile (B, C, H, W) images into one (rows*H, cols*W, C) uint8 array (row-major)."""
    arr = to_uint8(images)
    b, h, w, c = arr.shape
    rows = max(1, -(-b // cols))
    out = np.full((rows * (h + pad) - pad, cols * (w + pad) - pad, c), 255, dtype=np.uint8)
    for i in range(b):
        r, q = divmod(i, cols)
        out[r * (h + pad) : r * (h + pad) + h, q * (w + pad) : q * (w + pad) + w] = arr[i]
    return out


def save_png(array: np.ndarray, path: str | os.PathLike[str]) -> None:
    """Save an (H, W, C) or (H, W) uint8 array as PNG, atomically."""
    from PIL import Image

    a = array[..., 0] if array.ndim == 3 and array.shape[2] == 1 else array
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="PNG")
    write_bytes(path, buf.getvalue())


def save_mosaic(images: Tensor, path: str | os.PathLike[str], cols: int) -> None:
    """Tile images into a mosaic PNG (paper Figures 3 and 5)."""
    save_png(mosaic(images, cols), path)
