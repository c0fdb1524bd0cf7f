"""Train a timm classifier on a few NEU images per class, with augvae added the ways a user would add it.

Arms (each trains the same resnet18 from scratch, 1 input channel, for ``--epochs`` epochs):

- ``baseline``: flips only.
- ``torchvision``: ``augvae.torchvision.VAEOverlay`` inside the ``v2.Compose`` of (image, label) pairs.
- ``albumentations``: ``augvae.albumentations.VAEOverlay`` inside an ``A.Compose``; the label travels as ``label=``.
- ``wrapper``: ``augvae.data.MixedDataset`` around the plain dataset (one generated sample per real one).
- ``batch``: ``augvae.torchvision.BatchVAEOverlay`` after the DataLoader, soft labels into ``F.cross_entropy``.

It first trains a small VAE on the same few-shot images (or loads ``--model-dir``), then prints the
time per epoch of every arm, writes ``timings.csv`` and a PNG grid of what each arm generates.
Without ``--data`` (or if the folder is absent) it uses augvae's synthetic defects.

Usage:
    python examples/train_classifier.py --data ../shared/datasets/neu_det --per-class 10 --epochs 4
"""

from __future__ import annotations

import argparse
import csv
import random
import tempfile
import time
from pathlib import Path

import albumentations as A
import numpy as np
import timm
import torch
import torch.nn.functional as F
from albumentations.pytorch import ToTensorV2
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import v2

import augvae
from augvae.albumentations import VAEOverlay as AlbuVAEOverlay
from augvae.data import MixedDataset
from augvae.torchvision import BatchVAEOverlay, VAEOverlay

ARMS = ("baseline", "torchvision", "albumentations", "wrapper", "batch")

p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
p.add_argument("--data", default="../shared/datasets/neu_det", help="class-folder dataset (NEU); synthetic if absent")
p.add_argument("--per-class", type=int, default=10, help="training images per class")
p.add_argument("--test-per-class", type=int, default=30, help="test images per class")
p.add_argument("--image-size", type=int, default=64)
p.add_argument("--epochs", type=int, default=4, help="classifier epochs per arm")
p.add_argument("--batch-size", type=int, default=16)
p.add_argument("--vae-epochs", type=int, default=60)
p.add_argument("--model-dir", default=None, help="an existing augvae model folder (else one is trained)")
p.add_argument("--arms", default=",".join(ARMS), help=f"comma-separated subset of {','.join(ARMS)}")
p.add_argument("--workers", type=int, default=0, help="DataLoader workers")
p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default); 1 is fastest on a busy small machine")
p.add_argument("--out", default="runs/train_classifier")
p.add_argument("--seed", type=int, default=0)
args = p.parse_args()
if args.threads:
    torch.set_num_threads(args.threads)
out = Path(args.out)
out.mkdir(parents=True, exist_ok=True)
S = args.image_size

# -- 1. a few-shot split: --per-class training images per class, --test-per-class test images ------------
data_root = Path(args.data)
if (data_root / "splits.csv").is_file():
    with (data_root / "splits.csv").open() as f:
        rows = list(csv.DictReader(f))
    classes = sorted({r["class"] for r in rows})
    pool = {c: [data_root / r["path"] for r in rows if r["class"] == c and r["split"] == "pool"] for c in classes}
    test_pool = {c: [data_root / r["path"] for r in rows if r["class"] == c and r["split"] == "test"] for c in classes}
    source = f"NEU ({data_root})"
else:
    from augvae.data.synthetic import write_dataset

    images_dir = write_dataset(Path(tempfile.mkdtemp()) / "synthetic", n_per_class=args.per_class + args.test_per_class,
                               size=S, seed=args.seed)
    classes = sorted(d.name for d in images_dir.iterdir())
    files = {c: sorted((images_dir / c).glob("*.png")) for c in classes}
    pool = {c: f[: args.per_class] for c, f in files.items()}
    test_pool = {c: f[args.per_class :] for c, f in files.items()}
    source = "synthetic defects (no NEU folder)"
rng = random.Random(args.seed)
train_items = [(path, y) for y, c in enumerate(classes) for path in rng.sample(pool[c], args.per_class)]
test_items = [(path, y) for y, c in enumerate(classes) for path in rng.sample(test_pool[c], args.test_per_class)]
print(f"data: {source}; {len(classes)} classes, {len(train_items)} training and {len(test_items)} test images, {S} px")


class FewShot(Dataset):
    """A user's own dataset: grayscale PIL images and int labels, through joint (image, label) transforms."""

    def __init__(self, items: list[tuple[Path, int]], transforms=None) -> None:
        self.items, self.transforms = items, transforms

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        path, label = self.items[i]
        image = Image.open(path).convert("L")
        return self.transforms(image, label) if self.transforms is not None else (image, label)


class FewShotAlbu(FewShot):
    """The same dataset written for albumentations: numpy in, the label travels through the pipeline."""

    def __getitem__(self, i: int):
        path, label = self.items[i]
        out = self.transforms(image=np.asarray(Image.open(path).convert("L")), label=label)
        return out["image"], out["label"]


# -- 2. a VAE on the training images (augvae train), unless one is given --------------------------------------
if args.model_dir:
    model_dir = Path(args.model_dir)
else:
    model_dir = out / "vae"
    if not (model_dir / "latents.safetensors").exists():
        vae_data = augvae.load_images([path for path, _ in train_items], image_size=S, labels=[y for _, y in train_items],
                                      classes=classes)
        t0 = time.perf_counter()
        result = augvae.train(vae_data, augvae.ModelConfig(image_size=S, latent_dim=8, beta=0.5),
                              augvae.recipe_config("small-set", epochs=args.vae_epochs, batch_size=10, optimizer="adam",
                                                   kl_warmup_epochs=10, seed=args.seed),
                              out_dir=model_dir, progress=False)
        print(f"VAE: trained {args.vae_epochs} epochs in {time.perf_counter() - t0:.1f} s, "
              f"{result.active_units} of 8 latent dimensions active -> {model_dir}")

# -- 3. the datasets and loaders, one per arm, as a user would write them ---------------------------------------
to_tensor = v2.Compose([v2.ToImage(), v2.ToDtype(torch.float32, scale=True)])  # [0, 1]: what augvae takes
normalize = v2.Normalize([0.5], [0.25])
flips = [v2.RandomHorizontalFlip(), v2.RandomVerticalFlip()]


def loaders(arm: str) -> DataLoader:
    if arm in ("baseline", "batch"):  # the batch arm normalises after BatchVAEOverlay
        tail = [to_tensor] if arm == "batch" else [to_tensor, normalize]
        ds: Dataset = FewShot(train_items, v2.Compose([v2.Resize((S, S)), *flips, *tail]))
    elif arm == "torchvision":
        ds = FewShot(train_items, v2.Compose([v2.Resize((S, S)), *flips, VAEOverlay(model_dir, p=0.5, policy="same-class"),
                                              to_tensor, normalize]))
    elif arm == "albumentations":
        ds = FewShotAlbu(train_items, A.Compose([A.Resize(S, S), A.HorizontalFlip(), A.VerticalFlip(),
                                                 AlbuVAEOverlay(model_dir, p=0.5, policy="same-class"),
                                                 A.Normalize(mean=0.5, std=0.25), ToTensorV2()], seed=args.seed))
    else:  # wrapper: one generated sample for every real one
        ds = MixedDataset(model_dir, FewShot(train_items, v2.Resize((S, S))), ratio=0.5, policy="same-class",
                          seed=args.seed, transform=v2.Compose([*flips, to_tensor, normalize]))
    return DataLoader(ds, batch_size=args.batch_size, shuffle=True, num_workers=args.workers,
                      persistent_workers=args.workers > 0, generator=torch.Generator().manual_seed(args.seed))


test_loader = DataLoader(FewShot(test_items, v2.Compose([v2.Resize((S, S)), to_tensor, normalize])), batch_size=64)
batch_aug = BatchVAEOverlay(model_dir, p=0.5, policy="soft")


# -- 4. one training loop for every arm ------------------------------------------------------------------------
def run(arm: str) -> dict[str, object]:
    torch.manual_seed(args.seed)
    model = timm.create_model("resnet18", pretrained=False, num_classes=len(classes), in_chans=1)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.05)
    loader = loaders(arm)
    if isinstance(loader.dataset, MixedDataset) or arm == "batch":
        batch_aug.sources()  # load the model before timing, as a warm DataLoader worker would have
    seconds = []
    for epoch in range(args.epochs):
        if isinstance(loader.dataset, MixedDataset):
            loader.dataset.set_epoch(epoch)
        model.train()
        t0 = time.perf_counter()
        for x, y in loader:
            if arm == "batch":  # after the DataLoader, on the batch's device: soft labels
                x, y = batch_aug(x, y)
                x = normalize(x)
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        seconds.append(time.perf_counter() - t0)
        print(f"  {arm:>14} epoch {epoch + 1}/{args.epochs}: {seconds[-1]:.2f} s, {len(loader.dataset)} samples, "
              f"loss {loss.item():.3f}")
    model.eval()
    with torch.no_grad():
        correct = sum(int((model(x).argmax(1) == y).sum()) for x, y in test_loader)
    steady = seconds[1:] or seconds  # the first epoch includes worker start-up and model loading
    return {"arm": arm, "samples_per_epoch": len(loader.dataset), "s_per_epoch": round(sum(steady) / len(steady), 3),
            "first_epoch_s": round(seconds[0], 3), "test_accuracy": round(correct / len(test_items), 4)}


# warm up torch's kernels once, so that the first arm's timing is not charged for it
_warm = timm.create_model("resnet18", pretrained=False, num_classes=len(classes), in_chans=1)
F.cross_entropy(_warm(torch.rand(args.batch_size, 1, S, S)), torch.zeros(args.batch_size, dtype=torch.long)).backward()
results = [run(arm) for arm in args.arms.split(",")]
base = next((r["s_per_epoch"] for r in results if r["arm"] == "baseline"), None)
print(f"\n{'arm':>14} {'samples':>8} {'s/epoch':>8} {'x base':>7} {'first':>7} {'test acc':>8}")
for r in results:
    ratio = f"{r['s_per_epoch'] / base:.2f}" if base else "-"
    print(f"{r['arm']:>14} {r['samples_per_epoch']:>8} {r['s_per_epoch']:>8} {ratio:>7} {r['first_epoch_s']:>7} "
          f"{r['test_accuracy']:>8}")
with (out / "timings.csv").open("w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=list(results[0]))
    writer.writeheader()
    writer.writerows(results)
print("(test accuracy after a few epochs from scratch is a smoke check, not a benchmark)")

# -- 5. what each arm generates: one row per arm, for the same eight training images ---------------------------
import matplotlib  # noqa: E402 - only this last step draws

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

picks = [train_items[i] for i in np.linspace(0, len(train_items) - 1, 8).astype(int)]
real = [Image.open(path).convert("L").resize((S, S)) for path, _ in picks]
labels = [y for _, y in picks]
torch.manual_seed(args.seed)
tv_one = VAEOverlay(model_dir, p=1.0, policy="same-class")
albu_one = A.Compose([AlbuVAEOverlay(model_dir, p=1.0, policy="onto-background" if "clean" in classes else "same-class")],
                     seed=args.seed)
mixed = MixedDataset(model_dir, FewShot(picks, v2.Resize((S, S))), ratio=0.5, policy="same-class", seed=args.seed)
x = torch.stack([to_tensor(im) for im in real])
bx, by = BatchVAEOverlay(model_dir, p=1.0, policy="soft", k=2)(x, torch.tensor(labels))
grid = [
    ("real", [np.asarray(im) for im in real], [classes[y] for y in labels]),
    ("torchvision\nsame-class", [np.asarray(tv_one(im, y)[0]) for im, y in zip(real, labels)], [classes[y] for y in labels]),
    ("albumentations", *zip(*[(o["image"], classes[o["label"]]) for o in
                              (albu_one(image=np.asarray(im), label=y) for im, y in zip(real, labels))])),
    ("wrapper\n(generated)", [np.asarray(mixed[8 + i][0]) for i in range(8)], [classes[mixed[8 + i][1]] for i in range(8)]),
    ("batch, soft\nk=2", [t[0].numpy() for t in bx], ["+".join(f"{classes[j][:5]}{v:.1f}" for j, v in enumerate(row) if v > 0.05)
                                                   for row in by.tolist()]),
]
fig, axes = plt.subplots(len(grid), 8, figsize=(16, 2.3 * len(grid)))
for r, (name, imgs, titles) in enumerate(grid):
    for c in range(8):
        ax = axes[r, c]
        ax.imshow(imgs[c], cmap="gray", vmin=0, vmax=1 if np.asarray(imgs[c]).dtype.kind == "f" else 255)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(titles[c], fontsize=7)
    axes[r, 0].set_ylabel(name, fontsize=9)
fig.tight_layout()
fig.savefig(out / "samples.png", dpi=110)
print(f"wrote {out / 'timings.csv'} and {out / 'samples.png'}")
