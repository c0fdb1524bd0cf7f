"""Tensor image operations used across augvae: the one resizer, Gaussian blur and dilation.

Thin wrappers over torchvision's functional ops (``v2.functional.resize`` and ``gaussian_blur``) and
``max_pool2d``, on ``(B, C, H, W)`` float tensors on any device, with no host synchronisation.

Example:
    >>> import torch
    >>> x = torch.rand(2, 1, 40, 30)
    >>> resize(x, 20, 15).shape, blur(x, 1.0).shape, dilate(x, 1).shape
    (torch.Size([2, 1, 20, 15]), torch.Size([2, 1, 40, 30]), torch.Size([2, 1, 40, 30]))
"""

from __future__ import annotations

import math

import torch.nn.functional as F
from torch import Tensor
from torchvision.transforms.v2 import functional as TF

__all__ = ["resize", "blur", "dilate"]


def resize(x: Tensor, height: int, width: int) -> Tensor:
    """Bilinear resize of ``(..., H, W)`` to ``(height, width)``, antialiased when shrinking; unchanged if equal."""
    if tuple(x.shape[-2:]) == (height, width):
        return x
    return TF.resize(x, [height, width], antialias=height < x.shape[-2] or width < x.shape[-1])


def blur(x: Tensor, sigma: float) -> Tensor:
    """Gaussian blur with standard deviation ``sigma`` pixels (reflected borders); ``sigma <= 0`` returns ``x``."""
    if sigma <= 0:
        return x
    side = min(2 * math.ceil(3 * sigma) + 1, 2 * (min(x.shape[-2:]) // 2) - 1)  # the kernel must fit the image
    if side < 3:
        return x
    return TF.gaussian_blur(x, [side, side], [float(sigma), float(sigma)])


def dilate(x: Tensor, px: int) -> Tensor:
    """Grey-value dilation by a ``(2 px + 1)`` square (a maximum filter); ``px <= 0`` returns ``x``."""
    if px <= 0:
        return x
    return F.max_pool2d(x, 2 * px + 1, stride=1, padding=px)
