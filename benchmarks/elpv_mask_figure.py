"""Where the transplant's masks fall on real ELPV cells: a figure to look at, written outside the repository.

For ``--n`` defective pool cells drawn at random (``--seed``), three rows: the cell at the benchmark's size, its
projection by the VAE of the defect-free pool cells (``D(E(x))``) and the cell with the transplant's soft mask in
red, with the benchmark's extraction settings (``ExtractConfig``: dark polarity, mask z 3 to 5 against the
residuals of 400 defect-free pool cells). ``--projector blur`` draws the blurmask control's instead.

ELPV's images may not be copied into the repository (CC BY-NC-SA; ``../shared/datasets/elpv/SOURCE.md``), and this
figure is made of them, so ``--out`` must lie outside it: a path inside is refused.

    python benchmarks/elpv_mask_figure.py --vae /work/runs/elpv/cache/surface-vae/4fcd3d6ff514 --out /tmp/elpv_masks.png

``--vae``: as in ``benchmarks/elpv_masks.py`` (the benchmark's cached surface VAE, or a model folder of
``augvae train DATA --background-class ok``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _common import add_elpv_arguments, load_elpv  # noqa: E402

from augvae._io import atomic_write  # noqa: E402
from augvae.bench.config import BenchConfig  # noqa: E402
from augvae.config import ExtractConfig  # noqa: E402
from augvae.errors import AugvaeError, InputError  # noqa: E402
from augvae.model import ConvVAE  # noqa: E402
from augvae.overlay.extract import blur_projector, extract_defects, vae_projector  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_elpv_arguments(p, split_help="default: DATA/splits.csv where it exists, else a seeded random split")
    p.add_argument("--projector", choices=("vae", "blur"), default="vae")
    p.add_argument("--n", type=int, default=12, help="defective pool cells to draw")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="PNG path outside the repository")
    a = p.parse_args()
    out = Path(a.out).resolve()
    if out.is_relative_to(REPO):
        raise InputError(f"--out {a.out} is inside the repository, and the figure is made of ELPV images, which may not be "
                         "committed; pass a path outside it (e.g. /tmp/elpv_masks.png)")
    if a.n < 1:
        raise InputError(f"--n must be at least 1, got {a.n}")
    torch.set_num_threads(1)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    split = a.split_file or (Path(a.data) / "splits.csv" if (Path(a.data) / "splits.csv").is_file() else None)
    data = load_elpv(a, split)
    x, y, ok, pool = data.x, data.y, data.ok, data.pool
    defects = pool[y[pool] != ok]
    rows = defects[torch.randperm(len(defects), generator=torch.Generator().manual_seed(a.seed))[: a.n]]
    extract = ExtractConfig(polarity="dark")  # the benchmark's --extract-polarity dark, every other default
    project = vae_projector(ConvVAE.load(a.vae).eval()) if a.projector == "vae" else blur_projector(BenchConfig.blur_sigma)
    ex = extract_defects(x[rows], project, extract, reference=x[pool[y[pool] == ok]][: extract.reference_images])
    n = len(rows)
    fig, ax = plt.subplots(3, n, figsize=(2 * n, 6.4), squeeze=False)
    for i in range(n):
        ax[0, i].imshow(ex["image"][i, 0], cmap="gray", vmin=0, vmax=1)
        ax[1, i].imshow(ex["projection"][i, 0], cmap="gray", vmin=0, vmax=1)
        ax[2, i].imshow(ex["image"][i, 0], cmap="gray", vmin=0, vmax=1)
        ax[2, i].imshow(ex["mask"][i, 0], cmap="Reds", alpha=0.5, vmin=0, vmax=1)
        ax[0, i].set_title(f"#{i + 1}, area {float(ex['mask'][i].mean()):.3f}", fontsize=8)
    for axis in ax.flat:
        axis.axis("off")
    for r, name in enumerate(("cell", f"projection ({a.projector})", "mask")):
        ax[r, 0].text(-0.08, 0.5, name, transform=ax[r, 0].transAxes, rotation=90, va="center", ha="right", fontsize=9)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(out, "wb") as f:  # the figure appears whole or not at all
        fig.savefig(f, format="png", dpi=80)
    plt.close(fig)
    print(out)


if __name__ == "__main__":
    try:
        main()
    except AugvaeError as err:  # a bad path or folder: one line naming it, not a traceback
        sys.exit(f"error: {err}")
