"""The benchmark's data: the split into pool and test, and each seed's draw of training images.

With a split file (columns ``path, class, split``; ``split`` is ``pool`` or ``test``) the ``test``
rows are the test set of every cell and the ``pool`` rows are what training images are drawn from;
its paths are relative to DATA_DIR and must stay inside it. Without one, a stratified random split
(seeded by ``split_seed``, the same for every cell) holds out ``test_fraction`` of each class. A
group file (columns ``path, group``) keeps every group (e.g. the images of one physical part) on
one side: the random split is then group-aware (scikit-learn's ``StratifiedGroupKFold``), and a
split file that puts a group on both sides is refused.

Seed ``s`` draws, for each class, a random order of its pool images (``numpy`` seeded by ``(s,
class)``) and takes the first k: the draw for k=5 is part of the draw for k=10, and every arm and
classifier of that seed sees the same images. With a defect-free class (``background_class``) the
k images are drawn from every other class, and the defect-free class contributes all its pool
images (or ``background_images`` of them, drawn the same way). Before any classifier or VAE is
trained the cell checks that no test image is among its training images, and stops with
:class:`TestLeakError` if one is.
"""

from __future__ import annotations

import csv
import math
import os
import posixpath
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from augvae.bench.config import BenchConfig
from augvae.data.images import ImageSet, load_images, scan_folder
from augvae.errors import AugvaeError, DataError

__all__ = ["BenchData", "TestLeakError", "assert_no_test_images", "draw_train", "prepare_data", "settings_key"]

SPLITS = ("pool", "test")


class TestLeakError(AugvaeError, AssertionError):
    """A test image was about to be used for training: a bug, never a user error."""

    __test__ = False  # not a pytest test class


def settings_key(*parts: object) -> str:
    """A short stable hash of JSON-able parts: the cache key of an artifact."""
    import hashlib
    import json

    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:12]


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
        if path.is_dir():
            raise DataError(f"{what} '{path}' is a folder; pass the CSV file itself (e.g. {path / 'splits.csv'})")
        if path.exists():  # a pipe or device: the file is read twice, so it must be a regular file
            raise DataError(f"{what} '{path}' is not a regular file; save it to a file and pass that")
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


def _normalise(rel: str) -> str:
    """A split file's path as one spelling: ``./x.jpg``, ``a/../x.jpg`` and ``x.jpg`` are the same image."""
    return posixpath.normpath(rel.replace("\\", "/"))


def _read_split(split_file: Path, data_dir: Path) -> tuple[list[str], list[str], list[str]]:
    rows = _read_csv(split_file, ("path", "class", "split"), "split file")
    paths, classes, splits = [], [], []
    bad_split = sorted({r["split"] for r in rows if r["split"].lower() not in SPLITS})
    if bad_split:
        raise DataError(f"split file '{split_file}' has split value(s) {', '.join(map(repr, bad_split))}; each row's split must be pool or test")
    empty = [i + 2 for i, r in enumerate(rows) if not r["path"] or not r["class"]]
    if empty:
        raise DataError(f"split file '{split_file}' has rows without a path or class (line {empty[0]}); fill them in or delete them")
    absolute = [r["path"] for r in rows if Path(r["path"]).is_absolute()]
    if absolute:  # perhaps inside DATA_DIR, but the file would then describe one machine's folders only
        raise DataError(f"split file '{split_file}' names {len(absolute)} absolute path(s) ({', '.join(absolute[:3])}); write each "
                        "path relative to DATA_DIR (e.g. crack/img_001.png)")
    outside = [r["path"] for r in rows if _normalise(r["path"]).split("/")[0] == ".."]
    if outside:
        raise DataError(f"split file '{split_file}' names {len(outside)} path(s) outside DATA_DIR ({', '.join(outside[:3])}); every "
                        "path must be relative to DATA_DIR and stay inside it")
    seen: dict[str, tuple[str, str]] = {}
    for r in rows:
        p, s = _normalise(r["path"]), r["split"].lower()
        if p in seen:
            first = seen[p][0]
            same = f"'{first}' and '{r['path']}' are the same image" if first != r["path"] else f"'{p}' appears twice"
            raise DataError(f"split file '{split_file}' lists an image twice ({same}; {seen[p][1]} and {s}); list each image once")
        seen[p] = (r["path"], s)
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
    first: dict[str, tuple[str, str]] = {}
    for r in rows:  # one image in two groups: which side of the split it belongs to would depend on the row order
        key = _normalise(r["path"])
        if key in first and first[key][1] != r["group"]:
            raise DataError(f"group file '{group_file}' puts '{first[key][0]}' in two groups ({first[key][1]!r} and "
                            f"{r['group']!r}); give each image one group")
        first.setdefault(key, (r["path"], r["group"]))
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


def _random_split(labels: np.ndarray, groups: list[str] | None, cfg: BenchConfig, classes: Sequence[str]) -> np.ndarray:
    """A boolean test mask: stratified by class, group-aware when groups are given."""
    from sklearn.model_selection import StratifiedGroupKFold, train_test_split

    idx = np.arange(labels.size)
    counts = np.bincount(labels)
    if counts.min() < 2:
        c = int(counts.argmin())
        raise DataError(f"class '{classes[c]}' has {int(counts.min())} image; a random split needs at least 2 per class (one to train, "
                        "one to test): add images to it or drop its folder")
    test = np.zeros(labels.size, dtype=bool)
    if groups is None:
        n_test = math.ceil(cfg.test_fraction * labels.size)
        if not len(classes) <= n_test <= labels.size - len(classes):  # sklearn's own error names test_size, not the option
            raise DataError(f"a random split with test_fraction {cfg.test_fraction} of {labels.size} images gives {n_test} test "
                            f"image(s), but each of the {len(classes)} classes needs one on each side: pass a --test-fraction "
                            "that leaves every class a test and a training image, or a --split-file")
        _, te = train_test_split(idx, test_size=cfg.test_fraction, stratify=labels, random_state=cfg.split_seed)
        test[te] = True
        return test
    n_splits = max(2, round(1 / cfg.test_fraction))
    n_groups = len(set(groups))
    if n_groups < n_splits:  # sklearn's own message names n_splits, which the user never set
        raise DataError(f"the group file puts the images in {n_groups} group(s), too few for a random split with test_fraction "
                        f"{cfg.test_fraction} (it needs at least {n_splits}): use finer groups, a larger --test-fraction, or "
                        "a --split-file")
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
        fix = (f"list images of at least 2 classes in the split file '{split_file}'" if split_file is not None
               else "use one subfolder per class")
        raise DataError(f"the benchmark needs at least 2 classes, found {len(classes)} ({', '.join(classes)}); {fix}")
    groups = _read_groups(Path(group_file), rel, root) if group_file is not None else None
    if test_mask is None:
        test_mask = _random_split(labels, groups, cfg, classes)
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
        if split_file is not None:
            fix = "add 'test' rows for them to the split file (or drop the class)"
        elif groups is not None:
            fix = "the group file keeps all of their images in too few groups: give them more groups, or pass a --split-file"
        else:  # stratified, but a class much smaller than the others can round to no test image
            fix = "raise --test-fraction, add images of those classes, or pass a --split-file"
        raise DataError(f"class(es) {', '.join(no_test)} have no test images in the split ({source}); every class needs test "
                        f"images: {fix}")
    if cfg.background_class and cfg.background_class not in classes:
        raise DataError(f"background class {cfg.background_class!r} is not one of the classes ({', '.join(classes)}); pass the "
                        "name of the defect-free class")
    k_max = max(cfg.per_class)
    short = [(c, p) for c, (p, _) in counts.items() if p < k_max and c != cfg.background_class]
    if short:
        listed = ", ".join(f"'{c}' has {p}" for c, p in short)
        least = min(p for _, p in short)
        fix = f"lower --per-class to at most {least}" if least >= 1 else f"add pool images to {short[0][0]!r} (it has none)"
        raise DataError(f"--per-class {k_max} is larger than the pool of some classes ({listed} pool images); {fix} or add pool images")
    if cfg.background_class and counts[cfg.background_class][0] < max(2, cfg.background_images):
        raise DataError(f"the defect-free class {cfg.background_class!r} has {counts[cfg.background_class][0]} pool images; it needs "
                        f"at least {max(2, cfg.background_images)} (--background-images)")
    abs_paths = [_resolve(p, root, Path(split_file).parent if split_file else None).resolve() for p in rel]
    data = load_images(abs_paths, cfg.image_size, cfg.channels, cfg.resize_policy, labels=labels.tolist(), classes=classes)
    key = settings_key(sorted(zip(rel, (classes[i] for i in labels), test_mask.tolist())), cfg.image_size, cfg.channels, cfg.resize_policy)
    return BenchData(data, rel, np.flatnonzero(~test_mask), np.flatnonzero(test_mask), key, source, str(root))


def draw_train(bd: BenchData, k: int, seed: int, background_class: str = "", background_images: int = 0) -> np.ndarray:
    """Indices of seed's training images: k per class (nested across k; see the module docstring).

    With ``background_class``, k per defect class plus the defect-free class's pool images (all, or
    ``background_images`` of them).

    Example:
        >>> import torch
        >>> data = ImageSet(torch.zeros(8, 1, 8, 8), torch.tensor([0, 0, 0, 1, 1, 1, 0, 1]), ["a", "b"], list("abcdefgh"))
        >>> bd = BenchData(data, list("abcdefgh"), np.arange(6), np.array([6, 7]), "", "", "")
        >>> small, large = draw_train(bd, 1, 0), draw_train(bd, 2, 0)
        >>> len(small), len(large), set(small) <= set(large)
        (2, 4, True)
        >>> len(draw_train(bd, 1, 0, background_class="b"))  # 1 of class a, all 3 pool images of b
        4
    """
    labels = bd.data.labels.numpy()
    out = []
    for c, name in enumerate(bd.classes):
        pool_c = sorted(bd.pool[labels[bd.pool] == c].tolist(), key=lambda i: bd.rel_paths[i])
        take = k
        if name == background_class:
            take = background_images or len(pool_c)
        if take > len(pool_c):
            raise DataError(f"--per-class {take} is larger than the pool of class '{name}' ({len(pool_c)} images); lower --per-class")
        order = np.random.default_rng([seed, c]).permutation(len(pool_c))
        out += [pool_c[i] for i in order[:take]]
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
        raise TestLeakError(f"{len(leaked)} test image(s) were about to be used for {what}: {', '.join(leaked[:3])}; this is a bug in augvae bench: please report it with the command line")


