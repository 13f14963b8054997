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
are independent draws from theta_k.

References:
    Dempster, Laird & Rubin (1977), Maximum likelihood from incomplete data via the EM algorithm.
    Arthur & Vassilvitskii (2007), k-means++: the advantages of careful seeding.
    Schwarz (1978), Estimating the dimension of a model (BIC).

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


class GMM(GenerativeModule):
    """Mixture of Gaussians (full or diagonal covariance) times independent categoricals per component.

    Args:
        n_components: number of components; None chooses it by BIC over 1..max_components, counting
            every free parameter (weights, means, covariances, categorical probabilities) and stopping
            once BIC has worsened for 2 consecutive k. After fit the chosen k is written here.
        max_components: upper end of the BIC sweep.
        covariance: "full" or "diag".
        reg_covar: added to the covariance diagonal (as scikit-learn) so it stays positive definite.
        max_iter, tol: EM stops after max_iter steps or when the mean log-likelihood changes < tol.
        n_init: EM restarts from different k-means++ seeds; the best mean log-likelihood wins.
        category_prior: Dirichlet (Laplace) pseudo-count added to every category count, so no category
            gets probability 0; 0 gives the plain maximum-likelihood estimate.
    """

    likelihood = "exact"
    closed_form = True
    conditional = True
    modalities = ("tabular",)

    def __init__(self, spec: Spec, n_components: int | None = None, max_components: int = 10,
                 covariance: str = "full", reg_covar: float = 1e-6, max_iter: int = 200,
                 tol: float = 1e-4, n_init: int = 1, category_prior: float = 1.0):
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
        n_components = None if n_components is None else int(n_components)
        super().__init__(spec, n_components=n_components, max_components=int(max_components),
                         covariance=covariance, reg_covar=float(reg_covar), max_iter=int(max_iter),
                         tol=float(tol), n_init=int(n_init), category_prior=float(category_prior))
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
        cov = D * (D + 1) // 2 if self.config["covariance"] == "full" else D
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
        """Exact log p(x, c) in nats, (B,), in the floating dtype of batch["x"]."""
        if not bool(self.fitted):
            raise NotFittedError("GMM.log_prob called before fit_closed_form")
        x, c = unpack(self.spec, batch, dtype=torch.float64, device=self.device)
        out_dtype = batch["x"].dtype if "x" in batch and batch["x"].is_floating_point() else torch.float32
        return torch.logsumexp(self._log_joint(self._params(), x, c), 1).to(out_dtype)

    # ---------------------------------------------------------------- fitting
    def _m_step(self, resp: Tensor, x: Tensor, onehot: Tensor) -> Params:
        """Maximise the expected complete log-likelihood (plus the Dirichlet prior on theta)."""
        N, k = resp.shape
        Nk = resp.sum(0) + _EPS                                                       # (k,)
        means = resp.T @ x / Nk[:, None]                                              # (k, D)
        reg = self.config["reg_covar"]
        scales = []
        for j in range(k):
            diff = x - means[j]                                                       # (N, D)
            if self.config["covariance"] == "full":
                cov = (resp[:, j, None] * diff).T @ diff / Nk[j]                      # (D, D)
                cov.diagonal().add_(reg)
                L, info = torch.linalg.cholesky_ex(cov)
                if info.item() != 0:
                    raise DataError("GMM covariance is not positive definite (duplicate or collinear "
                                    f"columns?); increase reg_covar (now {reg}) or use covariance='diag'")
                scales.append(L)
            else:
                var = (resp[:, j, None] * diff * diff).sum(0) / Nk[j] + reg           # (D,)
                if (var <= 0).any():
                    raise DataError(f"GMM variance is zero (a constant column?); increase reg_covar (now {reg})")
                scales.append(var.sqrt())
        scale = torch.stack(scales)                                                   # (k, D, D) or (k, D)
        counts = resp.T @ onehot + self.config["category_prior"]                      # (k, S)
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

    def fit_closed_form(self, train: Batch, val: Batch | None = None, *,
                        generator: torch.Generator | None = None) -> dict[str, float]:
        """Fit by EM (choosing k by BIC if n_components is None); returns k, bic and log-likelihoods."""
        x, c = unpack(self.spec, train, dtype=torch.float64, device=self.device)
        N = x.shape[0]
        if N == 0:
            raise DataError("GMM cannot be fitted on an empty batch")
        onehot = torch.cat([torch.nn.functional.one_hot(c[:, j], card) for j, card in
                            enumerate(self.spec.cardinalities)], 1).to(x.dtype) if c.shape[1] \
            else x.new_zeros(N, 0)                                                    # (N, S)
        fixed = self._fixed_k
        if fixed is not None:
            if fixed > N:
                raise DataError(f"n_components={fixed} exceeds the {N} training rows")
            ks = [fixed]
        else:
            ks = list(range(1, min(self.config["max_components"], N) + 1))
        best, prev_bic, worse = None, math.inf, 0
        for k in ks:
            params, ll, n_iter, converged = self._em(x, onehot, c, k, generator)
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

    def _cholesky(self, j: int, perm: Tensor) -> Tensor:
        """Cholesky factor of component j's covariance with the x slots reordered by ``perm``: (D, D)."""
        if self.config["covariance"] == "diag":
            return torch.diag(self.scale[j, perm])
        L = self.scale_tril[j]
        return torch.linalg.cholesky((L @ L.T)[perm][:, perm])

    def _sample_given(self, n: int, condition: Batch, generator: torch.Generator | None) -> Batch:
        """Exact draws from p(free slots | conditioned slots), one row of ``condition`` per draw.

        With the x slots ordered (given A, free B), the Cholesky factor of Sigma_k is
        [[L_AA, 0], [L_BA, L_BB]], so z = L_AA^-1 (x_A - mu_kA) gives log N(x_A; mu_kA, Sigma_kAA)
        (-|z|^2 / 2 - log|L_AA| - a/2 log 2 pi), the conditional mean is mu_kB + L_BA z
        (= mu_kB + Sigma_BA Sigma_AA^-1 (x_A - mu_kA)), and L_BB is the Cholesky factor of the
        conditional covariance Sigma_BB - Sigma_BA Sigma_AA^-1 Sigma_AB. Rows are grouped by which
        x slots they give (one group when one condition is repeated), one factorisation per group
        and component.
        """
        dev, D, K, k = self.device, self.spec.n_continuous, len(self.spec.cardinalities), self.log_weights.shape[0]
        xg, cg, given_x, given_c = unpack_condition(self.spec, condition, n, dtype=torch.float64, device=dev)
        gdev = generator.device if generator is not None else dev
        f64 = {"generator": generator, "device": gdev, "dtype": torch.float64}
        # every random number up front, so the stream depends on n alone
        u_z = torch.rand(n, **f64).to(dev)                                           # (n,)
        eps = torch.randn(n, D, **f64).to(dev)                                        # (n, D)
        u = torch.rand(n, K, **f64).to(dev)                                           # (n, K)
        log_w = self.log_weights.expand(n, k).clone()                                 # (n, k)
        if K:
            lt = self.log_theta[:, cg + self.offsets]                                 # (k, n, K)
            log_w += torch.where(given_c, lt, 0.0).sum(-1).T
        groups = []
        patterns, inverse = torch.unique(given_x, dim=0, return_inverse=True) if D and n else (given_x[:0], None)
        for g, pattern in enumerate(patterns):
            rows = (inverse == g).nonzero().squeeze(1)                                # (m,)
            A, B = pattern.nonzero().squeeze(1), (~pattern).nonzero().squeeze(1)
            a = A.numel()
            factors = []
            for j in range(k):
                L = self._cholesky(j, torch.cat([A, B]))                              # (D, D)
                diff = xg[rows][:, A] - self.means[j, A]                              # (m, a)
                z = torch.linalg.solve_triangular(L[:a, :a], diff.T, upper=False) if a else diff.T  # (a, m)
                log_w[rows, j] += -0.5 * (z * z).sum(0) - L[:a, :a].diagonal().log().sum() \
                    - 0.5 * a * math.log(2 * math.pi)
                factors.append((z, L[a:, :a], L[a:, a:]))
            groups.append((rows, B, factors))
        log_norm = torch.logsumexp(log_w, 1)                                          # (n,)
        if not torch.isfinite(log_norm).all():
            raise DataError("the condition has probability zero under this GMM (no component gives it any "
                            "mass); condition on values seen in training, or refit with category_prior > 0")
        cdf = (log_w - log_norm[:, None]).exp().cumsum(1)                             # (n, k)
        cdf = cdf / cdf[:, -1:]                        # ends at exactly 1, so u < 1 never runs off the end
        comp = (u_z[:, None] >= cdf).sum(1).clamp_max(k - 1)                          # (n,) posterior draw
        x = xg.clone()                                                                # (n, D)
        for rows, B, factors in groups:
            if B.numel() == 0:
                continue
            for j, (z, L_BA, L_BB) in enumerate(factors):
                m = comp[rows] == j
                r = rows[m]
                mean = self.means[j, B] + (L_BA @ z[:, m]).T                          # (r, b)
                x[r[:, None], B] = mean + eps[r][:, B] @ L_BB.T
        c = torch.where(given_c, cg, self._draw_categories(comp, u)) if K else cg
        return {"x": x.float(), "c": c}


# -------------------------------------------------------------------- helpers


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
