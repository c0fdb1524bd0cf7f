"""The albumentations transform: :class:`VAEOverlay`, an ``A.ImageOnlyTransform``.

It works with albumentations 2.0.x and with AlbumentationsX (which installs the same import name);
only public hooks are used: ``targets``, ``apply`` and the sampling hook of the installed library,
chosen at import: ``get_params_dependent_on_data`` reading ``self.random_generator`` (albumentations
2.0.x), or ``sample_parameters`` reading ``sampling.random_generator`` where the base class has it
(AlbumentationsX; 2.5.1, the version tested, rejects classes that define the old hook). Both hooks
run the same drawing code.

To check against AlbumentationsX (AGPL, not a dependency) without touching your environment, install
it into a side folder and put that folder first on the path; ``tests/test_albumentations.py`` says
how, and its ``test_albu_under_albumentationsx`` runs only when the imported ``albumentations`` is
AlbumentationsX::

    pip install --target /tmp/axenv --no-deps albumentationsx==2.5.1 albucore==0.2.21 "numkong>=7.8"
    PYTHONPATH=/tmp/axenv python -m pytest tests/test_albumentations.py tests/test_transforms.py \
        tests/test_fuzz.py augvae/albumentations.py -k "albu or VAEOverlay"

**How the label travels.** A per-image transform cannot see or change a label by itself, so the
label goes through the pipeline as a target of its own, under the key ``"label"``: call the
pipeline with ``label=`` and read the (possibly new) label back from the result.

- Pass an ``int`` class index for ``same-class`` and ``onto-background``; an ``int`` comes back.
- Pass a vector over the classes for ``soft`` (one-hot ``np.eye(K)[y]``, or multi-hot for
  multi-label training); a ``float32`` vector comes back, whether or not the transform fired, so a
  batch collates. Vectors are also accepted by the other policies (a one-hot vector comes back).
- Other transforms pass the ``label`` key through untouched; ``A.Compose(..., strict=True)``
  accepts it because the transform declares it as a target.

Example:
    >>> import albumentations as A
    >>> import numpy as np
    >>> from augvae.albumentations import VAEOverlay
    >>> from augvae.policy import example_model_folder
    >>> folder = example_model_folder()          # a tiny model folder: pass your own
    >>> aug = A.Compose([A.HorizontalFlip(p=0.5), VAEOverlay(folder, p=1.0, policy="onto-background")], seed=7)
    >>> image = np.random.default_rng(0).integers(0, 256, (64, 64), dtype=np.uint8)
    >>> out = aug(image=image, label=2)          # class 2 is "clean": it gets a defect
    >>> out["image"].shape, out["image"].dtype, out["label"] in (0, 1)
    ((64, 64), dtype('uint8'), True)
"""

from __future__ import annotations

import math
import os
from typing import Any

import albumentations as A
import numpy as np
import torch

from augvae.errors import ConfigError, InputError
from augvae.overlay import DEFAULT_FORMULATION
from augvae.policy import (
    DEFAULT_POLICY,
    OverlayOptions,
    VAESources,
    _as_classes,
    check_model_folder,
    draw_numpy,
    image_to_tensor,
    load_sources,
    make_plan,
    mix_labels,
    render,
    tensor_to_image,
)

__all__ = ["LABEL_KEY", "VAEOverlay"]

#: The data key that carries the label through an albumentations pipeline.
LABEL_KEY = "label"

# AlbumentationsX (2.5.1 tested) samples through ``sample_parameters(params, data, targets, sampling)`` returning
# ``SampledParams`` and raises TypeError at class creation for a class that defines
# ``get_params_dependent_on_data``; albumentations 2.0.x only knows the latter. Pick the hook at import.
_SAMPLED_PARAMS: Any = getattr(A, "SampledParams", None)
_NEW_SAMPLING_API = _SAMPLED_PARAMS is not None and hasattr(A.BasicTransform, "sample_parameters")


def _check_p(p: Any) -> float:
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not (math.isfinite(p) and 0.0 <= p <= 1.0):
        raise ConfigError(f"p (the probability of applying the transform) must be a number in [0, 1], got {p!r}")
    return float(p)


class VAEOverlay(A.ImageOnlyTransform):
    """Replace an image, with probability ``p``, by a VAE overlay: the image plus defect sources drawn under a label policy.

    The model is loaded lazily, once per process (and per worker), from ``model_path``; every
    ``__init__`` argument is stored under its own name, so ``A.to_dict`` / ``A.from_dict`` /
    ``A.save`` / ``A.load`` round-trip the transform (import :mod:`augvae.albumentations` before
    ``from_dict`` so that the class is registered). Randomness comes from the pipeline's NumPy
    generator for the call (``self.random_generator``; ``sampling.random_generator`` under
    AlbumentationsX), so ``A.Compose(..., seed=N)`` reproduces its output.

    Images are HWC or HW numpy arrays, uint8, uint16 or float in [0, 1], grayscale or RGB, of any
    size: the result has the input's shape, dtype and value range. See the module docstring for the
    ``label`` key.

    Args:
        model_path: A model folder written by ``augvae train``.
        p: Probability of applying the transform.
        policy: ``same-class``, ``onto-background`` or ``soft`` (see :mod:`augvae.policy`).
        formulation: How sources are combined (:data:`augvae.overlay.FORMULATIONS`).
        scale: Sample each source around its centre with this many posterior standard deviations.
        k: Sources added per image.
        weight: Overlay weight per source: a number or a ``(low, high)`` range.
        keep_input: Overlay onto the input (True) or replace it by a fresh overlay (False).
        background_class: Name of the defect-free class (default: found from the model).
        classes: Class names in the order of your labels (default: the model's classes).
        multilabel: With ``policy="soft"``, return multi-hot labels.

    Raises:
        ConfigError: An option is invalid (at construction).
        ModelFolderError: ``model_path`` is not a model folder (at construction).
        InputError: An image or label cannot be used (at call time), e.g. no ``label`` was passed.

    Example:
        >>> import albumentations as A
        >>> from augvae.policy import example_model_folder
        >>> t = VAEOverlay(example_model_folder(), p=1.0, policy="soft")
        >>> out = t(image=np.zeros((30, 40, 3), np.float32), label=np.eye(3, dtype=np.float32)[0])
        >>> out["image"].shape, out["image"].dtype, round(float(out["label"].sum()), 5)
        ((30, 40, 3), dtype('float32'), 1.0)
        >>> A.from_dict(A.to_dict(t)).policy
        'soft'
    """

    def __init__(
        self,
        model_path: str | os.PathLike[str],
        p: float = 0.5,
        policy: str = DEFAULT_POLICY,
        formulation: str = DEFAULT_FORMULATION,
        scale: float = 0.5,
        k: int = 1,
        weight: float | tuple[float, float] = 1.0,
        keep_input: bool = True,
        background_class: str | None = None,
        classes: tuple[str, ...] | list[str] | None = None,
        multilabel: bool = False,
    ) -> None:
        super().__init__(p=_check_p(p))
        self.model_path = check_model_folder(model_path)
        self.policy = policy
        self.formulation = formulation
        self.scale = scale
        self.k = k
        self.weight = tuple(weight) if isinstance(weight, (list, tuple)) else weight
        self.keep_input = keep_input
        if background_class is not None and not isinstance(background_class, str):
            raise ConfigError(f"background_class must be a class name (a string), got {background_class!r}")
        self.background_class = background_class
        self.classes = _as_classes(classes)
        self.multilabel = multilabel
        self._options = OverlayOptions(policy=policy, formulation=formulation, k=k, scale=scale, weight=self.weight,
                                       keep_input=keep_input, multilabel=multilabel)

    @property
    def targets(self) -> dict[str, Any]:
        """The image targets of ``ImageOnlyTransform`` plus the ``label`` key."""
        return {**super().targets, LABEL_KEY: self.apply_to_label}

    def sources(self) -> VAESources:
        """The model and its sources (loaded on first use, then cached for the process)."""
        return load_sources(self.model_path, self.classes, self.background_class, "cpu")

    def _parse_label(self, label: Any, src: VAESources) -> torch.Tensor:
        k = src.num_classes
        if isinstance(label, (int, np.integer)) and not isinstance(label, (bool, np.bool_)):
            y = int(label)
            if not 0 <= y < k:
                raise InputError(f"label {y} is not a class index in [0, {k}) (classes: {', '.join(src.classes)}); "
                                 "pass classes=[...] in your label order")
            if self._options.soft_labels:
                raise InputError(
                    f"policy 'soft' returns a label vector over the {k} classes, so it needs one as input too (a plain int would "
                    f"come back as a vector only when the transform fires): pass label=np.eye({k}, dtype=np.float32)[y]"
                )
            return torch.tensor([y])
        arr = np.asarray(label)
        if arr.ndim != 1 or arr.shape[0] != k or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
            raise InputError(f"label must be an int class index or a vector of {k} numbers (one per class), got {label!r}")
        vec = torch.from_numpy(arr.astype(np.float32))
        if not bool(torch.isfinite(vec).all()) or bool((vec < 0).any()) or float(vec.sum()) <= 0:
            raise InputError(f"label vector must hold finite non-negative numbers with a positive sum, got {label!r}")
        return vec[None]

    def _draw_params(self, data: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
        """Draw this image's sources and new label from ``rng`` (the pipeline's generator for this call)."""
        if data.get(LABEL_KEY) is None:
            raise InputError(
                "VAEOverlay needs each image's class: call the pipeline with label=<class index> (or a label vector for "
                f"policy 'soft') and read the new label from the result's '{LABEL_KEY}' key"
            )
        src = self.sources()
        labels = self._parse_label(data[LABEL_KEY], src)
        hard = labels if labels.ndim == 1 else labels.argmax(1)
        draws = draw_numpy(src, self._options, 1, rng)
        plan = make_plan(src, hard, self._options, draws)
        new = mix_labels(src, labels, plan, self._options, plan.valid)
        return {"vae_plan": plan, "vae_draws": draws, "vae_label": new}

    if _NEW_SAMPLING_API:

        def sample_parameters(self, params: dict[str, Any], data: dict[str, Any], targets: Any, sampling: Any) -> Any:
            """Draw this image's sources and new label (AlbumentationsX hook; from ``sampling.random_generator``)."""
            return _SAMPLED_PARAMS(params=self._draw_params(data, sampling.random_generator))

    else:

        def get_params_dependent_on_data(self, params: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
            """Draw this image's sources and new label (albumentations 2.0.x hook; from ``self.random_generator``)."""
            return self._draw_params(data, self.random_generator)

    def apply(self, img: np.ndarray, vae_plan: Any = None, vae_draws: Any = None, **params: Any) -> np.ndarray:
        """The overlaid image, in the input's shape, dtype and value range."""
        if not isinstance(img, np.ndarray):
            raise InputError(f"albumentations images must be numpy arrays (H, W, C), got {type(img).__name__}")
        x, fmt = image_to_tensor(img)
        out = render(self.sources(), x, vae_plan, self._options, vae_draws)
        return tensor_to_image(out, fmt)

    def apply_to_label(self, label: Any, vae_label: Any = None, **params: Any) -> Any:
        """The new label: an ``int`` for an ``int``, a ``float32`` vector for a vector."""
        if vae_label is None:
            return label
        if vae_label.ndim == 1:
            return int(vae_label[0])
        return vae_label[0].numpy().astype(np.float32)
