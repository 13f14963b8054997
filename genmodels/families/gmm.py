"""Gaussian mixture over the joint of real-valued and discrete slots, fitted by EM.

    p(x, c) = sum_k pi_k N(x; mu_k, Sigma_k) prod_j Cat(c_j; theta_kj)

Within a component the discrete slots are independent of each other and of x (a latent class
model for c, a Gaussian mixture for x), so the joint is exact and cheap. The number of components
is chosen by BIC when not given. A Dirichlet pseudo-count (``category_prior``) on every theta_kj
keeps categories that a component never saw at a small, non-zero probability, so held-out rows get
a finite log-likelihood.

Conditional sampling is exact: given some real-valued slots x_A and some discrete slots c_C, the
posterior over components is w_k ∝ pi_k N(x_A; mu_kA, Sigma_kAA) prod_{j in C} theta_kj(c_j), and
within component k the free x are Gaussian (the usual Schur-complement conditional) and the free c
are independent draws from theta_k. ``conditional_mean`` gives E[x_free | given] and the mode of
each free c, and ``log_prob`` of a batch with free slots is the exact marginal of the given ones.

Low-rank covariances (``rank=q``, mixtures of probabilistic PCA, Tipping & Bishop 1999): every
Sigma_k = W_k W_k^T + sigma_k^2 I with W_k of rank q. The M-step stays exact: given a component's
weighted scatter S_k, the expected complete log-likelihood -N_k/2 (log|Sigma| + tr(Sigma^-1 S_k)) is
maximised over that family by keeping S_k's top q eigen-directions and replacing the other D - q
eigenvalues by their mean sigma^2 (scikit-learn's ``PCA.get_covariance`` for one component). The
covariance is then stored as a full one, so scoring, sampling and the conditionals are unchanged;
BIC counts D q - q (q - 1) / 2 + 1 covariance parameters per component. It is the usual choice when
rows are few for the width (n close to D); ``reg_covar`` still applies on top.

Missing values: ``fit_closed_form`` on a batch that marks cells as missing (x NaN, c -1) runs the
EM for incomplete data (Ghahramani & Jordan 1994): the E-step weighs each row's components by the
marginal density of its observed slots and replaces the sufficient statistics of its missing x by
their conditional expectations (the conditional mean, plus the conditional covariance in the
second moments); a missing c counts as theta_k. It maximises the likelihood of the observed cells,
so it is exact when cells are missing at random (MAR). With Lambda = Sigma^-1 and M the missing
slots of a row, everything comes from Lambda_MM alone: Cov(x_M | x_O) = Lambda_MM^-1, E[x_M | x_O]
= mu_M - Lambda_MM^-1 Lambda_MO (x_O - mu_O), the marginal's quadratic form is e^T Lambda e with
e = (x_O - mu_O, E[x_M | x_O] - mu_M), and log|Sigma_OO| = log|Sigma| + log|Lambda_MM|; rows are
grouped by missing pattern and Lambda_MM is factorised in a compact (patterns, |M|, |M|) batch.

References:
    Dempster, Laird & Rubin (1977), Maximum likelihood from incomplete data via the EM algorithm.
    Ghahramani & Jordan (1994), Supervised learning from incomplete data via an EM approach.
    Arthur & Vassilvitskii (2007), k-means++: the advantages of careful seeding.
    Schwarz (1978), Estimating the dimension of a model (BIC).
    Tipping & Bishop (1999), Mixtures of probabilistic principal component analysers.

Example:
    >>> import torch
    >>> from genmodels.core import Spec
    >>> gmm = GMM(Spec(n_continuous=2, cardinalities=(3,)), n_components=2)
    >>> batch = {"x": torch.randn(200, 2), "c": torch.randint(3, (200, 1))}
    >>> stats = gmm.fit_closed_form(batch, generator=torch.Generator().manual_seed(0))
    >>> gmm.log_prob(batch).shape
    torch.Size([200])
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from ..core import Batch, GenerativeModule, Spec, check_float, check_int, check_spec, unpack, unpack_condition
from ..errors import ConfigError, DataError, NotFittedError

_EPS = 10 * torch.finfo(torch.float64).eps   # as scikit-learn: keeps empty components' weights > 0
Params = dict[str, Tensor]


def ppca_covariance(covs: Tensor, q: int) -> Tensor:
    """The maximum-likelihood W W^T + sigma^2 I (W of rank q) for scatter matrices ``covs`` (..., D, D):
    the top q eigenvalues and their directions kept, the other D - q replaced by their mean sigma^2."""
    evals, evecs = torch.linalg.eigh(covs)                                # ascending
    sigma2 = evals[..., :-q].mean(-1).clamp_min(0)                        # (...,)
    top = (evals[..., -q:] - sigma2[..., None]).clamp_min(0)              # (..., q)
    U = evecs[..., -q:]                                                   # (..., D, q)
    eye = torch.eye(covs.shape[-1], dtype=covs.dtype, device=covs.device)
    return (U * top[..., None, :]) @ U.mT + sigma2[..., None, None] * eye


class GMM(GenerativeModule):
    """Mixture of Gaussians (full or diagonal covariance) times independent categoricals per component.

    Args:
        n_components: number of components; None chooses it by BIC over 1..max_components, counting
            every free parameter (weights, means, covariances, categorical probabilities) and stopping
            once BIC has worsened for 2 consecutive k. After fit the chosen k is written here.
        max_components: upper end of the BIC sweep.
        covariance: "full" or "diag".
        reg_covar: added to the covariance diagonal (as scikit-learn) so it stays positive definite.
        rank: None for unconstrained full covariances; q (1 <= q < D, covariance="full" only) for
            W W^T + sigma^2 I with W of rank q (mixtures of probabilistic PCA, module docstring).
        max_iter, tol: EM stops after max_iter steps or when the mean log-likelihood changes < tol.
        n_init: EM restarts from different k-means++ seeds; the best mean log-likelihood wins.
        category_prior: Dirichlet (Laplace) pseudo-count added to every category count, so no category
            gets probability 0; 0 gives the plain maximum-likelihood estimate.
    """

    likelihood = "exact"
    closed_form = True
    conditional = True
    fits_missing = True          # fit_closed_form takes batches with missing cells (x NaN, c -1)
    modalities = ("tabular",)

    def __init__(self, spec: Spec, n_components: int | None = None, max_components: int = 10,
                 covariance: str = "full", reg_covar: float = 1e-6, max_iter: int = 200,
                 tol: float = 1e-4, n_init: int = 1, category_prior: float = 1.0, rank: int | None = None):
        if n_components is not None:
            check_int("n_components", n_components, 1)
        check_int("max_components", max_components, 1)
        if covariance not in ("full", "diag"):
            raise ConfigError(f"covariance={covariance!r} is not supported; use 'full' or 'diag'")
        check_float("reg_covar", reg_covar, 0.0)
        check_int("max_iter", max_iter, 1)
        check_float("tol", tol, 0.0)
        check_int("n_init", n_init, 1)
        check_float("category_prior", category_prior, 0.0)
        check_spec(spec, "gmm")
        if rank is not None:
            check_int("rank", rank, 1)
            if covariance != "full":
                raise ConfigError(f"rank={rank} needs covariance='full' (it constrains full covariances)")
            if rank >= max(spec.n_continuous, 1):
                raise ConfigError(f"rank must be below the {spec.n_continuous} real-valued columns, got {rank}; "
                                  "use rank=None for unconstrained covariances")
        n_components = None if n_components is None else int(n_components)
        super().__init__(spec, n_components=n_components, max_components=int(max_components),
                         covariance=covariance, reg_covar=float(reg_covar), max_iter=int(max_iter),
                         tol=float(tol), n_init=int(n_init), category_prior=float(category_prior),
                         rank=None if rank is None else int(rank))
        cards = torch.tensor(spec.cardinalities, dtype=torch.long)
        # offsets of each slot in the concatenated one-hot layout; derived from spec, so not saved
        self.register_buffer("offsets", torch.cumsum(cards, 0) - cards, persistent=False)
        self._fixed_k = n_components   # the user's choice, so a refit of this instance re-runs BIC
        self._allocate(n_components or 1)

    # ---------------------------------------------------------------- state
    def _allocate(self, k: int) -> None:
        """(Re-)register the learned buffers for k components; every shape is a function of config."""
        D, cards, dev = self.spec.n_continuous, self.spec.cardinalities, self.device
        f64 = dict(dtype=torch.float64, device=dev)
        self.register_buffer("log_weights", torch.full((k,), -math.log(k), **f64))          # (k,)
        self.register_buffer("means", torch.zeros(k, D, **f64))                              # (k, D)
        if self.config["covariance"] == "full":
            self.register_buffer("scale_tril", torch.eye(D, **f64).expand(k, D, D).clone())  # (k, D, D)
        else:
            self.register_buffer("scale", torch.ones(k, D, **f64))                           # (k, D) std devs
        uniform = torch.cat([torch.full((card,), -math.log(card), **f64) for card in cards]) if cards \
            else torch.zeros(0, **f64)
        self.register_buffer("log_theta", uniform.expand(k, -1).clone())                     # (k, S)
        self.register_buffer("fitted", torch.tensor(False, device=dev))

    def _params(self) -> Params:
        scale = self.scale_tril if self.config["covariance"] == "full" else self.scale
        return {"log_weights": self.log_weights, "means": self.means, "scale": scale,
                "log_theta": self.log_theta}

    def n_parameters(self, k: int) -> int:
        """Free parameters of a k-component model (what BIC counts)."""
        D = self.spec.n_continuous
        q = self.config["rank"]
        cov = D * (D + 1) // 2 if self.config["covariance"] == "full" else D
        if q is not None:
            cov = D * q - q * (q - 1) // 2 + 1
        return (k - 1) + k * (D + cov + sum(card - 1 for card in self.spec.cardinalities))

    # ---------------------------------------------------------------- density
    def _log_joint(self, p: Params, x: Tensor, c: Tensor) -> Tensor:
        """log pi_k + log p(x, c | k) for every row and component: (B, k), float64."""
        B, D, k = x.shape[0], x.shape[1], p["means"].shape[0]
        out = p["log_weights"].expand(B, k).clone()                                   # (B, k)
        # components one at a time: memory O(B D), not O(B k D)
        for j in range(k if D else 0):
            diff = x - p["means"][j]                                                  # (B, D)
            if self.config["covariance"] == "full":
                L = p["scale"][j]                                                     # (D, D)
                z = torch.linalg.solve_triangular(L, diff.T, upper=False)             # (D, B)
                maha, logdet = (z * z).sum(0), L.diagonal().log().sum()
            else:
                maha, logdet = ((diff / p["scale"][j]) ** 2).sum(1), p["scale"][j].log().sum()
            out[:, j] += -0.5 * maha - logdet - 0.5 * D * math.log(2 * math.pi)
        if c.shape[1]:
            idx = c + self.offsets                                                    # (B, K) into S
            out += p["log_theta"][:, idx].sum(-1).T                                   # (k, B, K) -> (B, k)
        return out

    def log_prob(self, batch: Batch) -> Tensor:
        """Exact log p(x, c) in nats, (B,), in the floating dtype of batch["x"]; where the batch marks
        slots as missing (x NaN, c -1), the exact marginal of the other slots."""
        if not bool(self.fitted):
            raise NotFittedError("GMM.log_prob called before fit_closed_form")
        out_dtype = batch["x"].dtype if "x" in batch and batch["x"].is_floating_point() else torch.float32
        if _has_free(batch):
            n = (batch["x"] if "x" in batch else batch["c"]).shape[0]
            x, c, given_x, given_c = unpack_condition(self.spec, batch, n, dtype=torch.float64, device=self.device)
            log_joint, _, _ = self._given_joint(self._params(), x, ~given_x, c, given_c)
            return torch.logsumexp(log_joint, 1).to(out_dtype)
        x, c = unpack(self.spec, batch, dtype=torch.float64, device=self.device)
        return torch.logsumexp(self._log_joint(self._params(), x, c), 1).to(out_dtype)

    # ---------------------------------------------------------------- given some slots (missing values)
    def _precision(self, p: Params) -> tuple[Tensor, Tensor, Tensor]:
        """Every component's inverse Cholesky factor Linv (Sigma^-1 = Linv^T Linv) (k, D, D), precision
        (k, D, D) and log|Sigma| (k,)."""
        if self.config["covariance"] == "full":
            L = p["scale"]                                                            # (k, D, D)
            Linv = torch.linalg.solve_triangular(L, torch.eye(L.shape[-1], dtype=L.dtype, device=L.device)
                                                 .expand_as(L), upper=False)
            return Linv, Linv.mT @ Linv, 2 * L.diagonal(dim1=-2, dim2=-1).log().sum(-1)
        s = p["scale"]                                                                # (k, D)
        return torch.diag_embed(1 / s), torch.diag_embed(s ** -2), 2 * s.log().sum(-1)

    def _given_x(self, mu: Tensor, pre: tuple[Tensor, Tensor, Tensor], x: Tensor, free: Tensor,
                 lay: _Layout, cov: bool = False) -> tuple[Tensor, Tensor, Tensor]:
        """Every component (means mu (k, D), ``_precision`` pre) given each row's observed x: log N(x_O;
        mu_kO, Sigma_kOO) (k, n) and x with its free slots at E[x_M | x_O, k] (k, n, D); then per
        pattern either the Cholesky factor R of Lambda_kMM (R R^T = Lambda_kMM) or (``cov``)
        Cov(x_M | x_O, k) = Lambda_kMM^-1, as (k, P, m, m) blocks, identity (R) or zero (cov) in the
        padding."""
        Linv, prec, logdet = pre
        k = mu.shape[0]
        d = torch.where(free, 0.0, x - mu[:, None])                                   # (k, n, D), 0 where free
        R = torch.linalg.cholesky_ex(prec.reshape(k, -1)[:, lay.flat] * lay.inside + lay.pad)[0]  # (k, P, m, m)
        out = R
        e, half_logdet_mm = d, 0.0
        if lay.m:
            ri, rv = lay.idx[lay.inv].expand(k, -1, -1), lay.valid[lay.inv]           # (k, n, m), (n, m)
            bm = torch.gather(d @ prec, 2, ri) * rv                                   # Lambda_MO (x_O - mu_O)
            if cov:
                out = torch.cholesky_inverse(R) * lay.inside                          # (k, P, m, m)
                ym = (out[:, lay.inv] @ bm[..., None]).squeeze(-1)                    # (k, n, m)
            else:
                ym = torch.cholesky_solve(bm[..., None], R[:, lay.inv]).squeeze(-1) * rv
            e = d - torch.zeros_like(d).scatter_add_(2, ri, ym)                       # (k, n, D)
            half_logdet_mm = R.diagonal(dim1=-2, dim2=-1).log().sum(-1)[:, lay.inv]   # (k, n) 1/2 log|Lambda_MM|
            if not torch.isfinite(half_logdet_mm).all():
                raise DataError("a GMM covariance is numerically singular on a block of missing slots; "
                                "increase reg_covar")
        z = e @ Linv.mT                                                               # (k, n, D)
        log_dens = -0.5 * (z * z).sum(-1) - 0.5 * logdet[:, None] - half_logdet_mm \
            - 0.5 * (~free).sum(1) * math.log(2 * math.pi)                            # (k, n)
        return log_dens, torch.where(free, mu[:, None] + e, x), out

    def _given_joint(self, p: Params, x: Tensor, free: Tensor, c: Tensor, given_c: Tensor,
                     lay: _Layout | None = None, cov: bool = False,
                     pre: tuple | None = None) -> tuple[Tensor, Tensor | None, Tensor | None]:
        """log pi_k + log p(x_O, c_O | k): (n, k); per component x completed by E[x_M | x_O, k]
        (k, n, D), and the blocks of ``_given_x`` (None without real-valued slots). x and c may hold
        anything in free slots."""
        n, D, k = x.shape[0], x.shape[1], p["means"].shape[0]
        out = p["log_weights"].expand(n, k).clone()                                   # (n, k)
        xhats = blocks = None
        if D:
            log_dens, xhats, blocks = self._given_x(p["means"], pre or self._precision(p), x, free,
                                                    lay or _Layout(free), cov)
            out += log_dens.T
        if c.shape[1]:
            lt = p["log_theta"][:, c + self.offsets]                                  # (k, n, K)
            out += torch.where(given_c, lt, 0.0).sum(-1).T
        return out, xhats, blocks

    def _e_step_given(self, p: Params, x: Tensor, free: Tensor, c: Tensor, given_c: Tensor, onehot: Tensor,
                      chunks: list[tuple[int, int, _Layout | None]]) -> tuple[float, Params]:
        """Summed log-likelihood of the observed cells and the expected sufficient statistics, chunk by
        chunk of rows: Nk (k,), sums of E[x] (k, D) and of E[x x^T] (k, D, D) (diag: E[x^2], (k, D)),
        category counts (k, S). A free x adds its conditional covariance Lambda_MM^-1 to the second
        moment; a free c counts as theta_k."""
        D, k, full = x.shape[1], p["means"].shape[0], self.config["covariance"] == "full"
        f64 = dict(dtype=x.dtype, device=x.device)
        Nk, S1 = torch.zeros(k, **f64), torch.zeros(k, D, **f64)
        S2 = torch.zeros(k, D, D, **f64) if full else torch.zeros(k, D, **f64)
        counts = torch.zeros(k, onehot.shape[1], **f64)
        theta = p["log_theta"].exp()                                                  # (k, S)
        pre = self._precision(p) if D else None
        total = 0.0
        for lo, hi, lay in chunks:
            log_joint, xhats, covs = self._given_joint(p, x[lo:hi], free[lo:hi], c[lo:hi], given_c[lo:hi],
                                                       lay, cov=True, pre=pre)         # (B, k)
            ll_i = torch.logsumexp(log_joint, 1)                                      # (B,)
            total += ll_i.sum().item()
            r = (log_joint - ll_i[:, None]).exp()                                     # (B, k)
            Nk += r.sum(0)
            if D:
                rx = r.T[:, :, None] * xhats                                          # (k, B, D)
                S1 += rx.sum(1)
                w = torch.zeros(k, lay.n_patterns, **f64).index_add_(1, lay.inv, r.T)  # (k, P)
                if full:
                    S2 += rx.mT @ xhats                                               # (k, D, D)
                    if lay.m:
                        S2.view(k, -1).index_add_(1, lay.flat.reshape(-1), (w[..., None, None] * covs).reshape(k, -1))
                else:
                    S2 += (rx * xhats).sum(1)                                         # (k, D)
                    if lay.m:
                        S2.index_add_(1, lay.idx.reshape(-1),
                                      (w[..., None] * covs.diagonal(dim1=-2, dim2=-1)).reshape(k, -1))
            counts += r.T @ onehot[lo:hi]                                             # given cells
            for s, (o, card) in enumerate(zip(self.offsets.tolist(), self.spec.cardinalities)):
                expected = r.T @ (~given_c[lo:hi, s]).to(r.dtype)                     # (k,) free cells
                counts[:, o:o + card] += expected[:, None] * theta[:, o:o + card]
        return total, {"Nk": Nk, "S1": S1, "S2": S2, "counts": counts}

    def _m_step_given(self, st: Params) -> Params:
        """Parameters from expected sufficient statistics (``_e_step_given``)."""
        Nk = st["Nk"] + _EPS                                                          # (k,)
        means = st["S1"] / Nk[:, None]                                                # (k, D)
        if self.config["covariance"] == "full":
            covs = st["S2"] / Nk[:, None, None] - means[:, :, None] * means[:, None, :]   # (k, D, D)
            covs = (covs + covs.mT) / 2
        else:
            covs = (st["S2"] / Nk[:, None] - means ** 2).clamp_min(0)                 # (k, D)
        return self._finish_m_step(Nk, means, covs, st["counts"])

    def _m_step(self, resp: Tensor, x: Tensor, onehot: Tensor) -> Params:
        """Maximise the expected complete log-likelihood (plus the Dirichlet prior on theta)."""
        N, k = resp.shape
        Nk = resp.sum(0) + _EPS                                                       # (k,)
        means = resp.T @ x / Nk[:, None]                                              # (k, D)
        covs = []
        for j in range(k):
            diff = x - means[j]                                                       # (N, D)
            if self.config["covariance"] == "full":
                covs.append((resp[:, j, None] * diff).T @ diff / Nk[j])               # (D, D)
            else:
                covs.append((resp[:, j, None] * diff * diff).sum(0) / Nk[j])          # (D,)
        return self._finish_m_step(Nk, means, torch.stack(covs), resp.T @ onehot)

    def _finish_m_step(self, Nk: Tensor, means: Tensor, covs: Tensor, counts: Tensor) -> Params:
        """Parameters from the weighted statistics: component sizes Nk (k,), means (k, D), covariances
        (k, D, D) (diag: variances (k, D)) without the regulariser, category counts (k, S) without the
        prior."""
        reg = self.config["reg_covar"]
        if self.config["rank"] is not None:
            covs = ppca_covariance(covs, self.config["rank"])
        if self.config["covariance"] == "full":
            covs = covs + reg * torch.eye(covs.shape[-1], dtype=covs.dtype, device=covs.device)
            scale, info = torch.linalg.cholesky_ex(covs)                              # (k, D, D)
            if (info != 0).any():
                raise DataError("GMM covariance is not positive definite (duplicate or collinear "
                                f"columns?); increase reg_covar (now {reg}) or use covariance='diag'")
        else:
            var = covs + reg                                                          # (k, D)
            if (var <= 0).any():
                raise DataError(f"GMM variance is zero (a constant column?); increase reg_covar (now {reg})")
            scale = var.sqrt()
        counts = counts + self.config["category_prior"]                               # (k, S)
        log_theta = torch.empty_like(counts)
        for o, card in zip(self.offsets.tolist(), self.spec.cardinalities):
            block = counts[:, o:o + card]                                             # (k, card)
            total = block.sum(1, keepdim=True)
            # a component that saw nothing and has no prior falls back to uniform, not 0/0
            log_theta[:, o:o + card] = torch.where(total > 0, block / total.clamp_min(1e-300), 1.0 / card).log()
        return {"log_weights": Nk.log() - Nk.sum().log(), "means": means, "scale": scale,
                "log_theta": log_theta}

    def _em(self, x: Tensor, onehot: Tensor, c: Tensor, k: int,
            generator: torch.Generator | None) -> tuple[Params, float, int, bool]:
        """Best of n_init EM runs from k-means++ seeds: (params, mean log-lik, iterations, converged)."""
        best: tuple[Params, float, int, bool] | None = None
        features = torch.cat([x, onehot], 1)                                          # (N, D + S)
        for _ in range(self.config["n_init"]):
            labels = _kmeans(features, k, generator)
            params = self._m_step(torch.nn.functional.one_hot(labels, k).to(x.dtype), x, onehot)
            prev, converged, it = -math.inf, False, 0
            for it in range(1, self.config["max_iter"] + 1):
                log_joint = self._log_joint(params, x, c)                             # (N, k)
                ll_i = torch.logsumexp(log_joint, 1)                                  # (N,)
                ll = ll_i.mean().item()
                if abs(ll - prev) < self.config["tol"]:
                    converged = True
                    break
                prev = ll
                params = self._m_step((log_joint - ll_i[:, None]).exp(), x, onehot)
            else:
                ll = torch.logsumexp(self._log_joint(params, x, c), 1).mean().item()
            if best is None or ll > best[1]:
                best = (params, ll, it, converged)
        assert best is not None
        return best

    def _em_given(self, x: Tensor, free: Tensor, c: Tensor, given_c: Tensor, k: int,
                  generator: torch.Generator | None, trace: list[float] | None = None,
                  init: Params | None = None) -> tuple[Params, float, int, bool]:
        """``_em`` for data with missing cells (``free``: x missing; ``given_c``: c observed). The mean
        log-likelihood is that of the observed cells; ``trace`` (a list) collects it per iteration.
        ``init``: start from these parameters (one run) instead of n_init k-means++ starts."""
        N, D = x.shape
        # rows sorted by their number of missing x and cut into chunks of at least 256 rows, ending
        # where the count changes (so blocks are padded little) or where the blocks of every
        # component would pass ~32 MB
        n_free = free.sum(1)                                                          # (N,)
        order = torch.argsort(n_free, stable=True)
        x, free, c, given_c, n_free = x[order], free[order], c[order], given_c[order], n_free[order]
        cards = torch.tensor(self.spec.cardinalities, dtype=torch.long, device=x.device)
        onehot = self._onehot(c) * given_c.repeat_interleave(cards, 1) if c.shape[1] else x.new_zeros(N, 0)
        ends = (torch.cumsum(torch.unique_consecutive(n_free, return_counts=True)[1], 0).tolist() if N else [])
        chunks, lo = [], 0
        for end in ends:
            while lo < end:
                m = int(n_free[end - 1])
                hi = min(end, lo + max(64, int(4e6 // (k * (m * m + D + 1)))))
                if hi - lo < 256 and end < N:
                    break                                  # too few rows: merge with the next count
                chunks.append((lo, hi))
                lo = hi
        if lo < N:
            chunks.append((lo, N))
        chunks = [(a, b, _Layout(free[a:b]) if D else None) for a, b in chunks]
        # the start: k-means++ on x with free cells at the column's observed mean, free c as no category
        col_mean = torch.where(free, 0.0, x).sum(0) / (~free).sum(0).clamp_min(1)    # (D,)
        x0 = torch.where(free, col_mean, x)                                           # (N, D)
        best: tuple[Params, float, int, bool] | None = None
        for _ in range(1 if init is not None else self.config["n_init"]):
            if init is not None:
                params = init
            else:
                labels = _kmeans(torch.cat([x0, onehot], 1), k, generator)
                params = self._m_step(torch.nn.functional.one_hot(labels, k).to(x.dtype), x0, onehot)
            prev, converged, it = -math.inf, False, 0
            for it in range(1, self.config["max_iter"] + 1):
                total, stats = self._e_step_given(params, x, free, c, given_c, onehot, chunks)
                ll = total / N
                if trace is not None:
                    trace.append(ll)
                if abs(ll - prev) < self.config["tol"]:
                    converged = True
                    break
                prev = ll
                params = self._m_step_given(stats)
            else:
                ll = self._e_step_given(params, x, free, c, given_c, onehot, chunks)[0] / N
            if best is None or ll > best[1]:
                best = (params, ll, it, converged)
        assert best is not None
        return best

    def _onehot(self, c: Tensor) -> Tensor:
        """Concatenated one-hot codes of the discrete slots: (N, S)."""
        return torch.cat([torch.nn.functional.one_hot(c[:, j], card) for j, card in
                          enumerate(self.spec.cardinalities)], 1).to(torch.float64)

    def fit_closed_form(self, train: Batch, val: Batch | None = None, *,
                        generator: torch.Generator | None = None) -> dict[str, float]:
        """Fit by EM (choosing k by BIC if n_components is None); returns k, bic and log-likelihoods.

        Cells marked missing in ``train`` (x NaN, c -1) are integrated out (the EM for incomplete data,
        see the module docstring); the log-likelihoods are then those of the observed cells.
        """
        if _has_free(train):
            N = (train["x"] if "x" in train else train["c"]).shape[0]
            x, c, given_x, given_c = unpack_condition(self.spec, train, N, dtype=torch.float64, device=self.device)
            if (~given_x).all(0).any() and N:
                j = int((~given_x).all(0).nonzero()[0])
                raise DataError(f"real-valued slot {j} is missing in every row; drop it before fitting")
            run = lambda k: self._em_given(x, ~given_x, c, given_c, k, generator)
        else:
            x, c = unpack(self.spec, train, dtype=torch.float64, device=self.device)
            N = x.shape[0]
            onehot = self._onehot(c) if c.shape[1] else x.new_zeros(N, 0)             # (N, S)
            run = lambda k: self._em(x, onehot, c, k, generator)
        if N == 0:
            raise DataError("GMM cannot be fitted on an empty batch")
        fixed = self._fixed_k
        if fixed is not None:
            if fixed > N:
                raise DataError(f"n_components={fixed} exceeds the {N} training rows")
            ks = [fixed]
        else:
            ks = list(range(1, min(self.config["max_components"], N) + 1))
        best, prev_bic, worse = None, math.inf, 0
        for k in ks:
            params, ll, n_iter, converged = run(k)
            bic = -2 * N * ll + self.n_parameters(k) * math.log(N)
            if best is None or bic < best["bic"]:
                best = {"k": k, "params": params, "ll": ll, "bic": bic, "n_iter": n_iter, "converged": converged}
            worse = worse + 1 if bic > prev_bic else 0
            prev_bic = bic
            if worse >= 2:
                break
        assert best is not None
        self.config["n_components"] = best["k"]
        self._allocate(best["k"])
        p = best["params"]
        self.log_weights.copy_(p["log_weights"])
        self.means.copy_(p["means"])
        (self.scale_tril if self.config["covariance"] == "full" else self.scale).copy_(p["scale"])
        self.log_theta.copy_(p["log_theta"])
        self.fitted.fill_(True)
        stats = {"n_components": float(best["k"]), "bic": best["bic"], "train_log_lik": best["ll"],
                 "n_iter": float(best["n_iter"]), "converged": float(best["converged"])}
        if val is not None:
            stats["val_log_lik"] = self.log_prob(val).double().mean().item()
        return stats

    @classmethod
    def mixture_of(cls, models: list[GMM]) -> GMM:
        """The equal-weight mixture of fitted GMMs of one spec and covariance type, as one GMM: every
        component of every model, its weight divided by len(models). Averaging EM fits from several
        starts this way smooths over the local optima each one lands in.

        >>> import torch
        >>> x = {"x": torch.randn(300, 2)}
        >>> fits = [GMM(Spec(n_continuous=2), n_components=2) for _ in range(3)]
        >>> for i, g in enumerate(fits):
        ...     _ = g.fit_closed_form(x, generator=torch.Generator().manual_seed(i))
        >>> GMM.mixture_of(fits).log_weights.shape
        torch.Size([6])
        """
        if not models or not all(bool(m.fitted) for m in models):
            raise NotFittedError("GMM.mixture_of needs fitted models")
        first = models[0]
        if any(m.spec != first.spec or m.config["covariance"] != first.config["covariance"] for m in models):
            raise ConfigError("GMM.mixture_of needs models of one spec and one covariance type")
        k = sum(m.log_weights.shape[0] for m in models)
        out = cls(first.spec, **{**first.config, "n_components": k}).to(first.device)
        cat = lambda name: torch.cat([getattr(m, name) for m in models])
        scale = "scale_tril" if first.config["covariance"] == "full" else "scale"
        out.log_weights.copy_(cat("log_weights") - math.log(len(models)))
        out.means.copy_(cat("means"))
        getattr(out, scale).copy_(cat(scale))
        out.log_theta.copy_(cat("log_theta"))
        out.fitted.fill_(True)
        return out

    # ---------------------------------------------------------------- sampling
    @torch.no_grad()
    def sample(self, n: int, *, condition: Batch | None = None,
               generator: torch.Generator | None = None) -> Batch:
        """Draw a component, then x from its Gaussian and each c_j from its categorical.

        With ``condition`` (n rows; x NaN and c -1 in the free slots), draw from the exact conditional
        given the other slots, which are returned as given (see ``_sample_given``).
        """
        check_int("n", n, 0)
        if not bool(self.fitted):
            raise NotFittedError("GMM.sample called before fit_closed_form")
        if condition is not None:
            return self._sample_given(n, condition, generator)
        dev, D, K = self.device, self.spec.n_continuous, len(self.spec.cardinalities)
        gdev = generator.device if generator is not None else dev
        if n == 0:
            return {"x": torch.zeros(0, D, device=dev), "c": torch.zeros(0, K, dtype=torch.long, device=dev)}
        z = torch.multinomial(self.log_weights.exp().to(gdev), n, replacement=True,
                              generator=generator).to(dev)                            # (n,)
        eps = torch.randn(n, D, generator=generator, device=gdev, dtype=torch.float64).to(dev)
        u = torch.rand(n, K, generator=generator, device=gdev, dtype=torch.float64).to(dev)
        x = self.means[z].clone()                                                     # (n, D)
        for j in range(self.log_weights.shape[0]):   # per component keeps memory O(n D)
            m = z == j
            if self.config["covariance"] == "full":
                x[m] += eps[m] @ self.scale_tril[j].T
            else:
                x[m] += eps[m] * self.scale[j]
        return {"x": x.float(), "c": self._draw_categories(z, u)}

    def _draw_categories(self, z: Tensor, u: Tensor) -> Tensor:
        """c_j ~ theta_{z j} for every row and slot by inverse CDF of the uniforms u (n, K): (n, K)."""
        c = torch.zeros(u.shape, dtype=torch.long, device=u.device)
        for j, (o, card) in enumerate(zip(self.offsets.tolist(), self.spec.cardinalities)):
            cdf = self.log_theta[z, o:o + card].exp().cumsum(1)                       # (n, card)
            # inverse CDF; the clamp guards against a cdf that ends a rounding error below 1
            c[:, j] = (u[:, j:j + 1] > cdf).sum(1).clamp_max(card - 1)
        return c

    def _sample_given(self, n: int, condition: Batch, generator: torch.Generator | None) -> Batch:
        """Exact draws from p(free slots | conditioned slots), one row of ``condition`` per draw.

        A component is drawn from its posterior w_k ∝ pi_k N(x_A; mu_kA, Sigma_kAA) prod theta_kj(c_j)
        (A: the given x slots), then the free x from N(E[x_B | x_A, k], Lambda_kBB^-1): with
        Lambda_kBB = R R^T (Cholesky), the noise is R^-T eps. Rows are grouped by which x slots they
        give (one factorisation per pattern and component; see ``_given_x``).
        """
        dev, D, K, k = self.device, self.spec.n_continuous, len(self.spec.cardinalities), self.log_weights.shape[0]
        xg, cg, given_x, given_c = unpack_condition(self.spec, condition, n, dtype=torch.float64, device=dev)
        gdev = generator.device if generator is not None else dev
        f64 = {"generator": generator, "device": gdev, "dtype": torch.float64}
        # every random number up front, so the stream depends on n alone
        u_z = torch.rand(n, **f64).to(dev)                                           # (n,)
        eps = torch.randn(n, D, **f64).to(dev)                                        # (n, D)
        u = torch.rand(n, K, **f64).to(dev)                                           # (n, K)
        free = ~given_x
        lay = _Layout(free) if D and n else None
        log_w, xhats, factors = self._given_joint(self._params(), xg, free, cg, given_c, lay)
        log_norm = torch.logsumexp(log_w, 1)                                          # (n,)
        if not torch.isfinite(log_norm).all():
            raise DataError("the condition has probability zero under this GMM (no component gives it any "
                            "mass); condition on values seen in training, or refit with category_prior > 0")
        cdf = (log_w - log_norm[:, None]).exp().cumsum(1)                             # (n, k)
        cdf = cdf / cdf[:, -1:]                        # ends at exactly 1, so u < 1 never runs off the end
        comp = (u_z[:, None] >= cdf).sum(1).clamp_max(k - 1)                          # (n,) posterior draw
        x = xg.clone()                                                                # (n, D)
        if lay is not None:
            inv, idx, valid = lay.inv, lay.idx, lay.valid
            for j in range(k):
                r = (comp == j).nonzero().squeeze(1)                                  # (r,)
                if not len(r):
                    continue
                x[r] = xhats[j, r]                                                    # given slots as given
                if idx.shape[1]:
                    ri, rv = idx[inv[r]], valid[inv[r]]                               # (r, m)
                    noise = torch.linalg.solve_triangular(factors[j, inv[r]].mT, torch.gather(eps[r], 1, ri)[..., None],
                                                          upper=True).squeeze(-1) * rv  # (r, m)
                    x[r] = x[r].scatter_add(1, ri, noise)
        c = torch.where(given_c, cg, self._draw_categories(comp, u)) if K else cg
        return {"x": x.float(), "c": c}

    @torch.no_grad()
    def conditional_mean(self, condition: Batch) -> Batch:
        """The best guess of the free slots given the others, one row per row of ``condition`` (x NaN,
        c -1 in the free slots): E[x_free | given] = sum_k w_k E[x_free | x_given, k] for real-valued
        slots (w_k the posterior of component k, as in conditional sampling) and, for each free
        discrete slot, the value of highest conditional probability sum_k w_k theta_kj. Given slots
        come back as given. Returns {"x": (n, D) float32, "c": (n, K) long}.
        """
        if not bool(self.fitted):
            raise NotFittedError("GMM.conditional_mean called before fit_closed_form")
        n = (condition["x"] if "x" in condition else condition["c"]).shape[0]
        x, c, given_x, given_c = unpack_condition(self.spec, condition, n, dtype=torch.float64, device=self.device)
        p = self._params()
        pre = self._precision(p) if x.shape[1] else None
        out_x, out_c = x.clone(), c.clone()
        for lo in range(0, n, 4096):                   # rows in chunks: memory O(chunk k D)
            sl = slice(lo, lo + 4096)
            log_w, xhats, _ = self._given_joint(p, x[sl], ~given_x[sl], c[sl], given_c[sl], pre=pre)
            w = torch.softmax(log_w, 1)                                               # (B, k)
            if not torch.isfinite(w).all():
                raise DataError("the condition has probability zero under this GMM (no component gives it "
                                "any mass)")
            if xhats is not None:
                out_x[sl] = torch.einsum("nk,knd->nd", w, xhats)                      # (B, D)
            for j, (o, card) in enumerate(zip(self.offsets.tolist(), self.spec.cardinalities)):
                mode = (w @ p["log_theta"][:, o:o + card].exp()).argmax(1)           # (B,)
                out_c[sl, j] = torch.where(given_c[sl, j], c[sl, j], mode)
        x = out_x
        return {"x": x.float(), "c": out_c}


# -------------------------------------------------------------------- helpers
def _has_free(batch: Batch) -> bool:
    """Whether a batch marks any slot as missing (x NaN, c -1)."""
    x, c = batch.get("x"), batch.get("c")
    return bool((x is not None and x.is_floating_point() and torch.isnan(x).any())
                or (c is not None and not c.is_floating_point() and (c == -1).any()))


class _Layout:
    """Rows grouped by missing pattern, for batched work on each pattern's free x slots.

    inv (n,): the pattern of each row; idx (P, m): per pattern the indices of its free slots, first to
    last, padded with 0 to the largest count m; valid (P, m): which are real; flat (P, m, m): where
    each entry of a free-slot block sits in a flattened (D, D) matrix; inside (P, m, m): 1 on real
    entries, 0 on padding; pad (P, m, m): the identity on the padding, so padded blocks factorise.
    """

    def __init__(self, free: Tensor):
        D = free.shape[1]
        patterns, self.inv = torch.unique(free, dim=0, return_inverse=True)          # (P, D), (n,)
        counts = patterns.sum(1)                                                      # (P,)
        self.n_patterns, self.m = len(patterns), int(counts.max()) if len(counts) else 0
        order = torch.argsort((~patterns).to(torch.int8), dim=1, stable=True)[:, :self.m]   # free slots first
        self.valid = torch.arange(self.m, device=free.device)[None] < counts[:, None]  # (P, m)
        self.idx = torch.where(self.valid, order, 0)
        self.flat = self.idx[:, :, None] * D + self.idx[:, None, :]                   # (P, m, m)
        vv = self.valid[:, :, None] & self.valid[:, None, :]
        self.inside = vv.double()
        self.pad = torch.where(vv, 0.0, torch.eye(self.m, dtype=torch.float64, device=free.device))


def _kmeans(F: Tensor, k: int, generator: torch.Generator | None, n_iter: int = 20) -> Tensor:
    """k-means++ seeding then a few Lloyd steps on features F (N, F); returns labels (N,)."""
    N, gdev = F.shape[0], (generator.device if generator is not None else F.device)
    first = torch.randint(N, (1,), generator=generator, device=gdev).item()
    centers = [F[first]]
    d2 = ((F - F[first]) ** 2).sum(1)                                                 # (N,)
    for _ in range(1, k):
        total = d2.sum()
        # all rows already on a centre (fewer distinct rows than k): pick uniformly
        probs = d2 / total if total > 0 else torch.full_like(d2, 1.0 / N)
        i = torch.multinomial(probs.to(gdev), 1, generator=generator).item()
        centers.append(F[i])
        d2 = torch.minimum(d2, ((F - F[i]) ** 2).sum(1))
    C = torch.stack(centers)                                                          # (k, F)
    labels = torch.cdist(F, C).argmin(1) if F.shape[1] else torch.zeros(N, dtype=torch.long, device=F.device)
    for _ in range(n_iter):
        counts = torch.bincount(labels, minlength=k).to(F.dtype)                      # (k,)
        sums = torch.zeros_like(C).index_add_(0, labels, F)                           # (k, F)
        C = torch.where(counts[:, None] > 0, sums / counts.clamp_min(1)[:, None], C)  # empty cluster keeps its centre
        new = torch.cdist(F, C).argmin(1) if F.shape[1] else labels
        if torch.equal(new, labels):
            break
        labels = new
    return labels
