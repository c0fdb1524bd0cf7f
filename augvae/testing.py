"""Tiny model folders for examples, doctests and tests: made in milliseconds, without training.

Example:
    >>> folder = example_model_folder()
    >>> sorted(p.name for p in folder.iterdir())
    ['config.json', 'latents.safetensors', 'model.safetensors']
    >>> sorted(p.name for p in example_model_folder(defects=True).iterdir())
    ['config.json', 'defects.safetensors', 'latents.safetensors', 'model.safetensors']
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from augvae._imageops import blur
from augvae.checkpoint import WEIGHTS_FILE, save_model
from augvae.config import ModelConfig
from augvae.data.synthetic import DEFECT_KINDS, make_image
from augvae.model import ConvVAE

__all__ = ["example_model_folder"]

_EXAMPLES: dict[tuple[Any, ...], Path] = {}


def _synthetic_defects(names: list[str], labels: torch.Tensor, image_size: int, channels: int, seed: int) -> dict[str, torch.Tensor]:
    """Real (procedural) defects with their true masks: image, the same surface without it, residual, mask."""

    images, clean, masks = [], [], []
    for i, c in enumerate(labels.tolist()):
        kind = names[c] if names[c] in DEFECT_KINDS else DEFECT_KINDS[c % len(DEFECT_KINDS)]
        sample = make_image(kind, size=image_size, seed=seed * 1000 + i)
        images.append(sample.image)
        clean.append(make_image("clean", size=image_size, seed=seed * 1000 + i).image)
        masks.append(sample.mask.astype(np.float32))
    x = torch.from_numpy(np.stack(images))[:, None].expand(-1, channels, -1, -1).contiguous()
    p = torch.from_numpy(np.stack(clean))[:, None].expand(-1, channels, -1, -1).contiguous()
    m = blur(torch.from_numpy(np.stack(masks))[:, None], 0.8).clamp(0, 1)
    return {"image": x, "projection": p, "residual": x - p, "mask": m}


def example_model_folder(path: str | os.PathLike[str] | None = None, classes: Sequence[str] = ("crack", "pore", "clean"),
                         per_class: int = 2, image_size: int = 28, latent_dim: int = 4, channels: int = 1,
                         seed: int = 0, background: int | None = None, defects: bool = False) -> Path:
    """Write (once) an *untrained* model folder with spread-out source latents, for examples and tests.

    Its decoded overlays are smooth random patterns, not defects: it exists so that examples run in
    milliseconds without training. The decoder's first layer is scaled up so that different sources
    decode visibly differently. With ``defects=True`` the folder also stores real defects for the
    ``transplant`` formulation, as a model trained with a defect-free class would: procedural cracks
    and pores (:mod:`augvae.data.synthetic`) with their true masks, on the last class as the
    defect-free class.

    Args:
        path: The folder; default a temporary folder (one per process and set of arguments, removed at exit).
        classes: Class names; ``per_class`` sources each.
        background: Index of a source to store as the model's background (reference) source.
        defects: Store defects of every source not of the last class, which becomes ``background_class``.
    """
    names = list(classes)
    tag = (tuple(names), per_class, image_size, latent_dim, channels, seed, background, defects)
    if path is None:
        if tag not in _EXAMPLES:
            tmp_root = Path(tempfile.mkdtemp(prefix="augvae-example-"))
            atexit.register(shutil.rmtree, tmp_root, True)
            _EXAMPLES[tag] = example_model_folder(tmp_root / "model", names, per_class, image_size, latent_dim, channels, seed,
                                                  background, defects)
        return _EXAMPLES[tag]
    root = Path(path)
    if (root / WEIGHTS_FILE).exists():
        return root
    gen = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = ConvVAE(ModelConfig(image_size=image_size, latent_dim=latent_dim, channels=channels))
    with torch.no_grad():
        model.fc_dec.weight.mul_(8.0)
    n = per_class * len(names)
    labels = torch.arange(len(names)).repeat_interleave(per_class)
    latents = {"mu": torch.randn(n, latent_dim, generator=gen) * 1.5, "logvar": torch.full((n, latent_dim), -2.0),
               "labels": labels}
    data: dict[str, Any] = {"classes": names, "names": [f"{names[int(c)]}_{i}" for i, c in enumerate(labels)],
                            "labels": labels.tolist(), "recipe": "small-set", "background": background}
    stored = None
    if defects:
        rows = [i for i, c in enumerate(labels.tolist()) if c != len(names) - 1]
        stored = _synthetic_defects(names, labels[rows], image_size, channels, seed)
        data.update(background_class=names[-1], defect_sources=rows)
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".augvae-example-", dir=root.parent))
    save_model(tmp, model, data=data, latents=latents, defects=stored)
    try:
        tmp.rename(root)  # whole or not at all; a concurrent writer may have won the race
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
    return root
