"""Banks of generated samples for :class:`augvae.data.MixedDataset`: tensors given by the user, or a ``generate`` folder."""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from augvae.data.images import read_image
from augvae.errors import ConfigError, DataError
from augvae.overlay.policy import OverlayOptions, mix_class_lists
from augvae.overlay.sources import VAESources

__all__ = ["load_bank", "read_bank_folder"]


def load_bank(bank: Any, src: VAESources, opts: OverlayOptions) -> tuple[Tensor, Tensor]:
    """``(images (M, C, H, W) float in [0, 1], labels (M,) or (M, K))`` from ``bank``: a generate folder, tensors or a dict.

    Raises:
        DataError: The tensors or the folder cannot be used (shapes, values, classes, a missing manifest).
        ConfigError: ``bank`` is of another type.
    """
    if isinstance(bank, (str, os.PathLike)):
        return read_bank_folder(Path(bank), src, opts)
    if isinstance(bank, dict):
        bank = (bank.get("images"), bank.get("labels"))
    if isinstance(bank, (tuple, list)) and len(bank) == 2 and all(isinstance(t, Tensor) for t in bank):
        images, labels = bank
        if images.ndim != 4 or images.shape[0] == 0 or images.shape[1] not in (1, 3) or not images.is_floating_point():
            raise DataError(f"bank images must be a non-empty float tensor (M, C, H, W) in [0, 1], got "
                            f"{tuple(images.shape)} {images.dtype}")
        if not bool(torch.isfinite(images).all()) or float(images.min()) < 0 or float(images.max()) > 1:
            raise DataError("bank images must be finite and in [0, 1]")
        if labels.shape[0] != images.shape[0] or labels.ndim not in (1, 2):
            raise DataError(f"bank labels must be (M,) or (M, K) with M = {images.shape[0]}, got {tuple(labels.shape)}")
        if labels.ndim == 1 and (int(labels.min()) < 0 or int(labels.max()) >= src.num_classes):
            raise DataError(f"bank labels must be class indices in [0, {src.num_classes}) (classes: "
                            f"{', '.join(src.classes)})")
        if opts.soft_labels and labels.ndim == 1:
            labels = torch.nn.functional.one_hot(labels.long(), src.num_classes).float()
        return images.float().cpu(), labels.cpu()
    raise ConfigError("bank must be None, the path of an `augvae generate --mode overlay` folder, or (images, labels) tensors; "
                      f"got {type(bank).__name__}")


def read_bank_folder(folder: Path, src: VAESources, opts: OverlayOptions) -> tuple[Tensor, Tensor]:
    """The images and labels of an ``augvae generate --mode overlay`` folder, labelled by its manifest."""
    manifest = folder / "manifest.csv"
    if not manifest.is_file():
        raise DataError(f"{folder} is not an `augvae generate` output folder (no manifest.csv); write one with "
                        f"`augvae generate MODEL_DIR --out {folder} --mode overlay`")
    with manifest.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if not rows or "classes" not in rows[0] or "file" not in rows[0]:
        raise DataError(f"{manifest} has no 'classes' and 'file' columns: it was not generated in overlay mode; "
                        "regenerate with --mode overlay")
    images, class_lists = [], []
    for row in rows:
        names = [c for c in row["classes"].split("+") if c]
        unknown = [c for c in names if c not in src.classes]
        if unknown or not names:
            raise DataError(f"{manifest}: row {row.get('index')} has classes {row['classes']!r}, not among {src.classes}; "
                            "pass classes=[...] that include them")
        images.append(torch.from_numpy(read_image(folder / row["file"], channels=src.channels)).permute(2, 0, 1))
        class_lists.append([src.classes.index(c) for c in names])
    return torch.stack(images).float(), mix_class_lists(class_lists, src.num_classes, src.background, opts)
