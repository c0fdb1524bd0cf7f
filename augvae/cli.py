"""The ``augvae`` command line: ``train``, ``generate``, ``inspect``, ``demo`` and ``bench``.

Options that set a config field are generated from the config dataclasses
(:mod:`augvae.config`), so every default and help text lives in one place. Errors print one line
that names the problem and the fix, and exit with status 2; ``--debug`` shows the traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
import typing
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from augvae._version import __version__
from augvae.errors import AugvaeError

__all__ = ["main", "build_parser", "add_config_arguments", "config_overrides"]

log = logging.getLogger("augvae")


class _Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Shows defaults, except where the help text states its own (config options) or there is none."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if "(default:" in text or action.default is None or action.required:
            return text
        return super()._get_help_string(action)


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def add_config_arguments(parser: argparse.ArgumentParser, cls: type, skip: Sequence[str] = (), title: str | None = None,
                         defaults: dict[str, Any] | None = None) -> None:
    """Add one option per field of config dataclass ``cls``; unset options stay ``None``.

    The help text comes from the field's ``help`` metadata and the shown default from the dataclass
    (or ``defaults``, e.g. a recipe's values).
    """
    group = parser.add_argument_group(title or f"{cls.__name__} options")
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        tp = hints[f.name]
        default = (defaults or {}).get(f.name, f.default)
        help_text = f"{f.metadata.get('help', '')} (default: {default if not isinstance(default, tuple) else ' '.join(map(str, default)) or 'auto'})"
        kw: dict[str, Any] = {"dest": f.name, "default": None, "help": help_text}
        if tp is bool:
            group.add_argument(_flag(f.name), action=argparse.BooleanOptionalAction, **kw)
        elif typing.get_origin(tp) is tuple:
            elem = typing.get_args(tp)[0]
            group.add_argument(_flag(f.name), type=elem, nargs="+", metavar="N", **kw)
        else:
            group.add_argument(_flag(f.name), type=tp, metavar=f.name.upper(), **kw)


def config_overrides(args: argparse.Namespace, cls: type) -> dict[str, Any]:
    """The fields of ``cls`` that were given on the command line."""
    out = {}
    for f in dataclasses.fields(cls):
        value = getattr(args, f.name, None)
        if value is not None:
            out[f.name] = tuple(value) if isinstance(value, list) else value
    return out


# ---------------------------------------------------------------- train
def _add_train(sub: Any) -> None:
    from augvae.config import RECIPES, ModelConfig, TrainConfig

    p = sub.add_parser("train", help="train a VAE on a folder of images", formatter_class=_Formatter, description=(
        "Train the paper's VAE on DATA_DIR (one subfolder per class, or a flat folder) and write a model folder.\n\n"
        "recipes: small-set (all images, 100 epochs) or overlay (a few --sources, 500 copies each, 20 epochs).\n"
        "example: augvae train defects/ --out model/ --recipe overlay --sources defects/crack/a.png defects/pore/b.png"))
    p.add_argument("data_dir", type=Path, metavar="DATA_DIR", help="folder of images (class subfolders or flat)")
    p.add_argument("--out", type=Path, required=True, metavar="MODEL_DIR", help="model folder to write")
    p.add_argument("--sources", type=Path, nargs="+", metavar="FILE", help="overlay recipe: the source images (paths, or relative to DATA_DIR); default every image in DATA_DIR")
    p.add_argument("--background", type=Path, metavar="FILE", help="a defect-free image trained as an extra source and used as the reference of the offset/residual overlays")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run from MODEL_DIR/checkpoint.safetensors")
    add_config_arguments(p, ModelConfig, title="model")
    add_config_arguments(p, TrainConfig, skip=("recipe",), title="training (defaults shown are small-set's; the recipe sets its own)")
    p.add_argument("--recipe", choices=list(RECIPES), default="small-set", help="the paper's recipe to start from")


def _resolve_source(path: Path, data_dir: Path) -> Path:
    if path.exists() or path.is_absolute():
        return path
    return data_dir / path


def _cmd_train(args: argparse.Namespace) -> int:
    import torch

    from augvae.config import ModelConfig, TrainConfig, recipe_config
    from augvae.data.images import ImageSet, load_folder, load_images
    from augvae.training import train

    overrides = {k: v for k, v in config_overrides(args, TrainConfig).items() if k != "recipe"}
    tcfg = recipe_config(args.recipe, **overrides)
    mcfg = ModelConfig(**config_overrides(args, ModelConfig))
    progress = not args.quiet
    if tcfg.recipe == "overlay" and args.sources:
        paths = [_resolve_source(s, args.data_dir) for s in args.sources]
        data = load_images(paths, mcfg.image_size, mcfg.channels, tcfg.resize_policy)
        data = ImageSet(data.images, torch.arange(len(paths)), [Path(p).stem for p in paths], data.paths)
    else:
        if args.sources:
            log.warning("--sources is used by the overlay recipe only; the small-set recipe trains on every image in %s", args.data_dir)
        data = load_folder(args.data_dir, mcfg.image_size, mcfg.channels, tcfg.resize_policy, progress=progress)
        if tcfg.recipe == "overlay":  # every image is a source, each its own cluster
            data = ImageSet(data.images, torch.arange(len(data)), [Path(p).stem for p in data.paths], data.paths)
    background = None
    if args.background is not None:
        bg = load_images([_resolve_source(args.background, args.data_dir)], mcfg.image_size, mcfg.channels, tcfg.resize_policy)
        background = len(data)
        data = ImageSet(torch.cat([data.images, bg.images]), torch.cat([data.labels, torch.tensor([len(data.classes)])]),
                        [*data.classes, "background"], [*data.paths, *bg.paths])
    result = train(data, mcfg, tcfg, out_dir=args.out, resume=args.resume, progress=progress, background=background)
    last = result.history[-1] if result.history else {}
    print(f"trained {len(data)} images for {tcfg.epochs} epochs: loss {last.get('loss', float('nan')):.2f}, "
          f"{result.active_units}/{mcfg.latent_dim} active latent units -> {args.out}")
    for w in result.warnings:
        print(f"warning: {w}", file=sys.stderr)
    return 0


# ---------------------------------------------------------------- generate
def _add_generate(sub: Any) -> None:
    from augvae.config import GenerateConfig

    p = sub.add_parser("generate", help="generate overlays, grids, prior samples or interpolations", formatter_class=_Formatter,
                       description="Write images from a trained model plus manifest.csv saying what each one is.\n\n"
                                   "example: augvae generate model/ --out overlays/ --mode overlay --n 64 --k 2")
    p.add_argument("model_dir", type=Path, metavar="MODEL_DIR")
    p.add_argument("--out", type=Path, required=True, metavar="OUT_DIR")
    add_config_arguments(p, GenerateConfig, title="generation")


def _cmd_generate(args: argparse.Namespace) -> int:
    from augvae.config import GenerateConfig
    from augvae.generate import generate

    cfg = GenerateConfig(**config_overrides(args, GenerateConfig))
    out = generate(args.model_dir, args.out, cfg, progress=not args.quiet)
    print(f"wrote {out.count} images and {out.manifest} ({cfg.mode})")
    return 0


# ---------------------------------------------------------------- inspect
def _add_inspect(sub: Any) -> None:
    p = sub.add_parser("inspect", help="write every figure of a model (scatter, grid, reconstructions, overlays) and an index page",
                       formatter_class=_Formatter)
    p.add_argument("model_dir", type=Path, metavar="MODEL_DIR")
    p.add_argument("data_dir", type=Path, metavar="DATA_DIR", help="images to encode (e.g. the training folder)")
    p.add_argument("--out", type=Path, required=True, metavar="OUT_DIR")
    p.add_argument("--seed", type=int, default=0, help="seed of the random overlays")


def _cmd_inspect(args: argparse.Namespace) -> int:
    from augvae.report import inspect_model

    index = inspect_model(args.model_dir, args.data_dir, args.out, seed=args.seed, progress=not args.quiet)
    print(f"figures written; open {index}")
    return 0


# ---------------------------------------------------------------- demo
def _add_demo(sub: Any) -> None:
    p = sub.add_parser("demo", help="the paper's flow on built-in synthetic defect images, in a few minutes", formatter_class=_Formatter)
    p.add_argument("--out", type=Path, default=Path("augvae-demo"), metavar="OUT_DIR")
    p.add_argument("--quick", action="store_true", help="tiny sizes and few epochs (seconds; for smoke tests)")
    p.add_argument("--no-bench", action="store_true", help="skip the classifier comparison at the end")


def _cmd_demo(args: argparse.Namespace) -> int:
    from augvae.demo import run_demo

    run_demo(args.out, quick=args.quick, bench=not args.no_bench, progress=not args.quiet)
    return 0


_COMMANDS: dict[str, tuple[Callable[[Any], None], Callable[[argparse.Namespace], int]]] = {
    "train": (_add_train, _cmd_train),
    "generate": (_add_generate, _cmd_generate),
    "inspect": (_add_inspect, _cmd_inspect),
    "demo": (_add_demo, _cmd_demo),
}


def _bench_command() -> tuple[Callable[[Any], None], Callable[[argparse.Namespace], int]] | None:
    try:
        from augvae.bench.cli import add_parser, run
    except ImportError:
        return None
    return add_parser, run


def build_parser() -> argparse.ArgumentParser:
    """The full ``augvae`` argument parser."""
    parser = argparse.ArgumentParser(prog="augvae", description="VAE overlays for few-shot defect classifiers (Malyshev et al. 2021)",
                                     formatter_class=_Formatter)
    parser.add_argument("--version", action="version", version=f"augvae {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-q", "--quiet", action="store_true", help="no progress bars, warnings only")
    common.add_argument("--debug", action="store_true", help="show the full traceback on errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands = dict(_COMMANDS)
    bench = _bench_command()
    if bench is not None:
        commands["bench"] = bench
    for name, (add, run) in commands.items():
        before = set(sub.choices)
        add(sub)
        for new in set(sub.choices) - before:
            sp = sub.choices[new]
            for action in common._actions:
                if action.dest != "help" and action.dest not in {a.dest for a in sp._actions}:
                    sp._add_action(action)
            sp.set_defaults(_run=run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status."""
    # Same seed, same weights: MKL may otherwise pick fewer threads under load, which changes the
    # order of floating-point sums. Must be set before torch (and MKL) load.
    os.environ.setdefault("MKL_DYNAMIC", "FALSE")
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="augvae: %(message)s")
    try:
        return int(args._run(args))
    except AugvaeError as err:
        if args.debug:
            raise
        print(f"augvae {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"augvae {args.command}: interrupted; completed checkpoints are kept (augvae train ... --resume continues)", file=sys.stderr)
        return 130
