"""What the four adapters share: the model path, ``p``, one :class:`OverlayOptions`, lazy sources, labels.

The albumentations and torchvision transforms and :class:`augvae.data.MixedDataset` are thin shells:
each converts images with its own library, draws randomness from its own library's generator, and
calls :func:`augvae.overlay.engine.overlay_batch`. This module holds the part they would otherwise
each write again: option handling and the parsing of a label given as an int, a numpy integer, a
0-d tensor or a vector over the classes.
"""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np
import torch
from torch import Tensor

from augvae.errors import ConfigError, InputError
from augvae.overlay.policy import OverlayOptions
from augvae.overlay.sources import VAESources, check_model_folder, load_sources

__all__ = ["OverlayAdapter", "check_p", "parse_label", "label_like"]


def check_p(p: Any, name: str = "p") -> float:
    """``p`` as a float in [0, 1], else :class:`ConfigError`."""
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not (math.isfinite(p) and 0.0 <= p <= 1.0):
        raise ConfigError(f"{name} (the probability of applying the transform) must be a number in [0, 1], got {p!r}")
    return float(p)


class OverlayAdapter:
    """Mixin of every adapter: ``model_path``, validated :class:`OverlayOptions`, the sources loaded lazily.

    Each field of the options is also stored as an attribute of its own name (albumentations
    serialisation reads ``__init__`` arguments back that way).
    """

    model_path: str
    options: OverlayOptions

    def _setup_overlay(self, model_path: str | os.PathLike[str], options: OverlayOptions | None, kwargs: dict[str, Any]) -> None:
        self.model_path = check_model_folder(model_path)
        self.options = OverlayOptions.from_kwargs(options, **kwargs)
        for name, value in self.options.as_kwargs().items():
            setattr(self, name, value)

    def sources(self, device: str | torch.device = "cpu") -> VAESources:
        """The model and its sources on ``device`` (loaded on first use, then cached for the process)."""
        return load_sources(self.model_path, self.options.classes, self.options.background_class, device)

    def resolved(self, src: VAESources) -> OverlayOptions:
        """The options with ``auto`` resolved against the model."""
        return self.options.resolve(src)


def parse_label(label: Any, src: VAESources, soft: bool, what: str = "label") -> Tensor:
    """A label as ``(1,)`` int64 or ``(1, K)`` float32, checked against the model's classes.

    Accepts an ``int`` (or numpy integer, or 0-d integer tensor) class index, or a vector of ``K``
    non-negative numbers (numpy array, list or tensor) over the classes.

    Raises:
        InputError: Anything else, naming what was passed and what is expected.
    """
    k = src.num_classes
    if isinstance(label, Tensor) and label.ndim == 0 and not label.is_floating_point() and label.dtype != torch.bool:
        label = int(label)
    if isinstance(label, (int, np.integer)) and not isinstance(label, (bool, np.bool_)):
        y = int(label)
        if not 0 <= y < k:
            raise InputError(f"{what} {y} is not a class index in [0, {k}) (classes: {', '.join(src.classes)}); "
                             "pass classes=[...] in your label order")
        if soft:
            raise InputError(
                f"policy 'soft' returns a label vector over the {k} classes, so it needs one as input too (a plain int would "
                f"come back as a vector only when the transform fires): pass a one-hot vector such as np.eye({k}, dtype=np.float32)[y]"
            )
        return torch.tensor([y])
    arr = label.detach().cpu().numpy() if isinstance(label, Tensor) else np.asarray(label) if isinstance(label, (list, tuple, np.ndarray)) else None
    if arr is None or arr.ndim != 1 or arr.shape[0] != k or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        shown = f"a {type(label).__name__}" + (f" of shape {tuple(arr.shape)}" if arr is not None else f" ({label!r:.40})")
        raise InputError(f"{what} must be an int class index in [0, {k}) or a vector of {k} numbers (one per class: "
                         f"{', '.join(src.classes)}), got {shown}")
    vec = torch.from_numpy(arr.astype(np.float32))
    if not bool(torch.isfinite(vec).all()) or bool((vec < 0).any()) or float(vec.sum()) <= 0:
        raise InputError(f"{what} vector must hold finite non-negative numbers with a positive sum, got {arr.tolist()}")
    return vec[None]


def label_like(new: Tensor, like: Any, soft: bool, vectors: str) -> Any:
    """A new ``(1,)`` or ``(1, K)`` label in the type of the input label ``like``.

    Vectors come back as ``float32`` numpy arrays (``vectors="numpy"``, albumentations) or tensors
    (``"tensor"``, torch); indices as ``int``, numpy integers or 0-d tensors, like the input.
    """
    if new.ndim == 2 or soft:
        vec = new[0].to(torch.float32).cpu()
        return vec.numpy() if vectors == "numpy" else vec
    v = int(new[0])
    if isinstance(like, Tensor):
        return torch.tensor(v, dtype=like.dtype)
    if isinstance(like, np.integer):
        return type(like)(v)
    return v
