"""Which overlay formulation keeps both defects? Measured on procedural data with known defect pixels.

For each model setting and seed: train the paper's ``overlay`` recipe on two cracks, a pore and the
defect-free surface they share (``augvae.data.synthetic.make_overlay_sources``), then overlay every
pair of defects and all three with each formulation (``sum``, the paper's; ``mean``; ``offset``;
``residual``) and measure the share of each source's defect pixels present in the overlay
(``retention``) and the error to the real surface outside the defects (``background_mae``).

    python benchmarks/overlay_formulations.py --out benchmarks/results/overlay_formulations.json
    python benchmarks/overlay_formulations.py --quick --out /tmp/f.json     # about a minute
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import command_line, environment  # noqa: E402

from augvae._io import write_json  # noqa: E402
from augvae.config import ModelConfig, config_to_dict, recipe_config  # noqa: E402
from augvae.data.synthetic import make_overlay_sources  # noqa: E402
from augvae.metrics import cluster_separation, evaluate_formulations  # noqa: E402
from augvae.training import train  # noqa: E402

NAMES = ["crack1", "crack2", "pore", "background"]
#: (label, model overrides, train overrides)
SETTINGS = {
    "paper": ({"activation": "relu"}, {"kl_warmup_epochs": 0}),
    "leaky+warmup": ({"activation": "leaky_relu"}, {"kl_warmup_epochs": 2}),
}


def run_one(setting: str, latent: int, seed: int, size: int, copies: int, epochs: int) -> dict:
    model_over, train_over = SETTINGS[setting]
    src = make_overlay_sources(size=size, seed=seed)
    x = torch.stack([torch.from_numpy(src[n].image)[None] for n in NAMES])
    masks = torch.stack([torch.from_numpy(src[n].mask) for n in NAMES])
    mcfg = ModelConfig(image_size=size, latent_dim=latent, **model_over)
    tcfg = recipe_config("overlay", copies=copies, epochs=epochs, seed=seed, **train_over)
    t0 = time.perf_counter()
    res = train(x, mcfg, tcfg, progress=False, background=3)
    seconds = time.perf_counter() - t0
    rows = evaluate_formulations(res.model, x, masks, background=3)
    with torch.no_grad():
        recon_mse = ((res.model.decode(res.mu) - x) ** 2).flatten(1).mean(1).tolist()
    for r in rows:
        r["combo"] = "+".join(NAMES[int(i)] for i in str(r["combo"]).split("+"))
    return {
        "setting": setting, "latent_dim": latent, "seed": seed, "train_seconds": seconds,
        "model_config": config_to_dict(mcfg), "train_config": config_to_dict(tcfg),
        "active_units": res.active_units, "separation": cluster_separation(res.mu, res.logvar),
        "recon_mse_per_source": dict(zip(NAMES, recon_mse)), "rows": rows,
    }


def summarize(runs: list[dict]) -> list[dict]:
    """Per (setting, latent, formulation): mean over seeds of pair / triple retention (worst source)."""
    out = []
    keys = sorted({(r["setting"], r["latent_dim"]) for r in runs})
    for setting, latent in keys:
        sel = [r for r in runs if r["setting"] == setting and r["latent_dim"] == latent]
        for form in ("sum", "mean", "offset", "residual"):
            pairs = [row["retention_min"] for r in sel for row in r["rows"] if row["formulation"] == form and row["combo"].count("+") == 1]
            triples = [row["retention_min"] for r in sel for row in r["rows"] if row["formulation"] == form and row["combo"].count("+") == 2]
            bg = [row["background_mae"] for r in sel for row in r["rows"] if row["formulation"] == form]
            out.append({
                "setting": setting, "latent_dim": latent, "formulation": form, "seeds": len(sel),
                "pair_retention_worst_source": round(sum(pairs) / len(pairs), 3),
                "triple_retention_worst_source": round(sum(triples) / len(triples), 3) if triples else None,
                "background_mae": round(sum(bg) / len(bg), 4),
                "collapsed_runs": sum(r["active_units"] == 0 for r in sel),
            })
    return out


def markdown(summary: list[dict]) -> str:
    cols = ["setting", "latent_dim", "formulation", "pair_retention_worst_source", "triple_retention_worst_source", "background_mae", "collapsed_runs", "seeds"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(str(s[c]) for c in cols) + " |" for s in summary]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--quick", action="store_true", help="32 px, 50 copies, 3 epochs, one seed")
    p.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    p.add_argument("--latents", type=int, nargs="+", default=[2, 8])
    p.add_argument("--seeds", type=int, default=2)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--copies", type=int, default=500)
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    if a.quick:
        a.size, a.copies, a.epochs, a.seeds = 32, 50, 3, 1
    runs = []
    # Each finished run is saved at once, so a long sweep can be read while it goes.
    for setting, latent, seed in itertools.product(a.settings, a.latents, range(a.seeds)):
        runs.append(run_one(setting, latent, seed, a.size, a.copies, a.epochs))
        r = runs[-1]
        print(f"{setting} latent={latent} seed={seed}: active {r['active_units']}, separation {r['separation']['separation_in_std']:.2f} std, "
              f"{r['train_seconds']:.0f} s", flush=True)
        summary = summarize(runs)
        write_json(a.out, {"command": command_line(), "environment": environment(),
                           "settings": {"threads": torch.get_num_threads(), "size": a.size, "copies": a.copies, "epochs": a.epochs, "seeds": a.seeds,
                                        "latents": a.latents, "setting_overrides": SETTINGS},
                           "summary": summary, "runs": runs})
    print(markdown(summarize(runs)))


if __name__ == "__main__":
    main()
