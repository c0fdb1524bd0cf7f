"""The catalogue of bad input and faults: a CLI case gets exit status 2, one line naming the problem, no traceback.

Each case is a class of fault (see the README's reliability section); CLI cases run in-process
through ``augvae.cli.main``. After a failure nothing half-written is left: the output folder does
not exist, or is exactly as it was before the command. Cases of the Python API assert the
library's error (an ``AugvaeError`` naming the problem) instead; a few assert that an input which
used to fail, or to go silently wrong, now works.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from augvae.cli import main


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Class folders: crack, pore and clean (defect-free), 4 images each, 28 px."""
    from augvae.data.synthetic import write_dataset

    return write_dataset(tmp_path_factory.mktemp("cat_data"), n_per_class=4, size=28, seed=1, classes=("crack", "pore", "clean"))


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory, data: Path) -> Path:
    out = tmp_path_factory.mktemp("cat_models") / "model"
    assert main(["train", str(data), "--out", str(out), "--image-size", "28", "--epochs", "2", "--batch-size", "4", "-q",
                 "--background-class", "clean"]) == 0
    return out


def _snapshot(path: Path) -> dict[str, bytes] | None:
    if not path.exists():
        return None
    if path.is_file():
        return {"": path.read_bytes()}
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file() and p.name != ".augvae.lock"}


def _fails_cleanly(argv: list[str], capsys: pytest.CaptureFixture[str], message: str, out: Path | None = None) -> str:
    """Run the CLI; assert exit 2, one stderr line matching ``message``, no traceback, ``out`` unchanged."""
    before = _snapshot(out) if out is not None else None
    code = main(argv)
    err = capsys.readouterr().err.strip()
    lines = [line for line in err.splitlines() if not line.startswith("augvae: ")]  # logged warnings are not the error
    assert code == 2, f"exit {code}; stderr: {err}"
    assert len(lines) == 1, f"expected one line, got: {err}"
    assert "Traceback" not in err
    assert lines[0].startswith(f"augvae {argv[0]}: error: "), lines[0]
    import re

    assert re.search(message, lines[0]), f"{message!r} not in {lines[0]!r}"
    if out is not None:
        assert _snapshot(out) == before, f"{out} was changed by a failed run"
        assert not list(out.parent.glob(f".{out.name}.partial-*")), "a temporary output folder was left behind"
    return lines[0]


# ------------------------------------------------------------------------------------ 1. output paths
@pytest.mark.parametrize("command", ["train", "generate", "inspect"])
def test_out_is_an_existing_file(command: str, data: Path, model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out.txt"
    out.write_text("mine")
    argv = {"train": ["train", str(data), "--out", str(out), "--image-size", "28", "--epochs", "1"],
            "generate": ["generate", str(model), "--out", str(out), "--mode", "prior", "--n", "2"],
            "inspect": ["inspect", str(model), str(data), "--out", str(out)]}[command]
    line = _fails_cleanly(argv, capsys, r"out\.txt.* is a file, not a folder", out)
    assert str(out) in line and "choose another --out" in line  # the path and the fix
    assert out.read_text() == "mine"


@pytest.mark.parametrize("command", ["train", "generate", "inspect"])
def test_out_holds_the_users_own_files(command: str, data: Path, model: Path, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "mine"
    out.mkdir()
    (out / "config.json").write_text('{"my": "own config"}')
    (out / "notes.txt").write_text("do not delete")
    argv = {"train": ["train", str(data), "--out", str(out), "--image-size", "28", "--epochs", "1"],
            "generate": ["generate", str(model), "--out", str(out), "--mode", "prior", "--n", "2"],
            "inspect": ["inspect", str(model), str(data), "--out", str(out)]}[command]
    line = _fails_cleanly(argv, capsys, r"(non-empty folder that augvae did not write|not an augvae model config)", out)
    assert str(out) in line and "choose a new or empty --out folder" in line
    assert (out / "notes.txt").read_text() == "do not delete"



def test_out_that_is_a_model_folder_is_named_as_one(model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """generate --out MODEL_DIR said "a folder that augvae did not write" of augvae's own model folder."""
    line = _fails_cleanly(["generate", str(model), "--out", str(model), "--mode", "prior", "--n", "2"], capsys,
                          "is an augvae model folder, not a generate one")
    assert "choose a new or empty --out folder" in line and (model / "model.safetensors").is_file()

def _fault(monkeypatch: pytest.MonkeyPatch, code: int, after: int = 0) -> None:
    """Make the ``after``-th and later fsyncs of augvae's writes fail with ``code`` (disk full, permission denied)."""
    import augvae._io as io_mod

    calls = {"n": 0}
    real = io_mod.os.fsync

    def fsync(fd: int) -> None:
        calls["n"] += 1
        if calls["n"] > after:
            raise OSError(code, os.strerror(code))
        real(fd)

    monkeypatch.setattr(io_mod.os, "fsync", fsync)


@pytest.mark.parametrize("code, message", [(errno.ENOSPC, "disk is full"), (errno.EACCES, "permission denied"),
                                           (errno.EROFS, "read-only")])
@pytest.mark.parametrize("command", ["train", "generate", "inspect"])
def test_write_failures_mid_run(command: str, code: int, message: str, data: Path, model: Path, tmp_path: Path,
                                monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    argv = {"train": ["train", str(data), "--out", str(out), "--image-size", "28", "--epochs", "1", "-q"],
            "generate": ["generate", str(model), "--out", str(out), "--mode", "prior", "--n", "40", "-q"],
            "inspect": ["inspect", str(model), str(data), "--out", str(out), "-q"]}[command]
    _fault(monkeypatch, code, after=3)  # a few files are written, then the disk fails
    line = _fails_cleanly(argv, capsys, message, None if command == "train" else out)
    assert "cannot write" in line
    if command != "train":
        assert not out.exists()  # whole or not at all: no half-written folder


def test_a_failed_generate_leaves_the_earlier_output_whole(model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "gen"
    assert main(["generate", str(model), "--out", str(out), "--mode", "prior", "--n", "3", "-q"]) == 0
    _fault(monkeypatch, errno.ENOSPC, after=2)
    _fails_cleanly(["generate", str(model), "--out", str(out), "--mode", "prior", "--n", "30", "-q"], capsys, "disk is full", out)
    assert len(list((out / "images").glob("*.png"))) == 3


def test_a_diverged_run_says_how_to_start_again(data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "div"
    line = _fails_cleanly(["train", str(data), "--out", str(out), "--image-size", "28", "--epochs", "3", "--lr", "1e30", "-q"],
                          capsys, "diverged")
    assert f"delete {out}" in line and "lower --lr" in line
    shutil.rmtree(out)
    assert main(["train", str(data), "--out", str(out), "--image-size", "28", "--epochs", "1", "-q"]) == 0


# ------------------------------------------------------------------------------------ 2-3. numbers
@pytest.mark.parametrize("argv, message", [
    (["train", "{data}", "--out", "{out}", "--seed", "99999999999999999999999"], "seed must be an integer from 0 to 4294967295"),
    (["train", "{data}", "--out", "{out}", "--seed", "-1"], "seed must be an integer from 0"),
    (["generate", "{model}", "--out", "{out}", "--seed", "99999999999999999999999"], "seed must be an integer"),
    (["inspect", "{model}", "{data}", "--out", "{out}", "--seed", "99999999999999999999999"], "seed must be an integer"),
    (["bench", "{data}", "--out", "{out}", "--first-seed", "99999999999999999999999"], "first_seed must be an integer"),
    (["bench", "{data}", "--out", "{out}", "--split-seed", "-3"], "split_seed must be an integer"),
    (["train", "{data}", "--out", "{out}", "--hidden-dim", "1000000000"], r"would have [\d,]+ weights .* GiB.*lower --hidden-dim"),
    (["train", "{data}", "--out", "{out}", "--image-size", "64", "--widths", "100000", "100000"], "would have .* weights"),
    (["bench", "{data}", "--out", "{out}", "--vae-hidden-dim", "1000000000"], "would have .* weights"),
    (["train", "{data}", "--out", "{out}", "--recipe", "overlay", "--copies", "1000000000"], "copies must be at most"),
    (["generate", "{model}", "--out", "{out}", "--mode", "interpolate", "--steps", "1000000000000"], "steps must be at most 10,000"),
    (["generate", "{model}", "--out", "{out}", "--mode", "grid", "--max-side", "100000"], "max_side must be at most 100"),
    (["train", "{data}", "--out", "{out}", "--epochs", "1000000000"], "epochs must be at most"),
    (["train", "{data}", "--out", "{out}", "--recipe", "overlay", "--copies", "900000", "--epochs", "500", "--batch-size", "16", "-q"],
     "would take [\\d,]+ optimizer steps"),
    (["generate", "{model}", "--out", "{out}", "--n", "1000000000"], "n must be at most 1,000,000"),
    (["bench", "{data}", "--out", "{out}", "--steps", "999999999"], "at most 1,000,000"),
    (["train", "{data}", "--out", "{out}", "--lr", "nan"], "lr must be a finite number"),
    (["bench", "{data}", "--out", "{out}", "--gen-p", "2"], "gen_p must be a number in"),
])
def test_numbers_out_of_range(argv: list[str], message: str, data: Path, model: Path, tmp_path: Path,
                              capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    argv = [a.format(data=data, model=model, out=out) for a in argv]
    _fails_cleanly(argv, capsys, message, out)
    assert not out.exists()


def test_a_model_folder_whose_config_asks_for_a_huge_model(model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad"
    shutil.copytree(model, bad)
    cfg = json.loads((bad / "config.json").read_text())
    cfg["model"]["hidden_dim"] = 10**9
    (bad / "config.json").write_text(json.dumps(cfg))
    line = _fails_cleanly(["generate", str(bad), "--out", str(tmp_path / "o")], capsys, "would have .* weights")
    assert "GiB" in line and "lower --hidden-dim" in line  # the size it would need, and the fix
    assert not (tmp_path / "o").exists()


# ------------------------------------------------------------------------------------ 4. the model folder's data section
@pytest.mark.parametrize("field, value, message", [
    ("classes", [1, 2, 3], "data.classes' must be a list of strings"),
    ("classes", "abc", "data.classes' must be a list of strings"),
    ("classes", ["a", "a", "b"], "duplicate names"),
    ("background", 50, "data.background' must be the index of one of the"),
    ("background", "x", "data.background' must be the index"),
    ("names", ["only_one"], "names 1 sources but|has 1 names but"),
    ("labels", [0, 1, 99], "data.labels' has values outside"),
    ("labels", "zero", "data.labels' must be a list of class indices"),
    ("background_class", "nope", "data.background_class' must be one of the classes"),
    ("defect_sources", [0, 10**6], "data.defect_sources' must be a list of source indices"),
    ("recipe", "magic", "data.recipe' must be one of"),
    ("colour", "blue", "'data' has unknown key"),
])
@pytest.mark.parametrize("command", ["generate", "inspect"])
def test_data_section_is_validated(field: str, value: Any, message: str, command: str, model: Path, data: Path, tmp_path: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad"
    shutil.copytree(model, bad)
    cfg = json.loads((bad / "config.json").read_text())
    cfg["data"][field] = value
    (bad / "config.json").write_text(json.dumps(cfg))
    out = tmp_path / "out"
    argv = ["generate", str(bad), "--out", str(out), "--n", "2"] if command == "generate" else ["inspect", str(bad), str(data), "--out", str(out)]
    line = _fails_cleanly(argv, capsys, message, out)
    assert str(bad / "config.json") in line and not out.exists()  # names the file at fault; writes nothing


def test_latents_that_do_not_match_the_config(model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad"
    shutil.copytree(model, bad)
    lat = load_file(str(bad / "latents.safetensors"))
    save_file({"mu": lat["mu"][:2], "logvar": lat["logvar"][:2], "labels": lat["labels"][:2]}, str(bad / "latents.safetensors"))
    line = _fails_cleanly(["generate", str(bad), "--out", str(tmp_path / "o"), "--n", "2"], capsys, "names 12 sources but .* holds 2")
    assert str(bad / "latents.safetensors") in line and not (tmp_path / "o").exists()


def test_defects_that_do_not_match_the_config(model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad"
    shutil.copytree(model, bad)
    (bad / "defects.safetensors").unlink()
    line = _fails_cleanly(["generate", str(bad), "--out", str(tmp_path / "o"), "--mode", "transplant", "--backgrounds", str(bad)],
                          capsys, "defects.safetensors is missing")
    assert "retrain" in line and not (tmp_path / "o").exists()


# ------------------------------------------------------------------------------------ 5. damaged checkpoints
def _rewrite_checkpoint(path: Path, change: Callable[[dict[str, torch.Tensor], dict[str, str]], None]) -> None:
    tensors = load_file(str(path))
    with safe_open(str(path), "pt") as f:
        meta = dict(f.metadata() or {})
    change(tensors, meta)
    save_file(tensors, str(path), metadata=meta or None)


@pytest.mark.parametrize("damage", ["epoch_text", "no_metadata", "no_history", "bad_json", "other_model", "not_safetensors"])
def test_damaged_checkpoint_on_resume(damage: str, data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "m"
    base = ["train", str(data), "--out", str(out), "--image-size", "28", "--batch-size", "4", "-q"]
    assert main([*base, "--epochs", "1"]) == 0
    ckpt = out / "checkpoint.safetensors"
    if damage == "epoch_text":
        _rewrite_checkpoint(ckpt, lambda t, m: m.update(epoch="abc"))
    elif damage == "no_metadata":
        _rewrite_checkpoint(ckpt, lambda t, m: m.clear())
    elif damage == "no_history":
        _rewrite_checkpoint(ckpt, lambda t, m: m.pop("history"))
    elif damage == "bad_json":
        _rewrite_checkpoint(ckpt, lambda t, m: m.update(optimizer="{not json"))
    elif damage == "other_model":
        def other(t: dict[str, torch.Tensor], m: dict[str, str]) -> None:
            key = next(k for k in t if k.startswith("model.") and k.endswith("weight"))
            t[key] = torch.zeros(3, 3)
        _rewrite_checkpoint(ckpt, other)
    else:
        ckpt.write_bytes(b"\x80\x04 a pickle, not safetensors")
    _fails_cleanly([*base, "--epochs", "2", "--resume"], capsys, r"checkpoint\.safetensors (cannot be resumed|is not a valid safetensors)")


# ------------------------------------------------------------------------------------ 9-10. confusing messages
def test_the_same_source_twice(data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = str(data / "crack" / "crack_0.png")
    line = _fails_cleanly(["train", str(data), "--out", str(tmp_path / "m"), "--recipe", "overlay", "--sources", src, src, "--copies",
                           "2", "--epochs", "1", "--image-size", "28"], capsys, "names the image .* more than once")
    assert "'crack/crack_0'" in line and not (tmp_path / "m" / "model.safetensors").exists()



def test_two_files_of_one_name_are_named_as_such(data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """crack_0.png beside crack_0.bmp was reported as "--sources names the image twice" though --sources was not given."""
    from PIL import Image

    other = tmp_path / "data2"
    shutil.copytree(data, other)
    with Image.open(other / "crack" / "crack_0.png") as im:
        im.save(other / "crack" / "crack_0.bmp")
    line = _fails_cleanly(["train", str(other), "--out", str(tmp_path / "m"), "--epochs", "1", "--image-size", "28", "-q"], capsys,
                          "two image files are named 'crack/crack_0'")
    assert "crack_0.bmp" in line and "--sources" not in line

def test_two_sources_with_the_same_file_stem_are_fine(data: Path, tmp_path: Path) -> None:
    other = tmp_path / "data2"
    shutil.copytree(data, other)
    shutil.copy(other / "pore" / "pore_1.png", other / "crack" / "pore_1.png")  # the same stem in two class folders
    assert main(["train", str(other), "--out", str(tmp_path / "m"), "--recipe", "overlay", "--sources", "crack/pore_1.png",
                 "pore/pore_1.png", "--copies", "2", "--epochs", "1", "--image-size", "28", "-q"]) == 0
    names = json.loads((tmp_path / "m" / "config.json").read_text())["data"]["names"]
    assert names == ["crack/pore_1", "pore/pore_1"]


def _split(tmp_path: Path, rows: list[tuple[str, str, str]]) -> Path:
    p = tmp_path / "split.csv"
    p.write_text("path,class,split\n" + "".join(f"{a},{b},{c}\n" for a, b, c in rows))
    return p


def test_split_file_lists_one_image_twice_under_two_spellings(data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    split = _split(tmp_path, [("crack/crack_0.png", "crack", "pool"), ("./crack/crack_0.png", "crack", "test"),
                              ("pore/pore_0.png", "pore", "test")])
    line = _fails_cleanly(["bench", str(data), "--out", str(tmp_path / "b"), "--split-file", str(split)], capsys,
                          r"lists an image twice \('crack/crack_0.png' and './crack/crack_0.png' are the same image")
    assert str(split) in line and "list each image once" in line and "bug" not in line


@pytest.mark.parametrize("path", ["../../etc/passwd", "/etc/passwd", "crack/../../outside.png"])
def test_split_paths_outside_the_data_folder(path: str, data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    split = _split(tmp_path, [(path, "crack", "pool"), ("pore/pore_0.png", "pore", "test")])
    line = _fails_cleanly(["bench", str(data), "--out", str(tmp_path / "b"), "--split-file", str(split)], capsys,
                          (r"absolute path\(s\) .*" if path.startswith("/") else r"outside DATA_DIR .*")
                          + path.split("/")[-1].replace(".", r"\."))
    assert f"({path})" in line and "not a readable image" not in line  # refused by name, not as an unreadable file


def test_a_class_with_one_image(tmp_path: Path, data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    few = tmp_path / "few"
    shutil.copytree(data, few)
    for p in sorted((few / "pore").iterdir())[1:]:
        p.unlink()
    line = _fails_cleanly(["bench", str(few), "--out", str(tmp_path / "b"), "--per-class", "1"], capsys, "class 'pore' has 1 image")
    assert "index" not in line
    split = _split(tmp_path, [("crack/crack_0.png", "crack", "pool"), ("crack/crack_1.png", "crack", "test"),
                              ("pore/pore_0.png", "pore", "test")])
    line = _fails_cleanly(["bench", str(few), "--out", str(tmp_path / "b2"), "--split-file", str(split), "--per-class", "1"], capsys,
                          "'pore' has 0 pool images.*add pool images to 'pore'")
    assert "at most 0" not in line


def test_collapse_warning_once_and_consistent(data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from augvae.config import ModelConfig, recipe_config
    from augvae.data.images import load_folder
    from augvae.training import train

    same = load_folder(data, 28).subset([0, 0, 0, 0])  # one image four times: one cluster
    res = train(same, ModelConfig(image_size=28, latent_dim=2), recipe_config("small-set", epochs=2, batch_size=4), progress=False)
    assert len(res.warnings) == 1
    msg = res.warnings[0]
    assert "posterior collapse" in msg and "of 2 latent dimensions are active" not in msg


def test_unknown_background_class(data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    line = _fails_cleanly(["train", str(data), "--out", str(tmp_path / "m"), "--background-class", "ok", "--image-size", "28"], capsys,
                          "background class 'ok' is not one of the classes .*clean")
    assert "(clean, crack, pore)" in line and not (tmp_path / "m" / "model.safetensors").exists()


# ------------------------------------------------------------------------------------ 6-8. the Python API
def test_mixed_dataset_label_outside_the_classes(model: Path) -> None:
    from augvae.data import MixedDataset
    from augvae.errors import DataError

    real = [(torch.rand(1, 28, 28), 7), (torch.rand(1, 28, 28), 1)]
    mixed = MixedDataset(model, real, ratio=0.5, policy="same-class")
    with pytest.raises(DataError, match=r"label of item 0 of the wrapped dataset: 7 is not a class index in \[0, 3\) \(classes: clean, crack, pore\)"):
        for i in range(len(mixed)):
            mixed[i]


def test_torchvision_transform_takes_numpy_images_and_tensor_labels(model: Path) -> None:
    import numpy as np

    from augvae.torchvision import VAEOverlay

    t = VAEOverlay(model, p=1.0)
    torch.manual_seed(0)
    image = np.full((28, 28), 128, np.uint8)
    out, label = t(image, torch.tensor(0))  # class 0 is 'clean': a defect is put onto it
    assert isinstance(out, np.ndarray) and out.dtype == np.uint8 and out.shape == (28, 28)
    assert isinstance(label, torch.Tensor) and label.ndim == 0 and int(label) in (1, 2)
    assert not np.array_equal(out, image)


def test_torchvision_transform_names_a_wrong_label(model: Path) -> None:
    from augvae.errors import InputError
    from augvae.torchvision import VAEOverlay

    t = VAEOverlay(model, p=1.0, policy="same-class")
    with pytest.raises(InputError, match=r"no integer label \(it holds: Tensor of shape \(1, 28, 28\).*, float\)"):
        t(torch.rand(1, 28, 28), 1.0)
    with pytest.raises(InputError, match=r"no integer label .*Tensor of shape \(3,\) and dtype torch.float32"):
        t(torch.rand(1, 28, 28), torch.tensor([0.0, 1.0, 0.0]))  # a one-hot label: say what came and what is expected
    with pytest.raises(InputError, match=r"label 5 is not a class index in \[0, 3\)"):
        t(torch.rand(1, 28, 28), 5)


def test_overlay_recipe_keeps_the_folder_classes(data: Path, tmp_path: Path) -> None:
    """The bug of issue 10: an overlay-recipe model listed one class per source, so labels meant the wrong classes."""
    import albumentations as A
    import numpy as np

    from augvae.albumentations import VAEOverlay as AlbuOverlay
    from augvae.data import MixedDataset
    from augvae.errors import InputError
    from augvae.torchvision import BatchVAEOverlay, VAEOverlay

    out = tmp_path / "overlay"
    srcs = ["crack/crack_0.png", "crack/crack_1.png", "pore/pore_0.png", "pore/pore_1.png", "clean/clean_0.png"]
    assert main(["train", str(data), "--out", str(out), "--recipe", "overlay", "--sources", *srcs, "--copies", "4", "--epochs", "1",
                 "--image-size", "28", "-q"]) == 0
    meta = json.loads((out / "config.json").read_text())["data"]
    assert meta["classes"] == ["clean", "crack", "pore"]
    assert [meta["classes"][i] for i in meta["labels"]] == ["crack", "crack", "pore", "pore", "clean"]
    img = np.full((28, 28), 120, np.uint8)
    for y in (1, 2):  # same-class: every source of the image's folder class, and the label stays
        t = A.Compose([AlbuOverlay(out, p=1.0, policy="same-class", formulation="residual")], seed=y)
        assert t(image=img, label=y)["label"] == y
        torch.manual_seed(y)
        assert VAEOverlay(out, p=1.0, policy="same-class", formulation="residual")(torch.rand(1, 28, 28), y)[1] == y
    ob = A.Compose([AlbuOverlay(out, p=1.0, policy="onto-background", formulation="residual")], seed=0)
    assert all(ob(image=img, label=0)["label"] in (1, 2) for _ in range(5))  # a clean image gets a crack or a pore
    with pytest.raises(InputError, match=r"label 8 is not a class index in \[0, 3\) \(classes: clean, crack, pore\)"):
        A.Compose([AlbuOverlay(out, p=1.0)], seed=0)(image=img, label=8)
    _, soft = BatchVAEOverlay(out, p=1.0, policy="soft", num_classes=3)(torch.rand(4, 1, 28, 28), torch.tensor([0, 1, 2, 1]))
    assert soft.shape == (4, 3)
    mixed = MixedDataset(out, [(torch.rand(1, 28, 28), i % 3) for i in range(6)], ratio=0.5, policy="same-class",
                         formulation="residual")
    assert [mixed[i][1] for i in range(6, 12)] == [i % 3 for i in range(6)]
    # another label order: classes=[...] maps them; a name the model does not know is an error, not a guess
    swapped = VAEOverlay(out, p=1.0, policy="same-class", formulation="residual", classes=["pore", "crack", "clean"])
    torch.manual_seed(0)
    assert swapped(torch.rand(1, 28, 28), 0)[1] == 0
    from augvae.errors import ConfigError

    with pytest.raises(ConfigError, match=r"do not match the model's classes .*'scratch'"):
        VAEOverlay(out, p=1.0, classes=["crack", "scratch", "clean"])(torch.rand(1, 28, 28), 0)


# ------------------------------------------------------------------------------------ found in review (second pass)
def test_inspect_does_not_take_a_folder_with_the_users_index_html(model: Path, data: Path, tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "site"
    out.mkdir()
    (out / "index.html").write_text("<p>my own page</p>")  # one of inspect's file names, but not inspect's folder
    (out / "photo.png").write_bytes(b"mine")
    line = _fails_cleanly(["inspect", str(model), str(data), "--out", str(out)], capsys, "non-empty folder that augvae did not write", out)
    assert "index.html, photo.png" in line and (out / "index.html").read_text() == "<p>my own page</p>"


def test_an_output_of_another_kind_is_not_replaced(model: Path, data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "gen"
    assert main(["generate", str(model), "--out", str(out), "--mode", "prior", "--n", "2", "-q"]) == 0
    _fails_cleanly(["inspect", str(model), str(data), "--out", str(out)], capsys, "holds an augvae generate folder, not a inspect", out)


def test_an_interrupted_swap_puts_the_earlier_output_back(tmp_path: Path) -> None:
    from augvae._io import output_folder

    out = tmp_path / "figs"
    with output_folder(out, "inspect") as tmp:
        (tmp / "a.txt").write_text("first")
    # A writer killed between moving the old output aside and moving the new one in leaves this behind:
    os.replace(out, tmp_path / ".figs.old-99999")
    with pytest.raises(RuntimeError), output_folder(out, "inspect") as tmp:
        raise RuntimeError("the next run fails too")
    assert (out / "a.txt").read_text() == "first"  # as it was before the killed run
    assert not list(tmp_path.glob(".figs.old-*")) and not list(tmp_path.glob(".figs.partial-*"))


def test_a_failed_final_move_restores_the_earlier_output(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import augvae._io as io_mod
    from augvae.errors import OutputError

    out = tmp_path / "gen"
    with io_mod.output_folder(out, "generate") as tmp:
        (tmp / "a.txt").write_text("first")
    real = io_mod.os.replace

    def replace(src: Any, dst: Any) -> None:
        if ".partial-" in str(src):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real(src, dst)

    monkeypatch.setattr(io_mod.os, "replace", replace)
    with pytest.raises(OutputError, match="disk is full"), io_mod.output_folder(out, "generate") as tmp:
        (tmp / "a.txt").write_text("second")
    assert (out / "a.txt").read_text() == "first"


def test_bench_does_not_write_into_the_users_folder(data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "mine"
    out.mkdir()
    (out / "thesis.tex").write_text("do not touch")
    (out / ".draft.tmp").write_text("hidden, but mine")
    _fails_cleanly(["bench", str(data), "--out", str(out), "--arms", "original", "--per-class", "2", "--seeds", "1"], capsys,
                   "non-empty folder that augvae did not write", out)
    assert (out / ".draft.tmp").exists()


def test_a_damaged_bench_json_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    (out / "cells").mkdir(parents=True)
    (out / "cells" / "small-cnn__original__k2__s0.json").write_text(json.dumps({"id": "small-cnn__original__k2__s0", "arm": "original"}))
    (out / "bench.json").write_text("{not json")  # e.g. a disk that filled up under another tool
    line = _fails_cleanly(["bench", "--report-only", "--out", str(out)], capsys, r"bench\.json cannot be read")
    assert str(out / "bench.json") in line and "rerunning the bench command" in line
    assert not (out / "report.md").exists()


def test_a_mask_that_is_a_decompression_bomb(data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    from PIL import Image

    masks = tmp_path / "masks"
    for cls in ("crack", "pore"):
        (masks / cls).mkdir(parents=True)
        for p in sorted((data / cls).glob("*.png")):
            Image.new("L", (28, 28), 0).save(masks / cls / p.name)
    big = sorted((masks / "crack").glob("*.png"))[0]
    Image.new("L", (400, 400), 0).save(big)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10_000)  # the 400x400 mask is above the limit, the 28x28 images are not
    line = _fails_cleanly(["train", str(data), "--out", str(tmp_path / "m"), "--image-size", "28", "--epochs", "1", "-q",
                           "--background-class", "clean", "--masks", str(masks)], capsys, r"too large.*decompression-bomb")
    assert str(big) in line and not (tmp_path / "m" / "model.safetensors").exists()  # names the mask; trains nothing


def test_weights_are_not_saved_over_a_trained_folder(model: Path, tmp_path: Path) -> None:
    from augvae import ConvVAE
    from augvae.errors import OutputError

    trained = tmp_path / "trained"
    shutil.copytree(model, trained)
    before = _snapshot(trained)
    with pytest.raises(OutputError, match="trained model folder .*latents.safetensors.* save into a new folder"):
        ConvVAE(image_size=28, latent_dim=2).save_pretrained(trained)
    with pytest.raises(OutputError, match="trained model folder"):
        ConvVAE(image_size=28, latent_dim=2).save(trained)
    assert _snapshot(trained) == before


def test_save_keeps_the_sections_it_is_given(tmp_path: Path) -> None:
    from augvae import ConvVAE
    from augvae.checkpoint import read_config

    m = ConvVAE(image_size=28, latent_dim=2)
    data = {"classes": ["a", "b"], "labels": [0, 1], "names": ["x", "y"]}
    latents = {"mu": torch.zeros(2, 2), "logvar": torch.zeros(2, 2), "labels": torch.tensor([0, 1])}
    m.save(tmp_path / "m", data=data, latents=latents)
    assert read_config(tmp_path / "m")[2]["classes"] == ["a", "b"]
    assert load_file(str(tmp_path / "m" / "latents.safetensors"))["mu"].shape == (2, 2)


def test_load_of_a_missing_relative_path_never_reaches_the_network(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub

    from augvae import ConvVAE
    from augvae.errors import ModelFolderError

    def no_network(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("ConvVAE.load tried the Hub")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", no_network)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ModelFolderError, match="does not exist"):
        ConvVAE.load("runs/model")  # looks like a Hub id, but load is local only


def test_a_wrong_label_fails_on_every_call_not_only_when_the_transform_fires(model: Path) -> None:
    from augvae.errors import InputError
    from augvae.torchvision import VAEOverlay

    t = VAEOverlay(model, p=0.0, policy="same-class")  # never fires
    for _ in range(3):
        with pytest.raises(InputError, match="no integer label"):
            t(torch.rand(1, 28, 28), 1.0)


def test_a_model_folder_killed_before_its_first_checkpoint_is_taken_again(model: Path, data: Path, tmp_path: Path) -> None:
    out = tmp_path / "killed"
    out.mkdir()
    shutil.copy(model / "config.json", out / "config.json")  # all a run killed in its first epoch leaves
    assert main(["train", str(data), "--out", str(out), "--image-size", "28", "--epochs", "1", "--batch-size", "4", "-q",
                 "--background-class", "clean"]) == 0
    assert (out / "model.safetensors").is_file()


def _tiny_bench(data: Path, out: Path, *extra: str) -> list[str]:
    return ["bench", str(data), "--out", str(out), "--arms", "original", "--per-class", "2", "--seeds", "2", "--image-size", "28",
            "--steps", "4", "--batch-size", "4", "--test-fraction", "0.5", "--threads", "1", "--cache-dir", str(out.parent / "cache"),
            "--no-convergence-check", "--no-grids", "-q", *extra]


def test_a_damaged_cached_classifier_is_trained_again(data: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    out = tmp_path / "run"
    assert main(_tiny_bench(data, out)) == 0
    cell = out / "cells" / "small-cnn__original__k2__s0.json"
    first = json.loads(cell.read_text())["metrics"]
    [cached] = (tmp_path / "cache" / "ref").rglob("small-cnn-k2-s0.safetensors")
    cached.write_bytes(cached.read_bytes()[:100])  # e.g. a disk that filled up while it was written by an older augvae
    cell.unlink()
    with caplog.at_level("WARNING", logger="augvae"):
        assert main(_tiny_bench(data, out)) == 0
    assert any("is damaged" in r.getMessage() and "training it again" in r.getMessage() for r in caplog.records)
    assert json.loads(cell.read_text())["metrics"] == first  # trained again from the same seed, not read half
    load_file(str(cached))  # and the cache file is whole again


def test_a_dead_bench_worker_gives_one_line_and_cancels_the_queue(data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    import concurrent.futures as cf
    from concurrent.futures.process import BrokenProcessPool

    shutdowns: list[dict[str, Any]] = []

    class DyingPool:  # what ProcessPoolExecutor does when the kernel kills a worker (out of memory): every future breaks
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            pass

        def submit(self, fn: Callable[..., Any], *args: Any) -> cf.Future[Any]:
            fut: cf.Future[Any] = cf.Future()
            fut.set_exception(BrokenProcessPool("A process in the process pool was terminated abruptly"))
            return fut

        def shutdown(self, wait: bool = True, cancel_futures: bool = False) -> None:
            shutdowns.append({"wait": wait, "cancel_futures": cancel_futures})

    monkeypatch.setattr(cf, "ProcessPoolExecutor", DyingPool)
    line = _fails_cleanly(_tiny_bench(data, tmp_path / "run", "--jobs", "2"), capsys, "a bench worker process died")
    assert "rerun the same command" in line and "fewer --jobs" in line
    assert shutdowns == [{"wait": True, "cancel_futures": True}]  # the queued cells are dropped, not run for hours
