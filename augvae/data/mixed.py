"""``MixedDataset``: wrap any map-style ``(image, label)`` dataset and mix overlay-generated samples into it.

The wrapper keeps every real sample and appends generated ones: with ``N`` real samples and
``ratio`` the fraction of generated samples in the stream, it holds ``G = round(N * ratio / (1 -
ratio))`` generated samples after the real ones. A shuffling sampler interleaves them.

Generated samples come **on the fly** (sample ``j`` is made from a real sample by the overlay engine
under the label policy, with fresh random draws each epoch) or from a **bank** made once: the
on-the-fly samples of epoch 0 (``transplant``) or fresh overlays (other formulations) generated at
construction, a folder written by ``augvae generate --mode overlay``, or your own ``(images,
labels)`` tensors. With ``onto-background`` the real sample a generated one starts from is a
defect-free one (the wrapped dataset's ``targets`` are used where it has them, else its labels are
read once).

**Determinism and parallelism.** The random numbers of generated sample ``j`` come from a generator
seeded by ``(seed, epoch, j)`` alone, so DataLoader workers need no ``worker_init_fn``, every rank
of a ``DistributedSampler`` run sees the same sample for a given index, and ``set_epoch(e)`` (call
it next to ``sampler.set_epoch(e)``; the epoch lives in shared memory, so persistent workers see it)
redraws every on-the-fly sample.

Example:
    >>> import torch
    >>> from augvae.data.mixed import MixedDataset
    >>> from augvae.testing import example_model_folder
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

import math
import os
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from augvae._adapter import OverlayAdapter, label_like, parse_label
from augvae._convert import image_to_tensor, tensor_to_image
from augvae._device import resolve_device
from augvae._imageops import resize
from augvae.config import check_choice
from augvae.data.banks import load_bank
from augvae.errors import ConfigError, DataError, InputError
from augvae.overlay.engine import overlay_batch
from augvae.overlay.policy import OverlayOptions, draw_torch

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


class MixedDataset(OverlayAdapter, Dataset):
    """Real samples of ``dataset`` followed by generated ones, at a chosen ratio, under a label policy.

    Items have the wrapped dataset's types (PIL, numpy HWC or CHW tensor images; ``int`` or the
    dataset's own integer type for labels). With ``policy="soft"`` every label, real or generated,
    is a ``float32`` tensor of length ``num_classes``, so batches collate. Put normalising transforms
    in ``transform`` (applied to every image after mixing), not in the wrapped dataset.

    Args:
        model_path: A model folder written by ``augvae train``.
        dataset: Any map-style dataset whose items are ``(image, label)``.
        ratio: Fraction of generated samples in the stream, in [0, 1) (0.5: one per real sample).
        policy: The label policy (an :class:`~augvae.overlay.policy.OverlayOptions` field, named here
            for its importance); the other fields go in ``options`` or as keyword arguments.
        mode: ``on-the-fly`` (new draws every epoch) or ``bank`` (a fixed set, made once).
        bank: For ``mode="bank"``: None (make ``bank_size`` samples now), the path of an ``augvae
            generate --mode overlay`` folder, or ``(images (M, C, S, S) float in [0, 1], labels (M,) or (M, K))``.
        num_classes: Length of soft labels; default the number of classes.
        seed: Seed of every draw (with the epoch and the index).
        options: An :class:`~augvae.overlay.policy.OverlayOptions`.
        transform: Applied to every image (real and generated) after mixing.
        bank_size: Samples in a bank made in memory; default the number of generated samples.
        device: Where on-the-fly overlays are computed (``cpu`` in DataLoader workers).

    Example:
        >>> import PIL.Image
        >>> from augvae.testing import example_model_folder
        >>> real = [(PIL.Image.new("L", (40, 30), 100 + 10 * i), i % 3) for i in range(4)]
        >>> mixed = MixedDataset(example_model_folder(), real, ratio=0.5, policy="soft", mode="bank")
        >>> image, label = mixed[5]
        >>> image.size, image.mode, label.shape, round(float(label.sum()), 5)
        ((40, 30), 'L', torch.Size([3]), 1.0)
    """

    def __init__(self, model_path: str | os.PathLike[str], dataset: Any, ratio: float = 0.5, policy: str = "auto",
                 mode: str = "on-the-fly", bank: Any = None, num_classes: int | None = None, seed: int = 0, *,
                 options: OverlayOptions | None = None, transform: Callable[[Any], Any] | None = None,
                 bank_size: int | None = None, device: str | torch.device = "cpu", **overlay_options: Any) -> None:
        self._setup_overlay(model_path, options, {"policy": policy, **overlay_options} if options is None or policy != "auto"
                            else overlay_options)
        if not (hasattr(dataset, "__getitem__") and hasattr(dataset, "__len__")):
            raise ConfigError(f"dataset must be a map-style dataset (with __getitem__ and __len__), got {type(dataset).__name__}")
        if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not (math.isfinite(ratio) and 0 <= ratio < 1):
            raise ConfigError(f"ratio (the fraction of generated samples) must be in [0, 1), got {ratio!r}; 0.5 = one per real sample")
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**63:
            raise ConfigError(f"seed must be an int from 0 to 2**63 - 1, got {seed!r}")
        if num_classes is not None and (isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1):
            raise ConfigError(f"num_classes must be a positive int or None, got {num_classes!r}")
        check_choice(mode, MODES, "mode")
        self.dataset, self.ratio, self.mode, self.seed = dataset, float(ratio), mode, seed
        self.transform, self.device = transform, resolve_device(str(device))  # a clear error for a device torch lacks
        self.num_real = len(dataset)
        if self.num_real == 0:
            raise DataError("the wrapped dataset is empty; MixedDataset needs real samples to mix with")
        self.num_generated = round(self.num_real * self.ratio / (1.0 - self.ratio))
        self._epoch = _shared_epoch()
        self._bases: list[int] | None = None
        src = self.sources(self.device)
        if num_classes is not None and num_classes != src.num_classes:
            raise ConfigError(f"num_classes={num_classes} but the classes are {src.classes}; pass classes=[...] with one name per label")
        self._opts = self.resolved(src)
        if mode == "on-the-fly" and (bank is not None or bank_size is not None):
            raise ConfigError("bank= and bank_size= are only used with mode='bank'; drop them or pass mode='bank'")
        self._bank = self._load_bank(bank, bank_size) if mode == "bank" and self.num_generated > 0 else None

    @property
    def num_classes(self) -> int:
        """Length of soft label vectors."""
        return self.sources(self.device).num_classes

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
        i = int(index) + (len(self) if int(index) < 0 else 0)
        if not 0 <= i < len(self):
            raise IndexError(f"index {index} is out of range for MixedDataset of length {len(self)}")
        return i

    def _real(self, i: int) -> tuple[Any, Any]:
        item = self.dataset[i]
        if not (isinstance(item, (tuple, list)) and len(item) == 2):
            raise DataError(f"item {i} of the wrapped dataset is a {type(item).__name__}; MixedDataset needs (image, label) pairs")
        return item[0], item[1]

    def _label(self, label: Any, i: int) -> Tensor:
        try:
            return parse_label(label, self.sources(self.device), False, f"the label of item {i} of the wrapped dataset:")
        except InputError as err:
            raise DataError(str(err)) from None

    def _finish(self, image: Any, label: Any) -> tuple[Any, Any]:
        return (self.transform(image) if self.transform is not None else image), label

    def __getitem__(self, index: int) -> tuple[Any, Any]:
        i = self._check_index(index)
        if i < self.num_real:
            image, label = self._real(i)
            if self._opts.soft_labels:  # every label a vector, so batches collate
                y = self._label(label, i)
                label = y[0] if y.ndim == 2 else torch.nn.functional.one_hot(y, self.num_classes)[0].float()
            return self._finish(image, label)
        j = i - self.num_real
        return self._finish(*(self._from_bank(j) if self._bank is not None else self._generate(j, self.epoch)))

    # -- on the fly ------------------------------------------------------------------------------
    def _base(self, j: int) -> int:
        """The real sample generated sample ``j`` starts from: with ``onto-background``, a defect-free one."""
        src = self.sources(self.device)
        if self._opts.policy != "onto-background" or src.background < 0:
            return j % self.num_real
        if self._bases is None:
            targets = getattr(self.dataset, "targets", None)
            labels = list(targets) if targets is not None and len(targets) == self.num_real else [
                self._real(i)[1] for i in range(self.num_real)]
            parsed = [self._label(y, i) for i, y in enumerate(labels)]
            hard = [int(t.argmax()) if t.ndim == 2 else int(t[0]) for t in parsed]
            self._bases = [i for i, y in enumerate(hard) if y == src.background] or list(range(self.num_real))
        return self._bases[j % len(self._bases)]

    def _generate(self, j: int, epoch: int) -> tuple[Any, Any]:
        src = self.sources(self.device)
        base = self._base(j)
        image, label = self._real(base)
        x, fmt = image_to_tensor(image, f"image {base} of the wrapped dataset")
        gen = torch.Generator(device=src.device).manual_seed(_sample_seed(self.seed, epoch, j))
        draws = draw_torch(src, self._opts, 1, generator=gen)
        out, new = overlay_batch(src, x.to(src.device), self._label(label, base).to(src.device), self._opts, draws)
        return tensor_to_image(out, fmt), label_like(new, label, self._opts.soft_labels, "tensor")

    # -- banks -----------------------------------------------------------------------------------
    def _from_bank(self, j: int) -> tuple[Any, Any]:
        assert self._bank is not None
        images, labels = self._bank
        if isinstance(images, list):  # frozen on-the-fly samples
            return images[j % len(images)], labels[j % len(labels)]
        m = j % images.shape[0]
        image, label = self._real(0)
        x0, fmt = image_to_tensor(image, "image 0 of the wrapped dataset")
        x = images[m : m + 1]
        if x.shape[1] != x0.shape[1]:
            if x.shape[1] != 1:
                raise DataError(f"the bank's images have {x.shape[1]} channels but the dataset's have {x0.shape[1]}")
            x = x.expand(1, x0.shape[1], -1, -1)
        out = tensor_to_image(resize(x, x0.shape[2], x0.shape[3]), fmt)
        return out, label_like(labels[m : m + 1], label if labels.ndim == 1 else None, self._opts.soft_labels, "tensor")

    def _load_bank(self, bank: Any, bank_size: int | None) -> Any:
        if bank is None:
            n = self.num_generated if bank_size is None else bank_size
            if isinstance(n, bool) or not isinstance(n, int) or n < 1:
                raise ConfigError(f"bank_size must be an int >= 1, got {bank_size!r}")
            return self._make_bank(n)
        if bank_size is not None:
            raise ConfigError("bank_size is only used when the bank is made in memory (bank=None)")
        return load_bank(bank, self.sources(self.device), self._opts)

    @torch.no_grad()
    def _make_bank(self, n: int) -> Any:
        if self._opts.formulation == "transplant":  # real defects need real surfaces: freeze the epoch-0 samples
            pairs = [self._generate(j, 0) for j in range(n)]
            return [p[0] for p in pairs], [p[1] for p in pairs]
        src = self.sources(self.device)
        opts = replace(self._opts, keep_input=False)
        gen = torch.Generator(device=src.device).manual_seed(_sample_seed(self.seed, 0, -1 % (2**32)))
        images, labels = [], []
        for start in range(0, n, 256):
            b = min(256, n - start)
            blank = torch.zeros(b, src.channels, src.image_size, src.image_size, device=src.device)
            out, new = overlay_batch(src, blank, torch.full((b,), -1, dtype=torch.long, device=src.device), opts,
                                     draw_torch(src, opts, b, generator=gen))
            images.append(out.cpu())
            labels.append(new.cpu())
        return torch.cat(images), torch.cat(labels)
