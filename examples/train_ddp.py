"""Data-parallel training with ``torchrun``: ``augvae.data.MixedDataset`` under ``DistributedSampler`` and DDP.

Usage (2 processes on one machine; CPU uses the gloo backend, CUDA nccl)::

    torchrun --standalone --nproc_per_node 2 examples/train_ddp.py --data ../shared/datasets/neu_det --per-class 10
    torchrun --standalone --nproc_per_node 2 examples/train_ddp.py            # synthetic defects, a quick VAE

What a user writes, and what this script checks while it runs:

- every rank builds the same ``MixedDataset`` (same real images, same ``seed``), so index ``j`` is the same
  sample on every rank;
- a ``DistributedSampler`` gives each rank a disjoint share of the real *and* generated indices, and
  ``sampler.set_epoch(e)`` / ``mixed.set_epoch(e)`` change the shuffle and the overlays every epoch;
- ``DistributedDataParallel`` averages the gradients, so every rank ends with the same classifier.

Rank 0 writes ``summary.json`` in ``--out``: per epoch the indices each rank saw (and whether the shares are
disjoint and cover the dataset), how many generated samples each rank saw, a fingerprint of one generated
sample as every rank computes it, the time per epoch, a checksum of the classifier's parameters on every rank,
and the test accuracy of the result.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, DistributedSampler

import augvae
from augvae.bench.classifiers import create_classifier, predict
from augvae.data import MixedDataset

p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
p.add_argument("--data", default="", help="class-folder dataset (NEU); synthetic defects if empty or absent")
p.add_argument("--per-class", type=int, default=10, help="training images per class")
p.add_argument("--test-per-class", type=int, default=20, help="test images per class")
p.add_argument("--image-size", type=int, default=48)
p.add_argument("--classifier", default="small-cnn", help="small-cnn, or a timm model name such as resnet18")
p.add_argument("--epochs", type=int, default=3)
p.add_argument("--batch-size", type=int, default=8, help="per rank")
p.add_argument("--ratio", type=float, default=0.5, help="fraction of generated samples in the stream")
p.add_argument("--vae-epochs", type=int, default=30)
p.add_argument("--model-dir", default=None, help="an existing augvae model folder (else rank 0 trains one)")
p.add_argument("--threads", type=int, default=1, help="torch threads per rank")
p.add_argument("--out", default="runs/train_ddp")
p.add_argument("--seed", type=int, default=0)
args = p.parse_args()

if "RANK" not in os.environ:
    sys.exit("run this script with torchrun, e.g.: torchrun --standalone --nproc_per_node 2 examples/train_ddp.py")
torch.set_num_threads(args.threads)
cuda = torch.cuda.is_available()
# The timeout written out (gloo's default, 30 min): on a starved machine a rank may wait minutes for the other.
dist.init_process_group("nccl" if cuda else "gloo", timeout=datetime.timedelta(minutes=30))
rank, world = dist.get_rank(), dist.get_world_size()
device = torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}" if cuda else "cpu")
out = Path(args.out)
S = args.image_size


def log(msg: str) -> None:
    if rank == 0:
        print(msg, flush=True)


# -- 1. the same few-shot split on every rank (same seed) ---------------------------------------------------
data_root = Path(args.data) if args.data else None
if data_root is not None and data_root.is_dir():
    images = augvae.load_folder(data_root, image_size=S)
    source = str(data_root)
else:
    if rank == 0:
        from augvae.data.synthetic import write_dataset

        write_dataset(out / "synthetic", n_per_class=args.per_class + args.test_per_class, size=S, seed=args.seed)
    dist.barrier()
    images = augvae.load_folder(out / "synthetic" / "images", image_size=S)  # write_dataset's layout
    source = "synthetic defects"
rng = random.Random(args.seed)
train_idx, test_idx = [], []
for y in range(len(images.classes)):
    members = [i for i, label in enumerate(images.labels.tolist()) if label == y]
    rng.shuffle(members)
    train_idx += members[: args.per_class]
    test_idx += members[args.per_class : args.per_class + args.test_per_class]
log(f"data: {source}; {len(images.classes)} classes, {len(train_idx)} training and {len(test_idx)} test images, {S} px, "
    f"{world} ranks")


class FewShot(Dataset):
    """A user's own map-style dataset: (CHW float tensor in [0, 1], int label)."""

    def __init__(self, idx: list[int]) -> None:
        self.idx = idx

    def __len__(self) -> int:
        return len(self.idx)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        j = self.idx[i]
        return images.images[j], int(images.labels[j])


# -- 2. the VAE: trained once, by rank 0, on the training images only ----------------------------------------
if args.model_dir:
    model_dir = Path(args.model_dir)
else:
    model_dir = out / "vae"
    if rank == 0 and not (model_dir / "latents.safetensors").exists():
        augvae.train(images.subset(train_idx), augvae.ModelConfig(image_size=S, latent_dim=8, activation="leaky_relu", beta=0.5),
                     augvae.recipe_config("small-set", epochs=args.vae_epochs, optimizer="adam", kl_warmup_epochs=5,
                                          seed=args.seed),
                     out_dir=model_dir, progress=False)
    dist.barrier()  # the other ranks wait for the finished model folder

# -- 3. the wrapper, the sampler and DDP: what a user writes --------------------------------------------------
mixed = MixedDataset(model_dir, FewShot(train_idx), ratio=args.ratio, seed=args.seed, classes=list(images.classes))
sampler = DistributedSampler(mixed, num_replicas=world, rank=rank, shuffle=True, seed=args.seed)
loader = DataLoader(mixed, batch_size=args.batch_size, sampler=sampler)
torch.manual_seed(args.seed)  # the same initial weights on every rank (DDP also broadcasts rank 0's)
model = create_classifier(args.classifier, num_classes=len(images.classes), in_chans=images.images.shape[1]).to(device)
ddp = DistributedDataParallel(model, device_ids=[device.index] if cuda else None)
opt = torch.optim.AdamW(ddp.parameters(), lr=1e-3)

epochs = []
for epoch in range(args.epochs):
    sampler.set_epoch(epoch)
    mixed.set_epoch(epoch)
    seen = list(iter(sampler))
    ddp.train()
    t0 = time.perf_counter()
    for x, y in loader:
        loss = F.cross_entropy(ddp((x.to(device) - 0.5) / 0.25), y.to(device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    seconds = time.perf_counter() - t0
    # One generated sample, as this rank computes it: identical on every rank.
    probe = hashlib.sha256(mixed[mixed.num_real][0].numpy().tobytes()).hexdigest()[:16]
    gathered: list[object] = [None] * world
    dist.all_gather_object(gathered, {"indices": seen, "seconds": seconds, "probe": probe, "loss": loss.item()})
    if rank == 0:
        shares = [set(g["indices"]) for g in gathered]  # type: ignore[index]
        union = set().union(*shares)
        epochs.append({
            "epoch": epoch,
            "indices_per_rank": [sorted(s) for s in shares],
            "generated_per_rank": [sum(i >= mixed.num_real for i in s) for s in shares],
            "shares_disjoint": sum(len(s) for s in shares) == len(union),
            "covers_dataset": union == set(range(len(mixed))),
            "probe_per_rank": [g["probe"] for g in gathered],  # type: ignore[index]
            "seconds_per_rank": [round(g["seconds"], 3) for g in gathered],  # type: ignore[index]
            "last_loss_per_rank": [round(g["loss"], 4) for g in gathered],  # type: ignore[index]
        })
        log(f"epoch {epoch}: {len(union)} samples over {world} ranks, disjoint={epochs[-1]['shares_disjoint']}, "
            f"{max(epochs[-1]['seconds_per_rank']):.2f} s")

# The ranks trained one model: every rank's parameters are bitwise the same. (Buffers such as BatchNorm's running
# statistics are not averaged: DDP copies rank 0's at the start of each forward, so after the last step they differ.)
digest = hashlib.sha256(b"".join(t.detach().cpu().numpy().tobytes() for t in model.parameters())).hexdigest()[:16]
digests: list[object] = [None] * world
dist.all_gather_object(digests, digest)
if rank == 0:
    test = FewShot(test_idx)
    xs = torch.stack([test[i][0] for i in range(len(test))])
    ys = torch.tensor([test[i][1] for i in range(len(test))])
    logits, _ = predict(model.cpu().eval(), (xs - 0.5) / 0.25)
    accuracy = float((logits.argmax(1) == ys).float().mean())
    summary = {
        "command": ["torchrun", f"--nproc_per_node={world}", *sys.argv], "settings": vars(args), "world_size": world,
        "backend": dist.get_backend(), "num_real": mixed.num_real, "num_generated": mixed.num_generated,
        "epochs": epochs, "parameters_digest_per_rank": digests, "same_parameters_on_every_rank": len(set(digests)) == 1,
        "test_accuracy": round(accuracy, 4), "classes": list(images.classes),
    }
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=out, suffix=".tmp", delete=False) as f:  # whole or not at all
        json.dump(summary, f, indent=1)
    os.replace(f.name, out / "summary.json")
    log(f"test accuracy {accuracy:.3f}; same parameters on every rank: {summary['same_parameters_on_every_rank']} -> {out / 'summary.json'}")
# Leave together: a rank that tears gloo down while another is still working (rank 0 above) can abort at exit on a
# starved machine ("terminate called without an active exception"). The barrier makes both ranks reach the teardown.
dist.barrier()
dist.destroy_process_group()
