"""torchvision ``transforms.v2`` transforms: per-sample :class:`VAEOverlay` and batch :class:`BatchVAEOverlay`.

**How the label travels.** Call :class:`VAEOverlay` on an ``(image, label)`` pair (or any
structure holding an image and an ``int`` label, such as a dict): the first ``int`` in the sample
is its label, and the transform returns it changed where the policy changes it. With
``policy="soft"`` the label always comes back as a ``float32`` tensor of length ``K`` (one-hot
where the transform did not fire), so a batch collates. Called on an image alone it works for
policies that do not need the label (``keep_input=False`` or ``soft``); otherwise it raises.

:class:`BatchVAEOverlay` is the ``v2.MixUp`` of augvae: ``(images[B, C, H, W], labels[B] or [B, K])
-> (images, labels)``, applied after the DataLoader or in ``collate_fn``, on the batch's device, in
one decoder pass.

Example:
    >>> import torch
    >>> from torchvision.transforms import v2
    >>> from augvae.torchvision import VAEOverlay, BatchVAEOverlay
    >>> from augvae.policy import example_model_folder
    >>> folder = example_model_folder()
    >>> _ = torch.manual_seed(0)
    >>> t = v2.Compose([v2.RandomHorizontalFlip(), VAEOverlay(folder, p=1.0)])
    >>> img, label = t(torch.randint(0, 256, (1, 48, 48), dtype=torch.uint8), 1)
    >>> img.shape, img.dtype, label
    (torch.Size([1, 48, 48]), torch.uint8, 1)
    >>> images, labels = BatchVAEOverlay(folder, p=1.0, policy="soft")(torch.rand(8, 1, 48, 48), torch.randint(0, 3, (8,)))
    >>> labels.shape, bool(torch.allclose(labels.sum(1), torch.ones(8)))
    (torch.Size([8, 3]), True)
"""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np
import PIL.Image
import torch
from torch import Tensor
from torchvision import tv_tensors
from torchvision.transforms import v2

from augvae.errors import ConfigError, InputError
from augvae.overlay import DEFAULT_FORMULATION
from augvae.policy import (
    DEFAULT_POLICY,
    OverlayOptions,
    VAESources,
    _as_classes,
    batch_to_float,
    check_batch_values,
    check_model_folder,
    draw_torch,
    float_to_batch,
    image_to_tensor,
    load_sources,
    make_plan,
    mix_labels,
    overlay_batch,
    render,
    tensor_to_image,
)

__all__ = ["VAEOverlay", "BatchVAEOverlay"]


def _is_int_label(x: Any) -> bool:
    return isinstance(x, (int, np.integer)) and not isinstance(x, (bool, np.bool_))


def _check_p(p: Any) -> float:
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not (math.isfinite(p) and 0.0 <= p <= 1.0):
        raise ConfigError(f"p (the probability of applying the transform) must be a number in [0, 1], got {p!r}")
    return float(p)


class _VAEOptions:
    """Shared constructor of the two transforms: validated options, the path, lazy sources."""

    def _setup(self, model_path: Any, p: Any, policy: str, formulation: str, scale: float, k: int, weight: Any,
               keep_input: bool, background_class: str | None, classes: Any, multilabel: bool) -> None:
        self.model_path = check_model_folder(model_path)
        self.p = _check_p(p)
        self.policy, self.formulation, self.scale, self.k = policy, formulation, scale, k
        self.weight = tuple(weight) if isinstance(weight, (list, tuple)) else weight
        self.keep_input, self.multilabel = keep_input, multilabel
        if background_class is not None and not isinstance(background_class, str):
            raise ConfigError(f"background_class must be a class name (a string), got {background_class!r}")
        self.background_class = background_class
        self.classes = _as_classes(classes)
        self.options = OverlayOptions(policy=policy, formulation=formulation, k=k, scale=scale, weight=self.weight,
                                      keep_input=keep_input, multilabel=multilabel)

    def sources(self, device: str | torch.device = "cpu") -> VAESources:
        """The model and its sources on ``device`` (loaded on first use, then cached for the process)."""
        return load_sources(self.model_path, self.classes, self.background_class, device)


class VAEOverlay(_VAEOptions, v2.Transform):
    """Replace an image, with probability ``p``, by a VAE overlay: the image plus sources drawn under a label policy.

    Handles PIL images (L, RGB), CHW / HW tensors and ``tv_tensors.Image`` (uint8, uint16 or float in
    [0, 1]), at any size; the result has the input's type, size, dtype and value range. Masks, boxes
    and other ``tv_tensors`` pass through unchanged. Randomness comes from torch's global generator,
    so ``torch.manual_seed(N)`` reproduces the output. The model is loaded lazily, once per process
    (and per DataLoader worker).

    Args:
        model_path: A model folder written by ``augvae train``.
        p: Probability of applying the transform.
        policy, formulation, scale, k, weight, keep_input, background_class, classes, multilabel: As in
            :class:`augvae.albumentations.VAEOverlay`.

    Example:
        >>> import PIL.Image
        >>> from augvae.policy import example_model_folder
        >>> t = VAEOverlay(example_model_folder(), p=1.0, policy="soft")
        >>> img, label = t(PIL.Image.new("RGB", (40, 30), (128, 128, 128)), 0)
        >>> img.size, img.mode, label.shape
        ((40, 30), 'RGB', torch.Size([3]))
    """

    # Plain ints are labels: let them reach make_params / transform (other types pass through).
    _transformed_types = (Tensor, PIL.Image.Image, _is_int_label)

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
        v2.Transform.__init__(self)
        self._setup(model_path, p, policy, formulation, scale, k, weight, keep_input, background_class, classes, multilabel)

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        """Decide whether to fire, draw the sources and the new label (torch's global RNG)."""
        applied = bool(torch.rand(1) < self.p)
        label = next((x for x in flat_inputs if _is_int_label(x)), None)
        params: dict[str, Any] = {"applied": applied, "label_seen": [False]}
        if not applied and not self.options.soft_labels:
            return params
        src = self.sources()
        if label is not None and not 0 <= int(label) < src.num_classes:
            raise InputError(f"label {int(label)} is not a class index in [0, {src.num_classes}) (classes: "
                             f"{', '.join(src.classes)}); pass classes=[...] in your label order")
        y = torch.tensor([int(label) if label is not None else -1])
        if not applied:
            params["new_label"] = mix_labels(src, y, _no_plan(y), self.options, torch.zeros(1, dtype=torch.bool))
            return params
        needs_label = self.options.keep_input and self.options.policy != "soft"
        if label is None and needs_label:
            raise InputError(
                f"policy {self.policy!r} needs the image's class: call the transform on an (image, label) pair "
                "with an int label (or use keep_input=False)"
            )
        draws = draw_torch(src, self.options, 1, device="cpu")
        plan = make_plan(src, y, self.options, draws)
        params.update(src=src, draws=draws, plan=plan, new_label=mix_labels(src, y, plan, self.options, plan.valid))
        return params

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        """Overlay an image, or return the new label; pass anything else through."""
        if _is_int_label(inpt):
            if params["label_seen"][0] or "new_label" not in params:
                return inpt
            params["label_seen"][0] = True
            new = params["new_label"]
            return int(new[0]) if new.ndim == 1 else new[0].to(torch.float32)
        if not params["applied"]:
            return inpt
        if isinstance(inpt, tv_tensors.TVTensor) and not isinstance(inpt, tv_tensors.Image):
            return inpt  # masks, boxes, videos...
        x, fmt = image_to_tensor(inpt.as_subclass(Tensor) if isinstance(inpt, tv_tensors.Image) else inpt)
        out = tensor_to_image(render(params["src"], x.to(params["src"].device), params["plan"], self.options, params["draws"]), fmt)
        return tv_tensors.wrap(out, like=inpt) if isinstance(inpt, tv_tensors.Image) else out


def _no_plan(y: Tensor) -> Any:
    from augvae.policy import Plan

    return Plan(index=torch.zeros(y.shape[0], 1, dtype=torch.long), weight=torch.zeros(y.shape[0], 1),
                valid=torch.zeros(y.shape[0], dtype=torch.bool), target=y)


class BatchVAEOverlay(_VAEOptions, v2.Transform):
    """Overlay a whole batch in one decoder pass, on the batch's device, like ``v2.MixUp``.

    Call it as ``images, labels = batch_overlay(images, labels)`` after the DataLoader (on the GPU
    when training there) or inside ``collate_fn``. Each image is overlaid with probability ``p``
    (independently). ``images`` is a ``(B, C, H, W)`` tensor or ``tv_tensors.Image`` (uint8, uint16
    or float in [0, 1], any size); ``labels`` is ``(B,)`` int64 or ``(B, K)`` float. Hard policies
    return labels of the input's form; ``soft`` returns ``(B, K)`` probabilities (each row sums to
    one, usable by ``F.cross_entropy``) or multi-hot vectors with ``multilabel=True``.

    Like torchvision's own MixUp/CutMix this transform overrides ``forward``: the base class passes
    only the first plain tensor of a sample to ``transform``, and a batch transform needs the labels.

    Args:
        model_path, p, policy, formulation, scale, k, weight, keep_input, background_class, classes, multilabel: As in
            :class:`VAEOverlay`.
        num_classes: Optional check: the number of classes of your labels (must match ``classes``).
        check_values: Refuse NaN/inf images and out-of-range labels. This costs one device
            synchronisation per batch; pass False for fully asynchronous GPU training.

    Example:
        >>> from augvae.policy import example_model_folder
        >>> bt = BatchVAEOverlay(example_model_folder(), p=1.0, policy="same-class")
        >>> x, y = bt(torch.randint(0, 256, (4, 1, 32, 32), dtype=torch.uint8), torch.tensor([0, 1, 0, 1]))
        >>> x.dtype, y.tolist()
        (torch.uint8, [0, 1, 0, 1])
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
        num_classes: int | None = None,
        check_values: bool = True,
    ) -> None:
        v2.Transform.__init__(self)
        self._setup(model_path, p, policy, formulation, scale, k, weight, keep_input, background_class, classes, multilabel)
        if num_classes is not None and (isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1):
            raise ConfigError(f"num_classes must be a positive int or None, got {num_classes!r}")
        if num_classes is not None and self.classes is not None and num_classes != len(self.classes):
            raise ConfigError(f"num_classes={num_classes} but classes names {len(self.classes)}; pass one class name per label")
        self.num_classes = num_classes
        self.check_values = bool(check_values)

    def forward(self, *inputs: Any) -> Any:
        """``(images, labels) -> (images, labels)``; see the class docstring."""
        sample = inputs if len(inputs) > 1 else inputs[0]
        if not (isinstance(sample, (tuple, list)) and len(sample) == 2):
            raise InputError("BatchVAEOverlay takes (images, labels): images (B, C, H, W) and labels (B,) or (B, K)")
        images, labels = sample
        if isinstance(images, PIL.Image.Image) or not isinstance(images, Tensor):
            raise InputError(f"BatchVAEOverlay takes a batch tensor (B, C, H, W), got {type(images).__name__}; "
                             "use VAEOverlay for single images")
        params = self.make_params([images, labels])
        out = (self.transform(images, params), self.transform(labels, params))
        return list(out) if isinstance(sample, list) else out

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        """Overlay the batch (``flat_inputs = [images, labels]``); the results travel in the params."""
        images, labels = flat_inputs
        x, fmt = batch_to_float(images.as_subclass(Tensor), "images", self.check_values)
        src = self.sources(x.device)
        if self.num_classes is not None and self.num_classes != src.num_classes:
            raise ConfigError(f"num_classes={self.num_classes} but the model's classes are {src.classes}; "
                              "pass classes=[...] in your label order")
        check_batch_values(labels, src.num_classes, self.check_values)
        if labels.shape[0] != x.shape[0]:
            raise InputError(f"{x.shape[0]} images but {labels.shape[0]} labels; pass one label per image")
        draws = draw_torch(src, self.options, x.shape[0], device=x.device)
        out, new = overlay_batch(src, x, labels, self.options, draws, p=self.p)
        if labels.ndim == 2:
            new = new.to(labels.dtype)
        return {"images": images, "labels": labels, "out_images": float_to_batch(out, fmt), "out_labels": new}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        """The overlaid images or the new labels."""
        if inpt is params["images"]:
            out = params["out_images"]
            return tv_tensors.wrap(out, like=inpt) if isinstance(inpt, tv_tensors.Image) else out
        if inpt is params["labels"]:
            return params["out_labels"]
        return inpt
