"""Training a :class:`~augvae.ConvVAE`: one loop, both of the paper's recipes, resumable.

- ``small-set`` (paper section 3): every image, shuffled each epoch.
- ``overlay`` (paper section 4): a few source images, ``copies`` of each per epoch, every minibatch
  holding every source. Copies are drawn by :class:`OverlayBatchSampler`; nothing is duplicated in
  memory. The reparameterization noise makes each copy a different point of its source's cluster.

Randomness comes from one generator per epoch seeded by ``(seed, epoch)``, so a run resumed from an
epoch checkpoint ends with the same weights as an uninterrupted one (on CPU, with the same number
of threads; the CLI also sets ``MKL_DYNAMIC=FALSE`` so that MKL does not change its thread count
under load — set it yourself before importing torch for bit-exact runs from Python).

Example:
    >>> import torch
    >>> from augvae.config import ModelConfig, recipe_config
    >>> images = torch.rand(6, 1, 28, 28)
    >>> result = train(images, ModelConfig(image_size=28), recipe_config("small-set", epochs=2, batch_size=3), progress=False)
    >>> len(result.history)
    2
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from tqdm.auto import tqdm

from augvae._device import resolve_device
from augvae._io import check_output_folder, output_lock, save_tensors, write_csv
from augvae.checkpoint import (
    CHECKPOINT_FILE,
    CONFIG_FILE,
    DEFECTS_FILE,
    LATENTS_FILE,
    WEIGHTS_FILE,
    read_config,
    read_tensors,
    write_config,
)
from augvae.config import ExtractConfig, ModelConfig, TrainConfig, config_to_dict, recipe_config
from augvae.data.images import ImageSet
from augvae.errors import ConfigError, DataError, ModelFolderError, OutputError, TrainingDivergedError
from augvae.figures import plot_history
from augvae.model import ConvVAE, check_images
from augvae.overlay.extract import EMPTY_MASK_FIX, extract_defects, usable_defects, vae_projector

__all__ = ["train", "check_model_output", "TrainResult", "OverlayBatchSampler", "resolve_device", "active_units", "epoch_lr"]

log = logging.getLogger("augvae")

#: A latent dimension whose batch-mean KL stays below this many nats carries no information.
ACTIVE_KL_NATS = 0.01


class OverlayBatchSampler:
    """Batches for the overlay recipe: every batch holds every source, ``copies`` each per epoch.

    Each batch gives ``batch_size // n`` slots to every source and the remaining slots to sources
    in rotation, so over an epoch each source is seen ``copies`` times (up to rounding).

    Example:
        >>> s = OverlayBatchSampler(n_sources=3, copies=5, batch_size=5, generator=torch.Generator().manual_seed(0))
        >>> batches = list(s)
        >>> all(set(b) == {0, 1, 2} for b in batches), sum(len(b) for b in batches)
        (True, 15)
    """

    def __init__(self, n_sources: int, copies: int, batch_size: int, generator: torch.Generator) -> None:
        if batch_size < n_sources:
            raise ConfigError(
                f"the overlay recipe needs batch_size >= the number of sources ({n_sources}) so every minibatch holds "
                f"every source; got batch_size {batch_size}: raise --batch-size or pass fewer sources"
            )
        self.n, self.copies, self.batch_size, self.generator = n_sources, copies, batch_size, generator

    def __len__(self) -> int:
        return math.ceil(self.n * self.copies / self.batch_size)

    def __iter__(self) -> Iterator[list[int]]:
        total, rot = self.n * self.copies, 0
        for b in range(len(self)):
            size = min(self.batch_size, total - b * self.batch_size)
            base, extra = divmod(size, self.n)
            idx = [i for i in range(self.n) for _ in range(base)]
            idx += [(rot + j) % self.n for j in range(extra)]
            rot = (rot + extra) % self.n
            if base == 0:  # a short last batch: still as many distinct sources as fit
                idx = sorted(set(idx))
            perm = torch.randperm(len(idx), generator=self.generator).tolist()
            yield [idx[p] for p in perm]


@dataclass
class TrainResult:
    """What :func:`train` returns."""

    model: ConvVAE
    history: list[dict[str, float]]
    mu: Tensor  #: (N, D) latent means of the training images
    logvar: Tensor  #: (N, D)
    active_units: int  #: latent dimensions that carry information (KL above 0.01 nats)
    out_dir: Path | None = None
    warnings: list[str] = field(default_factory=list)
    defects: dict[str, Tensor] | None = None  #: image, projection, residual, mask of the defect sources


def active_units(kl_per_dim: Tensor, threshold: float = ACTIVE_KL_NATS) -> int:
    """Count latent dimensions whose mean KL is above ``threshold`` nats (the rest collapsed)."""
    return int((kl_per_dim > threshold).sum())


def epoch_lr(cfg: TrainConfig, epoch: int) -> float:
    """The learning rate of ``epoch`` (1-based): ``cfg.lr`` throughout, or a half cosine from ``cfg.lr`` to ``cfg.lr / 20``.

    Example:
        >>> cfg = recipe_config("overlay", epochs=3, lr_schedule="cosine")
        >>> [round(epoch_lr(cfg, e), 6) for e in (1, 2, 3)]
        [0.002, 0.00105, 0.0001]
    """
    if cfg.lr_schedule == "constant" or cfg.epochs == 1:
        return cfg.lr
    floor = cfg.lr / 20
    return floor + (cfg.lr - floor) * 0.5 * (1.0 + math.cos(math.pi * (epoch - 1) / (cfg.epochs - 1)))


def _epoch_generator(seed: int, epoch: int) -> torch.Generator:
    # One stream per epoch: resuming at an epoch boundary reproduces the uninterrupted run.
    return torch.Generator().manual_seed(seed * 1_000_003 + epoch)


def _make_optimizer(model: ConvVAE, cfg: TrainConfig) -> torch.optim.Optimizer:
    if cfg.optimizer == "rmsprop":
        # Keras RMSprop defaults (rho 0.9, epsilon 1e-7), as the paper used them.
        return torch.optim.RMSprop(model.parameters(), lr=cfg.lr, alpha=0.9, eps=1e-7)
    return torch.optim.Adam(model.parameters(), lr=cfg.lr)


def _flatten_optimizer(opt: torch.optim.Optimizer) -> tuple[dict[str, Tensor], dict[str, Any]]:
    sd = opt.state_dict()
    tensors = {f"optim.{pid}.{k}": v for pid, st in sd["state"].items() for k, v in st.items() if isinstance(v, Tensor)}
    return tensors, {"param_groups": sd["param_groups"]}


def _restore_optimizer(opt: torch.optim.Optimizer, tensors: dict[str, Tensor], meta: dict[str, Any]) -> None:
    state: dict[int, dict[str, Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, pid, name = key.split(".", 2)
            state.setdefault(int(pid), {})[name] = value
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


def _as_images(data: ImageSet | Tensor) -> tuple[Tensor, Tensor, list[str], list[str]]:
    if isinstance(data, ImageSet):
        return data.images, data.labels, list(data.classes), [Path(p).stem for p in data.paths]
    if isinstance(data, Tensor):
        n = data.shape[0] if data.ndim == 4 else 0
        return data, torch.zeros(n, dtype=torch.long), ["images"], [f"image_{i}" for i in range(n)]
    raise DataError(f"training data must be an augvae ImageSet or a (N, C, H, W) tensor, got {type(data).__name__}")


#: Without a defect-free class, at most this many images store their defect (see :func:`train`).
MAX_OWN_DEFECTS = 2048


def _even_subset(labels: Tensor, n: int) -> Tensor:
    """Sorted positions of ``n`` of ``labels``, taken round-robin over the classes (a fixed shuffle within each)."""
    gen = torch.Generator().manual_seed(0)
    ranked: list[tuple[int, int]] = []  # (rank within its class, position): rank r of every class before rank r + 1
    for c in labels.unique():
        idx = (labels == c).nonzero().flatten()
        ranked += enumerate(idx[torch.randperm(len(idx), generator=gen)].tolist())
    return torch.tensor(sorted(i for _, i in sorted(ranked)[:n]), dtype=torch.long)


def _split_by_background(labels: Tensor, classes: list[str], background_class: str | None, train_on_defects: bool,
                         recipe: str, background: int | None = None) -> tuple[Tensor, Tensor, Tensor | None]:
    """Indices of the images the VAE trains on, of the defect images, and of the defect-free ones (or None)."""
    every = torch.arange(labels.shape[0])
    not_ref = every != background if background is not None else torch.ones_like(every, dtype=torch.bool)  # never a defect
    if background_class is None:
        if recipe == "overlay":  # each source is its own latent cluster and decodes as itself: no residual to extract
            return every, every[:0], None
        # No defect-free class (defect on defect): every image is a defect source, its defect extracted against its
        # own projection; the benchmark measured this transplant on NEU (benchmarks/results/neu/).
        return every, every[not_ref], None
    if recipe != "small-set":
        raise ConfigError("--background-class trains the VAE on the defect-free images with the small-set recipe; drop --recipe overlay")
    if background_class not in classes:
        raise DataError(f"background class {background_class!r} is not one of the classes ({', '.join(classes)}); "
                        "pass the name of the defect-free class folder")
    clean = labels == classes.index(background_class)
    if int(clean.sum()) < 2:
        raise DataError(f"background class {background_class!r} has {int(clean.sum())} image(s); the VAE of the defect-free "
                        "surfaces needs at least 2 (put defect-free images in its folder)")
    if bool(clean.all()):
        raise DataError(f"every image is of the background class {background_class!r}: there are no defects to extract; "
                        "add class folders with defect images")
    return (every if train_on_defects else every[clean]), every[~clean & not_ref], every[clean]


def train(
    data: ImageSet | Tensor,
    model_config: ModelConfig | None = None,
    train_config: TrainConfig | None = None,
    *,
    out_dir: str | os.PathLike[str] | None = None,
    resume: bool = False,
    progress: bool = True,
    stop_after_epoch: int | None = None,
    background: int | None = None,
    background_class: str | None = None,
    train_on_defects: bool = False,
    extract: ExtractConfig | None = None,
    masks: Tensor | None = None,
    names: Sequence[str] | None = None,
) -> TrainResult:
    """Train a VAE on ``data`` with a recipe; optionally save a model folder as it goes.

    Args:
        data: An :class:`~augvae.data.images.ImageSet` (from :func:`augvae.data.load_folder`) or a
            ``(N, C, S, S)`` float tensor in [0, 1]. For the ``overlay`` recipe these are the sources.
        model_config: The architecture; its ``image_size`` and ``channels`` must match the data.
            Default: the paper's model at the data's size and channels.
        train_config: Recipe and optimizer settings; default the ``small-set`` recipe.
        out_dir: A model folder to write: config first, then weights, a resumable checkpoint and
            the history after each ``checkpoint_every`` epochs, then latents, defects and the loss plot.
        resume: Continue from ``out_dir/checkpoint.safetensors`` if there is one.
        progress: Show a progress bar.
        stop_after_epoch: Stop (with a checkpoint) after this epoch, as an interruption would.
        background: Index of one defect-free image in ``data``: stored as the reference of the
            ``offset`` and ``residual`` overlays, and never drawn as a defect.
        background_class: The defect-free class of ``data``: the VAE trains on its images only (unless
            ``train_on_defects``), and every other image becomes a defect source whose real defect
            (image, projection, residual, mask) is stored for the ``transplant`` formulation. Without
            it (``small-set`` recipe), every image (but ``background``) is a defect source, its defect
            extracted against its own projection and its own residual statistics (defect on defect),
            so the transforms default to ``transplant`` there too (at most :data:`MAX_OWN_DEFECTS`
            images, spread evenly over the classes); the ``overlay`` recipe stores none.
        train_on_defects: With ``background_class``: train on the defect images too.
        extract: How defects are extracted (default :class:`~augvae.config.ExtractConfig`).
        masks: ``(M, 1, S, S)`` pixel masks of the M defect images (in ``data`` order), used instead of
            the estimated masks.
        names: A distinct name per image (default the file stems), stored as the sources' names.

    Returns:
        A :class:`TrainResult` with the trained model (in eval mode) and its history.
    """
    images, labels, classes, stems = _as_images(data)
    names = list(names) if names is not None else stems
    if len(names) != images.shape[0]:
        raise DataError(f"{len(names)} names for {images.shape[0]} images; give one name per image")
    if images.ndim != 4 or images.shape[0] == 0:
        raise DataError(f"training data must be a non-empty (N, C, H, W) batch, got shape {tuple(images.shape)}")
    train_config = train_config or recipe_config("small-set")
    if model_config is None:
        model_config = ModelConfig(image_size=images.shape[-1], channels=images.shape[1])
    check_images(images, model_config.channels, model_config.image_size, "training images")
    extract = extract or ExtractConfig()
    fit_idx, defect_idx, clean_idx = _split_by_background(labels, classes, background_class, train_on_defects, train_config.recipe,
                                                          background)
    if masks is not None and not defect_idx.numel():
        raise ConfigError("masks replace the estimated masks of the extracted defects, and the overlay recipe extracts none; "
                          "drop the masks (--masks) or train with the small-set recipe")
    if masks is not None and tuple(masks.shape) != (len(defect_idx), 1, *images.shape[-2:]):
        raise DataError(f"masks must be one (1, {images.shape[-1]}, {images.shape[-1]}) mask per defect image "
                        f"({len(defect_idx)}), got shape {tuple(masks.shape)}")
    if background_class is None and len(defect_idx) > MAX_OWN_DEFECTS:
        # Defect on defect, a large folder: a pool of this many, spread evenly over the classes, is plenty to draw
        # from, and bounds defects.safetensors (image, projection, residual, mask: about 4 x MAX_OWN_DEFECTS images).
        keep = _even_subset(labels[defect_idx], MAX_OWN_DEFECTS)
        log.info("storing the defects of %d of the %d images (spread over the classes; at most %d)", len(keep), len(defect_idx),
                 MAX_OWN_DEFECTS)
        defect_idx, masks = defect_idx[keep], masks[keep] if masks is not None else None
    n = fit_idx.numel()
    if train_config.recipe == "overlay":
        if n < 2:
            raise DataError(f"the overlay recipe combines sources: it needs at least 2 source images, got {n}; pass more --sources")
        if n > 64:
            log.warning("the overlay recipe with %d sources: it is meant for a few sources (the paper used 3)", n)
        OverlayBatchSampler(n, train_config.copies, train_config.batch_size, torch.Generator())  # validates batch size
    elif n < 2:
        raise DataError(f"the small-set recipe needs at least 2 images, got {n}; add images to the folder")
    if background is not None and not 0 <= background < images.shape[0]:
        raise ConfigError(f"background index {background} is outside the {images.shape[0]} training images")
    batches_per_epoch = OverlayBatchSampler(n, train_config.copies, train_config.batch_size, torch.Generator()).__len__() \
        if train_config.recipe == "overlay" else math.ceil(n / train_config.batch_size)
    _check_work(batches_per_epoch * train_config.epochs, train_config)

    device = resolve_device(train_config.device)
    torch.manual_seed(train_config.seed)  # the initial weights
    model = ConvVAE(model_config).to(device)
    optimizer = _make_optimizer(model, train_config)
    history: list[dict[str, float]] = []
    start_epoch = 1
    data_desc = {"classes": classes, "names": names, "labels": labels.tolist(), "recipe": train_config.recipe,
                 "background": background, "background_class": background_class, "defect_sources": defect_idx.tolist()}

    root = Path(out_dir) if out_dir is not None else None
    if root is not None:
        check_model_output(root)
    lock = output_lock(root) if root is not None else None
    if lock is not None:
        lock.__enter__()
    try:
        if root is not None:
            ckpt = root / CHECKPOINT_FILE
            if resume and ckpt.exists():
                start_epoch, history = _resume(root, model, optimizer, model_config, train_config, data_desc)
                log.info("resuming %s from epoch %d", root, start_epoch)
            elif not resume and ((root / WEIGHTS_FILE).exists() or ckpt.exists()):
                raise ConfigError(f"{root} already holds a model; pass --resume to continue it, or delete the folder (or "
                                  "choose another --out) to start fresh")
            write_config(root, model_config, train_config, data_desc, extract if defect_idx.numel() else None)

        fit_images = images[fit_idx].to(device)  # (n, C, S, S): what the VAE learns
        bar = tqdm(range(start_epoch, train_config.epochs + 1), desc="train VAE", disable=not progress, unit="epoch",
                   initial=start_epoch - 1, total=train_config.epochs)
        for epoch in bar:
            gen = _epoch_generator(train_config.seed, epoch)
            for group in optimizer.param_groups:
                group["lr"] = epoch_lr(train_config, epoch)
            # KL warm-up: beta ramps linearly from 0 over the first kl_warmup_epochs epochs.
            ramp = min(1.0, epoch / train_config.kl_warmup_epochs) if train_config.kl_warmup_epochs else 1.0
            beta = model_config.beta * ramp
            if train_config.recipe == "overlay":
                batches: Any = OverlayBatchSampler(n, train_config.copies, train_config.batch_size, gen)
            else:
                batches = torch.randperm(n, generator=gen).split(train_config.batch_size)
            model.train()
            t0 = time.perf_counter()
            sums = torch.zeros(3, dtype=torch.float64)
            kl_dims = torch.zeros(model_config.latent_dim, dtype=torch.float64)
            n_batches = 0
            # Very long epochs (the overlay recipe with many copies) get a progress bar of their own.
            inner = tqdm(batches, desc=f"epoch {epoch}", leave=False, unit="batch", disable=not progress or len(batches) < 2000)
            for idx in inner:
                x = fit_images[torch.as_tensor(idx, device=device)]  # (B, C, S, S)
                out = model(x, generator=gen)
                terms = model.loss(x, out, beta)
                optimizer.zero_grad(set_to_none=True)
                terms.loss.backward()
                optimizer.step()
                sums += torch.tensor([terms.loss.item(), terms.recon.item(), terms.kl.item()], dtype=torch.float64)
                kl_dims += terms.kl_per_dim.detach().cpu().double()
                n_batches += 1
            mean = (sums / n_batches).tolist()
            why = divergence(mean[0] if all(math.isfinite(v) for v in mean) else math.nan, [row["loss"] for row in history],
                             model_config.channels * model_config.image_size**2 + model_config.latent_dim,
                             final=epoch == train_config.epochs or epoch == stop_after_epoch)
            if why:
                kept = f"; {root} keeps the checkpoint of epoch {history[-1]['epoch']}" if root is not None and history else ""
                where = f": delete {root} (or choose another --out) and " if root is not None else ": "
                raise TrainingDivergedError(f"training diverged at epoch {epoch} ({why}){kept}{where}retry with a lower "
                                            f"--lr (now {train_config.lr}) or --optimizer adam", reason=why, epoch=epoch)
            kl_dims /= n_batches
            row = {"epoch": epoch, "loss": mean[0], "recon": mean[1], "kl": mean[2], "beta": beta,
                   "active_units": active_units(kl_dims), "seconds": time.perf_counter() - t0}
            history.append(row)
            bar.set_postfix(loss=f"{mean[0]:.1f}", recon=f"{mean[1]:.1f}", kl=f"{mean[2]:.2f}")
            last = epoch == train_config.epochs or epoch == stop_after_epoch
            if root is not None and (epoch % train_config.checkpoint_every == 0 or last):
                _save_checkpoint(root, model, optimizer, epoch, history)
            if stop_after_epoch is not None and epoch >= stop_after_epoch and epoch < train_config.epochs:
                break
        bar.close()

        model.eval()
        # Every image is a source; the training images go first so that the first batch's activations are theirs.
        order = torch.cat([fit_idx, torch.tensor([i for i in range(images.shape[0]) if i not in set(fit_idx.tolist())],
                                                 dtype=torch.long)])
        mu_o, logvar_o, hidden = _encode_all(model, images[order], device)
        mu, logvar = torch.empty_like(mu_o), torch.empty_like(logvar_o)
        mu[order], logvar[order] = mu_o, logvar_o
        result = TrainResult(model=model, history=history, mu=mu, logvar=logvar, active_units=0, out_dir=root)
        with torch.no_grad():
            _check_collapse(result, model_config, mu[fit_idx], logvar[fit_idx], hidden)
        if defect_idx.numel():
            # The per-pixel statistics of the defect-free residuals, or (None) each image's own median and spread.
            ref = None if clean_idx is None else images[clean_idx[torch.randperm(len(clean_idx), generator=torch.Generator().manual_seed(0))]]
            result.defects = extract_defects(images[defect_idx], vae_projector(model), extract, reference=ref, masks=masks)
            empty = int((~usable_defects(result.defects["mask"])).sum())
            if empty:
                fix = "check those masks" if masks is not None else EMPTY_MASK_FIX
                log.warning("%d of %d defect images have an empty mask (no pixel above 0.5), so they will not be transplanted; %s",
                            empty, defect_idx.numel(), fix)
        finished = bool(history) and history[-1]["epoch"] == train_config.epochs
        if root is not None and finished:
            # Written again here because a run killed between the last checkpoint and its weights file
            # resumes without training an epoch: the folder must still end with the final weights.
            save_tensors(root / WEIGHTS_FILE, model.state_dict())
            if result.defects is not None:
                save_tensors(root / DEFECTS_FILE, result.defects)
            save_tensors(root / LATENTS_FILE, {"mu": mu, "logvar": logvar, "labels": labels})
            _plot_history(root / "loss.png", history)
        return result
    finally:
        if lock is not None:
            lock.__exit__(None, None, None)


def check_model_output(root: Path) -> None:
    """Refuse a model ``--out`` that is a file, or a non-empty folder that is not an augvae model folder.

    Raises:
        OutputError: ``root`` is a file, or holds files of someone else (a ``config.json`` of another program included).
    """
    # config.json is written first, so a run killed at any point leaves one; whether it is augvae's is checked next.
    check_output_folder(root, "model", own_files=(CONFIG_FILE,))
    if (root / CONFIG_FILE).is_file():
        try:
            read_config(root)
        except ModelFolderError as err:
            raise OutputError(f"--out {root} holds a {CONFIG_FILE} that is not a readable augvae model config ({err}); augvae "
                              "would overwrite it: choose a new or empty --out folder") from None


#: Optimizer steps above which training is refused: at about 20 steps/s on a CPU, a week.
# Divergence while the loss is still finite. The loss is the per-image sum of non-negative terms (BCE or MSE over
# C x S x S pixels, and beta * KL over the latent units), so a run that learns stays within a few units per value:
# about 0.7 per pixel at the start for BCE, at most 1 for MSE, and a KL of a few nats per unit. A loss 10,000 times
# that per value, or 10,000 times the lowest earlier epoch's, is a run that blew up: a 128-px VAE at the 64-px learning
# rate had a loss of 4.5e33 (a KL of 1e35) in its first epoch, and kept going, because only a NaN stopped a run.
# The absolute limit stops a run only when two epochs in a row exceed it: the first steps of RMSprop (its running
# average of squared gradients starts at zero) can spike the first epoch's mean of a run that then learns normally
# (ELPV's surface VAE of the benchmark, 64 px: 1.0e9 in epoch 1, 2.5e4 in epoch 2, 2.7e3 by epoch 5).
DIVERGENCE_FACTOR = 1e4


def divergence(loss: float, earlier: Sequence[float], values: int = 1, final: bool = False) -> str:
    """Why an epoch's mean loss says training diverged, or ``""`` when it does not.

    Args:
        loss: this epoch's mean loss (per image).
        earlier: the mean losses of the epochs before it (empty for the first).
        values: the terms one image's loss sums over (pixels times channels, plus latent units).
        final: whether this is the run's last epoch: no later epoch can show that an absurd loss was a spike.

    Example:
        >>> divergence(float("nan"), [])
        'loss is NaN or infinite'
        >>> divergence(4.5e33, [4.5e33], values=128 * 128 + 16)
        'loss is 4.5e+33 for a second epoch in a row, more than 10,000 per pixel and latent unit'
        >>> divergence(2.5e4, [1.0e9], values=64 * 64 + 16)  # a first-epoch spike that the run recovers from
        ''
        >>> divergence(1.0e9, [], values=64 * 64 + 16, final=True)  # a one-epoch run that ends absurd
        'loss is 1e+09 in the last epoch, more than 10,000 per pixel and latent unit'
        >>> divergence(2e7, [2000.0, 1800.0], values=4096 + 16)
        'loss grew from 1.8e+03 to 2e+07'
        >>> divergence(2500.0, [2000.0, 1800.0], values=4096 + 16)
        ''
    """
    if not math.isfinite(loss):
        return "loss is NaN or infinite"
    limit = DIVERGENCE_FACTOR * max(1, values)
    if loss > limit and earlier and earlier[-1] > limit:
        return f"loss is {loss:.2g} for a second epoch in a row, more than {DIVERGENCE_FACTOR:,.0f} per pixel and latent unit"
    if loss > limit and final:
        return f"loss is {loss:.2g} in the last epoch, more than {DIVERGENCE_FACTOR:,.0f} per pixel and latent unit"
    low = min((v for v in earlier if math.isfinite(v) and v > 0), default=None)
    if low is not None and loss > DIVERGENCE_FACTOR * low:
        return f"loss grew from {low:.2g} to {loss:.2g}"
    return ""


MAX_TRAIN_STEPS = 10_000_000


def _check_work(steps: int, cfg: TrainConfig) -> None:
    if steps > MAX_TRAIN_STEPS:
        raise ConfigError(
            f"this run would take {steps:,} optimizer steps ({cfg.epochs} epochs), more than the {MAX_TRAIN_STEPS:,} augvae "
            "accepts (about a week on a CPU); lower --epochs or --copies"
        )
    if steps > 200_000:
        log.warning("this run takes %s optimizer steps: hours on a CPU; lower --epochs or --copies for a quicker one", f"{steps:,}")


@torch.no_grad()
def _encode_all(model: ConvVAE, images: Tensor, device: torch.device, batch_size: int = 256) -> tuple[Tensor, Tensor, Tensor]:
    """CPU ``(mu, logvar)`` of every image (as :meth:`ConvVAE.encode_batched`), and the dense-layer
    activations of the first batch for the dead-unit check: one encoder pass instead of two."""
    mus, logvars, first = [], [], None
    for start in range(0, images.shape[0], batch_size):
        hidden = model._hidden(images[start : start + batch_size].to(device))  # as ConvVAE.encode
        first = hidden if first is None else first
        mus.append(model.fc_mu(hidden).cpu())
        logvars.append(model.fc_logvar(hidden).cpu())
    assert first is not None
    return torch.cat(mus), torch.cat(logvars), first


def _check_collapse(result: TrainResult, cfg: ModelConfig, mu: Tensor, logvar: Tensor, hidden: Tensor) -> None:
    """Detect posterior collapse from the per-dimension KL over the training images, and warn.

    ``hidden``: the encoder's dense-layer activations of (up to 256 of) the training images.
    """
    kl_dims = (0.5 * (mu**2 + logvar.exp() - 1.0 - logvar)).mean(0)
    result.active_units = active_units(kl_dims)
    dead = _dead_hidden_units(result.model, hidden)
    if dead is not None and dead == cfg.hidden_dim:
        msg = (f"all {cfg.hidden_dim} units of the encoder's dense layer are dead (ReLU never fires), so the encoder "
               "ignores its input; use --activation leaky_relu and --kl-warmup-epochs 2")
        log.warning(msg)
        result.warnings.append(msg)
    spread = float(mu.std(0).max()) if mu.shape[0] > 1 else 0.0
    remedies = ("Remedies: --beta 0.5 (a KL weight below 1), --kl-warmup-epochs 2, --activation leaky_relu, or a larger "
                "--latent-dim")
    if result.active_units == 0 or spread < 0.05:
        what = (f"no latent dimension carries information (KL <= {ACTIVE_KL_NATS} nats in each of {cfg.latent_dim})"
                if result.active_units == 0 else
                f"the training images' latent means spread by at most {spread:.3f} (every image sits in one cluster)")
        msg = f"posterior collapse: {what}, so images cannot be told apart or overlaid. {remedies}"
        log.warning(msg)
        result.warnings.append(msg)
    elif result.active_units < cfg.latent_dim:
        log.info("%d of %d latent dimensions are active (KL > %s nats); the rest are unused. %s", result.active_units,
                 cfg.latent_dim, ACTIVE_KL_NATS, remedies)


def _dead_hidden_units(model: ConvVAE, hidden: Tensor) -> int | None:
    """Dense-layer ReLU units that output 0 for every image (``hidden``: their activations; None for other activations)."""
    if model.config.activation != "relu":
        return None
    return int(((hidden > 0).sum(0) == 0).sum())


def _save_checkpoint(root: Path, model: ConvVAE, opt: torch.optim.Optimizer, epoch: int, history: list[dict[str, float]]) -> None:
    import json

    opt_tensors, opt_meta = _flatten_optimizer(opt)
    tensors = {**{f"model.{k}": v for k, v in model.state_dict().items()}, **opt_tensors}
    meta = {"epoch": str(epoch), "optimizer": json.dumps(opt_meta), "history": json.dumps(history)}
    # One file holds everything needed to resume, so it is consistent whenever the rename lands.
    save_tensors(root / CHECKPOINT_FILE, tensors, meta)
    save_tensors(root / WEIGHTS_FILE, model.state_dict())
    if history:
        write_csv(root / "history.csv", history)


def _resume(root: Path, model: ConvVAE, opt: torch.optim.Optimizer, mcfg: ModelConfig, tcfg: TrainConfig,
            data: dict[str, Any]) -> tuple[int, list[dict[str, float]]]:
    import json

    from safetensors import safe_open

    saved_model, saved_train, saved_data = read_config(root)
    # The data too: resumed on other images (or without --background-class) the folder would describe a model that was
    # trained on neither set.
    differ = [key for key in ("classes", "names", "labels", "background_class", "background", "defect_sources")
              if key in saved_data and saved_data[key] != data[key]]
    if differ:
        raise ConfigError(f"cannot resume {root}: it was trained on other data ({', '.join(differ)} differ: other images, classes "
                          "or --background-class); resume with the same DATA_DIR and options, or choose another --out")
    if saved_model != mcfg:
        raise ConfigError(f"cannot resume {root}: its model config {config_to_dict(saved_model)} differs from this run's {config_to_dict(mcfg)}")
    if saved_train is not None and replace(saved_train, epochs=tcfg.epochs, device=tcfg.device) != tcfg:
        raise ConfigError(f"cannot resume {root}: its training config differs from this run's (only --epochs and --device may change)")
    path = root / CHECKPOINT_FILE
    fresh = f"delete {root} (or choose another --out) and train without --resume to start fresh"
    tensors = read_tensors(path, "")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        epoch, history = int(meta["epoch"]), json.loads(meta["history"])
        opt_meta = json.loads(meta["optimizer"])
        if epoch < 1 or not isinstance(history, list) or len(history) != epoch or not isinstance(opt_meta, dict):
            raise ValueError(f"epoch {epoch} with {len(history) if isinstance(history, list) else 'no'} history rows")
        state = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
        expected = model.state_dict()
        if set(state) != set(expected) or any(state[k].shape != expected[k].shape for k in expected):
            raise ValueError("its weights are of another architecture")
        model.load_state_dict(state)
        _restore_optimizer(opt, tensors, opt_meta)
    except (KeyError, ValueError, TypeError, RuntimeError, json.JSONDecodeError) as err:
        reason = f"missing {err}" if isinstance(err, KeyError) else str(err).splitlines()[0][:120]
        raise ModelFolderError(f"{path} cannot be resumed ({type(err).__name__}: {reason}): it is damaged or from another "
                               f"model; {fresh}") from None
    return epoch + 1, history


def _plot_history(path: Path, history: Sequence[dict[str, float]]) -> None:

    plot_history(history, path)
