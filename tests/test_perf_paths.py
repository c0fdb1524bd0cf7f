"""The fast paths added for speed (``benchmarks/perf.py``) give the straightforward path's outputs.

No timings here: the benchmark measures the speed, these tests pin the results. Where a fast path
changes the order of float operations (channels-last kernels) the outputs match to float rounding;
where it only skips work that adds exactly zero (in-place activations, unused overlay slots), they
match bitwise or to the last bit of a sum.
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from augvae import ConvVAE, ModelConfig, recipe_config, train
from augvae.model import _channels_last
from augvae.overlay import overlay

TIGHT = {"rtol": 1e-5, "atol": 1e-6}


def _straightforward(model: ConvVAE) -> ConvVAE:
    """A copy of ``model`` on the plain path: NCHW, one decoder pass, out-of-place activations."""
    plain = copy.deepcopy(model)
    plain.cpu_channels_last = False
    plain.cpu_slice_bytes = 0
    for m in plain.modules():
        if isinstance(m, (nn.ReLU, nn.LeakyReLU)):
            m.inplace = False
    return plain


def test_one_channel_images_get_channels_last_strides_without_a_copy() -> None:
    x = torch.rand(3, 1, 28, 28)
    y = _channels_last(x)
    assert y.is_contiguous(memory_format=torch.channels_last) and y.stride() == (28 * 28, 1, 28, 1)
    assert y.data_ptr() == x.data_ptr() and torch.equal(y, x)
    x3 = torch.rand(2, 3, 8, 8)
    assert _channels_last(x3).is_contiguous(memory_format=torch.channels_last) and torch.equal(_channels_last(x3), x3)


@pytest.mark.parametrize("size,channels,batch", [(28, 1, 1), (64, 1, 5), (100, 3, 3)])
def test_encode_decode_and_gradients_match_the_nchw_path(size: int, channels: int, batch: int) -> None:
    torch.manual_seed(0)
    model = ConvVAE(ModelConfig(image_size=size, channels=channels, latent_dim=3))
    plain = _straightforward(model)
    x = torch.rand(batch, channels, size, size)
    with torch.no_grad():
        for a, b in zip(model.encode(x), plain.encode(x)):
            torch.testing.assert_close(a, b, **TIGHT)
        z = torch.randn(batch, 3)
        out = model.decode(z)
        torch.testing.assert_close(out, plain.decode(z), **TIGHT)
        assert out.is_contiguous()
    gen_a, gen_b = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    model.loss(x, model(x, generator=gen_a)).loss.backward()
    plain.loss(x, plain(x, generator=gen_b)).loss.backward()
    for (name, p), q in zip(model.named_parameters(), plain.parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-4, atol=1e-5, msg=name)


@pytest.mark.parametrize("size", [64, 128])
def test_sliced_encoding_and_decoding_match_one_pass(size: int) -> None:
    torch.manual_seed(0)
    model = ConvVAE(ModelConfig(image_size=size))
    z = torch.randn(100, 2)  # 16 rows per decoder slice at 64 px, 4 at 128: the last slice is short
    x = torch.rand(100, 1, size, size)
    with torch.no_grad():
        assert 0 < model._slice_rows(model._decode_elems, z) < 100 and 0 < model._slice_rows(model._encode_elems, x) < 100
        sliced, (mu, logvar) = model.decode(z), model.encode(x)
        model.cpu_slice_bytes = 0
        one, (mu1, logvar1) = model.decode(z), model.encode(x)
    torch.testing.assert_close(sliced, one, **TIGHT)
    torch.testing.assert_close(mu, mu1, **TIGHT)
    torch.testing.assert_close(logvar, logvar1, **TIGHT)
    model.cpu_slice_bytes = 8 << 20
    with_grad = model.decode(z)  # gradients on: one pass, as before
    assert with_grad.requires_grad
    torch.testing.assert_close(with_grad.detach(), one, **TIGHT)
    torch.testing.assert_close(model.decode_batched(z, batch_size=30), one, **TIGHT)


@pytest.mark.parametrize("activation", ["relu", "leaky_relu"])
def test_in_place_activations_train_to_bitwise_the_same_weights(activation: str) -> None:
    torch.manual_seed(0)
    model = ConvVAE(ModelConfig(image_size=28, activation=activation))
    assert all(m.inplace for m in model.modules() if isinstance(m, (nn.ReLU, nn.LeakyReLU)))
    plain = copy.deepcopy(model)
    for m in plain.modules():
        if isinstance(m, (nn.ReLU, nn.LeakyReLU)):
            m.inplace = False
    x = torch.rand(6, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    for net in (model, plain):
        opt = torch.optim.RMSprop(net.parameters(), lr=2e-3, alpha=0.9, eps=1e-7)
        gen = torch.Generator().manual_seed(2)
        for _ in range(4):
            loss = net.loss(x, net(x, generator=gen)).loss
            opt.zero_grad()
            loss.backward()
            opt.step()
    a, b = model.state_dict(), plain.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_training_matches_the_nchw_path(monkeypatch: pytest.MonkeyPatch) -> None:
    x = torch.rand(8, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    cfg = recipe_config("small-set", epochs=2, batch_size=4, device="cpu")
    mcfg = ModelConfig(image_size=28, activation="leaky_relu")
    fast = train(x, mcfg, cfg, progress=False)
    monkeypatch.setattr(ConvVAE, "cpu_channels_last", False)
    plain = train(x, mcfg, cfg, progress=False)
    a, b = fast.model.state_dict(), plain.model.state_dict()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-4, msg=k)
    torch.testing.assert_close(fast.mu, plain.mu, rtol=0, atol=1e-4)
    assert fast.history[-1]["loss"] == pytest.approx(plain.history[-1]["loss"], rel=1e-5)
    assert all(v.is_contiguous() for v in a.values())  # saved weights keep the usual layout


def test_residual_overlay_decodes_a_shared_background_once_with_the_same_result() -> None:
    torch.manual_seed(0)
    model = ConvVAE(ModelConfig(image_size=28, latent_dim=3)).eval()
    z, zb = torch.randn(7, 2, 3), torch.randn(3)
    with torch.no_grad():
        once = overlay(model, z, "residual", z_background=zb)
        per_row = overlay(model, z, "residual", z_background=zb.expand(7, 3).clone())  # the B-row path
        one_row = overlay(model, z, "residual", z_background=zb[None])
        # the formula, written out with the straightforward model
        plain = _straightforward(model)
        x_src = plain.decode(z.reshape(14, 3)).view(7, 2, 1, 28, 28)
        x_bg = plain.decode(zb[None])
        by_hand = (x_bg + (x_src - x_bg[:, None]).sum(1)).clamp(0, 1)
    torch.testing.assert_close(once, per_row, **TIGHT)
    assert torch.equal(once, one_row)
    torch.testing.assert_close(once, by_hand, **TIGHT)


def _reference_render(src, images, plan, opts, draws):  # type: ignore[no-untyped-def]
    """``augvae.overlay.engine.render``'s residual branch as first written: every slot of every image decoded."""
    from augvae._imageops import resize as _resize

    b, ch, h, w_ = images.shape
    s = opts.slots
    z = src.mu[plan.index]
    if opts.scale > 0:
        z = z + opts.scale * torch.exp(0.5 * src.logvar[plan.index]) * draws.noise.to(z.dtype)
    w = plan.weight
    with torch.no_grad():
        dec = src.model.decode(z.reshape(b * s, -1)).view(b, s, src.channels, src.image_size, src.image_size)
    residual = (w[:, :, None, None, None] * (dec - src.x_ref[None])).sum(1)
    if src.center_residual:
        residual = residual - residual.mean((-2, -1), keepdim=True)
    if opts.keep_input:
        out = images + _resize(residual, h, w_)
    else:
        out = _resize(src.x_ref + residual, h, w_).expand(b, ch, h, w_)
    out = out.clamp(0.0, 1.0).to(images.dtype)
    return torch.where(plan.valid[:, None, None, None], out, images)


@pytest.mark.parametrize("policy", ["same-class", "onto-background", "soft"])
@pytest.mark.parametrize("k,keep_input,p", [(1, True, 0.5), (2, True, 1.0), (2, False, 0.7)])
def test_batch_overlay_decodes_only_weighted_slots_with_the_same_result(policy: str, k: int, keep_input: bool, p: float) -> None:
    from augvae.overlay.engine import render
    from augvae.overlay.policy import OverlayOptions, draw_torch, make_plan
    from augvae.overlay.sources import load_sources
    from augvae.testing import example_model_folder

    src = load_sources(example_model_folder())
    opts = OverlayOptions(policy=policy, k=k, keep_input=keep_input, weight=(0.5, 1.5))
    images = torch.rand(24, 1, 40, 36, generator=torch.Generator().manual_seed(0))
    labels = torch.arange(24) % src.num_classes
    draws = draw_torch(src, opts, 24, generator=torch.Generator().manual_seed(1))
    plan = make_plan(src, labels, opts, draws)
    plan.valid = plan.valid & (draws.apply < p)
    fast = render(src, images, plan, opts, draws)
    torch.testing.assert_close(fast, _reference_render(src, images, plan, opts, draws), **TIGHT)
    assert torch.equal(fast[~plan.valid], images[~plan.valid])


def test_training_reads_latents_and_dead_units_from_one_encoder_pass() -> None:
    from augvae.training import _dead_hidden_units, _encode_all

    torch.manual_seed(0)
    model = ConvVAE(ModelConfig(image_size=28)).eval()
    images = torch.rand(300, 1, 28, 28)  # two batches of the final pass
    mu, logvar, hidden = _encode_all(model, images, torch.device("cpu"))
    ref_mu, ref_logvar = model.encode_batched(images)
    assert torch.equal(mu, ref_mu) and torch.equal(logvar, ref_logvar)
    with torch.no_grad():
        probe = _straightforward(model).encoder(images[:256])  # what the check used to run
    assert hidden.shape == probe.shape == (256, 16)
    assert _dead_hidden_units(model, hidden) == int(((probe > 0).sum(0) == 0).sum())


def test_learning_rate_schedules() -> None:
    from augvae.training import epoch_lr

    const = recipe_config("overlay", epochs=20)
    assert all(epoch_lr(const, e) == const.lr for e in range(1, 21))  # the paper's: unchanged
    cos = recipe_config("overlay", epochs=4, lr_schedule="cosine")
    lrs = [epoch_lr(cos, e) for e in range(1, 5)]
    assert lrs[0] == cos.lr and lrs[-1] == pytest.approx(cos.lr / 20) and lrs == sorted(lrs, reverse=True)
    assert epoch_lr(recipe_config("overlay", epochs=1, lr_schedule="cosine"), 1) == cos.lr
    from augvae.errors import ConfigError

    with pytest.raises(ConfigError, match="lr_schedule"):
        recipe_config("overlay", lr_schedule="linear")


def test_cosine_schedule_is_applied_and_resumes_exactly(tmp_path) -> None:  # type: ignore[no-untyped-def]
    x = torch.rand(4, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    mcfg = ModelConfig(image_size=28, activation="leaky_relu")
    cos = recipe_config("small-set", epochs=3, batch_size=2, lr_schedule="cosine", device="cpu")
    full = train(x, mcfg, cos, out_dir=tmp_path / "full", progress=False).model.state_dict()
    train(x, mcfg, cos, out_dir=tmp_path / "cut", progress=False, stop_after_epoch=1)
    resumed = train(x, mcfg, cos, out_dir=tmp_path / "cut", progress=False, resume=True).model.state_dict()
    assert all(torch.equal(full[k], resumed[k]) for k in full)
    const = train(x, mcfg, recipe_config("small-set", epochs=3, batch_size=2, device="cpu"), progress=False).model.state_dict()
    assert not all(torch.equal(full[k], const[k]) for k in full)
