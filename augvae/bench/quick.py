"""A quick version of the benchmark on augvae's synthetic defects, for ``augvae demo``.

Original versus classic augmentation versus VAE overlays, the small CNN, k = 10 real images per
class, a few seeds, 32 px: one to two minutes on 2 CPU cores. It is a smoke-sized illustration of
the protocol, not evidence: see ``benchmarks/results/`` for the real-data runs.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

from augvae.bench.config import BenchConfig

__all__ = ["QUICK_CONFIG", "quick_comparison"]

#: The settings of the quick comparison (seeds are set by the caller).
QUICK_CONFIG = BenchConfig(arms=("original", "classic", "vae"), classifiers=("small-cnn",), per_class=(10,), seeds=3,
                           image_size=32, steps=150, batch_size=32, vae_steps=400, latent_dim=8, vae_hidden_dim=32,
                           test_fraction=0.5, threads=1)  # one thread: tiny models gain nothing from more, and lose a lot on a busy machine
_IMAGES_PER_CLASS = 40

# Seconds-sized settings for smoke tests (``quick=True``).
_SMOKE = {"per_class": (3,), "steps": 8, "vae_steps": 8, "batch_size": 8}
_SMOKE_IMAGES = 8


def _fmt(x: float) -> str:
    return "n/a" if math.isnan(x) else f"{x:.3f}"


def quick_comparison(out_dir: str | os.PathLike[str], seeds: int = 3, progress: bool = True, quick: bool = False) -> str:
    """Run the quick comparison in ``out_dir`` and return its table as markdown.

    Writes the synthetic images to ``out_dir/data`` and the benchmark's files (cells, report.md,
    results.json, plots) to ``out_dir``. Finished cells are reused if run again.

    Args:
        out_dir: Output folder.
        seeds: Seeds per arm (3 gives a rough confidence interval; 1 gives none).
        progress: Log a line per cell.
        quick: Tiny sizes that finish in seconds (for smoke tests), not a meaningful comparison.

    Returns:
        A markdown table: arm, accuracy mean ± 95% CI, the paired difference to ``original`` with
        its paired t-test p-value.
    """
    from augvae.bench.report import markdown_table
    from augvae.bench.runner import run_bench
    from augvae.data.synthetic import write_dataset

    out = Path(out_dir)
    cfg = QUICK_CONFIG.replace(seeds=seeds, **(_SMOKE if quick else {}))
    n_images = _SMOKE_IMAGES if quick else _IMAGES_PER_CLASS
    data = out / "data"
    images = data / "images"
    if not (data / "manifest.csv").exists():
        write_dataset(data, n_per_class=n_images, size=cfg.image_size, seed=0, masks=False)
    run_bench(images, out, cfg, progress=progress, command=["augvae", "demo (quick_comparison)"])
    res = json.loads((out / "results.json").read_text())
    k = cfg.per_class[0]
    diffs = {c["arm"]: c for c in res["comparisons"] if c["versus"] == "original" and c["k"] == k}
    rows = []
    for r in (r for r in res["summary"] if r["k"] == k):
        acc = r["accuracy"]
        d = diffs.get(r["arm"])
        rows.append([
            r["arm"], f"{_fmt(acc['mean'])} ± {_fmt(acc['ci_half'])}",
            "" if d is None else f"{d['mean_diff']:+.3f} [{_fmt(d['ci_low'])}, {_fmt(d['ci_high'])}]",
            "" if d is None else _fmt(d["p_ttest"]),
        ])
    header = ["arm", f"accuracy (k={k}, {seeds} seed{'s' if seeds != 1 else ''}, mean ± 95% CI)", "Δ vs original [95% CI]",
              "p (paired t)"]
    return markdown_table(header, rows)
