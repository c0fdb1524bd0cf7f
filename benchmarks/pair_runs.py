"""Pair arms of two benchmark run folders by seed (a variant run against the grid it varies).

A run folder holds the cells of one setting (one fingerprint), so a variant (say a stricter mask) is run
into a folder of its own. Its arms can still be compared with the grid's arms, cell for cell, when the
two folders share a baseline arm whose cells are the same computation: this script checks that (the
shared arm's accuracies must be identical seed by seed, else it refuses), then writes the paired
differences (mean, 95% CI, paired t p, wins) of every variant arm against every grid arm, per k.

    python benchmarks/pair_runs.py --variant /work/runs/elpv/small-cnn-z3 --grid /work/runs/elpv/small-cnn \\
        --shared classic --out benchmarks/results/elpv/small-cnn-z3/paired_with_grid.json

Given one folder as both, it pairs each of its arms with every other one.

A variant that ran no baseline arm of its own (``--shared none``) is paired on a weaker but still
sufficient check: every paired cell must have trained on the same real images (``train_paths``) as the
grid's cell of its (k, seed), on the same machine and versions (``versions``, which name the platform).
Cells of one setting computed on another machine are not identical (the CPU's arithmetic differs), so
the check refuses folders from two machines.
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import command_line, environment  # noqa: E402

from augvae._io import write_json  # noqa: E402
from augvae.bench.results import load_cells  # noqa: E402
from augvae.bench.stats import paired_comparison  # noqa: E402

METRICS = ("accuracy", "macro_f1", "auroc")  # auroc: where both cells recorded it


def _by_key(folder: str) -> tuple[dict[tuple[str, str, int], dict[int, dict[str, Any]]], set[str]]:
    """``(classifier, arm, k) -> seed -> metrics`` (and ``"_origin"``: the cell's training images and versions) of a run
    folder's finished cells, and its fingerprints."""
    out: dict[tuple[str, str, int], dict[int, dict[str, Any]]] = defaultdict(dict)
    prints = set()
    for c in load_cells(folder):
        rec: dict[str, Any] = {m: float(c["metrics"][m]) for m in METRICS if m in c["metrics"]}
        rec["_origin"] = (sorted(c.get("train_paths") or []), c.get("versions"))
        out[(c["classifier"], c["arm"], int(c["k"]))][int(c["seed"])] = rec
        prints.add(str(c.get("fingerprint")))
    return out, prints


def _check_origins(var: dict, grid: dict) -> list[dict[str, Any]]:
    """``--shared none``: every variant cell trained on the grid's images of its (k, seed), on the same machine and versions."""
    checked = []
    for (clf, arm, k), seeds in sorted(var.items()):
        others = [g for (gclf, _, gk), g in grid.items() if (gclf, gk) == (clf, k)]
        for s, rec in sorted(seeds.items()):
            origins = {repr(g[s]["_origin"]) for g in others if s in g}
            if not origins:
                continue
            if origins != {repr(rec["_origin"])}:
                sys.exit(f"error: {arm} (k = {k}, seed {s}) did not train on the grid's images of its seed on the same machine "
                         "and versions (train_paths / versions differ): the folders are not comparable cell for cell; run a "
                         "baseline arm in the variant and pass it as --shared")
            checked.append({"classifier": clf, "k": k, "seed": s, "arm": arm})
    return checked


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--variant", required=True, help="the variant's run folder")
    p.add_argument("--grid", required=True, help="the grid's run folder")
    p.add_argument("--shared", default="classic",
                   help="an arm both folders ran whose cells must be identical; none: check the cells' images and machine instead")
    p.add_argument("--out", required=True)
    a = p.parse_args()
    var, var_prints = _by_key(a.variant)
    grid, grid_prints = _by_key(a.grid)
    same = Path(a.variant).resolve() == Path(a.grid).resolve()
    checked = _check_origins(var, grid) if a.shared == "none" else []
    for (clf, arm, k), seeds in var.items():
        if arm != a.shared:
            continue
        other = grid.get((clf, arm, k), {})
        common = sorted(set(seeds) & set(other))
        differ = [s for s in common if seeds[s]["accuracy"] != other[s]["accuracy"]]
        problem = "missing from the grid" if not common else f"not identical at seeds {differ}" if differ else ""
        if problem:
            sys.exit(f"error: the shared arm {arm!r} (k = {k}) is {problem}: the folders are not comparable cell for cell; "
                     "pass a shared arm both ran with the same settings")
        checked.append({"classifier": clf, "k": k, "seeds": common})
    if not checked:
        sys.exit(f"error: the variant has no {a.shared!r} cells to check the pairing with; run that arm in it, or pass --shared "
                 "with another arm (none: check the cells' training images and machine instead)")
    rows: list[dict[str, Any]] = []
    for (clf, arm, k), seeds in sorted(var.items()):
        if arm == a.shared:
            continue
        for (gclf, garm, gk), gseeds in sorted(grid.items()):
            if (gclf, gk) != (clf, k) or (same and garm == arm):  # one folder against itself: each arm against the others
                continue
            common = sorted(set(seeds) & set(gseeds))
            if len(common) < 2:
                continue
            row: dict[str, Any] = {"classifier": clf, "k": k, "variant_arm": arm, "grid_arm": garm, "seeds": common}
            for m in METRICS:
                if all(m in seeds[s] and m in gseeds[s] for s in common):
                    row[m] = paired_comparison([seeds[s][m] for s in common], [gseeds[s][m] for s in common])
            rows.append(row)
    write_json(a.out, {
        "what": "variant arms paired by seed with the grid's arms (the shared arm checked identical; with --shared none, "
                "each paired cell's training images and machine checked equal to the grid's)",
        "command": command_line(),
        "settings": {"variant": a.variant, "grid": a.grid, "shared": a.shared,
                     "variant_fingerprints": sorted(var_prints), "grid_fingerprints": sorted(grid_prints)},
        "shared_checked": checked,
        "pairs": rows,
        "environment": environment(),
    })
    for r in rows:
        c = r["accuracy"]
        au = r.get("auroc")
        print(f"{r['classifier']} k={r['k']} {r['variant_arm']} vs {r['grid_arm']}: {c['mean_diff']:+.3f} "
              f"[{c['ci_low']:+.3f}, {c['ci_high']:+.3f}] p {c['p_ttest']:.3f} ({c['wins']}/{c['ties']}/{c['losses']})"
              + (f"; AUROC {au['mean_diff']:+.3f} [{au['ci_low']:+.3f}, {au['ci_high']:+.3f}] p {au['p_ttest']:.3f}" if au else ""))


if __name__ == "__main__":
    main()
