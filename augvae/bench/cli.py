"""``augvae bench``: the benchmark's command line, generated from :class:`BenchConfig`.

Examples::

    augvae bench DATA_DIR --out OUT                                   # the default arms, k = 5,10,20,40, 5 seeds
    augvae bench DATA_DIR --out OUT --background-class ok --per-class 5,10,20 \\
        --arms original,classic,transplant,classic+transplant,blurmask,classic+blurmask,cutpaste,classic+cutpaste
    augvae bench ../shared/datasets/neu_det --out OUT --split-file ../shared/datasets/neu_det/splits.csv \\
        --classifiers small-cnn,resnet18 --per-class 5,10,20,40 --seeds 5 --jobs 2
    augvae bench DATA_DIR --out OUT --list-cells                      # the grid, one cell id per line
    augvae bench DATA_DIR --out OUT --cell $SLURM_ARRAY_TASK_ID       # one cell per cluster job
    augvae bench --report-only --out OUT                              # merge finished cells into the report
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from augvae._cli_args import add_config_arguments, config_overrides, path_arg
from augvae.bench.config import BenchConfig
from augvae.errors import ConfigError

__all__ = ["add_parser", "run"]


def add_parser(subparsers: Any, parents: list[argparse.ArgumentParser] | None = None) -> None:
    """Register ``augvae bench`` on the ``augvae`` subcommand parser."""
    # The generated options print their own defaults, so no ArgumentDefaultsHelpFormatter here.
    p = subparsers.add_parser(
        "bench", help="benchmark a classifier trained on original vs augmented vs generated-image-extended few-shot sets",
        formatter_class=argparse.RawDescriptionHelpFormatter, parents=parents or [],
        description=__doc__.split("\n", 1)[1] if __doc__ else None)
    p.add_argument("data_dir", type=path_arg, nargs="?", metavar="DATA_DIR", help="folder with one subfolder per class (not needed with --report-only)")
    p.add_argument("--out", type=path_arg, required=True, metavar="OUT_DIR", help="results folder (cells/, results.json, report.md, plots)")
    p.add_argument("--split-file", type=path_arg, metavar="CSV", help="columns path,class,split (pool|test); default: a stratified random split")
    p.add_argument("--group-file", type=path_arg, metavar="CSV", help="columns path,group: images of one group never straddle pool and test")
    p.add_argument("--cell", metavar="SELECTOR", help="run only these cells: an index or range A-B into --list-cells (e.g. a cluster array id), or ids")
    p.add_argument("--list-cells", action="store_true", help="print the grid's cell ids with their index and whether each is done, then exit")
    p.add_argument("--report-only", action="store_true", help="merge the finished cells of OUT_DIR into results.json, report.md and plots")
    p.add_argument("--report-to", type=path_arg, metavar="DIR", help="with --report-only: write the report files to DIR instead of OUT_DIR")
    p.add_argument("--cache-dir", type=path_arg, metavar="DIR", help="where trained VAEs and real-data classifiers are cached (default OUT_DIR/cache)")
    p.add_argument("--no-grids", action="store_true", help="do not save the generated-vs-real image grids (e.g. for data that must not be copied)")
    add_config_arguments(p, BenchConfig, title="benchmark settings (lists: comma-separated)", lists="commas")


def _config(args: argparse.Namespace) -> BenchConfig:
    return BenchConfig(**config_overrides(args, BenchConfig))


def run(args: argparse.Namespace) -> int:
    """Run ``augvae bench``; returns the exit status."""
    from augvae.bench.report import write_report
    from augvae.bench.results import load_cells
    from augvae.bench.runner import grid, run_bench

    if args.report_only:
        path = write_report(args.out, dest=args.report_to, grids=not args.no_grids)
        print(f"report: {path}")
        return 0
    cfg = _config(args)
    if args.list_cells:
        done = {c["id"] for c in load_cells(args.out) if c.get("fingerprint") == cfg.fingerprint()}
        for i, cell in enumerate(grid(cfg)):
            print(f"{i}\t{cell.id}\t{'done' if cell.id in done else 'todo'}")
        return 0
    if args.data_dir is None:
        raise ConfigError("DATA_DIR is missing; pass the data folder (only --report-only and --list-cells work without it)")
    result = run_bench(args.data_dir, args.out, cfg, split_file=args.split_file, group_file=args.group_file, cells=args.cell,
                       cache_dir=args.cache_dir, progress=not args.quiet, command=["augvae", *sys.argv[1:]], grids=not args.no_grids)
    msg = f"{len(result['ran'])} cell(s) run, {len(result['skipped'])} already finished ({result['steps']} steps each)"
    if result["report"]:
        msg += f"; report: {result['report']}"
    elif args.cell:
        msg += f"; merge with: augvae bench --report-only --out {args.out}"
    print(msg)
    return 0
