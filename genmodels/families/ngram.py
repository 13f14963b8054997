"""N-gram language model with modified interpolated Kneser-Ney smoothing; exact, normalised likelihood.

Windows (``nets.sequence``): target position j of a row belongs to window w = (j-1) // T and sees the
tokens at positions w T .. j-1 only. An order-N model keeps the last m = min(N-1, j - w T) of them
(the BOS id 0 at a document start is context like any other token). When the window start is inside
the model's reach (j - w T < N-1) the context is *marked* as starting there, with a virtual boundary
symbol S before it (as KenLM's <s>): "S 0" at a document start, "S x" after a window restart.

Counts. Each target gives one *top* n-gram: S + tokens[wT : j+1] at a window start, else the order-N
n-gram tokens[j-N+1 : j+1]. Top n-grams keep their raw counts c. Lower orders use continuation counts
(Kneser & Ney 1995): for a k-gram g (k < N), a(g) = |{x : x g is a suffix of a top n-gram}|, where the
left extension x may be S. So the tables are "mid" k = 1..N (k-grams; k = N raw counts, k < N
continuation counts) and "start" r = 2..N-1 (S followed by r tokens, raw counts).

Probabilities (Chen & Goodman 1998, interpolated). For a table with counts a, context c and token w,

    p(w | c) = max(a(c w) - D(a(c w)), 0) / A(c) + gamma(c) p_lower(w | c'),
    A(c) = sum_w a(c w),   gamma(c) = (D1 N1(c) + D2 N2(c) + D3+ N3+(c)) / A(c),

with N_i(c) the number of tokens w with a(c w) = i (3+: >= 3) and c' = c without its oldest token
(S c backs off to c, the same tokens without the boundary mark). A context never counted
(A(c) = 0) passes p_lower through unchanged. The chain ends in the uniform distribution 1/V, so every
token has mass > 0, and each level sums to 1 over the V ids (the discounted mass D(a) <= a is exactly
gamma), so ``log_prob`` is an exact, normalised log-likelihood. Discounts, per table from its
count-of-counts n1..n4: Y = n1 / (n1 + 2 n2), D1 = 1 - 2 Y n2/n1, D2 = 2 - 3 Y n3/n2,
D3+ = 3 - 4 Y n4/n3; when n1, n2 or n3 is 0, or a D_i falls outside (0, i], the table uses the
fall-back (0.5, 1.0, 1.5) (KenLM's --discount_fallback). ``discount=d`` in (0, 1) uses D = d for
every count and table (plain interpolated KN). Order 1 is the unigram: raw counts interpolated with
the uniform distribution.

Storage: each table is four buffers, sorted int64 keys of its n-grams written in base V (oldest token
most significant) with alpha = max(a - D, 0) / A(c), and the sorted keys of its contexts (key // V)
with gamma(c). Scoring is a few ``torch.searchsorted`` per level, no Python loop over tokens. The
buffers start empty (an unfitted model is the uniform distribution) and are resized when a state_dict
is loaded. Keys need V ** order < 2 ** 62.

Units: ``log_prob`` nats per row (float64); ``loss`` and ``fit_closed_form``'s train_nll / val_nll nats
per target token.

References:
    | Improved backing-off for m-gram language modeling (Kneser & Ney, 1995)
    | An Empirical Study of Smoothing Techniques for Language Modeling (Chen & Goodman, 1998), TR-10-98
    | Scalable Modified Kneser-Ney Language Model Estimation (Heafield et al., 2013) -- KenLM

Example:
    >>> spec = Spec(extra={"vocab_size": 5, "block_size": 8})
    >>> model = NGram(spec, order=3)
    >>> batch = {"tokens": torch.tensor([[0, 1, 2, 3, 4, 0], [0, 2, 2, 0, 0, 0]]),
    ...          "length": torch.tensor([6, 4])}
    >>> stats = model.fit_closed_form(batch)                 # {"train_nll": nats per token}
    >>> model.log_prob(batch).shape
    torch.Size([2])
    >>> out = model.sample(3, generator=torch.Generator().manual_seed(0), max_length=6)
    >>> out["tokens"][:, 0].tolist()
    [0, 0, 0]
"""
from __future__ import annotations

import math
import numbers
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor

from ..core import Batch, Spec, check_int
from ..errors import ConfigError, DataError
from ..nets.sequence import SequenceModule

KEY_LIMIT = 2 ** 62                   # n-gram keys in base V must stay below this (int64, with headroom)
FALLBACK = (0.5, 1.0, 1.5)            # discounts when the count-of-counts cannot estimate them
_FIELDS = ("keys", "alpha", "ctx", "gamma")


def max_order(V: int) -> int:
    """The largest order n with V ** n < 2 ** 62 (n-gram keys written in base V fit in int64)."""
    n = 0
    while V ** (n + 1) < KEY_LIMIT:
        n += 1
    return n


def table_names(order: int) -> list[str]:
    """The tables of an order-N model: "mid1".."midN", then "start2".."start{N-1}"."""
    return [f"mid{k}" for k in range(1, order + 1)] + [f"start{r}" for r in range(2, order)]


# ---------------------------------------------------------------- counting (pure functions)

def unique_counts(x: Tensor) -> tuple[Tensor, Tensor]:
    """Sorted distinct values of the int64 tensor x and their counts (numpy's sort on CPU: ~3x torch's)."""
    s = torch.from_numpy(np.sort(x.numpy())) if x.device.type == "cpu" else torch.sort(x).values
    return torch.unique_consecutive(s, return_counts=True)


def window_targets(tokens: Tensor, length: Tensor, T: int, order: int) -> tuple[Tensor, Tensor]:
    """Every target of a batch: flat index into tokens.view(-1) (M,) and its context length m (M,).

    Target (b, j), 1 <= j < length[b], sees m = min(order-1, j - w T) tokens, w = (j-1) // T.
    """
    L = tokens.shape[1]
    j = torch.arange(1, max(L, 1), device=tokens.device)
    b, jj = (j[None, :] < length[:, None]).nonzero(as_tuple=True)
    jj = jj + 1                                                              # (M,) target positions
    m = (jj - ((jj - 1) // T) * T).clamp(max=order - 1)
    return b * L + jj, m


def ngram_counts(tokens: Tensor, length: Tensor, T: int, order: int, V: int) -> dict[str, tuple[Tensor, Tensor]]:
    """Sorted keys (base V) and counts of every table (see the module docstring), from the targets of
    the rows under the window factorisation: {"mid1": (keys, counts), ..., "start2": ...}."""
    N = order
    flat = tokens.reshape(-1)
    pos, m = window_targets(tokens, length, T, N)
    w = flat[pos]                                                            # (M,) target tokens
    start = m < N - 1                                                        # context reaches the window start
    out: dict[str, tuple[Tensor, Tensor]] = {}
    ctx = torch.zeros_like(pos)                                              # key of the last k-1 context tokens
    for k in range(1, N + 1):
        key_k = ctx * V + w                                                  # k-gram ending at the target
        if k == N:                                                           # top: raw counts
            out[f"mid{k}"] = unique_counts(key_k[m == N - 1])
            break
        if k >= 2:                                                           # S + k tokens, raw counts
            out[f"start{k}"] = unique_counts(key_k[start & (m == k - 1)])
        x = flat[(pos - k).clamp(min=0)]                                     # the token before the k-gram
        ctx = ctx + x * V ** (k - 1)                                         # one more context token
        # pairs (g, x) coded g (V+1) + x, x = V for S: sorted by g, so distinct pairs count g's extensions
        ext = torch.cat([(key_k * (V + 1) + x)[m >= k],                      # left extension a real token
                         key_k[start & (m == k - 1)] * (V + 1) + V])         # left extension S
        out[f"mid{k}"] = torch.unique_consecutive(unique_counts(ext)[0] // (V + 1), return_counts=True)
    return out


def kn_discounts(counts: Tensor, fixed: float | None = None) -> tuple[float, float, float]:
    """(D1, D2, D3+) of Chen & Goodman from the count-of-counts of ``counts``, or ``fixed`` for all."""
    if fixed is not None:
        return (fixed, fixed, fixed)
    n1, n2, n3, n4 = (int((counts == i).sum()) for i in (1, 2, 3, 4))
    if min(n1, n2, n3) == 0:
        return FALLBACK
    Y = n1 / (n1 + 2 * n2)
    D = (1 - 2 * Y * n2 / n1, 2 - 3 * Y * n3 / n2, 3 - 4 * Y * n4 / n3)
    return D if all(0 < d <= i for i, d in enumerate(D, 1)) else FALLBACK


def kn_level(keys: Tensor, counts: Tensor, V: int, D: tuple[float, float, float]) -> tuple[Tensor, ...]:
    """One table's scoring components from its sorted keys and counts:
    (keys, alpha = max(a - D(a), 0) / A(c)) per n-gram and (context keys, gamma(c)) per context."""
    a = counts.to(torch.float64)
    ctx, inv = torch.unique_consecutive(keys // V, return_inverse=True)      # keys sorted -> contexts sorted
    disc = torch.tensor(D, dtype=torch.float64, device=keys.device)[(counts.clamp(max=3) - 1)]   # D(a)
    A = torch.zeros(ctx.shape[0], dtype=torch.float64, device=keys.device).index_add_(0, inv, a)
    mass = torch.zeros_like(A).index_add_(0, inv, disc)                      # D1 N1 + D2 N2 + D3 N3+
    return keys, (a - disc).clamp(min=0) / A[inv], ctx, mass / A


def _lookup(sorted_keys: Tensor, values: Tensor, query: Tensor, missing: float) -> Tensor:
    """values[i] where sorted_keys[i] == query, else ``missing``: same shape as query."""
    if sorted_keys.numel() == 0:
        return torch.full(query.shape, missing, dtype=torch.float64, device=query.device)
    i = torch.searchsorted(sorted_keys, query).clamp(max=sorted_keys.numel() - 1)
    return torch.where(sorted_keys[i] == query, values[i], missing)


# ---------------------------------------------------------------- the family

class NGram(SequenceModule):
    """Modified interpolated Kneser-Ney n-gram model, counted in closed form; exact log P(row).

    Arguments:
        spec: the codec's description: extra["vocab_size"] = V, extra["block_size"] = T.
        order: N, the n-gram length (context of up to N-1 tokens); 1 is the unigram. V ** N < 2 ** 62.
        discount: None for modified KN (D1, D2, D3+ per table from the counts), or one fixed discount
            in (0, 1) for every count (interpolated KN).
    """

    likelihood: ClassVar = "exact"
    closed_form: ClassVar[bool] = True

    def __init__(self, spec: Spec, order: int = 5, discount: float | None = None):
        order = check_int("order", order, 1)
        if discount is not None:
            if isinstance(discount, bool) or not isinstance(discount, numbers.Real) or not 0 < discount < 1:
                raise ConfigError(f"discount must be None (modified Kneser-Ney, estimated from the counts) or a "
                                  f"number in (0, 1), got {discount!r}")
            discount = float(discount)
        super().__init__(spec, order=order, discount=discount)
        V = self.vocab_size
        if V ** order >= KEY_LIMIT:
            raise ConfigError(f"order {order} is too large for a vocabulary of {V} ids: n-gram keys in base V "
                              f"need V ** order < 2 ** 62; the largest order allowed is {max_order(V)}")
        self.order, self.discount = order, discount
        self.tables = table_names(order)
        for name in self.tables:
            for f, dt in zip(_FIELDS, (torch.long, torch.float64, torch.long, torch.float64)):
                self.register_buffer(f"{name}_{f}", torch.zeros(0, dtype=dt))
        self.register_buffer("discounts", torch.zeros(len(self.tables), 3, dtype=torch.float64))

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs):
        # the tables' sizes come from the data: resize the empty buffers of a fresh module to the saved ones
        for name in self.tables:
            for f in _FIELDS:
                saved, buf = state_dict.get(f"{prefix}{name}_{f}"), self._buffers[f"{name}_{f}"]
                if isinstance(saved, Tensor) and saved.ndim == 1 and saved.shape != buf.shape:
                    self._buffers[f"{name}_{f}"] = torch.zeros(saved.shape, dtype=buf.dtype, device=buf.device)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                                      error_msgs)

    # -- fitting ---------------------------------------------------------------------------------

    def fit_closed_form(self, train: Batch, val: Batch | None = None, *,
                        generator: torch.Generator | None = None) -> dict[str, float]:
        """Count the training rows' n-grams (window factorisation) and store the KN components.

        Returns {"train_nll": ..., "val_nll": ...} in nats per target token (val_nll only with val)
        and "ngrams", the number of stored n-grams. Deterministic: ``generator`` is not used.
        """
        tokens, length = self.unpack_tokens(train)
        n_targets = int((length - 1).clamp(min=0).sum()) if tokens.shape[1] >= 2 else 0
        if n_targets == 0:
            raise DataError("the training rows have no targets: every row needs length >= 2 (<s> and one token)")
        counts = ngram_counts(tokens, length, self.block_length, self.order, self.vocab_size)
        stored = 0
        for i, name in enumerate(self.tables):
            keys, c = counts[name]
            D = kn_discounts(c, self.discount)
            for f, t in zip(_FIELDS, kn_level(keys, c, self.vocab_size, D)):
                setattr(self, f"{name}_{f}", t)
            self.discounts[i] = torch.tensor(D, dtype=torch.float64)
            stored += keys.numel()
        info = {"train_nll": self._counted_nll(counts) / n_targets, "ngrams": float(stored)}
        if val is not None:
            info["val_nll"] = self._mean_nll(val)
        return info

    def _counted_nll(self, counts: dict[str, tuple[Tensor, Tensor]]) -> float:
        """-sum of log p over the training targets, scoring each distinct top n-gram once (times its count);
        reported as train_nll, without the first-token renormalisation of ``nonempty`` models."""
        N, V, total = self.order, self.vocab_size, 0.0
        for name, r in [(f"start{r}", r) for r in range(2, N)] + [(f"mid{N}", N)]:
            keys, c = counts[name]                                           # r tokens: r-1 context + target
            digits = torch.stack([keys // V ** (r - 1 - i) % V for i in range(r)], 1)   # (K, r) oldest first
            K = keys.shape[0]
            last = (torch.arange(K, device=keys.device) * r + r - 2).clamp(min=0)        # last context token
            m = torch.full_like(keys, r - 1)                                 # r-1 < N-1: a window start
            p = self.next_probs(digits.reshape(-1), last, m, digits[:, -1:])[:, 0]
            total -= float((c.to(torch.float64) * p.log()).sum())
        return total

    def _mean_nll(self, batch: Batch) -> float:
        tokens, length = self.unpack_tokens(batch)
        n = int((length - 1).clamp(min=0).sum()) if tokens.shape[1] >= 2 else 0
        if n == 0:
            raise DataError("the rows have no targets: every row needs length >= 2 (<s> and one token)")
        return float(-self.token_log_probs(batch).sum() / n)

    # -- probabilities ---------------------------------------------------------------------------

    def _level(self, name: str, ctx: Tensor, w: Tensor, p_lower: Tensor) -> Tensor:
        """alpha(c w) + gamma(c) p_lower(w) for contexts ctx (n,) and tokens w (n, C)."""
        keys, alpha, ctx_keys, gamma = (getattr(self, f"{name}_{f}") for f in _FIELDS)
        a = _lookup(keys, alpha, ctx[:, None] * self.vocab_size + w, 0.0)    # (n, C)
        g = _lookup(ctx_keys, gamma, ctx, 1.0)                               # (n,) 1: context never seen
        return a + g[:, None] * p_lower

    def next_probs(self, flat: Tensor, last: Tensor, m: Tensor, w: Tensor) -> Tensor:
        """p(w | context) (P, C) float64, for the contexts flat[last - m + 1 .. last] (m tokens, at a window
        start when m < order-1; last (P,) indexes the flat token tensor) and candidate tokens w (P, C)."""
        N, V = self.order, self.vocab_size
        p = torch.full(w.shape, 1.0 / V, dtype=torch.float64, device=w.device)   # uniform at the bottom
        start = m < N - 1
        ctx = torch.zeros_like(last)                                         # key of the last k-1 context tokens
        for k in range(1, N + 1):
            sel = (m >= k - 1).nonzero().squeeze(1)                          # contexts long enough for level k
            if sel.numel() == m.numel():                                     # all of them (most levels)
                p = self._level(f"mid{k}", ctx, w, p)
            elif sel.numel():
                p[sel] = self._level(f"mid{k}", ctx[sel], w[sel], p[sel])
            if 2 <= k <= N - 1:                                              # S + context: the top for m = k-1
                sel = (start & (m == k - 1)).nonzero().squeeze(1)
                if sel.numel():
                    p[sel] = self._level(f"start{k}", ctx[sel], w[sel], p[sel])
            if k < N:
                ctx = ctx + flat[(last - (k - 1)).clamp(min=0)] * V ** (k - 1)
        return p

    def token_log_probs(self, batch: Batch) -> Tensor:
        """log p(tokens[j] | window context) for j = 1..L-1: (B, L-1) float64, 0 at padding. A direct
        gather (no (B, L, V) logits)."""
        tokens, length = self.unpack_tokens(batch)
        B, L = tokens.shape
        out = torch.zeros(B, max(L - 1, 0), dtype=torch.float64, device=tokens.device)
        if L < 2:
            return out
        pos, m = window_targets(tokens, length, self.block_length, self.order)
        flat = tokens.reshape(-1)
        lp = self.next_probs(flat, pos - 1, m, flat[pos][:, None])[:, 0].log()
        if self.nonempty:                       # renormalise the first token of a document without EOS
            first = (pos % L == 1).nonzero().squeeze(1)
            p_end = self.next_probs(flat, pos[first] - 1, m[first], torch.zeros_like(first)[:, None])[:, 0]
            lp[first] = torch.where(flat[pos[first]] == 0, -math.inf, lp[first] - torch.log1p(-p_end))
        out.view(-1)[pos - pos // L - 1] = lp                                # (b, j) -> b (L-1) + j - 1
        return out

    def log_prob(self, batch: Batch) -> Tensor:
        """(B,) float64 nats: sum over targets of the window-factorised conditionals."""
        return self.token_log_probs(batch).sum(1)

    def loss(self, batch: Batch) -> Tensor:
        """Mean negative log-likelihood per target token (nats/token); no gradient (closed form)."""
        tokens, length = self.unpack_tokens(batch)
        n = int((length - 1).clamp(min=0).sum()) if tokens.shape[1] >= 2 else 0
        if n == 0:
            raise DataError("the batch has no targets: every row needs length >= 2 (<s> and one token)")
        return -self.token_log_probs(batch).sum() / n

    def step_logits(self, tokens: Tensor, cache: Any | None) -> tuple[Tensor, Any]:
        """Log-probabilities (B, t, V) float64 of the next token after each of the t positions of tokens.

        cache: (the window's last order-1 tokens (B, <= order-1), tokens seen in the window), or None for
        a fresh window starting at tokens[:, 0]."""
        tokens = tokens.to(self.device, torch.long)
        B, t = tokens.shape
        tail, seen = (tokens[:, :0], 0) if cache is None else cache
        full = torch.cat([tail, tokens], 1)                                  # (B, h + t)
        h, Lf, V = tail.shape[1], tail.shape[1] + t, self.vocab_size
        i = torch.arange(t, device=tokens.device)
        last = (torch.arange(B, device=tokens.device)[:, None] * Lf + h + i).reshape(-1)       # (B t,)
        m = (seen + i + 1).clamp(max=self.order - 1).repeat(B)
        w = torch.arange(V, device=tokens.device).expand(B * t, V)
        logp = self.next_probs(full.reshape(-1), last, m, w).log().view(B, t, V)
        keep = min(self.order - 1, Lf)
        return logp, (full[:, Lf - keep:], seen + t)
