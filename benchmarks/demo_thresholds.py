"""The demo's quick comparison (``augvae demo``, part 2) at several mask thresholds.

The library's thresholds (z 3 to 5) were chosen on ELPV; the demo's synthetic surfaces have faint
scratches whose masks shrink to their cores at those thresholds. This runs the demo's own benchmark
settings (:data:`augvae.bench.quick.QUICK_CONFIG`, 3 seeds) with each ``low:high`` pair and writes
the accuracy of each arm, and the paired difference of each to ``classic``, to one JSON file.

    python benchmarks/demo_thresholds.py --out benchmarks/results/demo/thresholds.json   # about 4 min a pair

The run folders (the synthetic images, cells, a cached VAE) go under ``--work`` (outside the repository).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import command_line, environment  # noqa: E402

from augvae._io import write_json  # noqa: E402
from augvae.bench.quick import QUICK_CONFIG, quick_comparison  # noqa: E402
from augvae.config import ExtractConfig, config_to_dict  # noqa: E402
from augvae.errors import AugvaeError  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--thresholds", default="1.5:3,2:4,3:5", help="mask z-scores low:high, comma-separated")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--work", default="demo-thresholds-runs", help="folder for the run folders (outside the repository)")
    p.add_argument("--out", default="benchmarks/results/demo/thresholds.json")
    a = p.parse_args()
    rows: list[dict[str, Any]] = []
    base = QUICK_CONFIG
    for pair in a.thresholds.split(","):
        low, high = (float(v) for v in pair.split(":"))
        t0 = time.perf_counter()
        cfg = base.replace(extract=ExtractConfig(mask_low=low, mask_high=high))  # the demo's settings, one change
        quick_comparison(Path(a.work) / f"z{low:g}-{high:g}", seeds=a.seeds, progress=False, config=cfg)
        res = json.loads((Path(a.work) / f"z{low:g}-{high:g}" / "run" / "results.json").read_text())
        rows.append({"mask_low": low, "mask_high": high, "seconds": time.perf_counter() - t0,
                     "accuracy": {r["arm"]: r["accuracy"] for r in res["summary"]},
                     "macro_f1": {r["arm"]: r.get("macro_f1") for r in res["summary"]},
                     "vs_classic": [{k: c[k] for k in ("arm", "mean_diff", "ci_low", "ci_high", "p_ttest", "wins", "ties", "losses")}
                                    for c in res["comparisons"] if c["versus"] == "classic" and c.get("metric", "accuracy") == "accuracy"]})
    write_json(a.out, {"what": "augvae demo's quick comparison (synthetic surfaces, k = 5) at several mask thresholds",
                       "command": command_line(), "settings": {"seeds": a.seeds, "quick_config": config_to_dict(base)},
                       "thresholds": rows, "environment": environment()})


if __name__ == "__main__":
    try:
        main()
    except AugvaeError as err:
        sys.exit(f"error: {err}")
