"""``augvae.data.MixedDataset``: ratio, types, determinism, workers, ranks, banks, errors (issue 3)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import torch
from torch.utils.data import DataLoader, DistributedSampler, RandomSampler, Subset

from augvae.data import MixedDataset
from augvae.errors import ConfigError, DataError, ModelFolderError
from augvae.testing import example_model_folder

CLASSES = ("crack", "pore", "scratch", "clean")
CLEAN = 3


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return example_model_folder(tmp_path_factory.mktemp("m") / "gray", classes=CLASSES, per_class=3)


class Pairs(torch.utils.data.Dataset):
    """A user's own map-style dataset of (image, label)."""

    def __init__(self, n: int = 12, kind: str = "tensor", size: tuple[int, int] = (36, 44)) -> None:
        rng = np.random.default_rng(0)
        self.arrays = [rng.integers(30, 220, size, dtype=np.uint8) for _ in range(n)]
        self.kind = kind

    def __len__(self) -> int:
        return len(self.arrays)

    def __getitem__(self, i: int) -> tuple[object, int]:
        a = self.arrays[i]
        image: object = {"tensor": lambda: torch.from_numpy(a)[None].float() / 255, "numpy": lambda: a[..., None],
                         "pil": lambda: PIL.Image.fromarray(a)}[self.kind]()
        return image, i % 4


def _as_array(image: object) -> np.ndarray:
    return np.asarray(image) if not isinstance(image, torch.Tensor) else image.numpy()


@pytest.mark.parametrize("ratio", [0.25, 0.5, 0.8])
def test_hits_its_ratio_over_thousands_of_draws(model_dir: Path, ratio: float) -> None:
    mixed = MixedDataset(model_dir, Pairs(40), ratio=ratio)
    assert mixed.num_generated == round(40 * ratio / (1 - ratio))
    draws = list(RandomSampler(mixed, replacement=True, num_samples=4000, generator=torch.Generator().manual_seed(0)))
    share = sum(mixed.is_generated(i) for i in draws) / len(draws)
    assert abs(share - ratio) < 0.03
    assert MixedDataset(model_dir, Pairs(40), ratio=0.0).num_generated == 0


@pytest.mark.parametrize("kind", ["tensor", "numpy", "pil"])
def test_returns_the_wrapped_types(model_dir: Path, kind: str) -> None:
    real = Pairs(8, kind)
    mixed = MixedDataset(model_dir, real, ratio=0.5, policy="onto-background")
    for i in range(len(mixed)):
        image, label = mixed[i]
        ref_image, _ = real[i % 8]
        assert type(image) is type(ref_image) and type(label) is int
        assert _as_array(image).shape == _as_array(ref_image).shape and _as_array(image).dtype == _as_array(ref_image).dtype
        if mixed.is_generated(i):
            assert not np.array_equal(_as_array(image), _as_array(ref_image))
            assert label != CLEAN  # onto-background: a clean image with a defect is that defect


def test_deterministic_per_index_and_epoch(model_dir: Path) -> None:
    a = MixedDataset(model_dir, Pairs(6), ratio=0.5, seed=3, scale=1.0)
    b = MixedDataset(model_dir, Pairs(6), ratio=0.5, seed=3, scale=1.0)  # another rank / process
    for i in range(6, 12):
        assert torch.equal(a[i][0], b[i][0]) and torch.equal(a[i][0], a[i][0])
    first = [a[i][0] for i in range(6, 12)]
    a.set_epoch(1)
    assert a.epoch == 1
    assert not all(torch.equal(x, a[i][0]) for x, i in zip(first, range(6, 12)))
    c = MixedDataset(model_dir, Pairs(6), ratio=0.5, seed=4, scale=1.0)
    assert not all(torch.equal(x, c[i][0]) for x, i in zip(first, range(6, 12)))


def test_workers_give_distinct_samples_identical_to_one_process(model_dir: Path) -> None:
    mixed = MixedDataset(model_dir, Pairs(8), ratio=0.5, seed=1, scale=1.0, k=2)
    generated = Subset(mixed, list(range(8, 16)))
    serial = torch.cat([x for x, _ in DataLoader(generated, batch_size=2, num_workers=0)])
    parallel = torch.cat([x for x, _ in DataLoader(generated, batch_size=2, num_workers=2)])
    assert torch.equal(serial, parallel)
    flat = parallel.flatten(1)
    assert len({tuple(row.tolist()) for row in flat}) == flat.shape[0]  # no duplicates across workers


def test_persistent_workers_follow_set_epoch(model_dir: Path) -> None:
    mixed = MixedDataset(model_dir, Pairs(4), ratio=0.5, seed=2, scale=1.0)
    loader = DataLoader(Subset(mixed, [4, 5, 6, 7]), batch_size=4, num_workers=1, persistent_workers=True)
    e0 = next(iter(loader))[0]
    mixed.set_epoch(1)
    e1 = next(iter(loader))[0]
    mixed.set_epoch(0)
    again = next(iter(loader))[0]
    assert not torch.equal(e0, e1) and torch.equal(e0, again)


def test_distributed_sampler_shares_are_disjoint(model_dir: Path) -> None:
    ranks = [MixedDataset(model_dir, Pairs(10), ratio=0.5, seed=0) for _ in range(2)]  # each rank builds its own
    shares = [list(DistributedSampler(ds, num_replicas=2, rank=r, shuffle=True, seed=0)) for r, ds in enumerate(ranks)]
    assert not set(shares[0]) & set(shares[1]) and set(shares[0]) | set(shares[1]) == set(range(20))
    i = next(j for j in shares[1] if j >= 10)
    assert torch.equal(ranks[0][i][0], ranks[1][i][0])


def test_soft_policy_labels_are_vectors_everywhere(model_dir: Path) -> None:
    mixed = MixedDataset(model_dir, Pairs(6), ratio=0.5, policy="soft", k=2)
    labels = torch.stack([mixed[i][1] for i in range(len(mixed))])
    assert labels.shape == (12, 4) and labels.dtype == torch.float32
    assert torch.allclose(labels.sum(1), torch.ones(12))
    batch = next(iter(DataLoader(mixed, batch_size=12)))
    assert batch[1].shape == (12, 4)


def test_bank_in_memory_from_tensors_and_from_generate(model_dir: Path, tmp_path: Path) -> None:
    mixed = MixedDataset(model_dir, Pairs(6), ratio=0.5, mode="bank", bank_size=4, seed=0)
    again = MixedDataset(model_dir, Pairs(6), ratio=0.5, mode="bank", bank_size=4, seed=0)
    assert torch.equal(mixed[6][0], again[6][0]) and torch.equal(mixed[6][0], mixed[10][0])  # 6 and 10 share bank item 0
    assert mixed[6][0].shape == (1, 36, 44) and all(0 <= mixed[i][1] < 4 for i in range(6, 12))

    images, labels = torch.rand(3, 1, 28, 28), torch.tensor([0, 1, 2])
    own = MixedDataset(model_dir, Pairs(6, "pil"), ratio=0.5, mode="bank", bank=(images, labels))
    image, label = own[7]
    assert isinstance(image, PIL.Image.Image) and image.size == (44, 36) and label == 1

    from augvae.config import GenerateConfig
    from augvae.generate import generate

    out = generate(model_dir, tmp_path / "gen", GenerateConfig(mode="overlay", n=5, k=2, same_class=True), progress=False)
    from_disk = MixedDataset(model_dir, Pairs(6), ratio=0.5, mode="bank", bank=out.folder.parent)
    assert all(0 <= from_disk[i][1] < 4 for i in range(6, 12))
    soft = MixedDataset(model_dir, Pairs(6), ratio=0.5, mode="bank", bank=out.folder.parent, policy="soft")
    assert torch.allclose(soft[8][1].sum(), torch.tensor(1.0))


def test_transform_is_applied_after_mixing(model_dir: Path) -> None:
    mixed = MixedDataset(model_dir, Pairs(4, "pil"), ratio=0.5, transform=lambda im: np.asarray(im, np.float32) / 255)
    assert all(isinstance(mixed[i][0], np.ndarray) for i in range(8))


def test_errors_are_clear(model_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ModelFolderError, match="does not exist"):
        MixedDataset(tmp_path / "nope", Pairs(4))
    with pytest.raises(ConfigError, match="ratio"):
        MixedDataset(model_dir, Pairs(4), ratio=1.0)
    with pytest.raises(ConfigError, match="unknown mode"):
        MixedDataset(model_dir, Pairs(4), mode="cache")
    with pytest.raises(ConfigError, match="unknown policy"):
        MixedDataset(model_dir, Pairs(4), policy="mix")
    with pytest.raises(ConfigError, match="num_classes"):
        MixedDataset(model_dir, Pairs(4), num_classes=7)
    with pytest.raises(DataError, match="empty"):
        MixedDataset(model_dir, [])
    with pytest.raises(DataError, match=r"\(image, label\) pairs"):
        MixedDataset(model_dir, [torch.rand(1, 8, 8)] * 2)[0]
    with pytest.raises(DataError, match="manifest"):
        MixedDataset(model_dir, Pairs(4), mode="bank", bank=tmp_path)
    with pytest.raises(IndexError):
        MixedDataset(model_dir, Pairs(4))[8]
    with pytest.raises(ConfigError, match="unknown device 'tpu'"):  # was a raw torch RuntimeError
        MixedDataset(model_dir, Pairs(4), device="tpu")
    if not torch.cuda.is_available():  # was silently run on the CPU
        with pytest.raises(ConfigError, match="no CUDA GPU is available"):
            MixedDataset(model_dir, Pairs(4), device="cuda")
