"""The arms of the benchmark: what each one trains on, and the one training loop they all share.

=========================  ========================================================================
arm                        training data of the classifier
=========================  ========================================================================
``original``               the real training images, nothing else
``classic``                the same, each batch through albumentations (flips, 90-degree rotations,
                           a small affine, brightness/contrast)
``vae``                    the real images; each sample replaced with probability ``gen_p`` by one
                           of ``ratio`` x as many overlays of one VAE trained on this seed's images
``classic+vae``            both: the same stream, each batch through the classic augmentation
``vae-prior``              as ``vae``, with images decoded from N(0, I) by per-class VAEs (the
                           paper's section 3 approach)
``mixup``                  the real images, each batch mixed in pixel space (``v2.MixUp`` / ``v2.CutMix``)
``transplant``             the real images; each (defect) sample replaced with probability ``gen_p``
                           by a real defect of its class, extracted by a VAE of the defect-free
                           surfaces, transplanted onto a real defect-free image (defect-free setting)
                           or onto another image of its class (no defect-free class)
``blurmask``               as ``transplant``, the VAE's projection replaced by a Gaussian blur: a
                           non-learned residual ``x - blur(x)`` and its mask (a control)
``cutpaste``               as ``transplant``, the defect replaced by a random rectangle of the defect
                           image, pasted (CutPaste; a control)
``relabel``                as ``transplant``, with no defect: the defect-free image itself, given the
                           defect's label (a control: what a transplant gains by its label alone)
``classic+...``            the same, each batch through the classic augmentation
=========================  ========================================================================

Every arm trains the same classifier from the same initial weights (per seed) with the same
optimizer (AdamW), schedule (cosine decay) and **number of optimizer steps**; batches are drawn
from the real training images (class-balanced where ``balanced`` says so), and generated samples
replace real ones of the same class, so the class balance of every arm is the same. All generated
images come from the overlay engine (:mod:`augvae.overlay`).

Trained VAEs are cached, keyed by every setting they depend on, so parallel cells and later runs
reuse them; a blocking file lock makes one process train and the others wait.
"""

from __future__ import annotations

import contextlib
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

from augvae._io import blocking_lock, write_json
from augvae.bench.classifiers import use_channels_last
from augvae.bench.config import VAE_LR, BenchConfig
from augvae.bench.split import settings_key
from augvae.checkpoint import load_latents, save_model
from augvae.config import recipe_config
from augvae.data.images import ImageSet
from augvae.errors import ConfigError, DataError, TrainingDivergedError
from augvae.model import load_model
from augvae.overlay.combine import sample_around
from augvae.overlay.engine import overlay, overlay_batch, random_overlays, render
from augvae.overlay.extract import blur_projector, extract_defects, vae_projector
from augvae.overlay.policy import OverlayOptions, draw_torch, make_plan, mix_class_lists
from augvae.overlay.sources import load_sources, sources_from_defects
from augvae.training import train

__all__ = ["ARM_SPECS", "ArmSpec", "TrainingSet", "build_training_set", "classic_transform", "fit_classifier", "make_mixer",
           "balanced_for", "shared_vae"]

log = logging.getLogger("augvae")


@dataclass(frozen=True)
class ArmSpec:
    """What an arm adds to the real images."""

    classic: bool = False  #: albumentations on every batch
    generated: str | None = None  #: None, overlay, prior, transplant, blurmask, cutpaste or relabel
    mix: bool = False  #: MixUp / CutMix on every batch


#: The arms by name (see the module docstring).
ARM_SPECS: dict[str, ArmSpec] = {
    "original": ArmSpec(),
    "classic": ArmSpec(classic=True),
    "vae": ArmSpec(generated="overlay"),
    "classic+vae": ArmSpec(classic=True, generated="overlay"),
    "vae-prior": ArmSpec(generated="prior"),
    "mixup": ArmSpec(mix=True),
    "transplant": ArmSpec(generated="transplant"),
    "classic+transplant": ArmSpec(classic=True, generated="transplant"),
    "blurmask": ArmSpec(generated="blurmask"),
    "classic+blurmask": ArmSpec(classic=True, generated="blurmask"),
    "cutpaste": ArmSpec(generated="cutpaste"),
    "classic+cutpaste": ArmSpec(classic=True, generated="cutpaste"),
    "relabel": ArmSpec(generated="relabel"),
    "classic+relabel": ArmSpec(classic=True, generated="relabel"),
}


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
    """The ``mixup`` arm's batch transform: ``(images, int labels) -> (images, soft labels)`` (torch's global RNG)."""
    from torchvision.transforms import v2

    mixers = {"mixup": v2.MixUp(alpha=alpha, num_classes=num_classes), "cutmix": v2.CutMix(alpha=alpha, num_classes=num_classes)}
    if mode == "both":
        return v2.RandomChoice([mixers["mixup"], mixers["cutmix"]])  # type: ignore[return-value]
    if mode not in mixers:
        raise ConfigError(f"unknown mix mode {mode!r}; expected mixup, cutmix or both")
    return mixers[mode]  # type: ignore[return-value]


# ------------------------------------------------------------------------------------ what an arm trains on
Generator = Callable[[Tensor, torch.Generator], tuple[Tensor, Tensor]]


@dataclass
class TrainingSet:
    """What a classifier of one arm trains on: the real images and, for a generated arm, how to make more."""

    images: Tensor  #: (N, C, S, S) the real training images
    labels: Tensor  #: (N,) their classes
    num_classes: int
    generate: Generator | None = None  #: (classes (m,), generator) -> (images (m, C, S, S), targets (m, K))
    generate_for: Tensor | None = None  #: (K,) bool: the classes whose samples may be replaced by generated ones
    info: dict[str, Any] = field(default_factory=dict)
    bank: Tensor | None = None  #: vae and vae-prior arms: the generated images the samples are drawn from
    bank_targets: Tensor | None = None  #: (M, K) their targets
    heal: Callable[[int, torch.Generator], Tensor] | None = None  #: (m, generator) -> m healed defect images (defect-free)
    heal_class: int = -1  #: the class healed images get (the defect-free class)

    def sample(self, n: int, seed: int) -> tuple[Tensor, Tensor]:
        """``n`` generated images and targets, balanced over the classes that get them (for quality measures and grids)."""
        assert self.generate is not None and self.generate_for is not None
        classes = self.generate_for.nonzero().flatten()
        labels = classes[torch.arange(n) % len(classes)]
        return self.generate(labels, torch.Generator().manual_seed(seed))


def balanced_for(cfg: BenchConfig, labels: Tensor, num_classes: int) -> bool:
    """Whether batches are class-balanced: ``on``, ``off``, or ``auto`` (on when the class counts differ)."""
    if cfg.balanced != "auto":
        return cfg.balanced == "on"
    counts = torch.bincount(labels, minlength=num_classes)
    return bool(counts.max() != counts.min())


def _batches(labels: Tensor, batch_size: int, balanced: bool, generator: torch.Generator) -> Iterator[Tensor]:
    """Endless batches of indices: consecutive random permutations, or (balanced) classes drawn uniformly, then images."""
    n = labels.shape[0]
    if balanced:
        counts = torch.bincount(labels).double()
        weight = (1.0 / counts.clamp_min(1))[labels]  # every class gets the same total weight
        while True:
            yield torch.multinomial(weight, batch_size, replacement=True, generator=generator)
    buf = torch.empty(0, dtype=torch.long)
    while True:
        while buf.numel() < batch_size:
            buf = torch.cat([buf, torch.randperm(n, generator=generator)])
        yield buf[:batch_size]
        buf = buf[batch_size:]


def fit_classifier(
    model: nn.Module,
    ts: TrainingSet,
    cfg: BenchConfig,
    seed: int,
    spec: ArmSpec,
    device: torch.device,
    steps: int,
    progress: bool = False,
    desc: str = "classifier",
    reference: nn.Module | None = None,
) -> dict[str, Any]:
    """Train ``model`` for exactly ``steps`` AdamW steps on ``ts``.

    Args:
        ts: The training set (and its generator, for the generated arms).
        seed: Seeds the batch order, the generated samples, the classic augmentation and the mixing draws.
        spec: Which batch transforms to apply (classic, mix).
        steps: Optimizer steps.
        reference: The real-data classifier of the cell: with ``cfg.filter_confidence``, generated samples
            it gives less than that probability of their class are replaced by real ones.

    Returns:
        ``{"seconds", "final_loss", "loss_curve", "generated", "filtered", "healed", "balanced", "steps", "optimizer_steps"}``.
    """
    from tqdm.auto import tqdm

    layout = torch.channels_last if use_channels_last(model, cfg.memory_format, device) else torch.contiguous_format
    model.to(device, memory_format=layout).train()
    k = ts.num_classes
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps)))
    gen = torch.Generator().manual_seed(seed * 7919 + 17)
    gen_images = torch.Generator().manual_seed(seed * 7919 + 29)  # generated samples: their own stream
    gen_heal = torch.Generator().manual_seed(seed * 7919 + 31)
    torch.manual_seed(seed * 7919 + 23)  # dropout and the mixing draws
    balanced = balanced_for(cfg, ts.labels, k)
    batches = _batches(ts.labels, cfg.batch_size, balanced, gen)
    classic = classic_transform(seed) if spec.classic else None
    mixer = make_mixer(cfg.mix, cfg.mix_alpha, k) if spec.mix else None
    autocast = torch.autocast(device.type, dtype=torch.bfloat16) if cfg.precision == "bf16" else contextlib.nullcontext()
    losses: list[float] = []
    made = dropped = healed = 0
    t0 = time.perf_counter()
    for _ in tqdm(range(steps), desc=desc, disable=not progress, leave=False):
        idx = next(batches)
        x, y = ts.images[idx], ts.labels[idx]
        t = F.one_hot(y, k).float()
        if ts.generate is not None and ts.generate_for is not None:
            swap = ts.generate_for[y] & (torch.rand(len(idx), generator=gen) < cfg.gen_p)
            if bool(swap.any()):
                gx, gt = ts.generate(y[swap], gen_images)
                if reference is not None and cfg.filter_confidence > 0:
                    with torch.no_grad():
                        prob = reference(gx.to(device)).softmax(1).cpu()
                    keep = (prob * gt).sum(1) >= cfg.filter_confidence
                    dropped += int((~keep).sum())
                    rows = swap.nonzero().flatten()[keep]
                    gx, gt = gx[keep], gt[keep]
                    swap = torch.zeros_like(swap)
                    swap[rows] = True
                x, t = x.clone(), t.clone()
                x[swap], t[swap] = gx, gt
                made += int(swap.sum())
        if ts.heal is not None and cfg.heal_p > 0:  # its own stream: the draws above stay those of heal_p = 0
            still = t[:, ts.heal_class] == 1  # defect-free samples that no generated defect replaced
            cured = still & (torch.rand(len(idx), generator=gen_heal) < cfg.heal_p)
            if bool(cured.any()):
                x = x.clone()
                x[cured] = ts.heal(int(cured.sum()), gen_heal)
                healed += int(cured.sum())
        if classic is not None:
            x = _apply_classic(classic, x)
        if mixer is not None:
            x, t = mixer(x, t.argmax(1))
        x, t = x.to(device).contiguous(memory_format=layout), t.to(device)
        with autocast:
            loss = F.cross_entropy(model(x).float(), t)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())  # .item() waits for the step anyway, so the check below costs nothing
        if not math.isfinite(losses[-1]):  # stop at once: a NaN never recovers, and the rest of the steps would be wasted
            raise ConfigError(f"classifier training diverged at step {len(losses)} of {steps} (loss NaN or infinite); "
                              f"lower --lr (now {cfg.lr})")
    seconds = time.perf_counter() - t0
    tenth = max(1, len(losses) // 10)
    curve = [float(np.mean(losses[i : i + tenth])) for i in range(0, len(losses), tenth)]
    model.eval()
    return {"seconds": seconds, "final_loss": curve[-1], "loss_curve": curve, "generated": made, "filtered": dropped,
            "healed": healed, "balanced": balanced, "steps": steps, "optimizer_steps": len(losses)}


# ------------------------------------------------------------------------------------ VAEs
def _vae_train(data: ImageSet, cfg: BenchConfig, steps: int, seed: int) -> Any:
    n = len(data)
    batch = min(cfg.vae_batch_size, n)
    epochs = max(1, math.ceil(steps / math.ceil(n / batch)))
    tcfg = recipe_config("small-set", epochs=epochs, batch_size=batch, seed=seed, device=cfg.device, checkpoint_every=epochs,
                         kl_warmup_epochs=round(cfg.vae_kl_warmup * epochs), lr=cfg.vae_lr)
    quiet = logging.getLogger("augvae")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # collapse warnings go into the cell record, not the console
    try:
        return train(data, cfg.vae, tcfg, progress=False), tcfg
    except TrainingDivergedError as err:  # its fix names `augvae train`'s options; the benchmark's are --vae-*
        raise TrainingDivergedError(f"the benchmark's VAE ({len(data)} images, {steps} steps) diverged at epoch {err.epoch} "
                                    f"({err.reason}): retry with a lower --vae-lr (now {cfg.vae_lr:g}) or a larger "
                                    f"--vae-batch-size (now {cfg.vae_batch_size})", reason=err.reason, epoch=err.epoch) from None
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
    marker = folder.with_name(folder.name + ".json")
    with blocking_lock(folder.with_name(f".{folder.name}.lock")):
        if not marker.exists():
            shutil.rmtree(folder, ignore_errors=True)  # a folder without its marker is from an interrupted run
            t0 = time.perf_counter()
            result, tcfg = _vae_train(data, cfg, steps, seed)
            last = result.history[-1]
            info = {"seconds": time.perf_counter() - t0, "epochs": tcfg.epochs, "steps": steps, "images": len(data),
                    "final_loss": last["loss"], "final_recon": last["recon"], "final_kl": last["kl"],
                    "active_units": result.active_units, "latent_dim": cfg.vae.latent_dim, "warnings": result.warnings,
                    "train_paths": list(data.paths)}
            tmp = folder.with_name(f".{folder.name}.tmp{os.getpid()}")
            shutil.rmtree(tmp, ignore_errors=True)
            save_model(tmp, result.model, train_config=tcfg,
                       data={"classes": data.classes, "names": [Path(p).stem for p in data.paths], "labels": data.labels.tolist()},
                       latents={"mu": result.mu, "logvar": result.logvar, "labels": data.labels})
            if folder.exists():
                shutil.rmtree(tmp, ignore_errors=True)
            else:
                os.replace(tmp, folder)  # the folder appears whole or not at all
            write_json(marker, info)
        loaded = load_model(folder)
        lat = load_latents(folder, latent_dim=loaded.model.config.latent_dim)
        info = json.loads(marker.read_text())
    assert lat is not None
    return CachedVAE(loaded.model, lat["mu"], lat["logvar"], lat["labels"].long(), [Path(p).stem for p in info["train_paths"]], info,
                     folder)


def _vae_key(cfg: BenchConfig, data_key: str, steps: int, paths: list[str]) -> str:
    # the learning rate joins the key only where it differs from the one every cached VAE was trained with
    lr = () if cfg.vae_lr == VAE_LR else (cfg.vae_lr,)
    return settings_key(data_key, sorted(paths), cfg.vae, steps, cfg.vae_batch_size, cfg.vae_kl_warmup, *lr)


def shared_vae(cache: Path, data_key: str, train_set: ImageSet, cfg: BenchConfig, k: int, seed: int) -> CachedVAE:
    """The one VAE of the overlay arms for (k, seed): trained on ``train_set`` (all classes) once, then cached."""
    folder = cache / "vae" / _vae_key(cfg, data_key, cfg.vae_steps, train_set.paths) / f"k{k}-s{seed}"
    return _train_or_load(folder, train_set, cfg, cfg.vae_steps, seed)


def _surface_vae(cache: Path, data_key: str, clean: ImageSet, cfg: BenchConfig) -> CachedVAE:
    """The VAE of the defect-free surfaces: trained on the defect-free training images only (shared by every cell that has them)."""
    folder = cache / "surface-vae" / _vae_key(cfg, data_key, cfg.vae_steps, clean.paths)
    return _train_or_load(folder, clean, cfg, cfg.vae_steps, 0)


def _prior_vaes(cache: Path, data_key: str, train_set: ImageSet, cfg: BenchConfig, k: int, seed: int) -> list[CachedVAE]:
    """The per-class VAEs of ``vae-prior`` for (k, seed), one per class, each on that class's images only."""
    out = []
    for c in range(len(train_set.classes)):
        part = train_set.subset(train_set.labels == c)
        root = cache / "prior" / _vae_key(cfg, data_key, cfg.prior_steps, part.paths) / f"k{k}-s{seed}"
        out.append(_train_or_load(root / f"class{c}", part, cfg, cfg.prior_steps, seed * 101 + c))
    return out


# ------------------------------------------------------------------------------------ generated images
def _one_hot(labels: Tensor, k: int) -> Tensor:
    return F.one_hot(labels, k).float()


def _split_evenly(n: int, parts: int) -> list[int]:
    base, extra = divmod(n, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]


@torch.no_grad()
def _library_overlays(vae: CachedVAE, train_set: ImageSet, n: int, cfg: BenchConfig, seed: int) -> tuple[Tensor, Tensor]:
    """``overlay_base="library"``: what a user of the transforms gets with ``formulation="residual"`` (their default
    for models that store no defects; :func:`augvae.overlay.engine.overlay_batch`).

    Each real training image in turn (balanced over the classes) gets ``overlay_k - 1`` sources drawn
    by the label policy and overlaid onto it (``keep_input=True``).
    """
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
        x, y = overlay_batch(src, train_set.images[b], train_set.labels[b], opts, draw_torch(src, opts, len(b), generator=gen,
                                                                                              device="cpu"))
        out.append(x.cpu())
        labels.append(y.cpu() if y.ndim == 2 else _one_hot(y.cpu(), len(train_set.classes)))
    return torch.cat(out), torch.cat(labels).float()


@torch.no_grad()
def _onto_real(vae: CachedVAE, images: Tensor, sel: Tensor, m: int, cfg: BenchConfig, gen: torch.Generator,
               picks: Tensor | None = None) -> Tensor:
    """``overlay_base="real"``: ``x_i + sum_j (decode(z_j) - decode(z_i))`` for a real image ``x_i`` (the engine's ``overlay``)."""

    if picks is None:
        picks = torch.stack([sel[torch.randperm(len(sel), generator=gen)[: cfg.overlay_k]] for _ in range(m)])
    base, others = picks[:, 0], picks[:, 1:]
    if others.shape[1] == 0:  # overlay_k == 1: nothing to add
        return images[base].clone()
    z = sample_around(vae.mu[others], vae.logvar[others], cfg.overlay_scale, gen)
    return torch.cat([overlay(vae.model, z[s : s + 256], "residual", z_background=vae.mu[base[s : s + 256]],
                              x_background=images[base[s : s + 256]]).cpu() for s in range(0, m, 256)])


def _overlays(vae: CachedVAE, train_set: ImageSet, n: int, cfg: BenchConfig, seed: int) -> tuple[Tensor, Tensor]:
    """The bank of the ``vae`` arms: ``n`` overlays (see :attr:`BenchConfig.overlay_base`)."""
    if cfg.overlay_base == "library":
        return _library_overlays(vae, train_set, n, cfg, seed)
    classes = train_set.classes
    source_classes = [classes[i] for i in vae.labels.tolist()]
    if cfg.policy == "same-class":
        short = [c for c in classes if source_classes.count(c) < cfg.overlay_k]
        if short:
            raise ConfigError(f"the same-class policy combines {cfg.overlay_k} images of one class, but class(es) {', '.join(short)} "
                              "have fewer training images; lower --overlay-k or raise --per-class")
        imgs, tgts = [], []
        for c, m in enumerate(_split_evenly(n, len(classes))):
            if m == 0:
                continue
            sel = (vae.labels == c).nonzero().flatten()
            gen = torch.Generator().manual_seed(seed * 1009 + c)
            if cfg.overlay_base == "real":
                imgs.append(_onto_real(vae, train_set.images, sel, m, cfg, gen))
            else:
                imgs.append(random_overlays(vae.model, vae.mu[sel], vae.logvar[sel], [vae.names[i] for i in sel.tolist()],
                                            [classes[c]] * len(sel), m, k=cfg.overlay_k, formulation=cfg.formulation,
                                            scale=cfg.overlay_scale, same_class=True, generator=gen)[0])
            tgts.append(_one_hot(torch.full((m,), c), len(classes)))
        return torch.cat(imgs), torch.cat(tgts)
    gen = torch.Generator().manual_seed(seed * 1009)
    if cfg.overlay_base == "real":
        picks = torch.stack([torch.randperm(len(vae.labels), generator=gen)[: cfg.overlay_k] for _ in range(n)])
        return _onto_real(vae, train_set.images, torch.arange(len(vae.labels)), n, cfg, gen, picks), \
            _one_hot(vae.labels[picks], len(classes)).mean(1)
    x, records = random_overlays(vae.model, vae.mu, vae.logvar, vae.names, source_classes, n, k=cfg.overlay_k,
                                 formulation=cfg.formulation, scale=cfg.overlay_scale, same_class=False, generator=gen)

    index = {name: i for i, name in enumerate(classes)}
    return x, mix_class_lists([[index[c] for c in r.classes] for r in records], len(classes), -1, OverlayOptions(policy="soft"))


@torch.no_grad()
def _prior_samples(vaes: list[CachedVAE], n: int, num_classes: int, latent_dim: int, seed: int) -> tuple[Tensor, Tensor]:
    imgs, tgts = [], []
    for c, (vae, m) in enumerate(zip(vaes, _split_evenly(n, num_classes))):
        if m == 0:
            continue
        gen = torch.Generator().manual_seed(seed * 2003 + c)
        imgs.append(vae.model.decode_batched(torch.randn(m, latent_dim, generator=gen)))
        tgts.append(_one_hot(torch.full((m,), c), num_classes))
    return torch.cat(imgs), torch.cat(tgts)


def _bank_generator(bank: Tensor, targets: Tensor) -> Generator:
    """Draws bank images of the requested classes (by their main class), uniformly."""
    by_class = targets.argmax(1)

    def generate(labels: Tensor, gen: torch.Generator) -> tuple[Tensor, Tensor]:
        rows = []
        for c in labels.tolist():
            pool = (by_class == c).nonzero().flatten()
            if len(pool) == 0:
                pool = torch.arange(len(bank))
            rows.append(int(pool[int(torch.randint(len(pool), (1,), generator=gen))]))
        r = torch.tensor(rows, dtype=torch.long)
        return bank[r], targets[r]

    return generate


def _rectangles(images: Tensor, per_image: int, seed: int) -> dict[str, Tensor]:
    """CutPaste's defects: ``per_image`` random rectangles (2-15% of the area, aspect 0.3-3.3) of each defect image."""
    g = np.random.default_rng([seed, 4242])
    m, _, h, w = images.shape
    masks = torch.zeros(m * per_image, 1, h, w)
    for i in range(m * per_image):
        area = g.uniform(0.02, 0.15) * h * w
        aspect = math.exp(g.uniform(math.log(0.3), math.log(3.3)))
        rh, rw = min(h - 1, max(2, round(math.sqrt(area * aspect)))), min(w - 1, max(2, round(math.sqrt(area / aspect))))
        y0, x0 = int(g.integers(0, h - rh + 1)), int(g.integers(0, w - rw + 1))
        masks[i, :, y0 : y0 + rh, x0 : x0 + rw] = 1.0
    image = images.repeat_interleave(per_image, 0)
    return {"image": image, "projection": image, "residual": torch.zeros_like(image), "mask": masks}


#: ``unplaced="redraw"``: placements drawn for a defect before its sample is left without one. At ELPV's 7.5% off the
#: frame (benchmarks/results/elpv/offframe.json) 8 tries leave about 1e-9 of the samples without their defect.
PLACEMENT_TRIES = 8


def _transplant_set(kind: str, train_set: ImageSet, cfg: BenchConfig, cache: Path, data_key: str, k: int, seed: int) -> TrainingSet:
    """A transplant arm (or one of its controls): the engine puts defects of the training images onto other images."""
    classes, labels = train_set.classes, train_set.labels
    bg = classes.index(cfg.background_class) if cfg.background_class else -1
    defect_rows = (labels != bg).nonzero().flatten()
    clean_rows = (labels == bg).nonzero().flatten()
    defect_images = train_set.images[defect_rows]
    info: dict[str, Any] = {"kind": kind}
    reference = train_set.images[clean_rows] if bg >= 0 else None
    if kind == "transplant":
        if bg >= 0:  # the VAE of the defect-free surfaces: the defects are what it cannot reproduce
            vae = _surface_vae(cache, data_key, train_set.subset(clean_rows), cfg)
        else:  # no defect-free class: the shared VAE of this cell's images (defect onto defect)
            vae = shared_vae(cache, data_key, train_set, cfg, k, seed)
        info["vae"] = {k_: v for k_, v in vae.info.items() if k_ != "train_paths"}
        info["vae_train_paths"] = vae.info["train_paths"]
        defects = extract_defects(defect_images, vae_projector(vae.model), cfg.extract, reference=reference)
        opts = OverlayOptions(policy="same-class", formulation="transplant", k=cfg.transplant_k, blend=cfg.blend,
                              translate=cfg.translate, rotate=cfg.transplant_rotate)
    elif kind == "blurmask":
        defects = extract_defects(defect_images, blur_projector(cfg.blur_sigma), cfg.extract, reference=reference)
        opts = OverlayOptions(policy="same-class", formulation="transplant", k=cfg.transplant_k, blend=cfg.blend,
                              translate=cfg.translate, rotate=cfg.transplant_rotate)
    else:  # cutpaste: a random rectangle of a defect image, pasted anywhere, not flipped
        defects = _rectangles(defect_images, 16, seed)
        defect_rows = defect_rows.repeat_interleave(16)
        opts = OverlayOptions(policy="same-class", formulation="transplant", k=1, blend="paste", translate=0.5, flip=False)
    info["mask_area"] = float(defects["mask"].mean())
    src = sources_from_defects(defects, [classes[i] for i in labels[defect_rows].tolist()], classes,
                               cfg.background_class or None)
    by_class = [(labels == c).nonzero().flatten() for c in range(len(classes))]

    def generate(y: Tensor, gen: torch.Generator) -> tuple[Tensor, Tensor]:
        # The surface: a real defect-free image, or (no defect-free class) another real image of the same class.
        pools = [clean_rows if bg >= 0 else by_class[c] for c in y.tolist()]
        base = torch.stack([train_set.images[p[int(torch.randint(len(p), (1,), generator=gen))]] for p in pools])
        if cfg.unplaced == "keep-label":  # the rule of the runs before 2026-12-07: no check that the defect landed
            draws = draw_torch(src, opts, len(y), generator=gen, device="cpu")
            return render(src, base, make_plan(src, y, opts, draws), opts, draws), _one_hot(y, len(classes))
        out, todo = base.clone(), torch.arange(len(y))
        for _ in range(PLACEMENT_TRIES):  # the first try draws what keep-label draws; only defects off the frame draw again
            draws = draw_torch(src, opts, len(todo), generator=gen, device="cpu")
            plan = make_plan(src, y[todo], opts, draws, size=(base.shape[-2], base.shape[-1]))
            out[todo] = render(src, base[todo], plan, opts, draws)
            todo = todo[~plan.valid]
            if len(todo) == 0:
                break
        target = _one_hot(y, len(classes))
        if len(todo) and bg >= 0:  # still no defect in the frame: the sample is the defect-free surface it is
            target[todo] = _one_hot(torch.full((len(todo),), bg), len(classes))
        return out, target

    if not src.has_defects:
        raise DataError(f"{kind} at k = {k}, seed {seed}: every defect image of the cell has an empty mask, so nothing can be "
                        "transplanted; lower --extract-mask-low / --extract-mask-high (e.g. 1.5 and 3)")
    generate_for = torch.zeros(len(classes), dtype=torch.bool)
    generate_for[src.source_class[src.has_defect]] = True  # a class whose every defect has an empty mask gets none
    if bg >= 0:
        generate_for[bg] = False
    ts = _replacing(cfg, TrainingSet(train_set.images, labels, len(classes), generate, generate_for, info), bg)
    if cfg.heal_p > 0 and bg >= 0 and kind != "cutpaste":  # CutPaste's "projection" is the image itself: nothing to heal
        ts.heal, ts.heal_class = _healer(defects, src.has_defect), bg
    return ts


def _healer(defects: dict[str, Tensor], usable: Tensor) -> Callable[[int, torch.Generator], Tensor]:
    """``heal_p``: defect images with the defect under the mask replaced by the projection (the defect-free surface there)."""
    m = defects["mask"][usable]
    healed = defects["image"][usable] * (1 - m) + defects["projection"][usable] * m  # (M, C, S, S)

    def heal(n: int, gen: torch.Generator) -> Tensor:
        return healed[torch.randint(len(healed), (n,), generator=gen)]

    return heal


def _relabel_set(train_set: ImageSet, cfg: BenchConfig) -> TrainingSet:
    """``relabel`` (a control): each replaced defect sample is a random defect-free training image, unchanged, with the
    defect's label. A transplant puts a defect on such an image; what this arm gains without one is what the label alone
    does (a shift of the classifier toward the defect classes), so a transplant's gain over it is the defect's."""
    classes, labels = train_set.classes, train_set.labels
    bg = classes.index(cfg.background_class)
    clean_rows = (labels == bg).nonzero().flatten()

    def generate(y: Tensor, gen: torch.Generator) -> tuple[Tensor, Tensor]:
        rows = clean_rows[torch.randint(len(clean_rows), (len(y),), generator=gen)]
        return train_set.images[rows].clone(), _one_hot(y, len(classes))

    generate_for = torch.ones(len(classes), dtype=torch.bool)
    generate_for[bg] = False
    return _replacing(cfg, TrainingSet(train_set.images, labels, len(classes), generate, generate_for, {"kind": "relabel"}), bg)


def _replacing(cfg: BenchConfig, ts: TrainingSet, bg: int) -> TrainingSet:
    """``gen_replaces="defect-free"``: generated defects replace defect-free samples (each of a random defect class that
    ``ts`` generates for) instead of defect samples of their own class; the real defect samples all stay."""
    if cfg.gen_replaces == "defect" or bg < 0:
        return ts
    assert ts.generate is not None and ts.generate_for is not None
    inner, classes = ts.generate, ts.generate_for.nonzero().flatten()

    def generate(y: Tensor, gen: torch.Generator) -> tuple[Tensor, Tensor]:
        return inner(classes[torch.randint(len(classes), (len(y),), generator=gen)], gen)

    only_bg = torch.zeros_like(ts.generate_for)
    only_bg[bg] = True
    ts.generate, ts.generate_for = generate, only_bg
    ts.info["gen_replaces"] = "defect-free"
    return ts


def build_training_set(arm: str, train_set: ImageSet, cfg: BenchConfig, cache: Path, data_key: str, k: int, seed: int) -> TrainingSet:
    """What the classifier of ``arm`` trains on for (k, seed)."""
    spec = ARM_SPECS[arm]
    num_classes = len(train_set.classes)
    if spec.generated is None:
        return TrainingSet(train_set.images, train_set.labels, num_classes)
    t0 = time.perf_counter()
    if spec.generated in ("transplant", "blurmask", "cutpaste"):
        ts = _transplant_set(spec.generated, train_set, cfg, cache, data_key, k, seed)
    elif spec.generated == "relabel":
        ts = _relabel_set(train_set, cfg)
    else:
        n_gen = max(1, round(cfg.ratio * len(train_set)))
        if spec.generated == "overlay":
            vae = shared_vae(cache, data_key, train_set, cfg, k, seed)
            bank, targets = _overlays(vae, train_set, n_gen, cfg, seed)
            info: dict[str, Any] = {"vae": {k_: v for k_, v in vae.info.items() if k_ != "train_paths"},
                                    "vae_train_paths": vae.info["train_paths"]}
        else:
            vaes = _prior_vaes(cache, data_key, train_set, cfg, k, seed)
            bank, targets = _prior_samples(vaes, n_gen, num_classes, cfg.vae.latent_dim, seed)
            info = {"prior_vaes": [{k_: v for k_, v in v_.info.items() if k_ != "train_paths"} for v_ in vaes],
                    "vae_train_paths": [p for v_ in vaes for p in v_.info["train_paths"]]}
        info["bank_size"] = n_gen
        generate_for = torch.ones(num_classes, dtype=torch.bool)
        if cfg.background_class:  # in the defect-free setting only defect samples are replaced
            generate_for[train_set.classes.index(cfg.background_class)] = False
        ts = TrainingSet(train_set.images, train_set.labels, num_classes, _bank_generator(bank, targets), generate_for, info,
                         bank, targets)
    ts.info["generate_seconds"] = time.perf_counter() - t0
    return ts

