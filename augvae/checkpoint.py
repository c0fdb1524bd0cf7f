"""The model folder: ``config.json`` + ``model.safetensors`` (+ latents, history, resumable state).

A model folder holds:

- ``config.json``: the format tag, the augvae version, the model config, the training config and a
  description of the training data (class names, source names);
- ``model.safetensors``: the weights;
- ``latents.safetensors`` (optional): latent means and log-variances of the training images with
  their labels, so transforms can draw overlay sources without the images;
- ``checkpoint.safetensors`` (during and after training): weights, optimizer state and progress in
  one file, for resuming;
- ``history.csv`` and ``loss.png``.

Loading reads JSON and safetensors only: nothing is ever unpickled.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from augvae._io import save_tensors, write_json
from augvae._version import __version__
from augvae.config import ModelConfig, TrainConfig, config_from_dict, config_to_dict
from augvae.errors import AugvaeError, ModelFolderError

__all__ = ["LoadedModel", "save_model", "load_model", "load_latents", "FORMAT", "CONFIG_FILE", "WEIGHTS_FILE"]

log = logging.getLogger("augvae")

FORMAT = "augvae-model"
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
LATENTS_FILE = "latents.safetensors"
CHECKPOINT_FILE = "checkpoint.safetensors"
KNOWN_FILES = {
    CONFIG_FILE, WEIGHTS_FILE, LATENTS_FILE, CHECKPOINT_FILE, "history.csv", "loss.png", ".augvae.lock",
}
CONFIG_KEYS = ("format", "augvae_version", "model", "training", "data")


@dataclass
class LoadedModel:
    """Everything in a model folder."""

    model: Any  # ConvVAE (typed loosely to avoid an import cycle)
    path: Path
    train_config: TrainConfig | None = None
    data: dict[str, Any] = field(default_factory=dict)


def _version_tuple(v: str) -> tuple[int, ...]:
    try:
        return tuple(int(p) for p in v.split(".")[:3])
    except ValueError as err:
        raise ModelFolderError(f"augvae_version {v!r} in config.json is not a version number like 0.1.0") from err


def save_model(
    path: str | os.PathLike[str],
    model: Any,
    *,
    train_config: TrainConfig | None = None,
    data: dict[str, Any] | None = None,
    latents: dict[str, Tensor] | None = None,
) -> Path:
    """Write a model folder. Each file is written atomically.

    Args:
        path: The folder (created if needed).
        model: A :class:`augvae.ConvVAE`.
        train_config: How it was trained, stored for the record and for resuming.
        data: JSON-ready description of the training data (``classes``, ``names``, ``labels``...).
        latents: ``{"mu": (N, D), "logvar": (N, D), "labels": (N,)}`` of the training images.
    """
    root = Path(path)
    root.mkdir(parents=True, exist_ok=True)
    write_config(root, model.config, train_config, data)
    save_tensors(root / WEIGHTS_FILE, model.state_dict(), {"format": FORMAT, "augvae_version": __version__})
    if latents is not None:
        save_tensors(root / LATENTS_FILE, latents)
    return root


def write_config(root: Path, model_config: ModelConfig, train_config: TrainConfig | None, data: dict[str, Any] | None) -> None:
    """Write ``config.json`` (atomically)."""
    write_json(
        root / CONFIG_FILE,
        {
            "format": FORMAT,
            "augvae_version": __version__,
            "model": config_to_dict(model_config),
            "training": config_to_dict(train_config) if train_config is not None else None,
            "data": data or {},
        },
    )


def read_config(path: str | os.PathLike[str]) -> tuple[ModelConfig, TrainConfig | None, dict[str, Any]]:
    """Read and validate a model folder's ``config.json``."""
    root = Path(path)
    if not root.exists():
        raise ModelFolderError(f"model folder {root} does not exist; train one with `augvae train DATA_DIR --out {root}`")
    if not root.is_dir():
        raise ModelFolderError(f"{root} is a file, not a model folder; pass the folder that holds config.json and model.safetensors")
    cfg_path = root / CONFIG_FILE
    if not cfg_path.is_file():
        raise ModelFolderError(f"{cfg_path} is missing; {root} is not a complete augvae model folder (expected {CONFIG_FILE} and {WEIGHTS_FILE})")
    try:
        raw = json.loads(cfg_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ModelFolderError(f"{cfg_path} is not valid JSON ({err}); restore it or retrain the model") from err
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise ModelFolderError(f"{cfg_path} is not an augvae model config (expected \"format\": \"{FORMAT}\")")
    unknown = [k for k in raw if k not in CONFIG_KEYS]
    if unknown:
        raise ModelFolderError(f"{cfg_path} has unknown key(s) {', '.join(map(repr, unknown))}; valid keys: {', '.join(CONFIG_KEYS)}")
    version = str(raw.get("augvae_version", "0"))
    if _version_tuple(version) > _version_tuple(__version__):
        raise ModelFolderError(
            f"{root} was written by augvae {version}, newer than this augvae {__version__}; upgrade augvae (pip install -U augvae)"
        )
    try:
        model_config = config_from_dict(ModelConfig, raw.get("model") or {}, where=f"{cfg_path} 'model'")
        train_raw = raw.get("training")
        train_config = config_from_dict(TrainConfig, train_raw, where=f"{cfg_path} 'training'") if train_raw else None
    except AugvaeError as err:
        raise ModelFolderError(str(err)) from err
    except TypeError as err:
        raise ModelFolderError(f"{cfg_path} has a malformed config: {err}") from err
    data = raw.get("data") or {}
    if not isinstance(data, dict):
        raise ModelFolderError(f"{cfg_path} 'data' must be a JSON object")
    return model_config, train_config, data


def read_tensors(path: Path, what: str) -> dict[str, Tensor]:
    """Load a safetensors file, turning any parse failure into :class:`ModelFolderError`."""
    from safetensors.torch import load_file

    if not path.is_file():
        raise ModelFolderError(f"{path} is missing; {what}")
    try:
        return load_file(str(path))
    except Exception as err:  # safetensors raises its own error types and OSError
        raise ModelFolderError(
            f"{path} is not a valid safetensors file ({type(err).__name__}: {err}); it is corrupted or not an augvae file: "
            "retrain or restore it (augvae never unpickles weights)"
        ) from err


def load_model(path: str | os.PathLike[str], device: str | torch.device = "cpu") -> LoadedModel:
    """Load a model folder: validate ``config.json``, build the model, load the safetensors weights.

    Example:
        >>> import tempfile
        >>> from augvae import ConvVAE
        >>> d = tempfile.mkdtemp()
        >>> save_model(d, ConvVAE(latent_dim=2))  # doctest: +ELLIPSIS
        PosixPath(...)
        >>> load_model(d).model.config.latent_dim
        2
    """
    from augvae.model import ConvVAE

    root = Path(path)
    model_config, train_config, data = read_config(root)
    extra = sorted(p.name for p in root.iterdir() if p.is_file() and p.name not in KNOWN_FILES and not p.name.startswith("."))
    if extra:
        log.warning("ignoring unexpected file(s) in model folder %s: %s (augvae reads only %s)", root, ", ".join(extra), ", ".join(sorted(KNOWN_FILES)))
    state = read_tensors(root / WEIGHTS_FILE, "no weights were saved yet (training stopped before its first checkpoint?) or the file was deleted")
    model = ConvVAE(model_config)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(k for k in set(expected) & set(state) if tuple(expected[k].shape) != tuple(state[k].shape))
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"missing {', '.join(missing[:5])}")
        if unexpected:
            parts.append(f"unexpected {', '.join(unexpected[:5])}")
        if wrong:
            parts.append("shape mismatch " + ", ".join(f"{k} {tuple(state[k].shape)} vs {tuple(expected[k].shape)}" for k in wrong[:5]))
        raise ModelFolderError(
            f"weights in {root / WEIGHTS_FILE} do not match the architecture in {CONFIG_FILE} ({'; '.join(parts)}); "
            "the two files come from different models: restore the matching pair or retrain"
        )
    model.load_state_dict(state)
    model.to(device).eval()
    return LoadedModel(model=model, path=root, train_config=train_config, data=data)


def load_latents(path: str | os.PathLike[str]) -> dict[str, Tensor] | None:
    """The stored latents of a model folder's training images, or None if it has none."""
    p = Path(path) / LATENTS_FILE
    if not p.exists():
        return None
    return read_tensors(p, "")
