"""The albumentations / torchvision transforms and the batch transform (issue 3).

Most tests use :func:`augvae.testing.example_model_folder`: an untrained model folder whose sources
decode visibly differently. A model trained for 1-2 epochs on a handful of images collapses (every
source decodes to the same image), so its overlays are nearly the identity: fine for the smoke test
on a really trained folder below, useless for "p=1 always changes the image".
"""

from __future__ import annotations

import json
from pathlib import Path

import albumentations as A
import numpy as np
import PIL.Image
import pytest
import torch
from torchvision import tv_tensors
from torchvision.transforms import v2

from augvae.albumentations import VAEOverlay as AlbuOverlay
from augvae.errors import ConfigError, InputError, ModelFolderError
from augvae.overlay import POLICIES
from augvae.overlay.sources import clear_cache, load_sources
from augvae.testing import example_model_folder
from augvae.torchvision import BatchVAEOverlay
from augvae.torchvision import VAEOverlay as TVOverlay

CLASSES = ("crack", "pore", "scratch", "clean")
CRACK, PORE, SCRATCH, CLEAN = range(4)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return example_model_folder(tmp_path_factory.mktemp("m") / "gray", classes=CLASSES, per_class=3)


@pytest.fixture(scope="module")
def rgb_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return example_model_folder(tmp_path_factory.mktemp("m") / "rgb", classes=CLASSES, per_class=2, channels=3)


@pytest.fixture(scope="module")
def trained_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A really trained folder (1 epoch on 12 synthetic images, 28 px, latent 4)."""
    from augvae.config import ModelConfig, recipe_config
    from augvae.data.images import ImageSet
    from augvae.data.synthetic import make_dataset
    from augvae.training import train

    samples = make_dataset(3, size=28, seed=0, classes=CLASSES)
    images = torch.from_numpy(np.stack([s.image for s in samples])).float().reshape(12, 1, 28, 28)
    data = ImageSet(images, torch.arange(4).repeat_interleave(3), list(CLASSES), [f"s{i}" for i in range(12)])
    out = tmp_path_factory.mktemp("m") / "trained"
    train(data, ModelConfig(image_size=28, latent_dim=4), recipe_config("small-set", epochs=1, batch_size=4), out_dir=out,
          progress=False)
    return out


def _rng_image(shape: tuple[int, ...], dtype: str, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if dtype == "uint8":
        return rng.integers(30, 220, shape, dtype=np.uint8)
    if dtype == "uint16":
        return rng.integers(5000, 60000, shape, dtype=np.uint16)
    return rng.uniform(0.1, 0.9, shape).astype(dtype)


# --------------------------------------------------------------------------------------------
# albumentations


@pytest.mark.parametrize(
    "shape,dtype",
    [((37, 53), "uint8"), ((37, 53, 1), "uint8"), ((37, 53, 3), "uint8"), ((64, 64, 3), "float32"), ((20, 20), "float32"),
     ((28, 28), "uint16"), ((16, 90), "float64")],
)
def test_albu_in_compose_keeps_shape_dtype_range(model_dir: Path, shape: tuple[int, ...], dtype: str) -> None:
    aug = A.Compose([A.HorizontalFlip(p=0.5), AlbuOverlay(model_dir, p=1.0), A.RandomBrightnessContrast(p=0.0)], seed=1)
    image = _rng_image(shape, dtype)
    out = aug(image=image, label=PORE)
    assert out["image"].shape == image.shape and out["image"].dtype == image.dtype
    assert out["label"] == PORE
    if np.issubdtype(image.dtype, np.floating):
        assert 0.0 <= out["image"].min() and out["image"].max() <= 1.0


def test_albu_seeded_compose_reproduces(model_dir: Path) -> None:
    def run(seed: int) -> list[np.ndarray]:
        aug = A.Compose([A.HorizontalFlip(p=0.5), AlbuOverlay(model_dir, p=0.7, policy="onto-background", scale=1.0)], seed=seed)
        return [aug(image=_rng_image((32, 32), "uint8", i), label=CLEAN)["image"] for i in range(6)]

    a, b, c = run(137), run(137), run(138)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c))


def test_albu_serialization_round_trip(model_dir: Path, tmp_path: Path) -> None:
    t = AlbuOverlay(model_dir, p=0.8, policy="soft", formulation="residual", scale=0.3, k=2, weight=(0.5, 1.0),
                    background_class="clean", classes=list(CLASSES), multilabel=True)
    pipe = A.Compose([A.HorizontalFlip(p=0.5), t], seed=3)
    d = A.to_dict(pipe)
    json.dumps(d)  # plain JSON types only
    back = A.from_dict(d)
    assert A.to_dict(back) == d
    A.save(pipe, str(tmp_path / "pipe.json"))
    loaded = A.load(str(tmp_path / "pipe.json"))
    assert json.loads(json.dumps(A.to_dict(loaded))) == json.loads(json.dumps(d))
    restored = loaded.transforms[1]
    for name in ("model_path", "p", "policy", "formulation", "scale", "k", "weight", "keep_input", "background_class",
                 "classes", "multilabel"):
        assert getattr(restored, name) == getattr(t, name), name
    label = np.eye(4, dtype=np.float32)[CRACK]
    pipe2 = A.Compose([A.HorizontalFlip(p=0.5), t], seed=3)
    loaded.set_random_seed(3)
    for i in range(3):
        img = _rng_image((30, 30), "uint8", i)
        x, y = pipe2(image=img, label=label), loaded(image=img, label=label)
        assert np.array_equal(x["image"], y["image"]) and np.array_equal(x["label"], y["label"])


def test_albu_p0_identity_and_p1_always_changes(model_dir: Path) -> None:
    p0, p1 = AlbuOverlay(model_dir, p=0.0), AlbuOverlay(model_dir, p=1.0)
    for i in range(15):
        img = _rng_image((40, 40, 1), "uint8", i)
        out0 = p0(image=img, label=i % 4)
        assert np.array_equal(out0["image"], img) and out0["label"] == i % 4
        assert not np.array_equal(p1(image=img, label=i % 4)["image"], img)


def test_albu_label_travels_per_policy(model_dir: Path) -> None:
    img = _rng_image((32, 32), "float32")
    onto = A.Compose([AlbuOverlay(model_dir, p=1.0, policy="onto-background")], seed=0, strict=True)
    labels = {onto(image=img, label=CLEAN)["label"] for _ in range(20)}
    assert labels and labels <= {CRACK, PORE, SCRATCH}  # a clean image with a defect is that defect
    assert onto(image=img, label=SCRATCH)["label"] == SCRATCH  # a defect on a new surface keeps its class
    soft = AlbuOverlay(model_dir, p=1.0, policy="soft", k=2)
    for _ in range(10):
        y = soft(image=img, label=np.eye(4, dtype=np.float32)[CLEAN])["label"]
        assert y.dtype == np.float32 and y.shape == (4,) and abs(float(y.sum()) - 1.0) < 1e-5
        assert y[CLEAN] == 0.0 or np.isclose(y[CLEAN], 1.0)  # defect-free only if nothing else was added
    multi = AlbuOverlay(model_dir, p=1.0, policy="soft", multilabel=True)
    y = multi(image=img, label=np.eye(4, dtype=np.float32)[CRACK])["label"]
    assert set(np.unique(y)) <= {0.0, 1.0} and y[CRACK] == 1.0
    with pytest.raises(InputError, match="label vector"):
        soft(image=img, label=CRACK)
    with pytest.raises(InputError, match="label="):
        AlbuOverlay(model_dir, p=1.0)(image=img)
    with pytest.raises(InputError, match="class index"):
        AlbuOverlay(model_dir, p=1.0)(image=img, label=9)


def test_albu_works_on_a_really_trained_folder(trained_dir: Path) -> None:
    out = A.Compose([AlbuOverlay(trained_dir, p=1.0, k=2)], seed=0)(image=_rng_image((50, 40), "uint8"), label=CRACK)
    assert out["image"].shape == (50, 40) and out["label"] == CRACK


# --------------------------------------------------------------------------------------------
# torchvision, per sample


def _tv_inputs() -> list[object]:
    rng = torch.Generator().manual_seed(0)
    return [
        PIL.Image.fromarray(_rng_image((33, 47), "uint8")),
        PIL.Image.fromarray(_rng_image((33, 47, 3), "uint8")),
        torch.randint(20, 230, (1, 33, 47), dtype=torch.uint8, generator=rng),
        torch.randint(20, 230, (3, 33, 47), dtype=torch.uint8, generator=rng),
        torch.rand(1, 33, 47, generator=rng) * 0.8 + 0.1,
        torch.rand(33, 47, generator=rng) * 0.8 + 0.1,
        tv_tensors.Image(torch.randint(20, 230, (1, 33, 47), dtype=torch.uint8, generator=rng)),
    ]


@pytest.mark.parametrize("index", range(7))
def test_tv_in_compose_keeps_type_size_dtype(model_dir: Path, index: int) -> None:
    image = _tv_inputs()[index]
    t = v2.Compose([v2.RandomHorizontalFlip(p=0.5), TVOverlay(model_dir, p=1.0), v2.RandomVerticalFlip(p=0.0)])
    torch.manual_seed(0)
    out, label = t(image, PORE)
    assert type(out) is type(image) and label == PORE
    if isinstance(image, PIL.Image.Image):
        assert out.size == image.size and out.mode == image.mode
        assert not np.array_equal(np.asarray(out), np.asarray(image))
    else:
        assert out.shape == image.shape and out.dtype == image.dtype and not torch.equal(out, image)
        if out.is_floating_point():
            assert 0 <= float(out.min()) and float(out.max()) <= 1


def test_tv_seeded_and_p0_p1(model_dir: Path) -> None:
    t = TVOverlay(model_dir, p=0.5, policy="onto-background", scale=1.0)
    imgs = [torch.rand(1, 30, 30, generator=torch.Generator().manual_seed(i)) for i in range(8)]
    torch.manual_seed(5)
    a = [t(x, CLEAN) for x in imgs]
    torch.manual_seed(5)
    b = [t(x, CLEAN) for x in imgs]
    assert all(torch.equal(x[0], y[0]) and x[1] == y[1] for x, y in zip(a, b))
    p0, p1 = TVOverlay(model_dir, p=0.0), TVOverlay(model_dir, p=1.0)
    for x in imgs:
        out, y = p0(x, CRACK)
        assert out is x and y == CRACK
        assert not torch.equal(p1(x, CRACK)[0], x)


def test_tv_label_in_pairs_and_dicts(model_dir: Path) -> None:
    onto = TVOverlay(model_dir, p=1.0, policy="onto-background")
    x = torch.rand(1, 28, 28)
    assert {onto(x, CLEAN)[1] for _ in range(10)} <= {CRACK, PORE, SCRATCH}
    sample = onto({"image": tv_tensors.Image(x), "label": CLEAN, "mask": tv_tensors.Mask(torch.zeros(28, 28))})
    assert sample["label"] != CLEAN and isinstance(sample["image"], tv_tensors.Image)
    assert torch.equal(sample["mask"], torch.zeros(28, 28))
    soft = TVOverlay(model_dir, p=0.5, policy="soft")
    for _ in range(10):  # always a vector, fired or not, so batches collate
        y = soft(x, CRACK)[1]
        assert y.dtype == torch.float32 and y.shape == (4,) and torch.isclose(y.sum(), torch.tensor(1.0))
    with pytest.raises(InputError, match=r"\(image, label\)"):
        TVOverlay(model_dir, p=1.0)(x)
    fresh = TVOverlay(model_dir, p=1.0, keep_input=False)(x)  # a fresh overlay needs no label
    assert fresh.shape == x.shape


# --------------------------------------------------------------------------------------------
# batch transform


def test_batch_soft_labels_sum_to_one_and_hard_policies_match(model_dir: Path) -> None:
    torch.manual_seed(0)
    x, y = torch.rand(32, 1, 40, 40), torch.arange(32) % 4
    images, soft = BatchVAEOverlay(model_dir, p=1.0, policy="soft", k=2)(x, y)
    assert images.shape == x.shape and soft.shape == (32, 4)
    assert torch.allclose(soft.sum(1), torch.ones(32))
    assert bool((soft[:, CLEAN][soft[:, :CLEAN].sum(1) > 0] == 0).all())  # defects make the image not clean
    _, same = BatchVAEOverlay(model_dir, p=1.0, policy="same-class")(x, y)
    assert torch.equal(same, y)
    _, onto = BatchVAEOverlay(model_dir, p=1.0, policy="onto-background")(x, y)
    assert torch.equal(onto[y != CLEAN], y[y != CLEAN]) and bool((onto[y == CLEAN] != CLEAN).all())
    _, half = BatchVAEOverlay(model_dir, p=0.5, policy="onto-background")(x, y)
    changed = int((half[y == CLEAN] != CLEAN).sum())
    assert 0 < changed < 8  # each image fires independently with p
    probs = torch.softmax(torch.randn(32, 4), 1)
    _, mixed = BatchVAEOverlay(model_dir, p=1.0, policy="soft")(x, probs)
    assert mixed.shape == (32, 4) and torch.allclose(mixed.sum(1), torch.ones(32))
    for bad in ([1.0, -1.0, 1.0, 0.0], [0.0] * 4, [float("nan"), 1.0, 0.0, 0.0]):  # VAEOverlay refuses each for one image
        rows = torch.tensor([bad] * 2)
        with pytest.raises(InputError, match="non-negative numbers with a positive sum in every row"):
            BatchVAEOverlay(model_dir, p=1.0, policy="soft")(x[:2], rows)


def test_batch_keeps_dtype_and_tv_image(model_dir: Path) -> None:
    x = torch.randint(0, 256, (6, 3, 50, 30), dtype=torch.uint8)
    out, _ = BatchVAEOverlay(model_dir, p=1.0)(tv_tensors.Image(x), torch.zeros(6, dtype=torch.long))
    assert isinstance(out, tv_tensors.Image) and out.dtype == torch.uint8 and out.shape == x.shape
    y0 = torch.arange(6) % 4
    p0_out, p0_y = BatchVAEOverlay(model_dir, p=0.0)(x, y0)
    assert torch.equal(p0_out, x) and torch.equal(p0_y, y0)


@pytest.mark.parametrize("formulation,passes", [("residual", (1, 0)), ("sum", (1, 1)), ("offset", (1, 1))])
def test_batch_is_one_decoder_pass(model_dir: Path, formulation: str, passes: tuple[int, int]) -> None:
    bt = BatchVAEOverlay(model_dir, p=1.0, formulation=formulation, k=3)
    src = bt.sources()
    calls = {"decoder": 0, "encoder": 0}
    hooks = [getattr(src.model, name).register_forward_hook(lambda *a, n=name: calls.__setitem__(n, calls[n] + 1))
             for name in calls]
    try:
        bt(torch.rand(16, 1, 28, 28), torch.arange(16) % 4)
    finally:
        for h in hooks:
            h.remove()
    assert (calls["decoder"], calls["encoder"]) == passes


def test_batch_makes_no_host_round_trip(model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bt = BatchVAEOverlay(model_dir, p=0.7, policy="soft", k=2, check_values=False)
    x, y = torch.rand(8, 1, 28, 28), torch.arange(8) % 4
    bt.sources()  # loading the model may read tensors on the host; the per-batch work may not

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("host synchronisation in the batch path")

    for name in ("item", "tolist", "numpy", "cpu", "__bool__", "__int__", "__float__", "__index__"):
        monkeypatch.setattr(torch.Tensor, name, refuse)
    images, labels = bt(x, y)
    monkeypatch.undo()
    assert images.shape == x.shape and labels.shape == (8, 4)


@pytest.mark.parametrize("policy,formulation", [("soft", "residual"), ("onto-background", "residual"),
                                                ("same-class", "sum"), ("soft", "offset"), ("same-class", "mean")])
def test_accelerator_path_makes_no_host_round_trip_and_matches_cpu(model_dir: Path, policy: str, formulation: str,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """The fixed-shape decode a GPU batch takes (``sparse=False``), run on CPU with host syncs refused."""
    from augvae.overlay.engine import overlay_batch
    from augvae.overlay.policy import OverlayOptions, draw_torch
    from augvae.overlay.sources import load_sources

    src = load_sources(model_dir)
    opts = OverlayOptions(policy=policy, formulation=formulation, k=2, weight=(0.5, 1.5))
    x, y = torch.rand(12, 1, 40, 36, generator=torch.Generator().manual_seed(0)), torch.arange(12) % 4
    draws = draw_torch(src, opts, 12, generator=torch.Generator().manual_seed(1))
    cpu_images, cpu_labels = overlay_batch(src, x, y, opts, draws, p=0.7, sparse=True)

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("host synchronisation in the accelerator path")

    for name in ("item", "tolist", "numpy", "cpu", "nonzero", "__bool__", "__int__", "__float__", "__index__"):
        monkeypatch.setattr(torch.Tensor, name, refuse)
    images, labels = overlay_batch(src, x, y, opts, draws, p=0.7, sparse=False)
    monkeypatch.undo()
    torch.testing.assert_close(images, cpu_images, rtol=1e-5, atol=1e-5)
    assert torch.equal(labels, cpu_labels) and not torch.equal(images, x)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_batch_runs_on_the_batch_device(model_dir: Path) -> None:  # pragma: no cover - GPU only
    x, y = torch.rand(8, 1, 28, 28, device="cuda"), (torch.arange(8) % 4).cuda()
    images, labels = BatchVAEOverlay(model_dir, p=1.0, policy="soft", check_values=False)(x, y)
    assert images.device.type == "cuda" and labels.device.type == "cuda"


# --------------------------------------------------------------------------------------------
# the model cache and clear errors


def test_model_is_loaded_once_per_process_and_reloaded_when_changed(model_dir: Path, tmp_path: Path) -> None:
    import shutil

    folder = tmp_path / "copy"
    shutil.copytree(model_dir, folder)
    clear_cache()
    a = load_sources(folder)
    assert load_sources(folder) is a
    weights = folder / "model.safetensors"
    weights.touch()
    import os

    st = weights.stat()
    os.utime(weights, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert load_sources(folder) is not a


def test_errors_are_clear(model_dir: Path, rgb_model_dir: Path, tmp_path: Path) -> None:
    for make in (AlbuOverlay, TVOverlay, BatchVAEOverlay):
        with pytest.raises(ModelFolderError, match="does not exist"):
            make(tmp_path / "nope")
        with pytest.raises(ConfigError, match="unknown policy 'mixup'"):
            make(model_dir, policy="mixup")
        with pytest.raises(ConfigError, match="formulation"):
            make(model_dir, formulation="product")
        with pytest.raises(ConfigError, match="p "):
            make(model_dir, p=1.5)
        with pytest.raises(ConfigError, match="k "):
            make(model_dir, k=0)
    assert set(POLICIES) == {"same-class", "onto-background", "soft"}
    gray = _rng_image((30, 30), "uint8")
    with pytest.raises(InputError, match="colour"):  # a colour model cannot take grayscale images
        AlbuOverlay(rgb_model_dir, p=1.0)(image=gray, label=0)
    rgb = _rng_image((30, 30, 3), "uint8")
    assert AlbuOverlay(model_dir, p=1.0)(image=rgb, label=0)["image"].shape == rgb.shape  # residual: per channel
    with pytest.raises(InputError, match="grayscale"):
        AlbuOverlay(model_dir, p=1.0, formulation="sum")(image=rgb, label=0)
    t = AlbuOverlay(model_dir, p=1.0)
    bad = {
        "NaN": np.full((8, 8), np.nan, np.float32),
        "must be in \\[0, 1\\]": np.full((8, 8), 3.0, np.float32),
        "dtype int32": np.zeros((8, 8), np.int32),
        "alpha": np.zeros((8, 8, 4), np.uint8),
        "empty": np.zeros((0, 8), np.uint8),
    }
    for message, image in bad.items():
        with pytest.raises(InputError, match=message):
            t(image=image, label=0)
    with pytest.raises(InputError, match="mode 'P'"):
        TVOverlay(model_dir, p=1.0)(PIL.Image.new("P", (8, 8)), 0)
    bt = BatchVAEOverlay(model_dir, p=1.0)
    with pytest.raises(InputError, match="4 dimensions"):
        bt(torch.rand(1, 28, 28), torch.tensor([0]))
    with pytest.raises(InputError, match="empty batch"):
        bt(torch.rand(0, 1, 28, 28), torch.zeros(0, dtype=torch.long))
    with pytest.raises(InputError, match="class indices"):
        bt(torch.rand(2, 1, 28, 28), torch.tensor([0, 7]))
    with pytest.raises(InputError, match="NaN"):
        bt(torch.full((2, 1, 28, 28), float("nan")), torch.tensor([0, 1]))


def test_onto_background_needs_a_defect_free_class(tmp_path: Path) -> None:
    folder = example_model_folder(tmp_path / "nobg", classes=("crazing", "scratches"))
    t = AlbuOverlay(folder, p=1.0, policy="onto-background")
    with pytest.raises(ConfigError, match="background_class"):
        t(image=_rng_image((28, 28), "uint8"), label=0)
    with pytest.raises(ConfigError, match="not one of the classes"):
        AlbuOverlay(folder, p=1.0, background_class="clean")(image=_rng_image((28, 28), "uint8"), label=0)


def test_model_without_latents_is_refused(tmp_path: Path) -> None:
    from augvae.model import ConvVAE

    ConvVAE(image_size=28, latent_dim=2).save(tmp_path / "bare")
    with pytest.raises(ConfigError, match="no stored latents"):
        AlbuOverlay(tmp_path / "bare", p=1.0)(image=_rng_image((28, 28), "uint8"), label=0)


class _Pairs(torch.utils.data.Dataset):
    def __init__(self, transforms: object) -> None:
        self.transforms = transforms

    def __len__(self) -> int:
        return 8

    def __getitem__(self, i: int) -> object:
        return self.transforms(torch.rand(1, 30, 30, generator=torch.Generator().manual_seed(i)), i % 4)


def test_transforms_pickle_and_run_in_dataloader_workers(model_dir: Path) -> None:
    import pickle

    albu = pickle.loads(pickle.dumps(AlbuOverlay(model_dir, p=1.0)))
    assert albu(image=_rng_image((30, 30), "uint8"), label=1)["label"] == 1
    tv = pickle.loads(pickle.dumps(TVOverlay(model_dir, p=1.0, policy="soft")))
    loader = torch.utils.data.DataLoader(_Pairs(tv), batch_size=4, num_workers=2)
    batches = list(loader)
    assert [tuple(x.shape) for x, _ in batches] == [(4, 1, 30, 30)] * 2
    assert all(tuple(y.shape) == (4, 4) for _, y in batches)
