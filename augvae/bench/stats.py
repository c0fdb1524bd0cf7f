"""Statistics over seeds: summaries with confidence intervals, and paired comparisons.

Every seed of an arm is paired with the same seed of the reference arm: both saw the same draw of
real training images and the same test set, so the per-seed difference removes the (large)
variation between draws. For each pair of arms :func:`paired_comparison` reports

- the mean difference with its 95% confidence interval (Student t on the differences);
- the **paired t-test** p-value (``scipy.stats.ttest_rel``, two-sided): the primary test;
- the **Wilcoxon signed-rank** p-value (``scipy.stats.wilcoxon``, two-sided, exact for small n):
  reported beside it because it does not assume normal differences. With 5 seeds its smallest
  possible two-sided p-value is 2/32 = 0.0625, so it can never reach 0.05 at n = 5;
- the effect size Cohen's d_z (mean difference / standard deviation of the differences);
- wins, ties and losses over the seeds.

:func:`holm` adjusts a family of p-values for multiple comparisons (Holm-Bonferroni).

Example:
    >>> s = summarize([0.80, 0.82, 0.84, 0.86, 0.88])
    >>> round(s["mean"], 3), round(s["sd"], 4), round(s["ci_low"], 4), round(s["ci_high"], 4)
    (0.84, 0.0316, 0.8007, 0.8793)
    >>> d = paired_comparison([0.9, 0.8, 0.85, 0.7, 0.95], [0.85, 0.8, 0.8, 0.6, 0.9])
    >>> round(d["mean_diff"], 3), round(d["p_ttest"], 4), round(d["p_wilcoxon"], 4), d["wins"], d["ties"]
    (0.05, 0.0341, 0.125, 4, 1)
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from augvae.errors import InputError

__all__ = ["CONFIDENCE", "classification_metrics", "holm", "paired_comparison", "summarize"]

#: Confidence level of every interval.
CONFIDENCE = 0.95


def _values(values: Sequence[float], what: str) -> np.ndarray:
    arr = np.asarray(list(values), dtype=np.float64)
    if arr.ndim != 1:
        raise InputError(f"{what} must be a flat list of numbers, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise InputError(f"{what} contains NaN or infinite values")
    return arr


def summarize(values: Sequence[float], confidence: float = CONFIDENCE) -> dict[str, float]:
    """Mean, sample standard deviation (ddof 1) and t-based confidence interval of the mean.

    With one value the standard deviation and the interval are NaN (nothing to estimate them from).

    Returns:
        ``n, mean, sd, sem, ci_low, ci_high, ci_half`` (the interval's half width).
    """
    from scipy import stats

    x = _values(values, "values")
    n = int(x.size)
    if n == 0:
        raise InputError("cannot summarize an empty list of values")
    mean = float(x.mean())
    if n < 2:
        nan = float("nan")
        return {"n": n, "mean": mean, "sd": nan, "sem": nan, "ci_low": nan, "ci_high": nan, "ci_half": nan}
    sd = float(x.std(ddof=1))
    sem = sd / math.sqrt(n)
    half = float(stats.t.ppf(0.5 + confidence / 2, n - 1)) * sem
    return {"n": n, "mean": mean, "sd": sd, "sem": sem, "ci_low": mean - half, "ci_high": mean + half, "ci_half": half}


def paired_comparison(a: Sequence[float], b: Sequence[float], confidence: float = CONFIDENCE) -> dict[str, float]:
    """Compare ``a`` against ``b`` paired element by element (the same seed): ``a - b``.

    Returns:
        ``n, mean_diff, sd_diff, ci_low, ci_high`` of the differences; ``t, p_ttest`` (paired
        t-test, two-sided); ``w, p_wilcoxon`` (Wilcoxon signed-rank, two-sided; zero differences
        dropped, as scipy's default ``zero_method="wilcox"``; NaN when every difference is 0);
        ``dz`` (Cohen's d_z = mean / sd of the differences); ``wins, ties, losses``. The t-test and
        d_z are NaN (undefined) when every difference is equal, e.g. all zero.
    """
    from scipy import stats

    x, y = _values(a, "a"), _values(b, "b")
    if x.size != y.size:
        raise InputError(f"paired samples must have equal length, got {x.size} and {y.size}")
    d = x - y
    n = int(d.size)
    s = summarize(d, confidence) if n else {"mean": float("nan"), "sd": float("nan"), "ci_low": float("nan"), "ci_high": float("nan")}
    nan = float("nan")
    out: dict[str, float] = {
        "n": n, "mean_diff": s["mean"], "sd_diff": s["sd"], "ci_low": s["ci_low"], "ci_high": s["ci_high"],
        "t": nan, "p_ttest": nan, "w": nan, "p_wilcoxon": nan, "dz": nan,
        "wins": int((d > 0).sum()), "ties": int((d == 0).sum()), "losses": int((d < 0).sum()),
    }
    if n >= 2 and s["sd"] > 0:
        t = stats.ttest_rel(x, y)
        out["t"], out["p_ttest"] = float(t.statistic), float(t.pvalue)
        out["dz"] = s["mean"] / s["sd"]
    if n >= 1 and (d != 0).any():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # scipy warns that small samples use the exact distribution
            w = stats.wilcoxon(x, y)
        out["w"], out["p_wilcoxon"] = float(w.statistic), float(w.pvalue)
    return out


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values (NaN stays NaN and is not counted).

    Example:
        >>> [round(p, 3) for p in holm([0.01, 0.04, 0.03, float("nan")])]
        [0.03, 0.06, 0.06, nan]
    """
    p = np.asarray(list(pvalues), dtype=np.float64)
    ok = np.flatnonzero(~np.isnan(p))
    out = np.full(p.shape, np.nan)
    m = ok.size
    order = ok[np.argsort(p[ok], kind="stable")]
    running = 0.0
    for rank, idx in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[idx]))
        out[idx] = running
    return [float(v) for v in out]


def classification_metrics(y_true: Sequence[int], y_pred: Sequence[int], classes: Sequence[str],
                           scores: Any = None) -> dict[str, object]:
    """Accuracy, macro-F1, balanced accuracy, per-class F1, the confusion matrix and, given scores, the AUROC (scikit-learn).

    The confusion matrix has one row per true class and one column per predicted class, in the
    order of ``classes``; a class absent from both ``y_true`` and ``y_pred`` gets F1 0. ``scores``
    (N, K) class probabilities give ``auroc``: how well the classifier ranks the classes whatever its
    decision threshold (two classes: of the second class's score; more: macro one-vs-rest; NaN when
    a class is missing from ``y_true``). Accuracy moves when a classifier merely shifts toward a
    class; the AUROC does not.

    Example:
        >>> m = classification_metrics([0, 0, 1, 1], [0, 1, 1, 1], ["a", "b"], scores=[[0.9, 0.1], [0.4, 0.6], [0.3, 0.7], [0.2, 0.8]])
        >>> m["accuracy"], round(m["macro_f1"], 4), m["balanced_accuracy"], m["confusion"], m["auroc"]
        (0.75, 0.7333, 0.75, [[1, 1], [0, 2]], 1.0)
    """
    from sklearn import metrics

    labels = list(range(len(classes)))
    yt, yp = np.asarray(list(y_true), dtype=np.int64), np.asarray(list(y_pred), dtype=np.int64)
    if yt.size == 0 or yt.size != yp.size:
        raise InputError(f"need equally long, non-empty label lists, got {yt.size} true and {yp.size} predicted")
    f1 = metrics.f1_score(yt, yp, labels=labels, average=None, zero_division=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a class missing from y_true: sklearn warns, the value is still defined
        balanced = float(metrics.balanced_accuracy_score(yt, yp))
    out: dict[str, object] = {}
    if scores is not None:
        p = np.asarray(scores, dtype=np.float64)
        if p.shape != (yt.size, len(classes)):
            raise InputError(f"scores must be ({yt.size}, {len(classes)}) class probabilities, got {p.shape}")
        if len(set(yt.tolist())) < len(classes):
            out["auroc"] = float("nan")
        elif len(classes) == 2:
            out["auroc"] = float(metrics.roc_auc_score(yt, p[:, 1]))
        else:
            out["auroc"] = float(metrics.roc_auc_score(yt, p / p.sum(1, keepdims=True), multi_class="ovr", average="macro"))
    return {
        **out,
        "accuracy": float(metrics.accuracy_score(yt, yp)),
        "macro_f1": float(metrics.f1_score(yt, yp, labels=labels, average="macro", zero_division=0)),
        "balanced_accuracy": balanced,
        "per_class_f1": {name: float(v) for name, v in zip(classes, f1)},
        "confusion": metrics.confusion_matrix(yt, yp, labels=labels).tolist(),
    }
