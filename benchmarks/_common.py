"""Helpers shared by the benchmark scripts: the environment record every JSON carries, and the ELPV scripts' data."""

from __future__ import annotations

import argparse
import platform
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any


def environment() -> dict[str, Any]:
    """Versions and machine facts to store next to every figure."""
    import numpy
    import torch

    import augvae

    return {
        "augvae": augvae.__version__,
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "processor": platform.processor(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def command_line() -> str:
    """The command that produced the result, to paste back into a shell."""
    return " ".join(shlex.quote(a) for a in [sys.executable.rsplit("/", 1)[-1], *sys.argv])


def add_elpv_arguments(p: argparse.ArgumentParser, split_help: str = "default: DATA/splits.csv") -> None:
    """The options every ELPV mask script takes: the data, its split, the defect-free VAE, the class, the image size."""
    p.add_argument("--data", default="../shared/datasets/elpv")
    p.add_argument("--split-file", default=None, help=split_help)
    p.add_argument("--vae", required=True, help="model folder of a VAE trained on the defect-free pool cells")
    p.add_argument("--background-class", default="ok", help="the defect-free class")
    p.add_argument("--image-size", type=int, default=64)


@dataclass
class Elpv:
    """The benchmark's images of ELPV: ``x`` (N, 1, S, S) float, ``y`` (N,) labels, the defect-free class index and the
    pool rows (a tensor); ``bd`` is the :class:`augvae.bench.split.BenchData` itself."""

    bd: Any
    x: Any
    y: Any
    ok: int
    pool: Any


def load_elpv(a: argparse.Namespace, split: str | Path | None) -> Elpv:
    """The data of :func:`add_elpv_arguments`'s options, split by ``split`` (None: a seeded random split)."""
    import torch

    from augvae.bench.config import BenchConfig
    from augvae.bench.split import prepare_data
    from augvae.errors import DataError

    cfg = BenchConfig(image_size=a.image_size, background_class=a.background_class, per_class=(1,))  # k: only checked here
    bd = prepare_data(a.data, cfg, split)
    if a.background_class not in bd.classes:
        raise DataError(f"no class {a.background_class!r} in {a.data} (classes: {', '.join(bd.classes)}); pass --background-class")
    return Elpv(bd, bd.data.images.float(), bd.data.labels, bd.classes.index(a.background_class), torch.as_tensor(bd.pool))
