"""Autoregressive: an order-agnostic, column-by-column model of every slot of a table.

The D real-valued and K discrete slots form S = D + K variables v_1..v_S. One network reads the
values of an *observed* subset (the others zeroed) together with the 0/1 observed-mask, and returns
for every slot its conditional distribution given the observed ones: a mixture of ``n_mixtures``
Gaussians for a real-valued slot, a softmax for a discrete slot. Missing values need nothing
special: the codec gives each numeric column with gaps a 0/1 indicator slot, modelled like any
other discrete slot (its real slot is noise where missing, which the model learns too).

Training draws, per row, a random order and a random prefix length t ~ U{0, ..., S-1}: the first t
slots are observed and the loss is ``S / (S - t)`` times the summed negative log-conditionals of
the other S - t slots, an unbiased estimate of the negative log-likelihood averaged over orders
(Uria et al., 2014; Hoogeboom et al., 2022). In eval mode the masks come from a fixed seed, so
validation losses are comparable across epochs.

One fixed ``order`` (default: the discrete slots, then the real-valued ones; any permutation of
the S slots may be given) defines the model that ``log_prob`` scores and ``sample`` draws from:

    p(v) = prod_d p(v_order[d] | v_order[<d]),

each factor a normalised density or pmf, so ``log_prob`` is the exact log-density of that model
(S network passes, batched; ``likelihood = "exact"``). ``sample(n, condition=...)`` observes the
conditioned slots first and draws the free ones in the fixed order among themselves, so the rows
satisfy the condition exactly. When the conditioned slots are a prefix of ``order`` this is exactly
the conditional of the scored model; otherwise it uses the network's conditionals given the
observed slots, which an order-agnostic network learns for every subset but which need not be
perfectly consistent with the fixed-order joint (they agree as the fit becomes exact).

References:
    | A Deep and Tractable Density Estimator (Uria, Murray & Larochelle, 2014)
    | https://arxiv.org/abs/1310.1757
    | Autoregressive Diffusion Models (Hoogeboom et al., 2022)
    | https://arxiv.org/abs/2110.02037

Example:
    >>> ar = Autoregressive(Spec(n_continuous=2, cardinalities=(3,)), hidden=(32, 32), n_mixtures=4)
    >>> batch = ar.sample(4, generator=torch.Generator().manual_seed(0))
    >>> ar.log_prob(batch).shape
    torch.Size([4])
"""
from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from ..core import (Batch, GenerativeModule, Likelihood, Spec, check_int, check_sample_args, check_spec,
                    check_widths, unpack, unpack_condition)
from ..errors import ConfigError
from ..nets.mlp import mlp, one_hot_slots, soft_clamp

# Mixture log-scales live in [LOG_SCALE_MIN, LOG_SCALE_MAX] (tensor units are standardised): the lower
# end stops a component collapsing onto one training value, the upper end is loose.
LOG_SCALE_MIN, LOG_SCALE_MAX = -6.0, 3.0
MAX_ROWS = 2 ** 16          # network rows per pass in log_prob (B rows x the order positions scored at once)
_LOG_2PI = math.log(2 * math.pi)


def mixture_log_prob(x: Tensor, log_weights: Tensor, means: Tensor, log_scales: Tensor) -> Tensor:
    """log sum_m w_m N(x; mu_m, s_m^2) for x (...,) and normalised log-weights, means, log-scales (..., M)."""
    z = (x.unsqueeze(-1) - means) * torch.exp(-log_scales)
    return torch.logsumexp(log_weights - 0.5 * z ** 2 - log_scales - 0.5 * _LOG_2PI, dim=-1)


def check_order(order: object, n_slots: int) -> list[int] | None:
    """None, or a permutation of range(n_slots) as a list of ints (slot j < D is x[:, j], else c[:, j - D])."""
    if order is None:
        return None
    ok = (not isinstance(order, (str, bytes)) and isinstance(order, Sequence)
          and all(isinstance(j, numbers.Integral) and not isinstance(j, bool) for j in order)
          and sorted(int(j) for j in order) == list(range(n_slots)))
    if not ok:
        raise ConfigError(f"order must be None or a permutation of the {n_slots} slots 0..{n_slots - 1} "
                          f"(x slots first, then c slots), got {order!r}")
    return [int(j) for j in order]


class Autoregressive(GenerativeModule):
    """Order-agnostic autoregressive model: mixture-of-Gaussians heads for x slots, softmax for c slots.

    Arguments:
        spec: the codec's description of the tensors.
        hidden: hidden widths of the network (an MLP reading values and observed-mask).
        n_mixtures: Gaussian components per real-valued slot (>= 1).
        order: the fixed order of the S = D + K slots used by ``log_prob`` and ``sample`` (slot j < D
            is ``x[:, j]``, slot D + k is ``c[:, k]``); None: discrete slots first, then real-valued.

    References:
        | A Deep and Tractable Density Estimator (Uria, Murray & Larochelle, 2014)
        | https://arxiv.org/abs/1310.1757
    """

    likelihood: ClassVar[Likelihood] = "exact"
    closed_form: ClassVar[bool] = False
    conditional: ClassVar[bool] = True
    modalities: ClassVar[tuple[str, ...]] = ("tabular",)

    def __init__(self, spec: Spec, hidden: Sequence[int] = (256, 256), n_mixtures: int = 8,
                 order: Sequence[int] | None = None):
        check_spec(spec, "autoregressive")
        hidden = check_widths("hidden", hidden)
        n_mixtures = check_int("n_mixtures", n_mixtures, 1)
        D, cards = spec.n_continuous, tuple(int(m) for m in spec.cardinalities)
        order = check_order(order, D + len(cards))
        super().__init__(spec, hidden=hidden, n_mixtures=n_mixtures, order=order)

        self.D, self.K, self.S, self.M, self.cards = D, len(cards), D + len(cards), n_mixtures, cards
        # Discrete first by default: p(c) is then an exact pmf and each x slot a mixture given c (and a
        # numeric column's missing indicator comes before the noise in its real slot).
        self.order = order if order is not None else list(range(D, self.S)) + list(range(D))
        rank = torch.empty(self.S, dtype=torch.long)
        rank[torch.tensor(self.order, dtype=torch.long)] = torch.arange(self.S)
        self.register_buffer("rank", rank, persistent=False)                 # (S,) position of each slot
        # c slot k's logits padded to the largest cardinality: index sum(m) points at a -inf column.
        m_max, n_logits = max(cards, default=1), sum(cards)
        c_index = torch.full((self.K, m_max), n_logits, dtype=torch.long)
        start = 0
        for k, m in enumerate(cards):
            c_index[k, :m] = torch.arange(start, start + m)
            start += m
        self.register_buffer("c_index", c_index, persistent=False)           # (K, m_max)
        self.register_buffer("c_repeats", torch.tensor(cards, dtype=torch.long), persistent=False)
        self.net = mlp(D + n_logits + self.S, 3 * n_mixtures * D + n_logits, hidden)

    # -- the network: every slot's conditional given the observed ones --------------------------------

    def conditionals(self, x: Tensor, c: Tensor, observed: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """For x (B, D), c (B, K) and observed (B, S) bool (unobserved values are ignored): the x slots'
        mixture log-weights, means and log-scales, each (B, D, M), and the c slots' log-pmfs (B, K, m_max)."""
        B, D, M = x.shape[0], self.D, self.M
        obs = observed.to(x.dtype)
        one_hot = one_hot_slots(c, self.cards).to(x)                                     # (B, sum m)
        one_hot = one_hot * obs[:, D:].repeat_interleave(self.c_repeats, dim=1)
        h = self.net(torch.cat([x * obs[:, :D], one_hot, obs], dim=1))                   # (B, 3MD + sum m)
        hx = h[:, :3 * M * D].view(B, D, 3, M)
        log_w = hx[:, :, 0].log_softmax(dim=-1)                                          # (B, D, M)
        log_scales = soft_clamp(hx[:, :, 2], LOG_SCALE_MIN, LOG_SCALE_MAX)
        hc = F.pad(h[:, 3 * M * D:], (0, 1), value=-math.inf)[:, self.c_index]           # (B, K, m_max)
        return log_w, hx[:, :, 1], log_scales, hc.log_softmax(dim=-1)

    def slot_log_probs(self, x: Tensor, c: Tensor, observed: Tensor) -> Tensor:
        """log p(slot j = its value | observed slots) for every slot j, (B, S)."""
        log_w, means, log_scales, log_pc = self.conditionals(x, c, observed)
        lx = mixture_log_prob(x, log_w, means, log_scales)                               # (B, D)
        lc = log_pc.gather(2, c.unsqueeze(2)).squeeze(2)                                 # (B, K)
        return torch.cat([lx, lc], dim=1)

    def _unpack(self, batch: Batch) -> tuple[Tensor, Tensor]:
        p = next(self.parameters())
        return unpack(self.spec, batch, dtype=p.dtype, device=p.device)

    # -- the GenerativeModule interface -------------------------------------------------------------

    @torch.no_grad()
    def prepare(self, train: Batch) -> None:
        """Start from the independent marginals: mixture means at each x slot's quantiles, category logits
        at log frequencies, and a small last layer so that the network's inputs only perturb them."""
        x, c = self._unpack(train)
        x, c = x[:100_000], c[:100_000]                                                  # torch.quantile's limit
        head = self.net[-1]
        head.weight.mul_(0.1)
        M, D = self.M, self.D
        if D > 0 and x.shape[0] > 0:
            q = torch.quantile(x, (torch.arange(M, dtype=x.dtype, device=x.device) + 0.5) / M, dim=0).T  # (D, M)
            gap = (q[:, -1] - q[:, 0]) / (M - 1) if M > 1 else x.std(dim=0).nan_to_num(1.0)
            bias = head.bias[:3 * M * D].view(D, 3, M)
            bias[:, 0] = 0.0
            bias[:, 1] = q
            bias[:, 2] = gap.clamp(0.05, 1.0).log()[:, None]
        start = 3 * M * D
        for k, m in enumerate(self.cards):
            freq = torch.bincount(c[:, k], minlength=m).to(head.bias) + 1.0              # Laplace smoothing
            head.bias[start:start + m] = (freq / freq.sum()).log()
            start += m

    def loss(self, batch: Batch) -> Tensor:
        """Order-agnostic estimate of the mean negative log-likelihood (nats per row)."""
        x, c = self._unpack(batch)                                                       # (B, D), (B, K)
        B, S, device = x.shape[0], self.S, x.device
        g = None if self.training else torch.Generator(device).manual_seed(0)
        t = torch.randint(0, S, (B, 1), generator=g, device=device)                      # observed count
        ranks = torch.rand(B, S, generator=g, device=device).argsort(dim=1).argsort(dim=1)
        observed = ranks < t                                 # (B, S) a uniformly random subset of size t
        lp = self.slot_log_probs(x, c, observed)                                         # (B, S)
        nll = -torch.where(observed, torch.zeros_like(lp), lp).sum(dim=1)
        return (nll * S / (S - t.squeeze(1))).mean()

    def log_prob(self, batch: Batch) -> Tensor:
        """Exact log p(x, c) under the fixed ``order``: the sum of S conditionals, (B,) nats."""
        x, c = self._unpack(batch)
        B, S = x.shape[0], self.S
        order = torch.tensor(self.order, device=x.device)
        total = x.new_zeros(B)
        step = max(1, MAX_ROWS // max(B, 1))                 # order positions per network pass
        for d0 in range(0, S, step):
            d = torch.arange(d0, min(S, d0 + step), device=x.device)                     # (P,)
            observed = (self.rank[None, :] < d[:, None]).repeat_interleave(B, dim=0)     # (P * B, S)
            lp = self.slot_log_probs(x.repeat(len(d), 1), c.repeat(len(d), 1), observed)  # (P * B, S)
            target = order[d].repeat_interleave(B)                                       # (P * B,)
            total = total + lp.gather(1, target[:, None]).view(len(d), B).sum(dim=0)
        return total

    def _condition(self, n: int, condition: Batch | None) -> tuple[Tensor, Tensor, Tensor]:
        """Values (free slots zero) x (n, D), c (n, K), and observed (n, S) bool, from a condition batch."""
        p = next(self.parameters())
        x, c, given_x, given_c = unpack_condition(self.spec, condition, n, dtype=p.dtype, device=p.device)
        return x, c, torch.cat([given_x, given_c], dim=1)

    @torch.no_grad()
    def sample(self, n: int, *, condition: Batch | None = None,
               generator: torch.Generator | None = None) -> Batch:
        """Draw the free slots one at a time in the fixed order, the conditioned ones observed from the start."""
        n = check_sample_args("autoregressive", n, condition, conditional=True)
        x, c, observed = self._condition(n, condition)                                   # (n, D), (n, K), (n, S)
        for j in self.order:
            free = ~observed[:, j]                                                       # (n,)
            if not free.any():
                continue
            log_w, means, log_scales, log_pc = self.conditionals(x, c, observed)
            if j < self.D:
                comp = torch.multinomial(log_w[:, j].exp(), 1, generator=generator)       # (n, 1)
                mu, ls = means[:, j].gather(1, comp)[:, 0], log_scales[:, j].gather(1, comp)[:, 0]
                eps = torch.randn(n, generator=generator, dtype=x.dtype, device=x.device)
                x[:, j] = torch.where(free, mu + ls.exp() * eps, x[:, j])
            else:
                k = j - self.D
                draw = torch.multinomial(log_pc[:, k].exp(), 1, generator=generator)[:, 0]
                c[:, k] = torch.where(free, draw, c[:, k])
            observed[:, j] = True
        return {"x": x, "c": c}
