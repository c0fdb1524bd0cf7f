"""``augvae demo``: the paper's flow on the built-in synthetic defects, in a few minutes on a CPU.

1. Make the data: one defect-free surface and the same surface with two cracks and a pore, each
   with a pixel mask of its defect (:func:`augvae.data.synthetic.write_overlay_sources`).
2. Train the ``overlay`` recipe on the three defects plus the defect-free surface (the reference of
   the background-relative formulations).
3. Write the figures (``augvae inspect``), overlay images with a manifest (``augvae generate``)
   and a table of how much of each defect every overlay formulation keeps.
4. The setting augvae is for: a few defect images per class and many defect-free surfaces. A VAE
   learns the defect-free surfaces; each defect's residual against its projection is transplanted
   onto other defect-free surfaces, and a classifier trained on original, classically augmented
   and transplant-extended sets is compared (:mod:`augvae.bench.quick`).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import torch

from augvae._io import OUTPUT_MARKER, check_output_folder, output_errors, write_csv, write_json
from augvae.config import GenerateConfig, ModelConfig, config_to_dict, recipe_config
from augvae.data.images import ImageSet, load_images, read_image
from augvae.data.synthetic import write_overlay_sources
from augvae.generate import generate
from augvae.metrics import evaluate_formulations
from augvae.report import inspect_model
from augvae.training import train

__all__ = ["DemoConfig", "run_demo"]

log = logging.getLogger("augvae")


@dataclass(frozen=True)
class DemoConfig:
    """Settings of the demo (``quick`` shrinks them to seconds, for smoke tests)."""

    image_size: int = 64
    latent_dim: int = 8
    activation: str = "leaky_relu"  # the paper's ReLU dies on near-identical sources (README, "Posterior collapse")
    beta: float = 1.0
    copies: int = 500
    epochs: int = 20
    kl_warmup_epochs: int = 2
    seed: int = 0
    bench_seeds: int = 3


QUICK = DemoConfig(image_size=32, latent_dim=4, copies=20, epochs=2, kl_warmup_epochs=1, bench_seeds=1)


def run_demo(out_dir: str | os.PathLike[str] = "augvae-demo", quick: bool = False, bench: bool = True, progress: bool = True,
             config: DemoConfig | None = None) -> dict[str, object]:
    """Run the demo and print where its outputs are; returns a summary dict (also ``summary.json``)."""

    cfg = config or (QUICK if quick else DemoConfig())
    # The demo writes several outputs into one folder and resumes an interrupted run, so the folder is claimed first: a
    # new or empty folder, or an earlier demo's (marked), never a folder of the user's that it would write into.
    out = check_output_folder(out_dir, "demo", own_files=("summary.json", "formulations.csv"))
    with output_errors(out):
        out.mkdir(parents=True, exist_ok=True)
        write_json(out / OUTPUT_MARKER, {"written_by": "augvae", "kind": "demo"})
    say = print if progress else (lambda *a, **k: None)
    say(f"augvae demo -> {out}")
    images_dir = write_overlay_sources(out / "data", size=cfg.image_size, seed=cfg.seed)
    names = ["crack1", "crack2", "pore", "background"]
    paths = [images_dir / f"{n}.png" for n in names]
    data = load_images(paths, cfg.image_size, 1, labels=list(range(4)), classes=names)
    data = ImageSet(data.images, torch.arange(4), names, [str(p) for p in paths])
    say(f"1. data: two cracks, a pore and the defect-free surface ({cfg.image_size}x{cfg.image_size}) in {images_dir}")

    mcfg = ModelConfig(image_size=cfg.image_size, latent_dim=cfg.latent_dim, beta=cfg.beta, activation=cfg.activation)
    tcfg = recipe_config("overlay", copies=cfg.copies, epochs=cfg.epochs, seed=cfg.seed, kl_warmup_epochs=cfg.kl_warmup_epochs)
    model_dir = out / "model"
    say(f"2. training the overlay recipe: {cfg.copies} copies x 4 sources, {cfg.epochs} epochs, batch 10, latent {cfg.latent_dim}")
    result = train(data, mcfg, tcfg, out_dir=model_dir, resume=True, progress=progress, background=3)


    masks = torch.stack([torch.from_numpy(read_image(images_dir.parent / "masks" / f"{n}.png")[..., 0] > 0.5) for n in names])
    rows = evaluate_formulations(result.model, data.images, masks, background=3)
    table_rows = [{k: (round(v, 3) if isinstance(v, float) else v) for k, v in r.items() if k != "per_source"} for r in rows]
    for r in table_rows:
        r["combo"] = "+".join(names[int(i)] for i in str(r["combo"]).split("+"))
    write_csv(out / "formulations.csv", table_rows)
    say("3. what each overlay formulation keeps (share of each defect's pixels present; worst source of the combination):")
    say(_markdown(table_rows, ["combo", "formulation", "retention_min", "retention_mean", "background_mae"]))

    fig_index = inspect_model(model_dir, images_dir, out / "figures", seed=cfg.seed, progress=False)
    gen = generate(model_dir, out / "overlays", GenerateConfig(mode="overlay", n=16, k=2, seed=cfg.seed), progress=False)
    say(f"4. figures: {fig_index}\n   overlays: {gen.folder} (what each combines: {gen.manifest})")

    summary: dict[str, object] = {
        "config": config_to_dict(cfg), "active_units": result.active_units, "final_loss": result.history[-1]["loss"],
        "formulations": table_rows, "figures": str(fig_index), "overlays": str(gen.folder),
    }
    if bench:
        try:
            from augvae.bench.quick import quick_comparison
        except ImportError:
            log.info("the classifier comparison is not available in this build")
        else:
            say("5. few defects, many defect-free surfaces: classifier accuracy with real defects transplanted onto defect-free "
                "surfaces, alone and on top of classic augmentation (synthetic, few seeds):")
            table = quick_comparison(out / "bench", seeds=cfg.bench_seeds, progress=progress, quick=quick)
            say(table)
            say(f"   transplanted images next to real ones: {out / 'bench' / 'run' / 'grids'}; the report: {out / 'bench' / 'run' / 'report.md'}")
            summary["bench"] = table
    write_json(out / "summary.json", summary)
    say(f"done: {out / 'summary.json'}")
    return summary


def _markdown(rows: list[dict[str, object]], cols: list[str]) -> str:
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(str(r[c]) for c in cols) + " |" for r in rows]
    return "\n".join(lines)


__all__ += ["QUICK"]
