"""torchvision ``transforms.v2`` transforms over the overlay engine: per-sample :class:`VAEOverlay`, batch :class:`BatchVAEOverlay`.

**How the label travels.** Call :class:`VAEOverlay` on an ``(image, label)`` pair (or any structure
holding an image and a label, such as a dict): the first integer in the sample (an ``int``, a
numpy integer or a 0-d integer tensor) is its label, and it comes back changed where the policy
changes it, in its own type. With ``policy="soft"`` the label always comes back as a ``float32``
tensor of length ``K`` (one-hot where the transform did not fire), so a batch collates.

:class:`BatchVAEOverlay` follows ``v2.MixUp`` / ``v2.CutMix``: ``(images[B, C, H, W], labels[B] or
[B, K]) -> (images, labels)``, applied after the DataLoader or in ``collate_fn``, on the batch's
device; ``make_params`` draws the random numbers only, ``transform`` does the work, and a
``labels_getter`` finds the labels. (timm's ``Mixup`` is a plain callable instead; MixUp's design is
chosen because it composes in ``v2.Compose`` / ``v2.RandomChoice`` beside torchvision's own.)

Example:
    >>> import torch
    >>> from torchvision.transforms import v2
    >>> from augvae.torchvision import VAEOverlay, BatchVAEOverlay
    >>> from augvae.testing import example_model_folder
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

import os
from collections.abc import Callable
from typing import Any

import numpy as np
import PIL.Image
import torch
from torch import Tensor
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from augvae._adapter import OverlayAdapter, check_p, label_like, parse_label
from augvae._convert import (
    batch_to_float,
    check_batch_values,
    check_float_values,
    check_image_shape,
    float_to_batch,
    image_to_tensor,
    tensor_to_image,
)
from augvae.errors import ConfigError, InputError
from augvae.overlay.engine import render
from augvae.overlay.policy import OverlayOptions, draw_torch, make_plan, mix_labels, no_plan

__all__ = ["VAEOverlay", "BatchVAEOverlay"]


def _is_label(x: Any) -> bool:
    if isinstance(x, Tensor):
        return x.ndim == 0 and not x.is_floating_point() and x.dtype != torch.bool
    return isinstance(x, (int, np.integer)) and not isinstance(x, (bool, np.bool_))


def _is_number(x: Any) -> bool:
    return isinstance(x, (float, bool, np.floating, np.bool_))


def _describe(x: Any) -> str:
    if isinstance(x, Tensor):
        return f"Tensor of shape {tuple(x.shape)} and dtype {x.dtype}"
    return type(x).__name__


def _to_float(inpt: Any) -> Tensor:
    """A PIL image, an (H, W[, C]) array or a (C, H, W) tensor as float (1, C, H, W) in [0, 1], by torchvision's own ops."""
    if isinstance(inpt, PIL.Image.Image) and inpt.mode not in ("L", "RGB"):
        return image_to_tensor(inpt)[0]  # I;16, F: modes torchvision's to_image does not scale
    if isinstance(inpt, np.ndarray) and inpt.ndim not in (2, 3):
        raise InputError(f"a numpy image must be (H, W) or (H, W, C), got shape {inpt.shape}")
    if isinstance(inpt, Tensor) and inpt.ndim not in (2, 3):
        raise InputError(f"VAEOverlay takes one image (C, H, W) or (H, W), got shape {tuple(inpt.shape)}; batches go to BatchVAEOverlay")
    image = TF.to_image(inpt).as_subclass(Tensor)  # (C, H, W)
    check_image_shape(tuple(image.shape), "CHW", "image")
    if not (image.is_floating_point() or image.dtype in (torch.uint8, torch.uint16)):
        raise InputError(f"image has dtype {image.dtype}; use uint8, uint16 or float in [0, 1]")
    x = TF.to_dtype(image, torch.float32, scale=True)[None]
    return check_float_values(x, "image") if image.is_floating_point() else x


def _image_size(flat_inputs: list[Any]) -> tuple[int, int] | None:
    """``(height, width)`` of the sample's image (what :func:`_to_float` will read), or None if none is recognisable."""
    for x in flat_inputs:
        if isinstance(x, PIL.Image.Image):
            return x.height, x.width
        if isinstance(x, tv_tensors.TVTensor) and not isinstance(x, tv_tensors.Image):
            continue  # masks, boxes, videos...
        if isinstance(x, np.ndarray) and x.ndim in (2, 3):
            return int(x.shape[0]), int(x.shape[1])
        if isinstance(x, Tensor) and x.ndim in (2, 3):
            return int(x.shape[-2]), int(x.shape[-1])
    return None


def _from_float(out: Tensor, like: Any) -> Any:
    """``out`` (1, C, H, W) back in the type, layout, dtype and range of ``like``."""
    if isinstance(like, PIL.Image.Image):
        if like.mode in ("L", "RGB"):
            return TF.to_pil_image(TF.to_dtype(out[0], torch.uint8, scale=True), mode=like.mode)
        return tensor_to_image(out, image_to_tensor(like)[1])
    if isinstance(like, np.ndarray):
        arr = TF.to_dtype(out[0], torch.from_numpy(like[:0]).dtype, scale=True).permute(1, 2, 0).numpy()
        return arr[..., 0] if like.ndim == 2 else arr
    image = TF.to_dtype(out[0], like.dtype, scale=True).to(like.device)
    image = image[0] if like.ndim == 2 else image
    return tv_tensors.wrap(image, like=like) if isinstance(like, tv_tensors.Image) else image


class VAEOverlay(OverlayAdapter, v2.Transform):
    """With probability ``p``, put defects onto an image by the overlay engine (see :mod:`augvae.overlay`).

    Handles PIL images (L, RGB, I;16, F), numpy arrays (HW, HWC), CHW / HW tensors and
    ``tv_tensors.Image`` (uint8, uint16 or float in [0, 1]), at any size; the result has the input's
    type, size, dtype and range. Masks, boxes and other ``tv_tensors`` pass through. Randomness
    comes from torch's global generator (``torch.manual_seed(N)`` reproduces the output); the model
    is loaded lazily, once per process (and per DataLoader worker).

    Args:
        model_path: A model folder written by ``augvae train``.
        p: Probability of applying the transform.
        options: An :class:`~augvae.overlay.policy.OverlayOptions`; or pass its fields as keyword arguments.

    Example:
        >>> import PIL.Image
        >>> from augvae.testing import example_model_folder
        >>> t = VAEOverlay(example_model_folder(), p=1.0, policy="soft")
        >>> img, label = t(PIL.Image.new("RGB", (40, 30), (128, 128, 128)), 0)
        >>> img.size, img.mode, label.shape
        ((40, 30), 'RGB', torch.Size([3]))
    """

    _transformed_types = (Tensor, PIL.Image.Image, np.ndarray, _is_label, _is_number)

    def __init__(self, model_path: str | os.PathLike[str], p: float = 0.5, options: OverlayOptions | None = None,
                 **overlay_options: Any) -> None:
        super().__init__()
        self.p = check_p(p)
        self._setup_overlay(model_path, options, overlay_options)

    def _needs_transform_list(self, flat_inputs: list[Any]) -> list[bool]:
        # torchvision's heuristic transforms only the first pure tensor; a 0-d integer tensor is a label, not an image.
        # Other small tensors and numbers reach make_params too (and pass through), so that a wrong label can be named.
        needs = super()._needs_transform_list(flat_inputs)
        return [n or (isinstance(x, Tensor) and x.ndim <= 1) for n, x in zip(needs, flat_inputs)]

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        """Decide whether to fire; draw the sources and the new label (torch's global RNG)."""
        applied = bool(torch.rand(1) < self.p)
        label = next((x for x in flat_inputs if _is_label(x)), None)
        src = self.sources()
        opts = self.resolved(src)
        params: dict[str, Any] = {"applied": applied, "label": label, "src": src, "opts": opts}
        if label is None:
            # Checked whether or not the transform fires: a missing or wrong label fails on every call, not half of them.
            if opts.keep_input and opts.policy != "soft":
                kinds = ", ".join(dict.fromkeys(_describe(x) for x in flat_inputs)) or "nothing"
                raise InputError(f"policy {opts.policy!r} needs the image's class, but the sample holds no integer label "
                                 f"(it holds: {kinds}); call the transform on (image, label) with an int or a 0-d integer tensor")
            y = torch.tensor([-1])
        else:
            y = parse_label(label, src, False)
        draws = draw_torch(src, opts, 1, device="cpu")
        plan = make_plan(src, y, opts, draws, size=_image_size(flat_inputs)) if applied else no_plan(y)
        params.update(draws=draws, plan=plan, new_label=mix_labels(src, y, plan, opts, plan.valid))
        return params

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        """Overlay an image, or return the new label; pass anything else through."""
        if _is_label(inpt):
            return label_like(params["new_label"], inpt, params["opts"].soft_labels, "tensor") if inpt is params["label"] else inpt
        if _is_number(inpt) or (isinstance(inpt, Tensor) and inpt.ndim <= 1):
            return inpt
        if not params["applied"] or not bool(params["plan"].valid.any()):
            return inpt
        if isinstance(inpt, tv_tensors.TVTensor) and not isinstance(inpt, tv_tensors.Image):
            return inpt  # masks, boxes, videos...
        src = params["src"]
        out = render(src, _to_float(inpt).to(src.device), params["plan"], params["opts"], params["draws"])
        return _from_float(out, inpt)


def _default_labels(inputs: Any) -> Any:
    return inputs[1]


class BatchVAEOverlay(OverlayAdapter, v2.Transform):
    """Overlay a whole batch on its device, like ``v2.MixUp``: ``images, labels = t(images, labels)``.

    Each image is overlaid with probability ``p`` (independently). ``images`` is a ``(B, C, H, W)``
    tensor or ``tv_tensors.Image`` (uint8, uint16 or float in [0, 1], any size); ``labels`` is
    ``(B,)`` int64 or ``(B, K)`` float. Hard policies return labels of the input's form; ``soft``
    returns ``(B, K)`` probabilities (rows sum to one, for ``F.cross_entropy``) or multi-hot vectors.

    Args:
        model_path: A model folder written by ``augvae train``.
        p: Probability of overlaying each image.
        options: An :class:`~augvae.overlay.policy.OverlayOptions`; or pass its fields as keyword arguments.
        num_classes: Optional check: the number of classes of your labels.
        check_values: Refuse NaN/inf images and out-of-range labels (one device synchronisation per
            batch); pass False for fully asynchronous GPU training.
        labels_getter: Finds the labels in the input, as in ``v2.MixUp`` (default: the second element).

    Example:
        >>> from augvae.testing import example_model_folder
        >>> bt = BatchVAEOverlay(example_model_folder(), p=1.0, policy="same-class")
        >>> x, y = bt(torch.randint(0, 256, (4, 1, 32, 32), dtype=torch.uint8), torch.tensor([0, 1, 0, 1]))
        >>> x.dtype, y.tolist()
        (torch.uint8, [0, 1, 0, 1])
    """

    def __init__(self, model_path: str | os.PathLike[str], p: float = 0.5, options: OverlayOptions | None = None, *,
                 num_classes: int | None = None, check_values: bool = True,
                 labels_getter: Callable[[Any], Any] = _default_labels, **overlay_options: Any) -> None:
        super().__init__()
        self.p = check_p(p)
        self._setup_overlay(model_path, options, overlay_options)
        if num_classes is not None and (isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1):
            raise ConfigError(f"num_classes must be a positive int or None, got {num_classes!r}")
        if num_classes is not None and self.options.classes is not None and num_classes != len(self.options.classes):
            raise ConfigError(f"num_classes={num_classes} but classes names {len(self.options.classes)}; pass one class name per label")
        self.num_classes, self.check_values, self._labels_getter = num_classes, bool(check_values), labels_getter

    def forward(self, *inputs: Any) -> Any:
        """``(images, labels) -> (images, labels)``; as in ``v2.MixUp``, ``transform`` tells the labels by identity."""
        sample = inputs if len(inputs) > 1 else inputs[0]
        if not (isinstance(sample, (tuple, list)) and len(sample) == 2):
            raise InputError("BatchVAEOverlay takes (images, labels): images (B, C, H, W) and labels (B,) or (B, K)")
        images, labels = sample[0], self._labels_getter(sample)
        if isinstance(images, PIL.Image.Image) or not isinstance(images, Tensor):
            raise InputError(f"BatchVAEOverlay takes a batch tensor (B, C, H, W), got {type(images).__name__}; "
                             "use VAEOverlay for single images")
        params = self.make_params([images, labels])
        out = (self.transform(images, params), self.transform(labels, params))
        return list(out) if isinstance(sample, list) else out

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        """Check the batch, draw its random numbers and plan it (sources, weights, new labels); nothing is rendered here."""

        images, labels = flat_inputs
        x, fmt = batch_to_float(images.as_subclass(Tensor), "images", self.check_values)
        src = self.sources(x.device)
        if self.num_classes is not None and self.num_classes != src.num_classes:
            raise ConfigError(f"num_classes={self.num_classes} but the model's classes are {src.classes}; "
                              "pass classes=[...] in your label order")
        check_batch_values(labels, src.num_classes, self.check_values)
        if labels.shape[0] != x.shape[0]:
            raise InputError(f"{x.shape[0]} images but {labels.shape[0]} labels; pass one label per image")
        opts = self.resolved(src)
        draws = draw_torch(src, opts, x.shape[0], device=x.device)
        y = labels.to(x.device)
        plan = make_plan(src, y.long() if y.ndim == 1 else y.argmax(1), opts, draws, size=(x.shape[-2], x.shape[-1]))
        plan.valid = plan.valid & (draws.apply < self.p)  # type: ignore[operator]
        new = mix_labels(src, y, plan, opts, plan.valid)
        return {"src": src, "opts": opts, "draws": draws, "plan": plan, "x": x, "format": fmt, "labels": labels,
                "new_labels": new.to(labels.dtype) if labels.ndim == 2 else new}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        """The overlaid images (one call of the engine's renderer), or the new labels."""

        if inpt is params["labels"]:
            return params["new_labels"]
        out = float_to_batch(render(params["src"], params["x"], params["plan"], params["opts"], params["draws"]), params["format"])
        return tv_tensors.wrap(out, like=inpt) if isinstance(inpt, tv_tensors.Image) else out
