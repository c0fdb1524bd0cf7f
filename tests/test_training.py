from __future__ import annotations

from pathlib import Path

import pytest
import torch

from augvae import ConvVAE, ModelConfig, recipe_config, train
from augvae.errors import ConfigError, DataError, OutputLockedError
from augvae.training import OverlayBatchSampler


def _blobs(n: int = 4, size: int = 28) -> torch.Tensor:
    """n distinct images: a bright square at a different place on a dark field."""
    x = torch.full((n, 1, size, size), 0.1)
    for i in range(n):
        r = 3 + 5 * i % (size - 8)
        x[i, :, r : r + 6, 4 + 4 * i : 10 + 4 * i] = 0.9
    return x


def test_tiny_model_overfits_a_few_images() -> None:
    x = _blobs()
    res = train(x, ModelConfig(image_size=28, latent_dim=4), recipe_config("overlay", epochs=6, copies=40, batch_size=8, optimizer="adam"), progress=False)
    first, last = res.history[0]["recon"], res.history[-1]["recon"]
    assert last < 0.8 * first
    recon = res.model.decode(res.mu).detach()
    before = ((ConvVAE(ModelConfig(image_size=28, latent_dim=4)).decode(res.mu).detach() - x) ** 2).mean()
    after = ((recon - x) ** 2).mean()
    assert after < 0.25 * before
    assert res.active_units >= 1


def test_same_seed_same_weights_different_seed_different() -> None:
    x = _blobs()
    cfg = recipe_config("small-set", epochs=2, batch_size=2, seed=7)
    a = train(x, ModelConfig(image_size=28), cfg, progress=False).model.state_dict()
    b = train(x, ModelConfig(image_size=28), cfg, progress=False).model.state_dict()
    c = train(x, ModelConfig(image_size=28), recipe_config("small-set", epochs=2, batch_size=2, seed=8), progress=False).model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_overlay_sampler_puts_every_source_in_every_batch() -> None:
    sampler = OverlayBatchSampler(n_sources=3, copies=500, batch_size=10, generator=torch.Generator().manual_seed(0))
    batches = list(sampler)
    assert len(batches) == 150
    assert all(set(b) == {0, 1, 2} for b in batches)
    counts = torch.bincount(torch.tensor([i for b in batches for i in b]))
    assert counts.tolist() == [500, 500, 500]
    with pytest.raises(ConfigError, match="batch_size"):
        OverlayBatchSampler(n_sources=12, copies=5, batch_size=10, generator=torch.Generator())


def test_recipes_match_the_paper_and_override() -> None:
    small, ov = recipe_config("small-set"), recipe_config("overlay")
    assert (small.epochs, small.batch_size, small.lr, small.optimizer) == (100, 10, 2e-3, "rmsprop")
    assert (ov.epochs, ov.copies, ov.batch_size) == (20, 500, 10)
    assert recipe_config("overlay", copies=50, lr=1e-3).copies == 50
    with pytest.raises(ConfigError, match="unknown recipe"):
        recipe_config("big-set")


def test_model_folder_written_and_loadable(tmp_path: Path) -> None:
    out = tmp_path / "m"
    res = train(_blobs(), ModelConfig(image_size=28, latent_dim=3), recipe_config("small-set", epochs=2, batch_size=2), out_dir=out, progress=False)
    for name in ("config.json", "model.safetensors", "latents.safetensors", "checkpoint.safetensors", "history.csv", "loss.png"):
        assert (out / name).is_file(), name
    loaded = ConvVAE.load(out)
    z = torch.randn(5, 3)
    assert torch.equal(loaded.decode(z), res.model.decode(z))
    assert not list(out.glob("*.tmp")) and not list(out.glob(".*.tmp"))


def test_refuses_to_overwrite_a_model_without_resume(tmp_path: Path) -> None:
    cfg = recipe_config("small-set", epochs=1, batch_size=2)
    train(_blobs(), ModelConfig(image_size=28), cfg, out_dir=tmp_path, progress=False)
    with pytest.raises(ConfigError, match="--resume"):
        train(_blobs(), ModelConfig(image_size=28), cfg, out_dir=tmp_path, progress=False)


def test_resume_gives_the_same_weights_as_an_uninterrupted_run(tmp_path: Path) -> None:
    x = _blobs()
    cfg = recipe_config("small-set", epochs=4, batch_size=2, seed=3)
    full = train(x, ModelConfig(image_size=28), cfg, out_dir=tmp_path / "full", progress=False)
    train(x, ModelConfig(image_size=28), cfg, out_dir=tmp_path / "cut", progress=False, stop_after_epoch=2)
    resumed = train(x, ModelConfig(image_size=28), cfg, out_dir=tmp_path / "cut", progress=False, resume=True)
    a, b = full.model.state_dict(), resumed.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert [r["epoch"] for r in resumed.history] == [1, 2, 3, 4]


def test_resume_with_a_different_config_is_refused(tmp_path: Path) -> None:
    x = _blobs()
    train(x, ModelConfig(image_size=28), recipe_config("small-set", epochs=3, batch_size=2), out_dir=tmp_path, progress=False, stop_after_epoch=1)
    with pytest.raises(ConfigError, match="cannot resume"):
        train(x, ModelConfig(image_size=28, latent_dim=5), recipe_config("small-set", epochs=3, batch_size=2), out_dir=tmp_path, progress=False, resume=True)
    more = torch.cat([x, _blobs(2)])  # other images: the folder would describe a model trained on neither set
    with pytest.raises(ConfigError, match="cannot resume .* trained on other data \\(names, labels"):
        train(more, ModelConfig(image_size=28), recipe_config("small-set", epochs=3, batch_size=2), out_dir=tmp_path, progress=False,
              resume=True)


def test_too_few_images_and_bad_data() -> None:
    with pytest.raises(DataError, match="at least 2"):
        train(_blobs(1), ModelConfig(image_size=28), recipe_config("overlay", epochs=1), progress=False)
    with pytest.raises(DataError, match="at least 2"):
        train(_blobs(1), ModelConfig(image_size=28), recipe_config("small-set", epochs=1), progress=False)
    with pytest.raises(DataError):
        train("not images", ModelConfig(image_size=28), progress=False)  # type: ignore[arg-type]


def test_collapse_is_detected_and_warned() -> None:
    # Identical images carry no information: every latent unit collapses.
    x = torch.full((4, 1, 28, 28), 0.5)
    res = train(x, ModelConfig(image_size=28, latent_dim=3), recipe_config("small-set", epochs=3, batch_size=2), progress=False)
    assert res.active_units == 0
    collapse = [w for w in res.warnings if "posterior collapse" in w]
    assert collapse and "--beta" in collapse[0] and "--activation leaky_relu" in collapse[0]


def test_two_runs_on_one_folder_get_a_clear_error(tmp_path: Path) -> None:
    from augvae._io import output_lock

    with output_lock(tmp_path):
        with pytest.raises(OutputLockedError, match="in use"):
            train(_blobs(), ModelConfig(image_size=28), recipe_config("small-set", epochs=1, batch_size=2), out_dir=tmp_path, progress=False)


def test_resume_after_a_kill_between_the_last_checkpoint_and_its_weights(tmp_path: Path) -> None:
    """The checkpoint of the last epoch landed, its weights file did not: resuming must still end right."""
    import shutil

    x = _blobs()
    cfg = recipe_config("small-set", epochs=3, batch_size=2, seed=4)
    train(x, ModelConfig(image_size=28), cfg, out_dir=tmp_path / "a", progress=False, stop_after_epoch=2)
    stale_weights = (tmp_path / "a" / "model.safetensors").read_bytes()
    full = train(x, ModelConfig(image_size=28), cfg, out_dir=tmp_path / "b", progress=False)
    shutil.copy(tmp_path / "b" / "checkpoint.safetensors", tmp_path / "a" / "checkpoint.safetensors")
    (tmp_path / "a" / "model.safetensors").write_bytes(stale_weights)  # epoch 2 weights, epoch 3 checkpoint
    (tmp_path / "a" / ".model.safetensors.x1.tmp").write_bytes(b"half")  # what a kill mid-write leaves
    train(x, ModelConfig(image_size=28), cfg, out_dir=tmp_path / "a", progress=False, resume=True)
    a, b = ConvVAE.load(tmp_path / "a").state_dict(), full.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not list((tmp_path / "a").glob(".*.tmp"))


def test_a_loss_that_explodes_while_finite_stops_the_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A finite loss stops the run as diverged when it is absurd for the image size two epochs in a row (a 128-px VAE's
    epochs had a loss of 4.5e33) or when it grows 10,000-fold over an earlier epoch's; an absurd first epoch that the
    run recovers from is not divergence (ELPV's benchmark VAE: 1e9, then 2.5e4)."""
    from augvae.model import LossTerms

    real = ConvVAE.loss

    def forced(levels: list[float]):  # the loss of each batch in turn: 4 images in batches of 2, so 2 batches an epoch
        calls: list[int] = []

        def loss(self: ConvVAE, x: torch.Tensor, out: object, beta: float | None = None) -> LossTerms:
            terms = real(self, x, out, beta)  # type: ignore[arg-type]
            level = levels[min(len(calls) // 2, len(levels) - 1)]
            calls.append(1)
            return LossTerms(terms.loss * 0 + level, terms.recon, terms.kl, terms.kl_per_dim)
        return loss

    cfg = recipe_config("small-set", epochs=3, batch_size=2, checkpoint_every=1)
    # 28 x 28 pixels and 2 latent units: 10,000 per value is 7.86e6.
    monkeypatch.setattr(ConvVAE, "loss", forced([100.0, 2e6]))
    with pytest.raises(DataError, match=r"diverged at epoch 2 \(loss grew from 1e\+02 to 2e\+06\).*checkpoint of epoch 1.*lower --lr"):
        train(_blobs(), ModelConfig(image_size=28, latent_dim=2), cfg, out_dir=tmp_path / "m", progress=False)
    monkeypatch.setattr(ConvVAE, "loss", forced([1e12]))
    with pytest.raises(DataError, match=r"diverged at epoch 2 \(loss is 1e\+12 for a second epoch in a row, more than 10,000 per "
                                        r"pixel and latent unit\); .*checkpoint of epoch 1: delete .* and retry with a lower --lr"):
        train(_blobs(), ModelConfig(image_size=28, latent_dim=2), cfg, out_dir=tmp_path / "n", progress=False)
    monkeypatch.setattr(ConvVAE, "loss", forced([1e12, 300.0, 100.0]))  # a first-epoch spike, then learning
    assert len(train(_blobs(), ModelConfig(image_size=28, latent_dim=2), cfg, progress=False).history) == 3
    monkeypatch.setattr(ConvVAE, "loss", forced([1e12]))  # no later epoch can show it was a spike
    with pytest.raises(DataError, match=r"diverged at epoch 1 \(loss is 1e\+12 in the last epoch"):
        train(_blobs(), ModelConfig(image_size=28, latent_dim=2), recipe_config("small-set", epochs=1, batch_size=2), progress=False)
    monkeypatch.setattr(ConvVAE, "loss", forced([100.0, 5e5, 9e5]))  # 5,000- and 9,000-fold: below both limits
    assert len(train(_blobs(), ModelConfig(image_size=28, latent_dim=2), cfg, progress=False).history) == 3
    monkeypatch.setattr(ConvVAE, "loss", real)
    assert len(train(_blobs(), ModelConfig(image_size=28), cfg, progress=False).history) == 3  # a real run is not stopped
