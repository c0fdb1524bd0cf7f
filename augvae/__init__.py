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

from typing import TYPE_CHECKING

from augvae._lazy import lazy_attributes
from augvae._version import __version__
from augvae.errors import (
    AugvaeError,
    ConfigError,
    DataError,
    ImageReadError,
    InputError,
    ModelFolderError,
    OutputError,
    OutputLockedError,
    TrainingDivergedError,
)

# name -> module that defines it. The overlay function is augvae.overlay.overlay: the subpackage augvae.overlay takes
# the top-level name as soon as any of its modules is imported, so a function of that name here could never be reached.
_NAMES = {
    "ConvVAE": "augvae.model",
    "load_model": "augvae.model",
    "ModelConfig": "augvae.config",
    "TrainConfig": "augvae.config",
    "ExtractConfig": "augvae.config",
    "GenerateConfig": "augvae.config",
    "RECIPES": "augvae.config",
    "recipe_config": "augvae.config",
    "train": "augvae.training",
    "TrainResult": "augvae.training",
    "LatentSet": "augvae.latent",
    "encode": "augvae.latent",
    "traverse_grid": "augvae.latent",
    "interpolate": "augvae.latent",
    "OverlayOptions": "augvae.overlay.policy",
    "random_overlays": "augvae.overlay.engine",
    "transplant_onto": "augvae.overlay.engine",
    "extract_defects": "augvae.overlay.extract",
    "vae_projector": "augvae.overlay.extract",
    "load_sources": "augvae.overlay.sources",
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
    "OutputError",
    "OutputLockedError",
    "TrainingDivergedError",
    "FORMULATIONS",
    *_NAMES,
]

from augvae.overlay._names import FORMULATIONS  # noqa: E402 - a tuple of names, no import cost

__getattr__, __dir__ = lazy_attributes(__name__, _NAMES, __all__, globals())

if TYPE_CHECKING:  # pragma: no cover
    from augvae.config import RECIPES, ExtractConfig, GenerateConfig, ModelConfig, TrainConfig, recipe_config
    from augvae.data.images import ImageSet, load_folder, load_images
    from augvae.data.mixed import MixedDataset
    from augvae.latent import LatentSet, encode, interpolate, traverse_grid
    from augvae.model import ConvVAE, load_model
    from augvae.overlay.engine import random_overlays, transplant_onto
    from augvae.overlay.extract import extract_defects, vae_projector
    from augvae.overlay.policy import OverlayOptions
    from augvae.overlay.sources import load_sources
    from augvae.training import TrainResult, train
