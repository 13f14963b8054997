"""A time-conditioned MLP: the denoiser network of tabular diffusion models (TabDDPM's MLPDiffusion).

The input (noisy real slots, one-hot noisy discrete slots) is projected to ``time_dim`` and added to
an embedding of the timestep (sinusoidal features, then a small MLP); a plain MLP maps the sum to the
outputs. The timestep may be a tensor of any shape that broadcasts against the input's leading
dimensions, so rows that share a timestep share one embedding (a (P, 1) grid of timesteps against a
(P, B, F) input costs P embeddings, not P * B).

References:
    | Denoising Diffusion Probabilistic Models (Ho et al., 2020)
    | https://arxiv.org/abs/2006.11239
    | TabDDPM: Modelling Tabular Data with Diffusion Models (Kotelnikov et al., 2023)
    | https://arxiv.org/abs/2209.15421

Example:
    >>> net = TimeMLP(5, 3, hidden=(32, 32), time_dim=16)
    >>> net(torch.randn(4, 5), torch.tensor([1, 10, 100, 1000])).shape
    torch.Size([4, 3])
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from .mlp import Activation, mlp


def timestep_embedding(t: Tensor, dim: int, max_period: float = 10000.0) -> Tensor:
    """Sinusoidal features of timesteps ``t`` (any shape, may be fractional): (*t.shape, dim); dim even."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.to(torch.float32)[..., None] * freqs                                   # (*t.shape, half)
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


class TimeMLP(nn.Module):
    """out = mlp(proj(h) + time_mlp(sinusoidal(t))).

    Arguments:
        in_features: width of the input h.
        out_features: width of the output.
        hidden: hidden widths of the MLP after the input/time merge.
        time_dim: width of the timestep embedding and of the merged representation (even).
    """

    def __init__(self, in_features: int, out_features: int, hidden: Sequence[int] = (256, 256, 256),
                 time_dim: int = 128, activation: Activation = nn.SiLU):
        super().__init__()
        if time_dim < 2 or time_dim % 2:
            raise ValueError(f"time_dim must be an even integer >= 2, got {time_dim}")
        self.time_dim = int(time_dim)
        self.proj = nn.Linear(in_features, time_dim)
        self.time_mlp = nn.Sequential(nn.Linear(time_dim, time_dim), activation(), nn.Linear(time_dim, time_dim))
        self.net = mlp(time_dim, out_features, hidden, activation=activation)

    def forward(self, h: Tensor, t: Tensor) -> Tensor:
        """h (..., in_features), t broadcastable to h.shape[:-1] -> (..., out_features)."""
        emb = self.time_mlp(timestep_embedding(t, self.time_dim).to(h.dtype))        # (*t.shape, time_dim)
        return self.net(self.proj(h) + emb)
