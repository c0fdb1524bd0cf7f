"""Issue 6: bad model folders, unsafe files, interrupted runs, concurrent writers."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from augvae import ConvVAE, ModelConfig, ModelFolderError
from augvae.config import TrainConfig, config_from_dict
from augvae.errors import ConfigError, OutputLockedError
from augvae.model import load_model


@pytest.fixture()
def model_dir(tmp_path: Path) -> Path:
    d = tmp_path / "model"
    ConvVAE(ModelConfig(image_size=28, latent_dim=3)).save(d)
    return d


def test_missing_folder_and_files(tmp_path: Path, model_dir: Path) -> None:
    with pytest.raises(ModelFolderError, match="does not exist"):
        load_model(tmp_path / "nope")
    (model_dir / "model.safetensors").unlink()
    with pytest.raises(ModelFolderError, match="model.safetensors is missing"):
        load_model(model_dir)
    (model_dir / "config.json").unlink()
    with pytest.raises(ModelFolderError, match="config.json is missing"):
        load_model(model_dir)
    with pytest.raises(ModelFolderError, match="is a file"):
        load_model(__file__)


def test_extra_file_is_ignored_with_a_warning(model_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    (model_dir / "pytorch_model.bin").write_bytes(b"whatever")
    with caplog.at_level("WARNING", logger="augvae"):
        load_model(model_dir)
    assert "pytorch_model.bin" in caplog.text


def test_weights_that_do_not_match_the_config(model_dir: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    ConvVAE(ModelConfig(image_size=28, latent_dim=5)).save(other)
    shutil.copy(other / "model.safetensors", model_dir / "model.safetensors")
    with pytest.raises(ModelFolderError, match="do not match the architecture.*fc_mu.weight"):
        load_model(model_dir)


def test_newer_version_unknown_keys_bad_json(model_dir: Path) -> None:
    cfg_path = model_dir / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg_path.write_text(json.dumps({**cfg, "augvae_version": "99.0.0"}))
    with pytest.raises(ModelFolderError, match="newer than this augvae"):
        load_model(model_dir)
    cfg_path.write_text(json.dumps({**cfg, "optimizer_pickle": "x"}))
    with pytest.raises(ModelFolderError, match="optimizer_pickle"):
        load_model(model_dir)
    cfg_path.write_text(json.dumps({**cfg, "model": {**cfg["model"], "latnt_dim": 3}}))
    with pytest.raises(ModelFolderError, match="latnt_dim"):
        load_model(model_dir)
    cfg_path.write_text(json.dumps({**cfg, "model": {**cfg["model"], "latent_dim": -1}}))
    with pytest.raises(ModelFolderError, match="latent_dim"):
        load_model(model_dir)
    cfg_path.write_text("{not json")
    with pytest.raises(ModelFolderError, match="not valid JSON"):
        load_model(model_dir)


def test_corrupted_safetensors(model_dir: Path) -> None:
    w = model_dir / "model.safetensors"
    w.write_bytes(w.read_bytes()[:100])
    with pytest.raises(ModelFolderError, match="not a valid safetensors file"):
        load_model(model_dir)


class _Boom:
    def __reduce__(self):  # noqa: ANN204 - the classic pickle payload
        return (os.system, (f"touch {os.environ['AUGVAE_PWNED']}",))


def test_a_planted_pickle_is_refused_not_executed(model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    marker = tmp_path / "pwned"
    monkeypatch.setenv("AUGVAE_PWNED", str(marker))
    payload = pickle.dumps(_Boom())
    (model_dir / "model.safetensors").write_bytes(payload)
    with pytest.raises(ModelFolderError, match="never unpickles"):
        load_model(model_dir)
    (model_dir / "checkpoint.safetensors").write_bytes(payload)
    torch.save({"x": 1}, model_dir / "model.pt")  # a pickle beside it is ignored, not loaded
    with pytest.raises(ModelFolderError):
        load_model(model_dir)
    assert not marker.exists()


def test_no_code_path_unpickles() -> None:
    root = Path(__file__).resolve().parents[1] / "augvae"
    for path in root.rglob("*.py"):
        text = path.read_text()
        assert "import pickle" not in text and "pickle.load" not in text, path
        for line in text.splitlines():
            if "torch.load(" in line:
                assert "weights_only=True" in line, f"{path}: {line}"


def test_train_config_refuses_unknown_keys_and_wrong_types() -> None:
    with pytest.raises(ConfigError, match="'epoch'"):
        config_from_dict(TrainConfig, {"epoch": 3})
    with pytest.raises(ConfigError, match="lr must be of type float"):
        TrainConfig(lr="fast")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="batch_size must be >= 1"):
        TrainConfig(batch_size=0)
    with pytest.raises(ConfigError, match="unknown optimizer"):
        TrainConfig(optimizer="sgd")


def test_atomic_write_leaves_nothing_half_written(tmp_path: Path) -> None:
    from augvae._io import atomic_write

    target = tmp_path / "f.json"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_write(target) as f:
            f.write("partial")
            raise RuntimeError("killed")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.json"]


def test_json_outputs_are_strict_json_and_undefined_metrics_read_back_as_nan(tmp_path: Path) -> None:
    """inspect's stats.json held a bare NaN (a class with one source has no spread), which jq and browsers refuse."""
    import math

    import numpy as np

    from augvae._io import write_json
    from augvae.bench.results import load_cells

    write_json(tmp_path / "s.json", {"a": float("nan"), "b": [1.0, float("inf")], "t": torch.tensor([0.5, float("nan")]),
                                     "n": np.float32("nan"), "ok": 0.25, "none": None})
    text = (tmp_path / "s.json").read_text()
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text, parse_constant=lambda c: pytest.fail(f"non-standard constant {c}")) == {
        "a": None, "b": [1.0, None], "t": [0.5, None], "n": None, "ok": 0.25, "none": None}
    (tmp_path / "cells").mkdir()
    write_json(tmp_path / "cells" / "c.json", {"id": "c", "metrics": {"accuracy": 0.5, "auroc": float("nan")}})
    (cell,) = load_cells(tmp_path)
    assert cell["metrics"]["accuracy"] == 0.5 and math.isnan(cell["metrics"]["auroc"])  # statistics over seeds stay NaN


def test_second_writer_gets_a_clear_error(tmp_path: Path) -> None:
    from augvae._io import output_lock

    code = f"from augvae._io import output_lock\nimport time\nwith output_lock({str(tmp_path)!r}):\n    print('locked', flush=True)\n    time.sleep(30)\n"
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
        with pytest.raises(OutputLockedError, match="in use by another augvae process"):
            with output_lock(tmp_path):
                pass
    finally:
        proc.kill()
        proc.wait()
    with output_lock(tmp_path):  # the OS released the dead process's lock
        pass


def _train_cmd(data: Path, out: Path, epochs: int) -> list[str]:
    return [sys.executable, "-m", "augvae", "train", str(data), "--out", str(out), "--image-size", "28", "--epochs", str(epochs),
            "--batch-size", "4", "--seed", "5", "--quiet"]


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM, signal.SIGINT])
def test_killed_training_resumes_to_the_uninterrupted_weights(tmp_path: Path, synthetic_folder: Path, sig: int) -> None:
    epochs = 12
    cut = tmp_path / "cut"
    proc = subprocess.Popen(_train_cmd(synthetic_folder, cut, epochs), stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not (cut / "checkpoint.safetensors").exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    time.sleep(0.3)  # kill mid-run, most likely in the middle of an epoch or a write
    proc.send_signal(sig)
    proc.wait()
    from safetensors import safe_open

    with safe_open(str(cut / "checkpoint.safetensors"), "pt") as f:
        killed_after = f.metadata()["epoch"]
    # Whatever moment the kill landed, the last complete checkpoint loads.
    ConvVAE.load(cut)
    if sig != signal.SIGKILL:  # a SIGKILL mid-write cannot clean up its temporary file: the next run removes it
        assert not [p for p in cut.iterdir() if p.name.endswith(".tmp")]
    assert subprocess.run(_train_cmd(synthetic_folder, cut, epochs) + ["--resume"]).returncode == 0
    assert not [p for p in cut.iterdir() if p.name.endswith(".tmp")]
    full = tmp_path / "full"
    assert subprocess.run(_train_cmd(synthetic_folder, full, epochs)).returncode == 0
    a, b = ConvVAE.load(cut).state_dict(), ConvVAE.load(full).state_dict()
    diff = {k: float((a[k] - b[k]).abs().max()) for k in a if not torch.equal(a[k], b[k])}
    assert not diff, f"killed after epoch {killed_after} (exit {proc.returncode}); differing tensors: {diff}"


def test_written_files_get_the_usual_permissions(tmp_path: Path) -> None:
    from augvae._io import write_text

    write_text(tmp_path / "a.txt", "x")
    mask = os.umask(0)
    os.umask(mask)
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o666 & ~mask
