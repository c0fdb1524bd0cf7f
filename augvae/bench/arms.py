"""The arms of the benchmark: what each one trains on, and the one training loop they all share.

===============  ==============================================================================
arm              training data of the classifier
===============  ==============================================================================
``original``     the k real images per class, nothing else
``classic``      the same, each batch through albumentations (flips, 90-degree rotations, a small
                 affine, brightness/contrast)
``vae``          the real images plus ``ratio`` x as many overlays from one VAE trained on this
                 seed's real training images (never on test images)
``classic+vae``  both: the extended set, each batch through the classic augmentation
``vae-prior``    the real images plus images decoded from N(0, I) by per-class VAEs (the paper's
                 section 3 approach), labelled with the class of the model that made them
``mixup``        the real images, each batch mixed in pixel space (torchvision ``v2.MixUp`` /
                 ``v2.CutMix``)
===============  ==============================================================================

Every arm trains the same classifier from the same initial weights (per seed) with the same
optimizer (AdamW), schedule (cosine decay) and **number of optimizer steps**: a larger training set
means fewer passes over it, not more updates. Batches are drawn from a stream of permutations of
the training set, so every batch has ``batch_size`` images whatever the set's size.

Trained VAEs are cached (one shared VAE per (k, seed) for the overlay arms, one set of per-class
VAEs per (k, seed) for ``vae-prior``), keyed by every setting they depend on, so parallel cells
and later runs reuse them; a blocking file lock makes one process train and the others wait.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from augvae.bench.config import BenchConfig
from augvae.data.images import ImageSet
from augvae.errors import ConfigError

__all__ = [
    "ARM_SPECS",
    "ArmSpec",
    "TrainingSet",
    "build_training_set",
    "cache_lock",
    "classic_transform",
    "fit_classifier",
    "make_mixer",
    "prior_vaes",
    "settings_key",
    "shared_vae",
]

log = logging.getLogger("augvae")


@dataclass(frozen=True)
class ArmSpec:
    """What an arm adds to the real images."""

    classic: bool = False  #: albumentations on every batch
    generated: str | None = None  #: None, "overlay" (shared VAE) or "prior" (per-class VAEs)
    mix: bool = False  #: MixUp / CutMix on every batch


#: The arms by name (see the module docstring).
ARM_SPECS: dict[str, ArmSpec] = {
    "original": ArmSpec(),
    "classic": ArmSpec(classic=True),
    "vae": ArmSpec(generated="overlay"),
    "classic+vae": ArmSpec(classic=True, generated="overlay"),
    "vae-prior": ArmSpec(generated="prior"),
    "mixup": ArmSpec(mix=True),
}


# ------------------------------------------------------------------------------------ caching
def settings_key(*parts: Any) -> str:
    """A short stable hash of JSON-able parts: the cache key of an artifact."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:12]


@contextlib.contextmanager
def cache_lock(path: Path) -> Iterator[None]:
    """Hold a blocking exclusive lock on ``path`` (a lock file): other processes wait for it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    f = open(path, "a+")  # noqa: SIM115 - held for the block
    try:
        try:
            import fcntl

            fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        except ImportError:  # pragma: no cover - Windows: best effort
            pass
        yield
    finally:
        f.close()


def _publish_dir(tmp: Path, final: Path) -> None:
    """Move a completely written folder into place (a folder appears whole or not at all)."""
    if final.exists():
        shutil.rmtree(tmp, ignore_errors=True)
        return
    os.replace(tmp, final)


# ------------------------------------------------------------------------------------ transforms
def _brightness_contrast(A: Any, limit: float, p: float) -> Any:
    """``RandomBrightnessContrast`` of +-limit, the same augmentation under albumentations 2.0 and AlbumentationsX.

    AlbumentationsX renamed ``brightness_limit``/``contrast_limit`` to ``*_range`` (the old names are
    ignored with a warning) and changed the default of ``brightness_by_max`` to False; both are set here.
    """
    import inspect

    names = inspect.signature(A.RandomBrightnessContrast.__init__).parameters
    if "brightness_range" in names:
        return A.RandomBrightnessContrast(brightness_range=(-limit, limit), contrast_range=(-limit, limit),
                                          brightness_by_max=True, p=p)
    return A.RandomBrightnessContrast(brightness_limit=limit, contrast_limit=limit, brightness_by_max=True, p=p)


def classic_transform(seed: int) -> Any:
    """The ``classic`` augmentation: an albumentations ``Compose`` seeded with ``seed``.

    Flips (horizontal, vertical), 90-degree rotations, a small affine (scale 0.9-1.1, shift up to
    6%, rotation up to 10 degrees, reflected borders) and brightness/contrast (+-0.2); each image
    of a batch gets its own draw.
    """
    import inspect

    import albumentations as A
    import cv2

    return A.Compose(
        [
            A.HorizontalFlip(p=0.5),
            A.VerticalFlip(p=0.5),
            A.RandomRotate90(p=0.5),
            A.Affine(scale=(0.9, 1.1), translate_percent=(-0.06, 0.06), rotate=(-10, 10), border_mode=cv2.BORDER_REFLECT_101, p=0.7),
            _brightness_contrast(A, 0.2, p=0.7),
        ],
        seed=seed,
        # AlbumentationsX reports usage over the network unless told not to; augvae never uses the network.
        **({"telemetry": False} if "telemetry" in inspect.signature(A.Compose.__init__).parameters else {}),
    )


def _apply_classic(transform: Any, x: Tensor) -> Tensor:
    arr = x.permute(0, 2, 3, 1).numpy()  # (B, S, S, C) float32 in [0, 1]
    out = np.stack([transform(image=np.ascontiguousarray(a))["image"] for a in arr])
    if out.ndim == 3:  # albumentations may drop a single channel axis
        out = out[..., None]
    return torch.from_numpy(np.clip(out, 0.0, 1.0)).permute(0, 3, 1, 2).contiguous().float()


def make_mixer(mode: str, alpha: float, num_classes: int) -> Callable[[Tensor, Tensor], tuple[Tensor, Tensor]]:
    """The ``mixup`` arm's batch transform: ``(images, int labels) -> (images, soft labels)``.

    ``mode`` is ``mixup`` (``v2.MixUp``), ``cutmix`` (``v2.CutMix``) or ``both`` (a random choice
    per batch, ``v2.RandomChoice``). It draws from torch's global generator, which the training
    loop seeds.
    """
    from torchvision.transforms import v2

    mixers = {"mixup": v2.MixUp(alpha=alpha, num_classes=num_classes), "cutmix": v2.CutMix(alpha=alpha, num_classes=num_classes)}
    if mode == "both":
        return v2.RandomChoice([mixers["mixup"], mixers["cutmix"]])  # type: ignore[return-value]
    if mode not in mixers:
        raise ConfigError(f"unknown mix mode {mode!r}; expected mixup, cutmix or both")
    return mixers[mode]  # type: ignore[return-value]


# ------------------------------------------------------------------------------------ training
def _batches(n: int, batch_size: int, generator: torch.Generator) -> Iterator[Tensor]:
    """Endless batches of ``batch_size`` indices from consecutive random permutations of ``range(n)``."""
    buf = torch.empty(0, dtype=torch.long)
    while True:
        while buf.numel() < batch_size:
            buf = torch.cat([buf, torch.randperm(n, generator=generator)])
        yield buf[:batch_size]
        buf = buf[batch_size:]


def fit_classifier(
    model: nn.Module,
    images: Tensor,
    targets: Tensor,
    cfg: BenchConfig,
    seed: int,
    spec: ArmSpec,
    device: torch.device,
    progress: bool = False,
    desc: str = "classifier",
) -> dict[str, Any]:
    """Train ``model`` for exactly ``cfg.steps`` AdamW steps on ``(images, targets)``.

    Args:
        images: (N, C, S, S) float in [0, 1].
        targets: (N, K) class probabilities (one-hot for real images, soft for some overlays).
        seed: Seeds the batch order, the classic augmentation and the mixing draws.
        spec: Which batch transforms to apply (classic, mix).

    Returns:
        ``{"seconds", "final_loss", "loss_curve"}`` (the loss averaged over tenths of the run).
    """
    from tqdm.auto import tqdm

    model.to(device).train()
    num_classes = targets.shape[1]
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, cfg.steps) / cfg.steps)))
    gen = torch.Generator().manual_seed(seed * 7919 + 17)
    torch.manual_seed(seed * 7919 + 23)  # dropout and the mixing draws
    batches = _batches(images.shape[0], cfg.batch_size, gen)
    classic = classic_transform(seed) if spec.classic else None
    mixer = make_mixer(cfg.mix, cfg.mix_alpha, num_classes) if spec.mix else None
    losses: list[float] = []
    t0 = time.perf_counter()
    for _ in tqdm(range(cfg.steps), desc=desc, disable=not progress, leave=False):
        idx = next(batches)
        x, y = images[idx], targets[idx]
        if classic is not None:
            x = _apply_classic(classic, x)
        if mixer is not None:
            x, y = mixer(x, y.argmax(1))
        x, y = x.to(device), y.to(device)
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
    seconds = time.perf_counter() - t0
    if not all(math.isfinite(v) for v in losses):
        raise ConfigError(f"classifier training diverged (loss NaN or infinite); lower --lr (now {cfg.lr})")
    tenth = max(1, len(losses) // 10)
    curve = [float(np.mean(losses[i : i + tenth])) for i in range(0, len(losses), tenth)]
    model.eval()
    return {"seconds": seconds, "final_loss": curve[-1], "loss_curve": curve}


# ------------------------------------------------------------------------------------ VAEs
def _vae_train(data: ImageSet, cfg: BenchConfig, steps: int, seed: int) -> Any:
    from augvae.config import ModelConfig, recipe_config
    from augvae.training import train

    n = len(data)
    batch = min(cfg.vae_batch_size, n)
    epochs = max(1, math.ceil(steps / math.ceil(n / batch)))
    mcfg = ModelConfig(image_size=cfg.image_size, channels=cfg.channels, latent_dim=cfg.latent_dim, beta=cfg.beta,
                       hidden_dim=cfg.vae_hidden_dim, activation=cfg.vae_activation)
    tcfg = recipe_config("small-set", epochs=epochs, batch_size=batch, seed=seed, device=cfg.device, checkpoint_every=epochs,
                         kl_warmup_epochs=round(cfg.vae_kl_warmup * epochs))
    quiet = logging.getLogger("augvae")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # collapse warnings go into the cell record, not the console
    try:
        return train(data, mcfg, tcfg, progress=False), tcfg
    finally:
        quiet.setLevel(level)


@dataclass
class CachedVAE:
    """A trained VAE with the latents and labels of its training images."""

    model: Any
    mu: Tensor
    logvar: Tensor
    labels: Tensor
    names: list[str]
    info: dict[str, Any] = field(default_factory=dict)
    folder: Path | None = None


def _train_or_load(folder: Path, data: ImageSet, cfg: BenchConfig, steps: int, seed: int) -> CachedVAE:
    """Load the VAE cached in ``folder``, or train and cache it (``folder`` and then ``folder.json``, the marker)."""
    from augvae._io import write_json
    from augvae.checkpoint import load_latents, load_model, save_model

    marker = folder.with_name(folder.name + ".json")
    with cache_lock(folder.with_name(f".{folder.name}.lock")):
        if not marker.exists():
            shutil.rmtree(folder, ignore_errors=True)  # a folder without its marker is from an interrupted run
            t0 = time.perf_counter()
            result, tcfg = _vae_train(data, cfg, steps, seed)
            last = result.history[-1]
            info = {"seconds": time.perf_counter() - t0, "epochs": tcfg.epochs, "steps": steps, "images": len(data),
                    "final_loss": last["loss"], "final_recon": last["recon"], "final_kl": last["kl"],
                    "active_units": result.active_units, "latent_dim": cfg.latent_dim, "warnings": result.warnings,
                    "train_paths": list(data.paths)}
            tmp = folder.with_name(f".{folder.name}.tmp{os.getpid()}")
            shutil.rmtree(tmp, ignore_errors=True)
            save_model(tmp, result.model, train_config=tcfg,
                       data={"classes": data.classes, "names": [Path(p).stem for p in data.paths], "labels": data.labels.tolist()},
                       latents={"mu": result.mu, "logvar": result.logvar, "labels": data.labels})
            _publish_dir(tmp, folder)
            write_json(marker, info)
        loaded = load_model(folder)
        lat = load_latents(folder)
        info = json.loads(marker.read_text())
    assert lat is not None
    return CachedVAE(loaded.model, lat["mu"], lat["logvar"], lat["labels"].long(), [Path(p).stem for p in info["train_paths"]], info,
                     folder)


def _vae_key(cfg: BenchConfig, data_key: str, steps_field: str) -> str:
    return settings_key(data_key, cfg.image_size, cfg.channels, cfg.latent_dim, cfg.beta, getattr(cfg, steps_field), cfg.vae_batch_size,
                        cfg.vae_hidden_dim, cfg.vae_activation, cfg.vae_kl_warmup)


def shared_vae(cache: Path, data_key: str, train_set: ImageSet, cfg: BenchConfig, k: int, seed: int) -> CachedVAE:
    """The one VAE of the overlay arms for (k, seed): trained on ``train_set`` (all classes) once, then cached."""
    folder = cache / "vae" / _vae_key(cfg, data_key, "vae_steps") / f"k{k}-s{seed}"
    return _train_or_load(folder, train_set, cfg, cfg.vae_steps, seed)


def prior_vaes(cache: Path, data_key: str, train_set: ImageSet, cfg: BenchConfig, k: int, seed: int) -> list[CachedVAE]:
    """The per-class VAEs of ``vae-prior`` for (k, seed), one per class, each on that class's images only."""
    root = cache / "prior" / _vae_key(cfg, data_key, "prior_steps") / f"k{k}-s{seed}"
    out = []
    for c, name in enumerate(train_set.classes):
        part = train_set.subset(train_set.labels == c)
        out.append(_train_or_load(root / f"class{c}", part, cfg, cfg.prior_steps, seed * 101 + c))
    return out


# ------------------------------------------------------------------------------------ data of an arm
@dataclass
class TrainingSet:
    """What a classifier of one arm trains on."""

    images: Tensor  #: (N, C, S, S): real images first, then generated ones
    targets: Tensor  #: (N, K) class probabilities
    n_real: int
    generated: Tensor | None = None  #: the generated images (also the tail of ``images``)
    generated_targets: Tensor | None = None
    info: dict[str, Any] = field(default_factory=dict)


def _one_hot(labels: Tensor, k: int) -> Tensor:
    return F.one_hot(labels, k).float()


@torch.no_grad()
def _library_overlays(vae: CachedVAE, train_set: ImageSet, n: int, cfg: BenchConfig, seed: int) -> tuple[Tensor, Tensor]:
    """``overlay_base="library"``: what a user of :mod:`augvae.policy` gets (as behind ``augvae.torchvision.VAEOverlay``).

    Each real training image in turn (balanced over the classes) gets ``overlay_k - 1`` sources
    drawn by the label policy and overlaid onto it (``keep_input=True``).
    """
    from augvae.policy import OverlayOptions, draw_torch, load_sources, overlay_batch

    if vae.folder is None:
        raise ConfigError("the library overlays need the VAE's model folder")
    src = load_sources(vae.folder, classes=train_set.classes)
    opts = OverlayOptions(policy=cfg.policy, formulation=cfg.formulation, k=max(1, cfg.overlay_k - 1), scale=cfg.overlay_scale)
    per_class = [(train_set.labels == c).nonzero().flatten() for c in range(len(train_set.classes))]
    base = torch.cat([idx[torch.arange(m) % len(idx)] for idx, m in zip(per_class, _split_evenly(n, len(per_class))) if m])
    gen = torch.Generator().manual_seed(seed * 1013)
    out, labels = [], []
    for s in range(0, n, 256):
        b = base[s : s + 256]
        draws = draw_torch(src, opts, len(b), generator=gen, device="cpu")
        x, y = overlay_batch(src, train_set.images[b], train_set.labels[b], opts, draws)
        out.append(x.cpu())
        labels.append(y.cpu() if y.ndim == 2 else _one_hot(y.cpu(), len(train_set.classes)))
    return torch.cat(out), torch.cat(labels).float()


def _overlays(vae: CachedVAE, train_set: ImageSet, n: int, cfg: BenchConfig, seed: int) -> tuple[Tensor, Tensor]:
    from augvae.overlay import random_overlays

    if cfg.overlay_base == "library":
        return _library_overlays(vae, train_set, n, cfg, seed)
    classes = train_set.classes
    source_classes = [classes[i] for i in vae.labels.tolist()]
    same = cfg.policy == "same-class"
    if same:
        short = [c for c in classes if source_classes.count(c) < cfg.overlay_k]
        if short:
            raise ConfigError(
                f"the same-class policy combines {cfg.overlay_k} images of one class, but class(es) {', '.join(short)} have fewer "
                f"training images; lower --overlay-k or raise --per-class"
            )
        # Equal numbers per class: draw each class's share separately. The reference of the offset
        # and residual formulations is then the centroid of that class's training images, so an
        # overlay is the class's typical image plus the deviations of its k sources.
        imgs, tgts = [], []
        shares = _split_evenly(n, len(classes))
        for c, m in enumerate(shares):
            if m == 0:
                continue
            sel = (vae.labels == c).nonzero().flatten()
            gen = torch.Generator().manual_seed(seed * 1009 + c)
            if cfg.overlay_base == "real":
                imgs.append(_onto_real(vae, train_set.images, sel, m, cfg, gen))
                tgts.append(_one_hot(torch.full((m,), c), len(classes)))
                continue
            x, _ = random_overlays(vae.model, vae.mu[sel], vae.logvar[sel], [vae.names[i] for i in sel.tolist()],
                                   [classes[c]] * len(sel), m, k=cfg.overlay_k, formulation=cfg.formulation,
                                   scale=cfg.overlay_scale, same_class=True, generator=gen)
            imgs.append(x)
            tgts.append(_one_hot(torch.full((m,), c), len(classes)))
        return torch.cat(imgs), torch.cat(tgts)
    gen = torch.Generator().manual_seed(seed * 1009)
    if cfg.overlay_base == "real":
        picks = torch.stack([torch.randperm(len(vae.labels), generator=gen)[: cfg.overlay_k] for _ in range(n)])
        x = _onto_real(vae, train_set.images, torch.arange(len(vae.labels)), n, cfg, gen, picks)
        tg = _one_hot(vae.labels[picks], len(classes)).mean(1)
        return x, tg
    x, records = random_overlays(vae.model, vae.mu, vae.logvar, vae.names, source_classes, n, k=cfg.overlay_k,
                                 formulation=cfg.formulation, scale=cfg.overlay_scale, same_class=False, generator=gen)
    index = {name: i for i, name in enumerate(classes)}
    tg = torch.zeros(n, len(classes))
    for i, r in enumerate(records):
        for name in r.classes:
            tg[i, index[name]] += 1.0 / len(r.classes)
    return x, tg


@torch.no_grad()
def _onto_real(vae: CachedVAE, images: Tensor, sel: Tensor, m: int, cfg: BenchConfig, gen: torch.Generator,
               picks: Tensor | None = None) -> Tensor:
    """``overlay_base="real"``: ``x_i + sum_j (decode(z_j) - decode(z_i))`` for a real image ``x_i``.

    The first of each row's ``overlay_k`` distinct sources (drawn from ``sel``) is the base: its real
    pixels are kept, and the decoded differences of the other sources from it are added, so the
    base keeps the fine texture a VAE cannot reproduce. ``picks`` (m, k) overrides the draw.
    """
    from augvae.overlay import overlay, sample_around

    if picks is None:
        picks = torch.stack([sel[torch.randperm(len(sel), generator=gen)[: cfg.overlay_k]] for _ in range(m)])
    base, others = picks[:, 0], picks[:, 1:]
    if others.shape[1] == 0:  # overlay_k == 1: nothing to add
        return images[base].clone()
    z = sample_around(vae.mu[others], vae.logvar[others], cfg.overlay_scale, gen)
    out = [overlay(vae.model, z[s : s + 256], "residual", z_background=vae.mu[base[s : s + 256]],
                   x_background=images[base[s : s + 256]]).cpu() for s in range(0, m, 256)]
    return torch.cat(out)


def _split_evenly(n: int, parts: int) -> list[int]:
    base, extra = divmod(n, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]


@torch.no_grad()
def _prior_samples(vaes: list[CachedVAE], n: int, num_classes: int, latent_dim: int, seed: int) -> tuple[Tensor, Tensor]:
    imgs, tgts = [], []
    for c, (vae, m) in enumerate(zip(vaes, _split_evenly(n, num_classes))):
        if m == 0:
            continue
        gen = torch.Generator().manual_seed(seed * 2003 + c)
        z = torch.randn(m, latent_dim, generator=gen)
        imgs.append(vae.model.decode_batched(z))
        tgts.append(_one_hot(torch.full((m,), c), num_classes))
    return torch.cat(imgs), torch.cat(tgts)


def build_training_set(arm: str, train_set: ImageSet, cfg: BenchConfig, cache: Path, data_key: str, k: int, seed: int) -> TrainingSet:
    """The images and targets the classifier of ``arm`` trains on for (k, seed).

    Generated images number ``round(ratio * len(train_set))``, split evenly over the classes.
    """
    spec = ARM_SPECS[arm]
    num_classes = len(train_set.classes)
    real_t = _one_hot(train_set.labels, num_classes)
    if spec.generated is None:
        return TrainingSet(train_set.images, real_t, len(train_set))
    n_gen = max(1, round(cfg.ratio * len(train_set)))
    t0 = time.perf_counter()
    if spec.generated == "overlay":
        vae = shared_vae(cache, data_key, train_set, cfg, k, seed)
        gen_x, gen_t = _overlays(vae, train_set, n_gen, cfg, seed)
        vinfo: dict[str, Any] = {"vae": {k_: v for k_, v in vae.info.items() if k_ != "train_paths"}}
        vae_paths = vae.info["train_paths"]
    else:
        vaes = prior_vaes(cache, data_key, train_set, cfg, k, seed)
        gen_x, gen_t = _prior_samples(vaes, n_gen, num_classes, cfg.latent_dim, seed)
        vinfo = {"prior_vaes": [{k_: v for k_, v in v_.info.items() if k_ != "train_paths"} for v_ in vaes]}
        vae_paths = [p for v_ in vaes for p in v_.info["train_paths"]]
    info = {**vinfo, "generate_seconds": time.perf_counter() - t0, "vae_train_paths": vae_paths}
    return TrainingSet(torch.cat([train_set.images, gen_x]), torch.cat([real_t, gen_t]), len(train_set), gen_x, gen_t, info)
