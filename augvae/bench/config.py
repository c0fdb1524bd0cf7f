"""The benchmark's settings: one validated, frozen dataclass that the CLI is generated from.

The VAE's architecture is a nested :class:`~augvae.config.ModelConfig` (``vae``; CLI ``--vae-latent-dim``
...) and the defect extraction a nested :class:`~augvae.config.ExtractConfig` (``extract``), so each
of their defaults and checks lives once, in :mod:`augvae.config`.

Example:
    >>> cfg = BenchConfig(arms=("original", "vae"), per_class=(5, 10), seeds=3)
    >>> [c for c in cfg.arms], cfg.per_class, cfg.seed_list(), cfg.vae.latent_dim
    (['original', 'vae'], (5, 10), [0, 1, 2], 16)
    >>> BenchConfig(arms=("orignal",))
    Traceback (most recent call last):
    ...
    augvae.errors.ConfigError: unknown arm 'orignal'; expected one of: original, classic, vae, classic+vae, vae-prior, mixup, transplant, classic+transplant, blurmask, classic+blurmask, cutpaste, classic+cutpaste, relabel, classic+relabel
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass, field
from typing import Any

from augvae.config import (
    DEVICES,
    RECIPES,
    RESIZE_POLICIES,
    TRANSPLANT_TRANSLATE,
    ExtractConfig,
    ModelConfig,
    _check_types,
    _h,
    check_choice,
    check_seed,
    config_from_dict,
    config_to_dict,
)
from augvae.errors import ConfigError
from augvae.overlay._names import BLEND_CHOICES, LATENT_FORMULATIONS, default_blend

__all__ = ["ARMS", "BASELINE_ARMS", "CONTROL_ARMS", "GRID_FIELDS", "LABEL_POLICIES", "MIX_MODES", "OVERLAY_BASES", "RUN_FIELDS",
           "BenchConfig"]

#: The arms, in the order tables and plots show them. Every arm trains the same classifier with the
#: same optimizer, schedule and number of optimizer steps; they differ only in the data.
ARMS: tuple[str, ...] = ("original", "classic", "vae", "classic+vae", "vae-prior", "mixup", "transplant", "classic+transplant",
                         "blurmask", "classic+blurmask", "cutpaste", "classic+cutpaste", "relabel", "classic+relabel")
#: The baselines a generated arm must beat (the better of them at each k).
BASELINE_ARMS: tuple[str, ...] = ("original", "classic")
#: Controls that isolate what the VAE contributes to a transplant: a non-learned mask, CutPaste, and no defect at all
#: (``relabel``: a defect-free image given a defect's label: what a transplant gains by the label alone).
CONTROL_ARMS: tuple[str, ...] = ("blurmask", "classic+blurmask", "cutpaste", "classic+cutpaste", "relabel", "classic+relabel")

#: How decoded overlay images are labelled: ``same-class`` combines sources of one class and gives it
#: that class; ``soft`` combines sources of any classes and gives each source's class an equal share.
LABEL_POLICIES: tuple[str, ...] = ("same-class", "soft")

#: The pixel-space mixing of the ``mixup`` arm: torchvision ``v2.MixUp``, ``v2.CutMix``, or a random
#: choice of the two per batch (``both``, as timm's training script does).
MIX_MODES: tuple[str, ...] = ("mixup", "cutmix", "both")

#: What a transplant arm does with a sample whose defect lands off the frame (see :attr:`BenchConfig.unplaced`).
UNPLACED: tuple[str, ...] = ("redraw", "keep-label")

#: What a ``vae`` arm overlay is built on (see :attr:`BenchConfig.overlay_base`).
OVERLAY_BASES: tuple[str, ...] = ("decoded", "real", "library")

#: Fields that say WHICH cells exist (the grid), not what a cell computes.
GRID_FIELDS: tuple[str, ...] = ("arms", "classifiers", "per_class", "seeds", "first_seed")
#: Fields that say HOW cells are run (parallelism, hardware, follow-up runs): they do not change a cell's meaning.
RUN_FIELDS: tuple[str, ...] = ("jobs", "threads", "device", "convergence_check")
#: The benchmark VAE's learning rate by default: the small-set recipe's, which every cached VAE was trained with.
VAE_LR: float = RECIPES["small-set"]["lr"]

#: Settings added after cells were committed, with the value that computes what those cells computed: left out of
#: the fingerprint at that value, so earlier run folders still resume (``(section, field)``, ``""`` for the top level).
ADDED_LATER: dict[tuple[str, str], Any] = {("extract", "match"): "none", ("", "heal_p"): 0.0, ("", "gen_replaces"): "defect",
                                           ("", "transplant_rotate"): True, ("", "unplaced"): "keep-label", ("", "vae_lr"): VAE_LR}


def _default_vae() -> ModelConfig:
    # The benchmark's VAE: wider than the paper's 16-unit dense layer, and units that cannot die.
    return ModelConfig(latent_dim=16, hidden_dim=64, activation="leaky_relu")


@dataclass(frozen=True)
class BenchConfig:
    """Everything a benchmark cell depends on, validated on construction.

    A cell is one (classifier, arm, k, seed). Its result depends on every field except the grid
    fields (:data:`GRID_FIELDS`) and the run fields (:data:`RUN_FIELDS`); :meth:`fingerprint`
    hashes the rest, so a rerun with changed settings is refused instead of mixing results.
    """

    arms: tuple[str, ...] = _h("arms to compare: " + ", ".join(ARMS), default=ARMS[:6])
    classifiers: tuple[str, ...] = _h("classifiers: small-cnn and/or timm model names (e.g. resnet18)", default=("small-cnn",))
    per_class: tuple[int, ...] = _h("real training images per defect class, k (e.g. 5,10,20,40)", default=(5, 10, 20, 40))
    seeds: int = _h("seeds per (arm, k): each a different draw of the training images and initialisation", default=5)
    first_seed: int = _h("the first seed (seeds are first_seed .. first_seed + seeds - 1)", default=0)
    image_size: int = _h("side of the square images every model sees (28..256)", default=64)
    channels: int = _h("image channels: 1 (grayscale) or 3", default=1)
    resize_policy: str = _h("how images are fit to image_size: " + ", ".join(RESIZE_POLICIES), default="resize")
    background_class: str = _h("the defect-free class: k images of every OTHER class plus the defect-free pool images train "
                               "every arm (the setting of few defects, many defect-free images); empty: k of every class",
                               default="")
    background_images: int = _h("with background_class: defect-free pool images per cell (0 = all of them)", default=0)
    steps: int = _h("optimizer steps of every classifier, the same in every arm; 0 = auto: auto_epochs passes over the "
                    "largest real training set of the grid, at least min_steps", default=0)
    auto_epochs: int = _h("steps 0 (auto): passes over the largest real training set", default=30)
    # 1,200, not 600: on NEU the convergence check of a 600-step grid changed the conclusion of classic (and of
    # classic+transplant) against original at k = 20 and 40 (benchmarks/results/neu/README.md).
    min_steps: int = _h("steps 0 (auto): the least number of steps", default=1200)
    batch_size: int = _h("classifier minibatch size", default=32)
    balanced: str = _h("class-balanced batches: on, off, or auto (on when the classes' image counts differ)", default="auto")
    lr: float = _h("classifier learning rate (AdamW, cosine decay to 0 over the steps)", default=2e-3)
    weight_decay: float = _h("classifier AdamW weight decay", default=5e-4)
    classifier_weights: str = _h("a local .safetensors file of pretrained weights for a timm classifier (empty: from scratch)", default="")
    precision: str = _h("classifier arithmetic: fp32, or bf16 (autocast; measured 13-25x slower on CPUs without bf16 units: "
                        "benchmarks/results/bench_profile.json)", default="fp32")
    memory_format: str = _h("classifier activations: contiguous (NCHW), channels-last, or auto (channels-last for timm models "
                            "on CPU); not the default: no cell got faster (benchmarks/README.md, 'Cheaper cells')",
                            default="contiguous")
    gen_p: float = _h("every generated arm: probability that a training sample is replaced by a generated one (of the "
                      "same class; in the background-class setting only defect samples are)", default=0.5)
    ratio: float = _h("vae and vae-prior arms: generated images made per real training image (the bank sampled with gen_p)",
                      default=1.0)
    policy: str = _h("label policy of decoded overlays: " + ", ".join(LABEL_POLICIES), default="same-class")
    formulation: str = _h("vae arms: overlay formulation: " + ", ".join((*LATENT_FORMULATIONS, "residual")), default="residual")
    overlay_k: int = _h("vae arms: sources combined per overlay image", default=2)
    overlay_base: str = _h("vae arms: decoded (fresh overlays of the sources), real (a real training image plus the decoded "
                           "differences of other sources from it) or library (augvae.overlay.overlay_batch onto real training "
                           "images, as the transforms do with formulation residual)", default="decoded")
    overlay_scale: float = _h("vae arms: sample around each source centre with this many posterior std (0 = centres)", default=0.0)
    blend: str = _h("transplant arms: auto (paste with background_class, where defects go onto defect-free surfaces; "
                    "random without), " + ", ".join(BLEND_CHOICES), default="auto")
    transplant_k: int = _h("transplant arms: defects put onto one image", default=1)
    translate: float = _h("transplant arms: largest shift of a defect, as a fraction of the image side",
                          default=TRANSPLANT_TRANSLATE)
    transplant_rotate: bool = _h("transplant arms and their blur control: the 90-degree rotations of a defect as well as its "
                                 "flips (off: surfaces with an orientation, such as solar cells' busbars)", default=True)
    gen_replaces: str = _h("transplant arms and their controls, with background_class: the samples a generated one replaces: "
                      "defect (a defect sample, by one of its class: the class balance stays) or defect-free (a defect-free "
                      "sample, by one of a random defect class, as augvae's transforms and MixedDataset do by default: every "
                      "real defect sample stays)", default="defect")
    unplaced: str = _h("transplant arms and their controls: a generated sample whose defect, once placed, has no mask pixel "
                       "above 0.5 in the frame: redraw (up to 8 fresh placements; a sample still without its defect is the "
                       "defect-free image it is and is labelled so) or keep-label (the unchanged defect-free image keeps the "
                       "defect's label, as every run before 2026-12-07 did: 7.5% of the VAE's transplants on ELPV, "
                       "benchmarks/results/elpv/offframe.json; only to reproduce those runs)", default="redraw")
    heal_p: float = _h("transplant and blurmask arms, with background_class: probability that a defect-free sample is "
                       "replaced by a defect image healed by its projection (its masked defect replaced by what the "
                       "projection makes of the surface there), labelled defect-free: the same cell with and without its "
                       "defect (0 = none)", default=0.0)
    filter_confidence: float = _h("drop generated samples the real-data classifier of the same cell gives less than this "
                                  "probability of their class (0 = keep all)", default=0.0)
    vae: ModelConfig = field(default_factory=_default_vae, metadata={"help": "the VAE's architecture"})
    extract: ExtractConfig = field(default_factory=ExtractConfig, metadata={"help": "defect extraction of the transplant arms"})
    vae_steps: int = _h("optimizer steps of the VAE of the vae and transplant arms (small-set recipe)", default=1500)
    prior_steps: int = _h("optimizer steps of each per-class VAE of the vae-prior arm", default=600)
    vae_batch_size: int = _h("VAE minibatch size (10 in the paper)", default=10)
    vae_kl_warmup: float = _h("share of VAE training over which the KL weight ramps up from 0 (0 = off)", default=0.25)
    vae_lr: float = _h("VAE learning rate (RMSprop, the small-set recipe's; lower it if the VAE diverges)", default=VAE_LR)
    blur_sigma: float = _h("blurmask arms: the Gaussian blur (pixels) that replaces the VAE's projection", default=2.0)
    mix: str = _h("mixup arm: " + ", ".join(MIX_MODES), default="both")
    mix_alpha: float = _h("mixup arm: Beta(alpha, alpha) of the mixing weight", default=1.0)
    test_fraction: float = _h("random split (no --split-file): share of each class held out for testing", default=0.3)
    split_seed: int = _h("random split (no --split-file): its seed, the same for every cell", default=0)
    device: str = _h("auto (cuda, then mps, then cpu), cpu, cuda or mps", default="auto")
    jobs: int = _h("cells run in parallel processes", default=1)
    threads: int = _h("torch threads per process (0 = CPU cores / jobs; 1 is fastest on a busy shared machine)", default=0)
    convergence_check: bool = _h("after the grid, rerun original, the better baseline and the best of augvae's arms at twice the steps", default=True)

    def __post_init__(self) -> None:
        for name, cls in (("vae", ModelConfig), ("extract", ExtractConfig)):
            value = getattr(self, name)
            if isinstance(value, dict):  # from JSON or the CLI
                base = config_to_dict(_default_vae() if name == "vae" else ExtractConfig())
                object.__setattr__(self, name, config_from_dict(cls, {**base, **value}, where=f"bench {name}"))
            elif not isinstance(value, cls):
                raise ConfigError(f"{name} must be a {cls.__name__}, got {type(value).__name__}")
        object.__setattr__(self, "vae", dataclasses.replace(self.vae, image_size=self.image_size, channels=self.channels)
                           if (self.vae.image_size, self.vae.channels) != (self.image_size, self.channels) else self.vae)
        _check_types(self)
        if not self.arms:
            raise ConfigError("arms is empty; pass --arms with at least one of: " + ", ".join(ARMS))
        for arm in self.arms:
            check_choice(arm, ARMS, "arm")
        _no_repeats(self.arms, "arms")
        if not self.classifiers:
            raise ConfigError("classifiers is empty; pass --classifiers small-cnn (or a timm model name)")
        _no_repeats(self.classifiers, "classifiers")
        from augvae.bench.classifiers import check_classifier

        for name in self.classifiers:
            check_classifier(name)
        if not self.per_class or any(k < 1 for k in self.per_class):
            raise ConfigError(f"per_class must hold positive image counts, got {self.per_class}; pass e.g. --per-class 5,10,20,40")
        _no_repeats(self.per_class, "per_class")
        for name in ("seeds", "auto_epochs", "min_steps", "batch_size", "overlay_k", "transplant_k", "vae_steps", "prior_steps",
                     "vae_batch_size", "jobs"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}; pass --{name.replace('_', '-')} 1 or more")
        for name in ("steps", "threads", "background_images"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)}")
        check_seed(self.first_seed, "first_seed")
        check_seed(self.first_seed + self.seeds - 1, "first_seed + seeds - 1")
        check_seed(self.split_seed, "split_seed")
        if self.steps > 1_000_000 or self.vae_steps > 1_000_000 or self.prior_steps > 1_000_000:
            raise ConfigError("steps, vae_steps and prior_steps must be at most 1,000,000 (a run that could not finish)")
        if not 28 <= self.image_size <= 256:
            raise ConfigError(f"image_size must be between 28 and 256, got {self.image_size}; pass --image-size 28..256")
        if self.channels not in (1, 3):
            raise ConfigError(f"channels must be 1 or 3, got {self.channels}")
        check_choice(self.resize_policy, RESIZE_POLICIES, "resize_policy")
        check_choice(self.policy, LABEL_POLICIES, "label policy")
        check_choice(self.formulation, (*LATENT_FORMULATIONS, "residual"), "formulation")
        check_choice(self.mix, MIX_MODES, "mix")
        check_choice(self.overlay_base, OVERLAY_BASES, "overlay_base")
        check_choice(self.device, DEVICES, "device")
        check_choice(self.balanced, ("auto", "on", "off"), "balanced")
        check_choice(self.precision, ("fp32", "bf16"), "precision")
        check_choice(self.memory_format, ("auto", "channels-last", "contiguous"), "memory_format")
        check_choice(self.blend, ("auto", *BLEND_CHOICES), "blend")
        if self.blend == "auto":  # resolved, so that the fingerprint and the saved config name the blend the cells used
            object.__setattr__(self, "blend", default_blend(onto_defect_free=bool(self.background_class)))
        check_choice(self.gen_replaces, ("defect", "defect-free"), "gen_replaces")
        check_choice(self.unplaced, UNPLACED, "unplaced")
        for name in ("lr", "vae_lr", "mix_alpha", "blur_sigma"):
            if not (math.isfinite(getattr(self, name)) and getattr(self, name) > 0):
                raise ConfigError(f"{name} must be a finite number > 0, got {getattr(self, name)}")
        for name in ("weight_decay", "ratio", "overlay_scale"):
            if not (math.isfinite(getattr(self, name)) and getattr(self, name) >= 0):
                raise ConfigError(f"{name} must be a finite number >= 0, got {getattr(self, name)}")
        for name in ("gen_p", "translate", "heal_p"):
            if not 0 <= getattr(self, name) <= 1:
                raise ConfigError(f"{name} must be a number in [0, 1], got {getattr(self, name)}")
        if not 0 <= self.filter_confidence < 1:
            raise ConfigError(f"filter_confidence must be in [0, 1), got {self.filter_confidence}")
        if not 0 <= self.vae_kl_warmup <= 1:
            raise ConfigError(f"vae_kl_warmup must be between 0 and 1 (a share of VAE training), got {self.vae_kl_warmup}")
        if not 0 < self.test_fraction < 1:
            raise ConfigError(f"test_fraction must be between 0 and 1 (exclusive), got {self.test_fraction}")
        if self.classifier_weights and not self.classifier_weights.endswith(".safetensors"):
            raise ConfigError(
                f"classifier_weights must be a .safetensors file (pickled .pth/.bin files are refused: loading them can run "
                f"code), got {self.classifier_weights!r}; convert it with safetensors.torch.save_file"
            )
        generated = [a for a in self.arms if a not in ("original", "classic", "mixup")]
        if self.gen_p == 0 and generated:
            raise ConfigError(f"gen_p is 0, so the generated arms ({', '.join(generated)}) would add no image; pass --gen-p > 0")
        if self.ratio == 0 and any(a in ("vae", "classic+vae", "vae-prior") for a in self.arms):
            raise ConfigError("ratio is 0, so the vae arms would make no image; pass --ratio > 0 or drop the vae arms")
        relabel = [a for a in self.arms if a.endswith("relabel")]
        if relabel and not self.background_class:
            raise ConfigError(f"{relabel[0]} gives defect-free images a defect's label, so it needs a defect-free class; pass "
                              "--background-class or drop the arm")
        if self.gen_replaces == "defect-free" and not self.background_class:
            raise ConfigError("gen_replaces defect-free swaps defect-free samples for generated defects, so it needs a defect-free "
                              "class; pass --background-class too, or --gen-replaces defect")
        if self.heal_p and not self.background_class:
            raise ConfigError("heal_p replaces defect-free samples by healed defect images, so it needs a defect-free class; pass "
                              "--background-class too, or --heal-p 0")
        if self.background_images and not self.background_class:
            raise ConfigError("background_images caps the defect-free images of --background-class; pass --background-class too")

    def seed_list(self) -> list[int]:
        """The seeds of the grid."""
        return list(range(self.first_seed, self.first_seed + self.seeds))

    def cell_settings(self) -> dict[str, Any]:
        """The fields a cell's result depends on (all but the grid and run fields)."""
        d = config_to_dict(self)
        for (section, name), value in ADDED_LATER.items():
            part = d[section] if section else d
            if part.get(name) == value:
                del part[name]
        return {k: v for k, v in d.items() if k not in GRID_FIELDS and k not in RUN_FIELDS}

    def fingerprint(self) -> str:
        """A short hash of :meth:`cell_settings`: cells with equal fingerprints are comparable."""
        text = json.dumps(self.cell_settings(), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def replace(self, **changes: Any) -> BenchConfig:
        """A copy with some fields changed (validated again).

        A blend that ``auto`` chose for the old ``background_class`` follows a new one (``auto`` is resolved on
        construction, so a blend named equal to what ``auto`` would choose follows it too; name ``blend`` in the
        same call to keep it).
        """
        if "background_class" in changes and "blend" not in changes and self.blend == default_blend(bool(self.background_class)):
            changes["blend"] = "auto"
        return dataclasses.replace(self, **changes)


def _no_repeats(values: tuple[Any, ...], name: str) -> None:
    seen = [v for i, v in enumerate(values) if v in values[:i]]
    if seen:
        raise ConfigError(f"{name} lists {seen[0]!r} twice; give each once")
