"""The error family of augvae.

Every problem augvae can diagnose is raised as a subclass of :class:`AugvaeError`. Each message
names the problem and the fix (which file, which argument, what was expected), so the CLI can print
it as one line. Catch :class:`AugvaeError` to handle all of them.

Example:
    >>> from augvae.errors import AugvaeError, ConfigError
    >>> try:
    ...     raise ConfigError("latent_dim must be >= 1, got 0; pass --latent-dim 2 or larger")
    ... except AugvaeError as err:
    ...     print(type(err).__name__)
    ConfigError
"""

from __future__ import annotations

__all__ = [
    "AugvaeError",
    "ConfigError",
    "DataError",
    "ImageReadError",
    "InputError",
    "ModelFolderError",
    "OutputError",
    "OutputLockedError",
    "TrainingDivergedError",
]


class AugvaeError(Exception):
    """Base class of every error augvae raises on purpose."""


class ConfigError(AugvaeError, ValueError):
    """An argument or config value is out of range, of the wrong type, or unknown."""


class DataError(AugvaeError, ValueError):
    """A data folder or split file cannot be used (empty, missing, too few images per class)."""


class TrainingDivergedError(DataError):
    """VAE training diverged (a NaN, or a loss that exploded); the message says how to retry.

    Attributes:
        reason: What the loss did (``"loss is NaN or infinite"``, ``"loss grew from 1e+02 to 2e+06"``).
        epoch: The epoch at which training stopped.
    """

    def __init__(self, message: str, reason: str = "", epoch: int = 0) -> None:
        super().__init__(message)
        self.reason = reason
        self.epoch = epoch


class ImageReadError(DataError):
    """One image file cannot be read; the message names the file."""


class InputError(AugvaeError, ValueError):
    """A tensor or array given to a transform has the wrong shape, dtype or values."""


class ModelFolderError(AugvaeError, ValueError):
    """A model folder is missing, incomplete, corrupted or from an incompatible version."""


class OutputError(AugvaeError, OSError):
    """An output path cannot be written: it is a file, read-only, on a full disk, or holds someone else's files."""


class OutputLockedError(AugvaeError, RuntimeError):
    """Another augvae process is writing to the same output folder."""
