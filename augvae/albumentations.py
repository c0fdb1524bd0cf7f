"""The albumentations transform: :class:`VAEOverlay`, an ``A.ImageOnlyTransform`` over the overlay engine.

It works with albumentations 2.0.x and with AlbumentationsX (which installs the same import name);
only public hooks are used: ``targets``, ``apply``, ``get_transform_init_args_names`` and the
sampling hook of the installed library, chosen at import (``get_params_dependent_on_data`` under
2.0.x, ``sample_parameters`` under AlbumentationsX, which rejects classes that define the old one).
To check against AlbumentationsX without touching your environment::

    pip install --target /tmp/axenv --no-deps albumentationsx==2.5.1 albucore==0.2.21 "numkong>=7.8"
    PYTHONPATH=/tmp/axenv python -m pytest tests/test_albumentations.py tests/test_transforms.py -k "albu or VAEOverlay"

**How the label travels.** A per-image transform cannot see a label by itself, so it travels as a
target of its own under the key ``"label"``: call the pipeline with ``label=`` and read the
(possibly new) label from the result. Pass an ``int`` for ``same-class`` / ``onto-background`` (an
``int`` comes back) and a vector over the classes for ``soft`` (a ``float32`` vector comes back,
whether or not the transform fired, so a batch collates).

Example:
    >>> import albumentations as A
    >>> import numpy as np
    >>> from augvae.albumentations import VAEOverlay
    >>> from augvae.testing import example_model_folder
    >>> folder = example_model_folder(defects=True)      # a tiny model folder: pass your own
    >>> aug = A.Compose([A.HorizontalFlip(p=0.5), VAEOverlay(folder, p=1.0)], seed=7)
    >>> image = np.random.default_rng(0).integers(0, 256, (64, 64), dtype=np.uint8)
    >>> out = aug(image=image, label=2)          # class 2 is "clean": a real defect is put onto it
    >>> out["image"].shape, out["image"].dtype, out["label"] in (0, 1)
    ((64, 64), dtype('uint8'), True)
"""

from __future__ import annotations

import os
from typing import Any

import albumentations as A
import numpy as np
import torch
from albucore import from_float, to_float

from augvae._adapter import OverlayAdapter, check_p, label_like, parse_label
from augvae._convert import check_float_values, check_image_shape
from augvae.errors import InputError
from augvae.overlay.engine import render
from augvae.overlay.policy import OverlayOptions, draw_numpy, make_plan, mix_labels

__all__ = ["LABEL_KEY", "VAEOverlay"]

#: The data key that carries the label through an albumentations pipeline.
LABEL_KEY = "label"

_SAMPLED_PARAMS: Any = getattr(A, "SampledParams", None)
_NEW_SAMPLING_API = _SAMPLED_PARAMS is not None and hasattr(A.BasicTransform, "sample_parameters")
_SCALES = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}


class VAEOverlay(OverlayAdapter, A.ImageOnlyTransform):
    """With probability ``p``, put defects onto an image by the overlay engine (see :mod:`augvae.overlay`).

    The model is loaded lazily, once per process (and per worker), from ``model_path``; every
    option is stored under its own name, so ``A.to_dict`` / ``A.from_dict`` / ``A.save`` / ``A.load``
    round-trip the transform (import :mod:`augvae.albumentations` before ``from_dict``). Randomness
    comes from the pipeline's NumPy generator, so ``A.Compose(..., seed=N)`` reproduces its output.
    Images are HWC or HW numpy arrays, uint8, uint16 or float in [0, 1], of any size; the result has
    the input's shape, dtype and range.

    Args:
        model_path: A model folder written by ``augvae train``.
        p: Probability of applying the transform.
        options: An :class:`~augvae.overlay.policy.OverlayOptions`; or pass its fields (``policy``,
            ``formulation``, ``k``, ``blend``, ``classes``...) as keyword arguments.

    Example:
        >>> from augvae.testing import example_model_folder
        >>> t = VAEOverlay(example_model_folder(), p=1.0, policy="soft")
        >>> out = t(image=np.zeros((30, 40, 3), np.float32), label=np.eye(3, dtype=np.float32)[0])
        >>> out["image"].shape, out["image"].dtype, round(float(out["label"].sum()), 5)
        ((30, 40, 3), dtype('float32'), 1.0)
        >>> A.from_dict(A.to_dict(t)).policy
        'soft'
    """

    def __init__(self, model_path: str | os.PathLike[str], p: float = 0.5, options: OverlayOptions | None = None,
                 **overlay_options: Any) -> None:
        super().__init__(p=check_p(p))
        self._setup_overlay(model_path, options, overlay_options)

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        """``model_path`` and every overlay option (each stored as an attribute of that name)."""
        return ("model_path", *self.options.as_kwargs())

    @property
    def targets(self) -> dict[str, Any]:
        """The image targets of ``ImageOnlyTransform`` plus the ``label`` key."""
        return {**super().targets, LABEL_KEY: self.apply_to_label}

    def _draw_params(self, data: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
        """Draw this image's sources and new label from ``rng`` (the pipeline's generator for this call)."""
        if data.get(LABEL_KEY) is None:
            raise InputError("VAEOverlay needs each image's class: call the pipeline with label=<class index> (or a label vector "
                             f"for policy 'soft') and read the new label from the result's '{LABEL_KEY}' key")
        src = self.sources()
        opts = self.resolved(src)
        labels = parse_label(data[LABEL_KEY], src, opts.soft_labels)
        draws = draw_numpy(src, opts, 1, rng)
        image = data.get("image")
        size = (int(image.shape[0]), int(image.shape[1])) if isinstance(image, np.ndarray) and image.ndim in (2, 3) else None
        plan = make_plan(src, labels if labels.ndim == 1 else labels.argmax(1), opts, draws, size=size)
        return {"vae_plan": plan, "vae_draws": draws, "vae_label": mix_labels(src, labels, plan, opts, plan.valid)}

    if _NEW_SAMPLING_API:

        def sample_parameters(self, params: dict[str, Any], data: dict[str, Any], targets: Any, sampling: Any) -> Any:
            """Draw this image's sources and new label (AlbumentationsX hook)."""
            return _SAMPLED_PARAMS(params=self._draw_params(data, sampling.random_generator))

    else:

        def get_params_dependent_on_data(self, params: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
            """Draw this image's sources and new label (albumentations 2.0.x hook)."""
            return self._draw_params(data, self.random_generator)

    def apply(self, img: np.ndarray, vae_plan: Any = None, vae_draws: Any = None, **params: Any) -> np.ndarray:
        """The overlaid image, in the input's shape, dtype and value range."""
        if not isinstance(img, np.ndarray) or img.ndim not in (2, 3):
            raise InputError(f"albumentations images must be numpy arrays (H, W, C) or (H, W), got {type(img).__name__} "
                             f"{getattr(img, 'shape', '')}")
        check_image_shape(img.shape, "HW" if img.ndim == 2 else "HWC", "image")
        if img.dtype not in _SCALES and not np.issubdtype(img.dtype, np.floating):
            raise InputError(f"image has dtype {img.dtype}; use uint8, uint16 or float32 in [0, 1]")
        hwc = img[..., None] if img.ndim == 2 else img
        x = torch.from_numpy(np.ascontiguousarray(to_float(hwc, _SCALES.get(hwc.dtype)), dtype=np.float32)).permute(2, 0, 1)[None]
        if hwc.dtype not in _SCALES:
            x = check_float_values(x, "image")
        src = self.sources()
        out = render(src, x, vae_plan, self.resolved(src), vae_draws)[0].permute(1, 2, 0).numpy()
        result = from_float(out, hwc.dtype, _SCALES[hwc.dtype]) if hwc.dtype in _SCALES else out.astype(hwc.dtype)
        return result[..., 0] if img.ndim == 2 else result

    def apply_to_label(self, label: Any, vae_label: Any = None, **params: Any) -> Any:
        """The new label: an ``int`` for an ``int``, a ``float32`` vector for a vector."""
        if vae_label is None:
            return label
        return label_like(vae_label, label, vae_label.ndim == 2, "numpy")
