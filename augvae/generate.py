"""``augvae generate``: write images from a trained model, with a manifest of what each one is.

Example:
    >>> import tempfile, torch
    >>> from augvae import ConvVAE
    >>> from augvae.config import GenerateConfig
    >>> d = tempfile.mkdtemp()
    >>> ConvVAE().save(d)
    >>> out = generate(d, d + "/out", GenerateConfig(mode="prior", n=3), progress=False)
    >>> out.count
    3
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from augvae._io import output_lock, write_csv, write_json
from augvae.checkpoint import LoadedModel, load_latents, load_model
from augvae.config import GenerateConfig, config_to_dict
from augvae.errors import ConfigError
from augvae.figures import mosaic, save_png, to_uint8

__all__ = ["generate", "GenerateOutput", "model_sources"]


@dataclass
class GenerateOutput:
    """Where ``generate`` wrote its images."""

    folder: Path
    manifest: Path
    count: int


@dataclass
class Sources:
    """The training images' latents as overlay sources."""

    mu: Tensor
    logvar: Tensor
    names: list[str]
    classes: list[str]  #: class name of each source
    background: int | None


def model_sources(loaded: LoadedModel) -> Sources:
    """The overlay sources stored with a model (the latents of its training images)."""
    lat = load_latents(loaded.path)
    if lat is None:
        raise ConfigError(
            f"{loaded.path} has no stored latents (latents.safetensors), so it has no overlay sources; "
            "it was not trained to the end: finish it with `augvae train ... --resume`"
        )
    data = loaded.data
    class_names = list(data.get("classes") or [])
    labels = lat["labels"].tolist()
    names = list(data.get("names") or [str(i) for i in range(len(labels))])
    classes = [class_names[i] if i < len(class_names) else str(i) for i in labels]
    return Sources(lat["mu"], lat["logvar"], names, classes, data.get("background"))


def generate(model_dir: str | os.PathLike[str], out_dir: str | os.PathLike[str], cfg: GenerateConfig, progress: bool = True) -> GenerateOutput:
    """Generate images per ``cfg`` and write ``OUT/images/*.png``, ``manifest.csv``, ``mosaic.png`` and ``generate.json``."""
    from augvae.latent import traverse_grid
    from augvae.overlay import random_overlays

    loaded = load_model(model_dir)
    model = loaded.model
    gen = torch.Generator().manual_seed(cfg.seed)
    rows: list[dict[str, object]]
    if cfg.mode == "overlay":
        src = model_sources(loaded)
        images, records = random_overlays(model, src.mu, src.logvar, src.names, src.classes, cfg.n, cfg.k, cfg.formulation,
                                          src.background, cfg.scale, cfg.same_class, gen)
        rows = [r.row() for r in records]
        cols = min(8, cfg.n)
    elif cfg.mode == "prior":
        z = torch.randn(cfg.n, model.config.latent_dim, generator=gen)
        images = model.decode_batched(z)
        rows = [{"index": i, **{f"z_{d}": round(float(v), 5) for d, v in enumerate(z[i])}} for i in range(cfg.n)]
        cols = min(8, cfg.n)
    elif cfg.mode == "grid":
        data_mu = model_sources(loaded).mu if cfg.plane == "pca" else None
        grid = traverse_grid(model, tuple(cfg.x_range), tuple(cfg.y_range), cfg.step, cfg.max_side, cfg.plane, data_mu=data_mu)
        images = grid.images
        rows = [{"index": r * len(grid.xs) + c, "row": r, "col": c, "x": round(x, 5), "y": round(y, 5)}
                for r, y in enumerate(grid.ys) for c, x in enumerate(grid.xs)]
        cols = len(grid.xs)
    else:  # interpolate between two random distinct sources, from their stored means
        src = model_sources(loaded)
        if src.mu.shape[0] < 2:
            raise ConfigError("interpolation needs a model trained on at least 2 images")
        a, b = torch.randperm(src.mu.shape[0], generator=gen)[:2].tolist()
        t = torch.linspace(0, 1, cfg.steps)[:, None]
        images = model.decode_batched((1 - t) * src.mu[a] + t * src.mu[b])
        rows = [{"index": i, "t": round(float(t[i]), 4), "from": src.names[a], "to": src.names[b]} for i in range(cfg.steps)]
        cols = cfg.steps
    out = Path(out_dir)
    with output_lock(out):
        arr = to_uint8(images)
        for i, row in enumerate(rows):
            name = f"{cfg.mode}_{i:05d}.png"
            save_png(arr[i], out / "images" / name)
            row["file"] = f"images/{name}"
        write_csv(out / "manifest.csv", rows)
        save_png(mosaic(images[: 64 if cfg.mode != "grid" else len(images)], cols), out / "mosaic.png")
        write_json(out / "generate.json", {"model_dir": str(model_dir), "config": config_to_dict(cfg), "count": len(rows)})
    return GenerateOutput(out / "images", out / "manifest.csv", len(rows))
