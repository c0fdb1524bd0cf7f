"""How good the generated images are, measured with a classifier trained on real images only.

No Inception weights can be downloaded here, so the FID/KID-style distances use the penultimate
features of the benchmark's own ``original`` classifier (same classifier, k and seed: it saw only
the real training images). Per class, generated images are compared with the real **test** images
of that class (a large held-out sample of the real distribution; they are measured, never trained
on), and the real **training** images are compared with the same test images as the baseline a
perfect generator would match:

- ``fd``: Fréchet distance between Gaussian fits of the two feature sets (FID's formula). Biased
  upward for small samples, so compare it only with the baseline computed at a similar size.
- ``kid``: kernel inception distance's unbiased MMD^2 with the cubic polynomial kernel
  ``(x.y / d + 1)^3``; unbiased, so usable with a handful of images (can be slightly negative).
- ``nn_rmse``: pixel RMSE from each generated image to its nearest real training image (median).
  Beside it ``nn_rmse_test``, the same for real test images: a generated set much closer to the
  training images than new real images are is copying, not augmenting.
- ``label_agreement``: the share of generated images that the real-data classifier assigns to the
  label the policy gave them (for soft labels: to one of the classes with a positive share).

Example:
    >>> import torch
    >>> a = torch.randn(200, 8, generator=torch.Generator().manual_seed(0))
    >>> round(frechet_distance(a, a), 6)
    0.0
    >>> frechet_distance(a, a + 1.0) > 7.9
    True
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from augvae.bench.classifiers import predict
from augvae.errors import InputError

__all__ = ["frechet_distance", "generation_quality", "kernel_distance", "nearest_rmse"]


def _as_np(x: Tensor | np.ndarray) -> np.ndarray:
    arr = x.detach().cpu().double().numpy() if isinstance(x, Tensor) else np.asarray(x, dtype=np.float64)
    if arr.ndim != 2:
        raise InputError(f"features must be a 2-D (N, D) array, got shape {arr.shape}")
    return arr


def frechet_distance(a: Tensor | np.ndarray, b: Tensor | np.ndarray) -> float:
    """``|mu_a - mu_b|^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2))`` of two (N, D) feature sets (FID's formula).

    The trace of the matrix square root is computed exactly without ``scipy.linalg.sqrtm``: with
    centred data ``A`` (n_a x D) and ``B``, ``Tr((S_a S_b)^(1/2))`` is the sum of the singular values
    of ``A B^T`` over ``sqrt((n_a - 1)(n_b - 1))`` (the nonzero eigenvalues of ``S_a S_b`` are those
    of ``(A B^T)(A B^T)^T / ((n_a - 1)(n_b - 1))``), an n_a x n_b problem instead of D x D; with
    more images than features it uses the eigenvalues of ``S_a^(1/2) S_b S_a^(1/2)`` instead.
    Needs at least 2 rows in each set; returns NaN otherwise.
    """
    x, y = _as_np(a), _as_np(b)
    if x.shape[0] < 2 or y.shape[0] < 2:
        return float("nan")
    if x.shape[1] != y.shape[1]:
        raise InputError(f"feature sets differ in dimension: {x.shape[1]} and {y.shape[1]}")
    xa, yb = x - x.mean(0), y - y.mean(0)
    na, nb = x.shape[0] - 1, y.shape[0] - 1
    tr_a, tr_b = (xa**2).sum() / na, (yb**2).sum() / nb
    if x.shape[1] <= min(na, nb):  # few features: the D x D route, via S_a^(1/2) S_b S_a^(1/2) (symmetric PSD)
        w, v = np.linalg.eigh(xa.T @ xa / na)
        root = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
        lam = np.linalg.eigvalsh(root @ (yb.T @ yb / nb) @ root)
        tr_sqrt = np.sqrt(np.clip(lam, 0, None)).sum()
    else:
        tr_sqrt = np.linalg.svd(xa @ yb.T, compute_uv=False).sum() / np.sqrt(na * nb)
    value = float(((x.mean(0) - y.mean(0)) ** 2).sum() + tr_a + tr_b - 2 * tr_sqrt)
    return max(value, 0.0)


def kernel_distance(a: Tensor | np.ndarray, b: Tensor | np.ndarray) -> float:
    """Unbiased MMD^2 with the kernel ``(x.y / d + 1)^3`` (KID). NaN if a set has fewer than 2 rows.

    Example:
        >>> import numpy as np
        >>> x = np.random.default_rng(0).normal(size=(300, 4))
        >>> abs(kernel_distance(x[:150], x[150:])) < 0.05
        True
    """
    x, y = _as_np(a), _as_np(b)
    m, n = x.shape[0], y.shape[0]
    if m < 2 or n < 2:
        return float("nan")
    d = x.shape[1]
    kxx = (x @ x.T / d + 1) ** 3
    kyy = (y @ y.T / d + 1) ** 3
    kxy = (x @ y.T / d + 1) ** 3
    return float((kxx.sum() - np.trace(kxx)) / (m * (m - 1)) + (kyy.sum() - np.trace(kyy)) / (n * (n - 1)) - 2 * kxy.mean())


def nearest_rmse(images: Tensor, reference: Tensor, batch: int = 512) -> Tensor:
    """For each image, the pixel RMSE to its nearest image in ``reference`` (both (N, C, S, S))."""
    if images.shape[1:] != reference.shape[1:]:
        raise InputError(f"images {tuple(images.shape[1:])} and reference {tuple(reference.shape[1:])} differ in shape")
    r = reference.flatten(1).double()
    out = []
    for s in range(0, images.shape[0], batch):
        x = images[s : s + batch].flatten(1).double()
        d2 = torch.cdist(x, r).pow(2) / x.shape[1]
        out.append(d2.min(1).values.clamp_min(0).sqrt())
    return torch.cat(out).float()


def _median(x: Tensor) -> float:
    return float(x.median()) if x.numel() else float("nan")


def generation_quality(
    reference: nn.Module,
    generated: Tensor,
    generated_targets: Tensor,
    train_images: Tensor,
    train_labels: Tensor,
    test_images: Tensor,
    test_labels: Tensor,
    classes: list[str],
    test_features: Tensor | None = None,
) -> dict[str, Any]:
    """Quality of ``generated`` images (see the module docstring), per class and overall.

    Args:
        reference: The classifier trained on the real training images only.
        generated: (M, C, S, S) generated images; ``generated_targets`` (M, K) their labels.
        train_images, train_labels: The real training images of this cell.
        test_images, test_labels: The real test images (reference distribution only).
        test_features: Precomputed reference features of the test images, if at hand.

    Returns:
        ``{"per_class": {class: {...}}, "overall": {...}}``; every number is a float (NaN where a
        class has too few images for the measure).
    """

    gen_logits, gen_f = predict(reference, generated, with_features=True)
    _, train_f = predict(reference, train_images, with_features=True)
    if test_features is None:
        _, test_features = predict(reference, test_images, with_features=True)
    assert gen_f is not None and train_f is not None and test_features is not None
    gen_label = generated_targets.argmax(1)
    pred = gen_logits.argmax(1)
    agrees = generated_targets.gather(1, pred[:, None]).squeeze(1) > 0
    nn_gen = nearest_rmse(generated, train_images)
    nn_test = nearest_rmse(test_images, train_images)
    per_class: dict[str, dict[str, float]] = {}
    for c, name in enumerate(classes):
        g, t, r = gen_label == c, test_labels == c, train_labels == c
        per_class[name] = {
            "n_generated": int(g.sum()),
            "fd": frechet_distance(gen_f[g], test_features[t]),
            "fd_real": frechet_distance(train_f[r], test_features[t]),
            "kid": kernel_distance(gen_f[g], test_features[t]),
            "kid_real": kernel_distance(train_f[r], test_features[t]),
            "nn_rmse": _median(nn_gen[g]),
            "nn_rmse_test": _median(nn_test[t]),
            "label_agreement": float(agrees[g].float().mean()) if bool(g.any()) else float("nan"),
        }
    keys = ("fd", "fd_real", "kid", "kid_real", "nn_rmse", "nn_rmse_test")
    overall: dict[str, float] = {
        key: float(np.nanmean([v[key] for v in per_class.values()])) if any(not math.isnan(v[key]) for v in per_class.values()) else float("nan")
        for key in keys
    }
    overall["label_agreement"] = float(agrees.float().mean())
    overall["nn_ratio"] = overall["nn_rmse"] / overall["nn_rmse_test"] if overall["nn_rmse_test"] > 0 else float("nan")
    overall["n_generated"] = int(generated.shape[0])
    return {"per_class": per_class, "overall": overall}
