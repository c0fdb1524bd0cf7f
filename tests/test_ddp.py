"""``MixedDataset`` under real ``torchrun`` data-parallel training (2 CPU processes, gloo): issue 3."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch.distributed as dist

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "train_ddp.py"

pytestmark = pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(), reason="torch without gloo")


def test_torchrun_ranks_see_disjoint_shares_and_train_one_model(tiny_model_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(EXAMPLE.parents[1])}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(EXAMPLE),
           "--model-dir", str(tiny_model_dir), "--per-class", "5", "--test-per-class", "2", "--image-size", "28",
           "--epochs", "2", "--batch-size", "4", "--out", str(out)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)  # a starved machine is slow
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["backend"] == "gloo"
    assert summary["num_real"] == 20 and summary["num_generated"] == 20
    for epoch in summary["epochs"]:
        shares = [set(s) for s in epoch["indices_per_rank"]]
        assert not shares[0] & shares[1] and shares[0] | shares[1] == set(range(40))
        assert epoch["shares_disjoint"] and epoch["covers_dataset"]
        assert all(n > 0 for n in epoch["generated_per_rank"])  # generated samples reach every rank
        assert len(set(epoch["probe_per_rank"])) == 1  # index j is the same generated sample on every rank
    first, second = summary["epochs"]
    assert first["indices_per_rank"] != second["indices_per_rank"]  # set_epoch reshuffles
    assert first["probe_per_rank"] != second["probe_per_rank"]  # ... and redraws the overlays
    assert summary["same_parameters_on_every_rank"]  # DDP kept the ranks in step
