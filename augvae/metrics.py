"""Measures of what an overlay keeps, on images whose defect pixels are known.

Used by the overlay-formulation benchmark, the demo and the tests.

Example:
    >>> import torch
    >>> bg = torch.full((1, 8, 8), 0.6)
    >>> src = bg.clone(); src[:, 2:4, 2:4] = 0.1
    >>> mask = torch.zeros(8, 8, dtype=torch.bool); mask[2:4, 2:4] = True
    >>> defect_retention(src, src, bg, mask)
    1.0
    >>> defect_retention(bg, src, bg, mask)
    0.0
"""

from __future__ import annotations

import torch
from torch import Tensor

from augvae.overlay import overlay

__all__ = ["defect_retention", "background_error", "cluster_separation", "evaluate_formulations"]


def defect_retention(overlay: Tensor, source: Tensor, background: Tensor, mask: Tensor) -> float:
    """Share of a source's defect pixels present in ``overlay``.

    A defect pixel counts as present when the overlay there is closer to the source image than to
    the defect-free background. All images are (C, H, W) in [0, 1]; ``mask`` is (H, W) bool.
    """
    m = mask.bool()
    if not bool(m.any()):
        return float("nan")
    d_src = (overlay - source).abs().mean(0)[m]
    d_bg = (overlay - background).abs().mean(0)[m]
    return float((d_src < d_bg).float().mean())


def background_error(overlay: Tensor, background: Tensor, masks: list[Tensor]) -> float:
    """Mean absolute error to the background outside every defect mask (lower keeps the surface)."""
    keep = torch.ones_like(masks[0], dtype=torch.bool) if masks else torch.ones(overlay.shape[-2:], dtype=torch.bool)
    for m in masks:
        keep &= ~m.bool()
    return float((overlay - background).abs().mean(0)[keep].mean())


def cluster_separation(mu: Tensor, logvar: Tensor, labels: Tensor | None = None) -> dict[str, float]:
    """How well the sources (or classes) separate in latent space.

    Returns:
        ``min_pair_distance``: the smallest distance between two group centres;
        ``separation_in_std``: that distance over the mean posterior standard deviation (above
        ~4 the reparameterization noise of one group rarely reaches another);
        ``silhouette``: scikit-learn's silhouette score of the means by group (when every group has
        at least 2 points and there are at least 2 groups), else NaN.
    """
    labels = torch.arange(mu.shape[0]) if labels is None else labels
    groups = sorted(set(labels.tolist()))
    if len(groups) < 2:
        return {"min_pair_distance": float("nan"), "separation_in_std": float("nan"), "silhouette": float("nan")}
    centres = torch.stack([mu[labels == g].mean(0) for g in groups])
    dist = torch.cdist(centres, centres)
    dist.fill_diagonal_(float("inf"))
    min_d = float(dist.min())
    std = float((0.5 * logvar).exp().mean())
    sil = float("nan")
    counts = [int((labels == g).sum()) for g in groups]
    if min(counts) >= 2 and len(groups) < mu.shape[0]:
        from sklearn.metrics import silhouette_score

        sil = float(silhouette_score(mu.numpy(), labels.numpy()))
    return {"min_pair_distance": min_d, "separation_in_std": min_d / max(std, 1e-12), "silhouette": sil}


def evaluate_formulations(
    model: torch.nn.Module,
    images: Tensor,
    masks: Tensor,
    background: int,
    combos: list[tuple[int, ...]] | None = None,
    formulations: tuple[str, ...] = ("sum", "mean", "offset", "residual"),
) -> list[dict[str, object]]:
    """Score each overlay formulation on sources whose defect pixels are known.

    Args:
        model: A trained :class:`augvae.ConvVAE`.
        images: (N, C, S, S) the sources, one of them the defect-free background.
        masks: (N, S, S) bool defect masks (the background's is empty).
        background: Index of the defect-free image.
        combos: Tuples of source indices to overlay; default every pair and the set of all defects.

    Returns:
        One row per (combination, formulation): ``retention_min`` (the worst source's share of
        defect pixels kept), ``retention_mean``, ``background_mae`` (error outside the defects, to
        the real background image) and ``per_source`` retentions.
    """
    from itertools import combinations


    defects = [i for i in range(images.shape[0]) if i != background]
    if combos is None:
        combos = [*combinations(defects, 2), tuple(defects)] if len(defects) > 2 else [tuple(defects)]
    with torch.no_grad():
        mu, _ = model.encode(images.to(next(model.parameters()).device))  # type: ignore[operator]
    mu = mu.cpu()
    rows: list[dict[str, object]] = []
    bg = images[background]
    for combo in combos:
        for form in formulations:
            with torch.no_grad():
                out = overlay(model, mu[list(combo)][None], form, z_background=mu[background]).cpu()[0]  # type: ignore[arg-type]
            ret = [defect_retention(out, images[i], bg, masks[i]) for i in combo]
            rows.append({
                "combo": "+".join(str(i) for i in combo),
                "formulation": form,
                "retention_min": min(ret),
                "retention_mean": sum(ret) / len(ret),
                "background_mae": background_error(out, bg, [masks[i] for i in combo]),
                "per_source": ret,
            })
    return rows
