"""augvae: generative data augmentation for few-shot defect classifiers.

A convolutional VAE (after Malyshev et al., GraphiCon 2021) learns a few defect images; overlays of
their latent codes make new training images in which several defects are superimposed. Those images
reach a classifier through albumentations / torchvision transforms or a dataset wrapper.

The public API is listed in ``__all__``; names are imported lazily so that ``import augvae`` does
no work beyond importing torch.

Example:
    >>> import torch, augvae
    >>> model = augvae.ConvVAE(augvae.ModelConfig(image_size=28, latent_dim=2))
    >>> result = augvae.train(torch.rand(4, 1, 28, 28), model.config,
    ...                       augvae.recipe_config("small-set", epochs=1, batch_size=2), progress=False)
    >>> result.model.decode(torch.zeros(1, 2)).shape
    torch.Size([1, 1, 28, 28])
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from augvae._version import __version__
from augvae.errors import (
    AugvaeError,
    ConfigError,
    DataError,
    ImageReadError,
    InputError,
    ModelFolderError,
    OutputLockedError,
)

# name -> module that defines it
_LAZY = {
    "ConvVAE": "augvae.model",
    "ModelConfig": "augvae.config",
    "TrainConfig": "augvae.config",
    "GenerateConfig": "augvae.config",
    "RECIPES": "augvae.config",
    "recipe_config": "augvae.config",
    "train": "augvae.training",
    "TrainResult": "augvae.training",
    "load_model": "augvae.checkpoint",
    "LatentSet": "augvae.latent",
    "encode": "augvae.latent",
    "traverse_grid": "augvae.latent",
    "interpolate": "augvae.latent",
    "overlay": "augvae.overlay",
    "random_overlays": "augvae.overlay",
    "FORMULATIONS": "augvae.overlay",
    "ImageSet": "augvae.data.images",
    "load_folder": "augvae.data.images",
    "load_images": "augvae.data.images",
    "MixedDataset": "augvae.data.mixed",
}

__all__ = [
    "__version__",
    "AugvaeError",
    "ConfigError",
    "DataError",
    "ImageReadError",
    "InputError",
    "ModelFolderError",
    "OutputLockedError",
    *_LAZY,
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'augvae' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)


if TYPE_CHECKING:  # pragma: no cover
    from augvae.checkpoint import load_model
    from augvae.config import RECIPES, GenerateConfig, ModelConfig, TrainConfig, recipe_config
    from augvae.data.images import ImageSet, load_folder, load_images
    from augvae.data.mixed import MixedDataset
    from augvae.latent import LatentSet, encode, interpolate, traverse_grid
    from augvae.model import ConvVAE
    from augvae.overlay import FORMULATIONS, overlay, random_overlays
    from augvae.training import TrainResult, train
