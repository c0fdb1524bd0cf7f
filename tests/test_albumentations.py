"""The albumentations transform under both libraries that install the ``albumentations`` import.

albumentations 2.0.x samples through ``get_params_dependent_on_data``; AlbumentationsX (2.5.1 tested) through
``sample_parameters`` and refuses (TypeError at class creation) any class that defines the old hook.
:mod:`augvae.albumentations` picks one at import; the tests here check that pick under whichever
library is installed, and the last one runs only under AlbumentationsX.

AlbumentationsX is AGPL and no dependency of augvae. To repeat the check without changing your
environment, install it into a side folder that shadows the installed albumentations, then run the
albumentations tests with that folder first on the path (numpy, scipy, pydantic, pyyaml and OpenCV
come from your environment; AlbumentationsX 2.5.1 pins albucore 0.2.21)::

    pip install --target /tmp/axenv --no-deps albumentationsx==2.5.1 albucore==0.2.21 "numkong>=7.8"
    PYTHONPATH=/tmp/axenv python -m pytest tests/test_albumentations.py tests/test_transforms.py \
        tests/test_fuzz.py augvae/albumentations.py -k "albu or VAEOverlay"
"""

from __future__ import annotations

import json
from importlib import metadata
from pathlib import Path

import albumentations as A
import numpy as np
import pytest

from augvae.albumentations import LABEL_KEY, VAEOverlay
from augvae.testing import example_model_folder

pytestmark = pytest.mark.usefixtures("one_thread")


def _albumentations_distribution() -> str | None:
    """The installed distribution that provides the imported ``albumentations`` module, if known."""
    init = Path(A.__file__).resolve()
    for name in ("albumentationsx", "albumentations"):
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        if Path(str(dist.locate_file("albumentations/__init__.py"))).resolve() == init:
            return name
    return None


IS_ALBUMENTATIONSX = _albumentations_distribution() == "albumentationsx"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return example_model_folder(tmp_path_factory.mktemp("m") / "gray", classes=("crack", "pore", "clean"), per_class=2)


def test_albu_defines_exactly_the_sampling_hook_of_the_installed_library() -> None:
    new_api = hasattr(A.BasicTransform, "sample_parameters")
    assert ("sample_parameters" in VAEOverlay.__dict__) is new_api
    assert ("get_params_dependent_on_data" in VAEOverlay.__dict__) is not new_api


@pytest.mark.skipif(not IS_ALBUMENTATIONSX, reason="the imported albumentations is not AlbumentationsX (see module doc)")
def test_albu_under_albumentationsx(model_dir: Path) -> None:
    img = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)

    def pipe(seed: int) -> A.Compose:
        return A.Compose([A.HorizontalFlip(p=0.5), VAEOverlay(model_dir, p=0.7, policy="onto-background"),
                          A.RandomBrightnessContrast(p=0.5)], seed=seed, strict=True)

    a, b = pipe(5), pipe(5)
    outs = [(a(image=img, label=2), b(image=img, label=2)) for _ in range(6)]
    assert all(np.array_equal(x["image"], y["image"]) and x[LABEL_KEY] == y[LABEL_KEY] for x, y in outs)
    assert all(x["image"].shape == img.shape and x["image"].dtype == img.dtype for x, _ in outs)
    assert {x[LABEL_KEY] for x, _ in outs} <= {0, 1, 2}
    soft = VAEOverlay(model_dir, p=1.0, policy="soft")(image=img, label=np.eye(3, dtype=np.float32)[2])[LABEL_KEY]
    assert soft.dtype == np.float32 and soft.shape == (3,) and abs(float(soft.sum()) - 1.0) < 1e-5
    d = A.to_dict(pipe(5))
    json.dumps(d)
    assert A.to_dict(A.from_dict(d)) == d
