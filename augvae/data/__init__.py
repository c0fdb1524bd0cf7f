"""Data: image folders (:mod:`augvae.data.images`), synthetic defects (:mod:`augvae.data.synthetic`) and
the dataset wrapper that mixes VAE overlays into a training set (:class:`MixedDataset`).

Names are imported lazily, so ``import augvae.data`` costs nothing beyond torch.

Example:
    >>> import augvae.data
    >>> augvae.data.MixedDataset.__name__
    'MixedDataset'
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# name -> module that defines it
_LAZY = {
    "MixedDataset": "augvae.data.mixed",
    "ImageSet": "augvae.data.images",
    "load_folder": "augvae.data.images",
    "load_images": "augvae.data.images",
    "read_image": "augvae.data.images",
    "fit_image": "augvae.data.images",
}

__all__ = ["MixedDataset", "ImageSet", "load_folder", "load_images", "read_image", "fit_image"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'augvae.data' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)


if TYPE_CHECKING:  # pragma: no cover
    from augvae.data.images import ImageSet, fit_image, load_folder, load_images, read_image
    from augvae.data.mixed import MixedDataset
