"""Images of any library as float tensors in [0, 1], and back: numpy, PIL and torch, single images and batches.

Used by :class:`augvae.data.MixedDataset` (whose wrapped dataset may yield any of them) and by the
checks every adapter shares; the albumentations and torchvision adapters convert with their own
library's functions and only borrow the value checks from here.

Example:
    >>> import numpy as np
    >>> t, fmt = image_to_tensor(np.full((5, 7, 3), 255, dtype=np.uint8))
    >>> t.shape, float(t.max()), fmt.layout
    (torch.Size([1, 3, 5, 7]), 1.0, 'HWC')
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from augvae.errors import InputError

__all__ = ["RANGE_TOLERANCE", "ImageFormat", "image_to_tensor", "tensor_to_image", "batch_to_float", "float_to_batch",
           "check_float_values", "check_image_shape", "check_batch_values"]

#: Float images may stray this far outside [0, 1] (interpolation overshoot) and are clipped; beyond it they are refused.
RANGE_TOLERANCE = 0.05


@dataclass(frozen=True)
class ImageFormat:
    """How an input image was given, to give the result back the same way.

    Attributes:
        kind: ``numpy``, ``pil`` or ``tensor``.
        layout: ``HWC``, ``HW`` or ``CHW``.
        dtype: numpy / torch dtype, or the PIL mode.
        scale: Integer images are divided by this (255, 65535); 1 for float.
        device: The tensor's device (tensors only).

    Example:
        >>> image_to_tensor(torch.zeros(3, 4, 5, dtype=torch.uint8))[1].layout
        'CHW'
    """

    kind: str
    layout: str
    dtype: Any
    scale: float
    device: Any = None


_NP_SCALES = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}
_TORCH_SCALES = {torch.uint8: 255.0, torch.uint16: 65535.0}
_PIL_MODES = {"L": 255.0, "RGB": 255.0, "I;16": 65535.0, "F": 1.0}


def check_float_values(t: Tensor, what: str) -> Tensor:
    if t.numel() and not bool(torch.isfinite(t).all()):
        raise InputError(f"{what} contains NaN or infinite values; clean it before augmenting")
    if t.numel():
        lo, hi = float(t.min()), float(t.max())
        if lo < -RANGE_TOLERANCE or hi > 1.0 + RANGE_TOLERANCE:
            raise InputError(
                f"{what} has values in [{lo:.3g}, {hi:.3g}] but float images must be in [0, 1]; put the augvae transform "
                "before Normalize (and after ToTensor / ToDtype(scale=True)), or divide 8-bit data by 255"
            )
    return t.clamp(0.0, 1.0)


def check_image_shape(shape: tuple[int, ...], layout: str, what: str) -> None:
    if any(s == 0 for s in shape):
        raise InputError(f"{what} is empty (shape {shape}); pass an image with at least one pixel")
    c = 1 if layout == "HW" else (shape[-1] if layout == "HWC" else shape[0])
    if c not in (1, 3):
        hint = "drop the alpha channel (e.g. PIL .convert('RGB'))" if c == 4 else f"expected {layout} with 1 or 3 channels"
        raise InputError(f"{what} has shape {shape}: {c} channels; {hint}")


def image_to_tensor(image: Any, what: str = "image") -> tuple[Tensor, ImageFormat]:
    """Any single image as a float32 ``(1, C, H, W)`` tensor in [0, 1], with its :class:`ImageFormat`.

    Accepts HWC / HW numpy arrays (uint8, uint16, float in [0, 1]), PIL images (modes L, RGB, I;16, F)
    and CHW / HW tensors (``tv_tensors.Image`` included; uint8, uint16 or float in [0, 1]).

    Raises:
        InputError: Any other type, dtype, shape or channel count, NaN/inf, or float values outside [0, 1].

    Example:
        >>> t, fmt = image_to_tensor(np.full((5, 7, 3), 255, dtype=np.uint8))
        >>> t.shape, float(t.max()), fmt.layout
        (torch.Size([1, 3, 5, 7]), 1.0, 'HWC')
        >>> tensor_to_image(t * 0.5, fmt)[0, 0]
        array([128, 128, 128], dtype=uint8)
    """
    try:
        import PIL.Image

        is_pil = isinstance(image, PIL.Image.Image)
    except ImportError:  # pragma: no cover - pillow is a dependency
        is_pil = False
    if is_pil:
        if image.mode not in _PIL_MODES:
            raise InputError(f"{what} is a PIL image in mode {image.mode!r}; convert it with .convert('L') or .convert('RGB')")
        arr = np.asarray(image)
        fmt = ImageFormat("pil", "HW" if arr.ndim == 2 else "HWC", image.mode, _PIL_MODES[image.mode])
        check_image_shape(arr.shape, fmt.layout, what)
        t = torch.from_numpy(np.array(arr, dtype=np.float32))  # a writable copy
        t = t[None] if arr.ndim == 2 else t.permute(2, 0, 1)
        t = t / fmt.scale
        return (check_float_values(t, what) if image.mode == "F" else t)[None], fmt
    if isinstance(image, np.ndarray):
        if image.ndim not in (2, 3):
            raise InputError(f"{what} must be an (H, W, C) or (H, W) array, got shape {image.shape}")
        layout = "HW" if image.ndim == 2 else "HWC"
        check_image_shape(image.shape, layout, what)
        if image.dtype in _NP_SCALES:
            scale = _NP_SCALES[image.dtype]
        elif np.issubdtype(image.dtype, np.floating):
            scale = 1.0
        else:
            raise InputError(f"{what} has dtype {image.dtype}; use uint8, uint16 or float32 in [0, 1]")
        t = torch.from_numpy(np.array(image, dtype=np.float32))  # a writable copy
        t = t[None] if layout == "HW" else t.permute(2, 0, 1)
        t = t / scale if scale != 1.0 else check_float_values(t, what)
        return t[None].contiguous(), ImageFormat("numpy", layout, image.dtype, scale)
    if isinstance(image, Tensor):
        if image.ndim not in (2, 3):
            raise InputError(f"{what} must be a (C, H, W) or (H, W) tensor, got shape {tuple(image.shape)}; "
                             "batches go to BatchVAEOverlay")
        layout = "HW" if image.ndim == 2 else "CHW"
        check_image_shape(tuple(image.shape), layout, what)
        t, fmt = batch_to_float(image.reshape(1, -1, *image.shape[-2:]), what)
        return t, ImageFormat("tensor", layout, fmt.dtype, fmt.scale, fmt.device)
    raise InputError(f"{what} must be a numpy array, a PIL image or a torch tensor, got {type(image).__name__}")


def tensor_to_image(t: Tensor, fmt: ImageFormat) -> Any:
    """Give a float ``(1, C, H, W)`` result back in the input's type, dtype, layout and value range.

    Example:
        >>> import PIL.Image
        >>> t, fmt = image_to_tensor(PIL.Image.new("L", (6, 4), 200))
        >>> tensor_to_image(t, fmt).size, tensor_to_image(t, fmt).getpixel((0, 0))
        ((6, 4), 200)
    """
    x = t[0].clamp(0.0, 1.0)
    if fmt.kind == "tensor":
        out = float_to_batch(x[None].to(fmt.device), fmt)[0]
        return out[0] if fmt.layout == "HW" else out
    arr = x.detach().cpu()
    arr = arr[0] if fmt.layout == "HW" else arr.permute(1, 2, 0)
    a = arr.numpy()
    if fmt.kind == "pil":
        import PIL.Image

        if fmt.dtype == "F":
            return PIL.Image.fromarray(np.ascontiguousarray(a, dtype=np.float32))
        if fmt.dtype == "I;16":
            return PIL.Image.fromarray(np.rint(a * 65535.0).astype(np.uint16))
        return PIL.Image.fromarray(np.rint(a * 255.0).astype(np.uint8))
    if fmt.scale != 1.0:
        return np.rint(a * fmt.scale).astype(fmt.dtype)
    return a.astype(fmt.dtype, copy=False)


def batch_to_float(images: Tensor, what: str = "images", check_values: bool = True) -> tuple[Tensor, ImageFormat]:
    """A ``(B, C, H, W)`` tensor batch as float in [0, 1] on its device (no host copy), with its format.

    ``check_values`` looks for NaN/inf and out-of-range floats, one device synchronisation; without it the
    batch is only clipped.

    Example:
        >>> x, fmt = batch_to_float(torch.full((2, 1, 4, 4), 255, dtype=torch.uint8))
        >>> x.dtype, float(x.max()), fmt.scale
        (torch.float32, 1.0, 255.0)
    """
    if not isinstance(images, Tensor):
        raise InputError(f"{what} must be a torch tensor (B, C, H, W), got {type(images).__name__}")
    if images.ndim != 4:
        raise InputError(f"{what} must have 4 dimensions (B, C, H, W), got shape {tuple(images.shape)}")
    if images.shape[0] == 0:
        raise InputError(f"{what} is an empty batch (B = 0); pass at least one image")
    check_image_shape(tuple(images.shape[1:]), "CHW", what)
    if images.dtype in _TORCH_SCALES:
        scale = _TORCH_SCALES[images.dtype]
        x = images.to(torch.float32) / scale
    elif images.is_floating_point():
        scale = 1.0
        x = images.to(torch.float32)
        x = check_float_values(x, what) if check_values else x.clamp(0.0, 1.0)
    else:
        raise InputError(f"{what} has dtype {images.dtype}; use uint8, uint16 or a float dtype with values in [0, 1]")
    return x, ImageFormat("tensor", "CHW", images.dtype, scale, images.device)


def float_to_batch(x: Tensor, fmt: ImageFormat) -> Tensor:
    """Back from float [0, 1] to the batch's dtype and range.

    Example:
        >>> x, fmt = batch_to_float(torch.full((1, 1, 2, 2), 128, dtype=torch.uint8))
        >>> float_to_batch(x, fmt).unique().tolist()
        [128]
    """
    if fmt.scale != 1.0:
        return (x * fmt.scale).round_().clamp_(0, fmt.scale).to(fmt.dtype)
    return x.to(fmt.dtype)


def check_batch_values(labels: Tensor, num_classes: int, check_values: bool = True) -> None:
    """Refuse labels of the wrong shape (always) or out of range (with ``check_values``, one sync).

    Example:
        >>> check_batch_values(torch.tensor([0, 3]), 3)
        Traceback (most recent call last):
        ...
        augvae.errors.InputError: labels must be class indices in [0, 3), got values from 0 to 3; pass classes=[...] matching the labels
    """
    if not isinstance(labels, Tensor):
        raise InputError(f"labels must be a tensor (B,) of class indices or (B, {num_classes}) of probabilities, got {type(labels).__name__}")
    if labels.ndim == 1:
        if labels.is_floating_point() or labels.dtype == torch.bool:
            raise InputError(f"labels of shape (B,) must be integer class indices, got dtype {labels.dtype}")
        if check_values and labels.numel():
            lo, hi = int(labels.min()), int(labels.max())
            if lo < 0 or hi >= num_classes:
                raise InputError(f"labels must be class indices in [0, {num_classes}), got values from {lo} to {hi}; "
                                 "pass classes=[...] matching the labels")
    elif labels.ndim == 2:
        if labels.shape[1] != num_classes:
            raise InputError(f"labels of shape (B, K) must have K = {num_classes} (the number of classes), got {labels.shape[1]}")
        if check_values and labels.numel():  # the rule parse_label applies to one sample's vector
            v = labels.float()
            if not bool(torch.isfinite(v).all()) or bool((v < 0).any()) or not bool((v.sum(1) > 0).all()):
                raise InputError("label vectors (B, K) must hold finite non-negative numbers with a positive sum in every row "
                                 "(probabilities or multi-hot); fix the labels before augmenting")
    else:
        raise InputError(f"labels must have shape (B,) or (B, {num_classes}), got {tuple(labels.shape)}")
