"""``MixedDataset``: wrap any map-style ``(image, label)`` dataset and mix VAE overlays into it.

The wrapper keeps every real sample and appends generated ones: with ``N`` real samples and
``ratio`` the fraction of generated samples in the stream, it holds ``G = round(N * ratio / (1 -
ratio))`` generated samples after the real ones (``ratio=0.5``: one generated sample for every real
one). A shuffling sampler interleaves them.

Generated samples come **on the fly** (sample ``j`` overlays sources onto real sample ``j mod N``
under the label policy, with fresh random draws each epoch) or from a **bank** made once: an
in-memory bank generated at construction, a folder written by ``augvae generate --mode overlay``,
or your own ``(images, labels)`` tensors.

**Determinism and parallelism.** The random numbers of generated sample ``j`` come from a generator
seeded by ``(seed, epoch, j)`` alone, never from a stream shared by a process. So:

- ``DataLoader(num_workers=n)``: each index is fetched by exactly one worker and gets its own stream,
  so no two workers produce the same sample, and the data are identical for any ``n`` (no need for
  ``worker_init_fn`` or ``torch.utils.data.get_worker_info``).
- ``DistributedSampler`` / ``torchrun``: every rank builds the same wrapper from the same ``seed``;
  the sampler gives each rank a disjoint share of indices, so the ranks see different samples, and a
  given index is the same sample on every rank.
- ``set_epoch(e)`` (call it next to ``sampler.set_epoch(e)``) changes the draws of every on-the-fly
  sample; the epoch lives in shared memory, so persistent workers see it too.

Example:
    >>> import torch
    >>> from augvae.data.mixed import MixedDataset
    >>> from augvae.policy import example_model_folder
    >>> real = [(torch.rand(1, 32, 32), i % 3) for i in range(6)]   # any map-style dataset
    >>> mixed = MixedDataset(example_model_folder(), real, ratio=0.5, seed=0)
    >>> len(mixed), mixed.num_generated, mixed.is_generated(7)
    (12, 6, True)
    >>> image, label = mixed[7]
    >>> image.shape, type(label).__name__
    (torch.Size([1, 32, 32]), 'int')
    >>> bool(torch.equal(mixed[7][0], image))     # the same index gives the same sample
    True
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from augvae.errors import ConfigError, DataError, InputError
from augvae.overlay import DEFAULT_FORMULATION
from augvae.policy import (
    DEFAULT_POLICY,
    ImageFormat,
    OverlayOptions,
    VAESources,
    _as_classes,
    check_model_folder,
    draw_torch,
    image_to_tensor,
    load_sources,
    overlay_batch,
    tensor_to_image,
)

__all__ = ["MixedDataset", "MODES"]

MODES = ("on-the-fly", "bank")


def _sample_seed(seed: int, epoch: int, index: int) -> int:
    """A 63-bit seed from ``(seed, epoch, index)``: well mixed, independent of process or worker."""
    return int(np.random.SeedSequence([seed, epoch, index]).generate_state(2, np.uint64)[0] >> np.uint64(1))


def _shared_epoch() -> Tensor:
    t = torch.zeros((), dtype=torch.int64)
    try:
        t.share_memory_()
    except (RuntimeError, OSError):  # pragma: no cover - no shared memory: set_epoch before creating workers
        pass
    return t


class MixedDataset(Dataset):
    """Real samples of ``dataset`` followed by generated ones, at a chosen ratio, under a label policy.

    Items have the wrapped dataset's types: an image of the same type, size, dtype and range
    (PIL, numpy HWC or CHW tensor), and an ``int`` (or the dataset's own integer type) label for the
    hard policies. With ``policy="soft"`` every label, real or generated, is a ``float32`` tensor of
    length ``num_classes`` (probabilities, or multi-hot with ``multilabel=True``), so batches collate.

    Put normalising transforms in ``transform`` (applied to every image after mixing) rather than in
    the wrapped dataset: overlays work on images in [0, 1] or 8-bit.

    Args:
        model_path: A model folder written by ``augvae train``.
        dataset: Any map-style dataset whose items are ``(image, label)``.
        ratio: Fraction of generated samples in the stream, in [0, 1) (0.5: one per real sample).
        policy: ``same-class``, ``onto-background`` or ``soft``.
        mode: ``on-the-fly`` (new draws every epoch) or ``bank`` (a fixed set, made once).
        bank: For ``mode="bank"``: None (generate ``bank_size`` images in memory now), the path of an
            ``augvae generate --mode overlay`` folder, or ``(images (M, C, S, S) float in [0, 1], labels
            (M,) or (M, K))``.
        num_classes: Length of soft labels; default the number of ``classes``.
        seed: Seed of every draw (with the epoch and the index).
        formulation, scale, k, weight, keep_input, background_class, classes, multilabel: As in
            :class:`augvae.albumentations.VAEOverlay` (bank images are always fresh overlays).
        transform: Applied to every image (real and generated) after mixing.
        bank_size: Images in an in-memory bank; default the number of generated samples.
        device: Where on-the-fly overlays are computed (``cpu`` in DataLoader workers).

    Raises:
        ConfigError: A bad option. ModelFolderError: a bad model folder. DataError: a bad bank or
        dataset item.

    Example:
        >>> import PIL.Image
        >>> from augvae.policy import example_model_folder
        >>> real = [(PIL.Image.new("L", (40, 30), 100 + 10 * i), i % 3) for i in range(4)]
        >>> mixed = MixedDataset(example_model_folder(), real, ratio=0.5, policy="soft", mode="bank")
        >>> image, label = mixed[5]
        >>> image.size, image.mode, label.shape, round(float(label.sum()), 5)
        ((40, 30), 'L', torch.Size([3]), 1.0)
    """

    def __init__(
        self,
        model_path: str | os.PathLike[str],
        dataset: Any,
        ratio: float = 0.5,
        policy: str = DEFAULT_POLICY,
        mode: str = "on-the-fly",
        bank: Any = None,
        num_classes: int | None = None,
        seed: int = 0,
        *,
        formulation: str = DEFAULT_FORMULATION,
        scale: float = 0.5,
        k: int = 1,
        weight: float | tuple[float, float] = 1.0,
        keep_input: bool = True,
        background_class: str | None = None,
        classes: list[str] | tuple[str, ...] | None = None,
        multilabel: bool = False,
        transform: Callable[[Any], Any] | None = None,
        bank_size: int | None = None,
        device: str | torch.device = "cpu",
    ) -> None:
        from augvae.config import check_choice

        self.model_path = check_model_folder(model_path)
        if not (hasattr(dataset, "__getitem__") and hasattr(dataset, "__len__")):
            raise ConfigError(f"dataset must be a map-style dataset (with __getitem__ and __len__), got {type(dataset).__name__}")
        if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not (math.isfinite(ratio) and 0 <= ratio < 1):
            raise ConfigError(f"ratio (the fraction of generated samples) must be in [0, 1), got {ratio!r}; 0.5 = one per real sample")
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ConfigError(f"seed must be an int >= 0, got {seed!r}")
        check_choice(mode, MODES, "mode")
        self.dataset, self.ratio, self.mode, self.seed = dataset, float(ratio), mode, seed
        self.classes = _as_classes(classes)
        self.background_class = background_class
        self.options = OverlayOptions(policy=policy, formulation=formulation, k=k, scale=scale, weight=weight,
                                      keep_input=keep_input, multilabel=multilabel)
        self.transform = transform
        self.device = torch.device(device)
        self.num_real = len(dataset)
        if self.num_real == 0:
            raise DataError("the wrapped dataset is empty; MixedDataset needs real samples to mix with")
        self.num_generated = round(self.num_real * self.ratio / (1.0 - self.ratio))
        self._num_classes = num_classes
        if num_classes is not None and (isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1):
            raise ConfigError(f"num_classes must be a positive int or None, got {num_classes!r}")
        self._epoch = _shared_epoch()
        self._template: tuple[ImageFormat, int, int, int] | None = None
        self._bank: tuple[Tensor, Tensor] | None = None
        if mode == "on-the-fly" and bank is not None:
            raise ConfigError("bank= is only used with mode='bank'; drop it or pass mode='bank'")
        if mode == "bank" and self.num_generated > 0:
            self._bank = self._load_bank(bank, bank_size)
        elif bank_size is not None:
            raise ConfigError("bank_size is only used with mode='bank' and bank=None")
        src = self.sources()
        if num_classes is not None and num_classes != src.num_classes:
            raise ConfigError(f"num_classes={num_classes} but the classes are {src.classes}; pass classes=[...] with one name "
                              "per label")

    # -- the model ----------------------------------------------------------------------------

    def sources(self) -> VAESources:
        """The model and its sources (loaded once per process)."""
        return load_sources(self.model_path, self.classes, self.background_class, self.device)

    @property
    def num_classes(self) -> int:
        """Length of soft label vectors."""
        return self._num_classes or self.sources().num_classes

    # -- epochs and indices ---------------------------------------------------------------------

    def set_epoch(self, epoch: int) -> None:
        """Use the draws of ``epoch`` (visible to DataLoader workers, persistent ones included)."""
        if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
            raise ConfigError(f"epoch must be an int >= 0, got {epoch!r}")
        self._epoch.fill_(epoch)

    @property
    def epoch(self) -> int:
        """The current epoch."""
        return int(self._epoch)

    def __len__(self) -> int:
        return self.num_real + self.num_generated

    def is_generated(self, index: int) -> bool:
        """Whether item ``index`` is a generated sample (they follow the real ones)."""
        return self._check_index(index) >= self.num_real

    def _check_index(self, index: Any) -> int:
        if isinstance(index, Tensor) and index.ndim == 0:
            index = int(index)
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
            raise InputError(f"MixedDataset index must be an int, got {type(index).__name__}")
        i = int(index)
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(f"index {index} is out of range for MixedDataset of length {len(self)}")
        return i

    # -- items -----------------------------------------------------------------------------------

    def _real(self, i: int) -> tuple[Any, Any]:
        item = self.dataset[i]
        if not (isinstance(item, (tuple, list)) and len(item) == 2):
            raise DataError(f"item {i} of the wrapped dataset is a {type(item).__name__}; MixedDataset needs (image, label) pairs")
        return item[0], item[1]

    def _label_tensor(self, label: Any) -> Tensor:
        """A label as ``(1,)`` int64 or ``(1, K)`` float."""
        if isinstance(label, Tensor) and label.ndim == 0:
            label = label.item()
        if isinstance(label, (int, np.integer)) and not isinstance(label, (bool, np.bool_)):
            return torch.tensor([int(label)])
        arr = label.detach().cpu().numpy() if isinstance(label, Tensor) else np.asarray(label)
        if arr.ndim != 1 or not np.issubdtype(arr.dtype, np.number):
            raise DataError(f"labels must be int class indices or 1-D vectors over the classes, got {label!r}")
        return torch.from_numpy(arr.astype(np.float32))[None]

    def _label_out(self, new: Tensor, like: Any) -> Any:
        if new.ndim == 2 or self.options.soft_labels:
            return new[0].to(torch.float32).cpu()
        v = int(new[0])
        if isinstance(like, Tensor):
            return torch.tensor(v, dtype=like.dtype)
        if isinstance(like, np.integer):
            return type(like)(v)
        return v

    def _soft_real_label(self, label: Any) -> Any:
        if not self.options.soft_labels:
            return label
        y = self._label_tensor(label)
        if y.ndim == 2:
            return y[0]
        k = self.num_classes
        if not 0 <= int(y[0]) < k:
            raise DataError(f"label {int(y[0])} is not a class index in [0, {k})")
        return torch.nn.functional.one_hot(y, k)[0].to(torch.float32)

    def _finish(self, image: Any, label: Any) -> tuple[Any, Any]:
        return (self.transform(image) if self.transform is not None else image), label

    def __getitem__(self, index: int) -> tuple[Any, Any]:
        i = self._check_index(index)
        if i < self.num_real:
            image, label = self._real(i)
            return self._finish(image, self._soft_real_label(label))
        j = i - self.num_real
        if self._bank is not None:
            return self._finish(*self._from_bank(j))
        return self._finish(*self._on_the_fly(j))

    def _on_the_fly(self, j: int) -> tuple[Any, Any]:
        src = self.sources()
        image, label = self._real(j % self.num_real)
        x, fmt = image_to_tensor(image, f"image {j % self.num_real} of the wrapped dataset")
        y = self._label_tensor(label)
        gen = torch.Generator(device=src.device).manual_seed(_sample_seed(self.seed, self.epoch, j))
        draws = draw_torch(src, self.options, 1, generator=gen)
        out, new = overlay_batch(src, x.to(src.device), y.to(src.device), self.options, draws)
        return tensor_to_image(out, fmt), self._label_out(new, label)

    # -- banks -----------------------------------------------------------------------------------

    def _template_format(self) -> tuple[ImageFormat, int, int, int]:
        if self._template is None:
            image, _ = self._real(0)
            x, fmt = image_to_tensor(image, "image 0 of the wrapped dataset")
            self._template = (fmt, x.shape[2], x.shape[3], x.shape[1])
        return self._template

    def _from_bank(self, j: int) -> tuple[Any, Any]:
        assert self._bank is not None
        images, labels = self._bank
        m = j % images.shape[0]
        fmt, h, w, c = self._template_format()
        x = images[m : m + 1]
        if x.shape[1] != c:
            if x.shape[1] != 1:
                raise DataError(f"the bank's images have {x.shape[1]} channels but the dataset's have {c}")
            x = x.expand(1, c, -1, -1)
        if x.shape[-2:] != (h, w):
            x = torch.nn.functional.interpolate(x, size=(h, w), mode="bilinear", align_corners=False,
                                                antialias=h < x.shape[-2] or w < x.shape[-1])
        label_like = self._real(0)[1] if labels.ndim == 1 else None
        return tensor_to_image(x, fmt), self._label_out(labels[m : m + 1], label_like)

    def _load_bank(self, bank: Any, bank_size: int | None) -> tuple[Tensor, Tensor]:
        if bank is None:
            n = self.num_generated if bank_size is None else bank_size
            if isinstance(n, bool) or not isinstance(n, int) or n < 1:
                raise ConfigError(f"bank_size must be an int >= 1, got {bank_size!r}")
            return self._generate_bank(n)
        if bank_size is not None:
            raise ConfigError("bank_size is only used when the bank is generated in memory (bank=None)")
        if isinstance(bank, (str, os.PathLike)):
            return self._read_bank_folder(Path(bank))
        if isinstance(bank, dict):
            bank = (bank.get("images"), bank.get("labels"))
        if isinstance(bank, (tuple, list)) and len(bank) == 2 and all(isinstance(t, Tensor) for t in bank):
            images, labels = bank
            if images.ndim != 4 or images.shape[0] == 0 or images.shape[1] not in (1, 3) or not images.is_floating_point():
                raise DataError(f"bank images must be a non-empty float tensor (M, C, H, W) in [0, 1], got "
                                f"{tuple(images.shape)} {images.dtype}")
            if not bool(torch.isfinite(images).all()) or float(images.min()) < 0 or float(images.max()) > 1:
                raise DataError("bank images must be finite and in [0, 1]")
            if labels.shape[0] != images.shape[0] or labels.ndim not in (1, 2):
                raise DataError(f"bank labels must be (M,) or (M, K) with M = {images.shape[0]}, got {tuple(labels.shape)}")
            if self.options.soft_labels and labels.ndim == 1:
                labels = torch.nn.functional.one_hot(labels.long(), self.num_classes).float()
            return images.float().cpu(), labels.cpu()
        raise ConfigError("bank must be None, the path of an `augvae generate --mode overlay` folder, or (images, labels) tensors; "
                          f"got {type(bank).__name__}")

    @torch.no_grad()
    def _generate_bank(self, n: int) -> tuple[Tensor, Tensor]:
        from dataclasses import replace

        src = self.sources()
        opts = replace(self.options, keep_input=False)
        gen = torch.Generator(device=src.device).manual_seed(_sample_seed(self.seed, 0, -1 % (2**32)))
        images, labels = [], []
        for start in range(0, n, 256):
            b = min(256, n - start)
            blank = torch.zeros(b, src.channels, src.image_size, src.image_size, device=src.device)
            y = torch.full((b,), -1, dtype=torch.long, device=src.device)
            out, new = overlay_batch(src, blank, y, opts, draw_torch(src, opts, b, generator=gen))
            images.append(out.cpu())
            labels.append(new.cpu())
        return torch.cat(images), torch.cat(labels)

    def _read_bank_folder(self, folder: Path) -> tuple[Tensor, Tensor]:
        from augvae.data.images import read_image

        manifest = folder / "manifest.csv"
        if not manifest.is_file():
            raise DataError(f"{folder} is not an `augvae generate` output folder (no manifest.csv); write one with "
                            f"`augvae generate MODEL_DIR {folder} --mode overlay`")
        with manifest.open(newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
        if not rows or "classes" not in rows[0] or "file" not in rows[0]:
            raise DataError(f"{manifest} has no 'classes' and 'file' columns: it was not generated in overlay mode; "
                            "regenerate with --mode overlay")
        src = self.sources()
        k = self.num_classes
        images, labels = [], []
        for row in rows:
            names = [c for c in row["classes"].split("+") if c]
            unknown = [c for c in names if c not in src.classes]
            if unknown or not names:
                raise DataError(f"{manifest}: row {row.get('index')} has classes {row['classes']!r}, not among {src.classes}; "
                                "pass classes=[...] that include them")
            idx = [src.classes.index(c) for c in names]
            images.append(torch.from_numpy(read_image(folder / row["file"], channels=src.channels)).permute(2, 0, 1))
            defects = [i for i in idx if i != src.background]
            if self.options.soft_labels:
                vec = torch.zeros(k)
                for i in defects or idx:
                    vec[i] += 1.0
                labels.append((vec > 0).float() if self.options.multilabel else vec / vec.sum())
            else:
                labels.append(torch.tensor((defects or idx)[0]))
        return torch.stack(images).float(), torch.stack(labels)
