"""The benchmark: do generated images make a few-shot defect classifier better?

``augvae bench DATA_DIR --out OUT`` trains the same classifier on k real images per class with no
augmentation, classic augmentation, VAE overlays, real defects transplanted onto defect-free
surfaces (and the controls that isolate what the VAE contributes), per-class prior samples or
pixel-space mixing, over several seeds, and reports accuracy and macro-F1 with confidence
intervals, paired tests, a convergence check and the quality of the generated images.

==============  ======================================================================
module          what it holds
==============  ======================================================================
``config``      :class:`BenchConfig`, the validated settings the CLI is generated from
``split``       pool / test split and each seed's draw of training images
``arms``        what each arm trains on, the one classifier training loop
``cells``       one (classifier, arm, k, seed): train, evaluate, record
``runner``      the step budget, scheduling (processes), the convergence check
``results``     the results folder: its layout, reading and writing records
``report``      results.json, report.md and the plots
``stats``       confidence intervals and paired tests; ``quality``: generated-image measures
==============  ======================================================================

Example:
    >>> from augvae.bench import BenchConfig, ARMS
    >>> ARMS[:6]
    ('original', 'classic', 'vae', 'classic+vae', 'vae-prior', 'mixup')
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from augvae._lazy import lazy_attributes
from augvae.bench.config import ARMS, LABEL_POLICIES, BenchConfig

_NAMES = {"run_bench": "augvae.bench.runner", "write_report": "augvae.bench.report", "quick_comparison": "augvae.bench.quick"}

__all__ = ["ARMS", "LABEL_POLICIES", "BenchConfig", *_NAMES]

__getattr__, __dir__ = lazy_attributes(__name__, _NAMES, __all__, globals())

if TYPE_CHECKING:  # pragma: no cover
    from augvae.bench.quick import quick_comparison
    from augvae.bench.report import write_report
    from augvae.bench.runner import run_bench
