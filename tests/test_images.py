"""Behavioural tests of augvae.data.images: every file is made in tmp_path."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageFile

from augvae.data.images import (
    IMAGE_EXTENSIONS,
    MIN_IMAGE_SIDE,
    RESIZE_POLICIES,
    ImageSet,
    check_min_per_class,
    fit_image,
    load_folder,
    load_images,
    read_image,
    scan_folder,
)
from augvae.errors import AugvaeError, ConfigError, DataError, ImageReadError, InputError

NEU_DET = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "neu_det"


def _gray(h: int = 24, w: int = 32, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(h, w), dtype=np.uint8)


def _rgb(h: int = 24, w: int = 32, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(h, w, 3), dtype=np.uint8)


def _save(path: Path, array: np.ndarray, **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, **kw)
    return path


def _luma(rgb: np.ndarray) -> np.ndarray:
    f = rgb.astype(np.float64) / 255.0
    return 0.299 * f[..., 0] + 0.587 * f[..., 1] + 0.114 * f[..., 2]


# ------------------------------------------------------------------------------------------------
# read_image: values


def test_constants():
    assert IMAGE_EXTENSIONS == (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
    assert RESIZE_POLICIES == ("resize", "center-crop", "pad")
    assert MIN_IMAGE_SIDE == 8


@pytest.mark.parametrize("ext", [".png", ".bmp", ".tif"])
def test_gray_8bit_lossless_round_trip(tmp_path, ext):
    a = _gray()
    p = _save(tmp_path / f"g{ext}", a)
    out = read_image(p)
    assert out.shape == (24, 32, 1) and out.dtype == np.float32
    np.testing.assert_array_equal(out[..., 0], a.astype(np.float32) / 255.0)
    three = read_image(p, channels=3)
    assert three.shape == (24, 32, 3)
    for c in range(3):
        np.testing.assert_array_equal(three[..., c], out[..., 0])


def test_rgb_png_round_trip_and_gray_uses_pil_l_formula(tmp_path):
    a = _rgb()
    p = _save(tmp_path / "c.png", a)
    rgb = read_image(p, channels=3)
    np.testing.assert_array_equal(rgb, a.astype(np.float32) / 255.0)
    gray = read_image(p, channels=1)
    assert gray.shape == (24, 32, 1)
    np.testing.assert_allclose(gray[..., 0], _luma(a), atol=1e-6)
    # PIL's own "L" conversion rounds to 8 bits: the same formula within half a grey level
    pil_l = np.asarray(Image.fromarray(a).convert("L"), dtype=np.float64) / 255.0
    np.testing.assert_allclose(gray[..., 0], pil_l, atol=0.5 / 255 + 1e-6)


def test_jpeg_round_trip_close(tmp_path):
    smooth = np.tile(np.linspace(20, 230, 64).astype(np.uint8), (48, 1))
    p = _save(tmp_path / "s.jpg", smooth, quality=95)
    out = read_image(p)
    assert out.shape == (48, 64, 1)
    np.testing.assert_allclose(out[..., 0], smooth / 255.0, atol=4 / 255)
    pc = _save(tmp_path / "c.JPEG", np.stack([smooth] * 3, axis=-1), quality=95)
    rgb = read_image(pc, channels=3)
    assert rgb.shape == (48, 64, 3)
    np.testing.assert_allclose(rgb[..., 1], smooth / 255.0, atol=4 / 255)


@pytest.mark.parametrize("ext", [".png", ".tif"])
def test_16bit_scaled_by_65535(tmp_path, ext):
    a = np.zeros((16, 16), dtype=np.uint16)
    a[0, 0] = 65535
    a[0, 1] = 32768
    a[0, 2] = 255  # would be white if wrongly scaled by 255
    im = Image.fromarray(a)
    assert im.mode == "I;16"
    p = tmp_path / f"deep{ext}"
    im.save(p)
    out = read_image(p)
    assert out.dtype == np.float32
    assert out[0, 0, 0] == 1.0
    assert out[0, 1, 0] == pytest.approx(32768 / 65535)
    assert out[0, 2, 0] == pytest.approx(255 / 65535)
    assert out[1, 1, 0] == 0.0
    assert read_image(p, channels=3).shape == (16, 16, 3)


def test_32bit_int_tiff_holding_16bit_data(tmp_path):
    a = np.full((10, 10), 65535, dtype=np.int32)
    a[0, 0] = 0
    p = tmp_path / "i32.tif"
    Image.fromarray(a).save(p)
    out = read_image(p)
    assert out[1, 1, 0] == 1.0 and out[0, 0, 0] == 0.0


def test_float_tiff_in_unit_range_kept_and_out_of_range_refused(tmp_path):
    a = np.linspace(0, 1, 100, dtype=np.float32).reshape(10, 10)
    p = tmp_path / "f.tif"
    Image.fromarray(a).save(p)
    np.testing.assert_allclose(read_image(p)[..., 0], a)
    bad = tmp_path / "f_bad.tif"
    Image.fromarray(a * 1000).save(bad)
    with pytest.raises(ImageReadError, match=r"f_bad\.tif.*\[0, 1\]"):
        read_image(bad)


def test_palette_with_transparency_is_composited_on_black(tmp_path):
    im = Image.new("P", (10, 10), 1)
    im.putpalette([255, 0, 0, 255, 255, 255] + [0, 0, 0] * 254)
    for x in range(5):
        for y in range(10):
            im.putpixel((x, y), 0)  # red, made transparent below
    im.info["transparency"] = 0
    p = tmp_path / "pal.png"
    im.save(p, transparency=0)
    out = read_image(p, channels=3)
    assert out.shape == (10, 10, 3)
    np.testing.assert_array_equal(out[:, :5], 0.0)  # transparent red -> black
    np.testing.assert_array_equal(out[:, 5:], 1.0)  # opaque white stays white
    gray = read_image(p)
    assert gray[0, 0, 0] == 0.0 and gray[0, 9, 0] == pytest.approx(1.0)


def test_opaque_palette_reads_like_rgb(tmp_path):
    im = Image.fromarray(_rgb(16, 16)).convert("P")
    p = tmp_path / "pal_opaque.png"
    im.save(p)
    expected = np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0
    np.testing.assert_array_equal(read_image(p, channels=3), expected)


def test_rgba_and_la_composited_on_black(tmp_path):
    a = np.zeros((10, 10, 4), dtype=np.uint8)
    a[..., :3] = (200, 100, 50)
    a[:, :, 3] = 255
    a[0, 0, 3] = 0  # fully transparent
    a[0, 1, 3] = 51  # 20 % opaque
    p = _save(tmp_path / "rgba.png", a)
    rgb = read_image(p, channels=3)
    np.testing.assert_array_equal(rgb[0, 0], 0.0)
    np.testing.assert_allclose(rgb[0, 1], np.array([200, 100, 50]) / 255 * 0.2, atol=1e-6)
    np.testing.assert_allclose(rgb[5, 5], np.array([200, 100, 50]) / 255, atol=1e-6)
    gray = read_image(p)
    assert gray[0, 0, 0] == 0.0
    assert gray[5, 5, 0] == pytest.approx(_luma(np.array([[[200, 100, 50]]], dtype=np.uint8))[0, 0], abs=1e-6)

    la = np.zeros((10, 10, 2), dtype=np.uint8)
    la[..., 0] = 255
    la[..., 1] = 255
    la[3, 3, 1] = 0
    q = tmp_path / "la.png"
    Image.merge("LA", [Image.fromarray(la[..., 0]), Image.fromarray(la[..., 1])]).save(q)
    out = read_image(q)
    assert out[3, 3, 0] == 0.0 and out[0, 0, 0] == 1.0


def test_cmyk_and_1bit(tmp_path):
    cmyk = Image.fromarray(_rgb(12, 12)).convert("CMYK")
    p = tmp_path / "cmyk.jpg"
    cmyk.save(p, quality=100)
    out = read_image(p, channels=3)
    assert out.shape == (12, 12, 3) and 0.0 <= out.min() and out.max() <= 1.0

    bits = Image.new("1", (16, 16), 0)
    bits.putpixel((3, 4), 1)
    q = tmp_path / "bits.png"
    bits.save(q)
    out = read_image(q)
    assert set(np.unique(out).tolist()) == {0.0, 1.0}
    assert out[4, 3, 0] == 1.0


def test_names_with_spaces_and_non_ascii(tmp_path):
    folder = tmp_path / "Linie 3 – Prüfung" / "défaut 划痕"
    p = _save(folder / "bild nr 1 äöü 画像.png", _gray())
    assert read_image(p).shape == (24, 32, 1)
    assert read_image(str(p)).shape == (24, 32, 1)
    paths, labels, classes = scan_folder(folder.parent)
    assert classes == ["défaut 划痕"] and paths == [p] and labels == [0]


# ------------------------------------------------------------------------------------------------
# read_image: refusals


def test_missing_file(tmp_path):
    p = tmp_path / "nope.png"
    with pytest.raises(ImageReadError, match="nope.png.*does not exist"):
        read_image(p)


def test_zero_byte_file(tmp_path):
    p = tmp_path / "empty.png"
    p.write_bytes(b"")
    with pytest.raises(ImageReadError, match=r"empty\.png.*0 bytes"):
        read_image(p)


def test_non_image_with_image_extension(tmp_path):
    p = tmp_path / "notes.jpg"
    p.write_text("this is not a picture\n" * 20)
    with pytest.raises(ImageReadError, match=r"notes\.jpg.*not a readable image") as info:
        read_image(p)
    assert "Traceback" not in str(info.value)


def test_folder_named_like_image(tmp_path):
    d = tmp_path / "dir.png"
    d.mkdir()
    with pytest.raises(ImageReadError, match="dir.png.*folder"):
        read_image(d)


@pytest.mark.parametrize("ext", [".jpg", ".png"])
def test_truncated_file_refused(tmp_path, ext):
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False
    full = _save(tmp_path / f"full{ext}", _rgb(100, 100))
    data = full.read_bytes()
    p = tmp_path / f"cut{ext}"
    p.write_bytes(data[: int(len(data) * 0.6)])
    with pytest.raises(ImageReadError, match=f"cut\\{ext}.*truncated"):
        read_image(p)
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


def test_too_small_image_names_size_and_minimum(tmp_path):
    p = _save(tmp_path / "tiny.png", _gray(5, 30))
    with pytest.raises(ImageReadError) as info:
        read_image(p)
    msg = str(info.value)
    assert "tiny.png" in msg and "30x5" in msg and "8x8" in msg
    assert read_image(_save(tmp_path / "ok.png", _gray(8, 8))).shape == (8, 8, 1)


def test_decompression_bomb_warning_band_is_refused(tmp_path, monkeypatch):
    p = _save(tmp_path / "bomb.png", _gray(64, 64))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 3000)  # 4096 px: > MAX, <= 2 * MAX
    with pytest.raises(ImageReadError, match=r"bomb\.png.*decompression-bomb limit of 3000"):
        read_image(p)


def test_decompression_bomb_error_band_is_refused(tmp_path, monkeypatch):
    p = _save(tmp_path / "bomb2.png", _gray(64, 64))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 4096 px: > 2 * MAX
    with pytest.raises(ImageReadError, match=r"bomb2\.png.*decompression-bomb"):
        read_image(p)


def test_pil_safety_settings_untouched(tmp_path):
    before = Image.MAX_IMAGE_PIXELS
    read_image(_save(tmp_path / "a.png", _gray()))
    assert Image.MAX_IMAGE_PIXELS == before == 89478485  # PIL's default
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


@pytest.mark.parametrize("channels", [0, 2, 4, True, "1", 1.0])
def test_bad_channels(tmp_path, channels):
    p = _save(tmp_path / "a.png", _gray())
    with pytest.raises(ConfigError, match="channels"):
        read_image(p, channels=channels)


def test_errors_are_augvae_errors(tmp_path):
    p = tmp_path / "x.png"
    p.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(AugvaeError):
        read_image(p)


# ------------------------------------------------------------------------------------------------
# fit_image


@pytest.mark.parametrize("policy", RESIZE_POLICIES)
@pytest.mark.parametrize("hw", [(30, 50), (50, 30), (9, 200), (16, 16)])
@pytest.mark.parametrize("c", [1, 3])
def test_fit_image_shapes(policy, hw, c):
    img = np.random.default_rng(1).random((*hw, c), dtype=np.float32)
    out = fit_image(img, 24, policy)
    assert out.shape == (24, 24, c) and out.dtype == np.float32
    assert out.min() >= 0.0 and out.max() <= 1.0


def test_fit_image_constant_stays_constant_and_upscales():
    img = np.full((10, 20, 1), 0.25, dtype=np.float32)
    for policy in RESIZE_POLICIES:
        np.testing.assert_allclose(fit_image(img, 64, policy), 0.25, atol=1e-6)


def test_fit_image_center_crop_keeps_centre_and_pad_keeps_content():
    img = np.zeros((20, 60, 1), dtype=np.float32)
    img[:, 20:40] = 1.0  # bright centre third
    crop = fit_image(img, 20, "center-crop")
    np.testing.assert_allclose(crop, 1.0, atol=1e-6)  # the crop is exactly the centre square
    padded = fit_image(img, 30, "pad")
    # long side 60 -> 30, short side 20 -> 10, padded by 10 rows on each side
    np.testing.assert_allclose(padded[10:20, 12:18], 1.0, atol=1e-6)
    np.testing.assert_allclose(padded[10:20, :8], 0.0, atol=1e-6)


def test_fit_image_resize_is_antialiased():
    img = np.zeros((64, 64, 1), dtype=np.float32)
    img[:, ::2] = 1.0  # stripes one pixel wide: an antialiased shrink averages them
    out = fit_image(img, 8, "resize")
    np.testing.assert_allclose(out, 0.5, atol=0.05)


def test_fit_image_errors():
    img = np.zeros((10, 10, 1), dtype=np.float32)
    with pytest.raises(ConfigError, match="'resize', 'center-crop', 'pad'"):
        fit_image(img, 16, "stretch")
    for size in (7, 4097, 16.0, True, "16"):
        with pytest.raises(ConfigError, match="image_size"):
            fit_image(img, size)
    with pytest.raises(InputError, match=r"\(H, W, C\)"):
        fit_image(np.zeros((10, 10), dtype=np.float32), 16)
    with pytest.raises(InputError, match="float32"):
        fit_image(np.zeros((10, 10, 1), dtype=np.uint8), 16)
    with pytest.raises(InputError, match=r"\[0, 1\]"):
        fit_image(np.full((10, 10, 1), 255.0, dtype=np.float32), 16)
    with pytest.raises(InputError):
        fit_image([[0.0]], 16)


# ------------------------------------------------------------------------------------------------
# scan_folder


def test_scan_flat_folder(tmp_path):
    root = tmp_path / "scratch"
    for name in ("b.png", "a.JPG", "c.tiff", "notes.txt", ".hidden.png", "._a.JPG"):
        if name.endswith(".txt"):
            (root / name).write_text("x")
        else:
            _save(root / name, _gray())
    paths, labels, classes = scan_folder(root)
    assert [p.name for p in paths] == ["a.JPG", "b.png", "c.tiff"]
    assert labels == [0, 0, 0] and classes == ["scratch"]


def test_scan_class_folders(tmp_path, caplog):
    root = tmp_path / "data"
    _save(root / "pore" / "2.png", _gray())
    _save(root / "pore" / "1.png", _gray())
    _save(root / "crack" / "x.bmp", _gray())
    _save(root / ".cache" / "y.png", _gray())  # hidden folder
    (root / "empty").mkdir()
    (root / "docs").mkdir()
    (root / "docs" / "readme.txt").write_text("x")
    (root / "README.txt").write_text("x")
    with caplog.at_level(logging.WARNING, logger="augvae"):
        paths, labels, classes = scan_folder(root)
    assert classes == ["crack", "pore"]
    assert [p.relative_to(root).as_posix() for p in paths] == ["crack/x.bmp", "pore/1.png", "pore/2.png"]
    assert labels == [0, 1, 1]
    warned = " ".join(r.getMessage() for r in caplog.records)
    assert "empty" in warned and "docs" in warned and ".cache" not in warned
    assert scan_folder(root) == (paths, labels, classes)  # deterministic


def test_scan_mixed_layout_refused(tmp_path):
    root = tmp_path / "mixed"
    _save(root / "loose.png", _gray())
    _save(root / "pore" / "a.png", _gray())
    with pytest.raises(DataError) as info:
        scan_folder(root)
    msg = str(info.value)
    assert "mixed" in msg and "loose.png" in msg and "'pore'" in msg and "subfolder per class" in msg


def test_scan_empty_missing_and_file_roots(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("x")
    (empty / "pics").mkdir()
    (empty / "pics" / "a.gif").write_bytes(b"GIF89a")
    with pytest.raises(DataError) as info:
        scan_folder(empty)
    msg = str(info.value)
    assert "empty" in msg and ".png" in msg and ".tiff" in msg and ".gif" in msg
    with pytest.raises(DataError, match="does not exist"):
        scan_folder(tmp_path / "missing")
    f = _save(tmp_path / "file.png", _gray())
    with pytest.raises(DataError, match="not a folder"):
        scan_folder(f)


def test_scan_nested_too_deep_hint(tmp_path):
    root = tmp_path / "dataset"
    _save(root / "train" / "pore" / "a.png", _gray())
    with pytest.raises(DataError, match="deeper folders"):
        scan_folder(root)



def test_scan_warns_of_images_below_a_class_folder(tmp_path, caplog):
    """A class split into batch subfolders lost those images without a word."""
    root = tmp_path / "dataset"
    _save(root / "crack" / "a.png", _gray())
    _save(root / "crack" / "batch2" / "b.png", _gray())
    with caplog.at_level(logging.WARNING, logger="augvae"):
        paths, _, classes = scan_folder(root)
    assert [p.name for p in paths] == ["a.png"] and classes == ["crack"]
    assert "'batch2'" in caplog.text and "not read" in caplog.text


# ------------------------------------------------------------------------------------------------
# load_folder / load_images / ImageSet


def _tree(root: Path) -> None:
    for cls, n in (("pore", 2), ("crack", 3)):
        for i in range(n):
            _save(root / cls / f"{cls}_{i}.png", _gray(20 + i, 30, seed=i))


def test_load_folder_labels_and_classes(tmp_path):
    root = tmp_path / "steel"
    _tree(root)
    data = load_folder(root, image_size=16, policy="center-crop")
    assert isinstance(data, ImageSet) and len(data) == 5
    assert data.images.shape == (5, 1, 16, 16) and data.images.dtype == torch.float32
    assert data.labels.dtype == torch.int64
    assert data.classes == ["crack", "pore"]
    assert data.labels.tolist() == [0, 0, 0, 1, 1]
    assert [Path(p).name for p in data.paths] == ["crack_0.png", "crack_1.png", "crack_2.png", "pore_0.png", "pore_1.png"]
    assert data.class_counts() == {"crack": 3, "pore": 2}
    assert 0.0 <= float(data.images.min()) and float(data.images.max()) <= 1.0
    rgb = load_folder(root, image_size=8, channels=3, progress=True)
    assert rgb.images.shape == (5, 3, 8, 8)
    # the stored pixels are the fitted pixels of read_image
    expected = fit_image(read_image(data.paths[3]), 16, "center-crop")
    np.testing.assert_array_equal(data.images[3].numpy(), expected.transpose(2, 0, 1))


def test_load_folder_lists_all_unreadable_files(tmp_path):
    root = tmp_path / "steel"
    _tree(root)
    for i in range(12):
        (root / "pore" / f"bad_{i:02d}.jpg").write_bytes(b"")
    with pytest.raises(ImageReadError) as info:
        load_folder(root, image_size=16)
    msg = str(info.value)
    assert msg.startswith("12 of 17 image files")
    assert "bad_00.jpg" in msg and "bad_09.jpg" in msg and "bad_10.jpg" not in msg
    assert "and 2 more" in msg and "remove or fix these files" in msg


def test_load_folder_single_unreadable_file(tmp_path):
    root = tmp_path / "steel"
    _tree(root)
    (root / "crack" / "junk.png").write_text("nope")
    with pytest.raises(ImageReadError, match=r"junk\.png"):
        load_folder(root, image_size=16)


def test_load_folder_validates_arguments_first(tmp_path):
    for kw in ({"image_size": 4}, {"image_size": 16, "channels": 2}, {"image_size": 16, "policy": "zoom"}):
        with pytest.raises(ConfigError):
            load_folder(tmp_path / "does-not-matter", **kw)


def test_load_images_explicit_list(tmp_path):
    a = _save(tmp_path / "pore" / "a.png", _gray())
    b = _save(tmp_path / "crack" / "b b.jpg", _rgb())
    s = load_images([a, b], image_size=8)
    assert s.images.shape == (2, 1, 8, 8)
    assert s.classes == ["crack", "pore"] and s.labels.tolist() == [1, 0]
    assert s.paths == [str(a), str(b)]
    s2 = load_images([a, b], 8, labels=[1, 1], classes=["x", "y"])
    assert s2.labels.tolist() == [1, 1] and s2.classes == ["x", "y"]
    s3 = load_images([str(a)], 8, labels=[2])
    assert s3.classes == ["0", "1", "2"]
    s4 = load_images([a], 8, classes=["crack", "pore"])
    assert s4.labels.tolist() == [1]
    with pytest.raises(ImageReadError, match=r"gone\.png"):
        load_images([a, tmp_path / "gone.png"], image_size=8)
    with pytest.raises(ConfigError, match="one label per path"):
        load_images([a, b], 8, labels=[0])
    with pytest.raises(ConfigError):
        load_images([a], 8, labels=[3], classes=["x"])
    with pytest.raises(ConfigError, match="not one of the classes"):
        load_images([a], 8, classes=["x"])
    with pytest.raises(DataError):
        load_images([], 8)
    with pytest.raises(ConfigError, match="single path"):
        load_images(a, 8)


def test_imageset_subset_and_by_class():
    s = ImageSet(torch.rand(4, 1, 8, 8), torch.tensor([0, 1, 1, 0]), ["a", "b"], ["w", "x", "y", "z"])
    sub = s.subset([3, 1])
    assert sub.paths == ["z", "x"] and sub.labels.tolist() == [0, 1] and sub.classes == ["a", "b"]
    torch.testing.assert_close(sub.images[0], s.images[3])
    assert len(s.subset(np.array([True, False, False, True]))) == 2
    assert len(s.subset(torch.tensor([], dtype=torch.long))) == 0
    assert len(s.subset([])) == 0
    assert s.by_class("b").paths == ["x", "y"]
    assert s.subset([0]).class_counts() == {"a": 1, "b": 0}
    with pytest.raises(ConfigError, match="'c'"):
        s.by_class("c")
    with pytest.raises(InputError):
        s.subset([4])
    with pytest.raises(InputError):
        s.subset([-1])
    with pytest.raises(InputError):
        s.subset([0.5])


@pytest.mark.parametrize(
    "kwargs",
    [
        {"images": torch.rand(3, 1, 8, 4)},  # not square
        {"images": torch.rand(3, 8, 8)},  # 3-D
        {"images": torch.rand(3, 1, 8, 8).double()},
        {"labels": torch.tensor([0, 1])},
        {"labels": torch.tensor([0, 1, 1], dtype=torch.int32)},
        {"labels": torch.tensor([0, 1, 2])},  # label out of range
        {"paths": ["a", "b"]},
        {"classes": ["a", "a"]},
    ],
)
def test_imageset_validation(kwargs):
    base = {
        "images": torch.rand(3, 1, 8, 8),
        "labels": torch.tensor([0, 1, 1]),
        "classes": ["a", "b"],
        "paths": ["p", "q", "r"],
    }
    base.update(kwargs)
    with pytest.raises(InputError):
        ImageSet(**base)


def test_check_min_per_class_message():
    s = ImageSet(torch.rand(4, 1, 8, 8), torch.tensor([0, 0, 0, 1]), ["crack", "pore"], list("abcd"))
    with pytest.raises(DataError) as info:
        check_min_per_class(s, 2, "the small-set recipe")
    assert str(info.value) == (
        "class 'pore' has 1 image; the small-set recipe needs at least 2 per class; "
        "add images or drop the class folder"
    )
    check_min_per_class(s, 1, "anything")  # no error
    s3 = ImageSet(torch.rand(2, 1, 8, 8), torch.tensor([0, 0]), ["crack", "pore", "spot"], ["a", "b"])
    with pytest.raises(DataError) as info:
        check_min_per_class(s3, 3, "training")
    msg = str(info.value)
    assert "class 'crack' has 2 images" in msg and "class 'pore' has 0 images" in msg and "'spot'" in msg
    with pytest.raises(ConfigError):
        check_min_per_class(s, -1, "x")


# ------------------------------------------------------------------------------------------------
# real data


def test_real_neu_det_images():
    if not NEU_DET.is_dir():
        pytest.skip(f"NEU-DET images not found at {NEU_DET}")
    class_dirs = sorted(d for d in NEU_DET.iterdir() if d.is_dir() and not d.name.startswith("."))
    paths = []
    for d in class_dirs:
        paths.extend(sorted(p for p in d.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)[:3])
    if not paths:
        pytest.skip(f"no images in {NEU_DET}")
    s = load_images(paths, image_size=64)
    assert s.images.shape == (len(paths), 1, 64, 64)
    assert s.classes == [d.name for d in class_dirs]
    assert s.class_counts() == {d.name: 3 for d in class_dirs}
    assert 0.0 <= float(s.images.min()) < float(s.images.max()) <= 1.0
    full = read_image(paths[0])
    assert full.shape == (200, 200, 1)
    rgb = read_image(paths[0], channels=3)
    np.testing.assert_allclose(rgb[..., 0], full[..., 0], atol=2 / 255)  # stored R=G=B
