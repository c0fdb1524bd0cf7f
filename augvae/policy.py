"""Label policies and overlay math shared by every augvae entry point (the "functional" module).

The albumentations and torchvision transforms, the batch transform and the dataset wrapper are thin
shells around this module, in the albumentations style: each draws its random numbers from its own
library's generator, converts its input to a float ``(B, C, H, W)`` tensor, and calls
:func:`overlay_batch`, which does everything else on the batch's device in one decoder pass.

**What a generated sample is.** For an input image ``x`` with label ``y``, sources are drawn from the
model's stored latents (the encoder means of its training images) under a *label policy*:

- ``same-class``: sources of class ``y``; the result keeps ``y``.
- ``onto-background``: a defect-free input gets ``k`` defect sources of one class and that class's
  label; a defect input gets one defect-free source (its defect on a new surface) and keeps ``y``.
- ``soft``: sources of any class; the label is a probability vector over the classes (MixUp-like,
  each part weighted by its overlay weight, the input by 1) or, with ``multilabel=True``, a multi-hot
  vector. When the result holds a defect, the defect-free class gets no mass: a crack added to a
  clean surface is a crack, not half a clean surface.

With ``keep_input=True`` (the default) the sources are overlaid *onto the input* by the chosen
formulation (:data:`augvae.overlay.FORMULATIONS`). For ``residual`` this is
``x + sum_i w_i (decode(z_i) - decode(z_ref))`` computed at the model's size and added to ``x`` at
its own size, so the input keeps its full resolution; the latent formulations encode ``x`` and
decode the combined latent. With ``keep_input=False`` the result is a fresh overlay of the sources
alone. ``z_ref``, the defect-free reference, is the model's background source if it has one, else
the mean latent of the defect-free class, else the centroid of all sources.

Example:
    >>> import torch
    >>> from augvae.policy import OverlayOptions, example_model_folder, load_sources, draw_torch, overlay_batch
    >>> src = load_sources(example_model_folder())
    >>> src.classes, src.background_class
    (['crack', 'pore', 'clean'], 'clean')
    >>> opts = OverlayOptions(policy="soft")
    >>> images, labels = torch.rand(4, 1, 40, 40), torch.tensor([0, 1, 2, 2])
    >>> draws = draw_torch(src, opts, batch=4, generator=torch.Generator().manual_seed(0))
    >>> out, soft = overlay_batch(src, images, labels, opts, draws)
    >>> out.shape, soft.shape, bool(torch.allclose(soft.sum(1), torch.ones(4)))
    (torch.Size([4, 1, 40, 40]), torch.Size([4, 3]), True)
"""

from __future__ import annotations

import logging
import math
import os
import tempfile
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from augvae.config import check_choice
from augvae.errors import ConfigError, InputError
from augvae.overlay import DEFAULT_FORMULATION, FORMULATIONS, _combine_rows

__all__ = [
    "POLICIES",
    "DEFAULT_POLICY",
    "BACKGROUND_NAMES",
    "OverlayOptions",
    "VAESources",
    "Draws",
    "Plan",
    "ImageFormat",
    "check_model_folder",
    "load_sources",
    "clear_cache",
    "draw_torch",
    "draw_numpy",
    "make_plan",
    "render",
    "mix_labels",
    "overlay_batch",
    "image_to_tensor",
    "tensor_to_image",
    "batch_to_float",
    "float_to_batch",
    "check_batch_values",
    "example_model_folder",
]

log = logging.getLogger("augvae")

POLICIES = ("same-class", "onto-background", "soft")
DEFAULT_POLICY = "same-class"
#: Class names taken as defect-free when no ``background_class`` is named (compared case-insensitively).
BACKGROUND_NAMES = ("clean", "ok", "good", "normal", "background", "defect-free", "defect_free", "no-defect", "none")
#: Float images may stray this far outside [0, 1] (interpolation overshoot) and are clipped; beyond it they are refused.
RANGE_TOLERANCE = 0.05


# --------------------------------------------------------------------------------------------
# options


def _as_weight_range(weight: Any) -> tuple[float, float]:
    if isinstance(weight, (int, float)) and not isinstance(weight, bool):
        lo = hi = float(weight)
    elif isinstance(weight, (tuple, list)) and len(weight) == 2 and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in weight
    ):
        lo, hi = float(weight[0]), float(weight[1])
    else:
        raise ConfigError(f"weight must be a number or a (low, high) pair, got {weight!r}; e.g. weight=1.0 or weight=(0.5, 1.0)")
    if not (math.isfinite(lo) and math.isfinite(hi) and 0 < lo <= hi <= 10):
        raise ConfigError(f"weight must satisfy 0 < low <= high <= 10, got {weight!r}; 1.0 is the paper's plain sum")
    return lo, hi


def _as_classes(classes: Any, what: str = "classes") -> tuple[str, ...] | None:
    if classes is None:
        return None
    if isinstance(classes, str) or not isinstance(classes, Sequence) or not all(isinstance(c, str) for c in classes):
        raise ConfigError(f"{what} must be a list of class names in label order (e.g. dataset.classes), got {classes!r}")
    if not classes:
        raise ConfigError(f"{what} is empty; pass the class names in label order, or None for the model's classes")
    if len(set(classes)) != len(classes):
        raise ConfigError(f"{what} has duplicate names: {list(classes)}")
    return tuple(classes)


@dataclass(frozen=True)
class OverlayOptions:
    """What one overlay draws and how it combines it; validated on construction.

    Args:
        policy: One of :data:`POLICIES`.
        formulation: One of :data:`augvae.overlay.FORMULATIONS` (default the measured best,
            :data:`augvae.overlay.DEFAULT_FORMULATION`).
        k: Sources added per image (``onto-background`` on a defect input always adds one
            defect-free source).
        scale: Sample each source around its centre with this many posterior standard deviations
            (0 = the centres themselves).
        weight: Overlay weight of each source: a number, or ``(low, high)`` drawn uniformly per source.
        keep_input: Overlay the sources onto the input (True) or replace it by a fresh overlay (False).
        multilabel: With ``policy="soft"``, return multi-hot labels instead of probabilities.

    Example:
        >>> OverlayOptions(policy="soft", weight=(0.5, 1.0)).weight_range
        (0.5, 1.0)
        >>> OverlayOptions(policy="mixup")
        Traceback (most recent call last):
        ...
        augvae.errors.ConfigError: unknown policy 'mixup'; expected one of: same-class, onto-background, soft
    """

    policy: str = DEFAULT_POLICY
    formulation: str = DEFAULT_FORMULATION
    k: int = 1
    scale: float = 0.5
    weight: Any = 1.0
    keep_input: bool = True
    multilabel: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.policy, str):
            raise ConfigError(f"policy must be a string, one of {', '.join(POLICIES)}; got {self.policy!r}")
        check_choice(self.policy, POLICIES, "policy")
        if not isinstance(self.formulation, str):
            raise ConfigError(f"formulation must be a string, one of {', '.join(FORMULATIONS)}; got {self.formulation!r}")
        check_choice(self.formulation, FORMULATIONS, "formulation")
        if isinstance(self.k, bool) or not isinstance(self.k, int) or not 1 <= self.k <= 16:
            raise ConfigError(f"k (sources per overlay) must be an integer from 1 to 16, got {self.k!r}")
        if isinstance(self.scale, bool) or not isinstance(self.scale, (int, float)) or not (math.isfinite(self.scale) and self.scale >= 0):
            raise ConfigError(f"scale must be a finite number >= 0 (posterior standard deviations), got {self.scale!r}")
        _as_weight_range(self.weight)
        if not isinstance(self.keep_input, bool):
            raise ConfigError(f"keep_input must be True or False, got {self.keep_input!r}")
        if not isinstance(self.multilabel, bool):
            raise ConfigError(f"multilabel must be True or False, got {self.multilabel!r}")
        if self.multilabel and self.policy != "soft":
            raise ConfigError(f"multilabel=True makes multi-hot labels, which only the 'soft' policy produces; got policy {self.policy!r}")

    @property
    def weight_range(self) -> tuple[float, float]:
        """``(low, high)`` of the per-source overlay weight."""
        return _as_weight_range(self.weight)

    @property
    def slots(self) -> int:
        """Source slots per image: ``k`` defects plus one defect-free slot (used by ``onto-background``)."""
        return self.k + 1

    @property
    def soft_labels(self) -> bool:
        """Whether labels come out as vectors over the classes."""
        return self.policy == "soft"


# --------------------------------------------------------------------------------------------
# the model and its sources, loaded once per process


@dataclass
class VAESources:
    """A loaded model with its overlay sources, mapped onto the user's classes, on one device.

    Attributes:
        model: The :class:`augvae.ConvVAE` in eval mode.
        mu, logvar: ``(N, D)`` latents of the N sources.
        source_class: ``(N,)`` index of each source's class in :attr:`classes` (-1: not one of them).
        partner_ok: ``(N,)`` sources that may be drawn (the reference background source may not).
        classes: The user's class names in label order.
        background: Index of the defect-free class in :attr:`classes`, or -1.
        z_ref: ``(D,)`` the defect-free reference latent.
        x_ref: ``(1, C, S, S)`` its decoding.
        reference: How ``z_ref`` was chosen, in words.
        center_residual: Whether residuals are zero-centred per image: True when the reference is only
            the centroid of all sources (no defect-free images), where an uncentred residual mostly
            carries a brightness shift rather than a defect.
        path: The model folder.

    Example:
        >>> src = load_sources(example_model_folder())
        >>> src.num_classes, src.channels, src.image_size, src.class_index("pore")
        (3, 1, 28, 1)
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
    path: Path
    center_residual: bool = False

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
        """Channels of the model's images."""
        return int(self.model.config.channels)

    @property
    def image_size(self) -> int:
        """Side of the model's square images."""
        return int(self.model.config.image_size)

    @property
    def device(self) -> torch.device:
        """Where the model and the source tensors live."""
        return self.mu.device

    def class_index(self, name: str) -> int:
        """Index of a class name, or :class:`ConfigError` listing the names."""
        if name not in self.classes:
            raise ConfigError(f"unknown class {name!r}; the classes are: {', '.join(self.classes)}")
        return self.classes.index(name)


_LOCK = threading.Lock()
_CACHE: dict[tuple[Any, ...], tuple[tuple[Any, ...], VAESources]] = {}


def _stamp(root: Path) -> tuple[Any, ...]:
    """Modification times and sizes of the files that define a model folder (None where missing)."""
    from augvae.checkpoint import CONFIG_FILE, LATENTS_FILE, WEIGHTS_FILE

    out: list[Any] = []
    for name in (CONFIG_FILE, WEIGHTS_FILE, LATENTS_FILE):
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
    from augvae.checkpoint import read_config

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


def load_sources(
    model_path: str | os.PathLike[str],
    classes: Sequence[str] | None = None,
    background_class: str | None = None,
    device: str | torch.device = "cpu",
) -> VAESources:
    """Load a model folder and its sources once per process (cached by path, file times and device).

    Args:
        model_path: A model folder written by ``augvae train``.
        classes: The class names in the order of the labels the caller uses (e.g. ``dataset.classes``);
            default the model's own classes. Sources of other classes are never drawn.
        background_class: The defect-free class; default the class of the model's background source,
            else the first class named like :data:`BACKGROUND_NAMES`, else none.
        device: Where to put the model (the batch's device).

    Raises:
        ModelFolderError: The folder is missing, incomplete or corrupted.
        ConfigError: It has no stored latents, or ``classes`` / ``background_class`` do not fit it.

    Example:
        >>> src = load_sources(example_model_folder())
        >>> src.mu.shape, src.reference
        (torch.Size([6, 4]), "mean of class 'clean'")
        >>> load_sources(src.path) is src
        True
    """
    root = Path(os.fspath(model_path)).absolute()
    classes_t = _as_classes(classes)
    if background_class is not None and not isinstance(background_class, str):
        raise ConfigError(f"background_class must be a class name (a string), got {background_class!r}")
    dev = torch.device(device)
    key = (str(root), str(dev), classes_t, background_class)
    stamp = _stamp(root)
    with _LOCK:
        hit = _CACHE.get(key)
        if hit is not None and hit[0] == stamp:
            return hit[1]
        src = _prepare(root, classes_t, background_class, dev)
        _CACHE[key] = (stamp, src)
        return src


@torch.no_grad()
def _prepare(root: Path, classes: tuple[str, ...] | None, background_class: str | None, device: torch.device) -> VAESources:
    from augvae.checkpoint import load_model
    from augvae.generate import model_sources

    loaded = load_model(root, device=device)
    src = model_sources(loaded)
    model = loaded.model
    n = src.mu.shape[0]
    if n == 0:
        raise ConfigError(f"{root} stores no source latents; retrain the model on at least one image")
    names = list(classes) if classes is not None else list(loaded.data.get("classes") or sorted(set(src.classes)))
    index = {c: i for i, c in enumerate(names)}
    source_class = torch.tensor([index.get(c, -1) for c in src.classes], dtype=torch.long)
    ref_source = src.background if isinstance(src.background, int) and 0 <= src.background < n else None

    if background_class is not None:
        if background_class not in index:
            raise ConfigError(f"background_class {background_class!r} is not one of the classes ({', '.join(names)}); "
                              "pass one of them, or classes=[...] that include it")
        bg = index[background_class]
    elif ref_source is not None and src.classes[ref_source] in index:
        bg = index[src.classes[ref_source]]
    else:
        bg = next((i for i, c in enumerate(names) if c.lower() in BACKGROUND_NAMES), -1)

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
    missing = [c for i, c in enumerate(names) if not bool(((source_class == i) & partner_ok).any())]
    if missing:
        log.warning("model %s has no sources of class(es) %s: same-class overlays leave those images unchanged",
                    root, ", ".join(missing))
    if not bool(partner_ok.any()):
        raise ConfigError(f"none of the sources of {root} belongs to the classes {names}; pass classes=[...] with the "
                          f"model's class names ({', '.join(sorted(set(src.classes)))})")
    x_ref = model.decode(z_ref[None].to(device))
    return VAESources(model=model, mu=mu.to(device), logvar=logvar.to(device), source_class=source_class.to(device),
                      partner_ok=partner_ok.to(device), classes=names, background=bg, z_ref=z_ref.to(device), x_ref=x_ref,
                      reference=reference, path=root, center_residual=ref_source is None and reference.startswith("centroid"))


# --------------------------------------------------------------------------------------------
# random draws, from whichever generator the caller's library uses


@dataclass
class Draws:
    """The random numbers one batch of overlays uses; any library's generator can fill them.

    Attributes:
        keys: ``(B, 2, N)`` uniform [0, 1): random priorities of the N sources (two independent draws).
        weights: ``(B, slots)`` uniform [0, 1): mapped onto the weight range.
        noise: ``(B, slots, D)`` standard normal: sampling around each source's centre.
        apply: ``(B,)`` uniform [0, 1) or None: compared with ``p`` by the batch transform.

    Example:
        >>> d = Draws(torch.rand(1, 2, 5), torch.rand(1, 2), torch.randn(1, 2, 3))
        >>> d.to(torch.device("cpu")).keys.shape
        torch.Size([1, 2, 5])
    """

    keys: Tensor
    weights: Tensor
    noise: Tensor
    apply: Tensor | None = None

    def to(self, device: torch.device) -> Draws:
        """The same draws on ``device``."""
        return Draws(self.keys.to(device), self.weights.to(device), self.noise.to(device),
                     None if self.apply is None else self.apply.to(device))


def draw_torch(src: VAESources, opts: OverlayOptions, batch: int, generator: torch.Generator | None = None,
               device: str | torch.device | None = None) -> Draws:
    """Draws from torch: ``generator`` or, if None, the global RNG of ``device`` (``torch.manual_seed`` seeds it).

    Example:
        >>> src = load_sources(example_model_folder())
        >>> d = draw_torch(src, OverlayOptions(k=2), batch=3)
        >>> d.keys.shape, d.weights.shape, d.noise.shape
        (torch.Size([3, 2, 6]), torch.Size([3, 3]), torch.Size([3, 3, 4]))
    """
    dev = torch.device(device) if device is not None else (generator.device if generator is not None else src.device)
    n, d, s = src.mu.shape[0], src.mu.shape[1], opts.slots
    kw: dict[str, Any] = {"generator": generator, "device": dev}
    return Draws(torch.rand(batch, 2, n, **kw), torch.rand(batch, s, **kw), torch.randn(batch, s, d, **kw),
                 torch.rand(batch, **kw))


def draw_numpy(src: VAESources, opts: OverlayOptions, batch: int, rng: np.random.Generator) -> Draws:
    """Draws from a numpy generator (albumentations' ``self.random_generator``), as CPU tensors.

    Example:
        >>> src = load_sources(example_model_folder())
        >>> d = draw_numpy(src, OverlayOptions(), 1, np.random.default_rng(0))
        >>> d.noise.dtype, d.noise.shape
        (torch.float32, torch.Size([1, 2, 4]))
    """
    n, d, s = src.mu.shape[0], src.mu.shape[1], opts.slots
    keys = rng.random((batch, 2, n), dtype=np.float32)
    weights = rng.random((batch, s), dtype=np.float32)
    noise = rng.standard_normal((batch, s, d), dtype=np.float32)
    apply = rng.random(batch, dtype=np.float32)
    return Draws(*(torch.from_numpy(a) for a in (keys, weights, noise, apply)))


# --------------------------------------------------------------------------------------------
# the plan: which sources each image gets, with which weights, and its new class


@dataclass
class Plan:
    """Per image of a batch: the drawn sources, their weights and the new hard class.

    Attributes:
        index: ``(B, slots)`` source indices.
        weight: ``(B, slots)`` overlay weights, 0 for unused slots.
        valid: ``(B,)`` at least one source was drawn (an image of a class without sources gets none).
        target: ``(B,)`` the new hard class (-1 where there is none: the ``soft`` policy).

    Example:
        >>> src = load_sources(example_model_folder())
        >>> opts = OverlayOptions(k=2)
        >>> plan = make_plan(src, torch.tensor([1]), opts, draw_torch(src, opts, 1))
        >>> plan.index.shape, src.source_class[plan.index[0, :2]].tolist(), plan.target.tolist()
        (torch.Size([1, 3]), [1, 1], [1])
    """

    index: Tensor
    weight: Tensor
    valid: Tensor
    target: Tensor


def _pick(mask: Tensor, keys: Tensor, m: int) -> tuple[Tensor, Tensor]:
    """The ``m`` allowed sources of highest key per row: distinct, uniformly random. ``(idx, got)``."""
    masked = torch.where(mask, keys, torch.full_like(keys, -1.0))
    top = min(m, keys.shape[1])
    vals, idx = masked.topk(top, dim=1)
    got = vals >= 0
    if top < m:  # fewer sources than slots
        pad = m - top
        idx = torch.cat([idx, idx.new_zeros(idx.shape[0], pad)], 1)
        got = torch.cat([got, got.new_zeros(got.shape[0], pad)], 1)
    return idx, got


def make_plan(src: VAESources, labels: Tensor, opts: OverlayOptions, draws: Draws) -> Plan:
    """Draw the sources of each image under the policy; pure tensor code (no host synchronisation).

    Args:
        src: From :func:`load_sources`.
        labels: ``(B,)`` int64 class indices (-1 = unknown) on ``src.device``.
        opts: The options.
        draws: From :func:`draw_torch` / :func:`draw_numpy`, on ``src.device``.

    Example:
        >>> src = load_sources(example_model_folder())
        >>> opts = OverlayOptions(policy="onto-background")
        >>> plan = make_plan(src, torch.tensor([2, 0]), opts, draw_torch(src, opts, 2))
        >>> new = plan.target.tolist()  # the clean image became a defect class; the crack stays a crack
        >>> new[0] in (0, 1), new[1]
        (True, 0)
    """
    b, k = labels.shape[0], opts.k
    y = labels.long()
    sc, ok = src.source_class, src.partner_ok
    bg = src.background
    is_bg = sc == bg if bg >= 0 else torch.zeros_like(ok)
    keys1, keys2 = draws.keys[:, 0], draws.keys[:, 1]
    ok_b = ok[None].expand(b, -1)
    defect_ok = ok_b & ~is_bg[None]

    def first_class(mask: Tensor) -> Tensor:
        v, i = torch.where(mask, keys1, torch.full_like(keys1, -1.0)).max(1)
        return torch.where(v >= 0, sc[i], torch.full_like(i, -1))

    none = torch.zeros(b, 1, dtype=torch.bool, device=y.device)
    zero_idx = torch.zeros(b, 1, dtype=torch.long, device=y.device)
    if opts.policy == "same-class":
        target = y if opts.keep_input else torch.where(y >= 0, y, first_class(defect_ok))
        idx, got = _pick(ok_b & (sc[None] == target[:, None]) & (target[:, None] >= 0), keys2, k)
        idx, got = torch.cat([idx, zero_idx], 1), torch.cat([got, none], 1)
    elif opts.policy == "onto-background":
        if bg < 0:
            raise ConfigError(
                "policy 'onto-background' needs a defect-free class, but the model has no background source and no class "
                f"is named like {', '.join(BACKGROUND_NAMES[:4])}...; pass background_class='NAME' (classes: {', '.join(src.classes)})"
            )
        y_defect = (y >= 0) & (y != bg)
        target = torch.where(y_defect, y, first_class(defect_ok))
        d_idx, d_got = _pick(ok_b & (sc[None] == target[:, None]) & (target[:, None] >= 0), keys2, k)
        b_idx, b_got = _pick(ok_b & is_bg[None], keys1, 1)
        if opts.keep_input:  # a clean input gets defects; a defect input gets a new surface
            d_got = d_got & ~y_defect[:, None]
            b_got = b_got & y_defect[:, None]
        idx, got = torch.cat([d_idx, b_idx], 1), torch.cat([d_got, b_got], 1)
    else:  # soft
        idx, got = _pick(ok_b, keys2, k)
        idx, got = torch.cat([idx, zero_idx], 1), torch.cat([got, none], 1)
        target = torch.full_like(y, -1)
    lo, hi = opts.weight_range
    w = lo + (hi - lo) * draws.weights.to(src.mu.dtype)
    if opts.policy == "onto-background":  # the defect-free slot replaces the surface: weight 1
        w = torch.cat([w[:, :k], torch.ones_like(w[:, k:])], 1)
    w = torch.where(got, w, torch.zeros_like(w))
    return Plan(index=idx, weight=w, valid=got.any(1), target=target)


# --------------------------------------------------------------------------------------------
# rendering: one decoder pass for the batch


def _resize(x: Tensor, h: int, w: int) -> Tensor:
    if x.shape[-2:] == (h, w):
        return x
    shrink = h < x.shape[-2] or w < x.shape[-1]
    return F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False, antialias=shrink)


def _match_channels(src: VAESources, channels: int, opts: OverlayOptions) -> None:
    c = src.channels
    if channels == c:
        return
    if c == 1 and channels == 3 and (opts.formulation == "residual" or not opts.keep_input):
        return  # a grayscale model's residual (or fresh image) is applied to every colour channel
    if c == 1:
        raise InputError(
            f"the model {src.path} is grayscale but the image has {channels} channels; the {opts.formulation!r} formulation "
            "re-decodes the whole image and would lose its colour: use formulation='residual', a colour model, or grayscale images"
        )
    raise InputError(
        f"the model {src.path} takes {c}-channel (colour) images but the image has {channels} channel(s); convert the images "
        "to RGB (e.g. PIL .convert('RGB')) or train a grayscale model (--channels 1)"
    )


@torch.no_grad()
def render(src: VAESources, images: Tensor, plan: Plan, opts: OverlayOptions, draws: Draws,
           sparse: bool | None = None) -> Tensor:
    """The overlaid images, ``(B, C, H, W)`` float in [0, 1], at the input's size; one decoder pass.

    ``images`` are float in [0, 1] on ``src.device``. Rows without a valid plan are returned as they were.
    ``sparse`` (residual formulation): decode only the (image, source) pairs that carry weight, a
    data-dependent selection that would cost an accelerator a host synchronisation; ``None`` means
    on CPU only. Both give the same images.

    Example:
        >>> src = load_sources(example_model_folder())
        >>> opts = OverlayOptions()
        >>> x = torch.rand(2, 1, 50, 60)
        >>> d = draw_torch(src, opts, 2)
        >>> render(src, x, make_plan(src, torch.tensor([0, 1]), opts, d), opts, d).shape
        torch.Size([2, 1, 50, 60])
    """
    b, ch, h, w_ = images.shape
    _match_channels(src, ch, opts)
    model, s = src.model, opts.slots
    idx = plan.index
    z = src.mu[idx]
    if opts.scale > 0:
        z = z + opts.scale * torch.exp(0.5 * src.logvar[idx]) * draws.noise.to(z.dtype)
    w = plan.weight
    if opts.formulation == "residual":
        if opts.policy != "onto-background":  # the extra defect-free slot is only ever filled by onto-background
            z, w, s = z[:, : opts.k], w[:, : opts.k], opts.k
        if sparse if sparse is not None else images.device.type == "cpu":
            # On CPU a data-dependent selection costs no device round trip: decode only the (image, slot)
            # pairs that carry weight in an overlaid image; the others add exactly zero.
            row, slot = ((w != 0) & plan.valid[:, None]).nonzero(as_tuple=True)
            dec = model.decode(z[row, slot])
            residual = torch.zeros(b, src.channels, src.image_size, src.image_size, dtype=dec.dtype, device=dec.device)
            residual.index_add_(0, row, w[row, slot][:, None, None, None] * (dec - src.x_ref))
        else:
            dec = model.decode(z.reshape(b * s, -1)).view(b, s, src.channels, src.image_size, src.image_size)
            residual = (w[:, :, None, None, None] * (dec - src.x_ref[None])).sum(1)  # (B, C, S, S)
        if src.center_residual:  # no defect-free reference: keep the structure, drop the brightness shift
            residual = residual - residual.mean((-2, -1), keepdim=True)
        if opts.keep_input:
            out = images + _resize(residual, h, w_)
        else:
            out = _resize(src.x_ref + residual, h, w_).expand(b, ch, h, w_)
    else:
        if opts.keep_input:  # the input image is one more source, of weight 1
            z_x = model.encode(_resize(images, src.image_size, src.image_size).to(src.mu.dtype))[0]
            z, w = torch.cat([z_x[:, None], z], 1), torch.cat([torch.ones_like(w[:, :1]), w], 1)
        z_ref = src.z_ref.to(z).expand(b, -1)  # (B, D); used by "offset"
        dec = model.decode(_combine_rows(z, w, opts.formulation, z_ref))
        out = _resize(dec, h, w_).expand(b, ch, h, w_)
    out = out.clamp(0.0, 1.0).to(images.dtype)
    return torch.where(plan.valid[:, None, None, None], out, images)


def mix_labels(src: VAESources, labels: Tensor, plan: Plan, opts: OverlayOptions, changed: Tensor) -> Tensor:
    """The new labels: hard ``(B,)`` where the input was hard and the policy is; else ``(B, K)`` vectors.

    Args:
        labels: ``(B,)`` int64 indices or ``(B, K)`` float probability / multi-hot vectors.
        changed: ``(B,)`` bool, rows that were overlaid (elsewhere the label stays, as a vector if
            vectors come out).

    Example:
        >>> src = load_sources(example_model_folder())
        >>> opts = OverlayOptions(policy="soft")
        >>> d = draw_torch(src, opts, 2)
        >>> plan = make_plan(src, torch.tensor([0, 2]), opts, d)
        >>> mix_labels(src, torch.tensor([0, 2]), plan, opts, torch.tensor([False, False])).tolist()
        [[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]
    """
    k = src.num_classes
    hard_in = labels.ndim == 1
    if hard_in:
        y = labels.long()
        base = F.one_hot(y.clamp_min(0), k).to(src.mu.dtype) * (y >= 0)[:, None]
    else:
        base = labels.to(src.mu.dtype)
    if not opts.soft_labels:
        if hard_in:
            return torch.where(changed, plan.target, y)
        return torch.where(changed[:, None], F.one_hot(plan.target.clamp_min(0), k).to(base.dtype), base)
    cls = src.source_class[plan.index].clamp_min(0)
    parts = torch.zeros_like(base).scatter_add_(1, cls, plan.weight.to(base.dtype))
    total = parts + base if opts.keep_input else parts
    if src.background >= 0:  # an image that shows a defect is not defect-free
        bgc = src.background
        defect_mass = total.sum(1) - total[:, bgc]
        keep_bg = torch.where(defect_mass > 0, torch.zeros_like(defect_mass), total[:, bgc])
        total = torch.cat([total[:, :bgc], keep_bg[:, None], total[:, bgc + 1 :]], 1)
    if opts.multilabel:
        mixed = (total > 0).to(base.dtype)
    else:
        mixed = total / total.sum(1, keepdim=True).clamp_min(1e-12)
    return torch.where(changed[:, None], mixed, base)


def overlay_batch(src: VAESources, images: Tensor, labels: Tensor, opts: OverlayOptions, draws: Draws,
                  p: float = 1.0, sparse: bool | None = None) -> tuple[Tensor, Tensor]:
    """Plan, render and relabel a float batch in one decoder pass, on ``images.device``.

    Args:
        src: From :func:`load_sources` on the images' device.
        images: ``(B, C, H, W)`` float in [0, 1].
        labels: ``(B,)`` int64 or ``(B, K)`` float.
        opts: The options.
        draws: Random numbers for the batch.
        p: Probability of overlaying each image (compared with ``draws.apply``).
        sparse: See :func:`render` (``None``: the fixed-shape decode on accelerators, the sparse one on CPU).

    Returns:
        ``(images, labels)``; labels as in :func:`mix_labels`.

    Example:
        >>> src = load_sources(example_model_folder())
        >>> opts = OverlayOptions(policy="onto-background")
        >>> x, y = torch.rand(3, 1, 28, 28), torch.tensor([2, 2, 0])
        >>> out, new = overlay_batch(src, x, y, opts, draw_torch(src, opts, 3), p=1.0)
        >>> [c in (0, 1) for c in new.tolist()]
        [True, True, True]
    """
    dev = images.device
    draws = draws.to(dev)
    hard = labels.to(dev).long() if labels.ndim == 1 else labels.to(dev).argmax(1)
    plan = make_plan(src, hard, opts, draws)
    if p < 1.0 and draws.apply is not None:
        plan.valid = plan.valid & (draws.apply < p)
    out = render(src, images, plan, opts, draws, sparse=sparse)
    return out, mix_labels(src, labels.to(dev), plan, opts, plan.valid)


# --------------------------------------------------------------------------------------------
# any image type <-> float (1, C, H, W)


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


def _check_float_values(t: Tensor, what: str) -> Tensor:
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


def _check_shape(shape: tuple[int, ...], layout: str, what: str) -> None:
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
        _check_shape(arr.shape, fmt.layout, what)
        t = torch.from_numpy(np.array(arr, dtype=np.float32))  # a writable copy
        t = t[None] if arr.ndim == 2 else t.permute(2, 0, 1)
        t = t / fmt.scale
        return (_check_float_values(t, what) if image.mode == "F" else t)[None], fmt
    if isinstance(image, np.ndarray):
        if image.ndim not in (2, 3):
            raise InputError(f"{what} must be an (H, W, C) or (H, W) array, got shape {image.shape}")
        layout = "HW" if image.ndim == 2 else "HWC"
        _check_shape(image.shape, layout, what)
        if image.dtype in _NP_SCALES:
            scale = _NP_SCALES[image.dtype]
        elif np.issubdtype(image.dtype, np.floating):
            scale = 1.0
        else:
            raise InputError(f"{what} has dtype {image.dtype}; use uint8, uint16 or float32 in [0, 1]")
        t = torch.from_numpy(np.array(image, dtype=np.float32))  # a writable copy
        t = t[None] if layout == "HW" else t.permute(2, 0, 1)
        t = t / scale if scale != 1.0 else _check_float_values(t, what)
        return t[None].contiguous(), ImageFormat("numpy", layout, image.dtype, scale)
    if isinstance(image, Tensor):
        if image.ndim not in (2, 3):
            raise InputError(f"{what} must be a (C, H, W) or (H, W) tensor, got shape {tuple(image.shape)}; "
                             "batches go to BatchVAEOverlay")
        layout = "HW" if image.ndim == 2 else "CHW"
        _check_shape(tuple(image.shape), layout, what)
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
    _check_shape(tuple(images.shape[1:]), "CHW", what)
    if images.dtype in _TORCH_SCALES:
        scale = _TORCH_SCALES[images.dtype]
        x = images.to(torch.float32) / scale
    elif images.is_floating_point():
        scale = 1.0
        x = images.to(torch.float32)
        x = _check_float_values(x, what) if check_values else x.clamp(0.0, 1.0)
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
        if check_values and labels.numel() and not bool(torch.isfinite(labels.float()).all()):
            raise InputError("labels contain NaN or infinite values")
    else:
        raise InputError(f"labels must have shape (B,) or (B, {num_classes}), got {tuple(labels.shape)}")


# --------------------------------------------------------------------------------------------
# a tiny model folder for examples and tests

_EXAMPLES: dict[tuple[Any, ...], Path] = {}


def example_model_folder(path: str | os.PathLike[str] | None = None, classes: Sequence[str] = ("crack", "pore", "clean"),
                         per_class: int = 2, image_size: int = 28, latent_dim: int = 4, channels: int = 1,
                         seed: int = 0, background: int | None = None) -> Path:
    """Write (once) an *untrained* model folder with spread-out source latents, for examples and tests.

    Its overlays are smooth random patterns, not defects: it exists so that examples run in
    milliseconds without training. The decoder's first layer is scaled up so that different
    sources decode visibly differently.

    Args:
        path: The folder; default a temporary folder (one per process and set of arguments, removed at exit).
        classes: Class names; ``per_class`` sources each.
        background: Index of a source to store as the model's background (reference) source.

    Example:
        >>> folder = example_model_folder()
        >>> sorted(p.name for p in folder.iterdir())
        ['config.json', 'latents.safetensors', 'model.safetensors']
    """
    from augvae.checkpoint import WEIGHTS_FILE, save_model
    from augvae.config import ModelConfig
    from augvae.model import ConvVAE

    names = list(classes)
    tag = (tuple(names), per_class, image_size, latent_dim, channels, seed, background)
    if path is None:
        if tag not in _EXAMPLES:
            import atexit
            import shutil

            tmp_root = Path(tempfile.mkdtemp(prefix="augvae-example-"))
            atexit.register(shutil.rmtree, tmp_root, True)
            _EXAMPLES[tag] = example_model_folder(tmp_root / "model", names, per_class, image_size, latent_dim, channels, seed,
                                                  background)
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
    data = {"classes": names, "names": [f"{names[int(c)]}_{i}" for i, c in enumerate(labels)], "labels": labels.tolist(),
            "recipe": "small-set", "background": background}
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".augvae-example-", dir=root.parent))
    save_model(tmp, model, data=data, latents=latents)
    try:
        tmp.rename(root)  # whole or not at all; a concurrent writer may have won the race
    except OSError:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    return root
