from __future__ import annotations

import pytest
import torch

from augvae import ConvVAE, InputError, ModelConfig
from augvae.errors import ConfigError


@pytest.mark.parametrize("size", [28, 32, 64, 100, 200, 256])
@pytest.mark.parametrize("channels,latent", [(1, 2), (3, 16)])
def test_shapes_for_sizes_channels_latents(size: int, channels: int, latent: int) -> None:
    model = ConvVAE(ModelConfig(image_size=size, channels=channels, latent_dim=latent))
    x = torch.rand(2, channels, size, size)
    mu, logvar = model.encode(x)
    assert mu.shape == logvar.shape == (2, latent)
    out = model(x)
    assert out.recon.shape == x.shape
    assert float(out.recon.detach().min()) >= 0.0 and float(out.recon.detach().max()) <= 1.0
    assert model.decode(torch.zeros(3, latent)).shape == (3, channels, size, size)


def test_default_is_the_papers_keras_architecture() -> None:
    model = ConvVAE()
    convs = [m for m in model.encoder if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [32, 64]
    assert all(c.stride == (2, 2) for c in convs)
    assert model.fc_mu.in_features == 16 and model.fc_mu.out_features == 2
    assert isinstance(model.decoder[-1], torch.nn.ConvTranspose2d) and model.decoder[-1].out_channels == 1
    assert model.config.recon_loss == "bce" and model.config.image_size == 64


def test_loss_terms_and_kl_per_dim() -> None:
    model = ConvVAE(image_size=28, latent_dim=3)
    x = torch.rand(4, 1, 28, 28)
    terms = model.loss(x, model(x))
    assert terms.kl_per_dim.shape == (3,)
    assert torch.isclose(terms.kl, terms.kl_per_dim.sum())
    assert torch.isclose(terms.loss, terms.recon + terms.kl)
    mse = ConvVAE(ModelConfig(image_size=28, recon_loss="mse", beta=0.5))
    t2 = mse.loss(x, mse(x))
    assert torch.isclose(t2.loss, t2.recon + 0.5 * t2.kl)


@pytest.mark.parametrize(
    "kwargs",
    [{"image_size": 20}, {"image_size": 300}, {"channels": 2}, {"latent_dim": 0}, {"recon_loss": "l1"},
     {"beta": -1.0}, {"widths": (8,)}, {"latent_dim": "2"}, {"image_size": 28, "widths": (8, 16, 32)}],
)
def test_bad_model_config_is_refused(kwargs: dict) -> None:
    with pytest.raises(ConfigError):
        ModelConfig(**kwargs)


@pytest.mark.parametrize(
    "x,match",
    [(torch.rand(1, 28, 28), "4 dimensions"), (torch.rand(0, 1, 28, 28), "empty batch"), (torch.rand(2, 3, 28, 28), "channels"),
     (torch.rand(2, 1, 32, 32), "28x28"), (torch.zeros(2, 1, 28, 28, dtype=torch.uint8), "dtype"),
     (torch.full((1, 1, 28, 28), float("nan")), "NaN")],
)
def test_bad_batches_get_clear_errors(x: torch.Tensor, match: str) -> None:
    with pytest.raises(InputError, match=match):
        ConvVAE(image_size=28).encode_batched(x)


def test_decode_checks_latent_shape() -> None:
    with pytest.raises(InputError, match=r"\(B, 2\)"):
        ConvVAE(image_size=28).decode(torch.zeros(1, 3))


def test_save_pretrained_and_from_pretrained_round_trip(tmp_path) -> None:
    from augvae.errors import ModelFolderError

    model = ConvVAE(ModelConfig(image_size=28, latent_dim=3))
    model.save_pretrained(tmp_path / "m")
    names = sorted(p.name for p in (tmp_path / "m").iterdir())
    assert {"config.json", "model.safetensors"} <= set(names) and not [n for n in names if n.endswith((".bin", ".pt", ".pkl"))]
    again = ConvVAE.from_pretrained(tmp_path / "m")
    z = torch.randn(2, 3)
    assert torch.equal(again.decode(z), model.decode(z)) and again.config == model.config
    assert torch.equal(ConvVAE.load(tmp_path / "m").decode(z), model.decode(z))  # the old names stay as aliases
    model.save(tmp_path / "old")
    assert ConvVAE.from_pretrained(str(tmp_path / "old")).config == model.config
    with pytest.raises(ModelFolderError, match="does not exist"):
        ConvVAE.from_pretrained(tmp_path / "nope")
    with pytest.raises(TypeError, match="architecture comes from config.json"):
        ConvVAE.from_pretrained(tmp_path / "m", latent_dim=5)


def test_from_pretrained_of_a_hub_id_without_network_is_one_clear_error(monkeypatch) -> None:
    from augvae.errors import ModelFolderError

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelFolderError, match="neither a local model folder nor a downloadable Hub repository"):
        ConvVAE.from_pretrained("someone/augvae-model-that-is-not-here", local_files_only=True)
