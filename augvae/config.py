"""Validated configuration dataclasses and the paper's training recipes.

Every default lives here, once: the CLI builds its options from these fields (their ``help``
metadata), and each saved artifact stores the resolved config next to it as JSON.

Example:
    >>> from augvae.config import ModelConfig, recipe_config
    >>> ModelConfig().latent_dim
    2
    >>> cfg = recipe_config("overlay", epochs=5)
    >>> (cfg.epochs, cfg.copies, cfg.batch_size)
    (5, 500, 10)
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from typing import Any, TypeVar

from augvae.errors import ConfigError
from augvae.overlay._names import BLEND_CHOICES, FORMULATIONS, MATCHES, POLARITIES, default_blend

__all__ = [
    "ModelConfig",
    "TrainConfig",
    "ExtractConfig",
    "GenerateConfig",
    "GENERATE_MODES",
    "RECIPES",
    "recipe_config",
    "config_from_dict",
    "config_to_dict",
    "check_choice",
    "check_seed",
    "MAX_SEED",
]

RECON_LOSSES = ("bce", "mse")
ACTIVATIONS = ("relu", "leaky_relu", "elu")
OPTIMIZERS = ("rmsprop", "adam")
LR_SCHEDULES = ("constant", "cosine")
DEVICES = ("auto", "cpu", "cuda", "mps")
RESIZE_POLICIES = ("resize", "center-crop", "pad")

C = TypeVar("C")

#: Seeds are 32-bit unsigned integers, as numpy's and every library's generators accept them.
MAX_SEED = 2**32 - 1
#: Largest model accepted (parameters): 1e9 weights need 4 GB, and 16 GB to train with an optimizer.
MAX_PARAMETERS = 1_000_000_000


def check_seed(seed: int, name: str = "seed") -> int:
    """``seed`` if it is in [0, :data:`MAX_SEED`], else :class:`ConfigError` naming the range.

    Example:
        >>> check_seed(99999999999999999999999)
        Traceback (most recent call last):
        ...
        augvae.errors.ConfigError: seed must be an integer from 0 to 4294967295, got 99999999999999999999999; pass e.g. --seed 0
    """
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise ConfigError(f"{name} must be an integer from 0 to {MAX_SEED}, got {seed!r}; pass e.g. --{name.replace('_', '-')} 0")
    return seed


def check_choice(value: str, choices: typing.Iterable[str], name: str) -> str:
    """Return ``value`` if it is one of ``choices``, else raise :class:`ConfigError` listing them."""
    choices = tuple(choices)
    if value not in choices:
        raise ConfigError(f"unknown {name} {value!r}; expected one of: {', '.join(choices)}")
    return value


def _h(text: str, **kw: Any) -> Any:
    """A dataclass field whose help text the CLI shows."""
    return field(metadata={"help": text}, **kw)


@dataclass(frozen=True)
class ModelConfig:
    """Architecture and objective of a :class:`augvae.ConvVAE`.

    The default is the paper's model (the Keras VAE example): conv 32 and 64 with stride 2, dense
    16, a 2-D latent, a mirrored transposed-conv decoder ending in a sigmoid, BCE reconstruction,
    on 64x64 images. Larger images get more stride-2 stages so the last feature map stays at most
    16x16 (128 px: 3 stages, 256 px: 4).

    Example:
        >>> ModelConfig().stage_sizes(), ModelConfig().resolved_widths()
        ([64, 32, 16], (32, 64))
        >>> cfg = ModelConfig(image_size=200, latent_dim=8)
        >>> cfg.stage_sizes(), cfg.resolved_widths()
        ([200, 100, 50, 25, 13], (32, 64, 128, 256))
    """

    image_size: int = _h("side of the square images the model takes, 28 to 256 (images are fit to it)", default=64)
    channels: int = _h("image channels: 1 (grayscale) or 3 (colour)", default=1)
    latent_dim: int = _h("latent dimension (2 as in the paper; larger is more realistic)", default=2)
    widths: tuple[int, ...] = _h(
        "conv channels per stride-2 stage; empty = automatic (32, 64, then doubling up to 256)", default=()
    )
    hidden_dim: int = _h("width of the dense layer before the mean/log-variance heads", default=16)
    activation: str = _h("hidden activation: relu (as in the paper), leaky_relu or elu (these cannot die)", default="relu")
    recon_loss: str = _h("reconstruction loss: bce (as in the paper) or mse", default="bce")
    beta: float = _h("weight of the KL term (1 = the plain VAE; below 1 fights posterior collapse)", default=1.0)

    def __post_init__(self) -> None:
        _check_types(self)
        if not 28 <= self.image_size <= 256:
            raise ConfigError(f"image_size must be between 28 and 256, got {self.image_size}; pass --image-size 28..256")
        if self.channels not in (1, 3):
            raise ConfigError(f"channels must be 1 or 3, got {self.channels}")
        if not 1 <= self.latent_dim <= 512:
            raise ConfigError(f"latent_dim must be between 1 and 512, got {self.latent_dim}; pass --latent-dim 2 or larger")
        if self.hidden_dim < 1:
            raise ConfigError(f"hidden_dim must be >= 1, got {self.hidden_dim}")
        if self.widths and (len(self.widths) < 2 or any(w < 1 for w in self.widths)):
            raise ConfigError(f"widths must hold at least 2 positive channel counts, got {self.widths}")
        if self.widths and len(self.widths) != self.num_stages():
            raise ConfigError(
                f"widths has {len(self.widths)} stages but image_size {self.image_size} needs "
                f"{self.num_stages()} stride-2 stages; give {self.num_stages()} widths or leave widths empty"
            )
        check_choice(self.recon_loss, RECON_LOSSES, "recon_loss")
        check_choice(self.activation, ACTIVATIONS, "activation")
        if not (math.isfinite(self.beta) and self.beta >= 0):
            raise ConfigError(f"beta must be a finite number >= 0, got {self.beta}")
        params = self.num_parameters()
        if params > MAX_PARAMETERS:
            raise ConfigError(
                f"this model would have {params:,} weights ({params * 4 / 2**30:.1f} GiB, about {params * 16 / 2**30:.0f} GiB to "
                f"train), more than the {MAX_PARAMETERS:,} augvae accepts; lower --hidden-dim (now {self.hidden_dim}) or --widths"
            )

    def num_parameters(self) -> int:
        """The number of weights of the model this config describes, computed without building it.

        Example:
            >>> ModelConfig().num_parameters()
            385877
        """
        widths, sizes = self.resolved_widths(), self.stage_sizes()
        flat = widths[-1] * sizes[-1] ** 2
        enc = list(zip((self.channels, *widths[:-1]), widths))  # (in, out) of the stride-2 convs
        dec = list(zip((widths[-1], *widths[::-1][:-1]), widths[::-1])) + [(widths[0], self.channels)]
        total = sum(i * o * 9 + o for i, o in enc + dec)  # 3x3 kernels and biases
        total += flat * self.hidden_dim + self.hidden_dim  # dense
        total += 2 * (self.hidden_dim * self.latent_dim + self.latent_dim)  # mean and log-variance heads
        total += self.latent_dim * flat + flat  # decoder dense
        return total

    def num_stages(self) -> int:
        """Number of stride-2 stages: 2 up to 64 px, one more each time the size doubles."""
        return max(2, math.ceil(math.log2(self.image_size / 16)))

    def stage_sizes(self) -> list[int]:
        """Feature-map side after each stage, input first: ``[S, ceil(S/2), ...]``."""
        sizes = [self.image_size]
        for _ in range(self.num_stages()):
            sizes.append(math.ceil(sizes[-1] / 2))
        return sizes

    def resolved_widths(self) -> tuple[int, ...]:
        """Channel widths, the automatic ones filled in."""
        if self.widths:
            return tuple(self.widths)
        return tuple(min(256, 32 * 2**i) for i in range(self.num_stages()))


@dataclass(frozen=True)
class TrainConfig:
    """How a VAE is trained. Use :func:`recipe_config` to start from one of the paper's recipes.

    Example:
        >>> TrainConfig(epochs=3, optimizer="adam").lr
        0.002
    """

    recipe: str = _h("small-set (paper section 3: all images) or overlay (section 4: a few sources)", default="small-set")
    epochs: int = _h("passes over the data (overlay recipe: over copies x sources)", default=100)
    batch_size: int = _h("minibatch size (10 in the paper)", default=10)
    lr: float = _h("learning rate (2e-3 in the paper)", default=2e-3)
    optimizer: str = _h("rmsprop (as in the paper, Keras defaults) or adam", default="rmsprop")
    seed: int = _h("random seed: the same seed gives the same weights on CPU", default=0)
    device: str = _h("auto (cuda, then mps, then cpu), cpu, cuda or mps", default="auto")
    copies: int = _h("overlay recipe: copies of each source per epoch (500 in the paper)", default=500)
    kl_warmup_epochs: int = _h("ramp the KL weight from 0 to beta over this many epochs (0 = off)", default=0)
    lr_schedule: str = _h(
        "constant (as in the paper) or cosine: epoch by epoch along a half cosine from lr down to lr/20 in the last "
        "epoch (ends with less noise: the overlay recipe reaches the paper schedule's quality in 4 of its 20 epochs)",
        default="constant",
    )
    resize_policy: str = _h("how images are fit to image_size: resize, center-crop or pad", default="resize")
    checkpoint_every: int = _h("save a resumable checkpoint every N epochs", default=1)

    def __post_init__(self) -> None:
        _check_types(self)
        check_choice(self.recipe, RECIPES, "recipe")
        check_choice(self.optimizer, OPTIMIZERS, "optimizer")
        check_choice(self.lr_schedule, LR_SCHEDULES, "lr_schedule")
        check_choice(self.device, DEVICES, "device")
        check_choice(self.resize_policy, RESIZE_POLICIES, "resize_policy")
        for name in ("epochs", "batch_size", "copies", "checkpoint_every"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}; pass --{name.replace('_', '-')} 1 or more")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ConfigError(f"lr must be a finite number > 0, got {self.lr}")
        if self.kl_warmup_epochs < 0:
            raise ConfigError(f"kl_warmup_epochs must be >= 0, got {self.kl_warmup_epochs}")
        for name, limit in (("epochs", 1_000_000), ("copies", 1_000_000), ("batch_size", 65_536)):
            if getattr(self, name) > limit:
                raise ConfigError(f"{name} must be at most {limit:,}, got {getattr(self, name):,}; such a run could not finish: "
                                  f"lower --{name.replace('_', '-')}")
        check_seed(self.seed)


@dataclass(frozen=True)
class ExtractConfig:
    """How a defect is extracted from an image by a VAE trained on defect-free surfaces.

    The *projection* of a defect image ``x`` is ``D(E(x))``, what the VAE makes of it: close to the
    same surface without the defect, because the VAE has seen (almost) no defects. The *residual*
    ``x - D(E(x))`` is the defect with its real texture. Its soft *mask* comes from the residual
    smoothed by ``mask_sigma``, turned into a z-score against the residuals of defect-free images
    (pixel by pixel: structure the VAE always misses, such as busbars, is not taken for a defect),
    mapped linearly from 0 at ``mask_low`` to 1 at ``mask_high``, grown by ``dilate`` pixels and
    feathered by ``feather``. Without defect-free images the z-score is taken against the image's own
    median and spread. A defect whose mask has no pixel above 0.5 is never transplanted (see
    :func:`augvae.overlay.extract.usable_defects`).

    The thresholds were z 1.5 to 3 until the ELPV benchmark measured z 3 to 5 better (+2.5 and +1.7
    points at k = 5 and 10, 5 of 5 seeds each; ``benchmarks/results/elpv/README.md``): at 1.5 to 3
    the VAE's mask flags 9% of every defect-free cell, so most of a transplant was ordinary texture.

    Example:
        >>> ExtractConfig().polarity
        'both'
    """

    polarity: str = _h("which residuals are defects: dark (darker than the projection), bright, or both", default="both")
    mask_sigma: float = _h("smoothing of the residual before thresholding, in pixels at the model's size", default=0.7)
    mask_low: float = _h("z-score where the mask starts (0 below)", default=3.0)
    mask_high: float = _h("z-score where the mask is 1", default=5.0)
    dilate: int = _h("grow the mask by this many pixels", default=1)
    feather: float = _h("soften the mask's edge by a Gaussian of this many pixels", default=0.8)
    reference_images: int = _h("defect-free images whose residuals set the per-pixel statistics", default=400)
    match: str = _h("match the projection to its image before the residual is taken: none, or offset (add the median of "
                    "image - projection, per channel: a VAE's projection can miss a surface's brightness, and a faint defect "
                    "then drowns in the offset)", default="none")

    def __post_init__(self) -> None:
        _check_types(self)
        check_choice(self.polarity, POLARITIES, "polarity")
        check_choice(self.match, MATCHES, "match")
        for name in ("mask_sigma", "feather"):
            if not (math.isfinite(getattr(self, name)) and 0 <= getattr(self, name) <= 16):
                raise ConfigError(f"{name} must be a number from 0 to 16 (pixels), got {getattr(self, name)}")
        if not (math.isfinite(self.mask_low) and math.isfinite(self.mask_high) and self.mask_low < self.mask_high):
            raise ConfigError(f"mask_low must be below mask_high, got {self.mask_low} and {self.mask_high}")
        if not 0 <= self.dilate <= 16:
            raise ConfigError(f"dilate must be from 0 to 16 pixels, got {self.dilate}")
        if not 2 <= self.reference_images <= 100_000:
            raise ConfigError(f"reference_images must be from 2 to 100000, got {self.reference_images}")


#: Largest shift of a transplanted defect, as a fraction of the image side: the default of every entry point.
TRANSPLANT_TRANSLATE = 0.25

#: Largest ``augvae generate --n``.
MAX_GENERATE = 1_000_000
GENERATE_MODES = ("overlay", "transplant", "grid", "prior", "interpolate")


@dataclass(frozen=True)
class GenerateConfig:
    """What ``augvae generate`` makes from a trained model.

    Example:
        >>> GenerateConfig(mode="grid").step
        0.1
    """

    mode: str = _h("overlay (Fig. 5), transplant (real defects onto --backgrounds), grid (Fig. 3), prior (samples of N(0, I)) "
                   "or interpolate", default="overlay")
    n: int = _h("overlay/prior: how many images", default=16)
    seed: int = _h("random seed of the draws", default=0)
    k: int = _h("overlay: distinct sources combined per image; transplant: defects put onto each background", default=2)
    formulation: str = _h("overlay: sum (the paper's), mean, offset or residual", default="residual")
    backgrounds: str = _h("transplant: a folder of defect-free images to put the defects onto", default="")
    blend: str = _h("transplant: auto (paste: the backgrounds are defect-free), add, paste, poisson or random (one of the "
                    "three per defect)", default="auto")
    translate: float = _h("transplant: largest shift of a defect, as a fraction of the image side (0: where it was found)",
                          default=TRANSPLANT_TRANSLATE)
    rotate: bool = _h("transplant: the 90-degree rotations of a defect as well as its flips (off: surfaces with an "
                      "orientation, such as solar cells' busbars)", default=True)
    scale: float = _h("overlay: sample around each source centre with this many posterior std (0 = centres)", default=0.0)
    same_class: bool = _h("overlay: combine sources of one class only; transplant: defects of one class per image, "
                            "which gets that class (otherwise defects of any classes and a mixed label)", default=False)
    x_range: tuple[float, ...] = _h("grid: low and high of the first axis", default=(-15.0, 15.0))
    y_range: tuple[float, ...] = _h("grid: low and high of the second axis", default=(-10.0, 10.0))
    step: float = _h("grid: step between points (0.1 in the paper)", default=0.1)
    max_side: int = _h("grid: at most this many cells per side in the mosaic (the grid is thinned)", default=31)
    plane: str = _h("grid: dims (latent dims 0 and 1) or pca (first two principal axes, for latent_dim > 2)", default="dims")
    steps: int = _h("interpolate: images on the path between two sources", default=10)

    def __post_init__(self) -> None:
        _check_types(self)
        check_choice(self.mode, GENERATE_MODES, "mode")
        check_choice(self.formulation, tuple(f for f in FORMULATIONS if f != "transplant"), "formulation")
        check_choice(self.blend, ("auto", *BLEND_CHOICES), "blend")
        if self.blend == "auto":  # resolved here, so that the config saved next to the images names the blend used
            object.__setattr__(self, "blend", default_blend(onto_defect_free=True))
        if self.mode == "transplant" and not self.backgrounds:
            raise ConfigError("mode transplant puts real defects onto real defect-free images: pass --backgrounds DIR "
                              "(e.g. the defect-free class folder of the training data)")
        check_choice(self.plane, ("dims", "pca"), "plane")
        for name in ("n", "k", "max_side", "steps"):
            if getattr(self, name) < (2 if name in ("max_side", "steps") else 1):
                raise ConfigError(f"{name} must be >= {2 if name in ('max_side', 'steps') else 1}, got {getattr(self, name)}")
        for name in ("x_range", "y_range"):
            r = getattr(self, name)
            if len(r) != 2 or not r[0] < r[1]:
                raise ConfigError(f"{name} must be two numbers LOW HIGH with LOW < HIGH, got {r}")
        if not (math.isfinite(self.step) and self.step > 0):
            raise ConfigError(f"step must be > 0, got {self.step}")
        if not (math.isfinite(self.scale) and self.scale >= 0):
            raise ConfigError(f"scale must be >= 0, got {self.scale}")
        if not (math.isfinite(self.translate) and 0 <= self.translate <= 1):
            raise ConfigError(f"translate must be from 0 to 1 (a fraction of the image side), got {self.translate}")
        # Bounds on the other image counts too: interpolate decodes its steps in one batch and grid draws max_side ** 2
        # images into one mosaic, so a huge value ran out of memory deep in torch or ran for hours.
        for name, most in (("steps", 10_000), ("max_side", 100)):
            if getattr(self, name) > most:
                raise ConfigError(f"{name} must be at most {most:,}, got {getattr(self, name):,}; pass --{name.replace('_', '-')} "
                                  f"{most:,} or less")
        if self.n > MAX_GENERATE:
            raise ConfigError(f"n must be at most {MAX_GENERATE:,} images per run, got {self.n:,} (at ~1 MB of PNG per 1,000 "
                              f"64-px images that is {self.n / 1e6:,.0f} GB); generate in several runs with different --seed")
        check_seed(self.seed)


#: The paper's two recipes, as overrides of :class:`TrainConfig` defaults.
RECIPES: dict[str, dict[str, Any]] = {
    # Section 3: all images, latent 2, RMSprop 2e-3, batch 10, 100 epochs.
    "small-set": {"epochs": 100, "batch_size": 10, "lr": 2e-3, "optimizer": "rmsprop"},
    # Section 4: a few sources, >= 500 copies each, every batch mixes the sources, 20 epochs.
    "overlay": {"epochs": 20, "batch_size": 10, "lr": 2e-3, "optimizer": "rmsprop", "copies": 500},
}


def recipe_config(recipe: str = "small-set", **overrides: Any) -> TrainConfig:
    """The :class:`TrainConfig` of a named recipe, with any field overridden.

    Example:
        >>> recipe_config("small-set", seed=3).seed
        3
    """
    check_choice(recipe, RECIPES, "recipe")
    values = {**RECIPES[recipe], **{k: v for k, v in overrides.items() if v is not None}, "recipe": recipe}
    return config_from_dict(TrainConfig, values)


def config_to_dict(cfg: Any) -> dict[str, Any]:
    """A JSON-ready dict of a config dataclass (nested configs become dicts, tuples lists).

    Example:
        >>> config_to_dict(ModelConfig())["widths"]
        []
    """
    def plain(v: Any) -> Any:
        if isinstance(v, (tuple, list)):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return v

    return {k: plain(v) for k, v in dataclasses.asdict(cfg).items()}


def config_from_dict(cls: type[C], data: typing.Mapping[str, Any], where: str | None = None) -> C:
    """Build ``cls`` from a mapping, refusing unknown keys by name and checking types; ``where`` (a file and section)
    starts every error message.

    Example:
        >>> config_from_dict(ModelConfig, {"latent_dim": 4}).latent_dim
        4
        >>> config_from_dict(ModelConfig, {"latnt_dim": 4})
        Traceback (most recent call last):
        ...
        augvae.errors.ConfigError: config has unknown key(s) 'latnt_dim'; valid keys: image_size, channels, latent_dim, widths, hidden_dim, activation, recon_loss, beta
    """
    if not isinstance(data, typing.Mapping):
        raise ConfigError(f"{where or 'config'} must be a JSON object, got {type(data).__name__}")
    names = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
    unknown = [k for k in data if k not in names]
    if unknown:
        raise ConfigError(
            f"{where or 'config'} has unknown key(s) {', '.join(repr(k) for k in unknown)}; valid keys: {', '.join(names)}"
        )
    hints = typing.get_type_hints(cls)
    values = {k: (tuple(v) if _is_tuple(hints[k]) and isinstance(v, list) else v) for k, v in data.items()}
    try:
        return cls(**values)
    except ConfigError as err:  # a bad value: say where it came from (a model folder's config.json, a bench.json, ...)
        if where is None:
            raise
        raise ConfigError(f"{where}: {err}") from None


def _is_tuple(tp: Any) -> bool:
    return typing.get_origin(tp) is tuple


def _check_types(cfg: Any) -> None:
    """Refuse values of the wrong type with the field's name (ints for floats are fine)."""
    hints = typing.get_type_hints(type(cfg))
    for f in dataclasses.fields(cfg):
        value, tp = getattr(cfg, f.name), hints[f.name]
        ok: bool
        if tp is float:
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
            if ok:
                object.__setattr__(cfg, f.name, float(value))
        elif tp is int:
            ok = isinstance(value, int) and not isinstance(value, bool)
        elif tp is bool:
            ok = isinstance(value, bool)
        elif tp is str:
            ok = isinstance(value, str)
        elif _is_tuple(tp):
            elem = typing.get_args(tp)[0]
            ok = isinstance(value, tuple) and all(
                isinstance(v, (int, float) if elem is float else elem) and not isinstance(v, bool) for v in value
            )
            if ok and elem is float:
                object.__setattr__(cfg, f.name, tuple(float(v) for v in value))
        elif isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
            ok = True
        else:  # pragma: no cover - every field type is listed above
            ok = True
        if not ok:
            raise ConfigError(f"{f.name} must be of type {getattr(tp, '__name__', tp)}, got {value!r}")
