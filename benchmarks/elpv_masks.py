"""What the VAE's projection adds to a transplant's mask on ELPV, against the blur control's (no pixel masks needed).

ELPV has no pixel masks, so the transplant's masks cannot be scored against the truth. Three things can be
measured on real cells all the same, for the VAE's projection (``x - D(E(x))``) and for the ``blurmask``
control's (``x - blur(x)``), with the benchmark's extraction settings (``ExtractConfig``, dark polarity,
per-pixel statistics of 400 defect-free pool cells):

- **where the masks agree**: the IoU of the two masks (at 0.5) on every defective pool cell;
- **what the masks flag on defect-free cells**: a transplant of a flagged region of a clean cell moves clean
  texture, not a defect, so the masked area on the defect-free *test* cells is the masks' false-positive rate;
- **whether the masks find the defects**: the masked area of a cell as its anomaly score, and the AUROC of that
  score between the 150 defective and 150 defect-free test cells (0.5: the mask does not tell them apart);
- **what the residual knows before any threshold**: the largest per-pixel z-score of a cell's residual
  (``residual_zscore``, what the mask thresholds) as its anomaly score, with the AUROC's 95% bootstrap interval over
  the test cells. No defect label goes into it: it is what the VAE of the defect-free cells alone knows of the
  defects, to set beside the test AUROC of the benchmark's classifiers trained on k defective cells.

Each projector is measured as it is and matched to its image by a brightness offset (``+offset``,
``ExtractConfig(match="offset")``; the mean absolute residual of a defect-free cell says how well each reproduces one).

    python benchmarks/elpv_masks.py --data ../shared/datasets/elpv --vae /work/runs/elpv/cache/surface-vae/4fcd3d6ff514 \\
        --out benchmarks/results/elpv/masks.json

``--vae`` is a model folder of a VAE trained on the defect-free pool cells: the benchmark's cached one (its
``cache/surface-vae/<key>``, trained by ``benchmarks/run_elpv.sh``) or ``augvae train DATA --background-class ok``.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.stats import bootstrap
from sklearn.metrics import roc_auc_score

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import add_elpv_arguments, command_line, environment, load_elpv  # noqa: E402

from augvae._io import write_json  # noqa: E402
from augvae.bench.config import BenchConfig  # noqa: E402
from augvae.config import ExtractConfig, config_to_dict  # noqa: E402
from augvae.errors import AugvaeError  # noqa: E402
from augvae.model import ConvVAE  # noqa: E402
from augvae.overlay.extract import (  # noqa: E402
    blur_projector,
    estimate_masks,
    extract_defects,
    matched_projector,
    residual_zscore,
    usable_defects,
    vae_projector,
)


def _summary(v: np.ndarray) -> dict[str, float]:
    return {"mean": float(v.mean()), "median": float(np.median(v)), "q10": float(np.quantile(v, 0.1)),
            "q90": float(np.quantile(v, 0.9))}


def _auroc_ci(labels: np.ndarray, score: np.ndarray, n: int = 2000, seed: int = 0) -> dict[str, float]:
    """AUROC and its 95% percentile-bootstrap interval over the test cells (pairs of label and score resampled)."""
    gen = np.random.default_rng(seed)
    # scipy >= 1.15 names the generator rng; the project allows scipy 1.10, where it is random_state.
    seeded = {"rng": gen} if "rng" in inspect.signature(bootstrap).parameters else {"random_state": gen}
    ci = bootstrap((labels, score), roc_auc_score, paired=True, vectorized=False, n_resamples=n, method="percentile",
                   **seeded).confidence_interval
    return {"auroc": float(roc_auc_score(labels, score)), "ci95": [float(ci.low), float(ci.high)], "bootstrap": n}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_elpv_arguments(p)
    p.add_argument("--blur-sigma", type=float, default=BenchConfig.blur_sigma)
    p.add_argument("--thresholds", default="1.5:3,2.5:4,3:5,4:6",
                   help="mask z-scores low:high to compare (1.5:3 the grid's thresholds, 3:5 the default since)")
    p.add_argument("--out", default="benchmarks/results/elpv/masks.json")
    a = p.parse_args()
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    data = load_elpv(a, a.split_file or str(Path(a.data) / "splits.csv"))
    bd, x, y, ok, pool = data.bd, data.x, data.y, data.ok, data.pool
    test = torch.as_tensor(bd.test)
    ref_rows = pool[y[pool] == ok]
    extract = ExtractConfig(polarity="dark")  # the benchmark's --extract-polarity dark, every other default
    reference = x[ref_rows][: extract.reference_images]
    model = ConvVAE.load(a.vae).eval()
    projectors = {"vae": vae_projector(model), "blur": blur_projector(a.blur_sigma)}
    # Each also matched to its image by a brightness offset (ExtractConfig.match = "offset"): "vae+offset", "blur+offset".
    projectors.update({f"{name}+offset": matched_projector(project) for name, project in list(projectors.items())})

    pool_defects = pool[y[pool] != ok]
    defective = (y[test] != ok).numpy()
    # The projections do not depend on the thresholds: project once, threshold many times.
    residuals = {}
    for name, project in projectors.items():
        residuals[name] = {part: extract_defects(images, project, extract)["residual"]
                           for part, images in (("pool", x[pool_defects]), ("test", x[test]), ("ref", reference))}
    # The anomaly score before any threshold: each test cell's largest z-score (residual_zscore; no defect label used).
    max_z = {name: _auroc_ci(defective, residual_zscore(r["test"], extract, r["ref"]).amax((1, 2, 3)).numpy())
             for name, r in residuals.items()}
    result = []
    for pair in a.thresholds.split(","):
        low, high = (float(v) for v in pair.split(":"))
        cfg_t = dataclasses.replace(extract, mask_low=low, mask_high=high)
        row: dict[str, Any] = {"mask_low": low, "mask_high": high}
        masks = {}
        for name in projectors:
            r = residuals[name]
            m_pool, m_test = (estimate_masks(r[part], cfg_t, r["ref"]) for part in ("pool", "test"))
            masks[name] = m_pool
            area_test = m_test.mean((1, 2, 3)).numpy()
            row[name] = {
                "mean_abs_residual_defect_free_test": float(residuals[name]["test"][~torch.as_tensor(defective)].abs().mean()),
                "mask_area_defective_pool": _summary(m_pool.mean((1, 2, 3)).numpy()),
                "mask_area_defect_free_test": _summary(area_test[~defective]),
                "mask_area_defective_test": _summary(area_test[defective]),
                "auroc_mask_area_test": float(roc_auc_score(defective, area_test)),
                # defects the transplant never draws (augvae.overlay.extract.usable_defects: no pixel above 0.5)
                "empty_share_defective_pool": float((~usable_defects(m_pool)).float().mean()),
            }
        for first in ("vae", "vae+offset"):
            a_, b_ = masks[first] > 0.5, masks["blur"] > 0.5
            inter, union = (a_ & b_).sum((1, 2, 3)).float(), (a_ | b_).sum((1, 2, 3)).float()
            row[f"iou_{first}_vs_blur_defective_pool"] = _summary(torch.where(union > 0, inter / union.clamp_min(1),
                                                                               torch.ones_like(union)).numpy())
        result.append(row)
    write_json(a.out, {
        "what": "VAE projection vs blur (the blurmask control) as the transplant's mask on ELPV, benchmark extraction settings",
        "command": command_line(),
        "settings": {"data": a.data, "vae": a.vae, "vae_config": config_to_dict(model.config), "image_size": a.image_size,
                     "blur_sigma": a.blur_sigma, "extract": config_to_dict(extract), "reference_images": int(reference.shape[0])},
        "counts": {"defective_pool": len(pool_defects), "test": len(test), "reference": int(reference.shape[0])},
        "thresholds": result,
        "max_z_test": max_z,
        "seconds": time.perf_counter() - t0,
        "environment": environment(),
    })


if __name__ == "__main__":
    try:
        main()
    except AugvaeError as err:  # a bad path or folder: one line naming it, not a traceback
        sys.exit(f"error: {err}")
