"""ELPV pre-screen: a standalone prototype of the transplant that chose the library's first defaults (not the product's code path).

It predates ``augvae.overlay``'s transplant and re-implements it in a few lines (VAE projection, a z-scored
dark-residual mask, D4 flips, whole-pixel shifts, add / paste / poisson blends), trains the small CNN for 800
steps on k defective cells + all 1,358 defect-free pool cells of ELPV (64 px, class-balanced batches) and
appends one JSON line per cell. Its results (``benchmarks/results/elpv/prescreen/cells.jsonl``, summarised in
``benchmarks/results/elpv/README.md``) only chose what the real benchmark (``benchmarks/run_elpv.sh``) then
measured: the blend, the mask thresholds and the generated share.

    python benchmarks/elpv_prescreen.py --k 5 --seeds 0,1,2 --tag s1 --out /tmp/prescreen.jsonl
"""

# ---- the images, cached as one tensor
import csv, os, numpy as np, torch
from PIL import Image
ROOT = os.environ.get('ELPV', '../shared/datasets/elpv')
def load(size=64):
    path=os.path.join(os.environ.get('PRESCREEN_CACHE', '/tmp'), f'elpv{size}.pt')
    try: return torch.load(path, weights_only=True)  # tensors and strings only: nothing is unpickled
    except FileNotFoundError: pass
    with open(f'{ROOT}/splits.csv', newline='') as fh: rows=list(csv.DictReader(fh))
    X=np.stack([np.asarray(Image.open(f"{ROOT}/{r['path']}").convert('L').resize((size,size),Image.BILINEAR),dtype=np.float32)/255 for r in rows])
    d={'x':torch.from_numpy(X)[:,None],'y':torch.tensor([r['class']=='defective' for r in rows]).long(),
       'test':torch.tensor([r['split']=='test' for r in rows]),'paths':[r['path'] for r in rows]}
    torch.save(d,path); return d

# ---- the prototype

import argparse, json, math, os, time
import torch.nn.functional as F
torch.set_num_threads(1)
from augvae.bench.classifiers import create_classifier
from augvae.bench.arms import classic_transform, _apply_classic
from augvae.bench.stats import classification_metrics

p = argparse.ArgumentParser()
p.add_argument('--arms', default='original,classic,transplant,classic+transplant,blur,classic+blur,cutpaste,classic+cutpaste')
p.add_argument('--k', default='5,10')
p.add_argument('--seeds', default='0,1,2')
p.add_argument('--steps', type=int, default=800)
p.add_argument('--q', type=float, default=0.5)
p.add_argument('--blend', default='add')
p.add_argument('--mask', default='z')   # z: the smoothed dark residual, z-scored vs ok stats; other: the same with abs(r); full: no mask
p.add_argument('--sigma', type=float, default=0.7)
p.add_argument('--zlo', type=float, default=1.5)
p.add_argument('--zhi', type=float, default=3.0)
p.add_argument('--vae', default='/tmp/prescreen_vae_ok')
p.add_argument('--vae-steps', type=int, default=3000)
p.add_argument('--latent', type=int, default=16)
p.add_argument('--clf', default='small-cnn')
p.add_argument('--out', default='/tmp/prescreen.jsonl')
p.add_argument('--tag', default='')
p.add_argument('--translate', type=float, default=0.25)
a = p.parse_args()

D = load(64)
X, Y, TEST = D['x'], D['y'], D['test']
pool_ok = torch.nonzero((Y == 0) & ~TEST).flatten()
pool_def = torch.nonzero((Y == 1) & ~TEST).flatten()
test_idx = torch.nonzero(TEST).flatten()

def gblur(x, sigma):
    if sigma <= 0: return x
    r = max(1, int(3 * sigma + 0.5)); t = torch.arange(-r, r + 1, dtype=x.dtype)
    k = torch.exp(-t**2 / (2 * sigma**2)); k = k / k.sum()
    c = x.shape[1]
    x = F.conv2d(F.pad(x, (r, r, 0, 0), mode='reflect'), k.view(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c)
    return F.conv2d(F.pad(x, (0, 0, r, r), mode='reflect'), k.view(1, 1, -1, 1).repeat(c, 1, 1, 1), groups=c)

# ---- VAE on defect-free pool
def get_vae():
    from augvae.model import load_model
    if os.path.exists(a.vae + '/latents.safetensors'):
        return load_model(a.vae).model
    import augvae
    from augvae.config import ModelConfig, recipe_config
    n = len(pool_ok); bs = 32
    epochs = math.ceil(a.vae_steps / math.ceil(n / bs))
    res = augvae.train(X[pool_ok], ModelConfig(image_size=64, latent_dim=a.latent, hidden_dim=128, activation='leaky_relu', recon_loss='bce'),
                       recipe_config('small-set', epochs=epochs, batch_size=bs, seed=0, kl_warmup_epochs=max(1, epochs // 4), lr=1e-3, optimizer='adam', lr_schedule='cosine'),
                       out_dir=a.vae, progress=False)
    return res.model

def project(model, x):
    with torch.no_grad():
        return model.decode(model.encode(x)[0])

def extract(x_def, proj_def, x_ok, proj_ok):
    """residual + soft mask per defect image; stats from ok images."""
    r = x_def - proj_def
    if a.mask == 'full':
        return r, torch.ones_like(r)
    f = (lambda t: (-t).clamp_min(0)) if a.mask == 'z' else (lambda t: t.abs())
    s = gblur(f(r), a.sigma); s_ok = gblur(f(x_ok - proj_ok), a.sigma)
    mu, sd = s_ok.mean(0, keepdim=True), s_ok.std(0, keepdim=True) + 0.01
    z = (s - mu) / sd
    m = ((z - a.zlo) / (a.zhi - a.zlo)).clamp(0, 1)
    m = gblur(F.max_pool2d(m, 3, 1, 1), 0.8).clamp(0, 1)
    return r, m

def d4(t, code):  # code 0..7
    if code & 4: t = t.transpose(-1, -2)
    if code & 1: t = t.flip(-1)
    if code & 2: t = t.flip(-2)
    return t

def shift(t, dy, dx):
    # translate with zero fill
    out = torch.zeros_like(t); H, W = t.shape[-2:]
    ys, yd = (slice(0, H - dy), slice(dy, H)) if dy >= 0 else (slice(-dy, H), slice(0, H + dy))
    xs, xd = (slice(0, W - dx), slice(dx, W)) if dx >= 0 else (slice(-dx, W), slice(0, W + dx))
    out[..., yd, xd] = t[..., ys, xs]; return out

def jacobi_poisson(base, src, m, iters=60):
    # f = base + g, lap g = lap(src - base) inside mask (m>0.5), g=0 outside
    inside = (m > 0.3).float()
    guide = src - base
    k = torch.tensor([[0, 1, 0], [1, 0, 1], [0, 1, 0]], dtype=base.dtype).view(1, 1, 3, 3) / 4
    lap = guide - F.conv2d(F.pad(guide, (1, 1, 1, 1), mode='replicate'), k)
    g = guide * inside
    for _ in range(iters):
        g = (F.conv2d(F.pad(g, (1, 1, 1, 1)), k) + lap) * inside
    return base + g

def transplant(bases, srcs, res, masks, gen, blend):
    B = bases.shape[0]; out = []
    H = bases.shape[-1]
    for i in range(B):
        code = int(torch.randint(8, (1,), generator=gen))
        mt = int(a.translate * H)
        dy, dx = (torch.randint(-mt, mt + 1, (2,), generator=gen).tolist() if mt > 0 else (0, 0))
        r = shift(d4(res[i], code), dy, dx); m = shift(d4(masks[i], code), dy, dx); s = shift(d4(srcs[i], code), dy, dx)
        b = bases[i]
        bl = blend if blend != 'random' else ['add', 'paste', 'poisson'][int(torch.randint(3, (1,), generator=gen))]
        if bl == 'add':
            o = b + m * r
        elif bl == 'paste':
            o = b * (1 - m) + s * m
        else:
            o = jacobi_poisson(b[None], s[None], m[None])[0]
        out.append(o.clamp(0, 1))
    return torch.stack(out)

def cutpaste(bases, srcs, gen):
    B, C, H, W = bases.shape; out = bases.clone()
    for i in range(B):
        area = float(torch.empty(1).uniform_(0.02, 0.15, generator=gen)) * H * W
        ar = math.exp(float(torch.empty(1).uniform_(math.log(0.3), math.log(3.3), generator=gen)))
        h = min(H - 1, max(2, int(round(math.sqrt(area * ar))))); w = min(W - 1, max(2, int(round(math.sqrt(area / ar)))))
        y0, x0 = int(torch.randint(H - h, (1,), generator=gen)), int(torch.randint(W - w, (1,), generator=gen))
        y1, x1 = int(torch.randint(H - h, (1,), generator=gen)), int(torch.randint(W - w, (1,), generator=gen))
        out[i, :, y1:y1 + h, x1:x1 + w] = srcs[i, :, y0:y0 + h, x0:x0 + w]
    return out

def run_cell(arm, k, seed, vae, proj_all, stats):
    g = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng([seed, 1])
    defs = pool_def[torch.from_numpy(rng.permutation(len(pool_def))[:k])]
    xd = X[defs]
    classic = classic_transform(seed) if arm.startswith('classic') else None
    gen_kind = arm.split('+')[-1] if arm not in ('original', 'classic') else None
    if gen_kind in ('transplant', 'blur'):
        if gen_kind == 'transplant':
            r, m = extract(xd, proj_all[defs], X[pool_ok[:400]], proj_all[pool_ok[:400]])
        else:
            r, m = extract(xd, gblur(xd, 2.0), X[pool_ok[:400]], gblur(X[pool_ok[:400]], 2.0))
    torch.manual_seed(seed)
    model = create_classifier(a.clf, 2, 1)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, a.steps) / a.steps)))
    torch.manual_seed(seed * 7919 + 23)
    model.train(); t0 = time.time(); bs = 32; gen_count = 0
    for step in range(a.steps):
        io = pool_ok[torch.randint(len(pool_ok), (bs // 2,), generator=g)]
        idd = torch.randint(k, (bs // 2,), generator=g)
        x_ok = X[io]; x_def = xd[idd]
        if gen_kind is not None:
            swap = torch.rand(bs // 2, generator=g) < a.q
            n = int(swap.sum())
            if n:
                bases = X[pool_ok[torch.randint(len(pool_ok), (n,), generator=g)]]
                src_i = idd[swap]
                if gen_kind == 'cutpaste':
                    x_def[swap] = cutpaste(bases, xd[src_i], g)
                else:
                    x_def[swap] = transplant(bases, xd[src_i], r[src_i], m[src_i], g, a.blend)
                gen_count += n
        x = torch.cat([x_ok, x_def]); y = torch.cat([torch.zeros(bs // 2), torch.ones(bs // 2)]).long()
        if classic is not None:
            x = _apply_classic(classic, x)
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(); loss.backward(); opt.step(); sched.step()
    model.eval()
    with torch.no_grad():
        pred = torch.cat([model(X[test_idx[s:s + 256]]).argmax(1) for s in range(0, len(test_idx), 256)])
    met = classification_metrics(Y[test_idx].tolist(), pred.tolist(), ['ok', 'defective'])
    return {'arm': arm, 'k': k, 'seed': seed, 'acc': met['accuracy'], 'f1': met['macro_f1'], 'sec': time.time() - t0, 'gen': gen_count}

done = set()
if os.path.exists(a.out):
    with open(a.out) as fh:
        for line in fh:
            r = json.loads(line); done.add((r['tag'], r['arm'], r['k'], r['seed']))
vae = get_vae()
with torch.no_grad():
    proj_all = torch.cat([project(vae, X[s:s + 512]) for s in range(0, len(X), 512)])
for k in map(int, a.k.split(',')):
    for seed in map(int, a.seeds.split(',')):
        for arm in a.arms.split(','):
            if (a.tag, arm, k, seed) in done: continue
            rec = run_cell(arm, k, seed, vae, proj_all, None)
            rec.update(tag=a.tag, zlo=a.zlo, sigma=a.sigma, translate=a.translate, steps=a.steps, q=a.q, blend=a.blend, mask=a.mask, clf=a.clf)
            print(json.dumps(rec), flush=True)
            with open(a.out, 'a') as f: f.write(json.dumps(rec) + '\n')
