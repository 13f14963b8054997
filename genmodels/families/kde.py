"""Kernel density estimate over the joint of real-valued and discrete slots.

    p(x, c) = 1/N sum_i N(x; x_i, h^2 I) prod_j L_j(c_j, c_ij)
    L_j(c, c') = 1 - lambda_j if c == c' else lambda_j / (card_j - 1)      (Aitchison-Aitken)

x is standardised by the codec, so one scalar bandwidth h serves every real-valued slot. One
smoothing fraction s in [0, 1] serves every discrete slot: lambda_j = s (card_j - 1) / card_j, so
s = 0 counts exact matches only and s = 1 makes the slot uniform (each L_j sums to 1 over c; a slot
of cardinality 1 has L = 1). Unset h and s are chosen by held-out log-likelihood: on the validation
batch when one is given, else by 5-fold cross-validation on the training rows.

Conditional sampling is exact: the product kernel factorises over slots, so given x_A and c_C the
estimate is the same mixture over stored rows reweighted by w_i ∝ N(x_A; x_iA, h^2 I)
prod_{j in C} L_j(c_j, c_ij); a row is drawn by those weights and the free slots from its kernel.

References:
    Parzen (1962), On estimation of a probability density function and mode.
    Aitchison & Aitken (1976), Multivariate binary discrimination by the kernel method.
    Scott (1992), Multivariate Density Estimation (the rule of thumb the bandwidth grid is centred on).

Example:
    >>> import torch
    >>> from genmodels.core import Spec
    >>> kde = KDE(Spec(n_continuous=2, cardinalities=(3,)))
    >>> batch = {"x": torch.randn(300, 2), "c": torch.randint(3, (300, 1))}
    >>> stats = kde.fit_closed_form(batch, generator=torch.Generator().manual_seed(0))
    >>> kde.log_prob(batch).shape
    torch.Size([300])
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from ..core import Batch, GenerativeModule, Spec, check_float, check_int, check_spec, unpack, unpack_condition
from ..errors import ConfigError, DataError, NotFittedError

_MAX_ENTRIES = 1 << 20           # (queries x centres) per block: 8 MB, cache-friendly and bounded
_CV_FOLDS = 5
_CV_MAX_QUERIES = 1000           # held-out rows scored per candidate during selection (cost bound)
_H_STEP = 0.25                                 # coarse grid spacing in log10(h)
_H_COARSE = [_H_STEP * i for i in range(-5, 3)]  # log10 factors around Scott's rule (x0.06 .. x3)
_H_FINE = [_H_STEP / 4 * i for i in range(-2, 3)]  # refinement around the best coarse h (half a step)
# smoothing fractions s (lambda_j = s (card_j - 1) / card_j); s = 1 ignores the slot
_S_GRID = (0.003, 0.01, 0.03, 0.1, 0.3, 0.6, 1.0)


class KDE(GenerativeModule):
    """Gaussian x Aitchison-Aitken product-kernel density estimate; the training rows are the model.

    Args:
        bandwidth: h > 0, the standard deviation of the Gaussian kernel on x (standardised units);
            None chooses it (a log-spaced grid around Scott's rule, then a finer grid around the best).
        category_smoothing: s in [0, 1]; lambda_j = s (card_j - 1) / card_j. None chooses it from
            a small grid (0.003 .. 1) jointly with h.
        max_points: at most this many training rows are stored; a larger training set is replaced
            by a uniformly random subset drawn with the fit generator (memory and log_prob cost are
            O(max_points)).
        n_points: rows stored; set by fit (so a checkpoint can be rebuilt), leave at 0.
    """

    likelihood = "exact"
    closed_form = True
    conditional = True
    modalities = ("tabular",)

    def __init__(self, spec: Spec, bandwidth: float | None = None, category_smoothing: float | None = None,
                 max_points: int = 20000, n_points: int = 0):
        if bandwidth is not None:
            check_float("bandwidth", bandwidth, 0.0, None, open_low=True)
            bandwidth = float(bandwidth)
        if category_smoothing is not None:
            check_float("category_smoothing", category_smoothing, 0.0, 1.0)
            category_smoothing = float(category_smoothing)
        check_int("max_points", max_points, 1)
        check_int("n_points", n_points, 0)
        check_spec(spec, "kde")
        if n_points and spec.n_continuous and bandwidth is None:
            raise ConfigError("a KDE with stored points needs its bandwidth; pass the fitted module's config")
        if n_points and spec.cardinalities and category_smoothing is None:
            raise ConfigError("a KDE with stored points needs its category_smoothing; pass the fitted module's config")
        super().__init__(spec, bandwidth=bandwidth, category_smoothing=category_smoothing,
                         max_points=int(max_points), n_points=int(n_points))
        # what the user left open, so a refit of this instance chooses again
        self._select_h = bandwidth is None and spec.n_continuous > 0
        self._select_s = category_smoothing is None and len(spec.cardinalities) > 0
        self.register_buffer("cards", torch.tensor(spec.cardinalities, dtype=torch.long), persistent=False)
        self._allocate(int(n_points))

    def _allocate(self, n: int) -> None:
        dev = self.device
        self.register_buffer("points_x", torch.zeros(n, self.spec.n_continuous, dtype=torch.float64, device=dev))
        self.register_buffer("points_c", torch.zeros(n, len(self.spec.cardinalities), dtype=torch.long, device=dev))

    def _lambdas(self, s: float) -> Tensor:
        """Per-slot Aitchison-Aitken lambda for smoothing fraction s: (K,)."""
        cards = self.cards.to(torch.float64)
        return s * (cards - 1) / cards

    # ---------------------------------------------------------------- density
    def _one_hot(self, c: Tensor) -> Tensor:
        """One-hot of the slots with cardinality > 1 (a slot of cardinality 1 has L = 1): (B, S)."""
        cols = [torch.nn.functional.one_hot(c[:, j], card) for j, card in enumerate(self.spec.cardinalities)
                if card > 1]
        return torch.cat(cols, 1).to(torch.float64) if cols else c.new_zeros(c.shape[0], 0, dtype=torch.float64)

    def _log_density(self, xq: Tensor, zq: Tensor, xp: Tensor, zp: Tensor, h: float, s: float) -> Tensor:
        """log p(query) with the rows (xp, zp) as kernel centres; z are ``_one_hot`` codes: (Q,).

        The log kernel is a bilinear form plus row and column terms,
            -|xq - xp|^2 / 2h^2 + sum_j log L_j = (xq / h^2) . xp + zq . (w * zp) + row(q) + col(p),
        with w = log(1 - lambda_j) - log(lambda_j / (card_j - 1)) on slot j's columns, so each block
        of (queries x centres) is one matmul and a logsumexp. Blocks of at most _MAX_ENTRIES entries
        and a running logsumexp over centre blocks keep memory bounded whatever Q and N are.
        """
        Q, N, D = xq.shape[0], xp.shape[0], xq.shape[1]
        cards = [card for card in self.spec.cardinalities if card > 1]
        lam = [s * (card - 1) / card for card in cards]
        if s > 0:
            w = [math.log1p(-l) - math.log(l / (card - 1)) for l, card in zip(lam, cards)]
            const = sum(math.log(l / (card - 1)) for l, card in zip(lam, cards))
        else:   # lambda = 0: a mismatch has L = 0; handled by a mask below, since log 0 has no weight
            w, const = [0.0] * len(cards), 0.0
        w_cols = torch.tensor([wj for wj, card in zip(w, cards) for _ in range(card)],
                              dtype=xq.dtype, device=xq.device)                       # (S,)
        aq = torch.cat([xq / (h * h), zq * w_cols], 1)                                 # (Q, D + S)
        ap = torch.cat([xp, zp], 1)                                                    # (N, D + S)
        col = const - (xp * xp).sum(1) / (2 * h * h)                                   # (N,)
        row = -(xq * xq).sum(1) / (2 * h * h) - math.log(N) - D * (0.5 * math.log(2 * math.pi) + math.log(h))
        exact_match = s == 0 and len(cards) > 0
        qb = max(1, min(Q, 1024, _MAX_ENTRIES))
        pb = max(1, _MAX_ENTRIES // qb)
        out = xq.new_full((Q,), -math.inf)
        for q0 in range(0, Q, qb):
            for p0 in range(0, N, pb):
                logk = torch.addmm(col[p0:p0 + pb], aq[q0:q0 + qb], ap[p0:p0 + pb].T)       # (q, p)
                if exact_match:
                    matches = zq[q0:q0 + qb] @ zp[p0:p0 + pb].T                        # (q, p) slots equal
                    logk.masked_fill_(matches < len(cards) - 0.5, -math.inf)
                out[q0:q0 + qb] = torch.logaddexp(out[q0:q0 + qb], torch.logsumexp(logk, 1))
        return out + row

    def _grid_log_density(self, xq: Tensor, cq: Tensor, xp: Tensor, cp: Tensor,
                          hs: list[float], ss: list[float]) -> Tensor:
        """log p(query) for every (h, s) on a grid, rows (xp, cp) as kernel centres: (H, S, Q)."""
        zq, zp = self._one_hot(cq), self._one_hot(cp)
        return torch.stack([torch.stack([self._log_density(xq, zq, xp, zp, h, s) for s in ss]) for h in hs])

    def log_prob(self, batch: Batch) -> Tensor:
        """Exact log p(x, c) in nats, (B,), in the floating dtype of batch["x"]."""
        if self.config["n_points"] == 0:
            raise NotFittedError("KDE.log_prob called before fit_closed_form")
        x, c = unpack(self.spec, batch, dtype=torch.float64, device=self.device)
        out_dtype = batch["x"].dtype if "x" in batch and batch["x"].is_floating_point() else torch.float32
        h, s = self.config["bandwidth"] or 1.0, self.config["category_smoothing"] or 0.0
        lp = self._log_density(x, self._one_hot(c), self.points_x, self._one_hot(self.points_c), h, s)
        return lp.to(out_dtype)

    # ---------------------------------------------------------------- fitting
    def _select(self, x: Tensor, c: Tensor, val: Batch | None,
                generator: torch.Generator | None) -> tuple[float, float, float]:
        """Choose (h, s) by held-out log-likelihood; returns them and the mean held-out log-lik."""
        N, D = x.shape
        gdev = generator.device if generator is not None else x.device
        # Scott's rule, with the data's own spread (x is only roughly standardised)
        sigma = x.std(0).mean().item() if N > 1 and D else 1.0
        scott = max(sigma, 1e-3) * N ** (-1.0 / (D + 4))
        hs = [scott * 10 ** f for f in _H_COARSE] if self._select_h else [self.config["bandwidth"] or 1.0]
        ss = list(_S_GRID) if self._select_s else [self.config["category_smoothing"] or 0.0]
        # held-out splits: (query rows, centre rows)
        if val is not None:
            xv, cv = unpack(self.spec, val, dtype=torch.float64, device=x.device)
            if xv.shape[0] == 0:
                raise DataError("the validation batch is empty")
            keep = torch.randperm(xv.shape[0], generator=generator, device=gdev)[:_CV_MAX_QUERIES].to(x.device)
            splits = [(xv[keep], cv[keep], x, c)]
        else:
            if N < 2:
                raise DataError("KDE needs at least 2 training rows to choose bandwidth/category_smoothing; "
                                "pass them explicitly")
            folds = torch.randperm(N, generator=generator, device=gdev).to(x.device).chunk(min(_CV_FOLDS, N))
            per_fold = max(1, _CV_MAX_QUERIES // len(folds))
            splits = []
            for i, fold in enumerate(folds):
                rest = torch.cat([f for j, f in enumerate(folds) if j != i])
                q = fold[:per_fold]   # folds are already in random order
                splits.append((x[q], c[q], x[rest], c[rest]))
        n_q = sum(sp[0].shape[0] for sp in splits)

        def score(hs: list[float], ss: list[float]) -> Tensor:                      # (H, S) mean log-lik
            return sum(self._grid_log_density(*sp, hs, ss).sum(-1) for sp in splits) / n_q

        grid = score(hs, ss)                                                          # (H, S)
        # optimum on the edge of the grid: extend it that way (a few steps at most)
        for _ in range(4 if self._select_h else 0):
            i_h = int(grid.argmax()) // len(ss)
            if 0 < i_h < len(hs) - 1:
                break
            new = [hs[-1] * 10 ** _H_STEP] if i_h == len(hs) - 1 else [hs[0] / 10 ** _H_STEP]
            more = score(new, ss)
            hs, grid = (hs + new, torch.cat([grid, more])) if i_h else (new + hs, torch.cat([more, grid]))
        i_h, i_s = divmod(int(grid.argmax()), len(ss))
        h, s, best = hs[i_h], ss[i_s], grid[i_h, i_s].item()
        if self._select_h:
            fine = [h * 10 ** f for f in _H_FINE]
            grid = score(fine, [s])[:, 0]
            h, best = fine[int(grid.argmax())], grid.max().item()
            if val is None:
                # the folds' centres are (k-1)/k of the data; the optimal h shrinks like n^(-1/(D+4))
                k = len(splits)
                h *= ((k - 1) / k) ** (1.0 / (D + 4))
        return h, s, best

    def fit_closed_form(self, train: Batch, val: Batch | None = None, *,
                        generator: torch.Generator | None = None) -> dict[str, float]:
        """Store the training rows (a random subset if over max_points) and choose unset h and s."""
        x, c = unpack(self.spec, train, dtype=torch.float64, device=self.device)
        N = x.shape[0]
        if N == 0:
            raise DataError("KDE cannot be fitted on an empty batch")
        if N > self.config["max_points"]:
            gdev = generator.device if generator is not None else x.device
            keep = torch.randperm(N, generator=generator, device=gdev)[: self.config["max_points"]].to(x.device)
            x, c = x[keep], c[keep]
        stats: dict[str, float] = {"n_points": float(x.shape[0])}
        if self._select_h or self._select_s:
            h, s, best = self._select(x, c, val, generator)
            stats["selection_log_lik"] = best
            if self._select_h:
                self.config["bandwidth"] = h
            if self._select_s:
                self.config["category_smoothing"] = s
        self.config["n_points"] = int(x.shape[0])
        self._allocate(x.shape[0])
        self.points_x.copy_(x)
        self.points_c.copy_(c)
        if self.config["bandwidth"] is not None:
            stats["bandwidth"] = self.config["bandwidth"]
        if self.config["category_smoothing"] is not None:
            stats["category_smoothing"] = self.config["category_smoothing"]
        if val is not None:
            stats["val_log_lik"] = self.log_prob(val).double().mean().item()
        return stats

    # ---------------------------------------------------------------- sampling
    @torch.no_grad()
    def sample(self, n: int, *, condition: Batch | None = None,
               generator: torch.Generator | None = None) -> Batch:
        """Pick a stored row, add h * N(0, I) to x, and move each c_j per its kernel.

        With ``condition`` (n rows; x NaN and c -1 in the free slots), pick the stored row by its
        kernel weight on the conditioned slots instead, and return those slots as given.
        """
        check_int("n", n, 0)
        if self.config["n_points"] == 0:
            raise NotFittedError("KDE.sample called before fit_closed_form")
        dev = self.device
        gdev = generator.device if generator is not None else dev
        if condition is None:
            idx = torch.randint(self.config["n_points"], (n,), generator=generator, device=gdev).to(dev)  # (n,)
            x, c = self._around(idx, generator)
            return {"x": x.float(), "c": c}
        xg, cg, given_x, given_c = unpack_condition(self.spec, condition, n, dtype=torch.float64, device=dev)
        u_pick = torch.rand(n, generator=generator, device=gdev, dtype=torch.float64).to(dev)   # (n,)
        x, c = self._around(self._pick(xg, cg, given_x, given_c, u_pick), generator)
        return {"x": torch.where(given_x, xg, x).float(), "c": torch.where(given_c, cg, c)}

    def _around(self, idx: Tensor, generator: torch.Generator | None) -> tuple[Tensor, Tensor]:
        """A draw from the kernel around each stored row ``idx`` (n,): x (n, D) float64, c (n, K)."""
        dev, D, K, n = self.device, self.spec.n_continuous, len(self.spec.cardinalities), idx.shape[0]
        gdev = generator.device if generator is not None else dev
        noise = torch.randn(n, D, generator=generator, device=gdev, dtype=torch.float64).to(dev)
        u = torch.rand(n, K, generator=generator, device=gdev, dtype=torch.float64).to(dev)
        r = torch.rand(n, K, generator=generator, device=gdev, dtype=torch.float64).to(dev)
        x = self.points_x[idx] + (self.config["bandwidth"] or 1.0) * noise             # (n, D)
        c = self.points_c[idx].clone()                                                  # (n, K)
        if K:
            lam = self._lambdas(self.config["category_smoothing"] or 0.0)               # (K,)
            # with probability lambda move to one of the other card-1 values, uniformly:
            # draw from 0..card-2 and skip over the current value
            other = (r * (self.cards - 1)).long().clamp_max((self.cards - 2).clamp_min(0))  # (n, K)
            other = other + (other >= c).long()
            c = torch.where(u < lam, other, c)
        return x, c

    def _pick(self, xg: Tensor, cg: Tensor, given_x: Tensor, given_c: Tensor, u: Tensor) -> Tensor:
        """Stored row of each condition row, drawn by its kernel weight on the given slots: (n,).

        log w_i = -|x_A - x_iA|^2 / 2h^2 + sum_{j in C} log L_j(c_j, c_ij), up to a constant per
        condition row, as a bilinear form (see ``_log_density``). Equal condition rows are weighed
        once (a repeated condition is one row of weights); blocks of at most _MAX_ENTRIES weights.
        The uniforms u (n,) pick by inverse CDF: the CDFs of a block, each shifted by its row number
        and ending at exactly row + 1, form one sorted sequence for a single searchsorted.
        """
        N, D = self.points_x.shape
        h, s = self.config["bandwidth"] or 1.0, self.config["category_smoothing"] or 0.0
        key = torch.cat([xg, given_x.double(), cg.double(), given_c.double()], 1)     # (n, 2D + 2K)
        uniq, inverse = torch.unique(key, dim=0, return_inverse=True)                 # (U, 2D + 2K), (n,)
        xq, gx = uniq[:, :D], uniq[:, D:2 * D]                                         # (U, D)
        cq, gc = uniq[:, 2 * D:].chunk(2, 1) if self.spec.cardinalities else (uniq[:, :0], uniq[:, :0])
        multi = [j for j, card in enumerate(self.spec.cardinalities) if card > 1]      # slots with L != 1
        cards = torch.tensor([self.spec.cardinalities[j] for j in multi], dtype=torch.long, device=xg.device)
        col_mask = torch.repeat_interleave(gc[:, multi], cards, dim=1)                # (U, S) given slots' columns
        zq, zp = self._one_hot(cq.long()) * col_mask, self._one_hot(self.points_c)    # (U, S), (N, S)
        if s > 0:
            lam = s * (cards - 1).double() / cards
            w = torch.log1p(-lam) - torch.log(lam / (cards - 1))                       # (|multi|,) match bonus
            zq = zq * torch.repeat_interleave(w, cards)
        aq = torch.cat([xq * gx / (h * h), zq], 1)                                     # (U, D + S)
        ap = torch.cat([self.points_x, zp], 1)                                         # (N, D + S)
        sq = -0.5 * gx @ (self.points_x * self.points_x).T / (h * h) if D else None   # (U, N) given dims only
        need = gc[:, multi].sum(1)                                                     # (U,) given slots to match
        idx = torch.empty(u.shape[0], dtype=torch.long, device=u.device)
        qb = max(1, min(1024, _MAX_ENTRIES // max(N, 1)))   # row offsets stay small: exact in float64
        for q0 in range(0, uniq.shape[0], qb):
            logw = aq[q0:q0 + qb] @ ap.T                                               # (q, N)
            if sq is not None:
                logw += sq[q0:q0 + qb]
            if s == 0 and multi:   # lambda = 0: a mismatch on a given slot has weight 0
                matches = (zq[q0:q0 + qb] > 0).double() @ zp.T
                logw.masked_fill_(matches < need[q0:q0 + qb, None] - 0.5, -math.inf)
            top = logw.max(1, keepdim=True).values                                     # (q, 1)
            if not torch.isfinite(top).all():
                raise DataError("the condition has density zero under this KDE (no stored row matches the "
                                "conditioned categories and category_smoothing is 0); condition on values "
                                "seen in training, or refit with category_smoothing > 0")
            cdf = (logw - top).exp().cumsum(1)                                         # (q, N)
            q = cdf.shape[0]
            flat = (cdf / cdf[:, -1:] + torch.arange(q, device=cdf.device, dtype=cdf.dtype)[:, None]).flatten()
            rows = ((inverse >= q0) & (inverse < q0 + q)).nonzero().squeeze(1)
            local = inverse[rows] - q0
            pos = torch.searchsorted(flat, local + u[rows], right=True) - local * N
            idx[rows] = pos.clamp(0, N - 1)
        return idx

