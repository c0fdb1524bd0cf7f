"""Where a benchmark cell's time goes, and whether bf16 autocast or channels-last would make cells cheaper.

A cell of ``augvae bench`` is: draw the real training images, make generated samples on the fly
(the overlay engine), classic augmentation (albumentations), and the classifier's forward, backward
and optimizer step, for ``steps`` steps. This script times each part on one transplant cell in the
defect-free setting (synthetic data at 64 px: 5 defects per class, 300 defect-free surfaces), then
the classifier step alone in fp32 NCHW, fp32 channels-last and bf16 autocast, for the small CNN and
resnet18. It writes JSON with the settings, the figures and the command.

    python benchmarks/bench_profile.py --out benchmarks/results/bench_profile.json
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from _common import environment  # noqa: E402 - benchmarks/ helpers

p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
p.add_argument("--out", type=Path, required=True)
p.add_argument("--steps", type=int, default=60, help="steps of the profiled cell")
p.add_argument("--repeats", type=int, default=12, help="timed classifier steps per variant")
p.add_argument("--threads", type=int, default=1)
args = p.parse_args()
torch.set_num_threads(args.threads)

from augvae.bench import arms  # noqa: E402
from augvae.bench.classifiers import create_classifier  # noqa: E402
from augvae.bench.config import BenchConfig  # noqa: E402
from augvae.bench.split import draw_train, prepare_data  # noqa: E402
from augvae.config import ModelConfig  # noqa: E402
from augvae.data.synthetic import write_dataset  # noqa: E402

# ---------------------------------------------------------------- 1. one cell, part by part
tmp = Path(tempfile.mkdtemp(prefix="bench-profile-"))
atexit.register(shutil.rmtree, tmp, ignore_errors=True)  # the synthetic data and its cache go when the script ends
write_dataset(tmp / "d", n_per_class=12, size=64, seed=0, masks=False, classes=("crack", "pore", "scratch"))
write_dataset(tmp / "c", n_per_class=480, size=64, seed=0, masks=False, classes=("clean",))
data = tmp / "data"
data.mkdir()
for part in ("d", "c"):
    for sub in (tmp / part / "images").iterdir():
        sub.rename(data / sub.name)
cfg = BenchConfig(arms=("classic+transplant",), per_class=(5,), seeds=1, image_size=64, background_class="clean",
                  background_images=300, steps=args.steps, vae_steps=300, vae_batch_size=32,
                  vae=ModelConfig(image_size=64, latent_dim=16, hidden_dim=64, activation="leaky_relu"), convergence_check=False)
t0 = time.perf_counter()
bd = prepare_data(data, cfg)
t_load = time.perf_counter() - t0
train_set = bd.data.subset(draw_train(bd, 5, 0, "clean", 300))
t0 = time.perf_counter()
ts = arms.build_training_set("classic+transplant", train_set, cfg, tmp / "cache", bd.data_key, 5, 0)
t_vae = time.perf_counter() - t0

timers = {"generate": 0.0, "classic": 0.0, "classifier": 0.0}
real_generate, real_classic = ts.generate, arms._apply_classic


def timed_generate(y: torch.Tensor, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    t = time.perf_counter()
    out = real_generate(y, g)  # type: ignore[misc]
    timers["generate"] += time.perf_counter() - t
    return out


def timed_classic(transform: object, x: torch.Tensor) -> torch.Tensor:
    t = time.perf_counter()
    out = real_classic(transform, x)
    timers["classic"] += time.perf_counter() - t
    return out


ts.generate = timed_generate
arms._apply_classic = timed_classic  # type: ignore[assignment]
torch.manual_seed(0)
model = create_classifier("small-cnn", 4, 1)
fit = arms.fit_classifier(model, ts, cfg, 0, arms.ARM_SPECS["classic+transplant"], torch.device("cpu"), args.steps)
timers["classifier"] = fit["seconds"] - timers["generate"] - timers["classic"]
cell = {"load_images_s": t_load, "vae_and_extraction_s": t_vae, "steps": args.steps, "fit_s": fit["seconds"],
        "per_step_s": {k: v / args.steps for k, v in timers.items()},
        "share_of_fit": {k: v / fit["seconds"] for k, v in timers.items()}}
print(json.dumps(cell, indent=1))

# ---------------------------------------------------------------- 2. the classifier step: fp32, channels-last, bf16
steps: dict[str, dict[str, float]] = {}
for name in ("small-cnn", "resnet18"):
    for variant in ("fp32", "fp32-channels-last", "bf16-autocast"):
        torch.manual_seed(0)
        m = create_classifier(name, 2, 1)
        opt = torch.optim.AdamW(m.parameters(), 1e-3)
        x, y = torch.rand(32, 1, 64, 64), torch.randint(0, 2, (32,))
        if variant == "fp32-channels-last":
            m = m.to(memory_format=torch.channels_last)
            x = x.contiguous(memory_format=torch.channels_last)
        ctx = torch.autocast("cpu", dtype=torch.bfloat16) if variant == "bf16-autocast" else contextlib.nullcontext()
        times = []
        for i in range(args.repeats + 2):
            t = time.perf_counter()
            with ctx:
                loss = F.cross_entropy(m(x).float(), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            if i >= 2:
                times.append(time.perf_counter() - t)
        steps.setdefault(name, {})[variant] = sorted(times)[len(times) // 2]
        print(name, variant, round(steps[name][variant], 4), "s/step")
ratios = {name: {v: steps[name]["fp32"] / s for v, s in d.items()} for name, d in steps.items()}
result = {"command": ["python", *sys.argv], "settings": vars(args) | {"out": str(args.out)}, "environment": environment(),
          "cell": cell, "classifier_step_s": steps, "speedup_vs_fp32": ratios}
args.out.parent.mkdir(parents=True, exist_ok=True)
args.out.write_text(json.dumps(result, indent=1, default=str) + "\n")
print(json.dumps(ratios, indent=1))
