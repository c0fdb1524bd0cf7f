"""The benchmark: does adding VAE overlay images make a few-shot defect classifier better?

``augvae bench DATA_DIR --out OUT`` trains the same classifier on k real images per class with no
augmentation, classic augmentation, VAE overlays, both, per-class prior samples, or pixel-space
mixing, over several seeds, and reports accuracy with confidence intervals, paired tests and
the quality of the generated images. See :mod:`augvae.bench.runner` for the protocol.

Example:
    >>> from augvae.bench import BenchConfig, ARMS
    >>> ARMS
    ('original', 'classic', 'vae', 'classic+vae', 'vae-prior', 'mixup')
"""

from __future__ import annotations

from augvae.bench.config import ARMS, LABEL_POLICIES, BenchConfig

__all__ = ["ARMS", "LABEL_POLICIES", "BenchConfig", "quick_comparison", "run_bench", "write_report"]


def __getattr__(name: str):  # lazy: importing the package stays cheap
    if name == "run_bench":
        from augvae.bench.runner import run_bench

        return run_bench
    if name == "write_report":
        from augvae.bench.report import write_report

        return write_report
    if name == "quick_comparison":
        from augvae.bench.quick import quick_comparison

        return quick_comparison
    raise AttributeError(f"module 'augvae.bench' has no attribute {name!r}")
