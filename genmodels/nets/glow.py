"""Invertible layers of multi-scale image flows (RealNVP, Glow), each with an exact log-determinant.

Every layer maps a (B, C, H, W) tensor to one of the same size and returns ``(y, log_det)`` where
``log_det`` is (B,) = log |det dy/dx| of the layer for each example; ``inverse(y)`` undoes it.

- :func:`squeeze` / :func:`unsqueeze`: space-to-depth, (C, H, W) <-> (4C, H/2, W/2); a permutation,
  so its log-det is 0.
- :class:`ActNorm`: y = (x + b) * exp(s) per channel, log-det = H W sum(s). ``b`` and ``s`` are set
  from the first batch it sees while ``init_pending`` is on (zero mean, unit variance per channel).
- :class:`InvConv1x1`: y = W x at every pixel with W = P L (U + diag(sign * exp(log_s))) (the LU form
  of Glow), log-det = H W sum(log_s), O(C) instead of O(C^3).
- :class:`AffineCoupling`: y_b = (x_b + t(x_a)) * sigmoid(r(x_a) + 2), y_a = x_a, log-det =
  sum log sigmoid(r + 2). The scale lies in (0, 1) (stable; Glow's choice); expansion comes from
  ActNorm. ``x_a`` is half of the channels, or, where the image has one channel and cannot be
  squeezed, one colour of a checkerboard (RealNVP's spatial mask).
- :class:`FlowStep`: ActNorm -> InvConv1x1 -> AffineCoupling; the coupling network may see a class
  label (a learned per-class vector added to its first hidden layer).
- :class:`SplitPrior` / :class:`TopPrior`: the learned (class-conditional) Gaussian priors of the
  factored-out halves and of the top latent.

References:
    | Density estimation using Real NVP (Dinh et al., 2017) https://arxiv.org/abs/1605.08803
    | Glow: Generative Flow with Invertible 1x1 Convolutions (Kingma & Dhariwal, 2018)
    | https://arxiv.org/abs/1807.03039

Example:
    >>> step = FlowStep(4, hidden=16)
    >>> x = torch.randn(2, 4, 6, 6)
    >>> y, log_det = step(x)                  # (2, 4, 6, 6), (2,)
    >>> torch.allclose(step.inverse(y), x, atol=1e-5)
    True
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

_LOG_2PI = math.log(2 * math.pi)


def squeeze(x: Tensor) -> Tensor:
    """(B, C, H, W) -> (B, 4C, H/2, W/2): each 2x2 block becomes 4 channels (H, W even)."""
    B, C, H, W = x.shape
    x = x.reshape(B, C, H // 2, 2, W // 2, 2)
    return x.permute(0, 1, 3, 5, 2, 4).reshape(B, 4 * C, H // 2, W // 2)


def unsqueeze(x: Tensor) -> Tensor:
    """The inverse of :func:`squeeze`: (B, 4C, H, W) -> (B, C, 2H, 2W)."""
    B, C4, H, W = x.shape
    x = x.reshape(B, C4 // 4, 2, 2, H, W)
    return x.permute(0, 1, 4, 2, 5, 3).reshape(B, C4 // 4, 2 * H, 2 * W)


def gaussian_log_prob(z: Tensor, mean: Tensor, log_std: Tensor) -> Tensor:
    """sum over (C, H, W) of log N(z; mean, exp(log_std)^2): (B,)."""
    lp = -0.5 * ((z - mean) * torch.exp(-log_std)) ** 2 - log_std - 0.5 * _LOG_2PI
    return lp.flatten(1).sum(1)


class ActNorm(nn.Module):
    """Per-channel affine y = (x + bias) * exp(log_scale), initialised from data (Glow, section 3.1)."""

    def __init__(self, channels: int):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.log_scale = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.init_pending = False      # set by the owner to initialise from the next batch it sees

    @torch.no_grad()
    def _initialize(self, x: Tensor) -> None:
        mean = x.mean(dim=(0, 2, 3), keepdim=True)
        std = x.std(dim=(0, 2, 3), keepdim=True, unbiased=False)
        self.bias.copy_(-mean)
        self.log_scale.copy_(-torch.log(std + 1e-6))
        self.init_pending = False

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        if self.init_pending:
            self._initialize(x)
        y = (x + self.bias) * torch.exp(self.log_scale)
        ld = self.log_scale.sum() * (x.shape[2] * x.shape[3])
        return y, ld.expand(x.shape[0])

    def inverse(self, y: Tensor) -> Tensor:
        return y * torch.exp(-self.log_scale) - self.bias


class InvConv1x1(nn.Module):
    """Invertible 1x1 convolution in LU form: W = P L (U + diag(sign * exp(log_s))) (Glow, section 3.2).

    P (a permutation) and sign are fixed at a random rotation's LU decomposition; L (unit lower
    triangular), U (strictly upper triangular) and log_s are learned.
    """

    def __init__(self, channels: int):
        super().__init__()
        q = torch.linalg.qr(torch.randn(channels, channels))[0]       # a random rotation (global RNG)
        p, low, up = torch.linalg.lu(q)
        s = torch.diagonal(up)
        self.register_buffer("perm", p)
        self.register_buffer("sign_s", torch.sign(s))
        self.register_buffer("lower_mask", torch.tril(torch.ones(channels, channels), -1))
        self.register_buffer("eye", torch.eye(channels))
        self.lower = nn.Parameter(low)
        self.upper = nn.Parameter(torch.triu(up, 1))
        self.log_s = nn.Parameter(torch.log(s.abs()))

    def weight(self) -> Tensor:
        low = self.lower * self.lower_mask + self.eye
        up = self.upper * self.lower_mask.T + torch.diag(self.sign_s * torch.exp(self.log_s))
        return self.perm @ low @ up                                         # (C, C)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        C = x.shape[1]
        y = F.conv2d(x, self.weight().view(C, C, 1, 1))
        ld = self.log_s.sum() * (x.shape[2] * x.shape[3])
        return y, ld.expand(x.shape[0])

    def inverse(self, y: Tensor) -> Tensor:
        C = y.shape[1]
        w_inv = torch.linalg.inv(self.weight())
        return F.conv2d(y, w_inv.view(C, C, 1, 1))


class ZeroConv2d(nn.Module):
    """A 3x3 convolution that starts at zero, with a learned per-channel output scale exp(3 s) (Glow)."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, 3, padding=1)
        nn.init.zeros_(self.conv.weight)
        nn.init.zeros_(self.conv.bias)
        self.log_scale = nn.Parameter(torch.zeros(1, c_out, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x) * torch.exp(3.0 * self.log_scale)


class _ActNormOnly(ActNorm):
    """ActNorm inside a network: the output only (no log-det)."""

    def forward(self, x: Tensor) -> Tensor:  # type: ignore[override]
        return super().forward(x)[0]


class CouplingNet(nn.Module):
    """Glow's coupling network, conv3x3 -> ActNorm -> (+ class embedding) -> ReLU -> conv1x1 -> ActNorm
    -> ReLU -> ZeroConv3x3, so every coupling starts at the identity (up to sigmoid(2)).

    With ``n_classes > 0`` a per-class vector is added to the first hidden layer. It starts as
    N(0, 1) noise (random class features the zero-initialised output layer can pick up at once), not
    at zero, where Adam would need hundreds of steps to grow it.
    """

    def __init__(self, c_in: int, c_out: int, hidden: int, n_classes: int = 0):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, hidden, 3, padding=1, bias=False)
        self.norm1 = _ActNormOnly(hidden)
        self.conv2 = nn.Conv2d(hidden, hidden, 1, bias=False)
        self.norm2 = _ActNormOnly(hidden)
        self.out = ZeroConv2d(hidden, c_out)
        self.embed = nn.Embedding(n_classes, hidden) if n_classes > 0 else None

    def forward(self, x: Tensor, label: Tensor | None = None) -> Tensor:
        h = self.norm1(self.conv1(x))                                        # (B, hidden, H, W)
        if self.embed is not None and label is not None:
            h = h + self.embed(label)[:, :, None, None]
        h = F.relu(self.norm2(self.conv2(F.relu(h))))
        return self.out(h)


class AffineCoupling(nn.Module):
    """y_b = (x_b + t) * sigmoid(r + 2) with (t, r) = net(x_a, label); x_a passes unchanged.

    mask="channel": x_a is the first C // 2 channels (needs C >= 2).
    mask="checkerboard0" / "checkerboard1": x_a is the pixels with (i + j) % 2 == parity, all channels.
    """

    def __init__(self, channels: int, hidden: int, mask: str = "channel", n_classes: int = 0):
        super().__init__()
        if mask not in ("channel", "checkerboard0", "checkerboard1"):
            raise ValueError(f"unknown coupling mask {mask!r}")
        self.mask, self.channels = mask, channels
        if mask == "channel":
            if channels < 2:
                raise ValueError("a channel coupling needs at least 2 channels")
            self.c_a = channels // 2
            self.net = CouplingNet(self.c_a, 2 * (channels - self.c_a), hidden, n_classes)
        else:
            self.c_a = channels
            self.net = CouplingNet(channels, 2 * channels, hidden, n_classes)

    def _checker(self, x: Tensor) -> Tensor:
        """(1, 1, H, W) mask: 1 where x passes unchanged."""
        H, W = x.shape[2], x.shape[3]
        ij = torch.arange(H, device=x.device)[:, None] + torch.arange(W, device=x.device)[None, :]
        return ((ij % 2) == int(self.mask[-1])).to(x.dtype)[None, None]

    def _params(self, x_a: Tensor, label: Tensor | None) -> tuple[Tensor, Tensor]:
        h = self.net(x_a, label)
        shift, raw = h[:, 0::2], h[:, 1::2]
        return shift, raw + 2.0

    def forward(self, x: Tensor, label: Tensor | None = None) -> tuple[Tensor, Tensor]:
        if self.mask == "channel":
            x_a, x_b = x[:, :self.c_a], x[:, self.c_a:]
            shift, pre = self._params(x_a, label)
            y_b = (x_b + shift) * torch.sigmoid(pre)
            return torch.cat([x_a, y_b], 1), F.logsigmoid(pre).flatten(1).sum(1)
        m = self._checker(x)
        shift, pre = self._params(x * m, label)
        y = x * m + (1 - m) * (x + shift) * torch.sigmoid(pre)
        return y, ((1 - m) * F.logsigmoid(pre)).flatten(1).sum(1)

    def inverse(self, y: Tensor, label: Tensor | None = None) -> Tensor:
        if self.mask == "channel":
            y_a, y_b = y[:, :self.c_a], y[:, self.c_a:]
            shift, pre = self._params(y_a, label)
            return torch.cat([y_a, y_b / torch.sigmoid(pre) - shift], 1)
        m = self._checker(y)
        shift, pre = self._params(y * m, label)
        return y * m + (1 - m) * (y / torch.sigmoid(pre) - shift)


class FlowStep(nn.Module):
    """One step of Glow: ActNorm -> invertible 1x1 convolution -> affine coupling (which sees the label)."""

    def __init__(self, channels: int, hidden: int, mask: str = "channel", n_classes: int = 0):
        super().__init__()
        self.norm = ActNorm(channels)
        self.conv = InvConv1x1(channels)
        self.coupling = AffineCoupling(channels, hidden, mask, n_classes)

    def forward(self, x: Tensor, label: Tensor | None = None) -> tuple[Tensor, Tensor]:
        x, ld1 = self.norm(x)
        x, ld2 = self.conv(x)
        x, ld3 = self.coupling(x, label)
        return x, ld1 + ld2 + ld3

    def inverse(self, y: Tensor, label: Tensor | None = None) -> Tensor:
        return self.norm.inverse(self.conv.inverse(self.coupling.inverse(y, label)))


class SplitPrior(nn.Module):
    """p(z | h, label) = N(mean, exp(log_std)^2) with (mean, log_std) = ZeroConv(h) + embed(label).

    h is the half of the channels that stays in the flow; the label embedding (per channel, zero at
    the start) exists when ``n_classes > 0``.
    """

    def __init__(self, c_keep: int, c_z: int, n_classes: int):
        super().__init__()
        self.conv = ZeroConv2d(c_keep, 2 * c_z)
        self.embed = nn.Embedding(n_classes, 2 * c_z) if n_classes > 0 else None
        if self.embed is not None:
            nn.init.zeros_(self.embed.weight)

    def forward(self, h: Tensor, label: Tensor | None) -> tuple[Tensor, Tensor]:
        out = self.conv(h)                                                   # (B, 2 c_z, H, W)
        if self.embed is not None and label is not None:
            out = out + self.embed(label)[:, :, None, None]
        return out[:, 0::2], out[:, 1::2]


class TopPrior(nn.Module):
    """p(z_top | label) = N(mean, exp(log_std)^2), a learned mean and scale per element (and per class)."""

    def __init__(self, shape: tuple[int, int, int], n_classes: int):
        super().__init__()
        self.shape = shape
        self.base = nn.Parameter(torch.zeros(2, *shape))
        self.embed = nn.Embedding(n_classes, 2 * math.prod(shape)) if n_classes > 0 else None
        if self.embed is not None:
            nn.init.zeros_(self.embed.weight)

    def forward(self, n: int, label: Tensor | None) -> tuple[Tensor, Tensor]:
        out = self.base.expand(n, *self.base.shape)                          # (n, 2, C, H, W)
        if self.embed is not None and label is not None:
            out = out + self.embed(label).view(n, 2, *self.shape)
        return out[:, 0], out[:, 1]
