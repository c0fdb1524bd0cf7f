"""The ``augvae`` command line: ``train``, ``generate``, ``inspect``, ``demo`` and ``bench``.

Options that set a config field are generated from the config dataclasses (:mod:`augvae.config`,
through :mod:`augvae._cli_args`), so every default and help text lives in one place. Errors print
one line that names the problem and the fix, and exit with status 2; ``--debug`` shows the traceback.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from augvae._cli_args import HelpFormatter, add_config_arguments, config_overrides, path_arg
from augvae._version import __version__
from augvae.errors import AugvaeError, ConfigError, DataError

__all__ = ["main", "build_parser"]

log = logging.getLogger("augvae")


# ---------------------------------------------------------------- train
def _add_train(sub: Any, parents: list[argparse.ArgumentParser]) -> Callable[[argparse.Namespace], int]:
    from augvae.config import RECIPES, ExtractConfig, ModelConfig, TrainConfig

    p = sub.add_parser("train", help="train a VAE on a folder of images", formatter_class=HelpFormatter, parents=parents, description=(
        "Train the paper's VAE on DATA_DIR (one subfolder per class, or a flat folder) and write a model folder.\n\n"
        "recipes: small-set (all images, 100 epochs) or overlay (a few --sources, 500 copies each, 20 epochs).\n"
        "with --background-class NAME the VAE learns the defect-free images of that class folder, and every other image\n"
        "becomes a defect source whose real defect (residual and mask) the transplant overlays put onto defect-free images;\n"
        "without it (small-set recipe) every image is a defect source, extracted against its own projection (defect on defect).\n"
        "examples: augvae train defects/ --out model/ --background-class ok\n"
        "          augvae train defects/ --out model/ --recipe overlay --sources crack/a.png pore/b.png"))
    p.add_argument("data_dir", type=path_arg, metavar="DATA_DIR", help="folder of images (class subfolders or flat)")
    p.add_argument("--out", type=path_arg, required=True, metavar="MODEL_DIR", help="model folder to write")
    p.add_argument("--sources", type=path_arg, nargs="+", metavar="FILE",
                   help="overlay recipe: the source images (paths, or relative to DATA_DIR); default every image in DATA_DIR")
    p.add_argument("--background", type=path_arg, metavar="FILE",
                   help="a defect-free image trained as an extra source and used as the reference of the offset/residual overlays")
    p.add_argument("--background-class", metavar="NAME", help="the defect-free class folder: the VAE learns its images, the "
                   "other classes' images become defect sources for transplant overlays")
    p.add_argument("--train-on-defects", action="store_true", help="with --background-class: the VAE also sees the defect images")
    p.add_argument("--masks", type=path_arg, metavar="MASK_DIR", help="small-set recipe: pixel masks of the defect images (a folder "
                   "mirroring DATA_DIR, one mask per image outside --background-class, white = defect) instead of estimated masks")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run from MODEL_DIR/checkpoint.safetensors")
    add_config_arguments(p, ModelConfig, title="model")
    add_config_arguments(p, TrainConfig, skip=("recipe",), title="training (defaults shown are small-set's; the recipe sets its own)")
    add_config_arguments(p, ExtractConfig, title="defect extraction (small-set recipe)")
    p.add_argument("--recipe", choices=list(RECIPES), default="small-set", help="the paper's recipe to start from")
    return _cmd_train


def _resolve_source(path: Path, data_dir: Path) -> Path:
    if path.exists() or path.is_absolute():
        return path
    return data_dir / path


def _source_names(paths: Sequence[str | os.PathLike[str]], data_dir: Path) -> list[str]:
    """A distinct name per source: its file stem, or its path under DATA_DIR where stems repeat."""
    stems = [Path(p).stem for p in paths]
    if len(set(stems)) == len(stems):
        return stems
    names = []
    for p in paths:
        try:
            names.append(Path(p).resolve().relative_to(data_dir.resolve()).with_suffix("").as_posix())
        except ValueError:
            names.append(Path(p).with_suffix("").as_posix())
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})[0]
        files = [Path(p).name for p, n in zip(paths, names) if n == dup]
        if len(set(files)) > 1:  # the same name with two extensions (crack_0.png and crack_0.bmp): two files, one name
            raise DataError(f"two image files are named {dup!r} ({', '.join(files)}): a source is named by its file name "
                            "without the extension; rename or remove one of them")
        raise DataError(f"--sources names the image {dup!r} more than once; give each source image once")
    return names


def _cmd_train(args: argparse.Namespace) -> int:
    import torch

    from augvae.config import ExtractConfig, ModelConfig, TrainConfig, recipe_config
    from augvae.data.images import ImageSet, load_folder, load_images, load_masks, scan_folder
    from augvae.training import check_model_output, train

    overrides = {k: v for k, v in config_overrides(args, TrainConfig).items() if k != "recipe"}
    tcfg = recipe_config(args.recipe, **overrides)
    mcfg = ModelConfig(**config_overrides(args, ModelConfig))
    ecfg = ExtractConfig(**config_overrides(args, ExtractConfig))
    progress = not args.quiet
    # Everything that can be checked without reading the images is checked first.
    check_model_output(args.out)
    classes = scan_folder(args.data_dir)[2]
    if args.background_class is not None and args.background_class not in classes:
        raise DataError(f"background class {args.background_class!r} is not one of the classes ({', '.join(classes)}); pass the "
                        "name of the defect-free class folder")
    if args.train_on_defects and not args.background_class:
        raise DataError("--train-on-defects goes with --background-class NAME (the defect-free class); without it the VAE "
                        "already trains on every image")
    if args.masks and tcfg.recipe == "overlay":
        raise ConfigError("--masks replace the estimated masks of the extracted defects, and the overlay recipe extracts none; "
                          "drop --masks or train with the small-set recipe")
    if args.sources and tcfg.recipe != "overlay":
        log.warning("--sources is used by the overlay recipe only; the small-set recipe trains on every image in %s", args.data_dir)
    if tcfg.recipe == "overlay" and args.sources:
        paths = [_resolve_source(s, args.data_dir) for s in args.sources]
        # A source's class is its folder, as for every other image: the overlay recipe makes each source its own latent
        # cluster, but the labels stay in the folder classes' label space.
        data = load_images(paths, mcfg.image_size, mcfg.channels, tcfg.resize_policy, classes=classes)
    else:
        data = load_folder(args.data_dir, mcfg.image_size, mcfg.channels, tcfg.resize_policy, progress=progress)
    names = _source_names(data.paths, args.data_dir)
    background = None
    if args.background is not None:
        bg = load_images([_resolve_source(args.background, args.data_dir)], mcfg.image_size, mcfg.channels, tcfg.resize_policy)
        bg_class = bg.classes[0] if bg.classes[0] in data.classes else "background"
        classes = data.classes if bg_class in data.classes else [*data.classes, bg_class]
        background = len(data)
        data = ImageSet(torch.cat([data.images, bg.images]), torch.cat([data.labels, torch.tensor([classes.index(bg_class)])]),
                        classes, [*data.paths, *bg.paths])
        names = _source_names(data.paths, args.data_dir)
    masks = None
    if args.masks is not None:
        bgi = data.classes.index(args.background_class) if args.background_class in data.classes else -1
        defect_paths = [p for i, (p, y) in enumerate(zip(data.paths, data.labels.tolist())) if y != bgi and i != background]
        masks = load_masks(args.masks, defect_paths, args.data_dir, mcfg.image_size, tcfg.resize_policy)
    result = train(data, mcfg, tcfg, out_dir=args.out, resume=args.resume, progress=progress, background=background,
                   background_class=args.background_class, train_on_defects=args.train_on_defects, extract=ecfg, masks=masks,
                   names=names)
    last = result.history[-1] if result.history else {}
    defects = f", {result.defects['image'].shape[0]} defects extracted" if result.defects is not None else ""
    print(f"trained {len(data)} images for {tcfg.epochs} epochs: loss {last.get('loss', float('nan')):.2f}, "
          f"{result.active_units}/{mcfg.latent_dim} active latent units{defects} -> {args.out}")
    return 0  # warnings (posterior collapse...) were logged once by train()


# ---------------------------------------------------------------- generate
def _add_generate(sub: Any, parents: list[argparse.ArgumentParser]) -> Callable[[argparse.Namespace], int]:
    from augvae.config import GenerateConfig

    p = sub.add_parser("generate", help="generate overlays, transplants, grids, prior samples or interpolations",
                       formatter_class=HelpFormatter, parents=parents,
                       description="Write images from a trained model plus manifest.csv saying what each one is.\n\n"
                                   "examples: augvae generate model/ --out overlays/ --mode overlay --n 64 --k 2\n"
                                   "          augvae generate model/ --out transplants/ --mode transplant --backgrounds data/ok")
    p.add_argument("model_dir", type=path_arg, metavar="MODEL_DIR")
    p.add_argument("--out", type=path_arg, required=True, metavar="OUT_DIR")
    add_config_arguments(p, GenerateConfig, title="generation")
    return _cmd_generate


def _cmd_generate(args: argparse.Namespace) -> int:
    from augvae.config import GenerateConfig
    from augvae.generate import generate

    cfg = GenerateConfig(**config_overrides(args, GenerateConfig))
    out = generate(args.model_dir, args.out, cfg, progress=not args.quiet)
    print(f"wrote {out.count} images and {out.manifest} ({cfg.mode})")
    return 0


# ---------------------------------------------------------------- inspect
def _add_inspect(sub: Any, parents: list[argparse.ArgumentParser]) -> Callable[[argparse.Namespace], int]:
    p = sub.add_parser("inspect", help="write every figure of a model (scatter, defects, grid, reconstructions, overlays) and an "
                       "index page", formatter_class=HelpFormatter, parents=parents)
    p.add_argument("model_dir", type=path_arg, metavar="MODEL_DIR")
    p.add_argument("data_dir", type=path_arg, metavar="DATA_DIR", help="images to encode (e.g. the training folder)")
    p.add_argument("--out", type=path_arg, required=True, metavar="OUT_DIR")
    p.add_argument("--seed", type=int, default=0, help="seed of the random overlays")
    return _cmd_inspect


def _cmd_inspect(args: argparse.Namespace) -> int:
    from augvae.config import check_seed
    from augvae.report import inspect_model

    index = inspect_model(args.model_dir, args.data_dir, args.out, seed=check_seed(args.seed), progress=not args.quiet)
    print(f"figures written; open {index}")
    return 0


# ---------------------------------------------------------------- demo
def _add_demo(sub: Any, parents: list[argparse.ArgumentParser]) -> Callable[[argparse.Namespace], int]:
    p = sub.add_parser("demo", help="the paper's flow and the defect-free setting on built-in synthetic defect images, in minutes",
                       formatter_class=HelpFormatter, parents=parents)
    p.add_argument("--out", type=path_arg, default=Path("augvae-demo"), metavar="OUT_DIR")
    p.add_argument("--quick", action="store_true", help="tiny sizes and few epochs (seconds; for smoke tests)")
    p.add_argument("--no-bench", action="store_true", help="skip the classifier comparison at the end")
    return _cmd_demo


def _cmd_demo(args: argparse.Namespace) -> int:
    from augvae.demo import run_demo

    run_demo(args.out, quick=args.quick, bench=not args.no_bench, progress=not args.quiet)
    return 0


def _add_bench(sub: Any, parents: list[argparse.ArgumentParser]) -> Callable[[argparse.Namespace], int]:
    from augvae.bench.cli import add_parser, run

    add_parser(sub, parents)
    return run


_COMMANDS = (_add_train, _add_generate, _add_inspect, _add_demo, _add_bench)


class _Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line, like every other augvae error (not the full usage)."""

    def error(self, message: str) -> Any:
        self.exit(2, f"{self.prog}: error: {message}; see {self.prog} --help\n")


def build_parser() -> argparse.ArgumentParser:
    """The full ``augvae`` argument parser."""
    parser = _Parser(prog="augvae", description="VAE overlays for few-shot defect classifiers (Malyshev et al. 2021)",
                                     formatter_class=HelpFormatter)
    parser.add_argument("--version", action="version", version=f"augvae {__version__}")
    common = _Parser(add_help=False)
    common.add_argument("-q", "--quiet", action="store_true", help="no progress bars, warnings only")
    common.add_argument("--debug", action="store_true", help="show the full traceback on errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in _COMMANDS:
        before = set(sub.choices)
        run = add(sub, [common])
        for name in set(sub.choices) - before:
            sub.choices[name].set_defaults(_run=run)
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
    except OSError as err:  # a file-system failure no augvae check anticipated: still one line
        if args.debug:
            raise
        where = f" {err.filename}" if err.filename else ""
        print(f"augvae {args.command}: error: cannot read or write{where}: {err.strerror or err}; check the path, its "
              "permissions and the free disk space (--debug shows the traceback)", file=sys.stderr)
        return 2
    except MemoryError:
        if args.debug:
            raise
        hint = {"train": "--image-size or --batch-size", "generate": "--n, --steps or --max-side",
                "bench": "--image-size, --batch-size or --jobs"}.get(args.command, "images")
        print(f"augvae {args.command}: error: out of memory; use smaller {hint}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"augvae {args.command}: interrupted; completed checkpoints are kept (augvae train ... --resume continues)", file=sys.stderr)
        return 130
