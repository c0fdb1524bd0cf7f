"""Property-based and fuzz tests (hypothesis): the transforms over random inputs, the loader over random bytes.

Each example either gives an output of the right shape, dtype and range, or raises the documented
augvae error; nothing else (no raw torch/PIL/numpy exception) may escape.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from augvae.errors import AugvaeError, ImageReadError, InputError
from augvae.testing import example_model_folder

FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@pytest.fixture(scope="module")
def model_path() -> Path:
    return example_model_folder()


@st.composite
def numpy_images(draw: st.DrawFn) -> np.ndarray:
    ndim = draw(st.sampled_from([2, 3, 3, 3, 1, 4]))
    h, w = draw(st.integers(1, 48)), draw(st.integers(1, 48))
    shape: tuple[int, ...] = {1: (h,), 2: (h, w), 3: (h, w, draw(st.sampled_from([1, 3, 3, 4, 2]))), 4: (2, h, w, 1)}[ndim]
    dtype = draw(st.sampled_from([np.uint8, np.float32, np.float64, np.uint16, np.int32, np.bool_]))
    rng = np.random.default_rng(draw(st.integers(0, 2**31)))
    if dtype == np.uint8:
        arr = rng.integers(0, 256, size=shape).astype(np.uint8)
    elif dtype in (np.float32, np.float64):
        lo, hi = draw(st.sampled_from([(0.0, 1.0), (0.0, 1.0), (-1.0, 2.0), (0.0, 255.0)]))
        arr = rng.uniform(lo, hi, size=shape).astype(dtype)
        if draw(st.booleans()) and arr.size:
            arr.flat[0] = draw(st.sampled_from([np.nan, np.inf, 0.5]))
    else:
        arr = rng.integers(0, 2, size=shape).astype(dtype)
    return arr


def _valid_numpy(arr: np.ndarray) -> bool:
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (1, 3)):
        return False
    if arr.dtype in (np.uint8, np.uint16):
        return True
    if arr.dtype in (np.float32, np.float64):
        return bool(np.isfinite(arr).all()) and float(arr.min(initial=0)) >= 0 and float(arr.max(initial=0)) <= 1
    return False


@FAST
@given(arr=numpy_images(), seed=st.integers(0, 2**16))
def test_albumentations_transform_over_random_arrays(model_path: Path, arr: np.ndarray, seed: int) -> None:
    import albumentations as A

    from augvae.albumentations import VAEOverlay

    pipe = A.Compose([VAEOverlay(model_path, p=1.0)], seed=seed)
    try:
        out = pipe(image=arr, label=0)["image"]
    except AugvaeError as err:
        assert isinstance(err, InputError), repr(err)
        assert not _valid_numpy(arr) or min(arr.shape[:2]) < 2, f"refused a valid input {arr.shape} {arr.dtype}: {err}"
        return
    assert out.shape == arr.shape and out.dtype == arr.dtype
    assert arr.dtype in (np.uint8, np.uint16, np.float32, np.float64), f"accepted an unsupported dtype {arr.dtype}"
    if out.dtype.kind == "u":
        assert out.min() >= 0 and out.max() <= np.iinfo(out.dtype).max
    else:
        assert np.isfinite(out).all() and out.min() >= 0.0 and out.max() <= 1.0


@FAST
@given(
    b=st.integers(0, 4), c=st.sampled_from([1, 3, 2]), h=st.integers(1, 40), w=st.integers(1, 40),
    dtype=st.sampled_from([torch.float32, torch.float64, torch.uint8, torch.int64]), seed=st.integers(0, 2**16),
    corrupt=st.sampled_from([None, float("nan"), float("inf"), 3.0]),
)
def test_batch_transform_over_random_batches(model_path: Path, b: int, c: int, h: int, w: int, dtype: torch.dtype,
                                             seed: int, corrupt: float | None) -> None:
    from augvae.torchvision import BatchVAEOverlay

    torch.manual_seed(seed)
    x = (torch.rand(b, c, h, w) * (255 if dtype in (torch.uint8, torch.int64) else 1)).to(dtype)
    if corrupt is not None and x.numel() and x.is_floating_point():
        x.view(-1)[0] = corrupt
    labels = torch.randint(0, 3, (b,))
    t = BatchVAEOverlay(model_path, p=1.0, num_classes=3)
    try:
        out, y = t(x, labels)
    except AugvaeError as err:
        assert isinstance(err, InputError), repr(err)
        return
    assert b > 0 and c in (1, 3) and out.shape == x.shape and out.dtype == x.dtype
    if out.is_floating_point():
        assert torch.isfinite(out).all() and out.min() >= 0 and out.max() <= 1
    assert y.shape[0] == b


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(min_size=0, max_size=2048), suffix=st.sampled_from([".png", ".jpg", ".bmp", ".tif"]))
def test_image_loader_over_random_bytes(tmp_path: Path, data: bytes, suffix: str) -> None:
    from augvae.data.images import read_image

    path = tmp_path / f"fuzz{suffix}"
    path.write_bytes(data)
    try:
        arr = read_image(path)
    except ImageReadError as err:
        assert str(path) in str(err)
        return
    assert arr.dtype == np.float32 and arr.ndim == 3 and np.isfinite(arr).all() and 0 <= arr.min() and arr.max() <= 1


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**16), cut=st.floats(0.05, 0.95))
@example(seed=229, cut=0.5)  # a flipped JPEG frame-header byte: 24 rows became 231 (CI, 2026-11-24)
def test_image_loader_over_damaged_real_files(tmp_path: Path, seed: int, cut: float) -> None:
    """Truncated or bit-flipped PNG/JPEG files: a correct image or ImageReadError, nothing else.

    One exception is inherent to the format: JPEG has no checksum, so a bit flip can turn a file into a
    different, well-formed JPEG (a flip in the frame header once changed 24 rows into 231, and libjpeg
    pads the missing rows without an error). For bit-flipped JPEGs the property is the weaker one of
    :func:`test_image_loader_over_random_bytes`: an ImageReadError or a finite image in [0, 1].
    """
    from PIL import Image

    from augvae.data.images import read_image

    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    fmt = ["PNG", "JPEG"][seed % 2]
    Image.fromarray(rng.integers(0, 256, (24, 24), dtype=np.uint8)).save(buf, format=fmt)
    raw = bytearray(buf.getvalue())
    if seed % 3 == 0:
        raw = raw[: int(len(raw) * cut)]
    else:
        for _ in range(3):
            raw[int(rng.integers(0, len(raw)))] ^= 0xFF
    path = tmp_path / f"damaged.{fmt.lower()}"
    path.write_bytes(bytes(raw))
    try:
        arr = read_image(path)
    except ImageReadError:
        return
    assert arr.dtype == np.float32 and np.isfinite(arr).all() and 0 <= arr.min() and arr.max() <= 1
    if fmt == "PNG" or seed % 3 == 0:  # PNG chunks carry CRCs; truncation is always detected
        assert arr.shape == (24, 24, 1)
    else:
        assert arr.ndim == 3 and arr.shape[2] == 1
