"""The model folder: ``config.json`` + ``model.safetensors`` (+ latents, defects, history, resumable state).

A model folder holds:

- ``config.json``: the format tag, the augvae version, the model config, the training config and a
  description of the training data (class names, source names and labels, the defect-free class);
- ``model.safetensors``: the weights;
- ``latents.safetensors``: latent means and log-variances of the overlay sources (the images the
  folder was trained on and, with a defect-free class, its defect images) with their labels;
- ``defects.safetensors`` (``small-set`` models): for each defect source its image, its projection
  (onto the defect-free surfaces, or without a defect-free class the VAE's own reconstruction), the
  residual and a soft mask (see
  :mod:`augvae.overlay.extract`);
- ``checkpoint.safetensors`` (during and after training): weights, optimizer state and progress in
  one file, for resuming;
- ``history.csv`` and ``loss.png``.

Loading reads JSON and safetensors only: nothing is ever unpickled. Every field of ``config.json``
is validated, the ``data`` section as strictly as the model and training sections. This module
does not know the model class: :func:`read_model_folder` takes it as an argument
(:meth:`augvae.ConvVAE.from_pretrained` passes itself).
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
from augvae.config import RECIPES, ExtractConfig, ModelConfig, TrainConfig, config_from_dict, config_to_dict
from augvae.errors import AugvaeError, ModelFolderError

__all__ = [
    "LoadedModel",
    "save_model",
    "read_model_folder",
    "read_config",
    "write_config",
    "read_tensors",
    "load_latents",
    "load_defects",
    "check_data",
    "FORMAT",
    "CONFIG_FILE",
    "WEIGHTS_FILE",
    "LATENTS_FILE",
    "DEFECTS_FILE",
    "CHECKPOINT_FILE",
]

log = logging.getLogger("augvae")

FORMAT = "augvae-model"
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
LATENTS_FILE = "latents.safetensors"
DEFECTS_FILE = "defects.safetensors"
CHECKPOINT_FILE = "checkpoint.safetensors"
KNOWN_FILES = {
    CONFIG_FILE, WEIGHTS_FILE, LATENTS_FILE, DEFECTS_FILE, CHECKPOINT_FILE, "history.csv", "loss.png", "README.md",
    ".augvae.lock",
}
CONFIG_KEYS = ("format", "augvae_version", "model", "training", "data", "extract")
#: Keys of the ``data`` section, each validated by :func:`check_data`.
DATA_KEYS = ("classes", "names", "labels", "recipe", "background", "background_class", "defect_sources")


@dataclass
class LoadedModel:
    """Everything in a model folder but the tensors of the sources."""

    model: Any  #: the model class given to :func:`read_model_folder`, e.g. a ConvVAE, in eval mode
    path: Path
    train_config: TrainConfig | None = None
    data: dict[str, Any] = field(default_factory=dict)  #: the validated ``data`` section (see :func:`check_data`)


def _version_tuple(v: str) -> tuple[int, ...]:
    try:
        return tuple(int(p) for p in v.split(".")[:3])
    except ValueError as err:
        raise ModelFolderError(f"augvae_version {v!r} in config.json is not a version number like 0.1.0") from err


def _strings(value: Any, key: str, where: str, distinct: bool = False) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ModelFolderError(f"{where} 'data.{key}' must be a list of strings, got {value!r:.80}; restore config.json or retrain")
    if distinct and len(set(value)) != len(value):
        raise ModelFolderError(f"{where} 'data.{key}' has duplicate names: {value!r:.80}; restore config.json or retrain")
    return list(value)


def check_data(data: Any, where: str = "config.json") -> dict[str, Any]:
    """Validate the ``data`` section of a model folder's config; return it with every key present.

    Keys (all optional; absent ones get their empty value): ``classes`` (distinct class names),
    ``names`` (one per source), ``labels`` (one class index per source), ``recipe``,
    ``background`` (index of the reference source or null), ``background_class`` (a class name or
    null), ``defect_sources`` (indices of the sources that have an entry in ``defects.safetensors``).

    Raises:
        ModelFolderError: A key is unknown, of the wrong type, or out of range.

    Example:
        >>> check_data({"classes": ["crack", "ok"], "labels": [0, 1], "names": ["a", "b"]})["background_class"] is None
        True
        >>> check_data({"classes": "abc"})
        Traceback (most recent call last):
        ...
        augvae.errors.ModelFolderError: config.json 'data.classes' must be a list of strings, got 'abc'; restore config.json or retrain
    """
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ModelFolderError(f"{where} 'data' must be a JSON object, got {type(data).__name__}; restore config.json or retrain")
    unknown = [k for k in data if k not in DATA_KEYS]
    if unknown:
        raise ModelFolderError(f"{where} 'data' has unknown key(s) {', '.join(map(repr, unknown))}; valid keys: {', '.join(DATA_KEYS)}")
    out: dict[str, Any] = {}
    out["classes"] = _strings(data.get("classes", []), "classes", where, distinct=True)
    out["names"] = _strings(data.get("names", []), "names", where)
    labels = data.get("labels", [])
    if not isinstance(labels, list) or not all(isinstance(v, int) and not isinstance(v, bool) for v in labels):
        raise ModelFolderError(f"{where} 'data.labels' must be a list of class indices (integers), got {labels!r:.80}")
    if out["classes"] and any(not 0 <= v < len(out["classes"]) for v in labels):
        raise ModelFolderError(f"{where} 'data.labels' has values outside [0, {len(out['classes'])}) (the classes "
                               f"{out['classes']}); restore config.json or retrain")
    if out["names"] and labels and len(out["names"]) != len(labels):
        raise ModelFolderError(f"{where} 'data' has {len(out['names'])} names but {len(labels)} labels; one of each per source")
    out["labels"] = list(labels)
    recipe = data.get("recipe")
    if recipe is not None and recipe not in RECIPES:
        raise ModelFolderError(f"{where} 'data.recipe' must be one of {', '.join(RECIPES)} or null, got {recipe!r}")
    out["recipe"] = recipe
    n = len(labels) or len(out["names"])
    bg = data.get("background")
    if bg is not None and (not isinstance(bg, int) or isinstance(bg, bool) or not 0 <= bg < max(n, 1) or (n == 0)):
        raise ModelFolderError(f"{where} 'data.background' must be the index of one of the {n} sources or null, got {bg!r}")
    out["background"] = bg
    bgc = data.get("background_class")
    if bgc is not None and (not isinstance(bgc, str) or bgc not in out["classes"]):
        raise ModelFolderError(f"{where} 'data.background_class' must be one of the classes {out['classes']} or null, got {bgc!r}")
    out["background_class"] = bgc
    ds = data.get("defect_sources", [])
    if not isinstance(ds, list) or not all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v < max(n, 1) for v in ds):
        raise ModelFolderError(f"{where} 'data.defect_sources' must be a list of source indices in [0, {n}), got {ds!r:.80}")
    out["defect_sources"] = list(ds)
    return out


def save_model(
    path: str | os.PathLike[str],
    model: Any,
    *,
    train_config: TrainConfig | None = None,
    data: dict[str, Any] | None = None,
    latents: dict[str, Tensor] | None = None,
    defects: dict[str, Tensor] | None = None,
) -> Path:
    """Write a model folder. Each file is written atomically.

    Args:
        path: The folder (created if needed).
        model: A :class:`augvae.ConvVAE`.
        train_config: How it was trained, stored for the record and for resuming.
        data: The ``data`` section (see :func:`check_data`).
        latents: ``{"mu": (N, D), "logvar": (N, D), "labels": (N,)}`` of the sources.
        defects: ``{"image", "projection", "residual", "mask"}`` of the defect sources (see
            :mod:`augvae.overlay.extract`).
    """
    root = Path(path)
    root.mkdir(parents=True, exist_ok=True)
    write_config(root, model.config, train_config, data)
    save_tensors(root / WEIGHTS_FILE, model.state_dict(), {"format": FORMAT, "augvae_version": __version__})
    if latents is not None:
        save_tensors(root / LATENTS_FILE, latents)
    if defects is not None:
        save_tensors(root / DEFECTS_FILE, defects)
    return root


def write_config(root: Path, model_config: ModelConfig, train_config: TrainConfig | None, data: dict[str, Any] | None,
                 extract: ExtractConfig | None = None) -> None:
    """Write ``config.json`` (atomically), its ``data`` section validated first; ``extract``: how the stored defects were extracted."""
    write_json(
        root / CONFIG_FILE,
        {
            "format": FORMAT,
            "augvae_version": __version__,
            "model": config_to_dict(model_config),
            "training": config_to_dict(train_config) if train_config is not None else None,
            **({"extract": config_to_dict(extract)} if extract is not None else {}),
            "data": check_data(data or {}, str(root / CONFIG_FILE)),
        },
    )


def read_config(path: str | os.PathLike[str]) -> tuple[ModelConfig, TrainConfig | None, dict[str, Any]]:
    """Read and validate a model folder's ``config.json``: ``(model config, training config, data)``."""
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
    except OSError as err:
        raise ModelFolderError(f"{cfg_path} cannot be read ({err.strerror or err}); check its permissions") from err
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
        if raw.get("extract") is not None:  # a record of how defects.safetensors was made; validated like the rest
            config_from_dict(ExtractConfig, raw["extract"], where=f"{cfg_path} 'extract'")
    except AugvaeError as err:
        raise ModelFolderError(str(err)) from err
    except TypeError as err:
        raise ModelFolderError(f"{cfg_path} has a malformed config: {err}") from err
    return model_config, train_config, check_data(raw.get("data"), str(cfg_path))


def read_tensors(path: Path, what: str) -> dict[str, Tensor]:
    """Load a safetensors file, turning any parse failure into :class:`ModelFolderError`."""
    from safetensors.torch import load_file

    if not path.is_file():
        raise ModelFolderError(f"{path} is missing; {what}")
    try:
        tensors = load_file(str(path))
    except Exception as err:  # safetensors raises its own error types and OSError
        raise ModelFolderError(
            f"{path} is not a valid safetensors file ({type(err).__name__}: {err}); it is corrupted or not an augvae file: "
            "retrain or restore it (augvae never unpickles weights)"
        ) from err
    # augvae never saves a NaN (training stops when its loss diverges): one here means a damaged file, and a NaN weight
    # would decode black images without any error.
    bad = sorted(k for k, t in tensors.items() if t.is_floating_point() and not bool(torch.isfinite(t).all()))
    if bad:
        raise ModelFolderError(f"{path} holds NaN or infinite values (in {', '.join(bad[:3])}); the file is damaged: retrain or "
                               "restore it")
    return tensors


def _check_state(root: Path, state: dict[str, Tensor], expected: dict[str, Tensor], what: str) -> None:
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
        raise ModelFolderError(f"{what} in {root} do not match the architecture in {CONFIG_FILE} ({'; '.join(parts)}); "
                               "the files come from different models: restore the matching pair or retrain")


def read_model_folder(path: str | os.PathLike[str], model_cls: type, device: str | torch.device = "cpu") -> LoadedModel:
    """Load a model folder: validate ``config.json``, build ``model_cls(config)``, load the safetensors weights.

    Args:
        path: The model folder.
        model_cls: The model class (:class:`augvae.ConvVAE`); called with the folder's :class:`ModelConfig`.
        device: Where to put the model.

    Example:
        >>> import tempfile
        >>> from augvae import ConvVAE
        >>> d = tempfile.mkdtemp()
        >>> save_model(d, ConvVAE(latent_dim=2))  # doctest: +ELLIPSIS
        PosixPath(...)
        >>> read_model_folder(d, ConvVAE).model.config.latent_dim
        2
    """
    root = Path(path)
    model_config, train_config, data = read_config(root)
    extra = sorted(p.name for p in root.iterdir() if p.is_file() and p.name not in KNOWN_FILES and not p.name.startswith("."))
    if extra:
        log.warning("ignoring unexpected file(s) in model folder %s: %s (augvae reads only %s)", root, ", ".join(extra), ", ".join(sorted(KNOWN_FILES)))
    state = read_tensors(root / WEIGHTS_FILE, "no weights were saved yet (training stopped before its first checkpoint?) or the file was deleted")
    model = model_cls(model_config)
    _check_state(root / WEIGHTS_FILE, state, model.state_dict(), "weights")
    model.load_state_dict(state)
    model.to(device).eval()
    return LoadedModel(model=model, path=root, train_config=train_config, data=data)


def load_latents(path: str | os.PathLike[str], data: dict[str, Any] | None = None,
                 latent_dim: int | None = None) -> dict[str, Tensor] | None:
    """The stored latents of a model folder's sources, or None if it has none; checked against ``data``.

    Args:
        path: The model folder.
        data: Its ``config.json`` ``data`` section: the latents must match its names and classes.
        latent_dim: The model's latent size: the latents must have it (a file from another model otherwise
            fails later, deep inside the decoder).

    Raises:
        ModelFolderError: The file is corrupted, its tensors have the wrong shapes, or they do not
            match the names and classes of ``config.json`` or the model's latent size.
    """
    p = Path(path) / LATENTS_FILE
    if not p.exists():
        return None
    lat = read_tensors(p, "")
    fix = f"{p} does not match {CONFIG_FILE}; retrain the model (or restore the matching files)"
    if set(lat) != {"mu", "logvar", "labels"}:
        raise ModelFolderError(f"{p} must hold mu, logvar and labels, got {', '.join(sorted(lat))}; {fix}")
    mu, logvar, labels = lat["mu"], lat["logvar"], lat["labels"]
    if mu.ndim != 2 or logvar.shape != mu.shape or labels.shape != (mu.shape[0],) or labels.is_floating_point():
        raise ModelFolderError(f"{p} has tensors of shapes mu {tuple(mu.shape)}, logvar {tuple(logvar.shape)}, labels "
                               f"{tuple(labels.shape)}; expected (N, D), (N, D), (N,) integers; {fix}")
    if not (bool(torch.isfinite(mu).all()) and bool(torch.isfinite(logvar).all())):
        raise ModelFolderError(f"{p} holds NaN or infinite latents; {fix}")
    if latent_dim is not None and mu.shape[1] != latent_dim:
        raise ModelFolderError(f"{p} holds {mu.shape[1]}-dimensional latents but the model's latent_dim is {latent_dim}; {fix}")
    if data is not None:
        n = mu.shape[0]
        if data["names"] and len(data["names"]) != n:
            raise ModelFolderError(f"{CONFIG_FILE} names {len(data['names'])} sources but {p} holds {n}; {fix}")
        if data["classes"] and n and (int(labels.min()) < 0 or int(labels.max()) >= len(data["classes"])):
            raise ModelFolderError(f"{p} has labels outside the {len(data['classes'])} classes of {CONFIG_FILE}; {fix}")
        if data["background"] is not None and data["background"] >= n:
            raise ModelFolderError(f"{CONFIG_FILE} 'data.background' is {data['background']} but there are {n} sources; {fix}")
        if any(i >= n for i in data["defect_sources"]):
            raise ModelFolderError(f"{CONFIG_FILE} 'data.defect_sources' names sources beyond the {n} stored; {fix}")
    return {"mu": mu, "logvar": logvar, "labels": labels.long()}


def load_defects(path: str | os.PathLike[str], data: dict[str, Any], channels: int,
                 image_size: int | None = None) -> dict[str, Tensor] | None:
    """The stored defect sources of a model folder (image, projection, residual, mask), or None.

    Args:
        path: The model folder.
        data: Its ``config.json`` ``data`` section.
        channels: The model's image channels.
        image_size: The model's image side: the stored defects were extracted at it (defects of another
            size would be transplanted at a wrong scale onto every surface).

    Raises:
        ModelFolderError: The file is corrupted or does not match ``data['defect_sources']`` or the model.
    """
    p = Path(path) / DEFECTS_FILE
    if not p.exists():
        if data["defect_sources"]:
            raise ModelFolderError(f"{CONFIG_FILE} names {len(data['defect_sources'])} defect sources but {p} is missing; retrain")
        return None
    d = read_tensors(p, "")
    need = {"image", "projection", "residual", "mask"}
    m = len(data["defect_sources"])
    fix = f"{p} does not match {CONFIG_FILE}; retrain the model"
    if set(d) != need:
        raise ModelFolderError(f"{p} must hold {', '.join(sorted(need))}, got {', '.join(sorted(d))}; {fix}")
    shape = tuple(d["image"].shape)
    side = "S" if image_size is None else str(image_size)
    if len(shape) != 4 or shape[0] != m or shape[1] != channels or shape[2] != shape[3] or (
            image_size is not None and shape[2] != image_size):
        raise ModelFolderError(f"{p} holds images of shape {shape}, expected ({m}, {channels}, {side}, {side}); {fix}")
    for key in ("projection", "residual"):
        if tuple(d[key].shape) != shape:
            raise ModelFolderError(f"{p} '{key}' has shape {tuple(d[key].shape)}, expected {shape}; {fix}")
    if tuple(d["mask"].shape) != (m, 1, shape[2], shape[3]):
        raise ModelFolderError(f"{p} 'mask' has shape {tuple(d['mask'].shape)}, expected {(m, 1, shape[2], shape[3])}; {fix}")
    for key in ("image", "mask"):  # (a projection matched by a brightness offset may leave [0, 1]; its residual too)
        if d[key].numel() and not (-1e-4 <= float(d[key].min()) and float(d[key].max()) <= 1 + 1e-4):
            raise ModelFolderError(f"{p} '{key}' has values from {float(d[key].min()):.3g} to {float(d[key].max()):.3g}, outside "
                                   f"[0, 1] (augvae stores images and masks in [0, 1]); {fix}")
    return {k: v.float() for k, v in d.items()}
