"""The public API: every name in ``augvae.__all__`` is what its module defines, whatever was imported first."""

from __future__ import annotations

import importlib


def test_every_public_name_is_the_object_its_module_defines() -> None:
    import augvae
    import augvae.overlay.engine  # noqa: F401 - importing a subpackage sets its name on the parent package

    for name in augvae.__all__:
        value = getattr(augvae, name)
        module = augvae._NAMES.get(name)
        if module is not None:
            assert value is getattr(importlib.import_module(module), name), name
    assert callable(augvae.overlay.overlay) and callable(augvae.transplant_onto)
