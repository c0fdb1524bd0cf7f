"""Behaviour of the procedural defect generator ``augvae.data.synthetic``."""

from __future__ import annotations

import csv
import dataclasses
import math

import numpy as np
import pytest
from PIL import Image

from augvae.data.synthetic import (
    DEFECT_KINDS,
    SyntheticImage,
    add_crack,
    add_pore,
    add_scratch,
    make_dataset,
    make_image,
    make_overlay_sources,
    make_surface,
    write_dataset,
    write_overlay_sources,
)
from augvae.errors import ConfigError, InputError

ALL_KINDS = ("clean", *DEFECT_KINDS)


def grow(mask: np.ndarray, px: int) -> np.ndarray:
    """Reference square dilation: every pixel within ``px`` (per axis) of a mask pixel."""
    h, w = mask.shape
    out = np.zeros_like(mask)
    padded = np.pad(mask, px)
    for dy in range(2 * px + 1):
        for dx in range(2 * px + 1):
            out |= padded[dy : dy + h, dx : dx + w]
    return out


def margin(size: int) -> int:
    """The documented reach of a defect beyond its mask."""
    return math.ceil(size / 20) + 2


# ------------------------------------------------------------------------------------------------
# single images


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_same_seed_gives_identical_arrays(kind: str) -> None:
    a = make_image(kind, size=48, seed=5)
    b = make_image(kind, size=48, seed=5)
    assert np.array_equal(a.image, b.image)
    assert np.array_equal(a.mask, b.mask)
    assert (a.kind, a.seed) == (kind, 5)


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_different_seeds_give_different_images(kind: str) -> None:
    images = [make_image(kind, size=32, seed=s).image for s in range(4)]
    for i in range(len(images)):
        for j in range(i + 1, len(images)):
            assert not np.array_equal(images[i], images[j])


@pytest.mark.parametrize("size", [16, 33, 64, 256])
@pytest.mark.parametrize("kind", ALL_KINDS)
def test_dtype_shape_and_range(kind: str, size: int) -> None:
    sample = make_image(kind, size=size, seed=1, boundary_prob=0.5)
    assert isinstance(sample, SyntheticImage)
    assert sample.image.shape == (size, size) and sample.image.dtype == np.float32
    assert sample.mask.shape == (size, size) and sample.mask.dtype == np.bool_
    assert np.isfinite(sample.image).all()
    assert sample.image.min() >= 0.0 and sample.image.max() <= 1.0


@pytest.mark.parametrize("kind", DEFECT_KINDS)
def test_defect_masks_are_non_empty(kind: str) -> None:
    for size in (16, 64):
        for seed in range(12):
            sample = make_image(kind, size=size, seed=seed)
            assert sample.mask.any(), (kind, size, seed)
            assert sample.mask.mean() < 0.25, "a defect should not cover most of the image"


def test_clean_mask_is_empty() -> None:
    for seed in range(5):
        assert not make_image("clean", size=32, seed=seed).mask.any()


@pytest.mark.parametrize("kind", ["crack", "pore"])
@pytest.mark.parametrize("boundary_prob", [0.0, 1.0])
def test_cracks_and_pores_are_clearly_darker_at_the_mask(kind: str, boundary_prob: float) -> None:
    for seed in range(10):
        clean = make_image("clean", size=64, seed=seed, boundary_prob=boundary_prob)
        defect = make_image(kind, size=64, seed=seed, boundary_prob=boundary_prob)
        drop = clean.image[defect.mask] - defect.image[defect.mask]
        assert drop.mean() >= 0.25, (kind, seed, drop.mean())
        assert (drop > 0).mean() > 0.95


def test_scratches_differ_from_the_surface_at_the_mask() -> None:
    for seed in range(10):
        clean = make_image("clean", size=64, seed=seed)
        scratch = make_image("scratch", size=64, seed=seed)
        assert np.abs(scratch.image - clean.image)[scratch.mask].mean() > 0.08


@pytest.mark.parametrize("size", [24, 64, 128])
@pytest.mark.parametrize("kind", DEFECT_KINDS)
def test_defect_leaves_the_surface_untouched_away_from_its_mask(kind: str, size: int) -> None:
    for seed in range(6):
        clean = make_image("clean", size=size, seed=seed)
        defect = make_image(kind, size=size, seed=seed)
        far = ~grow(defect.mask, margin(size))
        assert np.array_equal(defect.image[far], clean.image[far])
        assert not np.array_equal(defect.image, clean.image)


def test_surface_seed_lets_defects_share_one_surface() -> None:
    surface = make_image("clean", size=64, seed=7).image
    crack = make_image("crack", size=64, seed=1, surface_seed=7)
    pore = make_image("pore", size=64, seed=2, surface_seed=7)
    for sample in (crack, pore):
        far = ~grow(sample.mask, margin(64))
        assert np.array_equal(sample.image[far], surface[far])
    assert crack.seed == 1
    # The defect comes from ``seed``: same seed on another surface gives the same crack shape.
    assert not np.array_equal(crack.image, make_image("crack", size=64, seed=1).image)


def test_defects_lie_on_the_product_side_of_a_boundary() -> None:
    for seed in range(8):
        clean = make_image("clean", size=64, seed=seed, boundary_prob=1.0)
        for kind in DEFECT_KINDS:
            sample = make_image(kind, size=64, seed=seed, boundary_prob=1.0)
            # The product is the side holding the median pixel; the defect must sit there.
            product = np.abs(clean.image - np.median(clean.image)) < 0.2
            assert product[sample.mask].mean() > 0.9, (kind, seed)


def test_add_functions_do_not_modify_their_input_and_accept_non_square_images() -> None:
    rng = np.random.default_rng(0)
    surface = make_surface(64, rng, boundary_prob=0.0)[:40, :]
    before = surface.copy()
    for add in (add_crack, add_pore, add_scratch):
        out, mask = add(surface, np.random.default_rng(3))
        assert out.shape == mask.shape == (40, 64)
        assert out.dtype == np.float32 and mask.dtype == np.bool_
        assert 0.0 <= out.min() and out.max() <= 1.0
        assert mask.any()
    assert np.array_equal(surface, before)


@pytest.mark.parametrize("add", [add_crack, add_pore, add_scratch])
def test_add_functions_reject_bad_images(add) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(0)
    with pytest.raises(InputError):
        add(np.zeros((8, 8, 3), dtype=np.float32), rng)
    with pytest.raises(InputError):
        add(np.zeros((8, 8), dtype=np.uint8), rng)


def test_add_crack_honours_placement() -> None:
    surface = np.full((64, 64), 0.6, dtype=np.float32)
    _, left = add_crack(surface, np.random.default_rng(0), center=(0.25, 0.5), angle=np.pi / 2, length=0.3)
    _, right = add_crack(surface, np.random.default_rng(0), center=(0.75, 0.5), angle=np.pi / 2, length=0.3)
    assert np.nonzero(left)[1].mean() < 32 < np.nonzero(right)[1].mean()
    _, pore = add_pore(surface, np.random.default_rng(0), center=(0.5, 0.5), radius=0.1)
    ys, xs = np.nonzero(pore)
    assert abs(ys.mean() - 31.5) < 2 and abs(xs.mean() - 31.5) < 2
    assert 0.5 * np.pi * 6.4**2 < pore.sum() < 2.0 * np.pi * 6.4**2


def test_synthetic_image_is_frozen() -> None:
    sample = make_image("clean", size=16)
    with pytest.raises(dataclasses.FrozenInstanceError):
        sample.kind = "crack"  # type: ignore[misc]


# ------------------------------------------------------------------------------------------------
# surfaces


def test_make_surface_is_a_function_of_the_rng_state() -> None:
    a = make_surface(64, np.random.default_rng(11))
    b = make_surface(64, np.random.default_rng(11))
    assert np.array_equal(a, b) and a.dtype == np.float32


def test_surface_without_boundary_is_mid_grey_texture() -> None:
    for seed in range(10):
        s = make_surface(64, np.random.default_rng(seed), boundary_prob=0.0)
        assert 0.5 < s.mean() < 0.75
        assert 0.01 < s.std() < 0.12, "textured, but no sharp regions"
        assert np.percentile(s, 1) > 0.3 and np.percentile(s, 99) < 0.9


def test_surface_with_boundary_has_a_sharp_transition() -> None:
    for seed in range(10):
        s = make_surface(64, np.random.default_rng(seed), boundary_prob=1.0)
        far = np.abs(s - np.median(s)) > 0.2
        assert 0.02 < far.mean() < 0.5, seed
        # Sharp: somewhere two neighbouring pixels differ by a lot.
        jump = max(np.abs(np.diff(s, axis=0)).max(), np.abs(np.diff(s, axis=1)).max())
        assert jump > 0.2


def test_scene_is_the_same_at_every_size() -> None:
    def has_boundary(img: np.ndarray) -> bool:
        return bool((np.abs(img - np.median(img)) > 0.2).mean() > 0.02)

    for seed in range(16):
        small = make_image("clean", size=32, seed=seed).image
        large = make_image("clean", size=96, seed=seed).image
        assert has_boundary(small) == has_boundary(large), seed


# ------------------------------------------------------------------------------------------------
# overlay sources


@pytest.mark.parametrize("size", [32, 64, 128])
def test_overlay_sources_share_one_surface(size: int) -> None:
    for seed in range(3):
        src = make_overlay_sources(size=size, seed=seed)
        assert list(src) == ["background", "crack1", "crack2", "pore"]
        assert [s.kind for s in src.values()] == ["clean", "crack", "crack", "pore"]
        background = src["background"]
        assert not background.mask.any()
        assert np.percentile(background.image, 1) > 0.3, "no product boundary in the background"
        for name in ("crack1", "crack2", "pore"):
            sample = src[name]
            assert sample.mask.any()
            far = ~grow(sample.mask, margin(size))
            assert np.array_equal(sample.image[far], background.image[far]), name
            drop = background.image[sample.mask] - sample.image[sample.mask]
            assert drop.mean() >= 0.25, name


def test_overlay_defects_are_separate_and_the_cracks_differ() -> None:
    for seed in range(6):
        src = make_overlay_sources(size=64, seed=seed)
        masks = {k: src[k].mask for k in ("crack1", "crack2", "pore")}
        names = list(masks)
        for i in range(3):
            for j in range(i + 1, 3):
                a, b = masks[names[i]], masks[names[j]]
                assert (a & b).sum() <= 0.05 * min(a.sum(), b.sum()), (seed, names[i], names[j])
        c1 = np.argwhere(masks["crack1"]).mean(axis=0)
        c2 = np.argwhere(masks["crack2"]).mean(axis=0)
        assert np.hypot(*(c1 - c2)) > 10, "the two cracks should be in different places"


def test_overlay_sources_are_deterministic() -> None:
    a, b = make_overlay_sources(48, 4), make_overlay_sources(48, 4)
    for key in a:
        assert np.array_equal(a[key].image, b[key].image)
        assert np.array_equal(a[key].mask, b[key].mask)
    assert not np.array_equal(a["crack1"].image, make_overlay_sources(48, 5)["crack1"].image)


# ------------------------------------------------------------------------------------------------
# datasets


def test_make_dataset_order_and_determinism() -> None:
    data = make_dataset(3, size=32, seed=2)
    assert [s.kind for s in data] == [k for k in ("crack", "pore", "scratch", "clean") for _ in range(3)]
    again = make_dataset(3, size=32, seed=2)
    assert all(np.array_equal(a.image, b.image) for a, b in zip(data, again))
    assert len({s.seed for s in data}) == len(data)
    other = make_dataset(3, size=32, seed=3)
    assert not np.array_equal(data[0].image, other[0].image)


def test_make_dataset_image_does_not_depend_on_other_classes() -> None:
    full = make_dataset(2, size=32, seed=0)
    pores = make_dataset(2, size=32, seed=0, classes=("pore",))
    full_pores = [s for s in full if s.kind == "pore"]
    assert all(np.array_equal(a.image, b.image) for a, b in zip(pores, full_pores))
    assert [s.seed for s in pores] == [s.seed for s in full_pores]
    # The seed in each sample rebuilds it with make_image.
    rebuilt = make_image("pore", size=32, seed=pores[1].seed)
    assert np.array_equal(rebuilt.image, pores[1].image)


def test_make_dataset_zero_per_class() -> None:
    assert make_dataset(0, size=16) == []


def test_write_dataset_tree_pngs_and_manifest(tmp_path) -> None:  # type: ignore[no-untyped-def]
    images_dir = write_dataset(tmp_path / "ds", 2, size=32, seed=1, classes=("crack", "clean"))
    root = tmp_path / "ds"
    assert images_dir == root / "images"
    assert sorted(p.name for p in images_dir.iterdir()) == ["clean", "crack"]
    assert sorted(p.name for p in (images_dir / "crack").iterdir()) == ["crack_0.png", "crack_1.png"]
    data = make_dataset(2, size=32, seed=1, classes=("crack", "clean"))
    with open(root / "manifest.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["path", "class", "seed", "mask_path"]
    assert [r["path"] for r in rows] == [
        "images/crack/crack_0.png",
        "images/crack/crack_1.png",
        "images/clean/clean_0.png",
        "images/clean/clean_1.png",
    ]
    for row, sample in zip(rows, data):
        assert row["class"] == sample.kind and int(row["seed"]) == sample.seed
        with Image.open(root / row["path"]) as im:
            assert im.mode == "L" and im.size == (32, 32)
            pixels = np.asarray(im, dtype=np.float32) / 255.0
        assert np.abs(pixels - sample.image).max() <= 1 / 255 + 1e-6
        with Image.open(root / row["mask_path"]) as im:
            mask = np.asarray(im)
        assert set(np.unique(mask)) <= {0, 255}
        assert np.array_equal(mask == 255, sample.mask)
    assert not list(root.rglob("*.tmp")), "no temporary files left behind"


def test_write_dataset_without_masks(tmp_path) -> None:  # type: ignore[no-untyped-def]
    write_dataset(tmp_path, 1, size=16, classes=("pore",), masks=False)
    assert not (tmp_path / "masks").exists()
    with open(tmp_path / "manifest.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert rows == [{"path": "images/pore/pore_0.png", "class": "pore", "seed": rows[0]["seed"], "mask_path": ""}]


def test_write_overlay_sources(tmp_path) -> None:  # type: ignore[no-untyped-def]
    images_dir = write_overlay_sources(tmp_path, size=32, seed=2)
    assert images_dir == tmp_path / "images"
    src = make_overlay_sources(size=32, seed=2)
    for name, sample in src.items():
        with Image.open(images_dir / f"{name}.png") as im:
            pixels = np.asarray(im, dtype=np.float32) / 255.0
        assert np.abs(pixels - sample.image).max() <= 1 / 255 + 1e-6
        with Image.open(tmp_path / "masks" / f"{name}.png") as im:
            assert np.array_equal(np.asarray(im) == 255, sample.mask)


# ------------------------------------------------------------------------------------------------
# errors


def test_unknown_kind_lists_the_valid_kinds() -> None:
    with pytest.raises(ConfigError) as info:
        make_image("dent")
    for kind in ALL_KINDS:
        assert kind in str(info.value)


@pytest.mark.parametrize("size", [15, 1025, 0, -64, 64.0, True, "64", None])
def test_bad_size_raises_config_error(size: object) -> None:
    with pytest.raises(ConfigError):
        make_image("clean", size=size)  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        make_overlay_sources(size=size)  # type: ignore[arg-type]


def test_size_bounds_are_inclusive() -> None:
    assert make_image("crack", size=16).image.shape == (16, 16)
    assert make_surface(1024, np.random.default_rng(0), boundary_prob=0.0).shape == (1024, 1024)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"seed": -1},
        {"seed": 1.5},
        {"surface_seed": -3},
        {"boundary_prob": 1.5},
        {"boundary_prob": -0.1},
    ],
)
def test_bad_make_image_arguments_raise_config_error(kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        make_image("crack", **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"n_per_class": -1},
        {"n_per_class": 1, "classes": ()},
        {"n_per_class": 1, "classes": ("crack", "rust")},
        {"n_per_class": 1, "classes": ("crack", "crack")},
        {"n_per_class": 1, "classes": "crack"},
        {"n_per_class": 1, "size": 8},
    ],
)
def test_bad_dataset_arguments_raise_config_error(kwargs: dict[str, object], tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError):
        make_dataset(**kwargs)  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        write_dataset(tmp_path, **kwargs)  # type: ignore[arg-type]
    assert not (tmp_path / "manifest.csv").exists()
