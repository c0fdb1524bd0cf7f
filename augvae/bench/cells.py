"""One cell of the benchmark grid: a (classifier, arm, k, seed), trained and evaluated.

Each finished cell is saved at once as ``OUT/cells/<id>.json`` (atomically; see
:mod:`augvae.bench.results`) with its metrics, timings, the exact settings, the resolved number of
optimizer steps and the paths of its real training images.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from augvae._io import blocking_lock, save_tensors
from augvae.bench.arms import ARM_SPECS, TrainingSet, build_training_set, fit_classifier
from augvae.bench.classifiers import create_classifier, predict
from augvae.bench.config import BenchConfig
from augvae.bench.quality import generation_quality
from augvae.bench.results import versions, write_cell
from augvae.bench.split import BenchData, assert_no_test_images, draw_train, settings_key
from augvae.bench.stats import classification_metrics
from augvae.data.images import ImageSet
from augvae.errors import ConfigError
from augvae.training import resolve_device

log = logging.getLogger("augvae")

__all__ = ["Cell", "grid", "select_cells", "shared_model", "run_order", "auto_steps", "reference_classifier", "run_cell"]


@dataclass(frozen=True)
class Cell:
    """One (classifier, arm, k, seed) of the grid."""

    classifier: str
    arm: str
    k: int
    seed: int

    @property
    def id(self) -> str:
        """The cell's file stem, e.g. ``small-cnn__classic+vae__k10__s3``."""
        return f"{self.classifier}__{self.arm}__k{self.k}__s{self.seed}"


def grid(cfg: BenchConfig) -> list[Cell]:
    """Every cell of the config, cheapest k first; within a (k, seed), ``original`` first.

    Example:
        >>> [c.id for c in grid(BenchConfig(arms=("original", "vae"), per_class=(5,), seeds=1))]
        ['small-cnn__original__k5__s0', 'small-cnn__vae__k5__s0']
    """
    return [Cell(clf, arm, k, s) for k in cfg.per_class for s in cfg.seed_list() for clf in cfg.classifiers for arm in cfg.arms]


def shared_model(cell: Cell, cfg: BenchConfig) -> str | None:
    """The trained model a cell shares with other cells (cached, trained by the first that needs it), or None.

    The transplant arm's VAE of the defect-free surfaces is one for the whole grid; without a
    defect-free class, and for the ``vae`` arms, one VAE per (k, seed); ``vae-prior``'s per-class VAEs
    per (k, seed). The controls (``blurmask``, ``cutpaste``) and the baselines train none.
    """
    kind = ARM_SPECS[cell.arm].generated
    if kind == "transplant":
        return "surface-vae" if cfg.background_class else f"vae-k{cell.k}-s{cell.seed}"
    if kind == "overlay":
        return f"vae-k{cell.k}-s{cell.seed}"
    if kind == "prior":
        return f"prior-k{cell.k}-s{cell.seed}"
    return None


def run_order(cells: Sequence[Cell], cfg: BenchConfig) -> list[Cell]:
    """``cells`` in the order parallel workers take them: the first cell to need each shared model, and every cell that
    needs none, in grid order; then the other cells that share a model.

    A shared model is trained once under a lock, so a worker whose cell needs a model that another
    worker is training waits, idle (ELPV's surface VAE: 18 minutes of one core). In this order the other
    workers run cells that need no model meanwhile. Every cell's result is the same in any order.

    Example:
        >>> cfg = BenchConfig(arms=("classic", "classic+transplant"), per_class=(5,), seeds=2, background_class="ok")
        >>> [f"{c.arm} s{c.seed}" for c in run_order(grid(cfg), cfg)]
        ['classic s0', 'classic+transplant s0', 'classic s1', 'classic+transplant s1']
        >>> [f"{c.arm} s{c.seed}" for c in run_order(grid(cfg.replace(arms=("classic+transplant", "classic"))), cfg)]
        ['classic+transplant s0', 'classic s0', 'classic s1', 'classic+transplant s1']
    """
    claimed: set[str] = set()
    first, later = [], []
    for cell in cells:
        key = shared_model(cell, cfg)
        if key is not None and key in claimed:
            later.append(cell)
            continue
        if key is not None:
            claimed.add(key)
        first.append(cell)
    return first + later


def select_cells(cells: Sequence[Cell], selector: str | None) -> list[Cell]:
    """Cells picked by ``selector``: None (all), an index or ``A-B`` / ``A:B`` index range into the
    grid (0-based, as a cluster array task id), or comma-separated cell ids.

    Example:
        >>> cells = grid(BenchConfig(arms=("original", "vae"), per_class=(5, 10), seeds=1))
        >>> [c.id for c in select_cells(cells, "1")], len(select_cells(cells, "0-2"))
        (['small-cnn__vae__k5__s0'], 3)
    """
    if selector is None or selector == "":
        return list(cells)
    sel = selector.strip()
    n = len(cells)
    for sep in ("-", ":"):
        a, _, b = sel.partition(sep)
        if sep in sel and a.isdigit() and b.isdigit():
            lo, hi = int(a), int(b)
            if not 0 <= lo <= hi < n:
                raise ConfigError(f"cell range {sel!r} is outside the grid of {n} cells (0..{n - 1}); augvae bench ... --list-cells shows them")
            return list(cells[lo : hi + 1])
    if sel.isdigit():
        i = int(sel)
        if i >= n:
            raise ConfigError(f"cell index {i} is outside the grid of {n} cells (0..{n - 1}); augvae bench ... --list-cells shows them")
        return [cells[i]]
    by_id = {c.id: c for c in cells}
    wanted = [s.strip() for s in sel.split(",") if s.strip()]
    unknown = [w for w in wanted if w not in by_id]
    if unknown:
        raise ConfigError(f"unknown cell id(s) {', '.join(unknown)}; pass an index, a range A-B, or ids from --list-cells")
    return [by_id[w] for w in wanted]


def auto_steps(bd: BenchData, cfg: BenchConfig) -> dict[str, Any]:
    """The step budget: ``cfg.steps``, or (0 = auto) ``auto_epochs`` passes over the largest real training set, at least ``min_steps``.

    Returns ``{"steps", "auto", "largest_train_set", "cut"}``; ``cut`` is True when a fixed ``steps``
    is below the auto budget (the report says so first).
    """
    labels = bd.data.labels.numpy()
    largest = 0
    for k in cfg.per_class:
        n = 0
        for c, name in enumerate(bd.classes):
            pool = int((labels[bd.pool] == c).sum())
            n += (cfg.background_images or pool) if name == cfg.background_class else min(k, pool)
        largest = max(largest, n)
    auto = max(cfg.min_steps, cfg.auto_epochs * math.ceil(largest / cfg.batch_size))
    steps = cfg.steps or auto
    return {"steps": steps, "auto": auto, "largest_train_set": largest, "cut": steps < auto}


def _ref_path(cache: Path, bd: BenchData, cfg: BenchConfig, classifier: str, k: int, seed: int, steps: int) -> Path:
    key = settings_key(bd.data_key, classifier, steps, cfg.batch_size, cfg.lr, cfg.weight_decay, cfg.classifier_weights,
                       cfg.background_class, cfg.background_images, cfg.balanced, cfg.precision, cfg.memory_format)
    return cache / "ref" / key / f"{classifier}-k{k}-s{seed}.safetensors"


def reference_classifier(bd: BenchData, cfg: BenchConfig, cache: Path, classifier: str, k: int, seed: int, train_set: ImageSet,
                         device: torch.device, steps: int, progress: bool = False) -> tuple[torch.nn.Module, dict[str, Any]]:
    """The ``original`` arm's classifier for (classifier, k, seed): trained once on the real images, then cached.

    It is the ``original`` arm's result, the real-data classifier of the quality measures, and the
    filter of generated samples (``filter_confidence``).
    """
    from safetensors import safe_open
    from safetensors.torch import load_file

    path = _ref_path(cache, bd, cfg, classifier, k, seed, steps)
    with blocking_lock(path.with_name(f".{path.name}.lock")):
        torch.manual_seed(seed)  # the initial weights: the same in every arm of this seed
        model = create_classifier(classifier, len(bd.classes), cfg.channels, cfg.classifier_weights or None)
        fit = None
        if path.exists():
            try:
                model.load_state_dict(load_file(str(path)))
                with safe_open(str(path), framework="pt") as f:
                    fit = json.loads(f.metadata()["fit"])
                fit["cached"] = True
            except Exception as err:  # noqa: BLE001 - any damage to a cache file means: compute it again
                log.warning("cached classifier %s is damaged (%s); training it again", path, type(err).__name__)
                torch.manual_seed(seed)
                model = create_classifier(classifier, len(bd.classes), cfg.channels, cfg.classifier_weights or None)
                fit = None
        if fit is None:
            ts = TrainingSet(train_set.images, train_set.labels, len(bd.classes))
            fit = fit_classifier(model, ts, cfg, seed, ARM_SPECS["original"], device, steps, progress,
                                 f"{classifier} original k{k} s{seed}")
            save_tensors(path, model.state_dict(), {"fit": json.dumps(fit)})
            fit["cached"] = False
    model.to(device).eval()
    return model, fit


def _write_grid(path: Path, train_set: ImageSet, generated: torch.Tensor, gen_targets: torch.Tensor, title: str, n: int = 6) -> None:
    from augvae.bench.report import generated_vs_real_figure

    generated_vs_real_figure(train_set, generated, gen_targets.argmax(1), path, title, n=n)


def run_cell(bd: BenchData, cell: Cell, cfg: BenchConfig, out: Path, cache: Path, steps: int, progress: bool = False,
             grids: bool = True) -> dict[str, Any]:
    """Train and evaluate one cell with ``steps`` optimizer steps; save ``OUT/cells/<id>.json`` and return its record."""
    t_start = time.perf_counter()
    device = resolve_device(cfg.device)
    train_idx = draw_train(bd, cell.k, cell.seed, cfg.background_class, cfg.background_images)
    assert_no_test_images(train_idx, bd, f"training the classifier of {cell.id}")
    train_set = bd.data.subset(train_idx)
    assert_no_test_images(train_set.paths, bd, f"training the classifier of {cell.id}")
    spec = ARM_SPECS[cell.arm]
    record: dict[str, Any] = {"id": cell.id, "classifier": cell.classifier, "arm": cell.arm, "k": cell.k, "seed": cell.seed,
                              "fingerprint": cfg.fingerprint(), "settings": cfg.cell_settings()}
    def reference() -> tuple[torch.nn.Module, dict[str, Any]]:
        return reference_classifier(bd, cfg, cache, cell.classifier, cell.k, cell.seed, train_set, device, steps, progress)

    ts, ref = None, None
    if cell.arm == "original":
        model, fit = reference()
    else:
        ts = build_training_set(cell.arm, train_set, cfg, cache, bd.data_key, cell.k, cell.seed)
        if ts.generate is not None:
            ref = reference()[0]
        if "vae_train_paths" in ts.info:  # the VAE(s) saw only this cell's training images
            assert_no_test_images(ts.info.pop("vae_train_paths"), bd, f"the VAE of {cell.id}")
        if ts.info:
            record["generation"] = ts.info
        torch.manual_seed(cell.seed)  # the same initial weights as the original arm of this seed
        model = create_classifier(cell.classifier, len(bd.classes), cfg.channels, cfg.classifier_weights or None)
        fit = fit_classifier(model, ts, cfg, cell.seed, spec, device, steps, progress, cell.id,
                             reference=ref if cfg.filter_confidence > 0 else None)
    test_images, test_labels = bd.data.images[bd.test], bd.data.labels[bd.test]
    logits, _ = predict(model, test_images)
    record["metrics"] = classification_metrics(test_labels.tolist(), logits.argmax(1).tolist(), bd.classes,
                                               scores=logits.float().softmax(1).numpy())
    if ts is not None and ts.generate is not None:
        generated, targets = ts.sample(max(64, min(512, len(train_set))), cell.seed)
        record["quality"] = generation_quality(ref, generated, targets, train_set.images, train_set.labels, test_images,
                                               test_labels, bd.classes)
        kind = spec.generated
        grid_path = out / "grids" / f"{kind}-k{cell.k}-s{cell.seed}.png"
        if grids and not grid_path.exists():
            _write_grid(grid_path, train_set, generated, targets, f"{kind}, k={cell.k}, seed {cell.seed}: real (left) | generated (right)")
    record.update({
        "n_train_real": len(train_set), "n_generated": int(fit.get("generated", 0)), "n_test": int(bd.test.size), "steps": steps,
        "train_seconds": fit["seconds"], "cell_seconds": time.perf_counter() - t_start, "fit": fit,
        "train_paths": [bd.rel_paths[i] for i in train_idx.tolist()], "versions": versions(),
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    })
    write_cell(out, record)
    return record

