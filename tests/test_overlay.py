"""Overlays and latent tools on sources whose defect pixels are known."""

from __future__ import annotations

import pytest
import torch

from augvae import ModelConfig, recipe_config, train
from augvae.errors import ConfigError
from augvae.latent import encode, grid_latents, interpolate, pca_plane, traverse_grid
from augvae.metrics import defect_retention, evaluate_formulations
from augvae.overlay import DEFAULT_FORMULATION, combine_latents, overlay, random_overlays

S = 28


def _sources() -> tuple[torch.Tensor, torch.Tensor]:
    """A plain surface and the same surface with a dark square top-left, and one bottom-right."""
    bg = torch.full((1, S, S), 0.7)
    a, b = bg.clone(), bg.clone()
    ma = torch.zeros(S, S, dtype=torch.bool)
    mb = ma.clone()
    ma[3:11, 3:11] = True
    mb[16:25, 15:24] = True
    a[:, ma], b[:, mb] = 0.1, 0.1
    return torch.stack([a, b, bg]), torch.stack([ma, mb, torch.zeros_like(ma)])


@pytest.fixture(scope="module")
def trained() -> tuple:
    x, masks = _sources()
    res = train(x, ModelConfig(image_size=S, latent_dim=4, activation="leaky_relu"),
                recipe_config("overlay", copies=60, epochs=6, optimizer="adam", kl_warmup_epochs=2, seed=0),
                progress=False, background=2)
    return res, x, masks


def test_sources_become_separate_clusters(trained: tuple) -> None:
    res, x, _ = trained
    assert res.active_units >= 1
    d = torch.cdist(res.mu, res.mu)
    assert float(d[0, 1]) > 0.5 and float(d[0, 2]) > 0.5 and float(d[1, 2]) > 0.5
    recon = res.model.decode(res.mu).detach()
    assert float(((recon - x) ** 2).mean()) < 0.01


def test_default_overlay_carries_both_defects_and_differs_from_each(trained: tuple) -> None:
    res, x, masks = trained
    out = overlay(res.model, res.mu[None, :2], DEFAULT_FORMULATION, z_background=res.mu[2]).detach()[0]
    assert defect_retention(out, x[0], x[2], masks[0]) > 0.9
    assert defect_retention(out, x[1], x[2], masks[1]) > 0.9
    assert float(((out - x[0]) ** 2).mean()) > 0.01 and float(((out - x[1]) ** 2).mean()) > 0.01
    # outside both squares the surface stays
    keep = ~(masks[0] | masks[1])
    assert float((out - x[2]).abs()[0][keep].mean()) < 0.05


def test_evaluate_formulations_reports_every_formulation(trained: tuple) -> None:
    res, x, masks = trained
    rows = evaluate_formulations(res.model, x, masks, background=2)
    assert {r["formulation"] for r in rows} == {"sum", "mean", "offset", "residual"}
    best = max(rows, key=lambda r: r["retention_min"])
    assert best["retention_min"] > 0.9


def test_paper_sum_and_offset_are_latent_arithmetic() -> None:
    z = torch.tensor([[[1.0, 2.0], [3.0, -1.0]]])
    assert combine_latents(z, "sum").tolist() == [[4.0, 1.0]]
    assert combine_latents(z, "mean").tolist() == [[2.0, 0.5]]
    assert combine_latents(z, "offset", z_background=torch.tensor([1.0, 1.0])).tolist() == [[3.0, 0.0]]
    assert combine_latents(z, "sum", weights=[0.5, 1.0]).tolist() == [[3.5, 0.0]]
    with pytest.raises(ConfigError, match="background"):
        combine_latents(z, "offset")


def test_random_overlays_records_and_seeds(trained: tuple) -> None:
    res, _, _ = trained
    names, classes = ["a", "b", "bg"], ["crack", "pore", "clean"]
    imgs, recs = random_overlays(res.model, res.mu, res.logvar, names, classes, n=6, k=2, background=2,
                                 generator=torch.Generator().manual_seed(1))
    again, recs2 = random_overlays(res.model, res.mu, res.logvar, names, classes, n=6, k=2, background=2,
                                   generator=torch.Generator().manual_seed(1))
    assert torch.equal(imgs, again) and [r.sources for r in recs] == [r.sources for r in recs2]
    assert all(sorted(r.sources) == ["a", "b"] and "bg" not in r.sources for r in recs)
    assert all(set(r.classes) == {"crack", "pore"} and r.background == "bg" for r in recs)
    varied, _ = random_overlays(res.model, res.mu, res.logvar, names, classes, n=6, k=2, background=2, scale=1.0,
                                generator=torch.Generator().manual_seed(1))
    assert not torch.equal(varied, imgs)
    with pytest.raises(ConfigError, match="distinct sources"):
        random_overlays(res.model, res.mu, res.logvar, names, classes, n=2, k=3, background=2)


def test_grid_traversal_defaults_and_thinning(trained: tuple) -> None:
    res, _, _ = trained
    z, xs, ys, step, n = grid_latents(4)
    assert n == 301 * 201  # the paper's [-15, 15] x [-10, 10] at step 0.1
    assert len(xs) <= 31 and len(ys) <= 31 and xs[0] == -15.0 and abs(xs[-1] - 15.0) < 1e-6 and ys[0] > ys[-1]
    assert z.shape == (len(xs) * len(ys), 4) and bool((z[:, 2:] == 0).all())
    g = traverse_grid(res.model, (-1, 1), (-1, 1), step=0.5, plane="pca", data_mu=res.mu)
    assert g.images.shape == (25, 1, S, S) and g.requested_cells == 25
    centre, axes = pca_plane(res.mu)
    assert torch.allclose(axes @ axes.T, torch.eye(2), atol=1e-5)


def test_interpolation_ends_at_the_reconstructions(trained: tuple) -> None:
    res, x, _ = trained
    path = interpolate(res.model, x[0], x[1], steps=5)
    with torch.no_grad():
        ends = res.model.decode(res.mu[:2])
    assert path.shape == (5, 1, S, S)
    assert torch.allclose(path[0], ends[0], atol=1e-5) and torch.allclose(path[-1], ends[1], atol=1e-5)
    lat = encode(res.model, x)
    assert lat.mu.shape == (3, 4) and len(lat.rows()) == 3


@pytest.mark.parametrize("formulation", ["sum", "mean", "offset"])
def test_transform_latent_formulations_count_the_input_as_one_more_source(formulation: str) -> None:
    """The transforms' latent path (``policy.render``) adds the input's latent as a source of weight 1."""
    from augvae.overlay.engine import render
    from augvae.overlay.policy import OverlayOptions, draw_torch, make_plan
    from augvae.overlay.sources import load_sources
    from augvae.testing import example_model_folder

    src = load_sources(example_model_folder())
    opts = OverlayOptions(formulation=formulation, k=2, scale=0.0, weight=(0.3, 1.0))
    x = torch.rand(4, src.channels, src.image_size, src.image_size)
    draws = draw_torch(src, opts, 4, generator=torch.Generator().manual_seed(0))
    plan = make_plan(src, torch.tensor([0, 1, 0, 1]), opts, draws)
    out = render(src, x, plan, opts, draws)

    with torch.no_grad():
        z_x = src.model.encode(x)[0]
        z, w = src.mu[plan.index], plan.weight[..., None]  # (B, slots, D), (B, slots, 1)
        if formulation == "sum":
            combined = z_x + (w * z).sum(1)
        elif formulation == "mean":
            combined = (z_x + (w * z).sum(1)) / (1 + w.sum(1))
        else:
            combined = z_x + (w * (z - src.z_ref)).sum(1)
        expected = src.model.decode(combined).clamp(0, 1)
    assert bool(plan.valid.all())
    assert torch.allclose(out, expected, atol=1e-5)
    assert combine_latents(torch.ones(2, 3, 4), "mean", weights=torch.tensor([[1.0, 1.0, 2.0], [0.0, 0.0, 0.0]]))[1].abs().sum() == 0
    with pytest.raises(ConfigError, match="per-row weights"):
        combine_latents(torch.ones(2, 3, 4), weights=torch.ones(3, 3))
