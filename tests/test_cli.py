"""Each CLI command on a tiny set, and the promised one-line errors."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest

from augvae.cli import main


def _run(*args: str) -> int:
    return main([*args, "--quiet"])


def test_train_generate_inspect_end_to_end(tmp_path: Path, synthetic_folder: Path) -> None:
    model = tmp_path / "model"
    assert _run("train", str(synthetic_folder), "--out", str(model), "--image-size", "28", "--latent-dim", "3",
                "--epochs", "2", "--batch-size", "8") == 0
    cfg = json.loads((model / "config.json").read_text())
    assert cfg["model"]["latent_dim"] == 3 and cfg["training"]["epochs"] == 2 and cfg["training"]["recipe"] == "small-set"
    assert cfg["data"]["classes"] == ["clean", "crack", "pore", "scratch"]

    for mode in ("overlay", "grid", "prior", "interpolate"):
        out = tmp_path / f"gen_{mode}"
        assert _run("generate", str(model), "--out", str(out), "--mode", mode, "--n", "5", "--max-side", "4", "--steps", "3") == 0
        rows = (out / "manifest.csv").read_text().strip().splitlines()
        files = sorted((out / "images").glob("*.png"))
        assert len(rows) - 1 == len(files) > 0
        assert (out / "mosaic.png").is_file() and (out / "generate.json").is_file()
    header = (tmp_path / "gen_overlay" / "manifest.csv").read_text().splitlines()[0]
    assert "sources" in header and "classes" in header

    fig = tmp_path / "figs"
    assert _run("inspect", str(model), str(synthetic_folder), "--out", str(fig)) == 0
    for name in ("latent_scatter.png", "latent_points.csv", "grid.png", "reconstructions.png", "interpolation.png",
                 "overlays.png", "index.md", "index.html", "stats.json", "loss.png"):
        assert (fig / name).is_file(), name


def test_overlay_recipe_with_sources_and_background(tmp_path: Path, synthetic_folder: Path) -> None:
    model = tmp_path / "ov"
    srcs = [str(synthetic_folder / "crack" / "crack_0.png"), "pore/pore_0.png"]  # absolute and DATA_DIR-relative
    assert _run("train", str(synthetic_folder), "--out", str(model), "--recipe", "overlay", "--sources", *srcs,
                "--background", "clean/clean_0.png", "--image-size", "28", "--copies", "5", "--epochs", "1") == 0
    data = json.loads((model / "config.json").read_text())["data"]
    assert data["names"] == ["crack_0", "pore_0", "clean_0"] and data["background"] == 2
    assert json.loads((model / "config.json").read_text())["training"]["copies"] == 5


@pytest.mark.parametrize(
    "argv,needle",
    [
        (["train", "{missing}", "--out", "{tmp}/m"], "does not exist"),
        (["train", "{data}", "--out", "{tmp}/m", "--image-size", "12"], "image_size"),
        (["train", "{data}", "--out", "{tmp}/m", "--latent-dim", "0"], "latent_dim"),
        (["train", "{data}", "--out", "{tmp}/m", "--epochs", "0"], "epochs"),
        (["train", "{data}", "--out", "{tmp}/m", "--recipe", "overlay", "--sources", "{missing}.png"], "missing.png"),
        (["generate", "{tmp}/nomodel", "--out", "{tmp}/g"], "does not exist"),
        (["generate", "{tmp}", "--out", "{tmp}/g", "--mode", "overlay", "--formulation", "product"], "formulation"),
    ],
)
def test_errors_are_one_line_with_the_fix(argv: list[str], needle: str, tmp_path: Path, synthetic_folder: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    args = [a.format(tmp=tmp_path, data=synthetic_folder, missing=tmp_path / "missing") for a in argv]
    assert main([*args, "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and needle in err and "Traceback" not in err


def test_unknown_choice_is_rejected_by_argparse(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["train", "x", "--out", "y", "--recipe", "huge"])
    assert exc.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    from augvae.errors import ModelFolderError

    with pytest.raises(ModelFolderError):
        main(["generate", str(tmp_path / "none"), "--out", str(tmp_path / "g"), "--debug"])


def test_python_dash_m_and_help_list_every_option() -> None:
    proc = subprocess.run([sys.executable, "-m", "augvae", "train", "--help"], capture_output=True, text=True, check=True)
    for flag in ("--latent-dim", "--kl-warmup-epochs", "--copies", "--sources", "--resume", "--beta", "--device", "--quiet"):
        assert flag in proc.stdout



def test_every_commands_help_renders() -> None:
    """argparse %-formats help texts, so a stray "%" in a config field's help broke --help with a TypeError."""
    from augvae.cli import build_parser

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    for name, parser in sub.choices.items():
        assert "--help" in parser.format_help(), name


@pytest.mark.parametrize("argv", [["train", ".", "--lr", "abc"], ["train", "."], ["bench", ".", "--out", "x", "--per-class", "abc"],
                                  ["frob"], ["train", "", "--out", "m"]])
def test_usage_errors_are_one_line(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.count("\n") == 1 and "error:" in err and "--help" in err

def test_demo_quick_runs_and_writes_everything(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--quick", "--no-bench", "--quiet"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert {r["formulation"] for r in summary["formulations"]} == {"sum", "mean", "offset", "residual"}
    assert (out / "figures" / "index.html").is_file() and (out / "overlays" / "manifest.csv").is_file()



def test_demo_refuses_a_folder_it_did_not_write(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The demo wrote into any folder (and left half an output where it met a file of the user's)."""
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "formulations.csv").write_text("my own table")
    assert main(["demo", "--out", str(mine), "--quick", "--no-bench", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "non-empty folder that augvae did not write" in err
    assert sorted(p.name for p in mine.iterdir()) == ["formulations.csv"] and (mine / "formulations.csv").read_text() == "my own table"

def test_help_states_each_default_once() -> None:
    proc = subprocess.run([sys.executable, "-m", "augvae", "train", "--help"], capture_output=True, text=True, check=True)
    text = " ".join(proc.stdout.split())
    assert "(default: None)" not in text
    assert "(default: 2)" in text  # latent_dim, from ModelConfig
