"""Atomic file writes and output-folder locks.

Every file augvae writes goes through :func:`atomic_write` (or a helper built on it): the content is
written to a temporary name in the same folder, flushed, then renamed over the target, so a reader
sees the whole file or none of it, even if the process is killed mid-write.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from augvae.errors import OutputLockedError

__all__ = [
    "atomic_write",
    "write_bytes",
    "write_csv",
    "write_json",
    "write_text",
    "output_lock",
    "save_tensors",
]


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
    """Write ``obj`` as indented JSON to ``path`` atomically."""
    write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


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
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, (set, frozenset)):
        return sorted(obj)
    raise TypeError(f"object of type {type(obj).__name__} is not JSON serializable")


@contextlib.contextmanager
def output_lock(folder: str | os.PathLike[str]) -> Iterator[Path]:
    """Hold an exclusive lock on an output folder for the duration of a run.

    A second process that asks for the same folder gets :class:`OutputLockedError` at once instead
    of interleaving its files with the first one's. The lock is an ``fcntl`` lock on
    ``FOLDER/.augvae.lock``, released by the OS if the process dies, so a killed run never leaves a
    stale lock behind.

    Example:
        >>> import tempfile
        >>> with output_lock(tempfile.mkdtemp()) as folder:
        ...     folder.is_dir()
        True
    """
    root = Path(folder)
    root.mkdir(parents=True, exist_ok=True)
    lock_path = root / ".augvae.lock"
    f = open(lock_path, "a+")  # noqa: SIM115 - held for the whole block
    try:
        try:
            import fcntl

            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except ImportError:  # pragma: no cover - Windows: no advisory lock, best effort
            pass
        except OSError as err:
            raise OutputLockedError(
                f"output folder {root} is in use by another augvae process; wait for it to finish "
                "or choose another --out folder"
            ) from err
        # Temporary files of a writer that was killed mid-write: only the lock holder writes here.
        for stale in root.glob(".*.tmp"):
            with contextlib.suppress(OSError):
                stale.unlink()
        yield root
    finally:
        f.close()
