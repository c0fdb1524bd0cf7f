"""Data: image folders (:mod:`augvae.data.images`), synthetic defects (:mod:`augvae.data.synthetic`) and
the dataset wrapper that mixes overlay-generated samples into a training set (:class:`MixedDataset`).

Names are imported lazily, so ``import augvae.data`` costs nothing beyond torch.

Example:
    >>> import augvae.data
    >>> augvae.data.MixedDataset.__name__
    'MixedDataset'
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from augvae._lazy import lazy_attributes

_NAMES = {
    "MixedDataset": "augvae.data.mixed",
    "ImageSet": "augvae.data.images",
    "load_folder": "augvae.data.images",
    "load_images": "augvae.data.images",
    "read_image": "augvae.data.images",
    "fit_image": "augvae.data.images",
}

__all__ = list(_NAMES)

__getattr__, __dir__ = lazy_attributes(__name__, _NAMES, __all__, globals())

if TYPE_CHECKING:  # pragma: no cover
    from augvae.data.images import ImageSet, fit_image, load_folder, load_images, read_image
    from augvae.data.mixed import MixedDataset
