"""``benchmarks/elpv_mask_figure.py``: the masks' figure is drawn from a data folder and a VAE, and never inside the repository."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "elpv_mask_figure.py"


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=300)


def test_draws_cells_projections_and_masks_of_defect_images(tmp_path: Path) -> None:
    from augvae.data.synthetic import write_dataset
    from augvae.model import ConvVAE

    write_dataset(tmp_path / "d", n_per_class=4, size=32, seed=5, classes=("crack",), masks=False)
    write_dataset(tmp_path / "c", n_per_class=6, size=32, seed=5, classes=("clean",), masks=False)
    data = tmp_path / "data"
    data.mkdir()
    for part in ("d", "c"):
        for sub in (tmp_path / part / "images").iterdir():
            sub.rename(data / sub.name)
    ConvVAE(image_size=32, latent_dim=2, channels=1).save(tmp_path / "vae")  # untrained: the figure, not the masks, is tested
    out = tmp_path / "fig" / "masks.png"
    res = _run("--data", str(data), "--vae", str(tmp_path / "vae"), "--background-class", "clean", "--image-size", "32",
               "--n", "3", "--out", str(out))
    assert res.returncode == 0, res.stderr
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and not list(out.parent.glob("*.tmp*"))


def test_refuses_a_figure_inside_the_repository_and_names_the_fix(tmp_path: Path) -> None:
    inside = SCRIPT.parent / "elpv_masks_figure_test.png"
    res = _run("--vae", str(tmp_path / "none"), "--out", str(inside))
    assert res.returncode != 0 and not inside.exists()
    assert res.stderr.strip().splitlines() == [res.stderr.strip()]  # one line, no traceback
    assert "inside the repository" in res.stderr and "pass a path outside it" in res.stderr
