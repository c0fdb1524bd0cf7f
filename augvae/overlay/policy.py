"""Label policies: which sources an image gets, with which weights and placements, and its new label.

**What a generated sample is.** For an input image ``x`` with label ``y``, sources are drawn from a
model's sources (:class:`~augvae.overlay.sources.VAESources`) under a *label policy*:

- ``same-class``: sources of class ``y``; the result keeps ``y``.
- ``onto-background``: a defect-free input gets ``k`` defect sources of one class and that class's
  label; with the latent and ``residual`` formulations a defect input gets one defect-free source
  (its defect on a new surface) and keeps ``y``; with ``transplant`` a defect input is left as it is.
- ``soft``: sources of any class; the label is a probability vector over the classes (MixUp-like,
  each part weighted by its overlay weight, the input by 1) or, with ``multilabel=True``, a multi-hot
  vector. When the result holds a defect, the defect-free class gets no mass: a crack added to a
  clean surface is a crack, not half a clean surface.

``auto`` (the default of both ``policy`` and ``formulation``) follows the measurements in the README:
a model that stores real defects gets ``transplant``, with ``onto-background`` when it was trained
with a defect-free class and ``same-class`` (defect on defect) when it was not (every ``small-set``
model stores them); a model without stored defects (the ``overlay`` recipe, or a folder from an
earlier version) gets ``residual`` and ``same-class``.

Randomness comes in a :class:`Draws` object that any library's generator can fill
(:func:`draw_torch`, :func:`draw_numpy`), so each adapter uses its own library's seeding.

Example:
    >>> import torch
    >>> from augvae.testing import example_model_folder
    >>> from augvae.overlay.sources import load_sources
    >>> src = load_sources(example_model_folder())
    >>> opts = OverlayOptions(policy="soft").resolve(src)
    >>> plan = make_plan(src, torch.tensor([0, 2]), opts, draw_torch(src, opts, 2))
    >>> labels = mix_labels(src, torch.tensor([0, 2]), plan, opts, plan.valid)
    >>> labels.shape, bool(torch.allclose(labels.sum(1), torch.ones(2)))
    (torch.Size([2, 3]), True)
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from augvae.config import TRANSPLANT_TRANSLATE, check_choice
from augvae.errors import ConfigError
from augvae.overlay._names import (
    BACKGROUND_NAMES,
    BLEND_CHOICES,
    BLENDS,
    DEFAULT_BLEND,
    DEFAULT_BLEND_ONTO_DEFECT_FREE,
    FORMULATIONS,
    POLICIES,
    default_blend,
)
from augvae.overlay.combine import check_formulation, placement_matrix, warp
from augvae.overlay.extract import EMPTY_MASK_FIX
from augvae.overlay.sources import VAESources, as_classes

__all__ = [
    "POLICIES",
    "DEFAULT_POLICY",
    "DEFAULT_BLEND",
    "DEFAULT_BLEND_ONTO_DEFECT_FREE",
    "default_blend",
    "BLEND_CHOICES",
    "BACKGROUND_NAMES",
    "OverlayOptions",
    "Draws",
    "Plan",
    "draw_torch",
    "draw_numpy",
    "make_plan",
    "no_plan",
    "mix_labels",
    "mix_class_lists",
]

#: ``auto``: ``onto-background`` for a model with real defects and a defect-free class, else ``same-class``.
DEFAULT_POLICY = "auto"


def _as_range(value: Any, name: str, lo_limit: float, hi_limit: float, example: str) -> tuple[float, float]:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        lo = hi = float(value)
    elif isinstance(value, (tuple, list)) and len(value) == 2 and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        lo, hi = float(value[0]), float(value[1])
    else:
        raise ConfigError(f"{name} must be a number or a (low, high) pair, got {value!r}; e.g. {example}")
    if not (math.isfinite(lo) and math.isfinite(hi) and lo_limit < lo <= hi <= hi_limit):
        raise ConfigError(f"{name} must satisfy {lo_limit} < low <= high <= {hi_limit}, got {value!r}; e.g. {example}")
    return lo, hi


def _check_bool(value: Any, name: str) -> None:
    if not isinstance(value, bool):
        raise ConfigError(f"{name} must be True or False, got {value!r}")


@dataclass(frozen=True)
class OverlayOptions:
    """Everything an overlay adapter needs besides the model folder: one object, shared by all four.

    Every adapter (:class:`augvae.albumentations.VAEOverlay`, :class:`augvae.torchvision.VAEOverlay`,
    :class:`augvae.torchvision.BatchVAEOverlay`, :class:`augvae.data.MixedDataset`) takes these fields
    as keyword arguments, or one ``options=OverlayOptions(...)``. Validated on construction.

    Args:
        policy: ``auto`` or one of :data:`POLICIES`.
        formulation: ``auto`` or one of :data:`augvae.overlay.FORMULATIONS`.
        k: Defects (sources) added per image.
        scale: Latent formulations: sample each source around its centre with this many posterior
            standard deviations (0 = the centres themselves).
        weight: Overlay weight of each source: a number, or ``(low, high)`` drawn uniformly per source.
        keep_input: Overlay onto the input (True) or replace it by a fresh overlay (False).
        multilabel: With ``policy="soft"``, return multi-hot labels instead of probabilities.
        blend: ``transplant``: ``auto`` (:func:`default_blend`: ``paste`` onto defect-free surfaces, else
            ``random``), ``add``, ``paste``, ``poisson`` or ``random`` (one of the three per defect).
        translate: ``transplant``: largest shift of a defect, as a fraction of the image side.
        zoom: ``transplant``: a number or ``(low, high)`` range of the defect's scale factor.
        flip: ``transplant``: a random flip / 90-degree rotation of each defect.
        rotate: ``transplant``, with ``flip``: the 90-degree rotations and transposes as well as the
            flips. False keeps each defect's orientation, for surfaces that have one (the busbars of
            a solar cell run one way: a rotated defect brings a crossways piece of busbar along).
        classes: Class names in the order of your labels (default: the model's classes).
        background_class: The defect-free class (default: the model's, else a class named like
            :data:`BACKGROUND_NAMES`).

    Example:
        >>> OverlayOptions(policy="soft", weight=(0.5, 1.0)).weight_range
        (0.5, 1.0)
        >>> OverlayOptions(policy="mixup")
        Traceback (most recent call last):
        ...
        augvae.errors.ConfigError: unknown policy 'mixup'; expected one of: auto, same-class, onto-background, soft
    """

    policy: str = DEFAULT_POLICY
    formulation: str = "auto"
    k: int = 1
    scale: float = 0.5
    weight: Any = 1.0
    keep_input: bool = True
    multilabel: bool = False
    blend: str = "auto"
    translate: float = TRANSPLANT_TRANSLATE
    zoom: Any = 1.0
    flip: bool = True
    rotate: bool = True
    classes: Any = None
    background_class: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.policy, str):
            raise ConfigError(f"policy must be a string, one of auto, {', '.join(POLICIES)}; got {self.policy!r}")
        check_choice(self.policy, ("auto", *POLICIES), "policy")
        check_formulation(self.formulation, ("auto", *FORMULATIONS))
        if isinstance(self.k, bool) or not isinstance(self.k, int) or not 1 <= self.k <= 16:
            raise ConfigError(f"k (sources per overlay) must be an integer from 1 to 16, got {self.k!r}")
        if isinstance(self.scale, bool) or not isinstance(self.scale, (int, float)) or not (math.isfinite(self.scale) and self.scale >= 0):
            raise ConfigError(f"scale must be a finite number >= 0 (posterior standard deviations), got {self.scale!r}")
        _as_range(self.weight, "weight", 0.0, 10.0, "weight=1.0 or weight=(0.5, 1.0)")
        _as_range(self.zoom, "zoom", 0.0, 4.0, "zoom=1.0 or zoom=(0.8, 1.25)")
        for name in ("keep_input", "multilabel", "flip", "rotate"):
            _check_bool(getattr(self, name), name)
        if self.multilabel and self.policy not in ("soft",):
            raise ConfigError(f"multilabel=True makes multi-hot labels, which only the 'soft' policy produces; got policy {self.policy!r}")
        if not isinstance(self.blend, str):
            raise ConfigError(f"blend must be a string, one of auto, {', '.join(BLEND_CHOICES)}; got {self.blend!r}")
        check_choice(self.blend, ("auto", *BLEND_CHOICES), "blend")
        if isinstance(self.translate, bool) or not isinstance(self.translate, (int, float)) or not 0 <= self.translate <= 1:
            raise ConfigError(f"translate must be a number in [0, 1] (a fraction of the image side), got {self.translate!r}")
        # Normalise containers so that equal options compare (and serialise) equal.
        for name in ("weight", "zoom"):
            value = getattr(self, name)
            if isinstance(value, list):
                object.__setattr__(self, name, tuple(value))
        object.__setattr__(self, "classes", as_classes(self.classes))
        if self.background_class is not None and not isinstance(self.background_class, str):
            raise ConfigError(f"background_class must be a class name (a string), got {self.background_class!r}")

    @classmethod
    def from_kwargs(cls, options: OverlayOptions | None = None, **kwargs: Any) -> OverlayOptions:
        """``options`` with ``kwargs`` applied; unknown names are refused, listing the valid ones.

        Example:
            >>> OverlayOptions.from_kwargs(k=2).k
            2
        """
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = [k for k in kwargs if k not in names]
        if unknown:
            raise ConfigError(f"unknown overlay option(s) {', '.join(map(repr, unknown))}; valid options: {', '.join(names)}")
        if options is not None and not isinstance(options, cls):
            raise ConfigError(f"options must be an augvae OverlayOptions, got {type(options).__name__}")
        return dataclasses.replace(options or cls(), **kwargs)

    def as_kwargs(self) -> dict[str, Any]:
        """The fields as a flat dict (JSON-ready: tuples stay tuples)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    @property
    def weight_range(self) -> tuple[float, float]:
        """``(low, high)`` of the per-source overlay weight."""
        return _as_range(self.weight, "weight", 0.0, 10.0, "")

    @property
    def zoom_range(self) -> tuple[float, float]:
        """``(low, high)`` of a transplanted defect's scale factor."""
        return _as_range(self.zoom, "zoom", 0.0, 4.0, "")

    @property
    def slots(self) -> int:
        """Source slots per image: ``k`` defects plus one defect-free slot (used by ``onto-background``)."""
        return self.k + 1

    @property
    def soft_labels(self) -> bool:
        """Whether labels come out as vectors over the classes."""
        return self.policy == "soft"

    @property
    def blends(self) -> tuple[str, ...]:
        """The blends that can occur (``random`` draws among all of them)."""
        return BLENDS if self.blend == "random" else (self.blend,)

    def resolve(self, src: VAESources) -> OverlayOptions:
        """The options with ``auto`` replaced by what fits ``src`` (see the module docstring)."""
        formulation = self.formulation
        if src.d_image.shape[0] > 0 and not src.has_defects and formulation in ("auto", "transplant"):
            raise ConfigError(
                f"every defect stored in {src.path or 'the sources'} has an empty mask, so a transplant would change nothing; "
                f"retrain: {EMPTY_MASK_FIX}"
            )
        if formulation == "auto":
            formulation = "transplant" if src.has_defects else "residual"
        if formulation == "transplant" and not src.has_defects:
            raise ConfigError(
                f"formulation 'transplant' needs a model that stores real defects, but {src.path} has none; train one with "
                "the small-set recipe (augvae train DATA, with --background-class ok if you have defect-free images) or use "
                "formulation='residual'"
            )
        policy = self.policy
        if policy == "auto":
            # onto-background only where the defects were extracted against the defect-free class: a --background image
            # or a class merely named like "ok" does not make the other images' defects defects on defect-free surfaces
            policy = "onto-background" if formulation == "transplant" and src.background >= 0 and src.defect_free_class else "same-class"
        blend = default_blend(policy == "onto-background") if self.blend == "auto" else self.blend
        if (formulation, policy, blend) == (self.formulation, self.policy, self.blend):
            return self
        return dataclasses.replace(self, formulation=formulation, policy=policy, blend=blend)

@dataclass
class Draws:
    """The random numbers one batch of overlays uses; any library's generator can fill them.

    Attributes:
        keys: ``(B, 2, N)`` uniform [0, 1): random priorities of the N sources (two independent draws).
        weights: ``(B, slots)`` uniform [0, 1): mapped onto the weight range.
        noise: ``(B, slots, D)`` standard normal: sampling around each source's centre.
        place: ``(B, slots, 4)`` uniform [0, 1): flip / rotation, shift and zoom of transplanted defects.
        mix: ``(B, slots)`` uniform [0, 1): which blend each transplanted defect gets (``random``).
        apply: ``(B,)`` uniform [0, 1) or None: compared with ``p`` by the batch transform.

    Example:
        >>> d = Draws(torch.rand(1, 2, 5), torch.rand(1, 2), torch.randn(1, 2, 3), torch.rand(1, 2, 4), torch.rand(1, 2))
        >>> d.to(torch.device("cpu")).keys.shape
        torch.Size([1, 2, 5])
    """

    keys: Tensor
    weights: Tensor
    noise: Tensor
    place: Tensor
    mix: Tensor
    apply: Tensor | None = None

    def to(self, device: torch.device) -> Draws:
        """The same draws on ``device``."""
        return Draws(*(None if t is None else t.to(device) for t in dataclasses.astuple(self)))  # type: ignore[arg-type]


def draw_torch(src: VAESources, opts: OverlayOptions, batch: int, generator: torch.Generator | None = None,
               device: str | torch.device | None = None) -> Draws:
    """Draws from torch: ``generator`` or, if None, the global RNG of ``device`` (``torch.manual_seed`` seeds it).

    Example:
        >>> from augvae.testing import example_model_folder
        >>> from augvae.overlay.sources import load_sources
        >>> src = load_sources(example_model_folder())
        >>> d = draw_torch(src, OverlayOptions(k=2), batch=3)
        >>> d.keys.shape, d.weights.shape, d.noise.shape, d.place.shape
        (torch.Size([3, 2, 6]), torch.Size([3, 3]), torch.Size([3, 3, 4]), torch.Size([3, 3, 4]))
    """
    dev = torch.device(device) if device is not None else (generator.device if generator is not None else src.device)
    n, d, s = src.mu.shape[0], src.mu.shape[1], opts.slots
    kw: dict[str, Any] = {"generator": generator, "device": dev}
    return Draws(torch.rand(batch, 2, n, **kw), torch.rand(batch, s, **kw), torch.randn(batch, s, d, **kw),
                 torch.rand(batch, s, 4, **kw), torch.rand(batch, s, **kw), torch.rand(batch, **kw))


def draw_numpy(src: VAESources, opts: OverlayOptions, batch: int, rng: np.random.Generator) -> Draws:
    """Draws from a numpy generator (albumentations' ``random_generator``), as CPU tensors.

    Example:
        >>> from augvae.testing import example_model_folder
        >>> from augvae.overlay.sources import load_sources
        >>> d = draw_numpy(load_sources(example_model_folder()), OverlayOptions(), 1, np.random.default_rng(0))
        >>> d.noise.dtype, d.noise.shape
        (torch.float32, torch.Size([1, 2, 4]))
    """
    n, d, s = src.mu.shape[0], src.mu.shape[1], opts.slots
    arrays = (rng.random((batch, 2, n), dtype=np.float32), rng.random((batch, s), dtype=np.float32),
              rng.standard_normal((batch, s, d), dtype=np.float32), rng.random((batch, s, 4), dtype=np.float32),
              rng.random((batch, s), dtype=np.float32), rng.random(batch, dtype=np.float32))
    return Draws(*(torch.from_numpy(a) for a in arrays))


@dataclass
class Plan:
    """Per image of a batch: the drawn sources, their weights and the new hard class.

    Attributes:
        index: ``(B, slots)`` source indices.
        weight: ``(B, slots)`` overlay weights, 0 for unused slots.
        valid: ``(B,)`` at least one source was drawn (an image of a class without sources gets none).
        target: ``(B,)`` the new hard class (-1 where there is none: the ``soft`` policy).
    """

    index: Tensor
    weight: Tensor
    valid: Tensor
    target: Tensor


def no_plan(labels: Tensor) -> Plan:
    """A plan that changes nothing (for a transform that did not fire)."""
    b = labels.shape[0]
    return Plan(index=torch.zeros(b, 1, dtype=torch.long, device=labels.device), weight=torch.zeros(b, 1, device=labels.device),
                valid=torch.zeros(b, dtype=torch.bool, device=labels.device), target=labels.long())


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


def make_plan(src: VAESources, labels: Tensor, opts: OverlayOptions, draws: Draws, size: tuple[int, int] | None = None) -> Plan:
    """Draw the sources of each image under the policy; pure tensor code (no host synchronisation).

    Args:
        src: From :func:`augvae.overlay.sources.load_sources`.
        labels: ``(B,)`` int64 class indices (-1 = unknown) on ``src.device``.
        opts: The options (``auto`` values are resolved against ``src``).
        draws: From :func:`draw_torch` / :func:`draw_numpy`, on ``src.device``.
        size: ``(height, width)`` of the images the plan is rendered onto. With it, ``transplant``
            leaves out a defect whose placed mask has no pixel above 0.5 in that frame (shifted off
            it, or too small to show on a tiny image), so that no image gets a defect's label without
            its pixels. Every entry point of augvae passes it; ``None`` skips the check.

    Example:
        >>> from augvae.testing import example_model_folder
        >>> from augvae.overlay.sources import load_sources
        >>> src = load_sources(example_model_folder())
        >>> opts = OverlayOptions(policy="onto-background", formulation="residual")
        >>> plan = make_plan(src, torch.tensor([2, 0]), opts, draw_torch(src, opts, 2))
        >>> new = plan.target.tolist()  # the clean image became a defect class; the crack stays a crack
        >>> new[0] in (0, 1), new[1]
        (True, 0)
    """
    opts = opts.resolve(src)
    b, k = labels.shape[0], opts.k
    y = labels.long()
    sc, ok = src.source_class, src.partner_ok
    if opts.formulation == "transplant":
        ok = ok & src.has_defect  # only sources with an extracted defect can be transplanted
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
        b_idx, b_got = _pick(src.partner_ok[None].expand(b, -1) & is_bg[None], keys1, 1)
        if opts.formulation == "transplant":  # a real defect needs a real defect-free surface: a defect input stays
            b_got = torch.zeros_like(b_got)
            d_got = d_got & ~y_defect[:, None] if opts.keep_input else d_got
        elif opts.keep_input:  # a clean input gets defects; a defect input gets a new surface
            d_got = d_got & ~y_defect[:, None]
            b_got = b_got & y_defect[:, None]
        idx, got = torch.cat([d_idx, b_idx], 1), torch.cat([d_got, b_got], 1)
    else:  # soft
        idx, got = _pick(defect_ok if opts.formulation == "transplant" else ok_b, keys2, k)
        idx, got = torch.cat([idx, zero_idx], 1), torch.cat([got, none], 1)
        target = torch.full_like(y, -1)
    lo, hi = opts.weight_range
    w = lo + (hi - lo) * draws.weights.to(src.mu.dtype)
    if opts.policy == "onto-background":  # the defect-free slot replaces the surface: weight 1
        w = torch.cat([w[:, :k], torch.ones_like(w[:, k:])], 1)
    if opts.formulation == "transplant" and size is not None:
        got[:, :k] &= _lands(src, idx[:, :k], opts, draws, size)
    w = torch.where(got, w, torch.zeros_like(w))
    return Plan(index=idx, weight=w, valid=got.any(1), target=target)


def _lands(src: VAESources, idx: Tensor, opts: OverlayOptions, draws: Draws, size: tuple[int, int]) -> Tensor:
    """``(B, k)`` bool: the defect of each slot keeps a mask pixel above 0.5 where render puts it.

    The same placement as :func:`~augvae.overlay.engine.render` (same draws, same matrices), on the
    masks only: one (B * k, 1, H, W) resample.
    """
    b, k = idx.shape
    if b == 0 or src.d_mask.shape[0] == 0:
        return torch.zeros(b, k, dtype=torch.bool, device=idx.device)
    height, width = size
    mask = src.d_mask[src.defect_slot[idx].clamp_min(0)]  # (B, k, 1, S, S)
    theta = placements(opts, draws, k, height, width).to(mask.dtype)
    placed = warp(mask.reshape(b * k, 1, *mask.shape[-2:]), theta.reshape(b * k, 2, 3), height, width)
    return (placed.reshape(b, k, -1) > 0.5).any(-1)


def placements(opts: OverlayOptions, draws: Draws, k: int, height: int, width: int) -> Tensor:
    """``(B, k, 2, 3)`` the sampling matrices of each slot's transplant (what render and the landing check both use)."""
    return placement_matrix(draws.place[:, :k].float(), height, width, opts.translate, opts.zoom_range, opts.flip, opts.rotate)


def _mix(total: Tensor, background: int, multilabel: bool) -> Tensor:
    """Class masses (B, K) -> labels: the defect-free class loses its mass where a defect is present."""
    if background >= 0:
        defect_mass = total.sum(1) - total[:, background]
        keep_bg = torch.where(defect_mass > 0, torch.zeros_like(defect_mass), total[:, background])
        total = torch.cat([total[:, :background], keep_bg[:, None], total[:, background + 1 :]], 1)
    if multilabel:
        return (total > 0).to(total.dtype)
    return total / total.sum(1, keepdim=True).clamp_min(1e-12)


def mix_labels(src: VAESources, labels: Tensor, plan: Plan, opts: OverlayOptions, changed: Tensor) -> Tensor:
    """The new labels: hard ``(B,)`` where the input was hard and the policy is; else ``(B, K)`` vectors.

    Args:
        labels: ``(B,)`` int64 indices or ``(B, K)`` float probability / multi-hot vectors.
        changed: ``(B,)`` bool, rows that were overlaid (elsewhere the label stays, as a vector if
            vectors come out).
    """
    k = src.num_classes
    hard_in = labels.ndim == 1
    if hard_in:
        y = labels.long()
        base = F.one_hot(y.clamp_min(0), k).to(src.mu.dtype) * (y >= 0)[:, None]
    else:
        base = labels.to(src.mu.dtype)
    opts = opts.resolve(src)
    if not opts.soft_labels:
        if hard_in:
            return torch.where(changed, plan.target, y)
        return torch.where(changed[:, None], F.one_hot(plan.target.clamp_min(0), k).to(base.dtype), base)
    cls = src.source_class[plan.index].clamp_min(0)
    parts = torch.zeros_like(base).scatter_add_(1, cls, plan.weight.to(base.dtype))
    total = parts + base if opts.keep_input else parts
    return torch.where(changed[:, None], _mix(total, src.background, opts.multilabel), base)


def mix_class_lists(class_lists: Sequence[Sequence[int]], num_classes: int, background: int, opts: OverlayOptions) -> Tensor:
    """Labels of images described by the classes they combine (e.g. a generate manifest), by the same rule.

    Example:
        >>> mix_class_lists([[0, 2], [1]], 3, 2, OverlayOptions(policy="soft")).tolist()
        [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]
    """
    total = torch.zeros(len(class_lists), num_classes)
    for row, classes in enumerate(class_lists):
        for c in classes:
            total[row, c] += 1.0
    if opts.soft_labels:
        return _mix(total, background, opts.multilabel)
    mixed = _mix(total, background, False)
    return mixed.argmax(1)
