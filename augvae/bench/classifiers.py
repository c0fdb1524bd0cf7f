"""Classifiers the benchmark trains: a small CNN, and any timm model by name.

``small-cnn`` is a plain VGG-style network of the kind the paper's related work used for defect
images (its refs. [17, 18]): four blocks of conv 3x3 + batch norm + ReLU + 2x2 max pooling
(16, 32, 64, 128 channels), global average pooling, dropout and one linear layer; about 100k
weights. timm models are built with ``timm.create_model(name, num_classes=K, in_chans=C)``, from
scratch, or from a local ``.safetensors`` file through ``pretrained_cfg_overlay=dict(file=PATH)``
(there is no model hub offline; pickled weight files are refused).

Every classifier answers :func:`features` (the penultimate layer, used by the quality measures)
and returns logits from ``model(x)``.

Example:
    >>> import torch
    >>> model = create_classifier("small-cnn", num_classes=4, in_chans=1)
    >>> model(torch.rand(2, 1, 64, 64)).shape, features(model, torch.rand(2, 1, 64, 64)).shape
    (torch.Size([2, 4]), torch.Size([2, 128]))
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from augvae.errors import ConfigError

__all__ = ["CLASSIFIERS", "SmallCNN", "check_classifier", "create_classifier", "features", "predict", "use_channels_last"]


class SmallCNN(nn.Module):
    """Four conv-BN-ReLU-maxpool blocks, global average pooling, dropout, a linear head.

    Args:
        num_classes: Output classes.
        in_chans: Input channels.
        widths: Channels of the four blocks.
        dropout: Dropout before the head.
    """

    def __init__(self, num_classes: int, in_chans: int = 1, widths: tuple[int, ...] = (16, 32, 64, 128), dropout: float = 0.3) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c = in_chans
        for w in widths:
            layers += [nn.Conv2d(c, w, 3, padding=1, bias=False), nn.BatchNorm2d(w), nn.ReLU(inplace=True), nn.MaxPool2d(2)]
            c = w
        self.body = nn.Sequential(*layers)
        self.num_features = c
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(c, num_classes)

    def forward_features(self, x: Tensor) -> Tensor:
        """The pooled penultimate features, (B, num_features)."""
        return self.body(x).mean((2, 3))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.dropout(self.forward_features(x)))


#: Built-in classifiers by name; any other name is looked up in timm.
CLASSIFIERS: dict[str, Callable[..., nn.Module]] = {"small-cnn": SmallCNN}


def check_classifier(name: str) -> str:
    """Return ``name`` if it is a built-in classifier or a timm model, else raise :class:`ConfigError`.

    Example:
        >>> check_classifier("resnet18")
        'resnet18'
        >>> check_classifier("resnet-18")
        Traceback (most recent call last):
        ...
        augvae.errors.ConfigError: unknown classifier 'resnet-18'; use small-cnn or a timm model name such as resnet18, resnet18d (timm.list_models() lists them)
    """
    if name in CLASSIFIERS:
        return name
    import timm

    if timm.is_model(name):
        return name
    import difflib

    close = difflib.get_close_matches(name.lower(), [*CLASSIFIERS, *timm.list_models()], n=2, cutoff=0.6)
    examples = ", ".join(close) if close else "resnet18, efficientnet_b0"
    raise ConfigError(
        f"unknown classifier {name!r}; use small-cnn or a timm model name such as {examples} (timm.list_models() lists them)"
    )


def create_classifier(name: str, num_classes: int, in_chans: int = 1, weights: str | os.PathLike[str] | None = None) -> nn.Module:
    """Build a classifier by name, from scratch or from a local ``.safetensors`` weights file.

    Args:
        name: ``small-cnn`` or a timm model name.
        num_classes: Output classes.
        in_chans: Input channels (timm adapts pretrained first-layer weights to it).
        weights: A local ``.safetensors`` file: for timm models, pretrained weights loaded with
            ``pretrained_cfg_overlay=dict(file=...)`` (the head is re-initialised for
            ``num_classes``); for ``small-cnn``, a state dict of this exact architecture.

    Raises:
        ConfigError: Unknown name, or a weights file that is missing, not safetensors, or does
            not fit the model.
    """
    check_classifier(name)
    if num_classes < 2:
        raise ConfigError(f"a classifier needs at least 2 classes, got {num_classes}")
    path = os.fspath(weights) if weights else ""
    if path:
        if not path.endswith(".safetensors"):
            raise ConfigError(f"classifier weights must be a .safetensors file, got {path!r}; convert it with safetensors.torch.save_file")
        if not os.path.isfile(path):
            raise ConfigError(f"classifier weights file {path!r} does not exist; check the path")
    if name in CLASSIFIERS:
        model = CLASSIFIERS[name](num_classes=num_classes, in_chans=in_chans)
        if path:
            from safetensors.torch import load_file

            try:
                model.load_state_dict(load_file(path))
            except (RuntimeError, OSError, ValueError) as err:
                raise ConfigError(f"weights in {path!r} do not fit {name} with {num_classes} classes and {in_chans} channels ({err})") from None
        return model
    import timm

    if not path:
        return timm.create_model(name, pretrained=False, num_classes=num_classes, in_chans=in_chans)
    try:
        return timm.create_model(name, pretrained=True, num_classes=num_classes, in_chans=in_chans,
                                 pretrained_cfg_overlay={"file": path})
    except (RuntimeError, OSError, ValueError, KeyError) as err:
        raise ConfigError(f"cannot load timm {name} weights from {path!r} ({type(err).__name__}: {err}); is it a {name} checkpoint?") from None


def use_channels_last(model: nn.Module, memory_format: str, device: torch.device) -> bool:
    """Whether a classifier runs on channels-last activations: ``auto`` picks them for timm models on CPU.

    ``benchmarks/bench_profile.py`` once measured resnet18 1.6x faster per step this way on a loaded 2-core CPU and the
    small CNN 0.85x; whole benchmark cells of resnet18 were not faster (see ``benchmarks/README.md``), so the
    benchmark's default stays ``contiguous``.
    """
    if memory_format == "auto":
        return not isinstance(model, SmallCNN) and device.type == "cpu"
    return memory_format == "channels-last"


def features(model: nn.Module, x: Tensor) -> Tensor:
    """Penultimate-layer features of ``x`` (B, F): pooled, before the classifier head."""
    if isinstance(model, SmallCNN):
        return model.forward_features(x)
    if hasattr(model, "forward_head"):  # timm
        timm_model: Any = model
        return timm_model.forward_head(timm_model.forward_features(x), pre_logits=True)
    raise ConfigError(f"cannot take features of a {type(model).__name__}; use small-cnn or a timm model")


@torch.no_grad()
def predict(model: nn.Module, images: Tensor, batch_size: int = 256, with_features: bool = False) -> tuple[Tensor, Tensor | None]:
    """Logits (and optionally features) of many images, in eval mode, on the model's device."""
    model.eval()
    p = next(model.parameters())
    device = p.device
    layout = torch.channels_last if p.ndim == 4 and p.is_contiguous(memory_format=torch.channels_last) and not p.is_contiguous() \
        else torch.contiguous_format
    logits, feats = [], []
    for s in range(0, images.shape[0], batch_size):
        x = images[s : s + batch_size].to(device).contiguous(memory_format=layout)
        if with_features and isinstance(model, SmallCNN):
            f = model.forward_features(x)
            logits.append(model.head(f).cpu())
            feats.append(f.cpu())
        elif with_features:  # timm: one trunk pass, two heads
            timm_model: Any = model
            trunk = timm_model.forward_features(x)
            logits.append(timm_model.forward_head(trunk).cpu())
            feats.append(timm_model.forward_head(trunk, pre_logits=True).cpu())
        else:
            logits.append(model(x).cpu())
    return torch.cat(logits), (torch.cat(feats) if with_features else None)
