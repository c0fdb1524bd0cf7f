"""Reading images and image folders, robustly.

Factory image folders are messy: 16-bit TIFFs beside 8-bit JPEGs, palette PNGs, CMYK scans,
truncated uploads, zero-byte files, ``Thumbs.db`` and ``._name.jpg`` litter. This module turns all
of them into one representation, a float32 array or tensor with values in ``[0, 1]``, or into an
error from :mod:`augvae.errors` that names the file and the fix. It never returns a silently wrong
result and never lets a raw PIL traceback escape.

Conventions:

* Pixel values are scaled by the bit depth of the file: 8-bit by 255, 16-bit by 65535 (so a
  16-bit pixel of 65535 reads as 1.0, not 257.0 or 0.0039).
* Colour becomes grayscale with PIL's ``"L"`` formula ``0.299 R + 0.587 G + 0.114 B`` (computed in
  float, without PIL's rounding to 8 bits). Grayscale becomes 3 channels by repetition.
* Transparency is composited onto **black**: a transparent pixel shows no surface, so it must not
  look like bright steel; black is also what zero padding looks like to a network.
* EXIF orientation tags are ignored (pixels are read as stored), like torchvision's ``ImageFolder``.

Limits of detection: PNG chunks carry CRCs and every truncated file is refused, but JPEG has no
checksum, so a file with flipped bits can still be a well-formed JPEG of different content (even of a
different height: libjpeg pads missing rows without an error). Such a file is read as what it now
says it is; only a checksum kept beside the data (for example a manifest of hashes) can catch it.

Example:
    >>> import tempfile, pathlib, numpy as np
    >>> from PIL import Image
    >>> root = pathlib.Path(tempfile.mkdtemp())
    >>> for cls in ("crack", "pore"):
    ...     (root / cls).mkdir()
    ...     for i in range(2):
    ...         Image.new("L", (40, 30), 100 + i).save(root / cls / f"{i}.png")
    >>> data = load_folder(root, image_size=32)
    >>> tuple(data.images.shape), data.classes, data.labels.tolist()
    ((4, 1, 32, 32), ['crack', 'pore'], [0, 0, 1, 1])
"""

from __future__ import annotations

import logging
import numbers
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageFile, UnidentifiedImageError

from augvae._imageops import resize
from augvae.errors import ConfigError, DataError, ImageReadError, InputError

__all__ = [
    "IMAGE_EXTENSIONS",
    "RESIZE_POLICIES",
    "MIN_IMAGE_SIDE",
    "MAX_IMAGE_SIZE",
    "ImageSet",
    "read_image",
    "fit_image",
    "scan_folder",
    "load_folder",
    "load_images",
    "load_masks",
    "check_min_per_class",
]

logger = logging.getLogger("augvae")

#: File name endings read as images (matched case-insensitively).
IMAGE_EXTENSIONS: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")

#: How :func:`fit_image` makes a non-square image square.
RESIZE_POLICIES: tuple[str, ...] = ("resize", "center-crop", "pad")

#: Smallest accepted width and height of an input image, in pixels.
MIN_IMAGE_SIDE = 8

#: Largest accepted ``image_size`` (the smallest is :data:`MIN_IMAGE_SIDE`).
MAX_IMAGE_SIZE = 4096

_MAX_LISTED = 10  # unreadable files named in one aggregated error
_ACCEPTED = ", ".join(IMAGE_EXTENSIONS)
_TRUNCATED_WARNED = False


# --------------------------------------------------------------------------------------------
# argument checks


def _check_channels(channels: Any) -> int:
    if isinstance(channels, bool) or not isinstance(channels, numbers.Integral) or int(channels) not in (1, 3):
        raise ConfigError(
            f"channels must be 1 (grayscale) or 3 (RGB), got {channels!r}; pass channels=1 or channels=3"
        )
    return int(channels)


def _check_image_size(image_size: Any) -> int:
    if (
        isinstance(image_size, bool)
        or not isinstance(image_size, numbers.Integral)
        or not MIN_IMAGE_SIDE <= int(image_size) <= MAX_IMAGE_SIZE
    ):
        raise ConfigError(
            f"image_size must be an integer from {MIN_IMAGE_SIDE} to {MAX_IMAGE_SIZE}, got {image_size!r}; "
            "pass e.g. image_size=64 or 128"
        )
    return int(image_size)


def _check_policy(policy: Any) -> str:
    if policy not in RESIZE_POLICIES:
        valid = ", ".join(repr(p) for p in RESIZE_POLICIES)
        raise ConfigError(f"unknown resize policy {policy!r}; use one of {valid}")
    return str(policy)


def _as_path(path: Any, what: str = "path") -> Path:
    if isinstance(path, bytes):
        path = os.fsdecode(path)
    if not isinstance(path, (str, os.PathLike)):
        raise ConfigError(f"{what} must be a str or os.PathLike file name, got {type(path).__name__} {path!r}")
    return Path(path)


# --------------------------------------------------------------------------------------------
# reading one image


class _BadImage(Exception):
    """Internal: why one file cannot be read (``reason``) and what to do (``fix``)."""

    def __init__(self, reason: str, fix: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.fix = fix


_FIX_REPLACE = "re-export or re-copy the file, or remove it from the folder"


def _decode(path: Path) -> tuple[np.ndarray, bool]:
    """Decode ``path`` to float32 in [0, 1]: (H, W) gray or (H, W, 3) colour, plus ``is_colour``."""
    global _TRUNCATED_WARNED
    if not path.exists():
        raise _BadImage("does not exist", "check the path (spelling, folder, extension)")
    if path.is_dir():
        raise _BadImage("is a folder, not an image file", "pass the path of an image file")
    try:
        nbytes = path.stat().st_size
    except OSError as err:
        raise _BadImage(f"cannot be accessed ({err.strerror or err})", "check the file's permissions") from None
    if nbytes == 0:
        raise _BadImage("is empty (0 bytes), probably an interrupted copy or upload", _FIX_REPLACE)
    if ImageFile.LOAD_TRUNCATED_IMAGES and not _TRUNCATED_WARNED:
        _TRUNCATED_WARNED = True
        logger.warning(
            "PIL.ImageFile.LOAD_TRUNCATED_IMAGES is True (set by other code in this process); "
            "truncated images cannot be detected and will be read with missing rows"
        )
    limit = Image.MAX_IMAGE_PIXELS
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                width, height = img.size
                if width < MIN_IMAGE_SIDE or height < MIN_IMAGE_SIDE:
                    raise _BadImage(
                        f"is {width}x{height} pixels, smaller than the minimum of "
                        f"{MIN_IMAGE_SIDE}x{MIN_IMAGE_SIDE} (MIN_IMAGE_SIDE = {MIN_IMAGE_SIDE})",
                        "use a larger crop of the surface, or remove the file",
                    )
                img.load()  # force the full decode: a truncated file fails here, not later
                return _to_float(img)
    except _BadImage:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise _BadImage(
            f"is too large: more than PIL's decompression-bomb limit of {limit} pixels "
            "(PIL.Image.MAX_IMAGE_PIXELS), refused as a safety measure",
            "downscale the image or crop it to the region of interest before using it",
        ) from None
    except UnidentifiedImageError:
        raise _BadImage(
            "is not a readable image (its content is not PNG, JPEG, BMP or TIFF data, whatever its extension)",
            "open it in an image viewer; re-export it as PNG, or remove it",
        ) from None
    except MemoryError:
        raise
    except PermissionError:
        raise _BadImage("cannot be opened: permission denied", "check the file's permissions") from None
    except (OSError, SyntaxError, ValueError, EOFError) as err:
        text = str(err) or type(err).__name__
        if "truncated" in text.lower() or isinstance(err, EOFError):
            raise _BadImage(
                f"is truncated or corrupted ({text}), probably an interrupted copy or upload", _FIX_REPLACE
            ) from None
        raise _BadImage(f"cannot be decoded ({text})", _FIX_REPLACE) from None
    except Exception as err:  # any other decoder failure must still name the file
        raise _BadImage(f"cannot be decoded ({type(err).__name__}: {err})", _FIX_REPLACE) from None


def _to_float(img: Image.Image) -> tuple[np.ndarray, bool]:
    """Convert a loaded PIL image to float32 in [0, 1]; returns (array, is_colour)."""
    mode = img.mode
    if mode == "1":
        return np.asarray(img.convert("L"), dtype=np.float32) / 255.0, False
    if mode == "L":
        return np.asarray(img, dtype=np.float32) / 255.0, False
    if mode.startswith("I;16"):  # I;16, I;16L, I;16B, I;16N: unsigned 16-bit
        return np.asarray(img).astype(np.float32) / 65535.0, False
    if mode == "I":
        return _int32_to_float(img), False
    if mode == "F":
        arr = np.asarray(img, dtype=np.float32)
        if not np.isfinite(arr).all():
            raise _BadImage(
                "is a 32-bit float image containing NaN or infinite values",
                "replace them, or save the image as 8- or 16-bit PNG/TIFF",
            )
        lo, hi = float(arr.min()), float(arr.max())
        if lo < 0.0 or hi > 1.0:
            raise _BadImage(
                f"is a 32-bit float image with values in [{lo:g}, {hi:g}], but float images must be scaled to [0, 1] "
                "(their bit depth does not say what is white)",
                "rescale it to [0, 1], or save it as 8- or 16-bit PNG/TIFF",
            )
        return arr.copy(), False
    if mode in ("LA", "La", "PA", "P", "RGBA", "RGBa"):
        return _composite_on_black(img)
    if mode != "RGB":  # CMYK, YCbCr, RGBX, HSV, LAB, ...
        try:
            img = img.convert("RGB")
        except (ValueError, OSError) as err:
            raise _BadImage(
                f"has colour mode {mode!r}, which cannot be converted to RGB ({err})",
                "save it as an 8-bit grayscale or RGB PNG",
            ) from None
    return np.asarray(img, dtype=np.float32) / 255.0, True


def _int32_to_float(img: Image.Image) -> np.ndarray:
    """Mode "I" (32-bit signed) holds 16-bit data in practice (PIL opens 16-bit PGM this way)."""
    arr = np.asarray(img)
    lo, hi = int(arr.min()), int(arr.max())
    if lo < 0:
        raise _BadImage(
            f"is a 32-bit integer image with negative values (min {lo})",
            "save it as unsigned 8- or 16-bit PNG/TIFF",
        )
    scale = 65535.0 if hi <= 65535 else float(2**31 - 1)
    return (arr.astype(np.float64) / scale).astype(np.float32)


def _composite_on_black(img: Image.Image) -> tuple[np.ndarray, bool]:
    """Alpha-composite onto black: a transparent pixel carries no surface, so it reads as 0."""
    mode = img.mode
    if mode in ("La", "RGBa"):  # already premultiplied by alpha = composited onto black
        arr = np.asarray(img, dtype=np.float32) / 255.0
        return (arr[..., 0].copy(), False) if mode == "La" else (arr[..., :3].copy(), True)
    if mode == "LA":
        arr = np.asarray(img, dtype=np.float32) / 255.0
        return arr[..., 0] * arr[..., 1], False
    if mode != "RGBA":  # P, PA: the palette may hold a transparent index
        img = img.convert("RGBA")
    arr = np.asarray(img, dtype=np.float32) / 255.0
    return arr[..., :3] * arr[..., 3:4], True


def _to_channels(arr: np.ndarray, is_colour: bool, channels: int) -> np.ndarray:
    if is_colour and channels == 1:
        out = arr[..., 0] * np.float32(0.299) + arr[..., 1] * np.float32(0.587) + arr[..., 2] * np.float32(0.114)
        out = out[..., None]
    elif is_colour:
        out = arr
    elif channels == 1:
        out = arr[..., None]
    else:
        out = np.repeat(arr[..., None], 3, axis=2)
    return np.ascontiguousarray(np.clip(out, 0.0, 1.0), dtype=np.float32)


def _read(path: Path, channels: int) -> np.ndarray:
    arr, is_colour = _decode(path)
    return _to_channels(arr, is_colour, channels)


def _error_for(path: Path, bad: _BadImage) -> ImageReadError:
    return ImageReadError(f"cannot read image '{path}': it {bad.reason}; {bad.fix}")


def read_image(path: str | os.PathLike[str], channels: int = 1) -> np.ndarray:
    """Read one image file as float32 ``(H, W, channels)`` with values in ``[0, 1]``.

    8-bit images are divided by 255 and 16-bit ones (PIL modes ``"I;16"``, ``"I;16B"``, and ``"I"``
    holding 16-bit data) by 65535. ``"F"`` (32-bit float) images must already be in ``[0, 1]``.
    Palette, ``"LA"`` and ``"RGBA"`` images are alpha-composited onto black (a transparent region
    carries no surface, so it reads as 0); CMYK and other colour modes go through RGB; 1-bit images
    read as 0 or 1. Colour becomes grayscale with PIL's ``"L"`` weights (0.299, 0.587, 0.114);
    grayscale becomes RGB by repetition. Multi-frame files (TIFF stacks) give their first frame.

    Args:
        path: The image file (any name, spaces and non-ASCII characters included).
        channels: 1 for grayscale or 3 for RGB.

    Returns:
        A new float32 array of shape ``(H, W, channels)``.

    Raises:
        ConfigError: ``channels`` is not 1 or 3.
        ImageReadError: The file is missing, empty, not an image, truncated or corrupted, smaller
            than :data:`MIN_IMAGE_SIDE` on a side, or larger than PIL's decompression-bomb limit
            (``PIL.Image.MAX_IMAGE_PIXELS``, left at PIL's default). The message names the file.

    Example:
        >>> import tempfile, pathlib
        >>> from PIL import Image
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "my scan.png"
        >>> Image.new("L", (16, 12), 255).save(p)
        >>> img = read_image(p, channels=3)
        >>> img.shape, img.dtype, float(img.max())
        ((12, 16, 3), dtype('float32'), 1.0)
    """
    channels = _check_channels(channels)
    p = _as_path(path)
    try:
        return _read(p, channels)
    except _BadImage as bad:
        raise _error_for(p, bad) from None


# --------------------------------------------------------------------------------------------
# fitting to a square


def _check_array(image: Any) -> np.ndarray:
    if not isinstance(image, np.ndarray):
        raise InputError(
            f"image must be a numpy array of shape (H, W, C), got {type(image).__name__}; use read_image() to get one"
        )
    if image.ndim != 3 or min(image.shape) < 1:
        raise InputError(
            f"image must have shape (H, W, C) with every side >= 1, got shape {tuple(image.shape)}; "
            "add a channel axis with image[..., None] for a 2-D grayscale array"
        )
    if not np.issubdtype(image.dtype, np.floating):
        raise InputError(
            f"image must be float32 with values in [0, 1], got dtype {image.dtype}; "
            "divide 8-bit data by 255 (or use read_image())"
        )
    arr = image.astype(np.float32, copy=False)
    if not np.isfinite(arr).all():
        raise InputError("image contains NaN or infinite values; clean the array before fitting it")
    lo, hi = float(arr.min()), float(arr.max())
    if lo < -1e-6 or hi > 1.0 + 1e-6:
        raise InputError(
            f"image values must be in [0, 1], got [{lo:g}, {hi:g}]; rescale the array (use read_image())"
        )
    return arr


def _resize(arr: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear resize of an (H, W, C) array with antialiasing, by augvae's one resizer (:func:`augvae._imageops.resize`)."""
    if arr.shape[0] == height and arr.shape[1] == width:
        return arr.copy()

    out = resize(torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))[None], height, width)[0]
    return out.clamp(0.0, 1.0).permute(1, 2, 0).contiguous().numpy()


def fit_image(image: np.ndarray, size: int, policy: str = "resize") -> np.ndarray:
    """Make an ``(H, W, C)`` float32 image square: ``(size, size, C)``.

    Policies (see :data:`RESIZE_POLICIES`):

    * ``"resize"``: plain bilinear resize to ``size x size`` (antialiased; distorts the aspect
      ratio of non-square images).
    * ``"center-crop"``: resize so the short side is ``size``, then cut the centre square.
    * ``"pad"``: resize so the long side is ``size``, then pad the short side to ``size`` by
      reflection (edge replication for a 1-pixel-wide strip), keeping the image centred.

    Args:
        image: Float array ``(H, W, C)`` with values in ``[0, 1]``, e.g. from :func:`read_image`.
        size: Output side, an integer from :data:`MIN_IMAGE_SIDE` to :data:`MAX_IMAGE_SIZE`.
        policy: One of :data:`RESIZE_POLICIES`.

    Returns:
        A new float32 array ``(size, size, C)`` with values in ``[0, 1]``.

    Raises:
        ConfigError: ``size`` or ``policy`` is invalid.
        InputError: ``image`` is not a float ``(H, W, C)`` array with values in ``[0, 1]``.

    Example:
        >>> import numpy as np
        >>> img = np.random.rand(30, 50, 1).astype(np.float32)
        >>> [fit_image(img, 16, p).shape for p in RESIZE_POLICIES]
        [(16, 16, 1), (16, 16, 1), (16, 16, 1)]
    """
    size = _check_image_size(size)
    policy = _check_policy(policy)
    arr = _check_array(image)
    h, w = arr.shape[:2]
    if policy == "resize":
        out = _resize(arr, size, size)
    elif policy == "center-crop":
        scale = size / min(h, w)
        nh = size if h <= w else max(size, round(h * scale))
        nw = size if w <= h else max(size, round(w * scale))
        out = _resize(arr, nh, nw)
        top, left = (nh - size) // 2, (nw - size) // 2
        out = out[top : top + size, left : left + size]
    else:  # pad
        scale = size / max(h, w)
        nh = size if h >= w else min(size, max(1, round(h * scale)))
        nw = size if w >= h else min(size, max(1, round(w * scale)))
        out = _resize(arr, nh, nw)
        ph, pw = size - nh, size - nw
        pad = ((ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2), (0, 0))
        mode = "reflect" if min(nh, nw) > 1 else "edge"
        out = np.pad(out, pad, mode=mode)
    return np.ascontiguousarray(np.clip(out, 0.0, 1.0), dtype=np.float32)


# --------------------------------------------------------------------------------------------
# folders


def _is_image_file(p: Path) -> bool:
    return not p.name.startswith(".") and p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()


def _list_dir(folder: Path) -> list[Path]:
    try:
        return sorted(folder.iterdir(), key=lambda q: q.name)
    except PermissionError:
        raise DataError(f"cannot list folder '{folder}': permission denied; check the folder's permissions") from None
    except OSError as err:
        raise DataError(f"cannot list folder '{folder}' ({err.strerror or err}); check that it is readable") from None


def _other_extensions(entries: list[Path]) -> list[str]:
    return sorted(
        {
            (q.suffix.lower() or "(none)")
            for q in entries
            if q.is_file() and not q.name.startswith(".") and q.suffix.lower() not in IMAGE_EXTENSIONS
        }
    )


def scan_folder(root: str | os.PathLike[str]) -> tuple[list[Path], list[int], list[str]]:
    """Find the image files of a dataset folder and their classes.

    Two layouts are accepted:

    * **flat**: image files directly inside ``root``; they form one class named after ``root``.
    * **class folders**: one subfolder per class, image files directly inside each subfolder
      (deeper folders are not searched). Subfolders without images are skipped with a warning on
      the ``"augvae"`` logger.

    Names starting with ``"."`` (``.DS_Store``, ``._scan.jpg``, ``.ipynb_checkpoints``) are ignored,
    and so are files whose extension is not in :data:`IMAGE_EXTENSIONS` (case-insensitive).
    Everything is sorted by name, so the result is the same on every machine.

    Args:
        root: The dataset folder.

    Returns:
        ``(paths, labels, classes)``: image paths, the class index of each, and the sorted class
        names.

    Raises:
        DataError: ``root`` is missing or not a folder, holds no images, or mixes both layouts.

    Example:
        >>> import tempfile, pathlib
        >>> from PIL import Image
        >>> root = pathlib.Path(tempfile.mkdtemp())
        >>> for name in ("pore/a.png", "crack/b.PNG", "crack/c.jpg"):
        ...     (root / name).parent.mkdir(exist_ok=True)
        ...     Image.new("L", (8, 8)).save(root / name)
        >>> paths, labels, classes = scan_folder(root)
        >>> [p.name for p in paths], labels, classes
        (['b.PNG', 'c.jpg', 'a.png'], [0, 0, 1], ['crack', 'pore'])
    """
    root_path = _as_path(root, "root")
    if not root_path.exists():
        raise DataError(
            f"data folder '{root_path}' does not exist; pass the folder that holds your images "
            "(one subfolder per class, or the images directly)"
        )
    if not root_path.is_dir():
        raise DataError(
            f"data path '{root_path}' is a file, not a folder; pass the folder that holds your images "
            "(one subfolder per class, or the images directly)"
        )
    entries = [q for q in _list_dir(root_path) if not q.name.startswith(".")]
    top_images = [q for q in entries if _is_image_file(q)]
    subdirs = [q for q in entries if q.is_dir()]

    class_files: dict[str, list[Path]] = {}
    empty_dirs: list[Path] = []
    skipped_other: list[Path] = list(entries)
    for sub in subdirs:
        sub_entries = [q for q in _list_dir(sub) if not q.name.startswith(".")]
        files = [q for q in sub_entries if _is_image_file(q)]
        if files:
            class_files[sub.name] = files
            deeper = [q.name for q in sub_entries if q.is_dir()]
            if deeper:  # a class split into batches: its images would otherwise vanish without a word
                logger.warning("class folder '%s' has %d subfolder(s) (e.g. '%s') whose images are not read (deeper folders "
                               "are not searched); move their images up into '%s' to use them", sub, len(deeper), deeper[0],
                               sub.name)
        else:
            empty_dirs.append(sub)
            skipped_other.extend(sub_entries)

    if top_images and class_files:
        shown = ", ".join(f"'{n}'" for n in list(class_files)[:5]) + (", ..." if len(class_files) > 5 else "")
        raise DataError(
            f"data folder '{root_path}' mixes two layouts: {len(top_images)} image file(s) directly inside "
            f"(e.g. '{top_images[0].name}') and class subfolders with images ({shown}); use either "
            "one subfolder per class with every image inside its class folder, or only image files "
            "directly in the folder (one class); move the loose images into a class folder or elsewhere"
        )

    if top_images:
        name = root_path.resolve().name or str(root_path)
        if subdirs:
            logger.warning(
                "data folder '%s' holds images directly, so it is read as one class '%s'; "
                "its %d subfolder(s) without images are ignored",
                root_path,
                name,
                len(subdirs),
            )
        return list(top_images), [0] * len(top_images), [name]

    if not class_files:
        hint = ""
        others = _other_extensions(skipped_other)
        if others:
            hint = f" (found files ending in {', '.join(others)}: convert them to PNG)"
        nested = ""
        if empty_dirs and any(any(q.is_dir() for q in _list_dir(d)) for d in empty_dirs):
            nested = "; images in deeper folders are not searched, so pass the folder whose subfolders hold the images"
        raise DataError(
            f"no images found in data folder '{root_path}' or its subfolders{hint}; accepted extensions are "
            f"{_ACCEPTED} (any case); put the images directly in the folder (one class) or in one subfolder "
            f"per class{nested}"
        )

    for d in empty_dirs:
        logger.warning(
            "subfolder '%s' has no image files directly inside (accepted: %s); it is ignored, not a class", d, _ACCEPTED
        )
    classes = sorted(class_files)
    paths: list[Path] = []
    labels: list[int] = []
    for idx, name in enumerate(classes):
        paths.extend(class_files[name])
        labels.extend([idx] * len(class_files[name]))
    return paths, labels, classes


# --------------------------------------------------------------------------------------------
# ImageSet


@dataclass
class ImageSet:
    """Decoded images held in memory as one tensor, with their labels, class names and file paths.

    Attributes:
        images: float32 tensor ``(N, C, S, S)`` with values in ``[0, 1]``.
        labels: int64 tensor ``(N,)``, indices into ``classes``.
        classes: Class names; ``classes[labels[i]]`` is the class of image ``i``.
        paths: The source file of each image, as strings.

    Example:
        >>> import torch
        >>> s = ImageSet(torch.zeros(3, 1, 8, 8), torch.tensor([0, 1, 1]), ["crack", "pore"], ["a", "b", "c"])
        >>> len(s), s.class_counts(), s.by_class("pore").paths
        (3, {'crack': 1, 'pore': 2}, ['b', 'c'])
    """

    images: torch.Tensor
    labels: torch.Tensor
    classes: list[str]
    paths: list[str]

    def __post_init__(self) -> None:
        imgs, labels = self.images, self.labels
        if not isinstance(imgs, torch.Tensor) or imgs.ndim != 4 or imgs.shape[2] != imgs.shape[3]:
            shape = tuple(imgs.shape) if isinstance(imgs, torch.Tensor) else type(imgs).__name__
            raise InputError(f"ImageSet.images must be a tensor of shape (N, C, S, S), got {shape}")
        if imgs.dtype != torch.float32:
            raise InputError(
                f"ImageSet.images must be float32 with values in [0, 1], got {imgs.dtype}; convert with .float()"
            )
        if not isinstance(labels, torch.Tensor) or labels.ndim != 1 or labels.shape[0] != imgs.shape[0]:
            shape = tuple(labels.shape) if isinstance(labels, torch.Tensor) else type(labels).__name__
            raise InputError(
                f"ImageSet.labels must be a tensor of shape (N,) = ({imgs.shape[0]},), one per image, got {shape}"
            )
        if labels.dtype != torch.int64:
            raise InputError(f"ImageSet.labels must be int64, got {labels.dtype}; convert with .long()")
        if isinstance(self.classes, str) or not all(isinstance(c, str) for c in self.classes):
            raise InputError(f"ImageSet.classes must be a list of class-name strings, got {self.classes!r}")
        self.classes = list(self.classes)
        if len(set(self.classes)) != len(self.classes):
            raise InputError(f"ImageSet.classes has duplicate names: {self.classes}")
        if isinstance(self.paths, (str, os.PathLike)):
            raise InputError("ImageSet.paths must be a list with one path per image, got a single path")
        self.paths = [os.fspath(p) for p in self.paths]
        if len(self.paths) != imgs.shape[0]:
            raise InputError(f"ImageSet has {imgs.shape[0]} images but {len(self.paths)} paths; give one path per image")
        if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= len(self.classes)):
            raise InputError(
                f"ImageSet.labels must be in [0, {len(self.classes)}) to index classes {self.classes}, "
                f"got values from {int(labels.min())} to {int(labels.max())}"
            )

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def subset(self, indices: Sequence[int] | np.ndarray | torch.Tensor) -> ImageSet:
        """Return the images at ``indices`` (ints, or a boolean mask of length N) as a new set.

        The class list is kept whole, so labels keep their meaning.

        Example:
            >>> import torch
            >>> s = ImageSet(torch.zeros(3, 1, 8, 8), torch.tensor([0, 1, 1]), ["a", "b"], ["x", "y", "z"])
            >>> s.subset([2, 0]).paths
            ['z', 'x']
        """
        try:
            idx = torch.as_tensor(np.asarray(indices) if not isinstance(indices, torch.Tensor) else indices)
        except (TypeError, ValueError) as err:
            raise InputError(f"subset indices must be a sequence of ints or a boolean mask ({err})") from None
        if idx.dtype == torch.bool:
            if idx.ndim != 1 or idx.shape[0] != len(self):
                raise InputError(f"a boolean subset mask must have length {len(self)}, got shape {tuple(idx.shape)}")
            idx = torch.nonzero(idx).flatten()
        if idx.numel() == 0:
            idx = idx.reshape(0).long()
        if idx.is_floating_point() or idx.is_complex() or idx.ndim != 1:
            raise InputError(f"subset indices must be a 1-D sequence of ints, got {idx.dtype} of shape {tuple(idx.shape)}")
        idx = idx.long()
        if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= len(self)):
            raise InputError(
                f"subset indices must be in [0, {len(self)}), got values from {int(idx.min())} to {int(idx.max())}"
            )
        rows = idx.tolist()
        return ImageSet(
            images=self.images[idx],
            labels=self.labels[idx],
            classes=list(self.classes),
            paths=[self.paths[i] for i in rows],
        )

    def class_counts(self) -> dict[str, int]:
        """Number of images per class, in class order (classes with no image give 0).

        Example:
            >>> import torch
            >>> ImageSet(torch.zeros(2, 1, 8, 8), torch.tensor([1, 1]), ["a", "b"], ["x", "y"]).class_counts()
            {'a': 0, 'b': 2}
        """
        counts = torch.bincount(self.labels, minlength=len(self.classes)).tolist()
        return {name: int(counts[i]) for i, name in enumerate(self.classes)}

    def by_class(self, name: str) -> ImageSet:
        """Return the images of class ``name`` (the class list is kept whole).

        Raises:
            ConfigError: ``name`` is not one of :attr:`classes`.

        Example:
            >>> import torch
            >>> s = ImageSet(torch.zeros(2, 1, 8, 8), torch.tensor([0, 1]), ["a", "b"], ["x", "y"])
            >>> s.by_class("b").paths
            ['y']
        """
        if name not in self.classes:
            raise ConfigError(f"unknown class {name!r}; the classes are {self.classes}")
        return self.subset(self.labels == self.classes.index(name))


# --------------------------------------------------------------------------------------------
# loading many images


def _load_many(
    paths: list[Path],
    labels: list[int],
    classes: list[str],
    image_size: int,
    channels: int,
    policy: str,
    progress: bool,
    where: str,
) -> ImageSet:
    from tqdm.auto import tqdm

    n = len(paths)
    buffer = np.empty((n, channels, image_size, image_size), dtype=np.float32)
    failures: list[tuple[Path, _BadImage]] = []
    for i, path in enumerate(tqdm(paths, desc="reading images", unit="img", disable=not progress)):
        try:
            arr = _read(path, channels)
        except _BadImage as bad:
            failures.append((path, bad))
            continue
        buffer[i] = fit_image(arr, image_size, policy).transpose(2, 0, 1)
    if len(failures) == 1:
        raise _error_for(*failures[0])
    if failures:
        listed = "; ".join(f"'{p}' {bad.reason}" for p, bad in failures[:_MAX_LISTED])
        more = f"; and {len(failures) - _MAX_LISTED} more" if len(failures) > _MAX_LISTED else ""
        raise ImageReadError(
            f"{len(failures)} of {n} image files {where} cannot be read: {listed}{more}; "
            "remove or fix these files (re-export or re-copy them), then run again"
        )
    logger.debug("read %d images (%s) into %dx%d, %d channel(s), policy %r", n, where, image_size, image_size, channels, policy)
    return ImageSet(
        images=torch.from_numpy(buffer),
        labels=torch.tensor(labels, dtype=torch.int64),
        classes=list(classes),
        paths=[str(p) for p in paths],
    )


def load_folder(
    root: str | os.PathLike[str],
    image_size: int,
    channels: int = 1,
    policy: str = "resize",
    progress: bool = False,
) -> ImageSet:
    """Scan, read and fit every image of a dataset folder into one in-memory :class:`ImageSet`.

    Each file is decoded once; the result holds all images as one ``(N, C, S, S)`` tensor. See
    :func:`scan_folder` for the accepted layouts, :func:`read_image` for how pixels are read and
    :func:`fit_image` for ``policy``.

    Args:
        root: The dataset folder (flat, or one subfolder per class).
        image_size: Side ``S`` of the square output images, from :data:`MIN_IMAGE_SIDE` to
            :data:`MAX_IMAGE_SIZE`.
        channels: 1 (grayscale) or 3 (RGB).
        policy: One of :data:`RESIZE_POLICIES`.
        progress: Show a tqdm progress bar.

    Returns:
        The images, labels, sorted class names and file paths.

    Raises:
        ConfigError: ``image_size``, ``channels`` or ``policy`` is invalid.
        DataError: The folder is missing, empty or mixes layouts (see :func:`scan_folder`).
        ImageReadError: Some files cannot be read; one error lists all of them (the first 10 by
            name) so they can be fixed in one go.

    Example:
        >>> import tempfile, pathlib
        >>> from PIL import Image
        >>> root = pathlib.Path(tempfile.mkdtemp()) / "scratches"
        >>> root.mkdir()
        >>> for i in range(3):
        ...     Image.new("RGB", (20, 10), (i, i, i)).save(root / f"s{i}.jpg")
        >>> data = load_folder(root, image_size=8, channels=3, policy="center-crop")
        >>> tuple(data.images.shape), data.classes
        ((3, 3, 8, 8), ['scratches'])
    """
    image_size = _check_image_size(image_size)
    channels = _check_channels(channels)
    policy = _check_policy(policy)
    paths, labels, classes = scan_folder(root)
    return _load_many(paths, labels, classes, image_size, channels, policy, progress, f"in '{os.fspath(root)}'")


def load_images(
    paths: Sequence[str | os.PathLike[str]],
    image_size: int,
    channels: int = 1,
    policy: str = "resize",
    labels: Sequence[int] | None = None,
    classes: Sequence[str] | None = None,
) -> ImageSet:
    """Read and fit an explicit list of image files into an :class:`ImageSet`.

    Labels, when not given, come from the name of the folder holding each file (the same rule as
    :func:`scan_folder`): with ``classes`` given, each folder name must be one of them; without,
    the classes are the sorted folder names. With ``labels`` given and no ``classes``, the classes
    are named ``"0"``, ``"1"``, ... up to the largest label.

    Args:
        paths: Image files (extensions are not checked here).
        image_size: Side of the square output images.
        channels: 1 (grayscale) or 3 (RGB).
        policy: One of :data:`RESIZE_POLICIES`.
        labels: One class index per file, or None.
        classes: Class names, or None.

    Returns:
        The images in the order of ``paths``.

    Raises:
        ConfigError: An argument is invalid, or ``labels`` / ``classes`` do not fit ``paths``.
        DataError: ``paths`` is empty.
        ImageReadError: A file is missing or unreadable (all such files are listed).

    Example:
        >>> import tempfile, pathlib
        >>> from PIL import Image
        >>> d = pathlib.Path(tempfile.mkdtemp()) / "pore"
        >>> d.mkdir()
        >>> Image.new("L", (12, 12), 255).save(d / "p1.png")
        >>> s = load_images([d / "p1.png"], image_size=8)
        >>> tuple(s.images.shape), s.classes, float(s.images.max())
        ((1, 1, 8, 8), ['pore'], 1.0)
    """
    image_size = _check_image_size(image_size)
    channels = _check_channels(channels)
    policy = _check_policy(policy)
    if isinstance(paths, (str, bytes, os.PathLike)):
        raise ConfigError("paths must be a list of image files, got a single path; wrap it in a list: [path]")
    path_list = [_as_path(p) for p in paths]
    if not path_list:
        raise DataError("no image files given to load_images; pass a non-empty list of image paths")

    if classes is not None:
        if isinstance(classes, str) or not all(isinstance(c, str) for c in classes):
            raise ConfigError(f"classes must be a list of class-name strings, got {classes!r}")
        class_list = list(classes)
        if len(set(class_list)) != len(class_list) or not class_list:
            raise ConfigError(f"classes must be a non-empty list of distinct names, got {class_list}")
    else:
        class_list = []

    if labels is not None:
        label_list = [int(v) for v in labels] if all(
            isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in labels
        ) else None
        if label_list is None:
            raise ConfigError(f"labels must be integers (class indices), got {list(labels)!r}")
        if len(label_list) != len(path_list):
            raise ConfigError(f"got {len(path_list)} paths but {len(label_list)} labels; give one label per path")
        if not class_list:
            class_list = [str(i) for i in range(max(label_list) + 1)]
        bad = [v for v in label_list if not 0 <= v < len(class_list)]
        if bad:
            raise ConfigError(
                f"labels must be in [0, {len(class_list)}) to index classes {class_list}, got {bad[0]}; "
                "fix the labels or pass the full class list"
            )
    else:
        folders = [p.resolve().parent.name or str(p.parent) for p in path_list]
        if not class_list:
            class_list = sorted(set(folders))
        else:
            for p, f in zip(path_list, folders):
                if f not in class_list:
                    raise ConfigError(
                        f"'{p}' is in folder '{f}', which is not one of the classes {class_list}; "
                        "pass labels=... explicitly or move the file into its class folder"
                    )
        index = {name: i for i, name in enumerate(class_list)}
        label_list = [index[f] for f in folders]

    return _load_many(path_list, label_list, class_list, image_size, channels, policy, False, "given")


def check_min_per_class(images: ImageSet, minimum: int, what: str) -> None:
    """Raise :class:`DataError` naming every class with fewer than ``minimum`` images.

    Args:
        images: The image set to check.
        minimum: Required number of images per class.
        what: What needs them, for the message (e.g. ``"the small-set recipe"``).

    Raises:
        DataError: Some class has fewer than ``minimum`` images.
        ConfigError: ``minimum`` is not a non-negative integer.

    Example:
        >>> import torch
        >>> s = ImageSet(torch.zeros(3, 1, 8, 8), torch.tensor([0, 0, 1]), ["crack", "pore"], ["a", "b", "c"])
        >>> try:
        ...     check_min_per_class(s, 2, "the small-set recipe")
        ... except DataError as err:
        ...     print(err)
        class 'pore' has 1 image; the small-set recipe needs at least 2 per class; add images or drop the class folder
    """
    if isinstance(minimum, bool) or not isinstance(minimum, numbers.Integral) or minimum < 0:
        raise ConfigError(f"minimum must be a non-negative integer, got {minimum!r}")
    short = [(name, n) for name, n in images.class_counts().items() if n < minimum]
    if not short:
        return
    parts = ", ".join(f"class '{name}' has {n} image{'' if n == 1 else 's'}" for name, n in short)
    folder = "the class folder" if len(short) == 1 else "those class folders"
    raise DataError(f"{parts}; {what} needs at least {int(minimum)} per class; add images or drop {folder}")


def load_masks(mask_dir: str | os.PathLike[str], image_paths: Sequence[str | os.PathLike[str]], data_dir: str | os.PathLike[str],
               image_size: int, policy: str = "resize") -> torch.Tensor:
    """Read the pixel mask of each image: ``MASK_DIR/<the image's path under DATA_DIR>`` (any image extension).

    Masks are grayscale images of the same size as their image (white = defect); they are fitted to
    ``image_size`` by the same ``policy`` as the images.

    Returns:
        ``(M, 1, S, S)`` float32 in [0, 1].

    Raises:
        DataError: The mask folder is missing, an image has no mask, or a mask's size differs from its image's.
        ImageReadError: A mask file cannot be read.
    """
    root, base = _as_path(mask_dir, "mask_dir"), _as_path(data_dir, "data_dir")
    if not root.is_dir():
        raise DataError(f"mask folder '{root}' does not exist or is not a folder; pass the folder that mirrors DATA_DIR "
                        "with one mask per defect image")
    if root.resolve() == base.resolve():  # every image would be its own "mask": grey texture, not a defect's outline
        raise DataError(f"the mask folder '{root}' is DATA_DIR itself; pass the separate folder that mirrors DATA_DIR with one "
                        "mask per defect image (white = defect)")
    out = np.empty((len(image_paths), 1, image_size, image_size), dtype=np.float32)
    for i, p in enumerate(image_paths):
        image = Path(p)
        try:
            rel = image.resolve().relative_to(base.resolve())
        except ValueError:
            rel = Path(image.name)
        found = [c for c in (root / rel.parent).glob(rel.stem + ".*") if _is_image_file(c)] if (root / rel.parent).is_dir() else []
        if not found:
            raise DataError(f"no mask for '{rel}' in '{root}': expected '{root / rel.parent / rel.stem}' with an image extension "
                            f"({_ACCEPTED}); the mask folder must mirror DATA_DIR")
        mask = read_image(found[0], channels=1)  # a damaged or oversized mask file: one ImageReadError, as for images
        with Image.open(image) as img:  # the image itself was read (and checked) with the sources: its header is enough
            iw, ih = img.size
        mh, mw = mask.shape[:2]
        if (mh, mw) != (ih, iw):
            raise DataError(f"mask '{found[0]}' is {mw}x{mh} but its image '{image}' is {iw}x{ih}; "
                            "a mask must have its image's size")
        out[i] = fit_image(mask, image_size, policy).transpose(2, 0, 1)
    grey = float(((out > 0.1) & (out < 0.9)).mean())
    if grey > 0.5:  # a mask is black and white (a soft edge at most): mostly grey means these are not masks
        logger.warning("the masks in '%s' are grey on %.0f%% of their pixels, not black and white (white = defect): are they "
                       "images rather than masks?", root, 100 * grey)
    return torch.from_numpy(out)
