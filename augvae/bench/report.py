"""Merging finished cells into ``results.json``, ``report.md`` and plots.

``write_report(OUT)`` reads ``OUT/cells/*.json`` (however they were produced: one process, ``--jobs
N``, or one cluster job per cell) and ``OUT/bench.json``, and writes:

- ``results.json``: every cell (its training-image list replaced by a hash), the summaries, the
  paired comparisons, the quality table, the figures with the numbers behind them, the versions
  and the command line;
- ``report.md``: the tables a person reads first;
- ``accuracy_vs_k.png`` (mean accuracy against k per arm, with 95% confidence bands),
  ``per_class_f1.png`` (mean F1 of each class per arm and k), and the generated-versus-real image
  grids that the cells saved under ``grids/``.
"""

from __future__ import annotations

import hashlib
import math
import os
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from augvae._io import OUTPUT_MARKER, check_output_folder, output_folder, write_json, write_text
from augvae.bench.config import ARMS, BASELINE_ARMS, CONTROL_ARMS
from augvae.bench.results import CONVERGENCE_DIR, load_cells, read_bench, versions
from augvae.bench.stats import CONFIDENCE, holm, paired_comparison, summarize
from augvae.errors import DataError, OutputError
from augvae.figures import _save_fig, to_uint8

__all__ = ["generated_vs_real_figure", "markdown_table", "summarize_cells", "headline", "conclusion", "convergence_outcome",
           "write_report"]

REFERENCES = BASELINE_ARMS
#: What ``write_report`` writes into a ``dest`` folder; a ``dest`` holding anything else is refused.
REPORT_FILES = ("report.md", "results.json", "accuracy_vs_k.png", "per_class_f1.png", "convergence.png")
_REPORT_OWN = ("report.md", "results.json")  # what identifies a report folder written before the output marker
TRANSPLANT_ARMS = ("transplant", "classic+transplant")
METRICS = ("accuracy", "macro_f1", "balanced_accuracy")


def _arm_order(arm: str) -> int:
    return ARMS.index(arm) if arm in ARMS else len(ARMS)


def summarize_cells(cells: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Summaries per (classifier, arm, k) and paired comparisons against ``original`` and ``classic``.

    Comparisons pair cells by seed and use only the seeds both arms finished. Holm-adjusted
    p-values are computed over the whole family of comparisons of each test.
    """
    by: dict[tuple[str, str, int], dict[int, dict[str, Any]]] = defaultdict(dict)
    for c in cells:
        by[(c["classifier"], c["arm"], int(c["k"]))][int(c["seed"])] = c
    keys = sorted(by, key=lambda t: (t[0], t[2], _arm_order(t[1])))
    summary = []
    for clf, arm, k in keys:
        seeds = sorted(by[(clf, arm, k)])
        row: dict[str, Any] = {"classifier": clf, "arm": arm, "k": k, "seeds": seeds}
        for m in METRICS:
            row[m] = summarize([by[(clf, arm, k)][s]["metrics"][m] for s in seeds])
        aurocs = [by[(clf, arm, k)][s]["metrics"].get("auroc") for s in seeds]
        if all(v is not None for v in aurocs):  # cells from before the AUROC was recorded have none
            row["auroc"] = summarize(aurocs)
        row["train_seconds"] = float(np.mean([by[(clf, arm, k)][s]["train_seconds"] for s in seeds]))
        classes = list(by[(clf, arm, k)][seeds[0]]["metrics"]["per_class_f1"])
        row["per_class_f1"] = {name: float(np.mean([by[(clf, arm, k)][s]["metrics"]["per_class_f1"][name] for s in seeds])) for name in classes}
        row.update(_calls([by[(clf, arm, k)][s]["metrics"]["confusion"] for s in seeds], classes))
        summary.append(row)
    comparisons: list[dict[str, Any]] = []
    for ref in REFERENCES:
        for clf, arm, k in keys:
            if arm == ref or (clf, ref, k) not in by or (ref != REFERENCES[0] and arm in REFERENCES):
                continue  # (classic vs original is not repeated as original vs classic)
            seeds = sorted(set(by[(clf, arm, k)]) & set(by[(clf, ref, k)]))
            if not seeds:
                continue
            a = [by[(clf, arm, k)][s]["metrics"]["accuracy"] for s in seeds]
            b = [by[(clf, ref, k)][s]["metrics"]["accuracy"] for s in seeds]
            comparisons.append({"classifier": clf, "arm": arm, "versus": ref, "k": k, "seeds": seeds, "metric": "accuracy",
                                **paired_comparison(a, b)})
    for test in ("p_ttest", "p_wilcoxon"):
        for row, adj in zip(comparisons, holm([float(c[test]) for c in comparisons])):
            row[f"{test}_holm"] = adj
    quality = []
    for clf, arm, k in keys:
        qs = [c["quality"]["overall"] for c in by[(clf, arm, k)].values() if "quality" in c]
        if not qs:
            continue
        row = {"classifier": clf, "arm": arm, "k": k, "n": len(qs)}
        for key in ("fd", "fd_real", "kid", "kid_real", "nn_rmse", "nn_rmse_test", "nn_ratio", "label_agreement"):
            vals = [q[key] for q in qs if q.get(key) is not None and not (isinstance(q[key], float) and math.isnan(q[key]))]
            row[key] = float(np.mean(vals)) if vals else float("nan")
        vae_units = [c["generation"]["vae"]["active_units"] for c in by[(clf, arm, k)].values() if "vae" in c.get("generation", {})]
        if vae_units:
            row["vae_active_units"] = float(np.mean(vae_units))
        quality.append(row)
    return {"summary": summary, "comparisons": comparisons, "quality": quality}


def _calls(confusions: Sequence[Sequence[Sequence[int]]], classes: Sequence[str]) -> dict[str, dict[str, float]]:
    """Mean over seeds of the share of test images predicted as each class, and of each class's recall.

    ``confusions``: one (true class, predicted class) count matrix per seed. Accuracy moves when a classifier
    merely predicts one class more often; these two show whether it did (the AUROC shows whether it ranks better).
    """
    m = np.asarray(confusions, dtype=float)  # (seeds, true class, predicted class)
    share = m.sum(axis=1) / m.sum(axis=(1, 2))[:, None]  # (seeds, predicted class)
    recall = np.diagonal(m, axis1=1, axis2=2) / np.maximum(m.sum(axis=2), 1)  # (seeds, true class)
    return {"predicted_share": dict(zip(classes, map(float, share.mean(axis=0)))),
            "recall": dict(zip(classes, map(float, recall.mean(axis=0))))}


def calls_table(summary: Sequence[dict[str, Any]], classifier: str) -> str:
    """Arms as rows, k as columns: for each class, the share of test images predicted as it (its recall in brackets)."""
    rows = [r for r in summary if r["classifier"] == classifier and "predicted_share" in r]
    ks = sorted({r["k"] for r in rows})
    arms = sorted({r["arm"] for r in rows}, key=_arm_order)
    cell = {(r["arm"], r["k"]): r for r in rows}
    body = []
    for arm in arms:
        line = [arm]
        for k in ks:
            r = cell.get((arm, k))
            line.append("" if r is None else ", ".join(f"{name} {_f(share)} ({_f(r['recall'][name])})"
                                                      for name, share in r["predicted_share"].items()))
        body.append(line)
    return markdown_table(["arm", *[f"k={k}" for k in ks]], body)


def _by_cell(cells: Sequence[dict[str, Any]]) -> dict[tuple[str, str, int], dict[int, dict[str, Any]]]:
    by: dict[tuple[str, str, int], dict[int, dict[str, Any]]] = defaultdict(dict)
    for c in cells:
        by[(c["classifier"], c["arm"], int(c["k"]))][int(c["seed"])] = c
    return by


def _best(by: dict[tuple[str, str, int], dict[int, dict[str, Any]]], clf: str, k: int, arms: Sequence[str]) -> str | None:
    present = [a for a in arms if (clf, a, k) in by]
    if not present:
        return None
    return max(present, key=lambda a: float(np.mean([c["metrics"]["accuracy"] for c in by[(clf, a, k)].values()])))


def _pair(by: dict[tuple[str, str, int], dict[int, dict[str, Any]]], clf: str, k: int, arm: str, ref: str,
          only: Sequence[int] | None = None) -> dict[str, Any] | None:
    seeds = sorted(set(by[(clf, arm, k)]) & set(by[(clf, ref, k)]) & (set(only) if only is not None else set(by[(clf, arm, k)])))
    if not seeds:
        return None
    row: dict[str, Any] = {"classifier": clf, "k": k, "arm": arm, "versus": ref, "seeds": seeds}
    for metric in ("accuracy", "macro_f1", "auroc"):
        a = [by[(clf, arm, k)][s]["metrics"].get(metric) for s in seeds]
        b = [by[(clf, ref, k)][s]["metrics"].get(metric) for s in seeds]
        if any(v is None for v in (*a, *b)):  # the AUROC of cells from before it was recorded
            continue
        row[metric] = paired_comparison(a, b)
        row[metric]["mean_arm"], row[metric]["mean_ref"] = float(np.mean(a)), float(np.mean(b))
    err_ref, err_arm = 1 - row["accuracy"]["mean_ref"], 1 - row["accuracy"]["mean_arm"]
    row["error_reduction"] = (err_ref - err_arm) / err_ref if err_ref > 0 else float("nan")
    return row


def headline(cells: Sequence[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Per (classifier, k): the best of augvae's generated arms against the best baseline, and the best transplant arm against the best control.

    "Best" is the highest mean accuracy at that k; the comparisons are paired by seed, for accuracy
    and macro-F1, with the relative cut of the error (``error_reduction``).
    """
    by = _by_cell(cells)
    generated = [a for a in ARMS if a not in (*BASELINE_ARMS, "mixup", *CONTROL_ARMS)]  # augvae's arms; the controls apart
    out: dict[str, list[dict[str, Any]]] = {"best_vs_baseline": [], "transplant_vs_control": []}
    for clf, k in sorted({(c, k) for c, _, k in by}):
        base, gen = _best(by, clf, k, BASELINE_ARMS), _best(by, clf, k, generated)
        if base and gen and (row := _pair(by, clf, k, gen, base)):
            out["best_vs_baseline"].append(row)
        tr, ctl = _best(by, clf, k, TRANSPLANT_ARMS), _best(by, clf, k, CONTROL_ARMS)
        if tr and ctl and (row := _pair(by, clf, k, tr, ctl)):
            out["transplant_vs_control"].append(row)
    return out


def conclusion(diff: dict[str, Any], alpha: float = 0.05) -> str:
    """``better``, ``worse`` or ``no difference``: what a paired comparison concludes at level ``alpha``.

    Example:
        >>> conclusion({"mean_diff": 0.02, "p_ttest": 0.01}), conclusion({"mean_diff": 0.02, "p_ttest": 0.3})
        ('better', 'no difference')
    """
    p = diff.get("p_ttest")
    if p is None or not math.isfinite(p) or p >= alpha or diff["mean_diff"] == 0:
        return "no difference"
    return "better" if diff["mean_diff"] > 0 else "worse"


def convergence_outcome(cells: Sequence[dict[str, Any]], long_cells: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The convergence check: (arm - original) for each rerun arm, at the grid's steps and at twice them, per (classifier, k).

    Both sides use the seeds the rerun has finished (paired the same way). The conclusion of a pair
    at one budget is one of three (:func:`conclusion`): ``better`` or ``worse`` (paired t p < 0.05)
    or ``no difference``. ``same_conclusion`` is True when both budgets reach the same one in accuracy,
    and None (undecided) while the rerun has fewer than 2 seeds of a pair. (The sign of a difference
    that is not significant is not a conclusion: +0.000 at one budget and +0.003 at the other agree.)
    ``same_conclusion_auroc`` is the same for the test AUROC, where both budgets' cells recorded it
    (None otherwise): an accuracy gain can be a shift of the decision that the ranking does not share,
    so a budget must keep both conclusions.
    """
    if not long_cells:
        return []
    short, long_ = _by_cell(cells), _by_cell(long_cells)
    rows = []
    rerun = sorted({key for key in long_}, key=lambda t: (t[0], t[2], _arm_order(t[1])))
    for clf, arm, k in rerun:
        refs = ["original"] + [b for b in BASELINE_ARMS if b != "original" and b != arm and (clf, b, k) in long_
                                and arm not in BASELINE_ARMS]
        for ref in refs:
            if arm == ref or (clf, ref, k) not in long_ or (clf, arm, k) not in short or (clf, ref, k) not in short:
                continue
            b = _pair(long_, clf, k, arm, ref)
            a = _pair(short, clf, k, arm, ref, only=b["seeds"]) if b is not None else None
            if a is None or b is None:
                continue
            decided = len(b["seeds"]) >= 2

            def same(metric: str) -> bool | None:
                if not decided or metric not in a or metric not in b:
                    return None
                return conclusion(a[metric]) == conclusion(b[metric])

            rows.append({"classifier": clf, "arm": arm, "versus": ref, "k": k, "steps": short[(clf, arm, k)][a["seeds"][0]]["steps"],
                         "steps_long": long_[(clf, arm, k)][b["seeds"][0]]["steps"], "short": a, "long": b,
                         "same_conclusion": same("accuracy"), "same_conclusion_auroc": same("auroc")})
    return rows


# ------------------------------------------------------------------------------------ formatting
def _f(x: float, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "n/a" if x is None or math.isnan(x) else ("inf" if x > 0 else "-inf")
    return f"{x:.{digits}f}"


def _p(x: float) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    return "<0.001" if x < 0.001 else f"{x:.3f}"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub markdown table.

    Example:
        >>> print(markdown_table(["a", "b"], [[1, 2]]))
        | a | b |
        |---|---|
        | 1 | 2 |
    """
    lines = ["| " + " | ".join(map(str, header)) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(map(str, r)) + " |" for r in rows]
    return "\n".join(lines)


def accuracy_table(summary: Sequence[dict[str, Any]], classifier: str, metric: str = "accuracy") -> str:
    """Arms as rows, k as columns: mean ``metric`` (accuracy, or auroc where the cells have it) ± 95% CI half width (n seeds)."""
    rows = [r for r in summary if r["classifier"] == classifier and metric in r]
    ks = sorted({r["k"] for r in rows})
    arms = sorted({r["arm"] for r in rows}, key=_arm_order)
    cell = {(r["arm"], r["k"]): r[metric] for r in rows}
    body = []
    for arm in arms:
        line = [arm]
        for k in ks:
            s = cell.get((arm, k))
            line.append("" if s is None else f"{_f(s['mean'])} ± {_f(s['ci_half'])} (n={s['n']})")
        body.append(line)
    return markdown_table(["arm", *[f"k={k}" for k in ks]], body)


def comparison_table(comparisons: Sequence[dict[str, Any]], classifier: str, versus: str) -> str:
    rows = sorted((c for c in comparisons if c["classifier"] == classifier and c["versus"] == versus),
                  key=lambda c: (c["k"], _arm_order(c["arm"])))
    body = [[c["arm"], c["k"], c["n"], f"{_f(c['mean_diff'])} [{_f(c['ci_low'])}, {_f(c['ci_high'])}]", _p(c["p_ttest"]),
             _p(c["p_ttest_holm"]), _p(c["p_wilcoxon"]), _f(c["dz"], 2), f"{c['wins']}/{c['ties']}/{c['losses']}"] for c in rows]
    return markdown_table(["arm", "k", "seeds", f"Δ accuracy [{int(CONFIDENCE * 100)}% CI]", "p (paired t)", "p (t, Holm)",
                           "p (Wilcoxon)", "d_z", "wins/ties/losses"], body)


def quality_table(quality: Sequence[dict[str, Any]], classifier: str) -> str:
    rows = [q for q in quality if q["classifier"] == classifier]
    body = [[q["arm"], q["k"], q["n"], f"{_f(q['fd'], 2)} ({_f(q['fd_real'], 2)})", f"{_f(q['kid'], 3)} ({_f(q['kid_real'], 3)})",
             f"{_f(q['nn_rmse'])} ({_f(q['nn_rmse_test'])})", _f(q["label_agreement"], 2),
             _f(q.get("vae_active_units", float("nan")), 1)] for q in rows]
    return markdown_table(["arm", "k", "seeds", "FD gen (real)", "KID gen (real)", "NN-RMSE gen (test)", "label agreement",
                           "active latent units"], body)


# ------------------------------------------------------------------------------------ figures
def _figure(**kw: Any) -> Any:
    from matplotlib.figure import Figure

    return Figure(**kw)


def _save(fig: Any, path: Path) -> None:

    _save_fig(fig, path)


def plot_accuracy_vs_k(summary: Sequence[dict[str, Any]], path: Path) -> dict[str, Any]:
    """Mean test accuracy against k, one line per arm with its 95% CI band, one panel per classifier."""
    classifiers = sorted({r["classifier"] for r in summary})
    fig = _figure(figsize=(5.5 * len(classifiers), 4.2))
    data: dict[str, Any] = {}
    for i, clf in enumerate(classifiers):
        ax = fig.add_subplot(1, len(classifiers), i + 1)
        rows = [r for r in summary if r["classifier"] == clf]
        for arm in sorted({r["arm"] for r in rows}, key=_arm_order):
            pts = sorted((r["k"], r["accuracy"]) for r in rows if r["arm"] == arm)
            ks = [p[0] for p in pts]
            mean = np.array([p[1]["mean"] for p in pts])
            lo = np.array([p[1]["ci_low"] for p in pts])
            hi = np.array([p[1]["ci_high"] for p in pts])
            (line,) = ax.plot(ks, mean, marker="o", label=arm)
            ok = np.isfinite(lo) & np.isfinite(hi)
            if ok.any():
                ax.fill_between(np.array(ks)[ok], lo[ok], hi[ok], color=line.get_color(), alpha=0.15)
            data.setdefault(clf, {})[arm] = {"k": ks, "mean": mean.tolist(), "ci_low": lo.tolist(), "ci_high": hi.tolist()}
        ax.set_xscale("log", base=2)
        ax.set_xticks(sorted({r["k"] for r in rows}))
        ax.set_xticklabels([str(k) for k in sorted({r["k"] for r in rows})])
        ax.set_xlabel("real training images per class (k)")
        ax.set_ylabel("test accuracy")
        ax.set_title(f"{clf}: mean and {int(CONFIDENCE * 100)}% CI over seeds")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    _save(fig, path)
    return data


def plot_convergence(summary: Sequence[dict[str, Any]], long_summary: Sequence[dict[str, Any]], path: Path) -> dict[str, Any]:
    """Mean accuracy against k of the arms of the convergence check, at the grid's steps (solid) and twice them (dashed)."""
    arms = sorted({r["arm"] for r in long_summary}, key=_arm_order)
    classifiers = sorted({r["classifier"] for r in long_summary})
    fig = _figure(figsize=(5.5 * len(classifiers), 4.2))
    data: dict[str, Any] = {}
    for i, clf in enumerate(classifiers):
        ax = fig.add_subplot(1, len(classifiers), i + 1)
        for arm in arms:
            for rows, style, tag in ((summary, "-", "steps"), (long_summary, "--", "2x steps")):
                pts = sorted((r["k"], r["accuracy"]["mean"]) for r in rows if r["classifier"] == clf and r["arm"] == arm)
                if pts:
                    ax.plot([p[0] for p in pts], [p[1] for p in pts], style, marker="o", label=f"{arm} ({tag})")
                    data.setdefault(clf, {})[f"{arm} ({tag})"] = pts
        ax.set_xscale("log", base=2)
        ax.set_xlabel("real training images per class (k)")
        ax.set_ylabel("test accuracy")
        ax.set_title(f"{clf}: convergence check")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    _save(fig, path)
    return data


def plot_per_class_f1(summary: Sequence[dict[str, Any]], path: Path) -> dict[str, Any]:
    """Mean F1 of each class per arm: one panel per (classifier, k)."""
    panels = sorted({(r["classifier"], r["k"]) for r in summary})
    cols = len({k for _, k in panels})
    rows_n = len({c for c, _ in panels})
    fig = _figure(figsize=(4.8 * cols, 3.6 * rows_n))
    data: dict[str, Any] = {}
    classifiers = sorted({c for c, _ in panels})
    ks = sorted({k for _, k in panels})
    for clf, k in panels:
        ax = fig.add_subplot(rows_n, cols, classifiers.index(clf) * cols + ks.index(k) + 1)
        rows = sorted((r for r in summary if r["classifier"] == clf and r["k"] == k), key=lambda r: _arm_order(r["arm"]))
        classes = list(rows[0]["per_class_f1"])
        width = 0.8 / max(1, len(rows))
        x = np.arange(len(classes))
        for j, r in enumerate(rows):
            vals = [r["per_class_f1"][c] for c in classes]
            ax.bar(x + (j - (len(rows) - 1) / 2) * width, vals, width, label=r["arm"])
            data.setdefault(clf, {}).setdefault(str(k), {})[r["arm"]] = dict(zip(classes, vals))
        ax.set_xticks(x)
        ax.set_xticklabels(classes, rotation=30, ha="right", fontsize=7)
        ax.set_ylim(0, 1)
        ax.set_title(f"{clf}, k={k}: per-class F1", fontsize=9)
        if clf == classifiers[0] and k == ks[0]:
            ax.legend(fontsize=6)
    fig.tight_layout()
    _save(fig, path)
    return data


def generated_vs_real_figure(real: Any, generated: torch.Tensor, gen_labels: torch.Tensor, path: str | os.PathLike[str],
                             title: str = "", n: int = 6) -> None:
    """One row per class: up to ``n`` real training images, a gap, then up to ``n`` generated images of that class.

    Args:
        real: An :class:`~augvae.data.images.ImageSet` of real images.
        generated: (M, C, S, S) generated images; ``gen_labels`` their class indices.
    """

    classes = real.classes
    c, s = real.images.shape[1], real.images.shape[-1]
    pad = 2
    canvas = np.full(((s + pad) * len(classes), (s + pad) * (2 * n + 1), c), 255, dtype=np.uint8)
    for row in range(len(classes)):
        r_imgs = real.images[real.labels == row][:n]
        g_imgs = generated[gen_labels == row][:n]
        for j, img in enumerate(to_uint8(r_imgs) if len(r_imgs) else []):
            canvas[row * (s + pad) : row * (s + pad) + s, j * (s + pad) : j * (s + pad) + s] = img
        for j, img in enumerate(to_uint8(g_imgs) if len(g_imgs) else []):
            x0 = (n + 1 + j) * (s + pad)
            canvas[row * (s + pad) : row * (s + pad) + s, x0 : x0 + s] = img
    fig = _figure(figsize=(min(16, 0.9 * (2 * n + 1) + 1.5), 0.9 * len(classes) + 0.8))
    ax = fig.add_subplot(1, 1, 1)
    ax.imshow(canvas[..., 0] if c == 1 else canvas, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
    ax.set_yticks([(i + 0.5) * (s + pad) for i in range(len(classes))])
    ax.set_yticklabels(classes, fontsize=8)
    ax.set_xticks([n * (s + pad) / 2, (n + 1 + n / 2) * (s + pad)])
    ax.set_xticklabels(["real (training)", "generated"], fontsize=9)
    ax.set_title(title, fontsize=9)
    _save(fig, Path(path))


# ------------------------------------------------------------------------------------ the report
def _slim(cell: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in cell.items() if k not in ("train_paths", "settings", "versions")}
    paths = cell.get("train_paths") or []
    out["train_set_sha256"] = hashlib.sha256("\n".join(sorted(paths)).encode()).hexdigest()[:16]
    return out


def write_report(out_dir: str | os.PathLike[str], dest: str | os.PathLike[str] | None = None, grids: bool = True,
                 title: str | None = None) -> Path:
    """Merge ``OUT/cells`` into ``results.json``, ``report.md`` and the plots; return the report's path.

    Args:
        out_dir: The results folder (``cells/``, ``bench.json``, ``grids/``).
        dest: Where to write the report files (default ``out_dir``), e.g. a folder in a repository.
        grids: Reference the generated-vs-real image grids (they are not copied to ``dest``); pass
            False for data whose images must not be published.
        title: The report's title.

    Raises:
        DataError: ``OUT`` holds no finished cells.
        OutputError: ``dest`` holds files the report does not write (they would be lost).
    """
    src = Path(out_dir)
    out = Path(dest) if dest is not None else src
    separate = out.resolve() != src.resolve()
    if separate:
        _check_report_dest(out)
    cells = load_cells(src)
    if not cells:
        raise DataError(f"no finished cells in {src / 'cells'}; run augvae bench DATA_DIR --out {src} first")
    bench = read_bench(src)
    fingerprints = sorted({str(c.get("fingerprint")) for c in cells})
    if len(fingerprints) > 1:
        raise DataError(f"{src / 'cells'} mixes cells of {len(fingerprints)} different settings; keep one setting per folder")
    tables = summarize_cells(cells)
    tables["headline"] = headline(cells)
    long_cells = load_cells(src / CONVERGENCE_DIR)
    tables["convergence"] = convergence_outcome(cells, long_cells)
    long_bench = read_bench(src / CONVERGENCE_DIR) if long_cells else {}
    if long_bench:
        planned = long_bench.get("cells") or []
        long_done = {c["id"] for c in long_cells}
        tables["convergence_plan"] = {"arms": (long_bench.get("config") or {}).get("arms"), "cells": len(planned),
                                      "missing": sum(cid not in long_done for cid in planned)}
    if not separate:
        _write_report_files(out, out, src, cells, bench, fingerprints[0], tables, long_cells, grids, title)
        return out / "report.md"
    # A folder elsewhere (e.g. in a repository) is written whole or not at all: into a temporary
    # folder that replaces it only when every file is written.
    with output_folder(out, "report", own_files=_REPORT_OWN, flag="--report-to") as tmp:
        _write_report_files(tmp, out, src, cells, bench, fingerprints[0], tables, long_cells, grids, title)
    return out / "report.md"


def _check_report_dest(out: Path) -> None:
    """Refuse a ``--report-to`` folder that holds files the report does not write (they would be lost)."""
    check_output_folder(out, "report", own_files=_REPORT_OWN, flag="--report-to")
    if out.is_dir():
        foreign = sorted(p.name for p in out.iterdir() if p.name not in (*REPORT_FILES, OUTPUT_MARKER, ".augvae.lock"))
        if foreign:
            shown = ", ".join(foreign[:3]) + (" ..." if len(foreign) > 3 else "")
            raise OutputError(f"--report-to {out} holds files the report does not write ({shown}); the report would replace "
                              "the folder: choose a new or empty folder, or one holding only an earlier report")


def _write_report_files(folder: Path, out: Path, src: Path, cells: list[dict[str, Any]], bench: dict[str, Any],
                        fingerprint: str, tables: dict[str, Any], long_cells: list[dict[str, Any]], grids: bool,
                        title: str | None) -> None:
    """Write results.json, report.md and the plots into ``folder``; links are relative to ``out``, the final place."""
    figures: dict[str, Any] = {}
    if long_cells:
        figures["convergence.png"] = {"what": "mean test accuracy against k at the grid's steps and at twice them",
                                      "data": plot_convergence(tables["summary"], summarize_cells(long_cells)["summary"],
                                                               folder / "convergence.png")}
    figures["accuracy_vs_k.png"] = {"what": "mean test accuracy against k per arm with 95% CI bands",
                                    "data": plot_accuracy_vs_k(tables["summary"], folder / "accuracy_vs_k.png")}
    figures["per_class_f1.png"] = {"what": "mean per-class F1 per arm, one panel per (classifier, k)",
                                   "data": plot_per_class_f1(tables["summary"], folder / "per_class_f1.png")}
    grid_files = sorted((src / "grids").glob("*.png")) if grids and (src / "grids").is_dir() else []
    # Links relative to the report (the grids stay where the cells wrote them).
    grid_files = [Path(os.path.relpath(g, out.resolve()) if out.resolve() != src.resolve() else Path("grids") / g.name) for g in
                  (p.resolve() for p in grid_files)]
    for g in grid_files:
        figures[g.as_posix()] = {"what": "real training images (left) and generated images (right), one row per class"}
    expected = bench.get("cells") or []
    done_ids = {c["id"] for c in cells}
    missing = [cid for cid in expected if cid not in done_ids]
    results = {
        "title": title or "augvae bench",
        "command": bench.get("command"),
        "config": bench.get("config") or cells[0].get("settings"),
        "fingerprint": fingerprint,
        "data": {k: bench.get(k) for k in ("data_dir", "split", "group_file", "classes", "counts")},
        "versions": bench.get("versions") or versions(),
        "budget": bench.get("budget"),
        "complete": not missing,
        "missing_cells": missing,
        "tests": {"primary": "paired t-test (scipy.stats.ttest_rel, two-sided) on per-seed accuracy differences",
                  "secondary": "Wilcoxon signed-rank (scipy.stats.wilcoxon, two-sided, exact)",
                  "effect_size": "Cohen's d_z = mean difference / sd of differences",
                  "multiplicity": "Holm-adjusted p-values over all comparisons in this file",
                  "ci": "t-based 95% confidence intervals over seeds"},
        **tables,
        "figures": figures,
        "cells": [_slim(c) for c in sorted(cells, key=lambda c: c["id"])],
    }
    write_json(folder / "results.json", results)
    write_text(folder / "report.md", _markdown(results, grid_files))


def _budget_lines(res: dict[str, Any]) -> list[str]:
    b = res.get("budget") or {}
    if not b:
        return ["Step budget: not recorded (a run of an older augvae)."]
    if b.get("cut"):
        return [f"**Budget-cut run: {b['steps']} optimizer steps per classifier, below the auto budget of {b['auto']} "
                f"({res['config'].get('auto_epochs')} passes over the largest real training set, {b['largest_train_set']} images); "
                "the arms may be under-trained.**"]
    how = "the auto budget" if not (res.get("config") or {}).get("steps") else "fixed, at or above the auto budget"
    return [f"Step budget: {b['steps']} optimizer steps per classifier in every arm ({how}: "
            f"{(res.get('config') or {}).get('auto_epochs')} passes over the largest real training set, {b['largest_train_set']} "
            f"images, at least {(res.get('config') or {}).get('min_steps')})."]


def _convergence_status(res: dict[str, Any]) -> list[str]:
    """A first-lines sentence when the report has no convergence check to show (its section says the rest)."""
    if res.get("convergence"):
        return []
    if (res.get("config") or {}).get("convergence_check") is False:
        return ["**Convergence check: not run for this run** (`--no-convergence-check`): nothing here shows that twice "
                "the steps would give the same conclusion.", ""]
    return ["**Convergence check: not run yet** (it runs after the grid; rerunning the bench command runs it and keeps "
            "every finished cell).", ""]


def _delta(c: dict[str, Any], metric: str) -> str:
    d = c[metric]
    return f"{_f(d['mean_arm'])} vs {_f(d['mean_ref'])}: {d['mean_diff']:+.3f} [{_f(d['ci_low'])}, {_f(d['ci_high'])}], p {_p(d['p_ttest'])}"


def _auroc(rows: Sequence[dict[str, Any]]) -> tuple[list[str], Any]:
    """The AUROC column of a headline table, where every row has it: (header, row -> cell)."""
    if rows and all("auroc" in c for c in rows):
        return ["AUROC (Δ [95% CI], p)"], lambda c: [_delta(c, "auroc")]
    return [], lambda c: []


def _headline_lines(res: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    head = res.get("headline") or {}
    if head.get("best_vs_baseline"):
        lines += ["## Headline: the best generated arm against the best baseline", "",
                  "At each k, augvae's generated arm (VAE overlays or transplants; the controls apart) with the highest mean "
                  "accuracy against the better of `original` and `classic` (paired by seed; error cut = relative reduction of "
                  "the test error).", ""]
        au_head, au = _auroc(head["best_vs_baseline"])
        lines += [markdown_table(["classifier", "k", "best generated", "best baseline", "accuracy (Δ [95% CI], p)",
                                  "macro-F1 (Δ [95% CI], p)", *au_head, "error cut", "wins/ties/losses"],
                                 [[c["classifier"], c["k"], c["arm"], c["versus"], _delta(c, "accuracy"), _delta(c, "macro_f1"),
                                   *au(c), f"{100 * c['error_reduction']:.0f}%",
                                   f"{c['accuracy']['wins']}/{c['accuracy']['ties']}/{c['accuracy']['losses']}"]
                                  for c in head["best_vs_baseline"]]), ""]
    if head.get("transplant_vs_control"):
        lines += ["### What the VAE contributes: the best transplant arm against the best control", "",
                  "Controls: the same transplant with a mask and residual from a blur instead of the VAE (`blurmask`), "
                  "CutPaste (`cutpaste`: a random rectangle of a defect image pasted onto a defect-free one), and "
                  "no defect at all (`relabel`: the defect-free image itself with the defect's label).", ""]
        au_head, au = _auroc(head["transplant_vs_control"])
        lines += [markdown_table(["classifier", "k", "transplant arm", "best control", "accuracy (Δ [95% CI], p)",
                                  "macro-F1 (Δ [95% CI], p)", *au_head],
                                 [[c["classifier"], c["k"], c["arm"], c["versus"], _delta(c, "accuracy"), _delta(c, "macro_f1"),
                                   *au(c)] for c in head["transplant_vs_control"]]), ""]
    conv = res.get("convergence") or []
    if conv:
        with_auroc = all("auroc" in c["short"] and "auroc" in c["long"] for c in conv)
        # (name, metric key, same-conclusion key) of each measure the check compares.
        measures = [("accuracy", "accuracy", "same_conclusion")] + ([("AUROC", "auroc", "same_conclusion_auroc")] if with_auroc else [])
        changed = [f"{c['arm']} vs {c['versus']} at k={c['k']} ({name})" for name, _, key in measures for c in conv if c.get(key) is False]
        undecided = [c for c in conv if c["same_conclusion"] is None]
        verdict = ("**the conclusion changed** for " + ", ".join(changed)) if changed else \
            "the conclusion did not change for any pair with at least 2 seeds" + (" in accuracy or AUROC" if with_auroc else "")
        if undecided:
            verdict += f" ({len(undecided)} pair(s) undecided: fewer than 2 seeds rerun)"
        plan = res.get("convergence_plan") or {}
        rerun = ", ".join(f"`{a}`" for a in (plan.get("arms") or dict.fromkeys(c["arm"] for c in conv)))
        lines += ["## Convergence check: twice the steps", "",
                  f"`original`, the better baseline and the best generated arm ({rerun}) again at "
                  f"{conv[0]['steps_long']} steps instead of {conv[0]['steps']}, each pair on the seeds rerun: {verdict}.", ""]
        if plan.get("missing"):
            lines += [f"**The convergence check is incomplete: {plan['missing']} of its {plan['cells']} cells have not finished.**", ""]
        yes = {True: "yes", False: "**no**", None: "undecided"}
        cols = ["classifier", "arm", "versus", "k"]
        for name, _, _ in measures:
            cols += [f"Δ {name} at {conv[0]['steps']} steps", f"Δ at {conv[0]['steps_long']} steps", "conclusion", "same conclusion"]
        rows = [[c["classifier"], c["arm"], c["versus"], c["k"],
                 *[v for _, m, key in measures for v in (
                     _delta(c["short"], m), _delta(c["long"], m),
                     f"{conclusion(c['short'][m])} → {conclusion(c['long'][m])}", yes[c.get(key)])]]
                for c in conv]
        lines += [markdown_table(cols, rows), "",
                  "A pair's conclusion at one budget: `better` or `worse` (paired t p < 0.05), or `no difference`.", "",
                  "![convergence](convergence.png)", ""]
    return lines


def _markdown(res: dict[str, Any], grid_files: list[Path]) -> str:
    cfg = res["config"] or {}
    classifiers = sorted({r["classifier"] for r in res["summary"]})
    lines = [f"# {res['title']}: classifier accuracy with and without generated images", ""]
    if res.get("command"):
        lines += ["Command:", "", "```", " ".join(res["command"]), "```", ""]
    data = res.get("data") or {}
    if data.get("counts"):
        counts = data["counts"]
        per_class = ", ".join(f"{c} ({v['pool']} pool / {v['test']} test)" for c, v in counts.items())
        lines += [f"Data: `{data.get('data_dir')}`, split {data.get('split')}; classes: {per_class}.", ""]
    lines += [*_budget_lines(res), "", *_convergence_status(res)]
    if not res["complete"]:
        lines += [f"**Incomplete: {len(res['missing_cells'])} cell(s) of the grid have not finished**; the tables use the finished ones.", ""]
    lines += _headline_lines(res)
    vae = cfg.get("vae") or {}
    setup = (
        f"Every arm trains the same classifier from the same initial weights for the same number of optimizer steps "
        f"(batch {cfg.get('batch_size')}, AdamW lr {cfg.get('lr')}, cosine decay, class-balanced batches: {cfg.get('balanced')}) "
        f"at {cfg.get('image_size')} px. Generated arms replace each training sample of a class they generate for with "
        f"probability {cfg.get('gen_p')} by a generated one of the same class. vae arms: a bank of {cfg.get('ratio')} overlay(s) "
        f"per real image (policy {cfg.get('policy')}, formulation {cfg.get('formulation')}, base {cfg.get('overlay_base')}, "
        f"{cfg.get('overlay_k')} sources; VAE latent {vae.get('latent_dim')}, {cfg.get('vae_steps')} steps); vae-prior: per-class "
        f"VAEs, {cfg.get('prior_steps')} steps each; transplant arms: {cfg.get('transplant_k')} real defect(s) per image, blend "
        f"{cfg.get('blend')}, shifts up to {cfg.get('translate')} of the side, mask polarity "
        f"{(cfg.get('extract') or {}).get('polarity')}, mask z {(cfg.get('extract') or {}).get('mask_low')} to "
        f"{(cfg.get('extract') or {}).get('mask_high')}, projection matched: {(cfg.get('extract') or {}).get('match', 'none')}"
        + ("; generated defects replace defect-free samples (each of a random defect class), not defect samples"
           if cfg.get("gen_replaces") == "defect-free" else "")
        + (f"; defect-free samples replaced by healed defect images with probability {cfg['heal_p']}" if cfg.get("heal_p") else "")
        + (f"; generated samples kept only where the real-data classifier gives their class at least {cfg['filter_confidence']}"
           if cfg.get("filter_confidence") else "")
        + (f"; defect-free class {cfg.get('background_class')!r} ({cfg.get('background_images') or 'all'} pool images per cell)"
           if cfg.get("background_class") else "") + "."
    )
    stats_note = (
        "Statistics: mean ± half width of the t-based 95% confidence interval over seeds. Differences are paired by seed "
        "(same real images, same initial weights). p (paired t): `scipy.stats.ttest_rel`, two-sided, the primary test; "
        "p (Wilcoxon): signed-rank, exact, two-sided (with 5 seeds it cannot go below 0.0625); Holm: adjusted over every "
        "comparison in this report; d_z: mean difference / sd of the differences."
    )
    lines += [setup, "", stats_note, ""]
    for clf in classifiers:
        lines += [f"## {clf}", "", "### Test accuracy", "", accuracy_table(res["summary"], clf), ""]
        if any(r["classifier"] == clf and "auroc" in r for r in res["summary"]):
            lines += ["### Test AUROC", "", "How well each classifier ranks the classes whatever its decision threshold (two "
                      "classes: of the second class's probability; more: macro one-vs-rest): accuracy also moves when a "
                      "classifier merely shifts toward a class, the AUROC does not.", "",
                      accuracy_table(res["summary"], clf, "auroc"), ""]
        if any(r["classifier"] == clf and "predicted_share" in r for r in res["summary"]):
            lines += ["### What each classifier calls each class", "", "Share of the test images predicted as each class "
                      "(mean over seeds; in brackets the class's recall). An arm that gains accuracy by predicting a class "
                      "more often, without ranking better, shows it here.", "", calls_table(res["summary"], clf), ""]
        for ref in REFERENCES:
            if any(c["classifier"] == clf and c["versus"] == ref for c in res["comparisons"]):
                lines += [f"### Paired difference in accuracy versus `{ref}`", "", comparison_table(res["comparisons"], clf, ref), ""]
        if any(q["classifier"] == clf for q in res["quality"]):
            quality_note = (
                "Measured with the real-data (`original`) classifier of the same k and seed. FD/KID: feature distance of "
                "generated images to the real test images of their class, in brackets the same for the real training "
                "images (what a perfect generator would score at that size). NN-RMSE: pixel RMSE to the nearest real "
                "training image, in brackets the same for real test images (much lower = copies, or blur: a blurred image "
                "is close to everything in RMSE). Label agreement: share of generated images the real-data classifier puts "
                "in the class the policy gave them."
            )
            lines += ["### Quality of the generated images", "", quality_note, "", quality_table(res["quality"], clf), ""]
        seconds = [r for r in res["summary"] if r["classifier"] == clf]
        lines += ["Mean training time per cell (s): " + ", ".join(
            f"{a} {np.mean([r['train_seconds'] for r in seconds if r['arm'] == a]):.0f}"
            for a in sorted({r['arm'] for r in seconds}, key=_arm_order)) + ".", ""]
    lines += ["## Figures", "", "![accuracy against k](accuracy_vs_k.png)", "", "![per-class F1](per_class_f1.png)", ""]
    if grid_files:
        # Show the largest k of the first seed of each generator; list the rest.
        def _k(p: Path) -> int:
            try:
                return int(p.stem.split("-k")[1].split("-")[0])
            except (IndexError, ValueError):
                return 0

        for kind in ("overlay", "prior"):
            files = [g for g in grid_files if g.name.startswith(kind + "-")]
            if files:
                best = max(files, key=lambda p: (_k(p), -int(p.stem.rsplit("-s", 1)[-1]) if p.stem.rsplit("-s", 1)[-1].isdigit() else 0))
                lines += [f"![{kind} images next to real ones]({best.as_posix()})", ""]
        lines += ["Every grid: " + ", ".join(f"[{g.name}]({g.as_posix()})" for g in grid_files), ""]
    v = res.get("versions") or {}
    lines += ["Versions: " + ", ".join(f"{k} {val}" for k, val in v.items()), ""]
    return "\n".join(lines)
