"""The overlay core: every formulation, the label policies, the sources, defect extraction, the engine.

One torch-only package that every entry point calls (the transforms, the dataset wrapper,
``augvae generate`` and the benchmark); nothing else in augvae computes an overlay.

===================  ==========================================================================
module               what it holds
===================  ==========================================================================
``combine``          every formulation, written once (latent ``sum``/``mean``/``offset``, pixel
                     ``residual`` and ``transplant`` with its blends); device-agnostic, no host syncs
``policy``           :class:`OverlayOptions` (shared by all adapters), random draws, the plan
                     (which sources each image gets) and the one label mix
``sources``          a model folder's sources mapped onto the caller's classes, cached per process
``extract``          defect extraction: projection, residual and soft mask of each defect image
``engine``           :func:`overlay_batch` (the adapters' call), :func:`random_overlays`,
                     :func:`transplant_onto`, :func:`overlay`
===================  ==========================================================================

Example:
    >>> import torch
    >>> from augvae import ConvVAE
    >>> from augvae.overlay import overlay
    >>> model = ConvVAE(image_size=28, latent_dim=4)
    >>> z = torch.randn(3, 4)                      # three source centres
    >>> overlay(model, z[None, :2], formulation="sum").shape
    torch.Size([1, 1, 28, 28])
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from augvae._lazy import lazy_attributes
from augvae.overlay._names import BLENDS, FORMULATIONS, POLICIES

_NAMES = {
    "DEFAULT_FORMULATION": "augvae.overlay.engine",
    "OverlayRecord": "augvae.overlay.engine",
    "overlay": "augvae.overlay.engine",
    "overlay_batch": "augvae.overlay.engine",
    "random_overlays": "augvae.overlay.engine",
    "render": "augvae.overlay.engine",
    "transplant_onto": "augvae.overlay.engine",
    "combine_latents": "augvae.overlay.combine",
    "sample_around": "augvae.overlay.combine",
    "transplant": "augvae.overlay.combine",
    "OverlayOptions": "augvae.overlay.policy",
    "Draws": "augvae.overlay.policy",
    "Plan": "augvae.overlay.policy",
    "draw_torch": "augvae.overlay.policy",
    "draw_numpy": "augvae.overlay.policy",
    "make_plan": "augvae.overlay.policy",
    "mix_labels": "augvae.overlay.policy",
    "VAESources": "augvae.overlay.sources",
    "load_sources": "augvae.overlay.sources",
    "clear_cache": "augvae.overlay.sources",
    "extract_defects": "augvae.overlay.extract",
}

__all__ = ["BLENDS", "FORMULATIONS", "POLICIES", *_NAMES]

__getattr__, __dir__ = lazy_attributes(__name__, _NAMES, __all__, globals())

if TYPE_CHECKING:  # pragma: no cover
    from augvae.overlay.combine import combine_latents, sample_around, transplant
    from augvae.overlay.engine import (
        DEFAULT_FORMULATION,
        OverlayRecord,
        overlay,
        overlay_batch,
        random_overlays,
        render,
        transplant_onto,
    )
    from augvae.overlay.extract import extract_defects
    from augvae.overlay.policy import Draws, OverlayOptions, Plan, draw_numpy, draw_torch, make_plan, mix_labels
    from augvae.overlay.sources import VAESources, clear_cache, load_sources
