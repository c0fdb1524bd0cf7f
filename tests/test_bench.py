"""The benchmark harness: a tiny end-to-end run, its statistics, resumption, leak checks and errors."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from augvae.bench.config import ARMS as ALL_ARMS
from augvae.bench.config import BenchConfig
from augvae.errors import AugvaeError, ConfigError, DataError

#: Every arm that runs without a defect-free class (relabel gives defect-free images a defect's label).
ARMS = tuple(a for a in ALL_ARMS if not a.endswith("relabel"))
# A bench that finishes in seconds: 32 px, a few steps, 2 seeds, k in {2, 3}.
TINY = {"per_class": (2, 3), "seeds": 2, "image_size": 32, "steps": 6, "batch_size": 8, "vae_steps": 8, "prior_steps": 4,
        "vae": {"latent_dim": 4, "hidden_dim": 16}, "test_fraction": 0.4, "threads": 1, "convergence_check": False}


@pytest.fixture(scope="module")
def bench_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Synthetic class folders: 4 classes x 7 images at 32 px."""
    from augvae.data.synthetic import write_dataset

    return write_dataset(tmp_path_factory.mktemp("bench_data"), n_per_class=7, size=32, seed=3)


@pytest.fixture(scope="module")
def tiny_run(bench_data: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, BenchConfig, dict]:
    from augvae.bench.runner import run_bench

    out = tmp_path_factory.mktemp("bench_out")
    cfg = BenchConfig(arms=ARMS, **TINY)
    result = run_bench(bench_data, out, cfg, progress=False, command=["augvae", "bench", "test"])
    return out, cfg, result


# ------------------------------------------------------------------------------------ end to end
def test_tiny_bench_writes_every_file(tiny_run: tuple[Path, BenchConfig, dict]) -> None:
    out, cfg, result = tiny_run
    n_cells = len(ARMS) * 2 * 2
    assert len(result["ran"]) == n_cells and not result["skipped"]
    assert len(list((out / "cells").glob("*.json"))) == n_cells
    for name in ("results.json", "report.md", "accuracy_vs_k.png", "per_class_f1.png", "bench.json", "split.csv"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    assert sorted(p.name for p in (out / "grids").glob("*.png")) == [
        f"{kind}-k{k}-s{s}.png" for kind in sorted(("overlay", "prior", "transplant", "blurmask", "cutpaste")) for k in (2, 3)
        for s in (0, 1)]
    res = json.loads((out / "results.json").read_text())
    assert res["complete"] and res["command"] == ["augvae", "bench", "test"]
    assert {"torch", "timm", "albumentations", "scipy", "augvae"} <= set(res["versions"])
    assert len(res["cells"]) == n_cells and len(res["summary"]) == len(ARMS) * 2
    assert {c["versus"] for c in res["comparisons"]} == {"original", "classic"}
    assert {"accuracy_vs_k.png", "per_class_f1.png"} <= set(res["figures"])
    cell = json.loads((out / "cells" / "small-cnn__vae__k3__s1.json").read_text())
    m = cell["metrics"]
    assert set(m) == {"accuracy", "macro_f1", "balanced_accuracy", "per_class_f1", "confusion", "auroc"} and 0 <= m["auroc"] <= 1
    assert np.asarray(m["confusion"]).shape == (4, 4) and np.asarray(m["confusion"]).sum() == cell["n_test"]
    assert cell["n_train_real"] == 12 and 0 < cell["n_generated"] <= cfg.steps * cfg.batch_size and cell["steps"] == cfg.steps
    q = cell["quality"]["overall"]
    assert 0.0 <= q["label_agreement"] <= 1.0 and q["nn_rmse"] > 0 and q["n_generated"] == 64
    assert cell["settings"] == cfg.cell_settings() and cell["train_seconds"] > 0
    report = (out / "report.md").read_text()
    assert "Paired difference in accuracy versus `original`" in report and "paired t" in report and "Wilcoxon" in report
    assert any("Budget-cut run: 6 optimizer steps" in line for line in report.splitlines()[:12])  # in the first lines
    assert "best generated arm against the best baseline" in report and "best transplant arm against the best control" in report


def test_every_arm_trains_the_same_number_of_steps(tiny_run: tuple[Path, BenchConfig, dict]) -> None:
    out, cfg, _ = tiny_run
    for p in (out / "cells").glob("*__k2__s0.json"):
        cell = json.loads(p.read_text())
        assert cell["steps"] == cfg.steps and cell["fit"]["optimizer_steps"] == cfg.steps  # counted, not echoed
        assert all(np.isfinite(cell["fit"]["loss_curve"]))


def test_second_run_skips_finished_cells(tiny_run: tuple[Path, BenchConfig, dict], bench_data: Path) -> None:
    from augvae.bench.runner import run_bench

    out, cfg, _ = tiny_run
    before = {p.name: p.stat().st_mtime_ns for p in (out / "cells").glob("*.json")}
    again = run_bench(bench_data, out, cfg, progress=False, report=False)
    assert again["ran"] == [] and len(again["skipped"]) == len(before)
    assert {p.name: p.stat().st_mtime_ns for p in (out / "cells").glob("*.json")} == before


def test_rerun_with_other_settings_is_refused(tiny_run: tuple[Path, BenchConfig, dict], bench_data: Path) -> None:
    from augvae.bench.runner import run_bench

    out, cfg, _ = tiny_run
    with pytest.raises(ConfigError, match="different settings: steps"):
        run_bench(bench_data, out, cfg.replace(steps=7), progress=False)


def test_interrupted_grid_resumes_only_missing_cells(bench_data: Path, tmp_path: Path) -> None:
    from augvae.bench.runner import run_bench

    cfg = BenchConfig(arms=("original", "classic"), **{**TINY, "per_class": (2,), "seeds": 1})
    first = run_bench(bench_data, tmp_path, cfg, cells="0", progress=False)  # as a killed run would leave it
    assert first["ran"] == ["small-cnn__original__k2__s0"] and first["report"] is None
    second = run_bench(bench_data, tmp_path, cfg, progress=False)
    assert second["ran"] == ["small-cnn__classic__k2__s0"] and second["skipped"] == ["small-cnn__original__k2__s0"]
    assert second["report"] is not None


def test_cached_reference_equals_original_cell(tiny_run: tuple[Path, BenchConfig, dict]) -> None:
    """The original arm's classifier is cached and reused as the quality reference: one model."""
    out, _, _ = tiny_run
    refs = list((out / "cache" / "ref").rglob("*.safetensors"))
    assert len(refs) == 4  # one per (k, seed)
    cell = json.loads((out / "cells" / "small-cnn__original__k2__s0.json").read_text())
    assert cell["fit"]["cached"] is False


# ------------------------------------------------------------------------------------ statistics
def test_summary_matches_scipy_on_known_numbers() -> None:
    from scipy import stats

    from augvae.bench.stats import summarize

    x = [1.0, 2.0, 3.0, 4.0, 5.0]
    s = summarize(x)
    assert s["mean"] == 3.0 and s["sd"] == pytest.approx(math.sqrt(2.5))
    # t(0.975, 4) = 2.7764451, sem = sqrt(2.5 / 5): half width 1.963243
    assert s["ci_half"] == pytest.approx(1.9632432, abs=1e-6)
    lo, hi = stats.t.interval(0.95, 4, loc=3.0, scale=stats.sem(x))
    assert (s["ci_low"], s["ci_high"]) == pytest.approx((lo, hi))
    one = summarize([0.7])
    assert one["mean"] == 0.7 and math.isnan(one["ci_half"])


def test_summary_says_what_each_arm_calls_each_class() -> None:
    """Two seeds of a two-class arm: the predicted shares and recalls are means over seeds of the confusion counts."""
    from augvae.bench.report import calls_table, summarize_cells

    def cell(seed: int, confusion: list[list[int]]) -> dict:
        return {"classifier": "c", "arm": "classic", "k": 5, "seed": seed, "train_seconds": 1.0,
                "metrics": {"accuracy": 0.5, "macro_f1": 0.5, "balanced_accuracy": 0.5,
                            "per_class_f1": {"defective": 0.5, "ok": 0.5}, "confusion": confusion}}

    # rows: true class, columns: predicted class (sklearn's order). Seed 0 calls 10 of 100 images defective, seed 1 30.
    row = summarize_cells([cell(0, [[8, 42], [2, 48]]), cell(1, [[25, 25], [5, 45]])])["summary"][0]
    assert row["predicted_share"] == pytest.approx({"defective": 0.2, "ok": 0.8})
    assert row["recall"] == pytest.approx({"defective": (8 / 50 + 25 / 50) / 2, "ok": (48 / 50 + 45 / 50) / 2})
    assert "| classic | defective 0.200 (0.330), ok 0.800 (0.930) |" in calls_table([row], "c")


def test_paired_comparison_matches_scipy_on_known_numbers() -> None:
    from scipy import stats

    from augvae.bench.stats import paired_comparison

    a = [0.62, 0.71, 0.55, 0.80, 0.68, 0.74]
    b = [0.60, 0.65, 0.56, 0.72, 0.61, 0.70]
    d = np.subtract(a, b)  # 0.02 0.06 -0.01 0.08 0.07 0.04
    r = paired_comparison(a, b)
    assert r["mean_diff"] == pytest.approx(0.26 / 6)
    assert r["p_ttest"] == pytest.approx(stats.ttest_rel(a, b).pvalue)
    assert r["t"] == pytest.approx(d.mean() / (d.std(ddof=1) / math.sqrt(6)))
    assert r["p_wilcoxon"] == pytest.approx(stats.wilcoxon(a, b).pvalue)
    # Ranks of |d|: 0.01->1 (negative), so W = min(W+, W-) = 1 and the exact two-sided p = 4/64.
    assert r["w"] == 1.0 and r["p_wilcoxon"] == pytest.approx(4 / 64)
    assert r["dz"] == pytest.approx(d.mean() / d.std(ddof=1))
    assert (r["wins"], r["ties"], r["losses"]) == (5, 0, 1)
    lo, hi = stats.t.interval(0.95, 5, loc=d.mean(), scale=stats.sem(d))
    assert (r["ci_low"], r["ci_high"]) == pytest.approx((lo, hi))


def test_paired_comparison_degenerate_cases() -> None:
    from augvae.bench.stats import paired_comparison

    same = paired_comparison([0.5, 0.6, 0.7], [0.5, 0.6, 0.7])
    assert same["mean_diff"] == 0 and math.isnan(same["p_ttest"]) and math.isnan(same["p_wilcoxon"]) and same["ties"] == 3
    with pytest.raises(AugvaeError, match="equal length"):
        paired_comparison([1.0, 2.0], [1.0])


def test_holm_on_known_numbers() -> None:
    from augvae.bench.stats import holm

    # sorted 0.01, 0.02, 0.03, 0.04 -> 4*0.01, 3*0.02, 2*0.03, 1*0.04 -> monotone max: .04 .06 .06 .06
    assert holm([0.04, 0.01, 0.03, 0.02]) == pytest.approx([0.06, 0.04, 0.06, 0.06])


def test_classification_metrics_match_sklearn_on_known_numbers() -> None:
    from sklearn import metrics

    from augvae.bench.stats import classification_metrics

    y = [0, 0, 0, 1, 1, 2, 2, 2, 2]
    p = [0, 1, 0, 1, 1, 2, 0, 2, 1]
    m = classification_metrics(y, p, ["a", "b", "c"])
    assert m["accuracy"] == pytest.approx(6 / 9)
    # recalls 2/3, 2/2, 2/4: balanced accuracy = mean = 0.7222...
    assert m["balanced_accuracy"] == pytest.approx((2 / 3 + 1 + 0.5) / 3)
    assert m["balanced_accuracy"] == pytest.approx(metrics.balanced_accuracy_score(y, p))
    # F1: a: P 2/3 R 2/3 -> 2/3; b: P 2/4 R 1 -> 2/3; c: P 1 R 1/2 -> 2/3
    assert m["per_class_f1"] == pytest.approx({"a": 2 / 3, "b": 2 / 3, "c": 2 / 3})
    assert m["macro_f1"] == pytest.approx(metrics.f1_score(y, p, average="macro"))
    assert m["confusion"] == [[2, 1, 0], [0, 2, 0], [1, 1, 2]]


def test_frechet_distance_matches_scipy_sqrtm() -> None:
    from scipy import linalg

    from augvae.bench.quality import frechet_distance

    rng = np.random.default_rng(0)
    for n1, n2, d in [(40, 60, 8), (200, 150, 5), (10, 12, 32)]:
        a = rng.normal(size=(n1, d))
        b = rng.normal(1.0, 2.0, size=(n2, d)) @ rng.normal(size=(d, d))
        s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
        ref = ((a.mean(0) - b.mean(0)) ** 2).sum() + np.trace(s1 + s2 - 2 * np.real(linalg.sqrtm(s1 @ s2)))
        assert frechet_distance(a, b) == pytest.approx(ref, rel=1e-6)
    # two Gaussians with identity covariance whose means differ by 1 in each of 4 dims: FD -> 4
    big = rng.normal(size=(20000, 4))
    assert frechet_distance(big[:10000], big[10000:] + 1.0) == pytest.approx(4.0, abs=0.1)


def test_kernel_distance_is_unbiased_and_detects_shift() -> None:
    from augvae.bench.quality import kernel_distance, nearest_rmse

    rng = np.random.default_rng(1)
    x = rng.normal(size=(400, 6))
    same, shifted = kernel_distance(x[:200], x[200:]), kernel_distance(x[:200], x[200:] + 1.0)
    assert abs(same) < 0.1 and shifted > 5.0  # about 0.06 and 10.6
    imgs = torch.rand(5, 1, 8, 8)
    assert torch.allclose(nearest_rmse(imgs, imgs), torch.zeros(5))


# ------------------------------------------------------------------------------------ leaks
def _write_split(path: Path, data_dir: Path, test_per_class: int = 2, drop_test_of: str | None = None) -> Path:
    rows = []
    for cls_dir in sorted(p for p in data_dir.iterdir() if p.is_dir()):
        files = sorted(cls_dir.glob("*.png"))
        for i, f in enumerate(files):
            split = "test" if i < test_per_class and cls_dir.name != drop_test_of else "pool"
            rows.append({"path": f"{cls_dir.name}/{f.name}", "class": cls_dir.name, "split": split})
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["path", "class", "split"])
        w.writeheader()
        w.writerows(rows)
    return path


def test_test_rows_are_never_trained_on(bench_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Record every image the VAEs and the classifiers train on; none is a test row of the split file."""
    from augvae import training
    from augvae.bench import arms, runner
    from augvae.bench import split as bsplit

    split = _write_split(tmp_path / "splits.csv", bench_data)
    with open(split, newline="") as fh:
        test_paths = {str((bench_data / r["path"]).resolve()) for r in csv.DictReader(fh) if r["split"] == "test"}
    seen_vae, seen_clf = [], []
    real_train, real_fit = training.train, arms.fit_classifier

    def spy_train(data, *a, **kw):
        seen_vae.append(data)
        return real_train(data, *a, **kw)

    def spy_fit(model, ts, *a, **kw):
        seen_clf.append(ts.images)
        return real_fit(model, ts, *a, **kw)

    from augvae.bench import cells

    monkeypatch.setattr(arms, "train", spy_train)
    monkeypatch.setattr(cells, "fit_classifier", spy_fit)
    out = tmp_path / "out"
    cfg = BenchConfig(arms=("original", "vae", "vae-prior"), **{**TINY, "per_class": (3,), "seeds": 1})
    runner.run_bench(bench_data, out, cfg, split_file=split, progress=False)
    bd = bsplit.prepare_data(bench_data, cfg, split)
    test_images = bd.data.images[bd.test]
    assert len(seen_vae) == 1 + 4 and len(seen_clf) == 3  # shared VAE + 4 per-class VAEs; 3 classifiers
    for data in seen_vae:
        assert not set(data.paths) & test_paths
        for img in data.images:  # and not a test image under another name
            assert not (test_images == img).flatten(1).all(1).any()
    for images in seen_clf:
        for img in images:  # the real training images (generated ones are made from them during training)
            assert not (test_images == img).flatten(1).all(1).any()
    for p in (out / "cells").glob("*.json"):
        used = {str((bench_data / t).resolve()) for t in json.loads(p.read_text())["train_paths"]}
        assert not used & test_paths


def test_leak_check_stops_a_leaking_draw(bench_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from augvae.bench import cells, split

    cfg = BenchConfig(arms=("original",), **{**TINY, "per_class": (2,), "seeds": 1})
    bd = split.prepare_data(bench_data, cfg)
    monkeypatch.setattr(cells, "draw_train", lambda bd, k, seed, *a: np.concatenate([bd.pool[:2], bd.test[:1]]))
    with pytest.raises(split.TestLeakError, match="test image"):
        cells.run_cell(bd, cells.Cell("small-cnn", "original", 2, 0), cfg, tmp_path, tmp_path / "cache", steps=4)
    assert not (tmp_path / "cells").exists()


def test_group_file_keeps_groups_on_one_side(bench_data: Path, tmp_path: Path) -> None:
    from augvae.bench.split import prepare_data

    groups = tmp_path / "groups.csv"
    with open(groups, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "group"])
        for cls_dir in sorted(p for p in bench_data.iterdir() if p.is_dir()):
            for i, f in enumerate(sorted(cls_dir.glob("*.png"))):
                w.writerow([f"{cls_dir.name}/{f.name}", f"part{i % 3}"])  # 3 parts, each spanning every class
    cfg = BenchConfig(**{**TINY, "per_class": (1,), "seeds": 1, "test_fraction": 0.34})
    bd = prepare_data(bench_data, cfg, group_file=groups)
    part = {r: f"part{int(Path(r).stem.rsplit('_', 1)[1]) % 3}" for r in bd.rel_paths}
    test_parts = {part[bd.rel_paths[i]] for i in bd.test}
    pool_parts = {part[bd.rel_paths[i]] for i in bd.pool}
    assert test_parts and pool_parts and not test_parts & pool_parts
    split = _write_split(tmp_path / "splits.csv", bench_data)  # first 2 of each class in test: parts 0, 1 straddle
    with pytest.raises(DataError, match="both pool and test"):
        prepare_data(bench_data, cfg, split, groups)
    first = groups.read_text().splitlines()[1].split(",")[0]
    with open(groups, "a", newline="") as fh:
        csv.writer(fh).writerow([first, "part9"])  # the same image in a second group
    with pytest.raises(DataError, match=f"puts '{first}' in two groups"):
        prepare_data(bench_data, cfg, group_file=groups)


def test_a_random_split_that_cannot_serve_every_class_says_which_option_to_change(bench_data: Path, tmp_path: Path) -> None:
    """These were sklearn's errors, naming n_splits and test_size, which augvae's options do not have."""
    from augvae.bench.split import prepare_data

    groups = tmp_path / "groups.csv"
    rows = [f"{d.name}/{f.name},{d.name}" for d in sorted(p for p in bench_data.iterdir() if p.is_dir()) for f in d.glob("*.png")]
    groups.write_text("path,group\n" + "\n".join(rows) + "\n")  # one group per class: 4 groups, each holding a whole class
    cfg = BenchConfig(**{**TINY, "per_class": (1,), "seeds": 1, "test_fraction": 0.1})  # 10 folds of 4 groups
    with pytest.raises(DataError, match=r"4 group\(s\), too few for a random split with test_fraction 0.1 .*finer groups"):
        prepare_data(bench_data, cfg, group_file=groups)
    with pytest.raises(DataError, match=r"have no test images in the split \(random.*give them more groups"):
        prepare_data(bench_data, cfg.replace(test_fraction=0.5), group_file=groups)  # whole classes land in the test fold
    with pytest.raises(DataError, match=r"test_fraction 0.05 of 28 images gives 2 test image\(s\).*--test-fraction"):
        prepare_data(bench_data, cfg.replace(test_fraction=0.05))  # 4 classes need 4 test images
    lopsided = tmp_path / "lopsided"  # 3 images of one class, 60 of another: a stratified 10% rounds the small one to none
    from PIL import Image
    for name, n in (("rare", 3), ("common", 60)):
        (lopsided / name).mkdir(parents=True)
        for i in range(n):
            Image.new("L", (32, 32), 40 + i).save(lopsided / name / f"{i}.png")
    with pytest.raises(DataError, match=r"rare have no test images in the split \(random.*raise --test-fraction"):
        prepare_data(lopsided, cfg.replace(test_fraction=0.1))
    one = tmp_path / "one.csv"
    one.write_text("path,class,split\n" + "\n".join(f"{r.split(',')[0]},crack,{'test' if i % 2 else 'pool'}"
                                                      for i, r in enumerate(rows) if r.startswith("crack")) + "\n")
    with pytest.raises(DataError, match=r"at least 2 classes, found 1 \(crack\); list images of at least 2 classes in the split file"):
        prepare_data(bench_data, cfg, one)


# ------------------------------------------------------------------------------------ errors
def test_class_missing_from_test_is_a_clear_error(bench_data: Path, tmp_path: Path) -> None:
    from augvae.bench.split import prepare_data

    split = _write_split(tmp_path / "splits.csv", bench_data, drop_test_of="pore")
    with pytest.raises(DataError, match="pore have no test images"):
        prepare_data(bench_data, BenchConfig(**{**TINY, "per_class": (2,)}), split)


def test_per_class_larger_than_pool_is_a_clear_error(bench_data: Path, tmp_path: Path) -> None:
    from augvae.bench.split import prepare_data

    split = _write_split(tmp_path / "splits.csv", bench_data)  # 5 pool images per class
    with pytest.raises(DataError, match=r"--per-class 6 is larger than the pool .*lower --per-class to at most 5"):
        prepare_data(bench_data, BenchConfig(**{**TINY, "per_class": (2, 6)}), split)


def test_split_file_problems_are_clear_errors(bench_data: Path, tmp_path: Path) -> None:
    from augvae.bench.split import prepare_data

    cfg = BenchConfig(**{**TINY, "per_class": (1,)})
    bad = tmp_path / "bad.csv"
    bad.write_text("path,class,split\ncrack/nope.png,crack,test\n")
    with pytest.raises(DataError, match="do not exist.*crack/nope.png"):
        prepare_data(bench_data, cfg, bad)
    bad.write_text("file,label\na.png,crack\n")
    with pytest.raises(DataError, match="lacks column"):
        prepare_data(bench_data, cfg, bad)
    bad.write_text("path,class,split\ncrack/crack_0.png,crack,train\n")
    with pytest.raises(DataError, match="must be pool or test"):
        prepare_data(bench_data, cfg, bad)
    with pytest.raises(DataError, match="does not exist"):
        prepare_data(bench_data, cfg, tmp_path / "missing.csv")
    with pytest.raises(DataError, match="is a folder; pass the CSV file itself"):
        prepare_data(bench_data, cfg, tmp_path)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"arms": ("original", "gan")}, "unknown arm 'gan'"),
        ({"classifiers": ("resnet-18",)}, "unknown classifier 'resnet-18'.*resnet18"),
        ({"per_class": (0, 5)}, "per_class must hold positive"),
        ({"steps": -1}, "steps must be >= 0"),
        ({"policy": "random"}, "unknown label policy"),
        ({"classifier_weights": "w.pth"}, "must be a .safetensors file"),
        ({"arms": ("original", "original")}, "twice"),
        ({"ratio": -1.0}, "ratio must be"),
    ],
)
def test_bad_settings_are_clear_errors(kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        BenchConfig(**kwargs)


def test_cli_errors_are_one_line(bench_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from augvae.cli import main

    assert main(["bench", str(bench_data), "--out", str(tmp_path / "o"), "--arms", "original,gan"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("augvae bench: error: unknown arm 'gan'") and "\n" not in err
    assert main(["bench", str(bench_data), "--out", str(tmp_path / "o"), "--classifiers", "nosuchnet"]) == 2
    assert "unknown classifier 'nosuchnet'" in capsys.readouterr().err
    assert main(["bench", "--report-only", "--out", str(tmp_path / "empty")]) == 2
    assert "no finished cells" in capsys.readouterr().err


def test_cli_lists_cells_and_runs_one_then_reports(bench_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from augvae.cli import main

    out = tmp_path / "o"
    common = ["bench", str(bench_data), "--out", str(out), "--arms", "original,mixup", "--per-class", "2", "--seeds", "1",
              "--image-size", "32", "--steps", "4", "--batch-size", "8", "--test-fraction", "0.4", "--threads", "1", "-q"]
    assert main([*common, "--list-cells"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines == ["0\tsmall-cnn__original__k2__s0\ttodo", "1\tsmall-cnn__mixup__k2__s0\ttodo"]
    assert main([*common, "--cell", "1"]) == 0
    assert "--report-only" in capsys.readouterr().out
    assert main(["bench", "--report-only", "--out", str(out)]) == 0
    res = json.loads((out / "results.json").read_text())
    assert not res["complete"] and res["missing_cells"] == ["small-cnn__original__k2__s0"]


def test_report_to_writes_a_whole_report_and_keeps_the_users_files(tiny_run: tuple[Path, BenchConfig, dict], tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str],
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from augvae.bench import report
    from augvae.cli import main

    out, _, _ = tiny_run
    dest = tmp_path / "results"
    assert main(["bench", "--report-only", "--out", str(out), "--report-to", str(dest), "--no-grids"]) == 0
    first = {p.name: p.read_bytes() for p in dest.iterdir()}
    assert {"report.md", "results.json", "accuracy_vs_k.png", "per_class_f1.png"} <= set(first)
    # Writing again over an earlier report is fine; a report that fails half-way leaves the earlier one whole.
    real_text = report.write_text

    def fail_on_report_md(path: Path, text: str) -> None:
        if Path(path).name == "report.md":
            raise OSError(28, "No space left on device")
        real_text(path, text)

    monkeypatch.setattr(report, "write_text", fail_on_report_md)
    assert main(["bench", "--report-only", "--out", str(out), "--report-to", str(dest), "--no-grids"]) == 2
    capsys.readouterr()
    assert {p.name: p.read_bytes() for p in dest.iterdir()} == first
    monkeypatch.setattr(report, "write_text", real_text)
    # A folder with a file of the user's is refused, one line, untouched.
    (dest / "notes.txt").write_text("mine")
    before = {p.name: p.read_bytes() for p in dest.iterdir()}
    assert main(["bench", "--report-only", "--out", str(out), "--report-to", str(dest)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("augvae bench: error: --report-to") and "notes.txt" in err and "\n" not in err
    assert {p.name: p.read_bytes() for p in dest.iterdir()} == before
    (tmp_path / "a-file").write_text("mine")
    assert main(["bench", "--report-only", "--out", str(out), "--report-to", str(tmp_path / "a-file")]) == 2
    assert "--report-to" in capsys.readouterr().err and (tmp_path / "a-file").read_text() == "mine"


def test_parallel_jobs_give_the_same_cells(bench_data: Path, tmp_path: Path) -> None:
    from augvae.bench.results import load_cells
    from augvae.bench.runner import run_bench

    cfg = BenchConfig(arms=("original", "classic", "vae"), **{**TINY, "per_class": (2,), "seeds": 1})
    run_bench(bench_data, tmp_path / "one", cfg, progress=False)
    run_bench(bench_data, tmp_path / "two", cfg.replace(jobs=2), progress=False)
    one = {c["id"]: c["metrics"]["accuracy"] for c in load_cells(tmp_path / "one")}
    two = {c["id"]: c["metrics"]["accuracy"] for c in load_cells(tmp_path / "two")}
    assert one == two and len(one) == 3


def test_cells_that_share_a_model_wait_behind_cells_that_need_none(bench_data: Path, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """The first cell to need a shared VAE trains it; the others that need it queue behind the cells that need none."""
    from augvae.bench import runner

    seen: list[str] = []
    monkeypatch.setattr(runner, "run_cell", lambda bd, cell, *a, **kw: seen.append(cell.id) or {"id": cell.id})
    cfg = BenchConfig(arms=("vae", "original", "classic+transplant"), **{**TINY, "per_class": (2,), "seeds": 2})
    runner.run_bench(bench_data, tmp_path / "out", cfg, progress=False, report=False)
    # no defect-free class: the transplant arm extracts with the vae arm's VAE of its (k, seed)
    assert seen == ["small-cnn__vae__k2__s0", "small-cnn__original__k2__s0", "small-cnn__vae__k2__s1",
                    "small-cnn__original__k2__s1", "small-cnn__classic+transplant__k2__s0", "small-cnn__classic+transplant__k2__s1"]


def test_classifiers_build_and_refuse_pickles(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    from augvae.bench.classifiers import create_classifier, features

    m = create_classifier("small-cnn", 3, 1)
    assert features(m, torch.rand(2, 1, 32, 32)).shape == (2, 128)
    r = create_classifier("resnet18", 3, 1)
    assert r(torch.rand(2, 1, 32, 32)).shape == (2, 3)
    w = tmp_path / "w.safetensors"
    save_file(m.state_dict(), str(w))
    again = create_classifier("small-cnn", 3, 1, w)
    assert torch.equal(again.head.weight, m.head.weight)
    import timm

    imagenet_like = timm.create_model("resnet18", num_classes=1000, in_chans=3)  # stands in for a local pretrained file
    save_file(imagenet_like.state_dict(), str(tmp_path / "r18.safetensors"))
    adapted = create_classifier("resnet18", 3, 1, tmp_path / "r18.safetensors")  # via pretrained_cfg_overlay=dict(file=...)
    assert torch.allclose(adapted.conv1.weight, imagenet_like.conv1.weight.sum(1, keepdim=True))
    assert adapted.fc.weight.shape == (3, 512)
    with pytest.raises(ConfigError, match="safetensors"):
        create_classifier("small-cnn", 3, 1, tmp_path / "w.pth")
    with pytest.raises(ConfigError, match="do not fit"):
        create_classifier("small-cnn", 5, 1, w)



def test_a_diverging_classifier_stops_at_the_step_it_diverges() -> None:
    """A NaN loss never recovers: the loop stops at once with a one-line error, not after the remaining steps."""
    from augvae.bench.arms import ARM_SPECS, TrainingSet, fit_classifier

    class Blows(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin, self.calls = torch.nn.Linear(16, 2), 0

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            self.calls += 1
            out = self.lin(x.flatten(1))
            return out * float("nan") if self.calls >= 3 else out

    model = Blows()
    ts = TrainingSet(torch.rand(8, 1, 4, 4), torch.tensor([0, 1] * 4), 2)
    with pytest.raises(ConfigError, match=r"diverged at step 3 of 50 .*lower --lr"):
        fit_classifier(model, ts, BenchConfig(batch_size=4), 0, ARM_SPECS["original"], torch.device("cpu"), 50)
    assert model.calls == 3

def test_quick_comparison_returns_a_table(tmp_path: Path) -> None:
    from augvae.bench.quick import quick_comparison

    table = quick_comparison(tmp_path, seeds=1, progress=False, quick=True)
    assert table.startswith("| arm") and "original" in table and "classic" in table and "classic+transplant" in table
    assert (tmp_path / "run" / "report.md").is_file()
    pool = json.loads((tmp_path / "run" / "bench.json").read_text())["counts"]["clean"]["pool"]
    assert f"+ {pool} defect-free" in table  # the training set's real count, not an assumed split
    header, _, *rows = table.splitlines()
    au = header.split(" | ").index("AUROC (threshold-free)")
    assert all(0 <= float(r.split(" | ")[au].split(" ± ")[0]) <= 1 for r in rows)  # every arm's AUROC, a number


@pytest.mark.parametrize("policy", ["same-class", "soft"])
def test_overlays_onto_real_images(bench_data: Path, tmp_path: Path, policy: str) -> None:
    """overlay_base=real: a real training image plus decoded differences; k=1 gives the base itself."""
    from augvae.bench.arms import build_training_set
    from augvae.bench.split import draw_train, prepare_data

    cfg = BenchConfig(arms=("vae",), **{**TINY, "per_class": (3,), "seeds": 1}, overlay_base="real", policy=policy, ratio=2.0)
    bd = prepare_data(bench_data, cfg)
    train_set = bd.data.subset(draw_train(bd, 3, 0))
    ts = build_training_set("vae", train_set, cfg, tmp_path, bd.data_key, 3, 0)
    assert ts.bank is not None and ts.bank_targets is not None
    assert ts.bank.shape == (24, 1, 32, 32) and 0 <= float(ts.bank.min()) and float(ts.bank.max()) <= 1
    assert torch.allclose(ts.bank_targets.sum(1), torch.ones(24))
    if policy == "same-class":
        assert ts.bank_targets.sum(0).tolist() == [6.0] * 4  # balanced, one-hot
    one = build_training_set("vae", train_set, cfg.replace(overlay_k=1), tmp_path, bd.data_key, 3, 0)
    assert one.bank is not None
    for img in one.bank:  # each is a real training image, untouched
        assert (train_set.images == img).flatten(1).all(1).any()


def test_library_overlays_use_the_policy_module(bench_data: Path, tmp_path: Path) -> None:
    """overlay_base=library: augvae.overlay.engine.overlay_batch onto real training images, labels from the policy."""
    from augvae.bench.arms import build_training_set
    from augvae.bench.split import draw_train, prepare_data

    cfg = BenchConfig(arms=("vae",), **{**TINY, "per_class": (3,), "seeds": 1}, overlay_base="library")
    bd = prepare_data(bench_data, cfg)
    train_set = bd.data.subset(draw_train(bd, 3, 0))
    ts = build_training_set("vae", train_set, cfg, tmp_path, bd.data_key, 3, 0)
    assert ts.bank is not None and ts.bank_targets is not None
    assert ts.bank.shape == (12, 1, 32, 32) and 0 <= float(ts.bank.min()) and float(ts.bank.max()) <= 1
    assert ts.bank_targets.sum(0).tolist() == [3.0] * 4  # same-class: each input keeps its (one-hot) label
    soft = build_training_set("vae", train_set, cfg.replace(policy="soft"), tmp_path, bd.data_key, 3, 0)
    assert soft.bank_targets is not None and torch.allclose(soft.bank_targets.sum(1), torch.ones(12))


# ------------------------------------------------------------------------------------ budget, balance, defect-free setting
def test_auto_budget_convergence_check_and_budget_cut(bench_data: Path, tmp_path: Path) -> None:
    from augvae.bench.results import load_cells
    from augvae.bench.runner import run_bench

    cfg = BenchConfig(arms=("original", "vae"), **{**TINY, "per_class": (2,), "seeds": 2, "steps": 0, "auto_epochs": 2,
                                                   "min_steps": 3, "convergence_check": True})
    res = run_bench(bench_data, tmp_path, cfg, progress=False)
    assert res["steps"] == 3  # 2 passes over 8 images in batches of 8 = 2 steps, at least min_steps = 3
    long_cells = load_cells(tmp_path / "convergence")
    assert sorted(c["id"] for c in long_cells) == sorted(f"small-cnn__{a}__k2__s{s}" for a in ("original", "vae") for s in (0, 1))
    assert all(c["steps"] == 6 for c in long_cells)
    report = (tmp_path / "report.md").read_text()
    assert "Step budget: 3 optimizer steps" in report and "Convergence check: twice the steps" in report
    assert "same conclusion" in report and "Budget-cut" not in report
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["convergence"] and {"same_conclusion", "short", "long"} <= set(results["convergence"][0])
    cut = run_bench(bench_data, tmp_path / "cut", cfg.replace(steps=2, convergence_check=False), progress=False)
    assert cut["steps"] == 2
    first = (tmp_path / "cut" / "report.md").read_text().split("## Headline")[0]
    assert "Budget-cut run: 2 optimizer steps per classifier, below the auto budget of 3" in first
    assert "Convergence check: not run for this run" in first  # said in the first lines, not left out
    assert "Convergence check: not run" not in report.split("## Headline")[0]


def test_class_balanced_batches() -> None:
    from augvae.bench.arms import _batches, balanced_for

    labels = torch.tensor([0] * 90 + [1] * 10)
    cfg = BenchConfig()
    assert balanced_for(cfg, labels, 2) and not balanced_for(cfg, torch.tensor([0, 0, 1, 1]), 2)
    assert not balanced_for(cfg.replace(balanced="off"), labels, 2) and balanced_for(cfg.replace(balanced="on"), labels[:20], 2)
    gen = torch.Generator().manual_seed(0)
    drawn = torch.cat([next(it) for it in [_batches(labels, 64, True, gen)] for _ in range(50)])
    share = float((labels[drawn] == 1).float().mean())
    assert 0.45 < share < 0.55  # each class half of the samples, though it has a tenth of the images
    plain = torch.cat([next(it) for it in [_batches(labels, 50, False, gen)] for _ in range(4)])
    assert sorted(plain[:100].tolist()) == list(range(100))  # consecutive permutations: every image once per pass


def _defect_free_data(tmp_path: Path, defects: tuple[str, ...], n_defect: int, n_clean: int) -> Path:
    """A class folder per defect kind (``n_defect`` images each) and a ``clean`` one (``n_clean``), 32 px, in ``tmp_path/data``."""
    from augvae.data.synthetic import write_dataset

    write_dataset(tmp_path / "d", n_per_class=n_defect, size=32, seed=5, classes=defects, masks=False)
    write_dataset(tmp_path / "c", n_per_class=n_clean, size=32, seed=5, classes=("clean",), masks=False)
    data = tmp_path / "data"
    data.mkdir()
    for part in ("d", "c"):
        for sub in (tmp_path / part / "images").iterdir():
            sub.rename(data / sub.name)
    return data


def test_defect_free_setting_trains_every_arm_on_the_same_images(tmp_path: Path) -> None:
    from augvae.bench.results import load_cells
    from augvae.bench.runner import run_bench

    data = _defect_free_data(tmp_path, ("crack", "pore"), 6, 20)
    arms = ("original", "classic", "transplant", "classic+transplant", "blurmask", "cutpaste", "relabel")
    cfg = BenchConfig(arms=arms, **{**TINY, "per_class": (2,), "seeds": 1, "background_class": "clean", "background_images": 8})
    run_bench(data, tmp_path / "out", cfg, progress=False)
    cells = {c["arm"]: c for c in load_cells(tmp_path / "out")}
    paths = {a: sorted(c["train_paths"]) for a, c in cells.items()}
    assert all(p == paths["original"] for p in paths.values())  # the same real images in every arm
    assert sum(p.startswith("clean/") for p in paths["original"]) == 8 and len(paths["original"]) == 8 + 2 * 2
    for arm in ("transplant", "blurmask", "cutpaste", "relabel"):
        assert cells[arm]["n_generated"] > 0 and cells[arm]["fit"]["balanced"]
        assert cells[arm]["quality"]["per_class"]["clean"]["n_generated"] == 0  # only defect samples are generated
    assert all(0 <= c["metrics"]["auroc"] <= 1 for c in cells.values())  # macro one-vs-rest over crack, pore, clean
    report = (tmp_path / "out" / "report.md").read_text()
    assert "defect-free class 'clean' (8 pool images per cell)" in report and "### Test AUROC" in report
    assert "| AUROC (Δ [95% CI], p) |" in report  # the headline pairs the AUROC too
    assert "### What each classifier calls each class" in report and "| original | clean " in report  # shares of clean, crack, pore


def test_relabel_control_is_a_defect_free_image_with_the_defect_label(bench_data: Path) -> None:
    from augvae.bench.arms import build_training_set
    from augvae.data.images import load_folder

    data = load_folder(bench_data, image_size=32)
    bg = data.classes[0]
    cfg = BenchConfig(arms=("relabel",), **{**TINY, "background_class": bg})
    ts = build_training_set("relabel", data, cfg, Path("unused"), "key", 2, 0)
    assert ts.generate is not None and ts.generate_for is not None and not bool(ts.generate_for[0]) and bool(ts.generate_for[1:].all())
    wanted = torch.tensor([1, 2, 3, 1])
    images, targets = ts.generate(wanted, torch.Generator().manual_seed(0))
    assert torch.equal(targets.argmax(1), wanted)
    clean = data.images[data.labels == 0]
    assert all(any(torch.equal(im, c) for c in clean) for im in images)  # unchanged defect-free images, nothing put on them
    with pytest.raises(ConfigError, match="classic\\+relabel gives defect-free images a defect's label"):
        BenchConfig(arms=("classic+relabel",))
    # gen_replaces="defect-free" (what augvae's transforms do): defect-free samples are replaced, by a random defect class
    ts = build_training_set("relabel", data, cfg.replace(gen_replaces="defect-free"), Path("unused"), "key", 2, 0)
    assert ts.generate is not None and ts.generate_for is not None and ts.generate_for.tolist() == [True, False, False, False]
    images, targets = ts.generate(torch.zeros(64, dtype=torch.long), torch.Generator().manual_seed(0))
    assert set(targets.argmax(1).tolist()) == {1, 2, 3} and all(any(torch.equal(im, c) for c in clean) for im in images)
    with pytest.raises(ConfigError, match="gen_replaces defect-free .* needs a defect-free class"):
        BenchConfig(gen_replaces="defect-free")



@pytest.mark.parametrize("arm", ["blurmask", "cutpaste"])
def test_a_generated_defect_sample_holds_its_defect(tmp_path: Path, arm: str) -> None:
    """A defect placed off the frame is placed again (unplaced="redraw"); "keep-label" keeps the old rule, which labelled
    the unchanged defect-free image defective."""
    from augvae.bench.arms import build_training_set
    from augvae.data.images import load_folder

    data = load_folder(_defect_free_data(tmp_path, ("crack", "pore"), 4, 8), image_size=32)
    bg = data.classes.index("clean")
    clean = data.images[data.labels == bg]
    cfg = BenchConfig(arms=(arm,), **{**TINY, "background_class": "clean", "translate": 1.0})
    wanted = torch.tensor([i for i in range(3) if i != bg]).repeat(100)

    def unchanged_with_defect_label(unplaced: str) -> int:
        ts = build_training_set(arm, data, cfg.replace(unplaced=unplaced), Path("unused"), "key", 4, 0)
        assert ts.generate is not None
        images, targets = ts.generate(wanted, torch.Generator().manual_seed(0))
        bare = torch.tensor([any(torch.equal(im, c) for c in clean) for im in images])
        assert torch.equal(targets.argmax(1)[~bare], wanted[~bare])  # every sample with its defect keeps the class asked for
        return int((bare & (targets.argmax(1) != bg)).sum())

    assert unchanged_with_defect_label("redraw") == 0
    assert unchanged_with_defect_label("keep-label") > 0  # the fault the old rule had, kept to reproduce earlier runs
    with pytest.raises(ConfigError, match="unplaced"):
        BenchConfig(unplaced="drop")
    assert "unplaced" not in BenchConfig(unplaced="keep-label").cell_settings()  # earlier run folders keep their fingerprint

def test_a_diverging_benchmark_vae_names_the_benchmarks_own_options(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The VAE's divergence said 'retry with a lower --lr', which in augvae bench is the classifier's learning rate."""
    from augvae.bench.arms import build_training_set
    from augvae.data.images import load_folder
    from augvae.errors import TrainingDivergedError
    from augvae.model import ConvVAE, LossTerms

    real = ConvVAE.loss

    def nan_loss(self: ConvVAE, x: torch.Tensor, out: object, beta: float | None = None) -> LossTerms:
        terms = real(self, x, out, beta)  # type: ignore[arg-type]
        return LossTerms(terms.loss * float("nan"), terms.recon, terms.kl, terms.kl_per_dim)

    monkeypatch.setattr(ConvVAE, "loss", nan_loss)
    data = load_folder(_defect_free_data(tmp_path, ("crack", "pore"), 4, 8), image_size=32)
    cfg = BenchConfig(arms=("transplant",), **{**TINY, "background_class": "clean"})
    with pytest.raises(TrainingDivergedError, match=r"the benchmark's VAE \(8 images, .* steps\) diverged at epoch 1 \(loss is NaN "
                                                    r"or infinite\): retry with a lower --vae-lr \(now 0.002\) or a larger "
                                                    r"--vae-batch-size") as info:
        build_training_set("transplant", data, cfg, tmp_path / "cache", "key", 4, 0)
    assert "--lr " not in str(info.value) and "\n" not in str(info.value)
    # the learning rate is a setting of the cells and of the cached VAE, except at the value every earlier run used
    assert "vae_lr" not in BenchConfig().cell_settings() and BenchConfig(vae_lr=1e-3).cell_settings()["vae_lr"] == 1e-3
    with pytest.raises(ConfigError, match="vae_lr must be a finite number > 0"):
        BenchConfig(vae_lr=0.0)


def test_healed_images_are_the_defect_image_with_the_projection_under_the_mask(tmp_path: Path) -> None:
    from augvae.bench.arms import _healer
    from augvae.bench.results import load_cells
    from augvae.bench.runner import run_bench

    image, projection = torch.rand(3, 1, 8, 8), torch.rand(3, 1, 8, 8)
    mask = torch.zeros(3, 1, 8, 8)
    mask[:, :, 2:5, 2:5] = 1.0
    heal = _healer({"image": image, "projection": projection, "mask": mask}, torch.tensor([True, False, True]))
    out = heal(64, torch.Generator().manual_seed(0))
    outside = ~mask[0].bool()
    # which usable source each healed image is: outside the mask it is that source's image, exactly
    rows = torch.stack([((o - image[[0, 2]]).abs() * outside).flatten(1).sum(1).argmin() for o in out])
    assert torch.equal(out * outside, image[[0, 2]][rows] * outside)
    assert torch.equal(out * ~outside, projection[[0, 2]][rows] * ~outside)  # inside: the projection
    assert set(rows.tolist()) == {0, 1}  # both usable sources, never the one whose mask is empty

    data = _defect_free_data(tmp_path, ("crack",), 4, 12)
    cfg = BenchConfig(arms=("blurmask", "cutpaste"), **{**TINY, "per_class": (2,), "seeds": 1, "background_class": "clean",
                                                        "steps": 12, "heal_p": 0.5, "extract": {"mask_low": 1.5, "mask_high": 3.0}})
    run_bench(data, tmp_path / "out", cfg, progress=False)
    fits = {c["arm"]: c["fit"] for c in load_cells(tmp_path / "out")}
    assert fits["blurmask"]["healed"] > 0 and fits["cutpaste"]["healed"] == 0  # CutPaste has no projection to heal with
    with pytest.raises(ConfigError, match="heal_p .* needs a defect-free class"):
        BenchConfig(heal_p=0.2)
    # settings added since cells were committed are left out of the fingerprint at the values that computed them
    settings = BenchConfig().cell_settings()
    assert "heal_p" not in settings and "gen_replaces" not in settings and "match" not in settings["extract"]
    assert BenchConfig(heal_p=0.1, background_class="ok").fingerprint() != BenchConfig(background_class="ok").fingerprint()


def test_the_default_blend_follows_the_setting_and_keeps_earlier_fingerprints() -> None:
    """``blend="auto"`` is resolved on construction: paste onto defect-free surfaces, random defect on defect (NEU's
    runs), so a run folder of either setting resumes with the blend its cells used."""
    assert BenchConfig(background_class="ok").blend == "paste" and BenchConfig().blend == "random"
    assert BenchConfig().fingerprint() == BenchConfig(blend="random").fingerprint()  # NEU's folders: unchanged
    elpv = BenchConfig(background_class="ok")
    assert elpv.fingerprint() == BenchConfig(background_class="ok", blend="paste").fingerprint()
    assert elpv.fingerprint() != BenchConfig(background_class="ok", blend="random").fingerprint()  # earlier ELPV runs: --blend random
    assert elpv.replace(seeds=2).blend == "paste"
    assert BenchConfig().replace(background_class="ok").blend == "paste" and elpv.replace(background_class="").blend == "random"
    assert BenchConfig(blend="add").replace(background_class="ok").blend == "add"  # a blend named by the user stays


def test_channels_last_for_timm_models_on_cpu_gives_the_same_predictions() -> None:
    from augvae.bench.classifiers import SmallCNN, create_classifier, predict, use_channels_last

    cpu = torch.device("cpu")
    timm_model, small = create_classifier("resnet18", 2, 1), SmallCNN(2)
    assert use_channels_last(timm_model, "auto", cpu) and not use_channels_last(small, "auto", cpu)
    assert use_channels_last(small, "channels-last", cpu) and not use_channels_last(timm_model, "contiguous", cpu)
    x = torch.rand(4, 1, 32, 32)
    plain, _ = predict(timm_model, x)
    fast, _ = predict(timm_model.to(memory_format=torch.channels_last), x)
    assert torch.allclose(plain, fast, atol=1e-4)  # the same model; only the order of the sums differs
    with pytest.raises(ConfigError, match="unknown memory_format"):
        BenchConfig(memory_format="nhwc")


def test_convergence_pairs_use_the_rerun_seeds_and_stay_undecided_below_two() -> None:
    from augvae.bench.report import convergence_outcome

    def cell(arm: str, seed: int, acc: float, steps: int) -> dict:
        return {"classifier": "small-cnn", "arm": arm, "k": 5, "seed": seed, "steps": steps,
                "metrics": {"accuracy": acc, "macro_f1": acc}}

    short = [cell("original", s, 0.70 + 0.01 * s, 100) for s in range(3)] + [cell("classic", s, [0.90, 0.60, 0.95][s], 100) for s in range(3)]
    one = [cell("original", 0, 0.71, 200), cell("classic", 0, 0.92, 200)]
    (row,) = convergence_outcome(short, one)
    assert row["same_conclusion"] is None and row["short"]["seeds"] == [0]  # one seed rerun: no verdict, paired on it
    assert row["short"]["accuracy"]["mean_diff"] == pytest.approx(0.90 - 0.70)
    two = one + [cell("original", 1, 0.72, 200), cell("classic", 1, 0.94, 200)]
    (row,) = convergence_outcome(short, two)
    assert row["short"]["seeds"] == [0, 1] and row["same_conclusion"] in (True, False)


def test_convergence_compares_conclusions_not_the_signs_of_noise() -> None:
    from augvae.bench.report import conclusion, convergence_outcome

    def cells(accs: dict[str, list[float]], steps: int) -> list[dict]:
        return [{"classifier": "small-cnn", "arm": arm, "k": 5, "seed": s, "steps": steps, "metrics": {"accuracy": a, "macro_f1": a}}
                for arm, values in accs.items() for s, a in enumerate(values)]

    base = [0.80, 0.82, 0.78, 0.81, 0.79]
    noise = cells({"original": base, "classic": [0.80, 0.83, 0.77, 0.81, 0.79]}, 100)  # +0.000, not significant
    noise2 = cells({"original": base, "classic": [0.81, 0.82, 0.79, 0.80, 0.80]}, 200)  # +0.004, not significant
    gain = cells({"original": base, "classic": [0.85, 0.86, 0.84, 0.86, 0.83]}, 200)  # +0.048, p < 0.001
    loss = cells({"original": base, "classic": [0.75, 0.76, 0.74, 0.76, 0.73]}, 200)
    (row,) = convergence_outcome(noise, noise2)
    assert conclusion(row["short"]["accuracy"]) == conclusion(row["long"]["accuracy"]) == "no difference"
    assert row["same_conclusion"] is True  # the signs differ (0 and +), the conclusion does not
    (row,) = convergence_outcome(noise, gain)
    assert conclusion(row["long"]["accuracy"]) == "better" and row["same_conclusion"] is False
    (row,) = convergence_outcome(gain, loss)
    assert (conclusion(row["short"]["accuracy"]), conclusion(row["long"]["accuracy"])) == ("better", "worse")
    assert row["same_conclusion"] is False


def test_convergence_checks_the_auroc_as_well_as_the_accuracy() -> None:
    """A longer budget that keeps the accuracy conclusion but turns the ranking's is a changed conclusion, named as such."""
    from augvae.bench.report import _headline_lines, convergence_outcome

    def cells(accs: dict[str, list[float]], aurocs: dict[str, list[float]] | None, steps: int) -> list[dict]:
        return [{"classifier": "small-cnn", "arm": arm, "k": 5, "seed": s, "steps": steps,
                 "metrics": {"accuracy": a, "macro_f1": a, **({"auroc": aurocs[arm][s]} if aurocs else {})}}
                for arm, values in accs.items() for s, a in enumerate(values)]

    acc = {"original": [0.80, 0.82, 0.78, 0.81, 0.79], "classic": [0.85, 0.86, 0.84, 0.86, 0.83]}  # better at both budgets
    tie = {"original": [0.90, 0.91, 0.89, 0.90, 0.92], "classic": [0.91, 0.90, 0.89, 0.91, 0.91]}
    worse = {"original": [0.90, 0.91, 0.89, 0.90, 0.92], "classic": [0.86, 0.87, 0.85, 0.86, 0.87]}
    (row,) = convergence_outcome(cells(acc, tie, 100), cells(acc, worse, 200))
    assert row["same_conclusion"] is True and row["same_conclusion_auroc"] is False
    text = "\n".join(_headline_lines({"convergence": [row]}))
    assert "**the conclusion changed** for classic vs original at k=5 (AUROC)" in text and "Δ AUROC at 100 steps" in text
    (row,) = convergence_outcome(cells(acc, tie, 100), cells(acc, tie, 200))
    assert row["same_conclusion_auroc"] is True
    assert "did not change for any pair with at least 2 seeds in accuracy or AUROC" in "\n".join(_headline_lines({"convergence": [row]}))
    (row,) = convergence_outcome(cells(acc, None, 100), cells(acc, None, 200))  # cells from before the AUROC was recorded
    assert row["same_conclusion_auroc"] is None
    text = "\n".join(_headline_lines({"convergence": [row]}))
    assert "AUROC" not in text and "did not change" in text
