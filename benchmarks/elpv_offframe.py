"""How often a transplant on ELPV placed its defect off the frame: a defect label with no defect pixel.

Until the fix of 2026-12-07 (``make_plan(size=...)``), a transplanted defect whose mask, once flipped, rotated and
shifted, kept no pixel above 0.5 inside the image still gave the image its defect class: the sample was a
defect-free image labelled defective, what the ``classic+relabel`` control does on purpose. Since the fix such a
defect is not drawn and the image keeps its label. This script measures the share of generated samples that were
affected, at the benchmark's placement settings, for the VAE's masks (``transplant``), the blur control's
(``blurmask``) and CutPaste's rectangles (``cutpaste``), over every defective pool cell as a source:

    python benchmarks/elpv_offframe.py --data ../shared/datasets/elpv --vae /work/runs/elpv/cache/surface-vae/4fcd3d6ff514 \\
        --cells /work/runs/elpv/default --out benchmarks/results/elpv/offframe.json

The share is of generated samples (each draws one source uniformly and one placement), with a 95% Clopper-Pearson
interval; a benchmark cell draws its sources from its own k defect images, so a cell's share varies around it.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import torch
from scipy.stats import binomtest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import add_elpv_arguments, command_line, environment, load_elpv  # noqa: E402

from augvae._io import write_json  # noqa: E402
from augvae.bench.arms import _rectangles  # noqa: E402
from augvae.bench.config import BenchConfig  # noqa: E402
from augvae.bench.results import load_cells  # noqa: E402
from augvae.config import TRANSPLANT_TRANSLATE, ExtractConfig, config_to_dict  # noqa: E402
from augvae.errors import AugvaeError  # noqa: E402
from augvae.model import ConvVAE  # noqa: E402
from augvae.overlay.extract import blur_projector, extract_defects, vae_projector  # noqa: E402
from augvae.overlay.policy import OverlayOptions, draw_torch, make_plan  # noqa: E402
from augvae.overlay.sources import sources_from_defects  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_elpv_arguments(p)
    p.add_argument("--draws", type=int, default=20000, help="generated samples drawn per arm")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cells", default=None, help="a run folder (e.g. /work/runs/elpv/default): also the share of each of its "
                   "transplant, blurmask and cutpaste cells, from the cell's own defect images")
    p.add_argument("--out", default="benchmarks/results/elpv/offframe.json")
    a = p.parse_args()
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    # the benchmark's defaults for placement and blur; the blend (random here: no background class) does not move a
    # defect, so the share placed off the frame is the same for every blend
    cfg = BenchConfig()
    data = load_elpv(a, a.split_file or str(Path(a.data) / "splits.csv"))
    bd, x, y, ok, pool = data.bd, data.x, data.y, data.ok, data.pool
    defect_rows = pool[y[pool] != ok]
    extract = ExtractConfig(polarity="dark")  # the benchmark's --extract-polarity dark, every other default (z 3 to 5)
    reference = x[pool[y[pool] == ok]][: extract.reference_images]
    model = ConvVAE.load(a.vae).eval()
    # The arms' placements, as augvae/bench/arms.py:_transplant_set sets them at the benchmark's defaults.
    placed = OverlayOptions(policy="same-class", formulation="transplant", k=cfg.transplant_k, blend=cfg.blend,
                            translate=cfg.translate, rotate=cfg.transplant_rotate)
    arms = {
        "transplant": (extract_defects(x[defect_rows], vae_projector(model), extract, reference=reference), defect_rows, placed),
        "blurmask": (extract_defects(x[defect_rows], blur_projector(cfg.blur_sigma), extract, reference=reference), defect_rows,
                     placed),
        "cutpaste": (_rectangles(x[defect_rows], 16, a.seed), defect_rows.repeat_interleave(16),
                     OverlayOptions(policy="same-class", formulation="transplant", k=1, blend="paste", translate=0.5, flip=False)),
    }
    def off_frame(defects: dict[str, torch.Tensor], rows: torch.Tensor, opts: OverlayOptions, draws_n: int) -> tuple[int, int]:
        """(samples whose defect lands off the frame, usable sources) over ``draws_n`` draws."""
        src = sources_from_defects(defects, [bd.classes[int(c)] for c in y[rows]], bd.classes, a.background_class)
        labels = torch.tensor([c for c in range(len(bd.classes)) if c != ok]).repeat(draws_n)[:draws_n]
        draws = draw_torch(src, opts, draws_n, generator=torch.Generator().manual_seed(a.seed))
        # make_plan leaves out a defect whose placed mask has no pixel above 0.5 in the frame: those rows are not valid
        plan = make_plan(src, labels, opts, draws, size=(a.image_size, a.image_size))
        return int((~plan.valid).sum()), int(src.has_defect.sum())

    result = {}
    for arm, (defects, rows, opts) in arms.items():
        off, usable = off_frame(defects, rows, opts, a.draws)
        ci = binomtest(off, a.draws).proportion_ci(0.95, method="exact")
        result[arm] = {"off_frame": off, "draws": a.draws, "share": off / a.draws, "ci95": [float(ci.low), float(ci.high)],
                       "usable_sources": usable, "sources": len(rows),
                       "translate": opts.translate, "rotate": opts.rotate, "flip": opts.flip,
                       "mask_area_mean": float(defects["mask"].mean())}
    per_cell: dict[str, Any] = {}
    if a.cells:
        # Each cell's own defect images (its train_paths), as the benchmark extracts them. The masks use this script's
        # reference cells (the first defect-free pool cells), so a cell's share is close to, not exactly, what it drew.
        index = {r: i for i, r in enumerate(bd.rel_paths)}
        for cell in load_cells(a.cells):
            kind = cell["arm"].removeprefix("classic+")
            if kind not in arms:
                continue
            rows_c = torch.tensor([index[p] for p in cell["train_paths"] if y[index[p]] != ok])
            if kind == "cutpaste":
                defects, rows, opts = _rectangles(x[rows_c], 16, cell["seed"]), rows_c.repeat_interleave(16), arms[kind][2]
            else:
                project = vae_projector(model) if kind == "transplant" else blur_projector(cfg.blur_sigma)
                defects, rows, opts = extract_defects(x[rows_c], project, extract, reference=reference), rows_c, placed
            off, usable = off_frame(defects, rows, opts, 4000)
            per_cell[cell["id"]] = {"arm": cell["arm"], "k": cell["k"], "seed": cell["seed"], "share": off / 4000 if usable else None,
                                    "usable_sources": usable}
        summary: dict[str, Any] = {}
        for rec in per_cell.values():
            if rec["share"] is not None:
                summary.setdefault(f"{rec['arm']} k={rec['k']}", []).append(rec["share"])
        result["cells_summary"] = {key: {"mean": sum(v) / len(v), "min": min(v), "max": max(v), "cells": len(v)}
                                   for key, v in sorted(summary.items())}
    write_json(a.out, {
        "what": "share of generated samples whose placed defect had no mask pixel above 0.5 in the frame (before the fix: a "
                "defect label on an unchanged defect-free image)",
        "command": command_line(),
        "settings": {"data": a.data, "vae": a.vae, "image_size": a.image_size, "extract": config_to_dict(extract),
                     "seed": a.seed, "default_translate": TRANSPLANT_TRANSLATE, "reference_images": int(reference.shape[0])},
        "arms": result,
        "cells": per_cell,
        "seconds": time.perf_counter() - t0,
        "environment": environment(),
    })


if __name__ == "__main__":
    try:
        main()
    except AugvaeError as err:  # a bad path or folder: one line naming it, not a traceback
        sys.exit(f"error: {err}")
