"""The results folder of a benchmark run: its layout, and reading and writing its records.

``OUT/bench.json`` (the settings, the data, the command, the versions, the grid's cell ids),
``OUT/split.csv``, ``OUT/cells/<id>.json`` (one record per finished cell, written atomically) and,
after the grid, ``OUT/convergence/`` (the same layout: ``original``, the better baseline and the best of
augvae's arms at twice the steps). The report files (``results.json``, ``report.md``, plots) are written by
:mod:`augvae.bench.report`.
"""

from __future__ import annotations

import json
import logging
import math
import os
import platform
import sys
from pathlib import Path
from typing import Any

from augvae._io import write_json
from augvae._version import __version__
from augvae.errors import ConfigError, DataError

__all__ = ["BENCH_FILE", "CELLS_DIR", "CONVERGENCE_DIR", "load_cells", "write_cell", "read_bench", "finished_ids", "versions"]

log = logging.getLogger("augvae")

CELLS_DIR = "cells"
BENCH_FILE = "bench.json"
CONVERGENCE_DIR = "convergence"


def write_cell(out: Path, record: dict[str, Any]) -> None:
    """Save one finished cell's record as ``OUT/cells/<id>.json`` (atomically)."""
    write_json(out / CELLS_DIR / f"{record['id']}.json", record)


def load_cells(out: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Every finished cell record in ``OUT/cells``, sorted by id (unreadable files are skipped with a warning)."""
    folder = Path(out) / CELLS_DIR
    records = []
    for p in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            rec = json.loads(p.read_text(encoding="utf-8"))
            if isinstance(rec.get("metrics"), dict):  # an undefined metric (AUROC of a one-class test set) is null on disk
                rec["metrics"] = {m: math.nan if v is None else v for m, v in rec["metrics"].items()}
            records.append(rec)
        except (OSError, ValueError, AttributeError) as err:
            log.warning("skipping unreadable cell file %s (%s); delete it to recompute the cell", p, err)
    return records


def read_bench(out: str | os.PathLike[str]) -> dict[str, Any]:
    """``OUT/bench.json``, or ``{}`` if there is none."""
    path = Path(out) / BENCH_FILE
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise DataError(f"{path} cannot be read ({type(err).__name__}); it is rewritten by rerunning the bench command "
                        "that made this folder (its cells are kept)") from None
    if not isinstance(data, dict):
        raise DataError(f"{path} is not a bench.json written by augvae bench; rerun the command that made this folder")
    return data


def finished_ids(out: Path, fingerprint: str, settings: dict[str, Any]) -> set[str]:
    """Ids of the finished cells computed with this fingerprint; refuse cells computed with other settings."""
    done, clash = set(), []
    for rec in load_cells(out):
        if rec.get("fingerprint") == fingerprint:
            done.add(rec["id"])
        else:
            clash.append(rec)
    if clash:
        theirs = clash[0].get("settings", {})
        diff = sorted(k for k in set(theirs) | set(settings) if theirs.get(k) != settings.get(k))
        shown = ", ".join(f"{k} ({theirs.get(k)!r} there, {settings.get(k)!r} now)" for k in diff[:4])
        raise ConfigError(
            f"{out} already holds {len(clash)} cell(s) computed with different settings: {shown or 'unknown'}; "
            "rerun with the same settings to continue, or choose another --out"
        )
    return done


def versions() -> dict[str, str]:
    """Versions of the software a result depends on."""
    import importlib.metadata as md


    out = {"augvae": __version__, "python": sys.version.split()[0], "platform": platform.platform()}
    for pkg in ("torch", "torchvision", "timm", "albumentations", "scikit-learn", "scipy", "numpy"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            out[pkg] = "not installed"
    # The module that `import albumentations` finds: AlbumentationsX installs it under another distribution name.
    try:
        import albumentations

        dist = "albumentationsx" if "albumentationsx" in (md.packages_distributions().get("albumentations") or []) else "albumentations"
        out["albumentations"] = f"{albumentations.__version__} ({dist})"
    except ImportError:
        pass
    return out
