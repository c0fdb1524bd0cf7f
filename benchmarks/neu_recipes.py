"""Both of the paper's recipes on real images (NEU): what the VAE learns, measured.

- ``small-set`` (paper section 3) on 80 crazing (crack-like) images;
- ``overlay`` (section 4) on two crazing images and one pitted_surface (pore-like) image.

Writes metrics to ``--out`` (JSON: reconstruction error per source / class, latent statistics,
cluster separation, time) and the figures (``augvae inspect``) to ``--figures`` (keep that outside
the repository: NEU images may not be redistributed).

    python benchmarks/neu_recipes.py --data ../shared/datasets/neu_det --out benchmarks/results/neu_recipes.json --figures /tmp/neu_figures
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import command_line, environment  # noqa: E402

from augvae._io import write_json  # noqa: E402
from augvae.config import ModelConfig, config_to_dict, recipe_config  # noqa: E402
from augvae.data.images import ImageSet, load_images, scan_folder  # noqa: E402
from augvae.metrics import cluster_separation  # noqa: E402
from augvae.report import inspect_model  # noqa: E402
from augvae.training import train  # noqa: E402


def run(name: str, data: ImageSet, mcfg: ModelConfig, tcfg, figures: Path, src_dir: Path) -> dict:
    t0 = time.perf_counter()
    res = train(data, mcfg, tcfg, out_dir=figures / name / "model", progress=False)
    seconds = time.perf_counter() - t0
    with torch.no_grad():
        mse = ((res.model.decode(res.mu) - data.images) ** 2).flatten(1).mean(1)
    inspect_model(figures / name / "model", src_dir, figures / name / "figures", progress=False)
    names = [Path(p).stem for p in data.paths]
    return {
        "recipe": tcfg.recipe, "images": len(data), "train_seconds": round(seconds, 1),
        "model_config": config_to_dict(mcfg), "train_config": config_to_dict(tcfg),
        "final_loss": res.history[-1], "active_units": res.active_units, "warnings": res.warnings,
        "latent_mean": res.mu.mean(0).tolist(), "latent_std": res.mu.std(0).tolist(),
        "recon_mse_mean": float(mse.mean()), "recon_mse_per_image": dict(zip(names, mse.tolist())) if len(names) <= 10 else None,
        "separation": cluster_separation(res.mu, res.logvar, data.labels if tcfg.recipe == "small-set" else None),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--figures", type=Path, required=True)
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--settings", choices=["paper", "leaky+warmup"], nargs="+", default=["paper", "leaky+warmup"])
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    paths, labels, classes = scan_folder(a.data)
    crazing = [q for q, lab in zip(paths, labels) if classes[lab] == "crazing"]
    pitted = [q for q, lab in zip(paths, labels) if classes[lab] == "pitted_surface"]
    results = {}
    for setting in a.settings:
        over = {"activation": "relu"} if setting == "paper" else {"activation": "leaky_relu"}
        warm = 0 if setting == "paper" else 2
        small = load_images(crazing[:80], a.image_size)
        results[f"small-set/{setting}"] = run(f"small-set-{setting}", small, ModelConfig(image_size=a.image_size, latent_dim=2, **over),
                                             recipe_config("small-set", kl_warmup_epochs=warm), a.figures, a.data / "crazing")
        srcs = load_images([crazing[0], crazing[1], pitted[0]], a.image_size)
        srcs = ImageSet(srcs.images, torch.arange(3), [Path(q).stem for q in srcs.paths], srcs.paths)
        results[f"overlay/{setting}"] = run(f"overlay-{setting}", srcs, ModelConfig(image_size=a.image_size, latent_dim=2, **over),
                                           recipe_config("overlay", kl_warmup_epochs=warm), a.figures, a.data / "pitted_surface")
        write_json(a.out, {"command": command_line(), "environment": environment(), "data": str(a.data),
                           "sources_overlay": [crazing[0].name, crazing[1].name, pitted[0].name], "results": results})
        print(setting, {k: (v["recon_mse_mean"], v["active_units"], v["separation"], v["train_seconds"]) for k, v in results.items()}, flush=True)


if __name__ == "__main__":
    main()
