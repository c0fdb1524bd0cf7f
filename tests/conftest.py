"""Shared fixtures: tiny images and tiny trained models, made once per session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from hypothesis import settings

torch.set_num_threads(2)

# CI must be reproducible: the same examples on every run (HYPOTHESIS_PROFILE=explore searches anew).
settings.register_profile("ci", derandomize=True, database=None)
settings.register_profile("explore", derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
NEU = SHARED / "datasets" / "neu_det"


@pytest.fixture(scope="module")
def one_thread() -> object:
    """Per-image overlays are tiny: one thread avoids OpenMP contention on a loaded 2-core machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def synthetic_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small synthetic class-folder dataset (4 classes x 6 images, 32 px)."""
    from augvae.data.synthetic import write_dataset

    return write_dataset(tmp_path_factory.mktemp("synthetic"), n_per_class=6, size=32, seed=0)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory, synthetic_folder: Path) -> Path:
    """A complete model folder trained for 2 epochs on the synthetic folder at 28 px, latent 4."""
    from augvae.config import ModelConfig, recipe_config
    from augvae.data.images import load_folder
    from augvae.training import train

    data = load_folder(synthetic_folder, image_size=28)
    out = tmp_path_factory.mktemp("models") / "tiny"
    train(data, ModelConfig(image_size=28, latent_dim=4), recipe_config("small-set", epochs=2, batch_size=8, seed=0),
          out_dir=out, progress=False)
    return out
