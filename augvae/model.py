"""The convolutional VAE of the paper (the Keras VAE example), made configurable.

Example:
    >>> import torch
    >>> from augvae import ConvVAE
    >>> model = ConvVAE(image_size=28, latent_dim=2)
    >>> x = torch.rand(4, 1, 28, 28)
    >>> mu, logvar = model.encode(x)
    >>> mu.shape, model.decode(mu).shape
    (torch.Size([4, 2]), torch.Size([4, 1, 28, 28]))
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from huggingface_hub import ModelHubMixin
from torch import Tensor, nn

from augvae._convert import RANGE_TOLERANCE
from augvae.checkpoint import DEFECTS_FILE, LATENTS_FILE, LoadedModel, read_model_folder, save_model
from augvae.config import ModelConfig
from augvae.errors import InputError, ModelFolderError, OutputError

__all__ = ["ConvVAE", "VAEOutput", "LossTerms", "check_images", "load_model"]


class VAEOutput(NamedTuple):
    """What :meth:`ConvVAE.forward` returns."""

    recon: Tensor  #: (B, C, S, S) reconstruction in [0, 1]
    logits: Tensor  #: (B, C, S, S) pre-sigmoid decoder output (for a stable BCE)
    mu: Tensor  #: (B, D) posterior mean
    logvar: Tensor  #: (B, D) posterior log-variance
    z: Tensor  #: (B, D) the reparameterized sample fed to the decoder


class LossTerms(NamedTuple):
    """The ELBO's terms, each the batch mean of a per-image sum (as in the Keras example)."""

    loss: Tensor
    recon: Tensor
    kl: Tensor
    kl_per_dim: Tensor  #: (D,) batch-mean KL of each latent dimension: a collapse detector


def check_images(x: Any, channels: int, image_size: int, what: str = "input") -> Tensor:
    """Validate a ``(B, C, S, S)`` float batch in [0, 1]; raise :class:`InputError` naming the fix.

    Example:
        >>> check_images(torch.zeros(2, 1, 28, 28), 1, 28).shape
        torch.Size([2, 1, 28, 28])
    """
    if not isinstance(x, Tensor):
        raise InputError(f"{what} must be a torch.Tensor of shape (B, {channels}, {image_size}, {image_size}), got {type(x).__name__}")
    if x.ndim != 4:
        raise InputError(f"{what} must have 4 dimensions (B, C, H, W), got shape {tuple(x.shape)}; add a batch dimension with x.unsqueeze(0)")
    if x.shape[0] == 0:
        raise InputError(f"{what} is an empty batch (B = 0); pass at least one image")
    if x.shape[1] != channels:
        raise InputError(f"{what} has {x.shape[1]} channels but the model takes {channels}; convert the images to {channels} channel(s)")
    if tuple(x.shape[2:]) != (image_size, image_size):
        raise InputError(f"{what} is {x.shape[2]}x{x.shape[3]} but the model takes {image_size}x{image_size}; resize the images first")
    if not x.is_floating_point():
        raise InputError(f"{what} has dtype {x.dtype}; expected float in [0, 1] (divide uint8 images by 255)")
    if not bool(torch.isfinite(x).all()):
        raise InputError(f"{what} contains NaN or infinite values")
    lo, hi = float(x.min()), float(x.max())
    if lo < -RANGE_TOLERANCE or hi > 1.0 + RANGE_TOLERANCE:  # 0-255 floats would train a VAE that decodes nothing useful
        raise InputError(f"{what} has values in [{lo:.3g}, {hi:.3g}] but must be in [0, 1]; divide 8-bit images by 255 "
                         "(and do not normalise them)")
    return x


def _channels_last(x: Tensor) -> Tensor:
    """The same values in channels-last layout (NHWC strides), the layout oneDNN's fast CPU kernels use.

    A one-channel tensor is already laid out as NHWC in memory, but ``contiguous(channels_last)``
    keeps its NCHW strides, which sends the convolution down the slower NCHW path: give it the NHWC
    strides explicitly (a view, no copy).
    """
    if x.shape[1] == 1:
        x = x.contiguous()
        return x.as_strided(x.shape, (x.shape[2] * x.shape[3], 1, x.shape[3], 1))
    return x.contiguous(memory_format=torch.channels_last)


class ConvVAE(nn.Module, ModelHubMixin, library_name="augvae", tags=["vae", "data-augmentation", "defect-detection"]):
    """A convolutional VAE: ``encode(x) -> (mu, logvar)``, ``decode(z) -> x``.

    Encoder: ``stages`` x [conv 3x3 stride 2 + ReLU], flatten, dense ``hidden_dim`` + ReLU, then two
    linear heads for the mean and log-variance. Decoder: dense + ReLU to the last feature map, the
    mirrored transposed-conv stages, and a 3x3 transposed conv to ``channels`` with a sigmoid.
    Weights start as in Keras (Glorot-uniform kernels, zero biases), as the paper left them.

    Args:
        config: The architecture; or pass its fields as keyword arguments.

    Saving and loading use the names timm and diffusers users know: :meth:`save_pretrained` writes a
    model folder (``config.json`` + ``model.safetensors``; see :mod:`augvae.checkpoint`) and
    :meth:`from_pretrained` reads one, from a local folder or (through ``huggingface_hub``, where
    there is network) from a Hub repository. ``save`` and ``load`` are aliases.

    Example:
        >>> import torch
        >>> model = ConvVAE(image_size=64, latent_dim=8)
        >>> out = model(torch.rand(2, 1, 64, 64))
        >>> out.recon.shape, out.z.shape
        (torch.Size([2, 1, 64, 64]), torch.Size([2, 8]))
    """

    #: On CPU, run the convolutions on channels-last activations (the weights and the outputs keep
    #: their usual layout): the same results up to float rounding, about 1.3-2x faster training and
    #: decoding on CPU (``benchmarks/perf.py``). Set False on an instance for the plain NCHW path.
    cpu_channels_last: bool = True
    #: Without gradients on CPU, encode and decode large batches in slices whose largest feature
    #: map fits in this many bytes: cache-sized slices decode the 64 px model 1.7x faster than one
    #: 64-row pass, and bound the memory. Rows are independent, so the result is the same up to
    #: float rounding; 0 turns it off.
    cpu_slice_bytes: int = 8 << 20

    def __init__(self, config: ModelConfig | None = None, **kwargs: Any) -> None:
        super().__init__()
        if config is None:
            config = ModelConfig(**kwargs)
        elif kwargs:
            raise TypeError("pass either a ModelConfig or keyword arguments, not both")
        self.config = config
        widths = config.resolved_widths()
        sizes = config.stage_sizes()
        self._last = (widths[-1], sizes[-1], sizes[-1])

        # ReLU and leaky ReLU run in place: every one follows a conv or dense layer whose backward
        # does not need its output, and their backward gives bitwise the same gradients from the
        # result as from the input (about 10% faster training on CPU). ELU's would not, so it copies.
        act = {"relu": lambda: nn.ReLU(inplace=True), "leaky_relu": lambda: nn.LeakyReLU(0.2, inplace=True),
               "elu": nn.ELU}[config.activation]
        enc: list[nn.Module] = []
        in_ch = config.channels
        for w in widths:
            enc += [nn.Conv2d(in_ch, w, 3, stride=2, padding=1), act()]
            in_ch = w
        self.encoder = nn.Sequential(*enc, nn.Flatten(), nn.Linear(widths[-1] * sizes[-1] ** 2, config.hidden_dim), act())
        self.fc_mu = nn.Linear(config.hidden_dim, config.latent_dim)
        self.fc_logvar = nn.Linear(config.hidden_dim, config.latent_dim)

        self.fc_dec = nn.Linear(config.latent_dim, widths[-1] * sizes[-1] ** 2)
        self.dec_act = act()
        dec: list[nn.Module] = []
        in_ch = widths[-1]
        # Mirror the encoder: stage i maps sizes[i+1] -> sizes[i]; a stride-2 transposed conv with
        # k=3, p=1 gives 2n-1, so output_padding (0 or 1) restores even sizes exactly.
        for i in reversed(range(len(widths))):
            out_pad = sizes[i] - (2 * sizes[i + 1] - 1)
            dec += [nn.ConvTranspose2d(in_ch, widths[i], 3, stride=2, padding=1, output_padding=out_pad), act()]
            in_ch = widths[i]
        dec.append(nn.ConvTranspose2d(in_ch, config.channels, 3, stride=1, padding=1))
        self.decoder = nn.Sequential(*dec)
        # The largest encoder and decoder feature maps of one image, in elements (for slicing big batches).
        self._encode_elems = max(w * sizes[i + 1] ** 2 for i, w in enumerate(widths))
        self._decode_elems = max(w * sizes[i] ** 2 for i, w in enumerate(widths))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Keras defaults: Glorot-uniform weights, zero biases."""
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)

    @property
    def device(self) -> torch.device:
        """The device the weights live on."""
        return next(self.parameters()).device

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Posterior mean and log-variance of images ``x`` (B, C, S, S) in [0, 1]: two (B, D) tensors."""
        h = self._hidden(x)
        return self.fc_mu(h), self.fc_logvar(h)

    def _hidden(self, x: Tensor) -> Tensor:
        """The encoder's dense-layer activations ``(B, hidden_dim)``, the input of the two heads."""
        rows = self._slice_rows(self._encode_elems, x)
        if rows:
            return torch.cat([self.encoder(self._layout(part)) for part in x.split(rows)])
        return self.encoder(self._layout(x))

    def _layout(self, x: Tensor) -> Tensor:
        return _channels_last(x) if self.cpu_channels_last and x.device.type == "cpu" else x

    def _slice_rows(self, elems: int, batch: Tensor) -> int:
        """Rows per slice for ``batch`` (without gradients, on CPU, larger than a slice), else 0: one pass."""
        rows = max(1, self.cpu_slice_bytes // (4 * elems)) if self.cpu_slice_bytes > 0 else 0
        if 0 < rows < batch.shape[0] and batch.device.type == "cpu" and not torch.is_grad_enabled():
            return rows
        return 0

    def decode_logits(self, z: Tensor) -> Tensor:
        """Decoder output before the sigmoid, (B, C, S, S)."""
        if z.ndim != 2 or z.shape[1] != self.config.latent_dim:
            raise InputError(f"latent vectors must have shape (B, {self.config.latent_dim}), got {tuple(z.shape)}")
        rows = self._slice_rows(self._decode_elems, z)
        if rows:
            return torch.cat([self._decode_logits(part) for part in z.split(rows)])
        return self._decode_logits(z)

    def _decode_logits(self, z: Tensor) -> Tensor:
        h = self.dec_act(self.fc_dec(z)).view(z.shape[0], *self._last)
        return self.decoder(self._layout(h)).contiguous()

    def decode(self, z: Tensor) -> Tensor:
        """Images in [0, 1], (B, C, S, S), from latent vectors ``z`` (B, D)."""
        return torch.sigmoid(self.decode_logits(z))

    @staticmethod
    def reparameterize(mu: Tensor, logvar: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """``mu + eps * std`` with ``eps ~ N(0, I)``; ``generator`` makes the noise reproducible."""
        eps = torch.randn(mu.shape, generator=generator, dtype=mu.dtype, device="cpu" if generator is not None else mu.device)
        return mu + eps.to(mu.device) * torch.exp(0.5 * logvar)

    def forward(self, x: Tensor, generator: torch.Generator | None = None) -> VAEOutput:
        """Encode, sample with the reparameterization trick, decode."""
        mu, logvar = self.encode(x)
        z = self.reparameterize(mu, logvar, generator)
        logits = self.decode_logits(z)
        return VAEOutput(torch.sigmoid(logits), logits, mu, logvar, z)

    def loss(self, x: Tensor, out: VAEOutput, beta: float | None = None) -> LossTerms:
        """The negative ELBO: reconstruction (BCE or MSE, summed over pixels) + beta * KL."""
        beta = self.config.beta if beta is None else beta
        if self.config.recon_loss == "bce":
            rec = F.binary_cross_entropy_with_logits(out.logits, x, reduction="none")
        else:
            rec = (out.recon - x) ** 2
        recon = rec.flatten(1).sum(1).mean()
        kl_per_dim = (0.5 * (out.mu**2 + out.logvar.exp() - 1.0 - out.logvar)).mean(0)
        kl = kl_per_dim.sum()
        return LossTerms(recon + beta * kl, recon, kl, kl_per_dim)

    @torch.no_grad()
    def encode_batched(self, images: Tensor, batch_size: int = 256) -> tuple[Tensor, Tensor]:
        """Encode many images in batches without gradients; returns CPU ``(mu, logvar)``."""
        check_images(images, self.config.channels, self.config.image_size, "images")
        mus, logvars = [], []
        for start in range(0, images.shape[0], batch_size):
            mu, logvar = self.encode(images[start : start + batch_size].to(self.device))
            mus.append(mu.cpu())
            logvars.append(logvar.cpu())
        return torch.cat(mus), torch.cat(logvars)

    @torch.no_grad()
    def decode_batched(self, z: Tensor, batch_size: int = 1024) -> Tensor:
        """Decode many latent vectors in batches without gradients; returns CPU images."""
        return torch.cat([self.decode(z[s : s + batch_size].to(self.device)).cpu() for s in range(0, z.shape[0], batch_size)])

    # -------------------------------------------------------------- model folders (and the Hub)
    def save_pretrained(self, save_directory: str | os.PathLike[str], **kwargs: Any) -> Any:
        """Write a model folder (``config.json``, ``model.safetensors``, a model card), as ``huggingface_hub`` does.

        Refused over a trained model folder (its sources belong to its own weights): checked first,
        because ``huggingface_hub`` removes the folder's ``config.json`` before it writes.
        """
        _refuse_trained_folder(Path(save_directory))
        return super().save_pretrained(save_directory, **kwargs)

    def _save_pretrained(self, save_directory: Path) -> None:
        """Write ``config.json`` and ``model.safetensors`` (called by ``save_pretrained``)."""
        save_model(save_directory, self)

    def save(self, path: str | os.PathLike[str], *, train_config: Any = None, data: dict[str, Any] | None = None,
             latents: dict[str, Tensor] | None = None, defects: dict[str, Tensor] | None = None) -> None:
        """Write a model folder, optionally with the sections training writes (see :func:`augvae.checkpoint.save_model`).

        Without them this is :meth:`save_pretrained` for a local folder (no model card).
        """
        _refuse_trained_folder(Path(path))
        save_model(path, self, train_config=train_config, data=data, latents=latents, defects=defects)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike[str], *, device: str | torch.device = "cpu",
                        revision: str | None = None, cache_dir: str | os.PathLike[str] | None = None,
                        force_download: bool = False, local_files_only: bool = False, token: str | bool | None = None,
                        **model_kwargs: Any) -> ConvVAE:
        """Load a model folder written by :meth:`save_pretrained` or by training; never unpickles.

        Args:
            pretrained_model_name_or_path: A local model folder, or a Hub repository id (``user/name``),
                downloaded (only ``config.json`` and ``*.safetensors``) with ``huggingface_hub``.
            device: Where to put the model.
            revision, cache_dir, force_download, local_files_only, token: As in ``huggingface_hub``.

        Example:
            >>> import tempfile, torch
            >>> m = ConvVAE(latent_dim=3)
            >>> d = tempfile.mkdtemp()
            >>> m.save_pretrained(d)
            >>> z = torch.zeros(1, 3)
            >>> bool(torch.equal(ConvVAE.from_pretrained(d).decode(z), m.decode(z)))
            True
        """
        if model_kwargs:
            raise TypeError(f"unexpected argument(s) {', '.join(model_kwargs)}; the architecture comes from config.json")
        return load_model(_local_folder(pretrained_model_name_or_path, revision, cache_dir, force_download, local_files_only, token),
                          device).model

    @classmethod
    def load(cls, path: str | os.PathLike[str], device: str | torch.device = "cpu") -> ConvVAE:
        """:meth:`from_pretrained` for a local folder only: never reaches the network."""
        return load_model(path, device).model


def _refuse_trained_folder(root: Path) -> None:
    """Refuse to write bare weights over a trained model folder: its sources belong to the old weights.

    A trained folder's ``latents.safetensors`` / ``defects.safetensors`` and its ``data`` section
    describe the images its own weights encoded; new weights under them would decode other images.
    """
    held = [name for name in (LATENTS_FILE, DEFECTS_FILE) if (root / name).exists()]
    if held:
        raise OutputError(
            f"{root} is a trained model folder ({', '.join(held)} belong to its weights); saving other weights there "
            "would orphan them: save into a new folder"
        )


def _local_folder(name: str | os.PathLike[str], revision: str | None, cache_dir: Any, force_download: bool,
                  local_files_only: bool, token: Any) -> Path:
    """A local folder as it is; anything that looks like a Hub id (``user/name``) is downloaded."""
    path = Path(name)
    text = os.fspath(name)
    if path.exists() or not re.fullmatch(r"[A-Za-z0-9][\w.-]*/[\w.-]+", text):
        return path  # read_config explains what is wrong with a local path
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    try:
        return Path(snapshot_download(text, revision=revision, cache_dir=cache_dir, force_download=force_download,
                                      local_files_only=local_files_only, token=token,
                                      allow_patterns=["config.json", "*.safetensors", "README.md"]))
    except (HfHubHTTPError, LocalEntryNotFoundError, OSError, ValueError) as err:
        raise ModelFolderError(
            f"{text!r} is neither a local model folder nor a downloadable Hub repository ({type(err).__name__}); "
            "check the path, or the repository id and your network"
        ) from None


def load_model(path: str | os.PathLike[str], device: str | torch.device = "cpu") -> LoadedModel:
    """Load a model folder with its config and data description (see :mod:`augvae.checkpoint`).

    Example:
        >>> import tempfile
        >>> d = tempfile.mkdtemp()
        >>> ConvVAE(latent_dim=2).save_pretrained(d)
        >>> load_model(d).model.config.latent_dim
        2
    """
    return read_model_folder(path, ConvVAE, device)
