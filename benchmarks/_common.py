"""Helpers shared by the benchmark scripts: the environment record every JSON carries."""

from __future__ import annotations

import platform
import shlex
import sys
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
