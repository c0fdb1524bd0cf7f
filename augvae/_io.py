"""Atomic file writes, whole-or-nothing output folders, and locks (``filelock``).

Every file augvae writes goes through :func:`atomic_write` (or a helper built on it): the content is
written to a temporary name in the same folder, flushed, then renamed over the target, so a reader
sees the whole file or none of it, even if the process is killed mid-write. Commands whose output
is a folder of many files (``generate``, ``inspect``) write it with :func:`output_folder`: into a
temporary folder beside the target, moved into place only when complete.

Operating-system failures of a write (permission denied, disk full, read-only file system, a file
where a folder should be) become :class:`~augvae.errors.OutputError`, one line naming the path and
the fix: see :func:`output_errors`.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import io
import json
import math
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from filelock import FileLock, Timeout

from augvae.errors import OutputError, OutputLockedError

__all__ = [
    "atomic_write",
    "write_bytes",
    "write_csv",
    "write_json",
    "write_text",
    "save_tensors",
    "output_lock",
    "blocking_lock",
    "try_lock",
    "output_errors",
    "check_output_folder",
    "output_folder",
    "OUTPUT_MARKER",
]

#: Every output folder augvae writes holds this small JSON file naming what wrote it.
OUTPUT_MARKER = ".augvae-output.json"


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike[str], mode: str = "w") -> Iterator[IO[Any]]:
    """Open a temporary file beside ``path``; on success rename it over ``path``.

    Args:
        path: The final file name. Its folder is created if needed.
        mode: ``"w"`` for text (UTF-8) or ``"wb"`` for bytes.

    Example:
        >>> import tempfile, pathlib
        >>> d = pathlib.Path(tempfile.mkdtemp())
        >>> with atomic_write(d / "a.txt") as f:
        ...     _ = f.write("hello")
        >>> (d / "a.txt").read_text()
        'hello'
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"mode must be 'w' or 'wb', got {mode!r}")
    target = Path(path)
    with output_errors(target):
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        try:
            with os.fdopen(fd, mode, **({"encoding": "utf-8", "newline": ""} if mode == "w" else {})) as f:
                yield f
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; give the usual permissions
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_write(path, "wb") as f:
        f.write(data)


def write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` to ``path`` atomically (UTF-8)."""
    with atomic_write(path, "w") as f:
        f.write(text)


def write_json(path: str | os.PathLike[str], obj: Any) -> None:
    """Write ``obj`` as indented, strict JSON to ``path`` atomically.

    A NaN or infinite number (an undefined statistic, a diverged loss) is written as ``null``: Python's
    bare ``NaN`` is not JSON, and other readers (jq, browsers, pandas' strict mode) refuse the file.
    """
    text = json.dumps(_finite(obj), indent=2, sort_keys=False, default=_json_default, allow_nan=False)
    write_text(path, text + "\n")


def _finite(obj: Any) -> Any:
    """``obj`` with every non-finite float replaced by None (containers copied, other values as they are)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def write_csv(
    path: str | os.PathLike[str], rows: Sequence[Mapping[str, Any]], fieldnames: Sequence[str] | None = None
) -> None:
    """Write a list of dict rows as CSV to ``path`` atomically."""
    buf = io.StringIO()
    names = list(fieldnames) if fieldnames is not None else (list(rows[0].keys()) if rows else [])
    writer = csv.DictWriter(buf, fieldnames=names, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow(row)
    write_text(path, buf.getvalue())


def save_tensors(path: str | os.PathLike[str], tensors: Mapping[str, Any], metadata: Mapping[str, str] | None = None) -> None:
    """Save a dict of tensors with safetensors, atomically."""
    from safetensors.torch import save

    data = save({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, metadata=dict(metadata or {}))
    write_bytes(path, data)


def _json_default(obj: Any) -> Any:
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "tolist"):  # tensors and numpy values
        return _finite(obj.tolist())
    if isinstance(obj, (set, frozenset)):
        return _finite(sorted(obj))
    raise TypeError(f"object of type {type(obj).__name__} is not JSON serializable")


# --------------------------------------------------------------------------------------------
# operating-system failures as one-line errors

_FIXES = {
    errno.ENOSPC: ("the disk is full", "free some space or choose another --out on a disk with room"),
    errno.EDQUOT: ("the disk quota is exceeded", "free some space or choose another --out"),
    errno.EACCES: ("permission denied", "choose an --out folder you can write to, or fix its permissions"),
    errno.EPERM: ("permission denied", "choose an --out folder you can write to, or fix its permissions"),
    errno.EROFS: ("the file system is read-only", "choose an --out folder on a writable disk"),
    errno.ENOTDIR: ("a part of the path is a file, not a folder", "choose an --out path whose parents are folders"),
    errno.EEXIST: ("a file of that name exists where a folder is needed", "remove it or choose another --out"),
    errno.EISDIR: ("a folder exists where a file is needed", "remove it or choose another path"),
    errno.ENAMETOOLONG: ("the path is too long", "choose a shorter --out path"),
}


@contextlib.contextmanager
def output_errors(path: str | os.PathLike[str]) -> Iterator[None]:
    """Turn an ``OSError`` raised while writing under ``path`` into :class:`OutputError` naming path and fix.

    Example:
        >>> import tempfile, pathlib
        >>> f = pathlib.Path(tempfile.mkdtemp()) / "file"
        >>> _ = f.write_text("x")
        >>> with output_errors(f / "out.txt"):
        ...     (f / "out.txt").write_text("y")
        Traceback (most recent call last):
        ...
        augvae.errors.OutputError: cannot write .../file/out.txt: a part of the path is a file, not a folder; choose an --out path whose parents are folders
    """
    try:
        yield
    except OutputError:
        raise
    except OSError as err:
        where = err.filename if err.filename is not None else path
        if err.errno in _FIXES:
            what, fix = _FIXES[err.errno]
            raise OutputError(f"cannot write {where}: {what}; {fix}") from err
        raise OutputError(f"input/output error on {where} ({err.strerror or type(err).__name__}); check the path and the disk") from err


# --------------------------------------------------------------------------------------------
# locks


def _lock_error(folder: Path) -> OutputLockedError:
    return OutputLockedError(
        f"output folder {folder} is in use by another augvae process; wait for it to finish or choose another --out folder"
    )


@contextlib.contextmanager
def output_lock(folder: str | os.PathLike[str]) -> Iterator[Path]:
    """Hold an exclusive lock on an output folder for the duration of a run.

    A second process that asks for the same folder gets :class:`OutputLockedError` at once instead
    of interleaving its files with the first one's. The lock (``filelock``, on
    ``FOLDER/.augvae.lock``) is released by the OS if the process dies, so a killed run never
    leaves a stale lock behind. The holder removes temporary files that a killed writer left.

    Example:
        >>> import tempfile
        >>> with output_lock(tempfile.mkdtemp()) as folder:
        ...     folder.is_dir()
        True
    """
    root = Path(folder)
    with output_errors(root):
        if root.exists() and not root.is_dir():
            raise OutputError(f"{root} is a file, not a folder; choose another --out path (a folder)")
        root.mkdir(parents=True, exist_ok=True)
        lock = FileLock(root / ".augvae.lock", timeout=0)
        try:
            lock.acquire()
        except Timeout:
            raise _lock_error(root) from None
    try:
        # Temporary files of a writer that was killed mid-write: only the lock holder writes here.
        for stale in root.glob(".*.tmp"):
            with contextlib.suppress(OSError):
                stale.unlink()
        yield root
    finally:
        lock.release()


@contextlib.contextmanager
def blocking_lock(path: str | os.PathLike[str]) -> Iterator[None]:
    """Hold an exclusive lock on the lock file ``path``, waiting for other processes that hold it."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with FileLock(path):
        yield


@contextlib.contextmanager
def try_lock(path: str | os.PathLike[str]) -> Iterator[bool]:
    """Try to lock ``path`` without waiting: yields True if this process got it, False if another holds it."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(path, timeout=0)
    try:
        lock.acquire()
    except Timeout:
        yield False
        return
    try:
        yield True
    finally:
        lock.release()


# --------------------------------------------------------------------------------------------
# whole-or-nothing output folders


def check_output_folder(path: str | os.PathLike[str], kind: str, own_files: Sequence[str] = (), flag: str = "--out") -> Path:
    """Refuse an output path that is a file, or a non-empty folder that augvae did not write.

    Args:
        path: The ``--out`` folder.
        kind: What writes it (``generate``, ``inspect``, ``model``...), for the marker and messages.
        own_files: File names that together identify an earlier output of this kind written before
            the marker existed: a folder without the marker is taken as augvae's only if it holds
            all of them (one ``index.html`` of the user's is not enough).
        flag: The option that named ``path``, for the messages.

    Raises:
        OutputError: ``path`` is a file, holds files of someone else, or holds an augvae output
            of another kind (a ``generate`` folder given to ``inspect``).
    """
    root = Path(path)
    if root.exists() and not root.is_dir():
        raise OutputError(f"{flag} {root} is a file, not a folder; choose another {flag} path (a folder)")
    if not root.is_dir():
        return root
    names = {p.name for p in root.iterdir() if p.name != ".augvae.lock"}
    if not names:
        return root
    if OUTPUT_MARKER in names:
        theirs = _marker_kind(root / OUTPUT_MARKER)
        if theirs == kind:
            return root
        raise OutputError(
            f"{flag} {root} holds an augvae {theirs or 'output of unknown kind'} folder, not a {kind} one; augvae would "
            f"replace it: choose a new or empty {flag} folder"
        )
    if own_files and set(own_files) <= names:
        return root
    if {"config.json", "model.safetensors"} <= names:  # a model folder (written without a marker): name it as one
        raise OutputError(f"{flag} {root} is an augvae model folder, not a {kind} one; augvae would replace it: choose a new or "
                          f"empty {flag} folder")
    shown = ", ".join(sorted(names)[:3]) + (" ..." if len(names) > 3 else "")
    raise OutputError(
        f"{flag} {root} is a non-empty folder that augvae did not write ({shown}); augvae would replace its contents: "
        f"choose a new or empty {flag} folder"
    )


def _marker_kind(marker: Path) -> str | None:
    """The ``kind`` an output marker names, or None if it cannot be read."""
    try:
        kind = json.loads(marker.read_text()).get("kind")
    except (OSError, ValueError, AttributeError):
        return None
    return kind if isinstance(kind, str) else None


@contextlib.contextmanager
def output_folder(path: str | os.PathLike[str], kind: str, own_files: Sequence[str] = (), flag: str = "--out") -> Iterator[Path]:
    """Write an output folder whole or not at all.

    Yields a temporary folder beside ``path``; when the block finishes without error, the finished
    folder replaces ``path`` (an earlier output of the same kind is removed only then). On any
    error, including ``KeyboardInterrupt``, the temporary folder is removed and ``path`` is left as
    it was. A lock beside the target keeps two processes from writing it at once.

    Example:
        >>> import tempfile, pathlib
        >>> out = pathlib.Path(tempfile.mkdtemp()) / "figures"
        >>> with output_folder(out, "inspect") as tmp:
        ...     _ = (tmp / "a.txt").write_text("x")
        >>> sorted(p.name for p in out.iterdir())
        ['.augvae-output.json', 'a.txt']
    """
    root = check_output_folder(path, kind, own_files, flag)
    with output_errors(root):
        root.parent.mkdir(parents=True, exist_ok=True)
        lock = FileLock(root.parent / f".{root.name}.augvae.lock", timeout=0)
        try:
            lock.acquire()
        except Timeout:
            raise _lock_error(root) from None
    try:
        with output_errors(root):
            _recover(root)
            for stale in root.parent.glob(f".{root.name}.partial-*"):  # left by a killed writer
                shutil.rmtree(stale, ignore_errors=True)
            tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.partial-", dir=root.parent))
            os.chmod(tmp, 0o777 & ~_umask())
        try:
            with output_errors(root):
                yield tmp
                write_json(tmp / OUTPUT_MARKER, {"written_by": "augvae", "kind": kind})
                old = None
                if root.exists():
                    old = root.parent / f".{root.name}.old-{os.getpid()}"
                    os.replace(root, old)
                try:
                    os.replace(tmp, root)
                except BaseException:
                    if old is not None:  # put the earlier output back where it was
                        os.replace(old, root)
                    raise
                if old is not None:
                    shutil.rmtree(old, ignore_errors=True)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    finally:
        # The lock file stays: unlinking it after release would let two later processes lock two different files.
        lock.release()


def _recover(root: Path) -> None:
    """Undo a swap that a killed writer left half-done: ``root`` moved aside, the new output not yet in place.

    The earlier output (``.NAME.old-PID``) is put back, so the folder is as it was before that run; old copies
    left beside a complete ``root`` are removed.
    """
    olds = sorted(root.parent.glob(f".{root.name}.old-*"), key=lambda p: p.stat().st_mtime)
    if olds and not root.exists():
        os.replace(olds.pop(), root)
    for stale in olds:
        shutil.rmtree(stale, ignore_errors=True)
