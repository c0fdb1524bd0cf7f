"""Defect extraction: what a transplant needs of each defect image (reconstruction-based localisation).

A VAE trained on many defect-free images cannot represent a rare defect, so for a defect image
``x`` its projection ``D(E(x))`` is close to the same surface without the defect, and the residual
``x - D(E(x))`` is the defect with its own real texture. A soft mask localises it (see
:class:`augvae.config.ExtractConfig`). :func:`extract_defects` returns, per defect image, its
``image``, ``projection``, ``residual`` and ``mask``: what ``defects.safetensors`` stores and what
the ``transplant`` formulation (:func:`augvae.overlay.combine.transplant`) consumes.

The projector is a parameter: :func:`vae_projector` is the learned one; :func:`blur_projector`
(``D(E(x))`` replaced by a Gaussian blur of ``x``) is the non-learned control of the benchmark.
A user who has pixel masks passes them instead of the estimated ones.

Example:
    >>> import torch
    >>> from augvae import ConvVAE
    >>> from augvae.config import ExtractConfig
    >>> model = ConvVAE(image_size=28)
    >>> clean = torch.full((8, 1, 28, 28), 0.5)
    >>> defect = clean[:1].clone(); defect[..., 10:14, 10:14] = 0.1      # a dark square
    >>> out = extract_defects(defect, blur_projector(3.0), ExtractConfig(), reference=clean)
    >>> sorted(out), float(out["mask"][..., 11, 11]) > 0.5, float(out["mask"][..., 2, 2])
    (['image', 'mask', 'projection', 'residual'], True, 0.0)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from augvae._imageops import blur, dilate, resize
from augvae.config import ExtractConfig
from augvae.errors import InputError

__all__ = ["EMPTY_MASK_FIX", "extract_defects", "estimate_masks", "residual_zscore", "usable_defects", "vae_projector", "blur_projector",
           "matched_projector"]

Projector = Callable[[Tensor], Tensor]

#: What a user does about defects whose mask is empty (every message about them ends with it).
EMPTY_MASK_FIX = "lower the mask's thresholds (augvae train --mask-low 1.5 --mask-high 3) or pass pixel masks (--masks)"


def usable_defects(mask: Tensor) -> Tensor:
    """``(M,)`` bool: which of ``(M, 1, S, S)`` soft masks are not empty (some pixel above 0.5).

    Where no pixel of a mask exceeds 0.5, its defect's region is empty (the region that the Poisson
    blend and the mask measures take): its transplant would change (almost) nothing, an unchanged
    image labelled as a defect, so such a defect is never drawn.

    Example:
        >>> m = torch.zeros(3, 1, 8, 8); m[0, :, 2:4, 2:4] = 1.0; m[1] = 0.3
        >>> usable_defects(m).tolist()
        [True, False, False]
    """
    return (mask > 0.5).flatten(1).any(1)


def vae_projector(model: Any, batch_size: int = 256) -> Projector:
    """``x -> D(E(x))`` with the posterior mean, computed at the model's size and resized back to ``x``'s."""

    @torch.no_grad()
    def project(x: Tensor) -> Tensor:
        s = model.config.image_size
        out = []
        for start in range(0, x.shape[0], batch_size):
            part = resize(x[start : start + batch_size], s, s).to(model.device)
            out.append(resize(model.decode(model.encode(part)[0]), x.shape[-2], x.shape[-1]).to(x))
        return torch.cat(out)

    return project


def blur_projector(sigma: float = 2.0) -> Projector:
    """``x -> blur(x)``: a projection that knows nothing of defect-free surfaces (the benchmark's control)."""
    return lambda x: blur(x, sigma)


def matched_projector(project: Projector, match: str = "offset") -> Projector:
    """``project`` followed by a match to the image: ``offset`` adds the per-channel median of ``x - project(x)``.

    A VAE trained on many surfaces decodes each at roughly, not exactly, its brightness, so its
    residual carries the difference as a uniform offset: a faint defect drowns in it and the mask
    of a defect-free image flags its whole area. The median ignores the defect (a minority of the
    pixels). A blur already keeps every image's brightness, so the match leaves it (almost) unchanged.

    Example:
        >>> x = torch.full((1, 1, 8, 8), 0.6); x[..., :2, :2] = 0.1      # a dark corner on a 0.6 surface
        >>> project = matched_projector(lambda t: torch.full_like(t, 0.4))  # a projection that is too dark
        >>> round(float(project(x)[0, 0, 5, 5]), 3)
        0.6
    """
    if match == "none":
        return project

    def matched(x: Tensor) -> Tensor:
        p = project(x)
        return p + (x - p).flatten(2).median(2).values[..., None, None]  # (M, C, 1, 1): each image's own offset

    return matched


def _signed(residual: Tensor, polarity: str) -> Tensor:
    if polarity == "dark":
        return (-residual).clamp_min(0)
    if polarity == "bright":
        return residual.clamp_min(0)
    return residual.abs()


def residual_zscore(residual: Tensor, cfg: ExtractConfig, reference_residual: Tensor | None = None) -> Tensor:
    """Per-pixel z-scores ``(M, 1, H, W)`` of residuals ``(M, C, H, W)``: how unusual each pixel's residual is.

    The residual is signed by ``cfg.polarity``, averaged over channels and smoothed by
    ``cfg.mask_sigma``; :func:`estimate_masks` thresholds the result. Its maximum over an image is a
    reconstruction-based anomaly score of the image (``benchmarks/elpv_vae_score.py`` measures it).

    Args:
        residual: Residuals of the defect images.
        cfg: Polarity and smoothing.
        reference_residual: Residuals of defect-free images at the same size: the per-pixel mean and
            spread the z-score is taken against. Without them, each image's own median and MAD.

    Example:
        >>> r = torch.zeros(1, 1, 16, 16); r[..., 8, 8] = -0.5      # one dark pixel
        >>> z = residual_zscore(r, ExtractConfig(polarity="dark", mask_sigma=0))
        >>> float(z[0, 0, 8, 8]) > 5, float(z[0, 0, 0, 0])
        (True, 0.0)
    """
    score = blur(_signed(residual, cfg.polarity).mean(1, keepdim=True), cfg.mask_sigma)
    if reference_residual is not None and reference_residual.shape[0] >= 2:
        ref = blur(_signed(reference_residual, cfg.polarity).mean(1, keepdim=True), cfg.mask_sigma)
        centre, spread = ref.mean(0, keepdim=True), ref.std(0, keepdim=True)
        # Floors: a pixel whose residual never varies (a constant surface) must not turn every rounding error into a
        # defect; 0.01 is about 2.5 grey levels of an 8-bit image.
        spread = spread.clamp_min(0.01) + 0.1 * spread.mean()
    else:
        flat = score.flatten(1)
        med = flat.median(1).values
        mad = (flat - med[:, None]).abs().median(1).values * 1.4826
        centre, spread = med.view(-1, 1, 1, 1), mad.clamp_min(0.01).view(-1, 1, 1, 1)
    return (score - centre) / spread


def estimate_masks(residual: Tensor, cfg: ExtractConfig, reference_residual: Tensor | None = None) -> Tensor:
    """Soft masks ``(M, 1, H, W)`` in [0, 1] from residuals ``(M, C, H, W)`` (see :class:`~augvae.config.ExtractConfig`).

    Args:
        residual: Residuals of the defect images.
        cfg: Thresholds and smoothing.
        reference_residual: As in :func:`residual_zscore`.
    """
    z = residual_zscore(residual, cfg, reference_residual)
    mask = ((z - cfg.mask_low) / (cfg.mask_high - cfg.mask_low)).clamp(0.0, 1.0)
    return blur(dilate(mask, cfg.dilate), cfg.feather).clamp(0.0, 1.0)


@torch.no_grad()
def extract_defects(images: Tensor, project: Projector, cfg: ExtractConfig | None = None, reference: Tensor | None = None,
                    masks: Tensor | None = None) -> dict[str, Tensor]:
    """Image, projection, residual and soft mask of each defect image.

    Args:
        images: ``(M, C, S, S)`` defect images in [0, 1].
        project: The projector (:func:`vae_projector` or :func:`blur_projector`).
        cfg: Mask settings (default :class:`~augvae.config.ExtractConfig`).
        reference: ``(R, C, S, S)`` defect-free images for the per-pixel statistics of the mask
            (at most ``cfg.reference_images`` are used).
        masks: ``(M, 1, S, S)`` pixel masks in [0, 1] given by the user, used instead of the estimate.

    Returns:
        ``{"image", "projection", "residual"}`` of shape ``(M, C, S, S)`` and ``"mask"`` ``(M, 1, S, S)``.
    """
    cfg = cfg or ExtractConfig()
    if not isinstance(images, Tensor) or images.ndim != 4 or images.shape[0] == 0:
        raise InputError(f"defect images must be a non-empty (M, C, S, S) tensor, got {tuple(getattr(images, 'shape', ()))}")
    images = images.float()
    project = matched_projector(project, cfg.match)
    projection = project(images).clamp(0.0, 1.0)
    residual = images - projection
    if masks is not None:
        if tuple(masks.shape) != (images.shape[0], 1, *images.shape[-2:]):
            raise InputError(f"masks must have shape {(images.shape[0], 1, *images.shape[-2:])} (one per defect image), "
                             f"got {tuple(masks.shape)}")
        mask = masks.float().clamp(0.0, 1.0)
    else:
        ref_res = None
        if reference is not None and reference.shape[0] >= 2:
            ref = reference[: cfg.reference_images].float()
            ref_res = ref - project(ref).clamp(0.0, 1.0)
        mask = estimate_masks(residual, cfg, ref_res)
    return {"image": images, "projection": projection, "residual": residual, "mask": mask}
