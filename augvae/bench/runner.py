"""Running the benchmark: the step budget, the grid of cells in one or many processes, the convergence check.

A **cell** is one (classifier, arm, k, seed) (:mod:`augvae.bench.cells`); its data are drawn by
:mod:`augvae.bench.split` and its record saved in the results folder (:mod:`augvae.bench.results`).
Rerunning the same command skips finished cells, so a long run survives interruption; cells
computed with different settings are refused rather than mixed.

**The step budget** is the same for every arm (it isolates the data) and, by default, large enough
for every arm: ``auto_epochs`` passes over the largest real training set of the grid, at least
``min_steps``. **The convergence check**: after the grid, ``original``, the better baseline and the
best generated arm run again at twice the steps (``OUT/convergence``); the report says whether the
conclusion changed.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from augvae._io import check_output_folder, output_lock, try_lock, write_csv, write_json
from augvae.bench.arms import ARM_SPECS
from augvae.bench.cells import Cell, auto_steps, grid, run_cell, run_order, select_cells
from augvae.bench.config import BASELINE_ARMS, CONTROL_ARMS, BenchConfig
from augvae.bench.results import BENCH_FILE, CELLS_DIR, CONVERGENCE_DIR, finished_ids, load_cells, versions
from augvae.bench.split import BenchData, prepare_data
from augvae.config import config_to_dict
from augvae.errors import AugvaeError, DataError, OutputLockedError

__all__ = ["run_bench", "best_generated_arm"]

log = logging.getLogger("augvae")

# Per-process state of parallel workers.
_WORKER: dict[str, Any] = {}


def _exit_with(parent: int, interval: float = 1.0) -> None:
    """Watch, in a daemon thread, for the bench process to go (killed, or stopped with Ctrl-C) and end this worker then.

    Without it a worker whose parent was killed finishes its cell and the next queued one, writing
    results for a run its user stopped and holding a core for minutes. A cell it leaves unfinished
    is not written (cells are written whole) and is run again on resume.
    """

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(interval)
        os._exit(1)

    threading.Thread(target=watch, name="augvae-parent-watch", daemon=True).start()


def _init_worker(data_dir: str, cfg: BenchConfig, split_file: str | None, group_file: str | None, out: str, cache: str, threads: int,
                 steps: int, grids: bool, parent: int) -> None:
    _exit_with(parent)
    torch.set_num_threads(threads)
    logging.basicConfig(level=logging.WARNING, format="augvae: %(message)s")
    _WORKER.update(bd=prepare_data(data_dir, cfg, split_file, group_file), cfg=cfg, out=Path(out), cache=Path(cache), steps=steps,
                   grids=grids)


def _run_in_worker(cell: Cell) -> tuple[str, dict[str, Any] | None]:
    with try_lock(_WORKER["out"] / CELLS_DIR / f".{cell.id}.lock") as mine:
        if not mine:
            return cell.id, None
        return cell.id, run_cell(_WORKER["bd"], cell, _WORKER["cfg"], _WORKER["out"], _WORKER["cache"], _WORKER["steps"],
                                 grids=_WORKER["grids"])


def _mean_accuracy(cells: Sequence[dict[str, Any]], arm: str) -> float:
    return float(np.mean([c["metrics"]["accuracy"] for c in cells if c["arm"] == arm]))


def best_generated_arm(cells: Sequence[dict[str, Any]]) -> str | None:
    """augvae's generated arm (not a control; else any arm but ``original``) with the highest mean accuracy over its cells."""
    arms = sorted({c["arm"] for c in cells})
    generated = [a for a in arms if ARM_SPECS[a].generated is not None and a not in CONTROL_ARMS]
    pool = generated or [a for a in arms if a != "original"]
    return max(pool, key=lambda a: _mean_accuracy(cells, a)) if pool else None


def _schedule(bd: BenchData, todo: list[Cell], cfg: BenchConfig, out: Path, cache: Path, steps: int, data_dir: str,
              split_file: str | None, group_file: str | None, progress: bool, grids: bool) -> list[str]:
    """Run ``todo`` (one process, or ``cfg.jobs`` worker processes); return the ids of the cells this call ran."""
    ran: list[str] = []
    t0 = time.perf_counter()
    todo = run_order(todo, cfg)

    def done(i: int, cid: str, rec: dict[str, Any] | None) -> None:
        if rec is None:
            log.info("[%d/%d] %s is running in another process; skipped", i, len(todo), cid)
            return
        ran.append(cid)
        if progress:
            eta = (time.perf_counter() - t0) / len(ran) * (len(todo) - i)
            log.info("[%d/%d] %s: accuracy %.3f (%.0f s; about %.0f min left)", i, len(todo), cid, rec["metrics"]["accuracy"],
                     rec["cell_seconds"], eta / 60)

    threads = cfg.threads or max(1, (os.cpu_count() or 1) // cfg.jobs)
    if cfg.jobs == 1 or len(todo) <= 1:
        previous = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            for i, cell in enumerate(todo, 1):
                with try_lock(out / CELLS_DIR / f".{cell.id}.lock") as mine:
                    rec = run_cell(bd, cell, cfg, out, cache, steps, grids=grids) if mine else None
                done(i, cell.id, rec)
        finally:
            torch.set_num_threads(previous)
        return ran
    import concurrent.futures as cf
    import multiprocessing as mp
    from concurrent.futures.process import BrokenProcessPool

    pool = cf.ProcessPoolExecutor(cfg.jobs, mp_context=mp.get_context("spawn"), initializer=_init_worker,
                                  initargs=(data_dir, cfg, split_file, group_file, str(out), str(cache), threads, steps, grids,
                                            os.getpid()))
    try:
        futures = [pool.submit(_run_in_worker, c) for c in todo]
        for i, fut in enumerate(cf.as_completed(futures), 1):
            cid, rec = fut.result()
            done(i, cid, rec)
    except BrokenProcessPool:
        raise AugvaeError(
            f"a bench worker process died (killed, or out of memory) after {len(ran)} of {len(todo)} cells; finished cells "
            "are kept: rerun the same command to continue, with fewer --jobs if memory is short"
        ) from None
    finally:
        # On an error, the queued cells are dropped at once instead of running for hours before the error shows.
        pool.shutdown(wait=True, cancel_futures=True)
    return ran


def run_bench(
    data_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    cfg: BenchConfig,
    split_file: str | os.PathLike[str] | None = None,
    group_file: str | os.PathLike[str] | None = None,
    cells: str | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    progress: bool = True,
    command: Sequence[str] | None = None,
    report: bool = True,
    grids: bool = True,
) -> dict[str, Any]:
    """Run (or continue) a benchmark and, unless a cell selector was given, the convergence check and the report.

    Args:
        data_dir: Folder with one subfolder per class (the split file's paths are relative to it).
        out_dir: Results folder: ``cells/``, ``bench.json``, ``split.csv``, ``convergence/``, the report files.
        cfg: The settings.
        split_file, group_file: See :mod:`augvae.bench.split`.
        cells: A cell selector (see :func:`~augvae.bench.cells.select_cells`): run only those cells and write
            no report (a cluster job); ``augvae bench --report-only`` merges the cells afterwards.
        cache_dir: Where trained VAEs and real-data classifiers are cached (default ``OUT/cache``);
            cached files are keyed by every setting they depend on, so result folders may share one cache.
        progress: Log a line per cell.
        command: The command line, recorded in ``bench.json`` and the report.
        report: Write the report at the end (full runs only).
        grids: Save the generated-versus-real image grids (``OUT/grids``).

    Returns:
        ``{"ran": [...], "skipped": [...], "report": path or None, "steps": the budget}``.
    """
    out = Path(out_dir)
    if not Path(data_dir).is_dir():
        raise DataError(f"data folder '{data_dir}' does not exist or is not a folder; pass the folder with one subfolder per class")
    # A results folder holds bench.json once started; anything else non-empty is the user's, and stays untouched.
    check_output_folder(out, "bench", own_files=(BENCH_FILE,))
    cache = Path(cache_dir) if cache_dir is not None else out / "cache"
    all_cells = grid(cfg)
    chosen = select_cells(all_cells, cells)
    with contextlib.nullcontext() if cells else _out_lock(out):
        done = finished_ids(out, cfg.fingerprint(), cfg.cell_settings())
        bd = prepare_data(data_dir, cfg, split_file, group_file, progress=progress)
        budget = auto_steps(bd, cfg)
        write_csv(out / "split.csv", bd.split_rows(), ("path", "class", "split"))
        if not cells or not (out / BENCH_FILE).exists():
            write_json(out / BENCH_FILE, {
                "config": config_to_dict(cfg), "fingerprint": cfg.fingerprint(), "data_dir": str(data_dir),
                "split": bd.split_source, "group_file": str(group_file) if group_file else None, "classes": bd.classes,
                "counts": bd.counts(), "cache_dir": str(cache), "command": list(command) if command else None,
                "versions": versions(), "cells": [c.id for c in all_cells], "budget": budget,
            })
        todo = [c for c in chosen if c.id not in done]
        skipped = [c.id for c in chosen if c.id in done]
        if skipped:
            log.info("skipping %d finished cell(s) of %d", len(skipped), len(chosen))
        if budget["cut"]:
            log.warning("--steps %d is below the auto budget of %d steps (%d passes over %d images): a budget-cut run",
                        budget["steps"], budget["auto"], cfg.auto_epochs, budget["largest_train_set"])
        args = (str(data_dir), _opt(split_file), _opt(group_file), progress, grids)
        ran = _schedule(bd, todo, cfg, out, cache, budget["steps"], *args)
        path = None
        if not cells:
            if cfg.convergence_check:
                _convergence(bd, cfg, out, cache, budget["steps"], command, *args)
            if report:
                from augvae.bench.report import write_report

                path = write_report(out)
    return {"ran": ran, "skipped": skipped, "report": path, "steps": budget["steps"]}


def _convergence(bd: BenchData, cfg: BenchConfig, out: Path, cache: Path, steps: int, command: Sequence[str] | None, data_dir: str,
                 split_file: str | None, group_file: str | None, progress: bool, grids: bool) -> None:
    """``original``, the better baseline and the best generated arm again, at twice the steps, into ``OUT/convergence``."""
    finished = [c for c in load_cells(out) if c.get("fingerprint") == cfg.fingerprint()]
    best = best_generated_arm(finished)
    if best is None:
        return
    baselines = [a for a in BASELINE_ARMS if any(c["arm"] == a for c in finished)]
    base = max(baselines, key=lambda a: _mean_accuracy(finished, a)) if baselines else "original"
    ccfg = cfg.replace(arms=tuple(dict.fromkeys(("original", base, best))), steps=2 * steps, convergence_check=False)
    cout = out / CONVERGENCE_DIR
    done = finished_ids(cout, ccfg.fingerprint(), ccfg.cell_settings())
    write_json(cout / BENCH_FILE, {"config": config_to_dict(ccfg), "fingerprint": ccfg.fingerprint(), "data_dir": data_dir,
                                   "split": bd.split_source, "classes": bd.classes, "counts": bd.counts(),
                                   "command": list(command) if command else None, "versions": versions(),
                                   "cells": [c.id for c in grid(ccfg)], "budget": {"steps": 2 * steps, "of": steps, "arm": best, "baseline": base},
                                   "convergence_of": str(out)})
    todo = [c for c in grid(ccfg) if c.id not in done]
    if todo:
        log.info("convergence check: %s at %d steps (%d cells)", ", ".join(ccfg.arms), 2 * steps, len(todo))
    _schedule(bd, todo, ccfg, cout, cache, 2 * steps, data_dir, split_file, group_file, progress, False)


def _opt(p: str | os.PathLike[str] | None) -> str | None:
    return None if p is None else os.fspath(p)


@contextlib.contextmanager
def _out_lock(out: Path) -> Iterator[None]:
    try:
        with output_lock(out):
            yield
    except OutputLockedError as err:
        raise OutputLockedError(f"{err}. (To run cells of one grid in parallel, use --jobs N, or one --cell selector per process.)") from None

