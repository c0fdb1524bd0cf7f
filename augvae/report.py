"""``augvae inspect``: every figure of a trained model, and an index page a person can open.

Writes, into OUT_DIR: ``latent_scatter.png`` + ``latent_points.csv`` (paper Fig. 2: the images of
DATA_DIR), ``sources.png`` (the model's own sources, each named, with its posterior cloud),
``defects.png`` (models that store defects: each defect's image, projection, residual and
mask), ``grid.png`` (Fig. 3), ``reconstructions.png``, ``interpolation.png``, ``overlays.png`` +
``overlays.csv`` (Fig. 5), ``stats.json`` and ``index.md`` / ``index.html``. The folder appears
whole or not at all.
"""

from __future__ import annotations

import html
import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch

from augvae._io import check_output_folder, output_folder, write_csv, write_json, write_text
from augvae.data.images import load_folder
from augvae.figures import plot_defects, plot_latent_scatter, save_mosaic
from augvae.latent import encode, interpolate, traverse_grid
from augvae.metrics import cluster_separation
from augvae.model import load_model
from augvae.overlay.engine import DEFAULT_FORMULATION, random_overlays
from augvae.overlay.sources import model_sources

__all__ = ["inspect_model"]


_OWN_FILES = ("index.html", "stats.json")  # what identifies an inspect folder written before the output marker


def inspect_model(model_dir: str | os.PathLike[str], data_dir: str | os.PathLike[str], out_dir: str | os.PathLike[str],
                  seed: int = 0, progress: bool = True, resize_policy: str | None = None) -> Path:
    """Write the figures of ``model_dir`` on the images of ``data_dir``; returns the index page's path."""
    check_output_folder(out_dir, "inspect", own_files=_OWN_FILES)  # before the model and the images are read
    loaded = load_model(model_dir)
    model, mcfg = loaded.model, loaded.model.config
    policy = resize_policy or (loaded.train_config.resize_policy if loaded.train_config else "resize")
    data = load_folder(data_dir, mcfg.image_size, mcfg.channels, policy, progress=progress)
    out = Path(out_dir)
    figures: list[tuple[str, str]] = []
    stats: dict[str, Any] = {"model_dir": str(model_dir), "data_dir": str(data_dir), "images": len(data)}
    stored = model_sources(loaded) if (loaded.path / "latents.safetensors").exists() else None
    with output_folder(out, "inspect", own_files=_OWN_FILES) as tmp:
        lat = encode(model, data)
        plot_latent_scatter(lat.mu, lat.label_names(), tmp / "latent_scatter.png", title=f"latent means of {len(data)} images")
        write_csv(tmp / "latent_points.csv", lat.rows())
        figures.append(("latent_scatter.png", "Latent means of DATA_DIR's images coloured by class (paper Figure 2); points in "
                                              "latent_points.csv"))
        if stored is not None:
            plot_latent_scatter(stored.mu, stored.classes, tmp / "sources.png", logvar=stored.logvar, names=stored.names,
                                title=f"the model's {len(stored.names)} sources and their posterior clouds (2 sd)")
            figures.append(("sources.png", "The model's overlay sources: latent means named (up to 40) with their posterior "
                                           "clouds (two standard deviations): overlapping clouds mean sources the model confuses"))
        if stored is not None and stored.defects is not None and stored.defect_sources:
            rows = stored.defect_sources
            plot_defects(stored.defects, [stored.names[i] for i in rows], [stored.classes[i] for i in rows], tmp / "defects.png")
            mask = stored.defects["mask"]
            stats["defect_mask_area"] = {"mean": float(mask.mean()), "min": float(mask.flatten(1).mean(1).min()),
                                         "max": float(mask.flatten(1).mean(1).max())}
            figures.append(("defects.png", "Each defect source (first 12): the image, its projection onto the defect-free surface "
                                           "D(E(x)), the residual x - D(E(x)) (grey is 0) and the soft mask a transplant uses"))

        with torch.no_grad():
            recon = model.decode(lat.mu[:16])
        n = recon.shape[0]
        save_mosaic(torch.cat([data.images[:n], recon]), tmp / "reconstructions.png", cols=n)
        figures.append(("reconstructions.png", "Top: input images; bottom: their reconstructions from the latent mean"))
        mse = ((model.decode_batched(lat.mu) - data.images) ** 2).flatten(1).mean(1)
        stats["reconstruction_mse_mean"] = float(mse.mean())
        stats["reconstruction_mse_per_class"] = {c: float(mse[data.labels == i].mean()) for i, c in enumerate(data.classes)
                                                 if (data.labels == i).any()}
        stats["latent_mean_mu"] = lat.mu.mean(0).tolist()
        stats["latent_std_mu"] = lat.mu.std(0).tolist() if len(lat) > 1 else None
        stats["separation_by_class"] = cluster_separation(lat.mu, lat.logvar, lat.labels)

        if mcfg.latent_dim >= 2:
            plane = "dims" if mcfg.latent_dim == 2 or len(lat) < 2 else "pca"
            grid = traverse_grid(model, plane=plane, data_mu=lat.mu if plane == "pca" else None)
            save_mosaic(grid.images, tmp / "grid.png", cols=len(grid.xs))
            figures.append(("grid.png", f"Decoded latent grid over [-15, 15] x [-10, 10] ({plane} plane), shown every "
                                        f"{grid.step[0]:.1f} x {grid.step[1]:.1f} of {grid.requested_cells} points at step 0.1 "
                                        "(paper Figure 3)"))

        if len(data) >= 2:
            a, b = 0, len(data) - 1
            path = interpolate(model, data.images[a], data.images[b], steps=10)
            save_mosaic(path, tmp / "interpolation.png", cols=10)
            figures.append(("interpolation.png", f"Straight latent path from {Path(data.paths[a]).name} to {Path(data.paths[b]).name}"))

        drawable = 0 if stored is None else len(stored.names) - (stored.background is not None)
        if stored is not None and drawable >= 2:
            imgs, recs = random_overlays(model, stored.mu, stored.logvar, stored.names, stored.classes, n=16, k=2,
                                         formulation=DEFAULT_FORMULATION, background=stored.background,
                                         generator=torch.Generator().manual_seed(seed))
            save_mosaic(imgs, tmp / "overlays.png", cols=8)
            write_csv(tmp / "overlays.csv", [r.row() for r in recs])
            figures.append(("overlays.png", f"Random overlays of 2 training sources ({DEFAULT_FORMULATION} formulation; which "
                                            "ones in overlays.csv) (paper Figure 5)"))
            stats["separation_of_sources"] = cluster_separation(stored.mu, stored.logvar)

        if (loaded.path / "loss.png").exists():
            shutil.copyfile(loaded.path / "loss.png", tmp / "loss.png")
            figures.append(("loss.png", "Training loss, reconstruction and KL per epoch"))
        write_json(tmp / "stats.json", stats)
        md = [f"# augvae inspect: {model_dir}", "", f"Model: {mcfg}", "",
              f"Data: {data_dir} ({len(data)} images, classes {', '.join(data.classes)})", ""]
        md += [f"## {name}\n\n{caption}\n\n![{name}]({name})\n" for name, caption in figures]
        md += ["## Statistics", "", "```json", json.dumps(stats, indent=2), "```", ""]
        write_text(tmp / "index.md", "\n".join(md))
        body = "".join(f"<h2>{html.escape(n)}</h2><p>{html.escape(c)}</p><img src='{html.escape(n)}' style='max-width:100%'>"
                       for n, c in figures)
        write_text(tmp / "index.html", "<!doctype html><meta charset='utf-8'><title>augvae inspect</title>"
                                       f"<h1>augvae inspect: {html.escape(str(model_dir))}</h1>"
                                       f"<pre>{html.escape(json.dumps(stats, indent=2))}</pre>{body}")
    return out / "index.html"
