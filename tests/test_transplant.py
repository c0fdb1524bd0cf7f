"""Real defects onto defect-free surfaces (issue 12): extraction, the transplant formulation, every entry point, errors.

Procedural data (``augvae.data.synthetic``) knows every defect pixel, so the estimated masks and the
transplants are checked against the truth.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from augvae._imageops import dilate
from augvae.cli import main
from augvae.config import ExtractConfig, ModelConfig, config_to_dict, recipe_config
from augvae.data.synthetic import make_image, write_dataset
from augvae.errors import ConfigError, DataError
from augvae.overlay.combine import placement_matrix, poisson_blend, transplant
from augvae.overlay.extract import blur_projector, extract_defects, vae_projector
from augvae.overlay.policy import OverlayOptions
from augvae.training import train

S = 32


@pytest.fixture(scope="module")
def surfaces() -> dict[str, torch.Tensor]:
    """48 defect-free surfaces and 8 cracks and 8 pores (on other surfaces) with their true masks, 32 px."""
    clean = [make_image("clean", size=S, seed=100 + i, boundary_prob=0.0).image for i in range(48)]
    defects = [make_image(kind, size=S, seed=i, boundary_prob=0.0) for kind in ("crack", "pore") for i in range(8)]
    return {"clean": torch.from_numpy(np.stack(clean))[:, None], "defects": torch.from_numpy(np.stack([d.image for d in defects]))[:, None],
            "masks": torch.from_numpy(np.stack([d.mask for d in defects]))[:, None]}


@pytest.fixture(scope="module")
def surface_vae(surfaces: dict[str, torch.Tensor], one_thread: object) -> torch.nn.Module:
    # beta 0.25 keeps every latent dimension active on these near-identical textures (at beta 1 the posterior collapses)
    res = train(surfaces["clean"], ModelConfig(image_size=S, latent_dim=16, hidden_dim=64, activation="leaky_relu", beta=0.25),
                recipe_config("small-set", epochs=60, batch_size=8, optimizer="adam", lr=1e-3, kl_warmup_epochs=10, seed=0),
                progress=False)
    assert res.active_units == 16
    return res.model


def _iou(est: torch.Tensor, true: torch.Tensor) -> torch.Tensor:
    return (est & true).flatten(1).sum(1).float() / (est | true).flatten(1).sum(1).float()


def test_estimated_masks_overlap_the_true_defects(surfaces: dict[str, torch.Tensor], surface_vae: torch.nn.Module) -> None:
    """IoU of the mask (> 0.5) with the true defect grown by 1 px (its soft edge and shadow).

    A mask of the same area placed at random would score about the true area's share of the image
    (below 0.1); at the default thresholds (z 3 to 5) the VAE's masks measured 0.84 (cracks) and
    0.80 (pores) on this data (0.64 and 0.50 at the earlier z 1.5 to 3), so the thresholds (0.7,
    0.65) leave room for another platform's arithmetic. The blur control's masks score lower (0.58,
    0.50): the learned projection localises better.
    """
    truth = dilate(surfaces["masks"].float(), 1) > 0.5
    cfg = ExtractConfig(polarity="both")
    vae = extract_defects(surfaces["defects"], vae_projector(surface_vae), cfg, reference=surfaces["clean"])
    blur = extract_defects(surfaces["defects"], blur_projector(2.0), cfg, reference=surfaces["clean"])
    iou_vae, iou_blur = _iou(vae["mask"] > 0.5, truth), _iou(blur["mask"] > 0.5, truth)
    assert float(iou_vae[:8].mean()) >= 0.7, iou_vae[:8]  # cracks
    assert float(iou_vae[8:].mean()) >= 0.65, iou_vae[8:]  # pores
    recall = ((vae["mask"] > 0.5) & surfaces["masks"]).flatten(1).sum(1) / surfaces["masks"].flatten(1).sum(1)
    assert float(recall.mean()) >= 0.9
    assert float(iou_vae.mean()) > float(iou_blur.mean())
    assert torch.allclose(vae["residual"], vae["image"] - vae["projection"])


def test_matching_the_projection_keeps_the_masks_on_a_darker_exposure(surfaces: dict[str, torch.Tensor],
                                                                     surface_vae: torch.nn.Module) -> None:
    """Defect images 0.1 darker than every surface the VAE saw (another exposure), dark polarity.

    The VAE projects them closer to the brightness it learned, so without a match the residual is
    dark everywhere and the masks flood the surface (measured IoU 0.75 cracks, 0.65 pores); matched
    by the median offset (``match="offset"``) they stay on the defects (0.83, 0.85; 0.83 and 0.86 at
    the surfaces' own exposure, where the match must not cost anything).
    """
    truth = dilate(surfaces["masks"].float(), 1) > 0.5
    darker = (surfaces["defects"] - 0.1).clamp(0.0, 1.0)
    iou = {}
    for match in ("none", "offset"):
        cfg = ExtractConfig(polarity="dark", match=match)
        for name, images in (("darker", darker), ("same", surfaces["defects"])):
            out = extract_defects(images, vae_projector(surface_vae), cfg, reference=surfaces["clean"])
            iou[match, name] = _iou(out["mask"] > 0.5, truth)
            assert torch.allclose(out["residual"], out["image"] - out["projection"])
    for name in ("darker", "same"):
        assert float(iou["offset", name][:8].mean()) >= 0.75, iou["offset", name]  # cracks
        assert float(iou["offset", name][8:].mean()) >= 0.75, iou["offset", name]  # pores
    assert float(iou["offset", "darker"].mean()) >= float(iou["none", "darker"].mean()) + 0.08
    with pytest.raises(ConfigError, match="unknown match .affine.; expected one of: none, offset"):
        ExtractConfig(match="affine")


def test_user_masks_replace_the_estimate(surfaces: dict[str, torch.Tensor], surface_vae: torch.nn.Module) -> None:
    given = surfaces["masks"].float()
    out = extract_defects(surfaces["defects"], vae_projector(surface_vae), masks=given)
    assert torch.equal(out["mask"], given)
    with pytest.raises(Exception, match="masks must have shape"):
        extract_defects(surfaces["defects"], vae_projector(surface_vae), masks=given[:3])


def test_transplant_keeps_the_defect_and_leaves_the_background() -> None:
    g = torch.Generator().manual_seed(0)
    base = torch.rand(4, 1, S, S, generator=g) * 0.5 + 0.25
    image = torch.rand(4, 1, 1, S, S, generator=g)
    residual = torch.rand(4, 1, 1, S, S, generator=g) * 0.2 - 0.1
    mask = torch.zeros(4, 1, 1, S, S)
    mask[..., 10:16, 8:20] = 1.0
    u = torch.rand(4, 1, 4, generator=g)
    u[..., 3] = 0.5
    theta = placement_matrix(u, S, S, translate=0.25, zoom=(1.0, 1.0))
    from augvae.overlay.combine import warp

    moved = warp(mask.view(4, 1, S, S), theta.view(4, 2, 3), S, S) > 0.5  # where each defect went
    assert all(int(m.sum()) == 6 * 12 for m in moved)  # flips, rotations and whole-pixel shifts move pixels exactly
    w = torch.ones(4, 1)
    for code, blend in enumerate(("add", "paste", "poisson")):
        out = transplant(base, image, residual, mask, theta, w, torch.full((4, 1), code))
        outside = ~dilate(moved.float(), 1).bool()
        assert torch.allclose(out[outside], base[outside], atol=1e-6), blend  # the surface outside the mask is the surface
        mres = warp(residual.view(4, 1, S, S), theta.view(4, 2, 3), S, S)
        mimg = warp(image.view(4, 1, S, S), theta.view(4, 2, 3), S, S)
        if blend == "add":  # the defect's residual, exactly, where the mask is 1
            assert torch.allclose(out[moved], (base + mres).clamp(0, 1)[moved], atol=1e-5)
        elif blend == "paste":  # the defect's own pixels
            assert torch.allclose(out[moved], mimg[moved], atol=1e-5)
        else:  # seamless: the gradients of the defect inside, the surface at the border
            assert not torch.allclose(out, base)
    zero = transplant(base, image, residual, mask, theta, torch.zeros(4, 1), torch.zeros(4, 1, dtype=torch.long))
    assert torch.equal(zero, base.clamp(0, 1))  # weight 0 leaves the image as it was


def test_placement_without_rotation_keeps_a_defects_orientation() -> None:
    """``rotate=False`` draws only the 4 flips: a horizontal bar (a busbar's piece) never turns vertical."""
    bar = torch.zeros(64, 1, S, S)
    bar[..., 12:14, 4:24] = 1.0  # 2 rows high, 20 columns wide, off-centre
    u = torch.rand(64, 4, generator=torch.Generator().manual_seed(1))
    u[:, 1:3] = 0.5  # no shift
    u[:, 3] = 0.5
    from augvae.overlay.combine import warp

    def rows_cols(rotate: bool) -> set[tuple[int, int]]:
        moved = warp(bar, placement_matrix(u, S, S, translate=0.25, rotate=rotate), S, S)[:, 0] > 0.5
        return {(int(m.any(1).sum()), int(m.any(0).sum())) for m in moved}  # (rows, columns) each moved bar spans

    assert rows_cols(rotate=False) == {(2, 20)}
    assert rows_cols(rotate=True) == {(2, 20), (20, 2)}
    with pytest.raises(ConfigError, match="rotate must be True or False"):
        OverlayOptions(rotate="no")


def test_poisson_blend_matches_the_border_and_keeps_the_gradients() -> None:
    base = torch.full((1, 1, 32, 32), 0.5)
    source = torch.full((1, 1, 32, 32), 0.9)
    source[..., 14:18, 14:18] = 0.1  # a dark spot on a much brighter patch
    mask = torch.zeros(1, 1, 32, 32)
    mask[..., 8:24, 8:24] = 1.0
    out = poisson_blend(base, source, mask, iterations=200)
    assert abs(float(out[..., 8, 16]) - 0.5) < 0.05  # at the border: the base's brightness, not the patch's
    inner = out[..., 16, 16] - out[..., 11, 16]
    assert abs(float(inner) - (0.1 - 0.9)) < 0.2  # inside: the spot's contrast to its surroundings


def test_a_defect_with_an_empty_mask_is_never_transplanted(caplog: pytest.LogCaptureFixture) -> None:
    """Its transplant would be the defect-free image unchanged, labelled as a defect: a silently wrong sample."""
    from augvae.errors import ConfigError
    from augvae.overlay.engine import overlay_batch
    from augvae.overlay.policy import OverlayOptions, draw_torch
    from augvae.overlay.sources import sources_from_defects

    g = torch.Generator().manual_seed(0)
    d = {k: torch.rand(2, 1, S, S, generator=g) for k in ("image", "projection", "residual")}
    d["mask"] = torch.zeros(2, 1, S, S)
    d["mask"][0] = 0.4  # defect 0 ("crack"): no pixel above 0.5, an empty region; defect 1 ("pore") has one
    d["mask"][1, :, 4:12, 4:12] = 1.0
    with caplog.at_level("INFO", logger="augvae"):
        src = sources_from_defects(d, ["crack", "pore"], ["crack", "pore", "ok"], "ok", names=["c0", "p0"])
    assert src.has_defect.tolist() == [False, True] and "1 of 2 defects have an empty mask (no pixel above 0.5: c0)" in caplog.text
    base = torch.full((64, 1, S, S), 0.5)
    opts = OverlayOptions(policy="onto-background", formulation="transplant", k=1)
    x, y = overlay_batch(src, base, torch.full((64,), 2), opts, draw_torch(src, opts, 64, generator=g))
    changed = (x - base).abs().flatten(1).amax(1) > 0
    assert set(y[changed].tolist()) == {1} and bool((y[~changed] == 2).all())  # only the pore is drawn; nothing is relabelled unchanged
    d["mask"].zero_()
    with pytest.raises(ConfigError, match="every defect .* has an empty mask"):
        opts.resolve(sources_from_defects(d, ["crack", "pore"], ["crack", "pore", "ok"], "ok"))


# ------------------------------------------------------------------------------------ every entry point
@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("tp")
    write_dataset(root / "d", n_per_class=4, size=S, seed=2, classes=("crack", "pore"))
    write_dataset(root / "c", n_per_class=16, size=S, seed=2, classes=("clean",))
    data = root / "data"
    data.mkdir()
    for part in ("d", "c"):
        for sub in (root / part / "images").iterdir():
            sub.rename(data / sub.name)
    return data


@pytest.fixture(scope="module")
def model_dir(folder: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("tp_model") / "model"
    assert main(["train", str(folder), "--out", str(out), "--background-class", "clean", "--image-size", str(S), "--epochs", "8",
                 "--batch-size", "4", "--latent-dim", "8", "--activation", "leaky_relu", "--beta", "0.5", "-q"]) == 0
    return out


def test_model_folder_stores_the_defects(model_dir: Path) -> None:
    meta = json.loads((model_dir / "config.json").read_text())["data"]
    assert meta["background_class"] == "clean" and meta["classes"] == ["clean", "crack", "pore"]
    assert len(meta["defect_sources"]) == 8 and all(meta["labels"][i] != 0 for i in meta["defect_sources"])
    from safetensors.torch import load_file

    d = load_file(str(model_dir / "defects.safetensors"))
    assert d["image"].shape == (8, 1, S, S) and d["mask"].shape == (8, 1, S, S)
    assert torch.allclose(d["residual"], d["image"] - d["projection"], atol=1e-6)
    # the settings the defects were extracted with are saved beside them, and checked on loading
    assert json.loads((model_dir / "config.json").read_text())["extract"] == config_to_dict(ExtractConfig())


def test_a_damaged_extraction_record_is_a_clear_error(model_dir: Path, tmp_path: Path) -> None:
    import shutil

    from augvae.errors import ModelFolderError
    from augvae.model import load_model

    bad = tmp_path / "model"
    shutil.copytree(model_dir, bad)
    raw = json.loads((bad / "config.json").read_text())
    raw["extract"]["match"] = "affine"
    (bad / "config.json").write_text(json.dumps(raw))
    with pytest.raises(ModelFolderError, match="'extract'.*unknown match 'affine'; expected one of: none, offset"):
        load_model(bad)


def test_every_entry_point_transplants_by_default(model_dir: Path) -> None:
    import albumentations as A

    from augvae.albumentations import VAEOverlay as AlbuOverlay
    from augvae.data import MixedDataset
    from augvae.overlay.sources import load_sources
    from augvae.torchvision import BatchVAEOverlay, VAEOverlay

    src = load_sources(model_dir)
    from augvae.overlay.policy import OverlayOptions

    opts = OverlayOptions().resolve(src)
    # onto defect-free surfaces the default blend is the feathered paste (it ranked ELPV's test cells best)
    assert (opts.policy, opts.formulation, opts.blend) == ("onto-background", "transplant", "paste")
    assert OverlayOptions(policy="same-class").resolve(src).blend == "random"
    assert OverlayOptions(blend="add").resolve(src).blend == "add"
    clean = np.full((S, S), 140, np.uint8)
    for seed in range(3):  # seeded: the same output twice
        a = A.Compose([AlbuOverlay(model_dir, p=1.0)], seed=seed)(image=clean, label=0)
        b = A.Compose([AlbuOverlay(model_dir, p=1.0)], seed=seed)(image=clean, label=0)
        assert np.array_equal(a["image"], b["image"]) and a["label"] == b["label"] in (1, 2)
        assert not np.array_equal(a["image"], clean)
    torch.manual_seed(1)
    x1, y1 = VAEOverlay(model_dir, p=1.0)(torch.full((1, S, S), 0.55), 0)
    torch.manual_seed(1)
    x2, y2 = VAEOverlay(model_dir, p=1.0)(torch.full((1, S, S), 0.55), 0)
    assert torch.equal(x1, x2) and y1 == y2 in (1, 2)
    defect = torch.rand(1, S, S)
    assert torch.equal(VAEOverlay(model_dir, p=1.0)(defect, 1)[0], defect)  # a defect image is left as it is
    xb, yb = BatchVAEOverlay(model_dir, p=1.0)(torch.full((6, 1, S, S), 0.55), torch.tensor([0, 0, 0, 1, 2, 0]))
    assert all(int(v) in (1, 2) for v in yb) and torch.equal(xb[3], torch.full((1, S, S), 0.55))
    real = [(torch.full((1, S, S), 0.55), 0)] * 6 + [(torch.rand(1, S, S), 1), (torch.rand(1, S, S), 2)]
    mixed = MixedDataset(model_dir, real, ratio=0.5)
    gen = [mixed[i] for i in range(8, 16)]
    assert all(y in (1, 2) for _, y in gen)  # generated from defect-free bases, labelled with their defect's class
    again = MixedDataset(model_dir, real, ratio=0.5)  # a second instance: draws depend on (seed, epoch, index) only
    assert torch.equal(mixed[9][0], again[9][0]) and not torch.equal(mixed[9][0], MixedDataset(model_dir, real, ratio=0.5, seed=1)[9][0])


def test_generate_transplant_writes_a_manifest(model_dir: Path, folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "gen"
    assert main(["generate", str(model_dir), "--out", str(out), "--mode", "transplant", "--backgrounds", str(folder / "clean"),
                 "--n", "10", "--k", "2", "-q"]) == 0
    rows = list(csv.DictReader((out / "manifest.csv").open()))
    assert len(rows) == 10 and len(list((out / "images").glob("*.png"))) == 10
    for r in rows:
        assert r["formulation"] == "transplant" and r["background"].endswith(".png")
        assert len(r["sources"].split("+")) == 2 and len(r["blend"].split("+")) == 2
        assert r["blend"] == "paste+paste"  # the default onto defect-free backgrounds
        assert r["placement"].count("d4=") == 2
        assert r["label"] in ("crack", "pore", "crack:0.50+pore:0.50")  # two defects: one class, or half of each
    with Image.open(out / rows[0]["file"]) as im:
        assert im.size == (S, S)


def test_generate_transplant_in_place_without_rotation(model_dir: Path, folder: Path, tmp_path: Path) -> None:
    """``--translate 0 --no-rotate``: every defect keeps its place and orientation (flips only: d4 codes 0-3)."""
    out = tmp_path / "gen"
    assert main(["generate", str(model_dir), "--out", str(out), "--mode", "transplant", "--backgrounds", str(folder / "clean"),
                 "--n", "24", "--k", "1", "--translate", "0", "--no-rotate", "-q"]) == 0
    placements = [r["placement"] for r in csv.DictReader((out / "manifest.csv").open())]
    assert len(placements) == 24 and all(" dy=0 dx=0 " in p for p in placements)
    assert {p.split()[0] for p in placements} <= {"d4=0", "d4=1", "d4=2", "d4=3"}
    assert main(["generate", str(model_dir), "--out", str(tmp_path / "bad"), "--mode", "transplant", "--backgrounds",
                 str(folder / "clean"), "--translate", "2", "-q"]) != 0  # a clear error, not a traceback


def test_inspect_shows_each_defect_and_names_the_sources(model_dir: Path, folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "fig"
    assert main(["inspect", str(model_dir), str(folder), "--out", str(out), "-q"]) == 0
    assert (out / "defects.png").stat().st_size > 0 and (out / "sources.png").stat().st_size > 0
    stats = json.loads((out / "stats.json").read_text())
    assert 0 < stats["defect_mask_area"]["mean"] < 1
    assert "defects.png" in (out / "index.html").read_text()


# ------------------------------------------------------------------------------------ errors
def test_background_class_without_images(folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    empty = tmp_path / "data"
    import shutil

    shutil.copytree(folder, empty)
    for p in sorted((empty / "clean").iterdir())[1:]:
        p.unlink()
    code = main(["train", str(empty), "--out", str(tmp_path / "m"), "--background-class", "clean", "--image-size", str(S)])
    assert code == 2 and "background class 'clean' has 1 image(s)" in capsys.readouterr().err


def test_mask_folder_must_match_the_sources(folder: Path, model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                            caplog: pytest.LogCaptureFixture) -> None:
    masks = tmp_path / "masks"
    for cls in ("crack", "pore"):
        (masks / cls).mkdir(parents=True)
        for p in sorted((folder / cls).iterdir()):
            Image.new("L", (S, S), 0).save(masks / cls / p.name)
    ok = main(["train", str(folder), "--out", str(tmp_path / "m1"), "--background-class", "clean", "--image-size", str(S),
               "--epochs", "1", "--masks", str(masks), "-q"])
    assert ok == 0
    (masks / "pore" / "pore_0.png").unlink()
    assert main(["train", str(folder), "--out", str(tmp_path / "m2"), "--background-class", "clean", "--image-size", str(S),
                 "--epochs", "1", "--masks", str(masks)]) == 2
    assert "no mask for 'pore/pore_0.png'" in capsys.readouterr().err
    Image.new("L", (S + 4, S), 0).save(masks / "pore" / "pore_0.png")
    assert main(["train", str(folder), "--out", str(tmp_path / "m3"), "--background-class", "clean", "--image-size", str(S),
                 "--epochs", "1", "--masks", str(masks)]) == 2
    assert "is 36x32 but its image" in capsys.readouterr().err
    with pytest.raises(DataError, match="does not exist"):
        from augvae.data.images import load_masks

        load_masks(tmp_path / "nowhere", [], folder, S)
    assert main(["train", str(folder), "--out", str(tmp_path / "m4"), "--background-class", "clean", "--image-size", str(S),
                 "--epochs", "1", "--masks", str(folder)]) == 2  # the images given as their own masks
    assert "is DATA_DIR itself" in capsys.readouterr().err
    import logging

    from augvae.data.images import load_masks

    grey = tmp_path / "grey"
    (grey / "crack").mkdir(parents=True)
    Image.new("L", (S, S), 128).save(grey / "crack" / "crack_0.png")
    with caplog.at_level(logging.WARNING, logger="augvae"):
        load_masks(grey, [folder / "crack" / "crack_0.png"], folder, S)
    assert "grey on 100% of their pixels" in caplog.text


# ------------------------------------------------------------------------------------ no defect-free class
@pytest.fixture(scope="module")
def defects_only(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("tp_only")
    write_dataset(root, n_per_class=4, size=S, seed=3, classes=("crack", "pore"))
    return root / "images"


def test_without_a_defect_free_class_each_image_is_a_defect_source(defects_only: Path, tmp_path: Path) -> None:
    """small-set without --background-class: every image's defect, against its own projection; transplant by default."""
    from augvae.overlay.policy import OverlayOptions
    from augvae.overlay.sources import load_sources
    from augvae.torchvision import VAEOverlay

    out = tmp_path / "m"
    assert main(["train", str(defects_only), "--out", str(out), "--image-size", str(S), "--epochs", "4", "--batch-size", "4",
                 "--latent-dim", "4", "-q"]) == 0
    meta = json.loads((out / "config.json").read_text())["data"]
    assert meta["background_class"] is None and meta["defect_sources"] == list(range(8))
    src = load_sources(out)
    assert src.has_defects and src.background < 0
    opts = OverlayOptions().resolve(src)
    assert (opts.policy, opts.formulation, opts.blend) == ("same-class", "transplant", "random")  # defect on defect: NEU's blend
    area = src.d_mask.mean(dim=(1, 2, 3))
    assert bool((area < 0.5).all())  # a defect is not the whole image
    # Against each image's own statistics, the default threshold (z 3) misses the faintest crack of this barely trained
    # VAE (measured: 1 of 8); such a source is marked, and never drawn, rather than transplanting nothing.
    assert int(src.has_defect.sum()) >= 6 and torch.equal(src.has_defect, (src.d_mask > 0.5).flatten(1).any(1))
    with Image.open(sorted((defects_only / "pore").iterdir())[0]) as im:
        pore = torch.from_numpy(np.asarray(im, dtype=np.float32) / 255.0)[None]
    torch.manual_seed(0)
    x, y = VAEOverlay(out, p=1.0)(pore, 1)
    assert y == 1 and x.shape == pore.shape and not torch.equal(x, pore)  # a pore onto a pore image: still a pore
    changed = ((x - pore).abs() > 1e-3).float().mean()
    assert 0 < changed < 0.6  # only where the transplanted defect's mask lies


def test_the_overlay_recipe_stores_no_defects(defects_only: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from augvae.overlay.policy import OverlayOptions
    from augvae.overlay.sources import load_sources

    out = tmp_path / "m"
    assert main(["train", str(defects_only), "--out", str(out), "--recipe", "overlay", "--copies", "4", "--epochs", "1",
                 "--image-size", str(S), "--latent-dim", "2", "-q"]) == 0
    src = load_sources(out)
    assert not src.has_defects and OverlayOptions().resolve(src).formulation == "residual"
    masks = tmp_path / "masks"
    for cls in ("crack", "pore"):
        (masks / cls).mkdir(parents=True)
        for p in sorted((defects_only / cls).iterdir()):
            Image.new("L", (S, S), 0).save(masks / cls / p.name)
    assert main(["train", str(defects_only), "--out", str(tmp_path / "m2"), "--recipe", "overlay", "--copies", "4", "--epochs", "1",
                 "--image-size", str(S), "--masks", str(masks)]) == 2
    err = capsys.readouterr().err.strip()
    assert "overlay recipe extracts none" in err and "--masks" in err and len(err.splitlines()) == 1


def test_a_large_folder_stores_a_capped_pool_spread_over_the_classes(defects_only: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import augvae.training as training
    from augvae.data import load_folder

    data = load_folder(defects_only, S, 1)
    monkeypatch.setattr(training, "MAX_OWN_DEFECTS", 5)
    masks = torch.zeros(len(data), 1, S, S)
    masks[:, :, 4:9, 4:9] = 1.0
    res = train(data, ModelConfig(image_size=S, latent_dim=4), recipe_config("small-set", epochs=1, batch_size=4), progress=False,
                masks=masks)
    assert res.defects is not None and res.defects["image"].shape[0] == 5
    kept = training._even_subset(data.labels, 5)
    assert sorted(torch.bincount(data.labels[kept]).tolist()) == [2, 3]  # round-robin over the two classes
    assert torch.equal(res.defects["image"], data.images[kept]) and torch.equal(res.defects["mask"], masks[kept])


def test_a_background_image_alone_does_not_make_the_policy_onto_background(defects_only: Path, tmp_path: Path) -> None:
    """A --background image (or a class named like 'ok') is not the class the defects were extracted against."""
    from augvae.overlay.policy import OverlayOptions
    from augvae.overlay.sources import load_sources
    from augvae.training import _split_by_background

    plain = tmp_path / "plain.png"
    Image.new("L", (S, S), 128).save(plain)
    out = tmp_path / "m"
    assert main(["train", str(defects_only), "--out", str(out), "--background", str(plain), "--image-size", str(S), "--epochs", "2",
                 "--batch-size", "4", "--latent-dim", "4", "-q"]) == 0
    src = load_sources(out)
    assert src.background >= 0 and not src.defect_free_class
    opts = OverlayOptions().resolve(src)
    assert (opts.policy, opts.formulation) == ("same-class", "transplant")
    assert len(json.loads((out / "config.json").read_text())["data"]["defect_sources"]) == 8  # not the background image
    assert OverlayOptions(background_class="background").resolve(load_sources(out, background_class="background")).policy == "onto-background"
    # with a defect-free class as well, the --background image is not a defect either (the masks count must match)
    labels = torch.tensor([0, 0, 1, 1, 2])  # classes ok, crack, background: image 4 is the --background image
    _, defects, clean = _split_by_background(labels, ["ok", "crack", "background"], "ok", False, "small-set", background=4)
    assert defects.tolist() == [2, 3] and clean is not None and clean.tolist() == [0, 1]


def test_a_non_square_surface_records_the_flip_it_gets(model_dir: Path) -> None:
    """A transpose would stretch a non-square image, so none is applied there, and the manifest must not record one."""
    from augvae.overlay.engine import transplant_onto
    from augvae.overlay.sources import load_sources

    src = load_sources(model_dir)

    def codes(height: int, width: int) -> set[str]:
        bg = torch.full((32, 1, height, width), 0.55)
        _, _, records = transplant_onto(src, bg, [f"b{i}" for i in range(32)], OverlayOptions(),
                                        generator=torch.Generator().manual_seed(0))
        return {p.split()[0] for r in records for p in r.placement}

    assert codes(S, S + 8) <= {"d4=0", "d4=1", "d4=2", "d4=3"}
    assert codes(S, S) & {"d4=4", "d4=5", "d4=6", "d4=7"}  # a square surface does get the transposes
    u = torch.rand(256, 4, generator=torch.Generator().manual_seed(2))
    flips = u.clone()
    flips[:, 0] = (torch.floor(u[:, 0] * 8) % 4 + 0.5) / 8  # the code without its transpose bit
    assert torch.allclose(placement_matrix(u, S, S + 8), placement_matrix(flips, S, S + 8))  # what is recorded is applied


@pytest.mark.parametrize("translate, side", [(1.0, S), (0.25, 2), (0.25, 4)])
def test_no_image_gets_a_defects_label_without_its_pixels(model_dir: Path, folder: Path, tmp_path: Path, translate: float,
                                                          side: int) -> None:
    """A defect shifted off the frame, or too small to show on a tiny image, is not drawn: the label stays too."""
    import albumentations as A

    from augvae.albumentations import VAEOverlay as AlbuOverlay
    from augvae.torchvision import BatchVAEOverlay, VAEOverlay

    clean = np.full((side, S if side == S else side), 140, np.uint8)
    changed = 0
    for seed in range(40):
        out = A.Compose([AlbuOverlay(model_dir, p=1.0, translate=translate)], seed=seed)(image=clean, label=0)
        assert (out["label"] != 0) == (not np.array_equal(out["image"], clean)), f"seed {seed}"
        changed += out["label"] != 0
        torch.manual_seed(seed)
        x, y = VAEOverlay(model_dir, p=1.0, translate=translate)(torch.from_numpy(clean)[None], 0)
        assert (y != 0) == (not torch.equal(x[0], torch.from_numpy(clean))), f"seed {seed}"
    if side == S:
        assert 0 < changed < 40  # a shift of up to the whole side moves some defects off the frame, not all
    xb, yb = BatchVAEOverlay(model_dir, p=1.0, translate=translate)(torch.from_numpy(clean)[None, None].expand(64, 1, -1, -1) / 255,
                                                                  torch.zeros(64, dtype=torch.long))
    same = (xb == torch.from_numpy(clean) / 255).flatten(1).all(1)
    assert torch.equal(yb != 0, ~same)
    if side == S:
        out = tmp_path / "gen"
        assert main(["generate", str(model_dir), "--out", str(out), "--mode", "transplant", "--backgrounds", str(folder / "clean"),
                     "--n", "24", "--k", "1", "--translate", str(translate), "-q"]) == 0
        rows = list(csv.DictReader((out / "manifest.csv").open()))
        backgrounds = {p.name: np.asarray(Image.open(p)) for p in (folder / "clean").iterdir()}
        for r in rows:
            with Image.open(out / r["file"]) as im:
                moved = not np.array_equal(np.asarray(im), backgrounds[Path(r["background"]).name])
            assert moved == (r["label"] != "clean") == bool(r["sources"]), r


@pytest.mark.parametrize("file, key, value, message", [
    ("model.safetensors", None, float("nan"), "holds NaN or infinite values"),
    ("defects.safetensors", "image", 255.0, "'image' has values from .* outside \\[0, 1\\]"),
    ("defects.safetensors", "mask", float("inf"), "holds NaN or infinite values"),
    ("defects.safetensors", "*", "crop", "holds images of shape .*, expected \\(\\d+, 1, 32, 32\\)"),
])
def test_a_damaged_tensor_file_is_a_clear_error(model_dir: Path, folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], file: str,
                                                key: str | None, value: float | str, message: str) -> None:
    """A NaN weight decoded black images, and defects stored in 0-255 saturated every transplant, without any error."""
    import shutil

    from safetensors.torch import load_file, save_file

    bad = tmp_path / "model"
    shutil.copytree(model_dir, bad)
    tensors = load_file(str(bad / file))
    if value == "crop":  # defects of another size (28 px in a 32-px model): every transplant at a wrong scale
        tensors = {k: t[..., 2:-2, 2:-2].contiguous() for k, t in tensors.items()}
    else:
        name = key or next(k for k, t in tensors.items() if t.is_floating_point())
        tensors[name] = tensors[name].clone()
        tensors[name].view(-1)[0] = value
    save_file(tensors, str(bad / file))
    assert main(["generate", str(bad), "--out", str(tmp_path / "gen"), "--mode", "transplant", "--backgrounds", str(folder / "clean"),
                 "--n", "2", "-q"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and file in err
    import re

    assert re.search(message, err), err
    assert not (tmp_path / "gen").exists()


def test_latents_of_another_size_are_a_clear_error(model_dir: Path, folder: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """Latents copied from a model with another latent size failed deep inside the decoder (a matmul shape error)."""
    import shutil

    import torch
    from safetensors.torch import load_file, save_file

    from augvae.checkpoint import LATENTS_FILE

    bad = tmp_path / "model"
    shutil.copytree(model_dir, bad)
    lat = load_file(str(bad / LATENTS_FILE))
    lat = {**lat, "mu": torch.cat([lat["mu"], lat["mu"][:, :1]], 1), "logvar": torch.cat([lat["logvar"], lat["logvar"][:, :1]], 1)}
    save_file(lat, str(bad / LATENTS_FILE))
    assert main(["generate", str(bad), "--out", str(tmp_path / "gen"), "--mode", "transplant", "--backgrounds", str(folder / "clean"),
                 "--n", "2", "-q"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "-dimensional latents but the model's latent_dim is" in err and LATENTS_FILE in err
    assert not (tmp_path / "gen").exists()


def test_the_python_api_refuses_images_outside_0_1(model_dir: Path) -> None:
    """0-255 floats trained a VAE and fed transplant_onto without a word; a wrong names list was a raw IndexError."""
    from augvae.errors import InputError
    from augvae.overlay.engine import transplant_onto
    from augvae.overlay.sources import load_sources

    with pytest.raises(InputError, match=r"values in \[.*\] but must be in \[0, 1\]; divide 8-bit images by 255"):
        train(torch.rand(4, 1, S, S) * 255, ModelConfig(image_size=S, latent_dim=2), recipe_config("small-set", epochs=1, batch_size=2),
              progress=False)
    src = load_sources(model_dir)
    for bad, match in [(torch.rand(2, 1, S, S) * 255, "must be in \\[0, 1\\]"), (torch.full((2, 1, S, S), 140, dtype=torch.uint8),
                       "float tensor"), (torch.rand(1, S, S), "float tensor"), (torch.rand(0, 1, S, S), "non-empty")]:
        with pytest.raises(InputError, match=match):
            transplant_onto(src, bad, ["a"] * len(bad), OverlayOptions())
    with pytest.raises(InputError, match="2 backgrounds but 1 background_names"):
        transplant_onto(src, torch.rand(2, 1, S, S), ["a"], OverlayOptions())


@pytest.mark.parametrize("policy", ["onto-background", "soft"])
def test_transplant_onto_pastes_by_default_whatever_the_label_policy(model_dir: Path, policy: str) -> None:
    """transplant_onto's backgrounds are defect-free, so blend='auto' is the paste there for the soft policy too."""
    from augvae.overlay.engine import transplant_onto
    from augvae.overlay.sources import load_sources

    src = load_sources(model_dir)
    _, _, records = transplant_onto(src, torch.full((6, 1, S, S), 0.55), [f"b{i}" for i in range(6)],
                                    OverlayOptions(policy=policy, k=2), torch.Generator().manual_seed(0))
    assert {b for r in records for b in r.blends} == {"paste"}
    _, _, records = transplant_onto(src, torch.full((6, 1, S, S), 0.55), [f"b{i}" for i in range(6)],
                                    OverlayOptions(policy=policy, k=2, blend="add"), torch.Generator().manual_seed(0))
    assert {b for r in records for b in r.blends} == {"add"}
