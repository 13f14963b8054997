"""A small U-Net for image diffusion: residual blocks with GroupNorm, a sinusoidal timestep embedding
(plus an optional class-label embedding), self-attention at the lowest resolution.

Layout (Ho et al., 2020, slimmed down; one skip connection per resolution)::

    x (B, C, H, W) -> conv_in -> [res_blocks x ResBlock at channels[i], skip_i, downsample] for each level i
                   -> middle: ResBlock, (SelfAttention), ResBlock
                   -> [upsample to skip_i's size, concat skip_i, res_blocks x ResBlock] for each level, coarse to fine
                   -> GroupNorm, SiLU, conv_out (zero-initialised: the network starts at output 0)

Downsampling is a stride-2 3x3 convolution (H -> ceil(H / 2)), upsampling a nearest-neighbour resize to
the skip's exact size followed by a 3x3 convolution, so any H, W works: 28 -> 14 -> 7, 12 -> 6 -> 3,
7 -> 4 -> 2. The timestep embedding is ``nets.denoiser.timestep_embedding`` followed by a two-layer MLP;
a label embedding (``n_classes`` classes plus one "null" class, index ``n_classes``, for classifier-free
guidance) is added to it, and every ResBlock adds a projection of the sum to its feature maps.

References:
    | Denoising Diffusion Probabilistic Models (Ho et al., 2020)
    | https://arxiv.org/abs/2006.11239
    | U-Net: Convolutional Networks for Biomedical Image Segmentation (Ronneberger et al., 2015)
    | https://arxiv.org/abs/1505.04597
    | Classifier-Free Diffusion Guidance (Ho & Salimans, 2022)
    | https://arxiv.org/abs/2207.12598

Example:
    >>> net = UNet(1, 1, channels=(16, 32), n_classes=10)
    >>> net(torch.randn(4, 1, 8, 8), torch.tensor([1, 10, 100, 1000]), torch.tensor([0, 3, 9, 10])).shape
    torch.Size([4, 1, 8, 8])
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .denoiser import timestep_embedding


def group_norm(channels: int, groups: int = 8) -> nn.GroupNorm:
    """GroupNorm with the largest number of groups <= ``groups`` that divides ``channels``."""
    return nn.GroupNorm(math.gcd(channels, groups), channels)


class ResBlock(nn.Module):
    """x + conv(SiLU(GN(conv(SiLU(GN(x))) + proj(emb)))), with a 1x1 convolution on the skip when widths differ."""

    def __init__(self, c_in: int, c_out: int, emb_dim: int, dropout: float = 0.0, groups: int = 8):
        super().__init__()
        self.norm1, self.conv1 = group_norm(c_in, groups), nn.Conv2d(c_in, c_out, 3, padding=1)
        self.emb = nn.Linear(emb_dim, c_out)
        self.norm2, self.drop = group_norm(c_out, groups), nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        nn.init.zeros_(self.conv2.weight)          # each block starts as the identity (Ho et al.'s zero init)
        nn.init.zeros_(self.conv2.bias)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        """x (B, c_in, H, W), emb (B, emb_dim) -> (B, c_out, H, W)."""
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.emb(F.silu(emb))[:, :, None, None]
        h = self.conv2(self.drop(F.silu(self.norm2(h))))
        return self.skip(x) + h


class SelfAttention(nn.Module):
    """Multi-head self-attention over the H * W positions, residual, output projection zero-initialised."""

    def __init__(self, channels: int, heads: int = 4, groups: int = 8):
        super().__init__()
        self.heads = math.gcd(channels, heads)
        self.norm = group_norm(channels, groups)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = nn.Conv2d(channels, channels, 1)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x: Tensor) -> Tensor:
        B, C, H, W = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(B, 3, self.heads, C // self.heads, H * W).unbind(1)
        # (B, heads, C/heads, HW) -> attention over positions, per head
        out = F.scaled_dot_product_attention(q.transpose(-1, -2), k.transpose(-1, -2), v.transpose(-1, -2))
        return x + self.proj(out.transpose(-1, -2).reshape(B, C, H, W))


class UNet(nn.Module):
    """eps/v-prediction network: (x_t (B, C, H, W), t (B,), label (B,)) -> (B, out_channels, H, W).

    Arguments:
        in_channels: channels C of the input image.
        out_channels: channels of the output.
        channels: width of each resolution level; len(channels) - 1 downsamplings.
        res_blocks: ResBlocks per level on each side of the U.
        attention: self-attention in the middle (lowest resolution).
        n_classes: classes of the label (0: no label input); index ``n_classes`` is the null label.
        dropout: dropout inside the ResBlocks.
        groups: GroupNorm groups (reduced to a divisor of each width).
    """

    def __init__(self, in_channels: int, out_channels: int, channels: Sequence[int] = (32, 64, 64),
                 res_blocks: int = 1, attention: bool = True, n_classes: int = 0, dropout: float = 0.0,
                 groups: int = 8):
        super().__init__()
        chs = [int(c) for c in channels]
        if not chs or any(c < 1 for c in chs) or res_blocks < 1:
            raise ValueError(f"channels must be a non-empty sequence of positive integers and res_blocks >= 1, "
                             f"got {channels!r}, {res_blocks!r}")
        self.base, emb_dim = chs[0] + chs[0] % 2, 4 * chs[0]
        self.time_mlp = nn.Sequential(nn.Linear(self.base, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        self.n_classes = int(n_classes)
        self.label_emb = nn.Embedding(self.n_classes + 1, emb_dim) if self.n_classes > 0 else None
        block = lambda a, b: ResBlock(a, b, emb_dim, dropout, groups)
        self.conv_in = nn.Conv2d(in_channels, chs[0], 3, padding=1)
        self.down, self.downsample = nn.ModuleList(), nn.ModuleList()
        prev = chs[0]
        for i, c in enumerate(chs):
            self.down.append(nn.ModuleList([block(prev if r == 0 else c, c) for r in range(res_blocks)]))
            prev = c
            if i < len(chs) - 1:
                self.downsample.append(nn.Conv2d(c, c, 3, stride=2, padding=1))   # H -> ceil(H / 2)
        self.mid1, self.mid2 = block(prev, prev), block(prev, prev)
        self.attn = SelfAttention(prev, groups=groups) if attention else nn.Identity()
        self.up, self.upsample = nn.ModuleList(), nn.ModuleList()
        for i in reversed(range(len(chs))):
            c = chs[i]
            if i < len(chs) - 1:                 # from level i + 1 (width prev) to level i: resize, conv to width c
                self.upsample.append(nn.Conv2d(prev, c, 3, padding=1))
                prev = c
            self.up.append(nn.ModuleList([block(prev + c if r == 0 else c, c) for r in range(res_blocks)]))
            prev = c
        self.norm_out = group_norm(chs[0], groups)
        self.conv_out = nn.Conv2d(chs[0], out_channels, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    def embed(self, t: Tensor, label: Tensor | None) -> Tensor:
        """The (B, emb_dim) conditioning vector of timesteps t (B,) and labels (B,) in [0, n_classes]."""
        emb = self.time_mlp(timestep_embedding(t, self.base))
        if self.label_emb is not None:
            if label is None:
                raise ValueError("this UNet was built with n_classes > 0: pass a label (n_classes is the null label)")
            emb = emb + self.label_emb(label)
        return emb

    def forward(self, x: Tensor, t: Tensor, label: Tensor | None = None) -> Tensor:
        """x (B, C, H, W), t (B,) timesteps (float or int), label (B,) long or None -> (B, out_channels, H, W)."""
        emb = self.embed(t.expand(x.shape[0]), label).to(x.dtype)   # (B, emb_dim)
        h = self.conv_in(x)                                          # (B, c0, H, W)
        skips = []
        for i, level in enumerate(self.down):
            for blk in level:
                h = blk(h, emb)
            skips.append(h)                                          # (B, c_i, H_i, W_i)
            if i < len(self.downsample):
                h = self.downsample[i](h)                            # (B, c_i, ceil(H_i / 2), ceil(W_i / 2))
        h = self.mid2(self.attn(self.mid1(h, emb)), emb)
        for j, level in enumerate(self.up):
            i = len(self.down) - 1 - j
            if j > 0:
                h = F.interpolate(h, size=skips[i].shape[-2:], mode="nearest")
                h = self.upsample[j - 1](h)                          # (B, c_i, H_i, W_i)
            h = torch.cat([h, skips[i]], dim=1)
            for blk in level:
                h = blk(h, emb)
        return self.conv_out(F.silu(self.norm_out(h)))
