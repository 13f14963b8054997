"""Flow: a neural spline flow for the real-valued slots and an exact autoregressive pmf for the
discrete ones,

    p(x, c) = p(c) * p(x | c),

p(c) by :class:`genmodels.nets.mlp.CategoricalAR` (skipped when there are no discrete slots) and
p(x | c) by zuko's neural spline flow with the one-hot codes of c as context (skipped when there
are no real-valued slots). Both factors are exact, so ``log_prob`` is an exact log-density in
tensor units (``likelihood = "exact"``). With one real-valued slot zuko's NSF degenerates to a
stack of element-wise splines (conditioned on c through an MLP, or free parameters without c),
which is still an exact, flexible 1-D flow.

References:
    | Neural Spline Flows (Durkan et al., 2019)
    | https://arxiv.org/abs/1906.04032
    | MADE: Masked Autoencoder for Distribution Estimation (Germain et al., 2015)
    | https://arxiv.org/abs/1502.03509

Example:
    >>> spec = Spec(n_continuous=2, cardinalities=(3,))
    >>> flow = Flow(spec, transforms=2, hidden=(32, 32))
    >>> batch = flow.sample(4, generator=torch.Generator().manual_seed(0))
    >>> flow.log_prob(batch).shape
    torch.Size([4])
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import torch
import zuko
from torch import Tensor

from ..core import (Batch, GenerativeModule, Likelihood, Spec, check_int, check_sample_args, check_spec,
                    check_widths, unpack)
from ..nets.mlp import CategoricalAR, one_hot_slots


class Flow(GenerativeModule):
    """p(c) by a masked autoregressive pmf, p(x | c) by a neural spline flow (zuko.flows.NSF).

    Arguments:
        spec: the codec's description of the tensors.
        transforms: number of autoregressive spline transforms (>= 1).
        hidden: hidden widths of each transform's masked MLP.
        bins: number of spline bins (>= 2).
        discrete_hidden: hidden widths of the discrete slots' masked MLP.

    References:
        | Neural Spline Flows (Durkan et al., 2019)
        | https://arxiv.org/abs/1906.04032
    """

    likelihood: ClassVar[Likelihood] = "exact"
    closed_form: ClassVar[bool] = False
    modalities: ClassVar[tuple[str, ...]] = ("tabular",)

    def __init__(self, spec: Spec, transforms: int = 4, hidden: Sequence[int] = (128, 128), bins: int = 8,
                 discrete_hidden: Sequence[int] = (64, 64)):
        check_spec(spec, "flow")
        transforms = check_int("transforms", transforms, 1)
        bins = check_int("bins", bins, 2)
        hidden = check_widths("hidden", hidden)
        discrete_hidden = check_widths("discrete_hidden", discrete_hidden)
        super().__init__(spec, transforms=transforms, hidden=hidden, bins=bins, discrete_hidden=discrete_hidden)

        D, cards = spec.n_continuous, tuple(spec.cardinalities)
        self.n_context = sum(cards)                                # one-hot width of c
        self.discrete = CategoricalAR(cards, hidden=discrete_hidden) if cards else None
        self.flow = zuko.flows.NSF(features=D, context=self.n_context, transforms=transforms,
                                   hidden_features=tuple(hidden), bins=bins) if D > 0 else None

    def context(self, c: Tensor) -> Tensor | None:
        """The flow's context: one-hot codes of c, (B, sum m), or None without discrete slots."""
        if self.n_context == 0:
            return None
        p = next(self.parameters())
        return one_hot_slots(c, self.spec.cardinalities).to(device=p.device, dtype=p.dtype)

    def log_prob(self, batch: Batch) -> Tensor:
        x, c = unpack(self.spec, batch)
        x = x.to(next(self.parameters()).dtype)                     # (B, D)
        lp = x.new_zeros(x.shape[0])                                # (B,)
        if self.discrete is not None:
            lp = lp + self.discrete.log_prob(c)
        if self.flow is not None:
            lp = lp + self.flow(self.context(c)).log_prob(x)
        return lp

    def loss(self, batch: Batch) -> Tensor:
        return -self.log_prob(batch).mean()

    @torch.no_grad()
    def sample(self, n: int, *, condition: Batch | None = None,
               generator: torch.Generator | None = None) -> Batch:
        n = check_sample_args("flow", n, condition)
        p = next(self.parameters())
        device, dtype = p.device, p.dtype
        K, D = len(self.spec.cardinalities), self.spec.n_continuous
        if self.discrete is not None:
            c = self.discrete.sample(n, generator=generator)       # (n, K)
        else:
            c = torch.zeros(n, K, dtype=torch.long, device=device)
        if self.flow is not None:
            dist = self.flow(self.context(c))
            # zuko samples with the global RNG; draw the base noise ourselves so `generator` decides.
            z = torch.randn(n, D, generator=generator, device=device, dtype=dtype)   # (n, D)
            x = dist.transform.inv(z)
        else:
            x = torch.zeros(n, 0, device=device, dtype=dtype)
        return {"x": x, "c": c}
