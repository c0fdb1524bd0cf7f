"""``benchmarks/pair_runs.py``: a variant run is paired with its grid only through a shared arm of identical cells."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "pair_runs.py"


def _cells(folder: Path, fingerprint: str, rows: dict[tuple[str, int], list[float]], platform: str = "linux-a") -> None:
    (folder / "cells").mkdir(parents=True)
    for (arm, k), accs in rows.items():
        for seed, acc in enumerate(accs):
            cid = f"small-cnn__{arm}__k{k}__s{seed}"
            rec = {"id": cid, "classifier": "small-cnn", "arm": arm, "k": k, "seed": seed, "fingerprint": fingerprint,
                   "metrics": {"accuracy": acc, "macro_f1": acc - 0.1}, "train_paths": [f"ok/{seed}.png", f"bad/{k}-{seed}.png"],
                   "versions": {"torch": "2.14.1", "platform": platform}}
            (folder / "cells" / f"{cid}.json").write_text(json.dumps(rec))


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=120)


def test_pairs_every_variant_arm_with_every_grid_arm_by_seed(tmp_path: Path) -> None:
    _cells(tmp_path / "grid", "g", {("classic", 5): [0.5, 0.6, 0.7], ("classic+transplant", 5): [0.6, 0.6, 0.7]})
    _cells(tmp_path / "var", "v", {("classic", 5): [0.5, 0.6, 0.7], ("classic+transplant", 5): [0.7, 0.8, 0.8]})
    out = tmp_path / "pairs.json"
    res = _run("--variant", str(tmp_path / "var"), "--grid", str(tmp_path / "grid"), "--out", str(out))
    assert res.returncode == 0, res.stderr
    doc = json.loads(out.read_text())
    pairs = {(r["variant_arm"], r["grid_arm"]): r for r in doc["pairs"]}
    assert set(pairs) == {("classic+transplant", "classic"), ("classic+transplant", "classic+transplant")}
    vs_classic = pairs[("classic+transplant", "classic")]["accuracy"]
    assert vs_classic["mean_diff"] == pytest.approx(0.5 / 3) and vs_classic["wins"] == 3
    vs_grid = pairs[("classic+transplant", "classic+transplant")]["accuracy"]
    assert vs_grid["mean_diff"] == pytest.approx(0.4 / 3)
    assert doc["shared_checked"] == [{"classifier": "small-cnn", "k": 5, "seeds": [0, 1, 2]}]
    assert doc["command"] and doc["settings"]["variant_fingerprints"] == ["v"]


def test_refuses_folders_whose_shared_arm_differs(tmp_path: Path) -> None:
    _cells(tmp_path / "grid", "g", {("classic", 5): [0.5, 0.6, 0.7]})
    _cells(tmp_path / "var", "v", {("classic", 5): [0.5, 0.61, 0.7], ("classic+transplant", 5): [0.7, 0.8, 0.8]})
    out = tmp_path / "pairs.json"
    res = _run("--variant", str(tmp_path / "var"), "--grid", str(tmp_path / "grid"), "--out", str(out))
    assert res.returncode != 0 and not out.exists()
    assert "not identical" in res.stderr and "[1]" in res.stderr and "Traceback" not in res.stderr
    res = _run("--variant", str(tmp_path / "var"), "--grid", str(tmp_path / "grid"), "--shared", "mixup", "--out", str(out))
    assert res.returncode != 0 and "no 'mixup' cells" in res.stderr and not out.exists()


def test_without_a_shared_arm_pairs_cells_of_the_same_images_and_machine(tmp_path: Path) -> None:
    _cells(tmp_path / "grid", "g", {("classic", 5): [0.5, 0.6, 0.7]})
    _cells(tmp_path / "var", "v", {("classic+transplant", 5): [0.6, 0.8, 0.8]})
    _cells(tmp_path / "other", "v", {("classic+transplant", 5): [0.6, 0.8, 0.8]}, platform="linux-b")
    out = tmp_path / "pairs.json"
    res = _run("--variant", str(tmp_path / "var"), "--grid", str(tmp_path / "grid"), "--shared", "none", "--out", str(out))
    assert res.returncode == 0, res.stderr
    doc = json.loads(out.read_text())
    assert [(r["variant_arm"], r["grid_arm"], r["seeds"]) for r in doc["pairs"]] == [("classic+transplant", "classic", [0, 1, 2])]
    assert doc["pairs"][0]["accuracy"]["mean_diff"] == pytest.approx(0.4 / 3) and len(doc["shared_checked"]) == 3
    # the same cells computed on another machine are refused: their arithmetic is not the grid's
    res = _run("--variant", str(tmp_path / "other"), "--grid", str(tmp_path / "grid"), "--shared", "none", "--out", str(out) + "2")
    assert res.returncode != 0 and "same machine" in res.stderr and "Traceback" not in res.stderr
