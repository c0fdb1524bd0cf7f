"""Lazy attributes for package ``__init__`` modules: names resolve to their module on first use.

Every package of augvae exposes its public names this way, so ``import augvae`` (or
``augvae.data``, ``augvae.bench``, ...) imports nothing heavy until a name is asked for.

Example:
    >>> getattr_, dir_ = lazy_attributes("demo", {"sqrt": "math"}, ["sqrt"], {})
    >>> getattr_("sqrt")(9.0)
    3.0
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

__all__ = ["lazy_attributes"]


def lazy_attributes(package: str, names: Mapping[str, str], public: Sequence[str],
                    namespace: dict[str, Any]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """Module-level ``__getattr__`` and ``__dir__`` for ``package``.

    Args:
        package: The package's name, for error messages.
        names: Public name -> the module that defines it.
        public: The package's ``__all__``.
        namespace: The package's ``globals()``: a resolved name is stored there, so the lookup runs once.
    """

    def __getattr__(name: str) -> Any:
        if name in names:
            value = getattr(importlib.import_module(names[name]), name)
            namespace[name] = value
            return value
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return sorted(public)

    return __getattr__, __dir__
