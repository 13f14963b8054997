"""Small fully connected networks for tabular families, and an exact autoregressive model of
discrete slots.

``mlp`` builds plain Linear/activation stacks. ``CategoricalAR`` models
p(c) = prod_k p(c_k | c_<k, context) with one masked network (MADE): slot k's logits see only the
one-hot codes of slots before it (and the context), so each factor is a softmax and the product is
an exactly normalised pmf over all configurations.

References:
    | MADE: Masked Autoencoder for Distribution Estimation (Germain et al., 2015)
    | https://arxiv.org/abs/1502.03509

Example:
    >>> ar = CategoricalAR((3, 2, 4), hidden=(32, 32))
    >>> c = ar.sample(5, generator=torch.Generator().manual_seed(0))   # (5, 3)
    >>> ar.log_prob(c).shape
    torch.Size([5])
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn


Activation = Callable[[], nn.Module]


def mlp(in_features: int, out_features: int, hidden: Sequence[int] = (128, 128), *,
        activation: Activation = nn.SiLU, layer_norm: bool = False, dropout: float = 0.0) -> nn.Sequential:
    """Linear -> [LayerNorm] -> activation -> [Dropout] for each hidden width, then a Linear head."""
    layers: list[nn.Module] = []
    width = in_features
    for h in hidden:
        layers.append(nn.Linear(width, h))
        if layer_norm:
            layers.append(nn.LayerNorm(h))
        layers.append(activation())
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        width = h
    layers.append(nn.Linear(width, out_features))
    return nn.Sequential(*layers)


def soft_clamp(x: Tensor, lo: float, hi: float) -> Tensor:
    """Close to the identity inside [lo, hi], smoothly saturating outside (keeps gradients alive)."""
    return hi - F.softplus(hi - (lo + F.softplus(x - lo)))


def one_hot_slots(c: Tensor, cardinalities: Sequence[int]) -> Tensor:
    """Concatenated one-hot codes of the discrete slots: (B, K) long -> (B, sum(cardinalities)) float."""
    if len(cardinalities) == 0:
        return c.new_zeros((c.shape[0], 0), dtype=torch.get_default_dtype())
    parts = [F.one_hot(c[:, k], int(m)) for k, m in enumerate(cardinalities)]
    return torch.cat(parts, dim=-1).to(torch.get_default_dtype())   # (B, sum m)


class MaskedLinear(nn.Module):
    """A linear layer whose weight is multiplied by a fixed 0/1 mask (out_features, in_features)."""

    def __init__(self, mask: Tensor):
        super().__init__()
        out_features, in_features = mask.shape
        self.register_buffer("mask", mask.to(torch.get_default_dtype()))
        # Uniform init scaled by the *connected* fan-in: rows with few inputs would otherwise start tiny.
        # (Written out because nn.Linear's init warns on in_features == 0, e.g. one slot, no context.)
        bound = self.mask.sum(dim=1, keepdim=True).clamp(min=1).rsqrt()         # (out, 1)
        self.weight = nn.Parameter((torch.rand(out_features, in_features) * 2 - 1) * bound)
        self.bias = nn.Parameter((torch.rand(out_features) * 2 - 1) / math.sqrt(max(in_features, 1)))

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight * self.mask, self.bias)


class CategoricalAR(nn.Module):
    """Exact autoregressive pmf over K discrete slots, optionally conditioned on a context vector.

    Degrees (MADE): the context has degree 0, slot j's one-hot has degree j + 1, hidden unit i has
    degree i mod K and sees inputs of degree <= its own; slot k's logits see hidden units of degree
    <= k, hence only c_<k and the context. A direct masked input->output connection helps learning.

    Arguments:
        cardinalities: number of values of each slot (each >= 1).
        context: width of the optional context vector (0 for none).
        hidden: hidden widths of the masked network.

    References:
        | MADE: Masked Autoencoder for Distribution Estimation (Germain et al., 2015)
        | https://arxiv.org/abs/1502.03509
    """

    def __init__(self, cardinalities: Sequence[int], context: int = 0, hidden: Sequence[int] = (64, 64),
                 activation: Activation = nn.SiLU):
        super().__init__()
        self.cardinalities = tuple(int(m) for m in cardinalities)
        self.context = int(context)
        K = len(self.cardinalities)
        if K == 0:
            raise ValueError("CategoricalAR needs at least one discrete slot")
        if any(m < 1 for m in self.cardinalities):
            raise ValueError(f"cardinalities must be >= 1, got {self.cardinalities}")

        # Inputs: context, then one-hots of slots 0..K-2 (the last slot conditions nothing).
        in_deg = torch.cat([torch.zeros(self.context, dtype=torch.long)] +
                           [torch.full((m,), j + 1, dtype=torch.long) for j, m in enumerate(self.cardinalities[:-1])])
        out_deg = torch.cat([torch.full((m,), k, dtype=torch.long) for k, m in enumerate(self.cardinalities)])
        # Outputs are grouped by slot: offsets[k]:offsets[k+1] are slot k's logits.
        self.offsets = [0]
        for m in self.cardinalities:
            self.offsets.append(self.offsets[-1] + m)

        layers: list[nn.Module] = []
        prev = in_deg
        for h in hidden:
            deg = torch.arange(int(h)) % K                                       # (h,) in [0, K-1]
            layers += [MaskedLinear(deg[:, None] >= prev[None, :]), activation()]
            prev = deg
        # A hidden unit of degree d sees slots < d, so slot k may use hidden degrees <= k.
        layers.append(MaskedLinear(out_deg[:, None] >= prev[None, :]))
        self.net = nn.Sequential(*layers)
        # Skip connection: slot k sees the context (degree 0) and slots j < k (degree j + 1 <= k).
        self.skip = MaskedLinear(out_deg[:, None] >= in_deg[None, :])

    def logits(self, c: Tensor, context: Tensor | None = None) -> Tensor:
        """All slots' logits in one pass, (B, sum m); slot k's depend only on c[:, :k] and context."""
        inp = one_hot_slots(c[:, :-1], self.cardinalities[:-1]).to(self.skip.weight)   # (B, sum m[:-1])
        if self.context > 0:
            if context is None:
                raise ValueError(f"this CategoricalAR expects a context of width {self.context}")
            inp = torch.cat([context.to(inp), inp], dim=-1)                       # (B, C + sum m[:-1])
        return self.net(inp) + self.skip(inp)

    def log_prob(self, c: Tensor, context: Tensor | None = None) -> Tensor:
        """log p(c | context) in nats, (B,)."""
        logits = self.logits(c, context)                                          # (B, sum m)
        total = logits.new_zeros(c.shape[0])
        for k in range(len(self.cardinalities)):
            lp = logits[:, self.offsets[k]:self.offsets[k + 1]].log_softmax(dim=-1)   # (B, m_k)
            total = total + lp.gather(1, c[:, k:k + 1]).squeeze(1)
        return total

    @torch.no_grad()
    def sample(self, n: int, context: Tensor | None = None, generator: torch.Generator | None = None) -> Tensor:
        """Draw (n, K) codes slot by slot; all randomness from ``generator``."""
        device = self.skip.weight.device
        c = torch.zeros(n, len(self.cardinalities), dtype=torch.long, device=device)
        for k in range(len(self.cardinalities)):
            # Slot k's logits do not depend on slots >= k, so the zeros there are harmless.
            logits = self.logits(c, context)[:, self.offsets[k]:self.offsets[k + 1]]   # (n, m_k)
            c[:, k] = torch.multinomial(logits.softmax(dim=-1), 1, generator=generator).squeeze(1)
        return c
