"""``augvae generate``: write images from a trained model, with a manifest of what each one is.

Modes: ``overlay`` (fresh overlays of the model's sources, paper Figure 5), ``transplant`` (the
model's real defects put onto real defect-free images from ``--backgrounds``), ``grid`` (Figure
3), ``prior`` (samples of N(0, I)) and ``interpolate``. Images are made and written in batches,
with a progress bar, into a temporary folder that replaces ``OUT`` only when every file is written
(an interrupted or failed run leaves ``OUT`` as it was).

Example:
    >>> import tempfile
    >>> from augvae import ConvVAE
    >>> from augvae.config import GenerateConfig
    >>> d = tempfile.mkdtemp()
    >>> ConvVAE().save_pretrained(d)
    >>> out = generate(d, d + "/out", GenerateConfig(mode="prior", n=3), progress=False)
    >>> out.count
    3
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from tqdm.auto import tqdm

from augvae._io import check_output_folder, output_folder, write_csv, write_json
from augvae.config import GenerateConfig, config_to_dict
from augvae.data.images import load_folder
from augvae.errors import ConfigError
from augvae.figures import mosaic, save_png, to_uint8
from augvae.latent import traverse_grid
from augvae.model import load_model
from augvae.overlay.engine import random_overlays, transplant_onto
from augvae.overlay.policy import OverlayOptions
from augvae.overlay.sources import load_sources, model_sources

__all__ = ["generate", "GenerateOutput"]

_BATCH = 256  # images made and written at a time: memory stays bounded whatever --n is
_OWN_FILES = ("manifest.csv", "generate.json")  # what identifies a generate folder written before the output marker


@dataclass
class GenerateOutput:
    """Where ``generate`` wrote its images."""

    folder: Path
    manifest: Path
    count: int


def _batches(cfg: GenerateConfig, model_dir: str | os.PathLike[str]) -> tuple[int, int, Iterator[tuple[Tensor, list[dict[str, Any]]]]]:
    """``(count, mosaic columns, batches of (images, manifest rows))`` for ``cfg.mode``."""
    loaded = load_model(model_dir)
    model = loaded.model
    gen = torch.Generator().manual_seed(cfg.seed)
    if cfg.mode == "overlay":
        src = model_sources(loaded)

        def overlays() -> Iterator[tuple[Tensor, list[dict[str, Any]]]]:
            for start in range(0, cfg.n, _BATCH):
                images, records = random_overlays(model, src.mu, src.logvar, src.names, src.classes, min(_BATCH, cfg.n - start),
                                                  cfg.k, cfg.formulation, src.background, cfg.scale, cfg.same_class, gen)
                yield images, [{**r.row(), "index": start + i} for i, r in enumerate(records)]

        return cfg.n, min(8, cfg.n), overlays()
    if cfg.mode == "transplant":

        sources = load_sources(model_dir)
        # k defects of one class (the image gets that class), or of any classes (a soft label).
        opts = OverlayOptions(policy="onto-background" if cfg.same_class else "soft", formulation="transplant", k=cfg.k,
                              blend=cfg.blend, translate=cfg.translate, rotate=cfg.rotate)
        resize_policy = loaded.train_config.resize_policy if loaded.train_config else "resize"
        bg = load_folder(cfg.backgrounds, model.config.image_size, model.config.channels, resize_policy)
        names = [Path(p).name for p in bg.paths]

        def transplants() -> Iterator[tuple[Tensor, list[dict[str, Any]]]]:
            for start in range(0, cfg.n, _BATCH):
                idx = torch.arange(start, min(cfg.n, start + _BATCH)) % len(bg)
                images, labels, records = transplant_onto(sources, bg.images[idx], [names[i] for i in idx.tolist()], opts, gen)
                rows = []
                for i, r in enumerate(records):
                    parts = {c: v for c, v in zip(sources.classes, labels[i].tolist()) if v > 0} if labels.ndim == 2 else {}
                    label = sources.classes[int(labels[i])] if labels.ndim == 1 else (
                        next(iter(parts)) if len(parts) == 1 else "+".join(f"{c}:{v:.2f}" for c, v in parts.items()))
                    rows.append({**r.row(), "index": start + i, "label": label})
                yield images, rows

        return cfg.n, min(8, cfg.n), transplants()
    if cfg.mode == "prior":
        def prior() -> Iterator[tuple[Tensor, list[dict[str, Any]]]]:
            for start in range(0, cfg.n, _BATCH):
                z = torch.randn(min(_BATCH, cfg.n - start), model.config.latent_dim, generator=gen)
                yield model.decode_batched(z), [{"index": start + i, **{f"z_{d}": round(float(v), 5) for d, v in enumerate(z[i])}}
                                                for i in range(z.shape[0])]

        return cfg.n, min(8, cfg.n), prior()
    if cfg.mode == "grid":
        data_mu = model_sources(loaded).mu if cfg.plane == "pca" else None
        grid = traverse_grid(model, tuple(cfg.x_range), tuple(cfg.y_range), cfg.step, cfg.max_side, cfg.plane, data_mu=data_mu)  # type: ignore[arg-type]
        rows = [{"index": r * len(grid.xs) + c, "row": r, "col": c, "x": round(x, 5), "y": round(y, 5)}
                for r, y in enumerate(grid.ys) for c, x in enumerate(grid.xs)]
        return len(rows), len(grid.xs), iter([(grid.images, rows)])
    # interpolate between two random distinct sources, from their stored means
    src = model_sources(loaded)
    if src.mu.shape[0] < 2:
        raise ConfigError("interpolation needs a model trained on at least 2 images")
    a, b = torch.randperm(src.mu.shape[0], generator=gen)[:2].tolist()
    t = torch.linspace(0, 1, cfg.steps)[:, None]
    images = model.decode_batched((1 - t) * src.mu[a] + t * src.mu[b])
    rows = [{"index": i, "t": round(float(t[i]), 4), "from": src.names[a], "to": src.names[b]} for i in range(cfg.steps)]
    return cfg.steps, cfg.steps, iter([(images, rows)])


def generate(model_dir: str | os.PathLike[str], out_dir: str | os.PathLike[str], cfg: GenerateConfig, progress: bool = True) -> GenerateOutput:
    """Generate images per ``cfg``: ``OUT/images/*.png``, ``manifest.csv``, ``mosaic.png`` and ``generate.json``.

    Raises:
        OutputError: ``out_dir`` is a file, holds someone else's files, or cannot be written.
    """
    out = Path(out_dir)
    check_output_folder(out, "generate", own_files=_OWN_FILES)  # before any image is read
    count, cols, batches = _batches(cfg, model_dir)
    with output_folder(out, "generate", own_files=_OWN_FILES) as tmp:
        all_rows: list[dict[str, Any]] = []
        first: list[Tensor] = []
        bar = tqdm(total=count, desc=f"generate {cfg.mode}", unit="img", disable=not progress)
        for images, rows in batches:
            arr = to_uint8(images)
            for i, row in enumerate(rows):
                name = f"{cfg.mode}_{int(row['index']):05d}.png"
                save_png(arr[i], tmp / "images" / name)
                row["file"] = f"images/{name}"
            all_rows += rows
            if sum(len(f) for f in first) < (64 if cfg.mode not in ("grid",) else count):
                first.append(images)
            bar.update(len(rows))
        bar.close()
        shown = torch.cat(first)[: 64 if cfg.mode != "grid" else count]
        write_csv(tmp / "manifest.csv", all_rows, list(dict.fromkeys(k for r in all_rows for k in r)))
        save_png(mosaic(shown, cols), tmp / "mosaic.png")
        write_json(tmp / "generate.json", {"model_dir": str(model_dir), "config": config_to_dict(cfg), "count": len(all_rows)})
    return GenerateOutput(out / "images", out / "manifest.csv", len(all_rows))
