"""Convolutional blocks for image families: an encoder / discriminator trunk, a decoder / generator,
and the class-label plumbing that every conditional image family shares.

Sizes. Any image size works, odd ones included. The encoder halves the resolution ``len(channels)``
times with 3x3 convolutions of stride 2 and padding 1, which map h to ceil(h / 2) (28 -> 14 -> 7,
12 -> 6 -> 3, 13 -> 7 -> 4). The decoder starts from the encoder's smallest grid and doubles it by
nearest-neighbour upsampling and a 3x3 convolution (h -> 2h; not DCGAN's transposed convolutions,
whose checkerboard a discriminator exploits), so it ends at a size >= (H, W); the top-left (H, W)
is kept (a crop of at most ``2^levels - 1`` rows and columns; 28x28 and 8x8 need none).

Normalisation. GroupNorm, not BatchNorm: a sample then does not depend on the other images in its
batch, or on train/eval mode (a loaded model samples what the fitted one did). In the decoder it can
be *conditional* (as conditional BatchNorm in BigGAN / the projection-discriminator paper): the
gain and bias of each normalisation layer are affine functions of a conditioning vector, here the
class-label embedding.

Labels. ``batch["label"]`` holds a class in [0, K) or -1 (no label). ``LabelEmbedding`` has K + 1
rows, the last one for "no label", so partly labelled data train one model; K = 0 means no labels at
all and no embedding. ``class_counts`` / ``draw_labels`` keep and draw from the training class
frequencies (for unconditional sampling of a conditional model); ``check_label_condition`` validates
``sample(condition={"label": ...})``.

References:
    | Unsupervised Representation Learning with Deep Convolutional GANs (Radford et al., 2016)
    | https://arxiv.org/abs/1511.06434
    | Group Normalization (Wu & He, 2018) https://arxiv.org/abs/1803.08494
    | Deconvolution and Checkerboard Artifacts (Odena et al., 2016) https://distill.pub/2016/deconv-checkerboard/
    | cGANs with Projection Discriminator (Miyato & Koyama, 2018) https://arxiv.org/abs/1802.05637

Example:
    >>> enc = ConvEncoder(1, (28, 28), channels=(32, 64))
    >>> enc(torch.zeros(2, 1, 28, 28)).shape
    torch.Size([2, 64, 7, 7])
    >>> dec = ConvDecoder(16, 2, (28, 28), channels=(32, 64), cond_dim=8)
    >>> dec(torch.zeros(2, 16), torch.zeros(2, 8)).shape
    torch.Size([2, 2, 28, 28])
"""
from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..core import Batch, Spec
from ..errors import ConfigError, DataError

# ---------------------------------------------------------------- shapes and batches

def image_shape(spec: Spec, family: str) -> tuple[int, int, int]:
    """(C, H, W) of the spec's images; ConfigError for a spec that is not an image spec."""
    shape = tuple(spec.event_shape)
    if len(shape) != 3 or any(not isinstance(s, numbers.Integral) or s < 1 for s in shape):
        raise ConfigError(f"{family}: an image family needs spec.event_shape = (C, H, W) with positive sizes, "
                          f"got {shape!r}; is the data images (modality='image')?")
    return int(shape[0]), int(shape[1]), int(shape[2])


def n_classes(spec: Spec) -> int:
    k = spec.extra.get("n_classes", 0) if spec.extra else 0
    if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 0:
        raise ConfigError(f"spec.extra['n_classes'] must be an integer >= 0, got {k!r}")
    return int(k)


def down_sizes(height: int, width: int, levels: int) -> list[tuple[int, int]]:
    """Grid sizes after each stride-2 convolution (3x3, padding 1): h -> ceil(h / 2); levels + 1 entries."""
    sizes = [(height, width)]
    for _ in range(levels):
        h, w = sizes[-1]
        sizes.append(((h + 1) // 2, (w + 1) // 2))
    return sizes


def image_batch(batch: Batch, shape: tuple[int, int, int], K: int, device: torch.device,
                need_pixels: bool = False) -> tuple[Tensor, Tensor | None, Tensor]:
    """The batch's x (B, C, H, W) float, pixels (B, C, H, W) long (or None) and label (B,) long, checked.

    A missing label means "no label" (-1). Labels must be -1 or in [0, K)."""
    x = batch.get("x")
    if x is None or x.ndim != 4 or tuple(x.shape[1:]) != shape:
        got = None if x is None else tuple(x.shape)
        raise DataError(f'batch["x"] has shape {got}; the model expects images (B, {", ".join(map(str, shape))})')
    x = x.to(device=device, dtype=torch.get_default_dtype())
    B = x.shape[0]
    pixels = batch.get("pixels")
    if need_pixels:
        if pixels is None:
            raise DataError('batch has no "pixels" (the integer pixel values): the image codec provides them')
        if tuple(pixels.shape) != tuple(x.shape) or pixels.is_floating_point():
            raise DataError(f'batch["pixels"] must be an integer tensor of shape {tuple(x.shape)}, '
                            f"got {pixels.dtype} {tuple(pixels.shape)}")
        pixels = pixels.to(device).long()
    label = batch.get("label")
    if label is None:
        label = torch.full((B,), -1, dtype=torch.long, device=device)
    else:
        if tuple(label.shape) != (B,) or label.is_floating_point():
            raise DataError(f'batch["label"] must be an integer tensor of shape ({B},), got {label.dtype} '
                            f"{tuple(label.shape)}")
        label = label.to(device).long()
        if bool(((label < -1) | (label >= K)).any()):
            raise DataError(f"labels must be -1 (none) or in [0, {K}); got values {label.min().item()}.."
                            f"{label.max().item()}")
    return x, pixels, label


# ---------------------------------------------------------------- labels

def class_counts(label: Tensor, K: int) -> Tensor:
    """Counts (K + 1,) of each class in ``label`` (B,), the last entry counting unlabelled (-1) images."""
    idx = torch.where(label < 0, torch.full_like(label, K), label)
    return torch.bincount(idx.cpu(), minlength=K + 1).to(torch.get_default_dtype())


def draw_labels(counts: Tensor, n: int, generator: torch.Generator | None, device: torch.device) -> Tensor:
    """n labels drawn with the training frequencies ``counts`` (K + 1,); the last index K stands for
    "no label" and is returned as -1 (the model's embedding of unlabelled images)."""
    K = counts.shape[0] - 1
    idx = torch.multinomial(counts.to(device).float(), n, replacement=True, generator=generator)
    return torch.where(idx == K, torch.full_like(idx, -1), idx)


def check_label_condition(condition: Any, n: int, K: int, family: str, device: torch.device) -> Tensor:
    """``condition={"label": LongTensor (n,)}`` -> labels (n,) in [0, K); ConfigError / DataError otherwise."""
    if not isinstance(condition, dict) or set(condition) != {"label"}:
        keys = sorted(condition) if isinstance(condition, dict) else type(condition).__name__
        raise ConfigError(f"{family}: an image model conditions on the class label only: "
                          f'condition={{"label": LongTensor (n,)}}, got {keys}')
    if K == 0:
        raise ConfigError(f"{family}: this model was trained without labels; sample without a condition")
    label = condition["label"]
    if not isinstance(label, Tensor):
        label = torch.as_tensor(label)
    if label.is_floating_point() or label.dtype == torch.bool:
        raise DataError(f"condition label must be an integer class, got dtype {label.dtype}")
    label = label.reshape(-1).to(device).long()
    if label.shape[0] == 1 and n > 1:
        label = label.expand(n)
    if label.shape[0] != n:
        raise DataError(f"the condition has {label.shape[0]} labels; sample({n}, condition=...) needs {n}")
    if bool(((label < 0) | (label >= K)).any()):
        raise DataError(f"condition label must be a class in [0, {K}), got {label.min().item()}..{label.max().item()}")
    return label


class LabelEmbedding(nn.Module):
    """Class label (B,) in [0, K) or -1 -> a learned vector (B, dim); row K embeds "no label".

    Entries start N(0, 1) (torch's default), as loud as the N(0, I) noise or latent they are
    concatenated with: with entries of std 1/sqrt(dim), a 900-step MNIST GAN drew nearly the same
    digit for every label (only "1" followed its label)."""

    def __init__(self, n_classes: int, dim: int):
        super().__init__()
        self.n_classes = n_classes
        self.table = nn.Embedding(n_classes + 1, dim)

    def forward(self, label: Tensor) -> Tensor:
        return self.table(torch.where(label < 0, torch.full_like(label, self.n_classes), label))


# ---------------------------------------------------------------- layers

def _groups(channels: int, most: int = 8) -> int:
    return math.gcd(channels, most)


class CondGroupNorm(nn.Module):
    """GroupNorm whose gain and bias are shifted by affine functions of a conditioning vector y:
    (1 + gamma(y)) * norm(h) + beta(y); without y (cond_dim 0) a plain affine GroupNorm."""

    def __init__(self, channels: int, cond_dim: int = 0):
        super().__init__()
        self.norm = nn.GroupNorm(_groups(channels), channels)
        self.cond = nn.Linear(cond_dim, 2 * channels) if cond_dim > 0 else None
        if self.cond is not None:                       # start as the unconditional norm
            nn.init.zeros_(self.cond.weight)
            nn.init.zeros_(self.cond.bias)

    def forward(self, h: Tensor, y: Tensor | None = None) -> Tensor:
        h = self.norm(h)                                                    # (B, C, H, W)
        if self.cond is None or y is None:
            return h
        gamma, beta = self.cond(y).chunk(2, dim=-1)                         # (B, C) each
        return h * (1 + gamma[:, :, None, None]) + beta[:, :, None, None]


def _sn(layer: nn.Module, spectral: bool) -> nn.Module:
    return nn.utils.parametrizations.spectral_norm(layer) if spectral else layer


class ConvEncoder(nn.Module):
    """Image (B, C, H, W) -> feature map (B, channels[-1], h, w) with h, w = ``down_sizes(H, W, L)[-1]``.

    Each level: a 3x3 stride-2 convolution (padding 1) to ``channels[i]``, [GroupNorm], activation;
    then ``extra`` 3x3 stride-1 convolutions at the last level. ``spectral=True`` wraps every
    convolution in spectral normalisation (Miyato et al., 2018), as a GAN discriminator wants.
    """

    def __init__(self, in_channels: int, size: tuple[int, int], channels: Sequence[int] = (32, 64), *,
                 norm: bool = True, spectral: bool = False, extra: int = 0, slope: float = 0.2):
        super().__init__()
        layers: list[nn.Module] = []
        width = in_channels
        for c in channels:
            layers.append(_sn(nn.Conv2d(width, c, 3, stride=2, padding=1), spectral))
            if norm:
                layers.append(nn.GroupNorm(_groups(c), c))
            layers.append(nn.LeakyReLU(slope) if slope > 0 else nn.SiLU())
            width = c
        for _ in range(extra):
            layers.append(_sn(nn.Conv2d(width, width, 3, padding=1), spectral))
            if norm:
                layers.append(nn.GroupNorm(_groups(width), width))
            layers.append(nn.LeakyReLU(slope) if slope > 0 else nn.SiLU())
        self.net = nn.Sequential(*layers)
        h, w = down_sizes(size[0], size[1], len(channels))[-1]
        self.out_shape = (width, h, w)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class _UpBlock(nn.Module):
    """[cond] GroupNorm -> activation -> nearest 2x upsampling -> 3x3 convolution (h -> 2h).

    Upsampling then convolving, not a transposed convolution: a stride-2 transposed convolution
    paints a checkerboard that a discriminator learns to spot (Odena et al., 2016), and a GAN
    generator built from them collapsed here to one checkered image within 200 steps."""

    def __init__(self, c_in: int, c_out: int, cond_dim: int):
        super().__init__()
        self.norm = CondGroupNorm(c_in, cond_dim)
        self.conv = nn.Conv2d(c_in, c_out, 3, padding=1)

    def forward(self, h: Tensor, y: Tensor | None) -> Tensor:
        return self.conv(F.interpolate(F.silu(self.norm(h, y)), scale_factor=2.0, mode="nearest"))


class ConvDecoder(nn.Module):
    """A vector z (B, in_features) [and a conditioning vector y (B, cond_dim)] -> (B, out_channels, H, W).

    A linear layer maps [z, y] to ``channels[-1]`` maps on the encoder's smallest grid; each level
    then normalises (conditionally on y), applies SiLU and doubles the grid (nearest upsampling,
    3x3 convolution) down the channel list (``channels`` is given in encoder order, shallow to deep);
    a last norm / SiLU / 3x3 convolution gives ``out_channels``; the top-left (H, W) is kept.
    """

    def __init__(self, in_features: int, out_channels: int, size: tuple[int, int],
                 channels: Sequence[int] = (32, 64), cond_dim: int = 0):
        super().__init__()
        self.size, self.cond_dim = (int(size[0]), int(size[1])), cond_dim
        sizes = down_sizes(size[0], size[1], len(channels))
        self.start = (channels[-1], *sizes[-1])                             # (C, h, w)
        self.fc = nn.Linear(in_features + cond_dim, math.prod(self.start))
        widths = list(channels)
        self.ups = nn.ModuleList(_UpBlock(widths[i], widths[max(i - 1, 0)], cond_dim)
                                 for i in range(len(widths) - 1, -1, -1))
        self.out_norm = CondGroupNorm(widths[0], cond_dim)
        self.out = nn.Conv2d(widths[0], out_channels, 3, padding=1)

    def forward(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        if self.cond_dim:
            if y is None:
                raise ValueError("this decoder is conditional: pass y")
            z = torch.cat([z, y], dim=-1)
        h = self.fc(z).view(z.shape[0], *self.start)                        # (B, C_L, h, w)
        for up in self.ups:
            h = up(h, y)                                                    # doubles the grid
        h = self.out(F.silu(self.out_norm(h, y)))                           # (B, out, >= H, >= W)
        return h[:, :, :self.size[0], :self.size[1]]
