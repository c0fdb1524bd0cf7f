"""A model folder's overlay sources, mapped onto the user's classes and loaded once per process.

A *source* is one image the model stores: its latent mean and log-variance (every model) and, for
models of the ``small-set`` recipe, its real defect: image, projection, residual and soft mask
(:mod:`augvae.overlay.extract`). :func:`load_sources` reads them with the model, maps the model's
classes onto the class order of the caller's labels, picks the defect-free reference, and caches
the result per (folder, classes, device) until a file of the folder changes.

Example:
    >>> from augvae.testing import example_model_folder
    >>> src = load_sources(example_model_folder())
    >>> src.classes, src.background_class, src.reference
    (['crack', 'pore', 'clean'], 'clean', "mean of class 'clean'")
    >>> load_sources(src.path) is src
    True
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from augvae.checkpoint import CONFIG_FILE, DEFECTS_FILE, LATENTS_FILE, WEIGHTS_FILE, load_defects, load_latents, read_config
from augvae.errors import ConfigError, ModelFolderError
from augvae.model import load_model
from augvae.overlay._names import BACKGROUND_NAMES
from augvae.overlay.extract import EMPTY_MASK_FIX, usable_defects

__all__ = ["as_classes", "VAESources", "SourceList", "check_model_folder", "clear_cache", "load_sources", "model_sources", "sources_from_latents",
           "sources_from_defects"]

log = logging.getLogger("augvae")


def as_classes(classes: Any, what: str = "classes") -> tuple[str, ...] | None:
    """``classes`` as a tuple of distinct names in label order (None stays None), else :class:`ConfigError`."""
    if classes is None:
        return None
    if isinstance(classes, str) or not isinstance(classes, Sequence) or not all(isinstance(c, str) for c in classes):
        raise ConfigError(f"{what} must be a list of class names in label order (e.g. dataset.classes), got {classes!r}")
    if not classes:
        raise ConfigError(f"{what} is empty; pass the class names in label order, or None for the model's classes")
    if len(set(classes)) != len(classes):
        raise ConfigError(f"{what} has duplicate names: {list(classes)}")
    return tuple(classes)


@dataclass
class SourceList:
    """The sources stored in a model folder, as stored (class names, not yet mapped onto anyone's labels)."""

    mu: Tensor  #: (N, D)
    logvar: Tensor  #: (N, D)
    names: list[str]
    classes: list[str]  #: class name of each source
    background: int | None  #: index of the reference (defect-free) source, if the model has one
    background_class: str | None  #: the model's defect-free class, if it was trained with one
    class_names: list[str]  #: the model's classes, in its label order
    defects: dict[str, Tensor] | None = None  #: image, projection, residual, mask of the defect sources
    defect_sources: list[int] | None = None  #: source index of each row of ``defects``


def model_sources(loaded: Any) -> SourceList:
    """The overlay sources stored with a loaded model folder (:func:`augvae.model.load_model`).

    Raises:
        ConfigError: The folder has no latents (training did not finish).
        ModelFolderError: Its latents or defects do not match its ``config.json``.
    """
    data = loaded.data
    lat = load_latents(loaded.path, data, loaded.model.config.latent_dim)
    if lat is None:
        raise ConfigError(
            f"{loaded.path} has no stored latents ({LATENTS_FILE}), so it has no overlay sources; "
            "it was not trained to the end: finish it with `augvae train ... --resume`"
        )
    class_names = list(data["classes"])
    labels = lat["labels"].tolist()
    names = list(data["names"] or [str(i) for i in range(len(labels))])
    classes = [class_names[i] if i < len(class_names) else str(i) for i in labels]
    defects = load_defects(loaded.path, data, loaded.model.config.channels, loaded.model.config.image_size)
    return SourceList(lat["mu"], lat["logvar"], names, classes, data["background"], data["background_class"], class_names,
                      defects, list(data["defect_sources"]) if defects is not None else None)


@dataclass
class VAESources:
    """A model with its overlay sources, mapped onto the user's classes, on one device.

    Attributes:
        model: The :class:`augvae.ConvVAE` in eval mode.
        mu, logvar: ``(N, D)`` latents of the N sources.
        source_class: ``(N,)`` index of each source's class in :attr:`classes` (-1: not one of them).
        partner_ok: ``(N,)`` sources that may be drawn (the reference background source may not).
        classes: The user's class names in label order.
        background: Index of the defect-free class in :attr:`classes`, or -1.
        z_ref: ``(D,)`` the defect-free reference latent; ``x_ref`` ``(1, C, S, S)`` its decoding.
        reference: How ``z_ref`` was chosen, in words.
        center_residual: Whether ``residual`` overlays are zero-centred per image (True when the
            reference is only the centroid of all sources).
        path: The model folder (None for sources made in memory).
        has_defect: ``(N,)`` sources with a stored real defect whose mask is not empty (what
            ``transplant`` draws; :func:`~augvae.overlay.extract.usable_defects`).
        defect_slot: ``(N,)`` row of each source in the defect tensors, -1 for none.
        d_image, d_residual, d_mask: ``(M, C, S', S')``, ``(M, C, S', S')``, ``(M, 1, S', S')`` the
            stored defects (empty tensors when there are none).
        names: The name of each source.
        defect_free_class: Whether :attr:`background` is the class the defects were extracted
            against (the model was trained with it, or the caller named it).

    Example:
        >>> from augvae.testing import example_model_folder
        >>> src = load_sources(example_model_folder())
        >>> src.num_classes, src.channels, src.image_size, src.class_index("pore"), src.has_defects
        (3, 1, 28, 1, False)
    """

    model: Any
    mu: Tensor
    logvar: Tensor
    source_class: Tensor
    partner_ok: Tensor
    classes: list[str]
    background: int
    z_ref: Tensor
    x_ref: Tensor
    reference: str
    path: Path | None
    center_residual: bool
    has_defect: Tensor
    defect_slot: Tensor
    d_image: Tensor
    d_residual: Tensor
    d_mask: Tensor
    names: list[str]
    #: Whether the defects were extracted against a defect-free class (a model trained with one, or one the caller
    #: named): then defect-free inputs get them (``onto-background``); otherwise they go onto their own class.
    defect_free_class: bool = False
    #: Whether any stored defect can be transplanted (``has_defect.any()``, kept as a Python bool so that the batch
    #: path does not read it back from an accelerator).
    any_defect: bool = False

    @property
    def num_classes(self) -> int:
        """Length of soft label vectors."""
        return len(self.classes)

    @property
    def background_class(self) -> str | None:
        """Name of the defect-free class, or None."""
        return self.classes[self.background] if self.background >= 0 else None

    @property
    def channels(self) -> int:
        """Channels of the model's images (of the stored defects for sources without a model)."""
        return int(self.model.config.channels) if self.model is not None else int(self.d_image.shape[1])

    @property
    def image_size(self) -> int:
        """Side of the model's square images (of the stored defects for sources without a model)."""
        return int(self.model.config.image_size) if self.model is not None else int(self.d_image.shape[-1])

    @property
    def device(self) -> torch.device:
        """Where the model and the source tensors live."""
        return self.mu.device

    @property
    def has_defects(self) -> bool:
        """Whether the model stores real defects with a non-empty mask (so ``transplant`` works)."""
        return self.any_defect

    def class_index(self, name: str) -> int:
        """Index of a class name, or :class:`ConfigError` listing the names."""
        if name not in self.classes:
            raise ConfigError(f"unknown class {name!r}; the classes are: {', '.join(self.classes)}")
        return self.classes.index(name)


_LOCK = threading.Lock()
_CACHE: dict[tuple[Any, ...], tuple[tuple[Any, ...], VAESources]] = {}


def _stamp(root: Path) -> tuple[Any, ...]:
    """Modification times and sizes of the files that define a model folder (None where missing)."""
    out: list[Any] = []
    for name in (CONFIG_FILE, WEIGHTS_FILE, LATENTS_FILE, DEFECTS_FILE):
        try:
            st = (root / name).stat()
            out.append((st.st_mtime_ns, st.st_size))
        except OSError:
            out.append(None)
    return tuple(out)


def check_model_folder(model_path: Any) -> str:
    """Validate that ``model_path`` names a model folder (reads its config only; weights load lazily).

    Example:
        >>> check_model_folder("/no/such/folder")
        Traceback (most recent call last):
        ...
        augvae.errors.ModelFolderError: model folder /no/such/folder does not exist; train one with `augvae train DATA_DIR --out /no/such/folder`
    """
    if not isinstance(model_path, (str, os.PathLike)):
        raise ConfigError(f"model_path must be the path of a model folder (str or Path), got {type(model_path).__name__}")
    path = os.fspath(model_path)
    read_config(path)
    return path


def clear_cache() -> None:
    """Forget every model loaded by :func:`load_sources` in this process.

    Example:
        >>> clear_cache()
    """
    with _LOCK:
        _CACHE.clear()


def load_sources(model_path: str | os.PathLike[str], classes: Sequence[str] | None = None, background_class: str | None = None,
                 device: str | torch.device = "cpu") -> VAESources:
    """Load a model folder and its sources once per process (cached by path, file times and device).

    Args:
        model_path: A model folder written by ``augvae train``.
        classes: The class names in the order of the labels the caller uses (e.g. ``dataset.classes``);
            default the model's own classes. Each must be one of the model's classes.
        background_class: The defect-free class; default the model's, else the class of its
            background source, else the first class named like :data:`BACKGROUND_NAMES`, else none.
        device: Where to put the model (the batch's device).

    Raises:
        ModelFolderError: The folder is missing, incomplete or corrupted.
        ConfigError: It has no stored latents, or ``classes`` / ``background_class`` do not fit it.
    """
    root = Path(os.fspath(model_path)).absolute()
    classes_t = as_classes(classes)
    if background_class is not None and not isinstance(background_class, str):
        raise ConfigError(f"background_class must be a class name (a string), got {background_class!r}")
    dev = torch.device(device)
    key = (str(root), str(dev), classes_t, background_class)
    stamp = _stamp(root)
    with _LOCK:
        hit = _CACHE.get(key)
        if hit is not None and hit[0] == stamp:
            return hit[1]
        loaded = load_model(root, device=dev)
        src = _prepare(loaded.model, model_sources(loaded), classes_t, background_class, dev, root)
        _CACHE[key] = (stamp, src)
        return src


def sources_from_latents(model: Any, mu: Tensor, logvar: Tensor, source_classes: Sequence[str], names: Sequence[str] | None = None,
                         background: int | None = None, classes: Sequence[str] | None = None) -> VAESources:
    """Sources made in memory from latents (no model folder), e.g. for :func:`augvae.overlay.random_overlays`.

    Example:
        >>> from augvae import ConvVAE
        >>> src = sources_from_latents(ConvVAE(image_size=28), torch.randn(3, 2), torch.zeros(3, 2), ["a", "a", "b"])
        >>> src.classes, src.reference
        (['a', 'b'], 'centroid of all sources')
    """
    n = mu.shape[0]
    if len(source_classes) != n:
        raise ConfigError(f"{n} source latents but {len(source_classes)} class names; give one class per source")
    names = list(names) if names is not None else [str(i) for i in range(n)]
    class_names = list(dict.fromkeys(source_classes))
    listed = SourceList(mu, logvar, names, list(source_classes), background, None, class_names)
    return _prepare(model, listed, as_classes(classes), None, mu.device, None, quiet=True, guess_background=False)


def sources_from_defects(defects: dict[str, Tensor], source_classes: Sequence[str], classes: Sequence[str],
                         background_class: str | None = None, names: Sequence[str] | None = None) -> VAESources:
    """Transplant-only sources made in memory from extracted defects (no model, no latents).

    What the benchmark's transplant arms and their controls use: the same engine as a model folder's
    sources, fed with defects extracted by a VAE (:func:`~augvae.overlay.extract.vae_projector`), a blur
    (:func:`~augvae.overlay.extract.blur_projector`) or cut as rectangles.

    Example:
        >>> d = {k: torch.zeros(2, 1, 8, 8) for k in ("image", "projection", "residual")}
        >>> d["mask"] = torch.ones(2, 1, 8, 8)
        >>> src = sources_from_defects(d, ["crack", "pore"], ["crack", "pore", "ok"], "ok")
        >>> src.has_defects, src.background, src.image_size
        (True, 2, 8)
    """
    m = defects["image"].shape[0]
    if len(source_classes) != m:
        raise ConfigError(f"{m} defects but {len(source_classes)} class names; give one class per defect")
    names = list(names) if names is not None else [f"defect_{i}" for i in range(m)]
    index = {c: i for i, c in enumerate(classes)}
    unknown = sorted({c for c in source_classes if c not in index})
    if unknown:
        raise ConfigError(f"defect classes {unknown} are not among the classes {list(classes)}")
    device = defects["image"].device
    source_class = torch.tensor([index[c] for c in source_classes], dtype=torch.long, device=device)
    zeros = torch.zeros(m, 1, device=device)
    usable = _usable(defects["mask"], names, "the defects")
    return VAESources(model=None, mu=zeros, logvar=zeros, source_class=source_class, partner_ok=torch.ones(m, dtype=torch.bool, device=device),
                      classes=list(classes), background=index.get(background_class, -1) if background_class else -1,
                      z_ref=torch.zeros(1, device=device), x_ref=torch.zeros(1, *defects["image"].shape[1:], device=device),
                      reference="none (transplant only)", path=None, center_residual=False,
                      has_defect=usable, defect_slot=torch.arange(m, device=device), d_image=defects["image"], d_residual=defects["residual"], d_mask=defects["mask"], names=names,
                      defect_free_class=bool(background_class) and background_class in index, any_defect=bool(usable.any()))


def _usable(mask: Tensor, names: Sequence[str], where: Any, quiet: bool = False) -> Tensor:
    """Which defects can be transplanted (a non-empty mask); says which cannot."""
    usable = usable_defects(mask)
    empty = [n for n, u in zip(names, usable.tolist()) if not u]
    if empty and not quiet:
        shown = ", ".join(empty[:5]) + (f" and {len(empty) - 5} more" if len(empty) > 5 else "")
        log.info("%s: %d of %d defects have an empty mask (no pixel above 0.5: %s) and are not transplanted; %s",
                 where, len(empty), len(names), shown, EMPTY_MASK_FIX)
    return usable


@torch.no_grad()
def _prepare(model: Any, src: SourceList, classes: tuple[str, ...] | None, background_class: str | None, device: torch.device,
             root: Path | None, quiet: bool = False, guess_background: bool = True) -> VAESources:
    n = src.mu.shape[0]
    where = root if root is not None else "the sources"
    if n == 0:
        raise ConfigError(f"{where} stores no source latents; retrain the model on at least one image")
    model_classes = list(src.class_names) or sorted(set(src.classes))
    if classes is not None:
        unknown = [c for c in classes if c not in model_classes]
        if unknown:
            raise ConfigError(
                f"classes {list(classes)} do not match the model's classes {model_classes} ({', '.join(map(repr, unknown))} "
                f"unknown to it); pass classes=[...] that name the model's classes in your label order"
            )
    names = list(classes) if classes is not None else model_classes
    index = {c: i for i, c in enumerate(names)}
    source_class = torch.tensor([index.get(c, -1) for c in src.classes], dtype=torch.long)
    ref_source = src.background if isinstance(src.background, int) and 0 <= src.background < n else None

    if background_class is not None:
        if background_class not in index:
            raise ConfigError(f"background_class {background_class!r} is not one of the classes ({', '.join(names)}); "
                              "pass one of them, or classes=[...] that include it")
        bg = index[background_class]
    elif src.background_class is not None and src.background_class in index:
        bg = index[src.background_class]
    elif ref_source is not None and src.classes[ref_source] in index:
        bg = index[src.classes[ref_source]]
    elif guess_background:
        bg = next((i for i, c in enumerate(names) if c.lower() in BACKGROUND_NAMES), -1)
    else:
        bg = -1

    mu, logvar = src.mu.float(), src.logvar.float()
    if ref_source is not None:
        z_ref, reference = mu[ref_source], f"background source {src.names[ref_source]!r}"
    elif bg >= 0 and bool((source_class == bg).any()):
        z_ref, reference = mu[source_class == bg].mean(0), f"mean of class {names[bg]!r}"
    else:
        z_ref, reference = mu.mean(0), "centroid of all sources"
    partner_ok = source_class >= 0
    if ref_source is not None:
        partner_ok[ref_source] = False
    missing = [c for i, c in enumerate(names) if i != bg and not bool(((source_class == i) & partner_ok).any())]
    if missing and not quiet:
        log.info("model %s has no sources of class(es) %s: same-class overlays leave those images unchanged", where, ", ".join(missing))
    if not bool(partner_ok.any()):
        raise ConfigError(f"none of the sources of {where} belongs to the classes {names}; pass classes=[...] with the "
                          f"model's class names ({', '.join(model_classes)})")
    has_defect = torch.zeros(n, dtype=torch.bool)
    defect_slot = torch.full((n,), -1, dtype=torch.long)
    c, s = model.config.channels, model.config.image_size
    d_image = d_residual = torch.zeros(0, c, s, s)
    d_mask = torch.zeros(0, 1, s, s)
    if src.defects is not None and src.defect_sources:
        rows = torch.tensor(src.defect_sources, dtype=torch.long)
        if len(set(src.defect_sources)) != len(src.defect_sources) or int(rows.max()) >= n:
            raise ModelFolderError(f"{where}: 'data.defect_sources' must name distinct sources; retrain the model")
        d_image, d_residual, d_mask = src.defects["image"], src.defects["residual"], src.defects["mask"]
        has_defect[rows] = _usable(d_mask, [src.names[int(r)] for r in rows], where, quiet)
        defect_slot[rows] = torch.arange(len(rows))
    x_ref = model.decode(z_ref[None].to(device))
    return VAESources(model=model, mu=mu.to(device), logvar=logvar.to(device), source_class=source_class.to(device),
                      partner_ok=partner_ok.to(device), classes=names, background=bg, z_ref=z_ref.to(device), x_ref=x_ref,
                      reference=reference, path=root, center_residual=ref_source is None and reference.startswith("centroid"),
                      has_defect=has_defect.to(device), defect_slot=defect_slot.to(device), d_image=d_image.to(device),
                      d_residual=d_residual.to(device), d_mask=d_mask.to(device), names=list(src.names),
                      defect_free_class=bg >= 0 and (background_class is not None or src.background_class is not None),
                      any_defect=bool(has_defect.any()))
