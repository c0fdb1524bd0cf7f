"""Running the benchmark: the split, the grid of cells, one cell, many cells in parallel.

A **cell** is one (classifier, arm, k, seed). Each finished cell is saved at once as
``OUT/cells/<id>.json`` (atomically), with its metrics, timings, the exact settings and the paths of
its real training images. Rerunning the same command skips finished cells, so a long run survives
interruption; cells computed with different settings are refused rather than mixed.

The split: with a split file (columns ``path, class, split``; ``split`` is ``pool`` or ``test``)
the ``test`` rows are the test set of every cell and the ``pool`` rows are what training images are
drawn from. Without one, a stratified random split (seeded by ``split_seed``, the same for every
cell) holds out ``test_fraction`` of each class. A group file (columns ``path, group``) keeps every
group (e.g. the images of one physical part) on one side: the random split is then group-aware
(scikit-learn's ``StratifiedGroupKFold``), and a split file that puts a group on both sides is
refused.

Seed ``s`` draws, for each class, a random order of its pool images (``numpy`` seeded by ``(s,
class)``) and takes the first k: the draw for k=5 is part of the draw for k=10, and every arm and
classifier of that seed sees the same images. The classifier's initial weights depend on the seed
only. Before any classifier or VAE is trained the runner checks that no test image is among its
training images, and stops with :class:`TestLeakError` if one is.
"""

from __future__ import annotations

import contextlib
import csv
import logging
import os
import platform
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from augvae._io import write_csv, write_json
from augvae.bench.arms import ARM_SPECS, build_training_set, cache_lock, fit_classifier, settings_key
from augvae.bench.config import BenchConfig
from augvae.data.images import ImageSet, load_images, scan_folder
from augvae.errors import AugvaeError, ConfigError, DataError, OutputLockedError

__all__ = [
    "BenchData",
    "Cell",
    "TestLeakError",
    "assert_no_test_images",
    "draw_train",
    "grid",
    "load_cells",
    "prepare_data",
    "run_bench",
    "run_cell",
    "select_cells",
    "versions",
]

log = logging.getLogger("augvae")

SPLITS = ("pool", "test")
CELLS_DIR = "cells"
BENCH_FILE = "bench.json"


class TestLeakError(AugvaeError, AssertionError):
    """A test image was about to be used for training: a bug, never a user error."""

    __test__ = False  # not a pytest test class


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


# ------------------------------------------------------------------------------------ data
@dataclass
class BenchData:
    """All images of the benchmark (pool and test) and the split."""

    data: ImageSet  #: every image, pool and test
    rel_paths: list[str]  #: each image's path as the split names it
    pool: np.ndarray  #: indices of the pool images
    test: np.ndarray  #: indices of the test images
    data_key: str  #: identifies the loaded data (split, size, channels) for the caches
    split_source: str  #: the split file, or "random (seed N)"
    data_dir: str

    @property
    def classes(self) -> list[str]:
        return self.data.classes

    def counts(self) -> dict[str, dict[str, int]]:
        """Images per class in the pool and in the test set."""
        labels = self.data.labels.numpy()
        return {name: {"pool": int((labels[self.pool] == c).sum()), "test": int((labels[self.test] == c).sum())}
                for c, name in enumerate(self.classes)}

    def split_rows(self) -> list[dict[str, str]]:
        """The split as rows ``path, class, split`` (the split file format)."""
        which = np.full(len(self.rel_paths), "", dtype=object)
        which[self.pool], which[self.test] = "pool", "test"
        labels = self.data.labels.tolist()
        return [{"path": p, "class": self.classes[labels[i]], "split": str(which[i])} for i, p in enumerate(self.rel_paths)]


def _read_csv(path: Path, required: Sequence[str], what: str) -> list[dict[str, str]]:
    if not path.is_file():
        raise DataError(f"{what} '{path}' does not exist; check the path")
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            fields = [c.strip() for c in (reader.fieldnames or [])]
            missing = [c for c in required if c not in fields]
            if missing:
                raise DataError(
                    f"{what} '{path}' lacks column(s) {', '.join(missing)}; it needs a header row with {', '.join(required)} "
                    f"(found: {', '.join(fields) or 'nothing'})"
                )
            rows = [{(k or "").strip(): (v or "").strip() for k, v in row.items()} for row in reader]
    except UnicodeDecodeError as err:
        raise DataError(f"{what} '{path}' is not a UTF-8 text CSV ({err}); save it as CSV") from None
    except csv.Error as err:
        raise DataError(f"{what} '{path}' is not a valid CSV ({err})") from None
    if not rows:
        raise DataError(f"{what} '{path}' has a header but no rows; add one row per image")
    return rows


def _resolve(rel: str, data_dir: Path, alt: Path | None) -> Path:
    p = Path(rel)
    if p.is_absolute():
        return p
    if (data_dir / p).exists() or alt is None:
        return data_dir / p
    return alt / p if (alt / p).exists() else data_dir / p


def _read_split(split_file: Path, data_dir: Path) -> tuple[list[str], list[str], list[str]]:
    rows = _read_csv(split_file, ("path", "class", "split"), "split file")
    paths, classes, splits = [], [], []
    bad_split = sorted({r["split"] for r in rows if r["split"].lower() not in SPLITS})
    if bad_split:
        raise DataError(f"split file '{split_file}' has split value(s) {', '.join(map(repr, bad_split))}; each row's split must be pool or test")
    empty = [i + 2 for i, r in enumerate(rows) if not r["path"] or not r["class"]]
    if empty:
        raise DataError(f"split file '{split_file}' has rows without a path or class (line {empty[0]}); fill them in or delete them")
    seen: dict[str, str] = {}
    for r in rows:
        p, s = r["path"], r["split"].lower()
        if p in seen:
            raise DataError(f"split file '{split_file}' lists '{p}' twice ({seen[p]} and {s}); list each image once")
        seen[p] = s
        paths.append(p)
        classes.append(r["class"])
        splits.append(s)
    missing = [p for p in paths if not _resolve(p, data_dir, split_file.parent).is_file()]
    if missing:
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise DataError(
            f"split file '{split_file}' names {len(missing)} image(s) that do not exist under '{data_dir}': "
            f"{', '.join(missing[:5])}{more}; paths are relative to DATA_DIR: fix the paths or the DATA_DIR"
        )
    return paths, classes, splits


def _read_groups(group_file: Path, rel_paths: list[str], data_dir: Path) -> list[str]:
    rows = _read_csv(group_file, ("path", "group"), "group file")
    by_path = {}
    for r in rows:
        by_path[r["path"]] = r["group"]
        by_path[str(_resolve(r["path"], data_dir, group_file.parent).resolve())] = r["group"]
    groups = []
    for p in rel_paths:
        g = by_path.get(p) or by_path.get(str(_resolve(p, data_dir, None).resolve()))
        groups.append(f"group:{g}" if g else f"image:{p}")  # an unlisted image is its own group
    listed = sum(1 for g in groups if g.startswith("group:"))
    if listed == 0:
        raise DataError(f"group file '{group_file}' names none of the images of the benchmark; its paths must match the split's (relative to DATA_DIR)")
    return groups


def _random_split(labels: np.ndarray, groups: list[str] | None, cfg: BenchConfig) -> np.ndarray:
    """A boolean test mask: stratified by class, group-aware when groups are given."""
    from sklearn.model_selection import StratifiedGroupKFold, train_test_split

    idx = np.arange(labels.size)
    counts = np.bincount(labels)
    if counts.min() < 2:
        c = int(counts.argmin())
        raise DataError(f"class index {c} has {int(counts.min())} image; a random split needs at least 2 per class (one to train, one to test)")
    test = np.zeros(labels.size, dtype=bool)
    if groups is None:
        _, te = train_test_split(idx, test_size=cfg.test_fraction, stratify=labels, random_state=cfg.split_seed)
        test[te] = True
        return test
    n_splits = max(2, round(1 / cfg.test_fraction))
    folds = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=cfg.split_seed)
    _, te = next(folds.split(idx, labels, groups))
    test[te] = True
    return test


def prepare_data(
    data_dir: str | os.PathLike[str],
    cfg: BenchConfig,
    split_file: str | os.PathLike[str] | None = None,
    group_file: str | os.PathLike[str] | None = None,
    progress: bool = False,
) -> BenchData:
    """Read the split (or make one), load every image once, and check the split can serve the grid.

    Raises:
        DataError: A missing folder or file, a malformed split or group file, images the split
            names that do not exist, a group on both sides of the split, a class with no test
            images, or a class whose pool is smaller than the largest ``per_class``.
    """
    root = Path(data_dir)
    if not root.is_dir():
        raise DataError(f"data folder '{root}' does not exist or is not a folder; pass the folder with one subfolder per class")
    if split_file is not None:
        sf = Path(split_file)
        rel, cls_names, splits = _read_split(sf, root)
        classes = sorted(set(cls_names))
        labels = np.array([classes.index(c) for c in cls_names])
        test_mask = np.array([s == "test" for s in splits])
        source = str(sf)
    else:
        paths, lab, classes = scan_folder(root)
        rel = [p.relative_to(root).as_posix() for p in paths]
        labels = np.array(lab)
        test_mask = None
        source = f"random (test_fraction {cfg.test_fraction}, seed {cfg.split_seed})"
    if len(classes) < 2:
        raise DataError(f"the benchmark needs at least 2 classes, found {len(classes)} ({', '.join(classes)}); use one subfolder per class")
    groups = _read_groups(Path(group_file), rel, root) if group_file is not None else None
    if test_mask is None:
        test_mask = _random_split(labels, groups, cfg)
    elif groups is not None:
        straddle = sorted({g for g, t in zip(groups, test_mask) if t} & {g for g, t in zip(groups, test_mask) if not t})
        if straddle:
            names = ", ".join(g.split(":", 1)[1] for g in straddle[:5])
            raise DataError(
                f"{len(straddle)} group(s) have images in both pool and test ({names}): images of one part would be trained "
                "and tested on; move each group wholly to one side of the split file"
            )
    counts = {c: (int(((labels == i) & ~test_mask).sum()), int(((labels == i) & test_mask).sum())) for i, c in enumerate(classes)}
    no_test = [c for c, (_, t) in counts.items() if t == 0]
    if no_test:
        raise DataError(
            f"class(es) {', '.join(no_test)} have no test images in the split ({source}); every class needs test images: "
            "add 'test' rows for them to the split file (or drop the class)"
        )
    k_max = max(cfg.per_class)
    short = [(c, p) for c, (p, _) in counts.items() if p < k_max]
    if short:
        listed = ", ".join(f"'{c}' has {p}" for c, p in short)
        raise DataError(
            f"--per-class {k_max} is larger than the pool of some classes ({listed} pool images); "
            f"lower --per-class to at most {min(p for _, p in short)} or add pool images"
        )
    abs_paths = [_resolve(p, root, Path(split_file).parent if split_file else None).resolve() for p in rel]
    data = load_images(abs_paths, cfg.image_size, cfg.channels, cfg.resize_policy, labels=labels.tolist(), classes=classes)
    key = settings_key(sorted(zip(rel, (classes[i] for i in labels), test_mask.tolist())), cfg.image_size, cfg.channels, cfg.resize_policy)
    return BenchData(data, rel, np.flatnonzero(~test_mask), np.flatnonzero(test_mask), key, source, str(root))


def draw_train(bd: BenchData, k: int, seed: int) -> np.ndarray:
    """Indices of the k training images per class of ``seed`` (nested across k; see the module docstring).

    Example:
        >>> import torch
        >>> data = ImageSet(torch.zeros(8, 1, 8, 8), torch.tensor([0, 0, 0, 1, 1, 1, 0, 1]), ["a", "b"], list("abcdefgh"))
        >>> bd = BenchData(data, list("abcdefgh"), np.arange(6), np.array([6, 7]), "", "", "")
        >>> small, large = draw_train(bd, 1, 0), draw_train(bd, 2, 0)
        >>> len(small), len(large), set(small) <= set(large)
        (2, 4, True)
    """
    labels = bd.data.labels.numpy()
    out = []
    for c in range(len(bd.classes)):
        pool_c = sorted(bd.pool[labels[bd.pool] == c].tolist(), key=lambda i: bd.rel_paths[i])
        if k > len(pool_c):
            raise DataError(f"--per-class {k} is larger than the pool of class '{bd.classes[c]}' ({len(pool_c)} images); lower --per-class")
        order = np.random.default_rng([seed, c]).permutation(len(pool_c))
        out += [pool_c[i] for i in order[:k]]
    return np.array(out, dtype=np.int64)


def assert_no_test_images(used: Sequence[str] | np.ndarray, bd: BenchData, what: str) -> None:
    """Stop with :class:`TestLeakError` if any of ``used`` (indices into ``bd`` or file paths) is a test image."""
    test_idx = set(bd.test.tolist())
    test_paths = {bd.data.paths[i] for i in test_idx} | {bd.rel_paths[i] for i in test_idx}
    if isinstance(used, np.ndarray) and used.dtype.kind in "iu":
        leaked = [bd.rel_paths[i] for i in used.tolist() if i in test_idx]
    else:
        leaked = [str(p) for p in used if str(p) in test_paths]
    if leaked:
        raise TestLeakError(f"{len(leaked)} test image(s) were about to be used for {what}: {', '.join(leaked[:3])}; this is a bug in augvae bench")


# ------------------------------------------------------------------------------------ cells
def versions() -> dict[str, str]:
    """Versions of the software a result depends on."""
    import importlib.metadata as md

    from augvae._version import __version__

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


def _ref_path(cache: Path, bd: BenchData, cfg: BenchConfig, classifier: str, k: int, seed: int) -> Path:
    key = settings_key(bd.data_key, classifier, cfg.steps, cfg.batch_size, cfg.lr, cfg.weight_decay, cfg.classifier_weights)
    return cache / "ref" / key / f"{classifier}-k{k}-s{seed}.safetensors"


def reference_classifier(bd: BenchData, cfg: BenchConfig, cache: Path, classifier: str, k: int, seed: int,
                         train_set: ImageSet, device: torch.device, progress: bool = False) -> tuple[torch.nn.Module, dict[str, Any]]:
    """The ``original`` arm's classifier for (classifier, k, seed): trained once on the real images, then cached.

    It is both the ``original`` arm's result and the real-data classifier of the quality measures.
    """
    import json

    from safetensors import safe_open
    from safetensors.torch import load_file

    from augvae._io import save_tensors
    from augvae.bench.classifiers import create_classifier

    path = _ref_path(cache, bd, cfg, classifier, k, seed)
    with cache_lock(path.with_name(f".{path.name}.lock")):
        torch.manual_seed(seed)  # the initial weights: the same in every arm of this seed
        model = create_classifier(classifier, len(bd.classes), cfg.channels, cfg.classifier_weights or None)
        if path.exists():
            model.load_state_dict(load_file(str(path)))
            with safe_open(str(path), framework="pt") as f:
                fit = json.loads(f.metadata()["fit"])
            fit["cached"] = True
        else:
            num = len(bd.classes)
            targets = torch.nn.functional.one_hot(train_set.labels, num).float()
            fit = fit_classifier(model, train_set.images, targets, cfg, seed, ARM_SPECS["original"], device, progress, f"{classifier} original k{k} s{seed}")
            save_tensors(path, model.state_dict(), {"fit": json.dumps(fit)})
            fit["cached"] = False
    model.to(device).eval()
    return model, fit


def _cell_record_base(cell: Cell, cfg: BenchConfig) -> dict[str, Any]:
    return {"id": cell.id, "classifier": cell.classifier, "arm": cell.arm, "k": cell.k, "seed": cell.seed,
            "fingerprint": cfg.fingerprint(), "settings": cfg.cell_settings()}


def _write_grid(path: Path, train_set: ImageSet, generated: torch.Tensor, gen_targets: torch.Tensor, title: str, n: int = 6) -> None:
    from augvae.bench.report import generated_vs_real_figure

    generated_vs_real_figure(train_set, generated, gen_targets.argmax(1), path, title, n=n)


def run_cell(bd: BenchData, cell: Cell, cfg: BenchConfig, out: Path, cache: Path, progress: bool = False,
             grids: bool = True) -> dict[str, Any]:
    """Train and evaluate one cell; save ``OUT/cells/<id>.json`` atomically and return its record."""
    from augvae.bench.classifiers import create_classifier, predict
    from augvae.bench.quality import generation_quality
    from augvae.bench.stats import classification_metrics
    from augvae.training import resolve_device

    t_start = time.perf_counter()
    device = resolve_device(cfg.device)
    train_idx = draw_train(bd, cell.k, cell.seed)
    assert_no_test_images(train_idx, bd, f"training the classifier of {cell.id}")
    train_set = bd.data.subset(train_idx)
    assert_no_test_images(train_set.paths, bd, f"training the classifier of {cell.id}")
    spec = ARM_SPECS[cell.arm]
    record = _cell_record_base(cell, cfg)
    gen = None
    if cell.arm == "original":
        model, fit = reference_classifier(bd, cfg, cache, cell.classifier, cell.k, cell.seed, train_set, device, progress)
        n_train, n_gen = len(train_set), 0
    else:
        if spec.generated is not None:  # the VAE(s) see only this cell's training images: check before they train
            assert_no_test_images(train_set.paths, bd, f"training the VAE of {cell.id}")
        ts = build_training_set(cell.arm, train_set, cfg, cache, bd.data_key, cell.k, cell.seed)
        if "vae_train_paths" in ts.info:
            assert_no_test_images(ts.info.pop("vae_train_paths"), bd, f"the VAE of {cell.id}")
            record["generation"] = ts.info
        torch.manual_seed(cell.seed)  # the same initial weights as the original arm of this seed
        model = create_classifier(cell.classifier, len(bd.classes), cfg.channels, cfg.classifier_weights or None)
        fit = fit_classifier(model, ts.images, ts.targets, cfg, cell.seed, spec, device, progress, cell.id)
        n_train, n_gen = ts.n_real, ts.images.shape[0] - ts.n_real
        gen = ts
    test_images, test_labels = bd.data.images[bd.test], bd.data.labels[bd.test]
    logits, _ = predict(model, test_images)
    record["metrics"] = classification_metrics(test_labels.tolist(), logits.argmax(1).tolist(), bd.classes)
    if gen is not None and gen.generated is not None and gen.generated_targets is not None:
        ref, _ = reference_classifier(bd, cfg, cache, cell.classifier, cell.k, cell.seed, train_set, device, progress)
        record["quality"] = generation_quality(ref, gen.generated, gen.generated_targets, train_set.images, train_set.labels,
                                               test_images, test_labels, bd.classes)
        kind = ARM_SPECS[cell.arm].generated
        grid_path = out / "grids" / f"{kind}-k{cell.k}-s{cell.seed}.png"
        if grids and not grid_path.exists():
            _write_grid(grid_path, train_set, gen.generated, gen.generated_targets,
                        f"{'overlays' if kind == 'overlay' else 'prior samples'}, k={cell.k}, seed {cell.seed}: real (left) | generated (right)")
    record.update({
        "n_train_real": n_train, "n_generated": n_gen, "n_test": int(bd.test.size), "steps": cfg.steps,
        "train_seconds": fit["seconds"], "cell_seconds": time.perf_counter() - t_start, "fit": fit,
        "train_paths": [bd.rel_paths[i] for i in train_idx.tolist()], "versions": versions(),
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    })
    write_json(out / CELLS_DIR / f"{cell.id}.json", record)
    return record


def load_cells(out: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Every finished cell record in ``OUT/cells``, sorted by id (unreadable files are skipped with a warning)."""
    import json

    folder = Path(out) / CELLS_DIR
    records = []
    for p in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            records.append(json.loads(p.read_text(encoding="utf-8")))
        except (OSError, ValueError) as err:
            log.warning("skipping unreadable cell file %s (%s); delete it to recompute the cell", p, err)
    return records


@contextlib.contextmanager
def _cell_lock(out: Path, cell: Cell) -> Iterator[bool]:
    """Try to lock a cell (non-blocking): yields False if another process is running it."""
    path = out / CELLS_DIR / f".{cell.id}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    f = open(path, "a+")  # noqa: SIM115
    try:
        try:
            import fcntl

            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except ImportError:  # pragma: no cover
            pass
        except OSError:
            yield False
            return
        yield True
    finally:
        f.close()


def _check_existing(out: Path, cfg: BenchConfig) -> set[str]:
    """Ids of finished cells with this config; refuse cells computed with other settings."""
    done, clash = set(), []
    for rec in load_cells(out):
        if rec.get("fingerprint") == cfg.fingerprint():
            done.add(rec["id"])
        else:
            clash.append(rec)
    if clash:
        theirs = clash[0].get("settings", {})
        diff = sorted(k for k in set(theirs) | set(cfg.cell_settings()) if theirs.get(k) != cfg.cell_settings().get(k))
        shown = ", ".join(f"{k} ({theirs.get(k)!r} there, {cfg.cell_settings().get(k)!r} now)" for k in diff[:4])
        raise ConfigError(
            f"{out} already holds {len(clash)} cell(s) computed with different settings: {shown or 'unknown'}; "
            "rerun with the same settings to continue, or choose another --out"
        )
    return done


# Per-process state of parallel workers.
_WORKER: dict[str, Any] = {}


def _init_worker(data_dir: str, cfg: BenchConfig, split_file: str | None, group_file: str | None, out: str, cache: str, threads: int) -> None:
    torch.set_num_threads(threads)
    logging.basicConfig(level=logging.WARNING, format="augvae: %(message)s")
    _WORKER.update(bd=prepare_data(data_dir, cfg, split_file, group_file), cfg=cfg, out=Path(out), cache=Path(cache))


def _run_in_worker(cell: Cell) -> tuple[str, dict[str, Any] | None]:
    with _cell_lock(_WORKER["out"], cell) as mine:
        if not mine:
            return cell.id, None
        return cell.id, run_cell(_WORKER["bd"], cell, _WORKER["cfg"], _WORKER["out"], _WORKER["cache"])


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
    """Run (or continue) a benchmark and, unless a cell selector was given, write the report.

    Args:
        data_dir: Folder with one subfolder per class (the split file's paths are relative to it).
        out_dir: Results folder: ``cells/``, ``bench.json``, ``split.csv``, the report files.
        cfg: The settings.
        split_file, group_file: See the module docstring.
        cells: A cell selector (see :func:`select_cells`): run only those cells and write no report
            (a cluster job); ``augvae bench --report-only`` merges the cells afterwards.
        cache_dir: Where trained VAEs and real-data classifiers are cached (default ``OUT/cache``).
            Cached files are keyed by every setting they depend on, so several result folders
            may share one cache.
        progress: Log a line per cell.
        command: The command line, recorded in ``bench.json`` and the report.
        report: Write the report at the end (full runs only).
        grids: Save the generated-versus-real image grids (``OUT/grids``).

    Returns:
        ``{"ran": [...], "skipped": [...], "report": path or None}``.
    """
    out = Path(out_dir)
    if not Path(data_dir).is_dir():
        raise DataError(f"data folder '{data_dir}' does not exist or is not a folder; pass the folder with one subfolder per class")
    cache = Path(cache_dir) if cache_dir is not None else out / "cache"
    all_cells = grid(cfg)
    chosen = select_cells(all_cells, cells)
    lock = contextlib.nullcontext() if cells else _out_lock(out)
    with lock:
        done = _check_existing(out, cfg)
        bd = prepare_data(data_dir, cfg, split_file, group_file, progress=progress)
        write_csv(out / "split.csv", bd.split_rows(), ("path", "class", "split"))
        if not cells or not (out / BENCH_FILE).exists():
            from augvae.config import config_to_dict

            write_json(out / BENCH_FILE, {
                "config": config_to_dict(cfg), "fingerprint": cfg.fingerprint(), "data_dir": str(data_dir),
                "split": bd.split_source, "group_file": str(group_file) if group_file else None, "classes": bd.classes,
                "counts": bd.counts(), "cache_dir": str(cache), "command": list(command) if command else None,
                "versions": versions(), "cells": [c.id for c in all_cells],
            })
        todo = [c for c in chosen if c.id not in done]
        skipped = [c.id for c in chosen if c.id in done]
        if skipped:
            log.info("skipping %d finished cell(s) of %d", len(skipped), len(chosen))
        ran: list[str] = []
        t0 = time.perf_counter()

        def _done(i: int, cid: str, rec: dict[str, Any] | None) -> None:
            if rec is None:
                log.info("[%d/%d] %s is running in another process; skipped", i, len(todo), cid)
                return
            ran.append(cid)
            if progress:
                eta = (time.perf_counter() - t0) / len(ran) * (len(todo) - i)
                log.info("[%d/%d] %s: accuracy %.3f (%.0f s; about %.0f min left)", i, len(todo), cid,
                         rec["metrics"]["accuracy"], rec["cell_seconds"], eta / 60)

        threads = cfg.threads or max(1, (os.cpu_count() or 1) // cfg.jobs)
        if cfg.jobs == 1 or len(todo) <= 1:
            previous = torch.get_num_threads()
            torch.set_num_threads(threads)
            try:
                for i, cell in enumerate(todo, 1):
                    with _cell_lock(out, cell) as mine:
                        rec = run_cell(bd, cell, cfg, out, cache, grids=grids) if mine else None
                    _done(i, cell.id, rec)
            finally:
                torch.set_num_threads(previous)
        else:
            import concurrent.futures as cf
            import multiprocessing as mp

            with cf.ProcessPoolExecutor(cfg.jobs, mp_context=mp.get_context("spawn"), initializer=_init_worker,
                                        initargs=(str(data_dir), cfg, _opt(split_file), _opt(group_file), str(out), str(cache), threads)) as pool:
                futures = [pool.submit(_run_in_worker, c) for c in todo]
                for i, fut in enumerate(cf.as_completed(futures), 1):
                    cid, rec = fut.result()
                    _done(i, cid, rec)
        path = None
        if report and not cells:
            from augvae.bench.report import write_report

            path = write_report(out)
    return {"ran": ran, "skipped": skipped, "report": path}


def _opt(p: str | os.PathLike[str] | None) -> str | None:
    return None if p is None else os.fspath(p)


@contextlib.contextmanager
def _out_lock(out: Path) -> Iterator[None]:
    from augvae._io import output_lock

    try:
        with output_lock(out):
            yield
    except OutputLockedError as err:
        raise OutputLockedError(
            f"{err}. (To run cells of one grid in parallel, use --jobs N, or one --cell selector per process.)"
        ) from None
