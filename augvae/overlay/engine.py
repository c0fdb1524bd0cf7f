"""The overlay engine: the one place that turns sources, a plan and draws into images.

Every entry point calls it: the albumentations and torchvision transforms, the batch transform and
:class:`~augvae.data.MixedDataset` through :func:`overlay_batch`; ``augvae generate`` and the
benchmark through :func:`random_overlays`, :func:`transplant_onto` and :func:`overlay`. The
formulas themselves are in :mod:`augvae.overlay.combine`.

Example:
    >>> import torch
    >>> from augvae.testing import example_model_folder
    >>> from augvae.overlay.policy import OverlayOptions, draw_torch
    >>> from augvae.overlay.sources import load_sources
    >>> src = load_sources(example_model_folder())
    >>> opts = OverlayOptions(policy="soft")
    >>> images, labels = torch.rand(4, 1, 40, 40), torch.tensor([0, 1, 2, 2])
    >>> out, soft = overlay_batch(src, images, labels, opts, draw_torch(src, opts, 4, generator=torch.Generator().manual_seed(0)))
    >>> out.shape, soft.shape, bool(torch.allclose(soft.sum(1), torch.ones(4)))
    (torch.Size([4, 1, 40, 40]), torch.Size([4, 3]), True)
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch import Tensor

from augvae._convert import check_float_values
from augvae._imageops import resize
from augvae.errors import ConfigError, InputError
from augvae.overlay._names import BLENDS, default_blend
from augvae.overlay.combine import (
    FORMULATIONS,
    LATENT_FORMULATIONS,
    _background_latent,
    _weights,
    check_formulation,
    combine_rows,
    perturb,
    residual_composite,
    symmetry_code,
    transplant,
)
from augvae.overlay.policy import Draws, OverlayOptions, Plan, draw_torch, make_plan, mix_labels, placements
from augvae.overlay.sources import VAESources, sources_from_latents

__all__ = ["DEFAULT_FORMULATION", "OverlayRecord", "overlay", "render", "overlay_batch", "random_overlays", "transplant_onto"]

#: The formulation of decoded overlays (``augvae generate --mode overlay``): measured best on procedural
#: data where every defect pixel is known (README, "Which overlay formulation").
DEFAULT_FORMULATION = "residual"


def overlay(model: Any, z: Tensor, formulation: str = DEFAULT_FORMULATION, z_background: Tensor | None = None,
            x_background: Tensor | None = None, weights: Any = None, center_residual: bool = False) -> Tensor:
    """Decode overlays of ``k`` sources for a batch of latents, in one decoder pass.

    Args:
        model: The VAE.
        z: (B, k, D) source latents (cluster centres, or samples around them).
        formulation: ``sum``, ``mean``, ``offset`` or ``residual``.
        z_background: (D,) or (B, D) defect-free latent; needed by ``offset`` and ``residual``.
        x_background: (B, C, S, S) images to composite onto (``residual`` only); default the
            decoded ``z_background``.
        weights: k weights (default all 1, the paper's plain sum).
        center_residual: ``residual`` only: zero-centre each residual image.

    Returns:
        (B, C, S, S) images in [0, 1], on the model's device.

    Example:
        >>> from augvae import ConvVAE
        >>> model = ConvVAE(image_size=28, latent_dim=4)
        >>> z = torch.randn(3, 4)
        >>> overlay(model, z[None, :2], formulation="sum").shape
        torch.Size([1, 1, 28, 28])
        >>> overlay(model, z[None, :2], formulation="residual", z_background=z[2:3]).shape
        torch.Size([1, 1, 28, 28])
    """
    check_formulation(formulation, tuple(f for f in FORMULATIONS if f != "transplant"))
    z = z.to(model.device)
    b, k, d = z.shape
    w = _weights(weights, b, k, z)
    zb = _background_latent(z_background, z) if formulation != "sum" and formulation != "mean" else None
    if formulation != "residual":
        return model.decode(combine_rows(z, w, formulation, zb))
    # One background latent for every row (the usual case) is decoded once, not B times.
    shared = z_background is not None and (z_background.ndim == 1 or z_background.shape[0] == 1)
    assert zb is not None
    dec = model.decode(torch.cat([z.reshape(b * k, d), zb[:1] if shared else zb]))  # one decoder pass
    x_src, x_bg = dec[: b * k].view(b, k, *dec.shape[1:]), dec[b * k :]
    base = (x_bg.expand(b, *dec.shape[1:]) if shared else x_bg) if x_background is None else x_background.to(dec)
    return residual_composite(base, x_src, x_bg, w, center_residual)


def _match_channels(src: VAESources, channels: int, opts: OverlayOptions) -> None:
    c = src.channels
    if channels == c:
        return
    if c == 1 and channels == 3 and (opts.formulation in ("residual", "transplant") or not opts.keep_input):
        return  # a grayscale model's residual or defect (or fresh image) is applied to every colour channel
    if c == 1:
        raise InputError(
            f"the model {src.path} is grayscale but the image has {channels} channels; the {opts.formulation!r} formulation "
            "re-decodes the whole image and would lose its colour: use formulation='transplant' or 'residual', a colour model, "
            "or grayscale images"
        )
    raise InputError(
        f"the model {src.path} takes {c}-channel (colour) images but the image has {channels} channel(s); convert the images "
        "to RGB (e.g. PIL .convert('RGB')) or train a grayscale model (--channels 1)"
    )


def _blend_codes(opts: OverlayOptions, mix: Tensor) -> Tensor:

    if opts.blend == "random":
        return (mix * len(BLENDS)).long().clamp(0, len(BLENDS) - 1)
    return torch.full_like(mix, BLENDS.index(opts.blend), dtype=torch.long)


@torch.no_grad()
def render(src: VAESources, images: Tensor, plan: Plan, opts: OverlayOptions, draws: Draws, sparse: bool | None = None) -> Tensor:
    """The overlaid images, ``(B, C, H, W)`` float in [0, 1], at the input's size.

    ``images`` are float in [0, 1] on ``src.device``; rows without a valid plan come back as they
    were. ``sparse`` (``residual``): decode only the (image, source) pairs that carry weight, a
    data-dependent selection that would cost an accelerator a host synchronisation; ``None`` means
    on CPU only. Both give the same images.
    """
    opts = opts.resolve(src)
    b, ch, h, w_ = images.shape
    _match_channels(src, ch, opts)
    model, k = src.model, opts.k
    idx, w = plan.index, plan.weight
    base = images if opts.keep_input else resize(src.x_ref, h, w_).expand(b, ch, h, w_)
    if opts.formulation == "transplant":
        slot = src.defect_slot[idx[:, :k]].clamp_min(0)  # (B, k); unused slots carry weight 0
        theta = placements(opts, draws, k, h, w_).to(images.dtype)
        out = transplant(base, src.d_image[slot], src.d_residual[slot], src.d_mask[slot], theta, w[:, :k].to(images.dtype),
                         _blend_codes(opts, draws.mix[:, :k]), opts.blends)
        return torch.where(plan.valid[:, None, None, None], out.to(images.dtype), images)
    z = perturb(src.mu[idx], src.logvar[idx], opts.scale, draws.noise)
    if opts.formulation == "residual":
        if opts.policy != "onto-background":  # the extra defect-free slot is only ever filled by onto-background
            z, w = z[:, :k], w[:, :k]
        s = z.shape[1]
        if sparse if sparse is not None else images.device.type == "cpu":
            # On CPU a data-dependent selection costs no device round trip: decode only the (image, slot)
            # pairs that carry weight in an overlaid image; the others add exactly zero.
            row, col = ((w != 0) & plan.valid[:, None]).nonzero(as_tuple=True)
            dec = torch.zeros(b, s, src.channels, src.image_size, src.image_size, dtype=src.x_ref.dtype, device=images.device)
            dec[row, col] = model.decode(z[row, col])
            dec = torch.where((w != 0)[..., None, None, None], dec, src.x_ref[None])  # unused slots add exactly zero
        else:
            dec = model.decode(z.reshape(b * s, -1)).view(b, s, src.channels, src.image_size, src.image_size)
        out = residual_composite(base, dec, src.x_ref, w, src.center_residual)
    else:
        if opts.keep_input:  # the input image is one more source, of weight 1
            z_x = model.encode(resize(images, src.image_size, src.image_size).to(src.mu.dtype))[0]
            z, w = torch.cat([z_x[:, None], z], 1), torch.cat([torch.ones_like(w[:, :1]), w], 1)
        dec = model.decode(combine_rows(z, w, opts.formulation, src.z_ref.to(z).expand(b, -1)))
        out = resize(dec, h, w_).expand(b, ch, h, w_)
    out = out.clamp(0.0, 1.0).to(images.dtype)
    return torch.where(plan.valid[:, None, None, None], out, images)


def overlay_batch(src: VAESources, images: Tensor, labels: Tensor, opts: OverlayOptions, draws: Draws,
                  p: float = 1.0, sparse: bool | None = None) -> tuple[Tensor, Tensor]:
    """Plan, render and relabel a float batch, on ``images.device``: what every adapter calls.

    Args:
        src: From :func:`~augvae.overlay.sources.load_sources` on the images' device.
        images: ``(B, C, H, W)`` float in [0, 1].
        labels: ``(B,)`` int64 or ``(B, K)`` float.
        opts: The options (``auto`` values are resolved against ``src``).
        draws: Random numbers for the batch.
        p: Probability of overlaying each image (compared with ``draws.apply``).
        sparse: See :func:`render`.

    Returns:
        ``(images, labels)``; labels as in :func:`~augvae.overlay.policy.mix_labels`.
    """
    opts = opts.resolve(src)
    dev = images.device
    draws = draws.to(dev)
    hard = labels.to(dev).long() if labels.ndim == 1 else labels.to(dev).argmax(1)
    plan = make_plan(src, hard, opts, draws, size=(images.shape[-2], images.shape[-1]))
    if p < 1.0 and draws.apply is not None:
        plan.valid = plan.valid & (draws.apply < p)
    out = render(src, images, plan, opts, draws, sparse=sparse)
    return out, mix_labels(src, labels.to(dev), plan, opts, plan.valid)


# ---------------------------------------------------------------------------------- records
@dataclass
class OverlayRecord:
    """What one generated image combines: which sources (and classes), onto what, placed and blended how."""

    index: int
    sources: list[str]
    classes: list[str]
    formulation: str
    background: str | None
    placement: list[str] = field(default_factory=list)  #: per transplanted defect: "flip/rotation code, dy, dx, zoom"
    blends: list[str] = field(default_factory=list)

    def row(self) -> dict[str, Any]:
        """A flat dict for a CSV manifest."""
        out = {"index": self.index, "sources": "+".join(self.sources), "classes": "+".join(self.classes),
               "formulation": self.formulation, "background": self.background or ""}
        if self.formulation == "transplant":
            out.update(placement=" | ".join(self.placement), blend="+".join(self.blends))
        return out


def _records(src: VAESources, plan: Plan, opts: OverlayOptions, draws: Draws, backgrounds: list[str], height: int, width: int,
             start: int = 0) -> list[OverlayRecord]:

    codes = _blend_codes(opts, draws.mix).tolist()
    out = []
    for i in range(plan.index.shape[0]):
        used = [j for j in range(plan.index.shape[1]) if float(plan.weight[i, j]) != 0]
        srcs = [int(plan.index[i, j]) for j in used]
        rec = OverlayRecord(start + i, [src.names[s] for s in srcs], [src.classes[int(src.source_class[s])] for s in srcs],
                            opts.formulation, backgrounds[i] if backgrounds else None)
        if opts.formulation == "transplant":
            u = draws.place[i]
            # as render's placements draw them (no transpose on a non-square image)
            sym = symmetry_code(u[:, 0], opts.flip, opts.rotate, square=height == width).tolist()
            for j in used:
                code = sym[j]
                dy = round(float(2 * u[j, 2] - 1) * opts.translate * height)
                dx = round(float(2 * u[j, 1] - 1) * opts.translate * width)
                lo, hi = opts.zoom_range
                rec.placement.append(f"d4={code} dy={dy} dx={dx} zoom={lo + (hi - lo) * float(u[j, 3]):.3f}")
                rec.blends.append(BLENDS[codes[i][j]])
        out.append(rec)
    return out


# ---------------------------------------------------------------------------------- batch generators
@torch.no_grad()
def random_overlays(model: Any, mu: Tensor, logvar: Tensor, names: list[str], classes: list[str], n: int, k: int = 2,
                    formulation: str = DEFAULT_FORMULATION, background: int | None = None, scale: float = 0.0,
                    same_class: bool = False, generator: torch.Generator | None = None,
                    batch_size: int = 256) -> tuple[Tensor, list[OverlayRecord]]:
    """``n`` fresh (decoded) overlays, each of ``k`` distinct randomly drawn sources.

    Args:
        mu, logvar: (N, D) latents of the N sources.
        names, classes: Per-source name and class name.
        background: Index of the defect-free source (the reference of ``offset``/``residual``, never
            drawn as a defect); default for those formulations: the centroid of all sources.
        scale: Sample around each centre with this multiple of the posterior std (0 = centres).
        same_class: Draw the k sources from one class only.

    Returns:
        ``(images (n, C, S, S) on CPU, records)``.
    """
    if n < 1 or k < 1:
        raise ConfigError(f"n and k must be >= 1, got n={n}, k={k}")
    check_formulation(formulation, LATENT_FORMULATIONS + ("residual",))
    src = sources_from_latents(model, mu.to(model.device), logvar.to(model.device), classes, names, background)
    opts = OverlayOptions(policy="same-class" if same_class else "soft", formulation=formulation, k=k, scale=scale,
                          keep_input=False, blend="add")
    eligible = src.partner_ok & (src.source_class != src.background if src.background >= 0 else src.partner_ok)
    counts = torch.bincount(src.source_class[eligible].clamp_min(0), minlength=src.num_classes)
    if same_class and not bool((counts >= k).any()):
        raise ConfigError(f"no class has {k} distinct sources to combine; lower k or drop same_class")
    if not same_class and int(eligible.sum()) < k:
        raise ConfigError(f"k={k} distinct sources were asked for but only {int(eligible.sum())} are available; lower k")
    gen = generator if generator is not None else torch.Generator().manual_seed(0)
    images, records = [], []
    for start in range(0, n, batch_size):
        m = min(batch_size, n - start)
        draws = draw_torch(src, opts, m, generator=gen, device="cpu").to(src.device)
        # Same-class: a class with enough sources, uniformly; soft: any k distinct sources.
        y = torch.full((m,), -1, dtype=torch.long, device=src.device)
        if same_class:
            ok_classes = (counts >= k).nonzero().flatten()
            y = ok_classes[(torch.rand(m, generator=gen) * len(ok_classes)).long().clamp_max(len(ok_classes) - 1)].to(src.device)
        plan = make_plan(src, y, opts, draws, size=(src.image_size, src.image_size))
        base = torch.zeros(m, src.channels, src.image_size, src.image_size, device=src.device)
        images.append(render(src, base, plan, opts, draws).cpu())
        bg_name = names[background] if background is not None else ("centroid" if formulation in ("offset", "residual") else None)
        records += _records(src, plan, opts, draws, [bg_name] * m if bg_name else [], src.image_size, src.image_size, start)
    return torch.cat(images), records


@torch.no_grad()
def transplant_onto(src: VAESources, backgrounds: Tensor, background_names: list[str], opts: OverlayOptions,
                    generator: torch.Generator | None = None, batch_size: int = 256) -> tuple[Tensor, Tensor, list[OverlayRecord]]:
    """Put real defects onto each of ``backgrounds`` (defect-free images), under ``opts`` (``transplant``).

    Args:
        src: Sources of a model with stored defects.
        backgrounds: ``(n, C, H, W)`` defect-free images in [0, 1].
        background_names: One name per background image (for the records).
        opts: Options; the formulation is ``transplant``, the policy ``onto-background`` or ``soft``.

    Returns:
        ``(images (n, C, H, W), labels, records)``: labels are class indices (``onto-background``) or
        vectors (``soft``).
    """
    opts = OverlayOptions.from_kwargs(opts, formulation="transplant")
    if opts.blend == "auto":  # the backgrounds are defect-free whatever the label policy (soft included)
        opts = replace(opts, blend=default_blend(onto_defect_free=True))
    opts = opts.resolve(src)
    if not isinstance(backgrounds, Tensor) or backgrounds.ndim != 4 or not backgrounds.is_floating_point() or not len(backgrounds):
        what = f"shape {tuple(backgrounds.shape)}, dtype {backgrounds.dtype}" if isinstance(backgrounds, Tensor) else type(backgrounds).__name__
        raise InputError(f"backgrounds must be a non-empty float tensor (N, C, H, W) in [0, 1], got {what}; divide 8-bit images by "
                         "255 and add a batch dimension")
    if len(background_names) != len(backgrounds):
        raise InputError(f"{len(backgrounds)} backgrounds but {len(background_names)} background_names; pass one name per image")
    check_float_values(backgrounds, "backgrounds")
    if src.background < 0:
        raise ConfigError(f"{src.path} has no defect-free class, so nothing tells which images are defect-free; train it with "
                          "--background-class")
    gen = generator if generator is not None else torch.Generator().manual_seed(0)
    images, labels, records = [], [], []
    for start in range(0, backgrounds.shape[0], batch_size):
        x = backgrounds[start : start + batch_size].to(src.device)
        y = torch.full((x.shape[0],), src.background, dtype=torch.long, device=src.device)
        draws = draw_torch(src, opts, x.shape[0], generator=gen, device="cpu").to(src.device)
        plan = make_plan(src, y, opts, draws, size=(x.shape[-2], x.shape[-1]))
        images.append(render(src, x, plan, opts, draws).cpu())
        labels.append(mix_labels(src, y, plan, opts, plan.valid).cpu())
        records += _records(src, plan, opts, draws, background_names[start : start + x.shape[0]], x.shape[-2], x.shape[-1], start)
    return torch.cat(images), torch.cat(labels), records

