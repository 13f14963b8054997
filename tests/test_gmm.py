"""GMM family: exact against scikit-learn, EM as good as scikit-learn's, BIC, normalisation, rebuild,
conditional sampling against the closed form."""
from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest
import torch
from scipy.stats import multivariate_normal
from sklearn.mixture import GaussianMixture

from genmodels.core import Spec
from genmodels.errors import ConfigError, DataError, NotFittedError
from genmodels.families.gmm import GMM

torch.set_num_threads(1)

MEANS = np.array([[0.0, 0.0], [4.0, 4.0], [-4.0, 3.0]])


def mixture(n: int = 600, spread: float = 1.0, seed: int = 0) -> np.ndarray:
    """n rows from a known, well separated 3-component 2-D mixture with correlated components."""
    rng = np.random.default_rng(seed)
    z = rng.choice(3, size=n, p=[0.5, 0.3, 0.2])
    A = np.array([[[1.0, 0.0], [0.5, 0.5]], [[0.6, 0.0], [-0.3, 0.8]], [[0.4, 0.0], [0.0, 1.2]]])
    return MEANS[z] * spread + np.einsum("nij,nj->ni", A[z], rng.standard_normal((n, 2)))


def batch(x=None, c=None, n=None) -> dict:
    n = n if n is not None else (len(x) if x is not None else len(c))
    return {"x": torch.as_tensor(x, dtype=torch.float64) if x is not None else torch.zeros(n, 0, dtype=torch.float64),
            "c": torch.as_tensor(c, dtype=torch.long) if c is not None else torch.zeros(n, 0, dtype=torch.long)}


def mixed_data(n: int = 400, seed: int = 0) -> dict:
    """Two clusters; the discrete slots depend on the cluster, so the joint matters."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randint(2, (n,), generator=g)
    x = torch.randn(n, 2, generator=g) + 3.0 * z[:, None]
    c0 = torch.where(torch.rand(n, generator=g) < 0.8, z, 1 - z)
    c1 = (torch.randint(3, (n,), generator=g) + 2 * z) % 4
    return {"x": x, "c": torch.stack([c0, c1], 1)}


@pytest.mark.parametrize("covariance", ["full", "diag"])
def test_log_prob_equals_sklearn(covariance):
    X = mixture(300)
    sk = GaussianMixture(3, covariance_type=covariance, random_state=0).fit(X)
    gmm = GMM(Spec(n_continuous=2), n_components=3, covariance=covariance)
    scale = {"scale_tril": torch.linalg.cholesky(torch.tensor(sk.covariances_))} if covariance == "full" \
        else {"scale": torch.tensor(sk.covariances_).sqrt()}
    gmm.load_state_dict({"log_weights": torch.tensor(sk.weights_).log(), "means": torch.tensor(sk.means_),
                         "log_theta": torch.zeros(3, 0, dtype=torch.float64), "fitted": torch.tensor(True), **scale})
    Xq = np.concatenate([X[:50], mixture(50, seed=1) * 1.5])
    ours = gmm.log_prob(batch(Xq)).numpy()
    np.testing.assert_allclose(ours, sk.score_samples(Xq), rtol=0, atol=1e-6)


@pytest.mark.parametrize("covariance", ["full", "diag"])
def test_em_matches_sklearn_likelihood(covariance):
    X = mixture(600, spread=0.6)     # overlapping components, so EM has work to do
    sk = GaussianMixture(3, covariance_type=covariance, random_state=0).fit(X)
    gmm = GMM(Spec(n_continuous=2), n_components=3, covariance=covariance)
    stats = gmm.fit_closed_form(batch(X), generator=torch.Generator().manual_seed(0))
    ours = gmm.log_prob(batch(X)).mean().item()
    assert ours == pytest.approx(stats["train_log_lik"], abs=1e-9)
    assert ours >= sk.score(X) - 0.02


def test_bic_picks_true_k():
    gmm = GMM(Spec(n_continuous=2), max_components=8)
    stats = gmm.fit_closed_form(batch(mixture(600, spread=2.0)), generator=torch.Generator().manual_seed(0))
    assert stats["n_components"] == 3 and gmm.config["n_components"] == 3
    assert gmm.means.shape == (3, 2)


def test_discrete_only_sums_to_one():
    g = torch.Generator().manual_seed(0)
    a = torch.randint(2, (500,), generator=g)
    c = torch.stack([a, (a + torch.randint(2, (500,), generator=g)) % 3, torch.randint(2, (500,), generator=g)], 1)
    spec = Spec(cardinalities=(2, 3, 2))
    for k in (None, 3):
        gmm = GMM(spec, n_components=k)
        gmm.fit_closed_form({"x": torch.zeros(500, 0), "c": c}, generator=g)
        grid = torch.tensor(list(itertools.product(range(2), range(3), range(2))))
        total = gmm.log_prob(batch(c=grid, n=len(grid))).exp().sum().item()
        assert total == pytest.approx(1.0, abs=1e-9)


@pytest.mark.parametrize("covariance", ["full", "diag"])
def test_mixed_data_log_prob_and_samples(covariance):
    spec = Spec(n_continuous=2, cardinalities=(2, 4))
    data = mixed_data()
    gmm = GMM(spec, covariance=covariance, max_components=4)
    stats = gmm.fit_closed_form(data, data, generator=torch.Generator().manual_seed(0))
    assert stats["n_components"] >= 2 and np.isfinite(stats["val_log_lik"])
    lp = gmm.log_prob(data)
    assert lp.shape == (400,) and lp.dtype == torch.float32 and torch.isfinite(lp).all()
    # an unseen (x, c) combination still gets a finite density thanks to category_prior
    assert torch.isfinite(gmm.log_prob({"x": torch.tensor([[0.0, 0.0]]), "c": torch.tensor([[1, 3]])})).all()
    s = gmm.sample(300, generator=torch.Generator().manual_seed(1))
    assert s["x"].shape == (300, 2) and s["x"].dtype == torch.float32
    assert s["c"].shape == (300, 2) and s["c"].dtype == torch.long
    assert (s["c"] >= 0).all() and (s["c"][:, 0] < 2).all() and (s["c"][:, 1] < 4).all()
    # the samples carry the x-c dependence: c0 agrees with the x cluster most of the time
    agree = ((s["x"].mean(1) > 1.5).long() == s["c"][:, 0]).float().mean().item()
    assert agree > 0.65
    assert gmm.sample(0)["x"].shape == (0, 2)


def test_seeded_sampling_and_fit_repeatable():
    spec, data = Spec(n_continuous=2, cardinalities=(2, 4)), mixed_data()
    fits = []
    for _ in range(2):
        gmm = GMM(spec, n_components=3)
        gmm.fit_closed_form(data, generator=torch.Generator().manual_seed(5))
        fits.append(gmm)
    assert torch.equal(fits[0].means, fits[1].means)
    a, b = (fits[0].sample(50, generator=torch.Generator().manual_seed(2)) for _ in range(2))
    c = fits[0].sample(50, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a["x"], b["x"]) and torch.equal(a["c"], b["c"])
    assert not torch.equal(a["x"], c["x"])


@pytest.mark.parametrize("covariance", ["full", "diag"])
def test_rebuild_from_config_is_exact(covariance):
    spec, data = Spec(n_continuous=2, cardinalities=(2, 4)), mixed_data()
    gmm = GMM(spec, covariance=covariance, max_components=4)
    gmm.fit_closed_form(data, generator=torch.Generator().manual_seed(0))
    config = json.loads(json.dumps(gmm.config))   # the checkpoint stores it as JSON
    clone = GMM(spec, **config)
    clone.load_state_dict(gmm.state_dict())
    assert torch.equal(clone.log_prob(data), gmm.log_prob(data))
    g1, g2 = torch.Generator().manual_seed(4), torch.Generator().manual_seed(4)
    assert torch.equal(clone.sample(20, generator=g1)["x"], gmm.sample(20, generator=g2)["x"])


@pytest.mark.parametrize("kwargs", [
    {"n_components": 0}, {"n_components": 2.5}, {"max_components": 0}, {"covariance": "spherical"},
    {"reg_covar": -1.0}, {"max_iter": 0}, {"tol": -1e-3}, {"n_init": 0}, {"category_prior": -0.5},
    {"category_prior": float("nan")}, {"n_init": True}, {"rank": 0}, {"rank": 2}, {"rank": 1.5},
    {"rank": 1, "covariance": "diag"},
])
def test_bad_hyperparameters_raise(kwargs):
    with pytest.raises(ConfigError, match=next(iter(kwargs))):
        GMM(Spec(n_continuous=2, cardinalities=(3,)), **kwargs)


def test_bad_use_raises():
    spec = Spec(n_continuous=2, cardinalities=(3,))
    gmm = GMM(spec, n_components=2)
    data = {"x": torch.randn(50, 2), "c": torch.randint(3, (50, 1))}
    with pytest.raises(NotFittedError):
        gmm.log_prob(data)
    with pytest.raises(DataError, match="n_components=2"):
        gmm.fit_closed_form({"x": data["x"][:1], "c": data["c"][:1]})
    gmm.fit_closed_form(data, generator=torch.Generator().manual_seed(0))
    with pytest.raises(DataError, match=r"sample\(5, condition"):
        gmm.sample(5, condition=data)        # a condition has one row per sample
    with pytest.raises(DataError, match="slot 0"):
        gmm.log_prob({"x": torch.randn(2, 2), "c": torch.tensor([[0], [3]])})
    with pytest.raises(DataError, match="expects x"):
        gmm.log_prob({"x": torch.randn(2, 3), "c": torch.tensor([[0], [1]])})
    with pytest.raises(ConfigError):
        GMM(Spec())


# ---------------------------------------------------------------- conditional sampling
# Three components over x (3 dims) and two discrete slots: slot 0 (3 values) has a known table per
# component, slot 1 is a tag that equals the component (theta one-hot), so samples reveal k.
PI = np.array([0.5, 0.3, 0.2])
MU = np.array([[0.0, 0.0, 0.0], [1.5, 1.0, -1.0], [-1.0, 0.5, 2.0]])
TRIL = np.array([[[1.0, 0, 0], [0.6, 0.8, 0], [-0.3, 0.4, 0.7]],
                 [[0.7, 0, 0], [-0.4, 0.9, 0], [0.2, 0.5, 0.6]],
                 [[1.2, 0, 0], [0.3, 0.5, 0], [0.6, -0.2, 0.9]]])
SCALE = np.array([[1.0, 0.8, 0.7], [0.7, 0.9, 0.6], [1.2, 0.5, 0.9]])
THETA = np.array([[0.6, 0.3, 0.1], [0.2, 0.3, 0.5], [0.1, 0.2, 0.7]])


def known_gmm(covariance: str) -> tuple[GMM, np.ndarray]:
    """A GMM with the parameters above set by hand, and its covariances (3, 3, 3)."""
    gmm = GMM(Spec(n_continuous=3, cardinalities=(3, 3)), n_components=3, covariance=covariance)
    with np.errstate(divide="ignore"):
        log_theta = np.log(np.concatenate([THETA, np.eye(3)], 1))
    state = {"log_weights": np.log(PI), "means": MU, "log_theta": log_theta, "fitted": True}
    if covariance == "full":
        state["scale_tril"], cov = TRIL, TRIL @ TRIL.transpose(0, 2, 1)
    else:
        state["scale"], cov = SCALE, np.stack([np.diag(s**2) for s in SCALE])
    gmm.load_state_dict({k: torch.tensor(v, dtype=torch.float64 if k != "fitted" else torch.bool)
                         for k, v in state.items()})
    return gmm, cov


def closed_form(cov: np.ndarray, A: list[int], xa: np.ndarray, c0: int | None):
    """Posterior weights w_k and per-component conditional mean / covariance of the free x."""
    B = [d for d in range(3) if d not in A]
    log_w, means, covs = np.log(PI).copy(), [], []
    for k in range(3):
        Saa, Sba, Sbb = cov[k][np.ix_(A, A)], cov[k][np.ix_(B, A)], cov[k][np.ix_(B, B)]
        if A:
            log_w[k] += multivariate_normal(MU[k, A], Saa).logpdf(xa)
            gain = Sba @ np.linalg.inv(Saa)
            means.append(MU[k, B] + gain @ (xa - MU[k, A]))
            covs.append(Sbb - gain @ Sba.T)
        else:
            means.append(MU[k, B])
            covs.append(Sbb)
        if c0 is not None:
            log_w[k] += np.log(THETA[k, c0])
    w = np.exp(log_w - log_w.max())
    return w / w.sum(), means, covs, B


def condition_batch(n: int, A: list[int], xa, c0: int | None) -> dict:
    x = torch.full((n, 3), float("nan"))
    x[:, A] = torch.tensor(xa, dtype=torch.float32)
    c = torch.full((n, 2), -1, dtype=torch.long)
    if c0 is not None:
        c[:, 0] = c0
    return {"x": x, "c": c}


@pytest.mark.parametrize("covariance", ["full", "diag"])
@pytest.mark.parametrize("A, xa, c0", [([1], [0.6], 2), ([0, 2], [0.2, 0.8], None), ([], [], 1)])
def test_conditional_matches_closed_form(covariance, A, xa, c0):
    gmm, cov = known_gmm(covariance)
    n = 20000
    cond = condition_batch(n, A, xa, c0)
    s = gmm.sample(n, condition=cond, generator=torch.Generator().manual_seed(0))
    # conditioned slots come back exactly as given
    assert torch.equal(s["x"][:, A], cond["x"][:, A]) and s["x"].dtype == torch.float32
    if c0 is not None:
        assert (s["c"][:, 0] == c0).all()
    w, means, covs, B = closed_form(cov, A, np.array(xa), c0)
    comp = s["c"][:, 1].numpy()
    np.testing.assert_allclose(np.bincount(comp, minlength=3) / n, w, atol=0.015)
    x = s["x"].double().numpy()
    for k in range(3):
        xb = x[comp == k][:, B]
        if len(xb) < 500:
            continue
        se = np.sqrt(np.diag(covs[k]) / len(xb))
        np.testing.assert_array_less(np.abs(xb.mean(0) - means[k]), 5 * se)
        # a sample covariance's entries have standard error <= max variance * sqrt(2 / n_k)
        np.testing.assert_allclose(np.cov(xb.T).reshape(len(B), len(B)), covs[k],
                                   atol=5 * np.sqrt(2 / len(xb)) * np.diag(covs[k]).max())
    # the free discrete slot follows theta_k of the drawn component
    if c0 is None:
        for k in np.flatnonzero(np.bincount(comp, minlength=3) >= 1000):
            freq = np.bincount(s["c"][comp == k, 0].numpy(), minlength=3) / (comp == k).sum()
            np.testing.assert_allclose(freq, THETA[k], atol=0.05)


def test_conditional_rows_with_different_patterns():
    # rows need not share a pattern: each gets its own posterior
    gmm, cov = known_gmm("full")
    n = 12000
    a, b = condition_batch(n // 2, [1], [0.6], 2), condition_batch(n // 2, [0, 2], [0.2, 0.8], None)
    cond = {k: torch.cat([a[k], b[k]]) for k in a}
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(0))
    cond = {k: v[perm] for k, v in cond.items()}
    s = gmm.sample(n, condition=cond, generator=torch.Generator().manual_seed(1))
    given = ~torch.isnan(cond["x"])
    assert torch.equal(s["x"][given], cond["x"][given])
    assert torch.equal(s["c"][cond["c"] >= 0], cond["c"][cond["c"] >= 0])
    first = (perm < n // 2).numpy()
    for rows, args in ((first, ([1], np.array([0.6]), 2)), (~first, ([0, 2], np.array([0.2, 0.8]), None))):
        w = closed_form(cov, *args)[0]
        np.testing.assert_allclose(np.bincount(s["c"][rows, 1].numpy(), minlength=3) / rows.sum(), w, atol=0.025)


def test_conditional_edge_cases_and_repeatability():
    gmm, _ = known_gmm("full")
    cond = condition_batch(50, [0, 1, 2], [0.1, 0.2, 0.3], 1)
    cond["c"][:, 1] = 2
    s = gmm.sample(50, condition=cond, generator=torch.Generator().manual_seed(0))
    assert torch.equal(s["x"], cond["x"]) and torch.equal(s["c"], cond["c"])   # nothing left to draw
    cond = condition_batch(30, [2], [1.0], None)
    a, b = (gmm.sample(30, condition=cond, generator=torch.Generator().manual_seed(3)) for _ in range(2))
    c = gmm.sample(30, condition=cond, generator=torch.Generator().manual_seed(4))
    assert torch.equal(a["x"], b["x"]) and torch.equal(a["c"], b["c"]) and not torch.equal(a["x"], c["x"])
    assert gmm.sample(0, condition=condition_batch(0, [1], [0.0], None))["x"].shape == (0, 3)
    # a fitted model conditions too, and the x-c dependence shows
    spec, data = Spec(n_continuous=2, cardinalities=(2, 4)), mixed_data()
    fitted = GMM(spec, n_components=2)
    fitted.fit_closed_form(data, generator=torch.Generator().manual_seed(0))
    for c0, centre in ((0, 0.0), (1, 3.0)):
        cond = {"x": torch.full((2000, 2), float("nan")), "c": torch.tensor([[c0, -1]]).expand(2000, -1)}
        s = fitted.sample(2000, condition=cond, generator=torch.Generator().manual_seed(5))
        assert (s["c"][:, 0] == c0).all()
        # c0 agrees with the cluster 80% of the time: E[x | c0] = 3 * P(z = 1 | c0)
        assert s["x"].mean().item() == pytest.approx(3 * (0.8 if c0 else 0.2), abs=0.25)


def test_conditional_bad_input_raises():
    gmm, _ = known_gmm("full")
    good = condition_batch(4, [1], [0.5], 1)
    cases = [
        ({"x": good["x"][:3], "c": good["c"][:3]}, r"sample\(4, condition"),
        ({"x": good["x"][:, :2], "c": good["c"]}, r"expects x \(B, 3\)"),
        ({"x": good["x"]}, "c None"),
        ({"x": good["x"].long(), "c": good["c"]}, "floating point"),
        ({"x": good["x"], "c": good["c"].double()}, "integer category codes"),
        ({"x": good["x"].index_fill(1, torch.tensor([0]), float("inf")), "c": good["c"]}, "infinite"),
        ({"x": good["x"], "c": good["c"].index_fill(1, torch.tensor([1]), 3)}, "slot 1"),
        ({"x": good["x"], "c": good["c"].index_fill(1, torch.tensor([0]), -2)}, "slot 0"),
        ([good["x"], good["c"]], "batch dict"),
    ]
    for cond, match in cases:
        with pytest.raises(DataError, match=match):
            gmm.sample(4, condition=cond)
    # a category no component can produce: the condition has probability zero
    gmm.log_theta[:, 2] = -math.inf
    with pytest.raises(DataError, match="probability zero"):
        gmm.sample(4, condition=condition_batch(4, [], [], 2))
    with pytest.raises(NotFittedError):
        GMM(Spec(n_continuous=3, cardinalities=(3, 3)), n_components=3).sample(4, condition=good)


# ---------------------------------------------------------------- missing values: EM for incomplete data
def holed(x: np.ndarray, share: float, seed: int) -> np.ndarray:
    """x with a share of its cells set to NaN completely at random (no row left empty)."""
    rng = np.random.default_rng(seed)
    out = x.copy()
    hide = rng.random(x.shape) < share
    hide[hide.all(1), 0] = False
    out[hide] = np.nan
    return out


def observed_log_lik(x: np.ndarray, pi, mu, cov) -> np.ndarray:
    """Per-row log p(x_O) by scipy: the mixture of each component's marginal over the observed slots."""
    out = np.empty(len(x))
    for i, row in enumerate(x):
        o = ~np.isnan(row)
        parts = [np.log(pi[k]) + (multivariate_normal(mu[k][o], cov[k][np.ix_(o, o)]).logpdf(row[o]) if o.any() else 0.0)
                 for k in range(len(pi))]
        out[i] = np.logaddexp.reduce(parts)
    return out


def test_missing_em_one_component_is_the_closed_form_mle():
    # monotone missingness (a always seen, b missing where a is large: MAR): the MLE is in closed form
    # (Anderson 1957): a's moments from every row, b's regression on a from the complete rows
    rng = np.random.default_rng(0)
    a = rng.standard_normal(500)
    b = 1.0 + 0.8 * a + 0.5 * rng.standard_normal(500)
    miss = rng.random(500) < 1 / (1 + np.exp(-2 * a))
    x = np.stack([a, np.where(miss, np.nan, b)], 1)
    gmm = GMM(Spec(n_continuous=2), n_components=1, reg_covar=0.0, tol=1e-13, max_iter=5000)
    stats = gmm.fit_closed_form(batch(x), generator=torch.Generator().manual_seed(0))
    cc = ~miss
    s_aa = a.var()
    beta = np.cov(a[cc], b[cc], bias=True)[0, 1] / a[cc].var()
    mu_b = b[cc].mean() + beta * (a.mean() - a[cc].mean())
    s_bb_a = (b[cc] - b[cc].mean() - beta * (a[cc] - a[cc].mean())).var()
    cov = np.array([[s_aa, beta * s_aa], [beta * s_aa, s_bb_a + beta ** 2 * s_aa]])
    np.testing.assert_allclose(gmm.means[0].numpy(), [a.mean(), mu_b], atol=1e-6)
    L = gmm.scale_tril[0].numpy()
    np.testing.assert_allclose(L @ L.T, cov, atol=1e-6)
    assert abs(b[cc].mean() - mu_b) > 0.3           # the complete rows alone would be far off
    # the likelihood reported and log_prob of the holed rows are the observed-data likelihood
    ref = observed_log_lik(x, [1.0], gmm.means.numpy(), [L @ L.T])
    np.testing.assert_allclose(gmm.log_prob(batch(x)).numpy(), ref, rtol=0, atol=1e-7)
    assert stats["train_log_lik"] == pytest.approx(ref.mean(), abs=1e-7)
    assert ref.mean() == pytest.approx(observed_log_lik(x, [1.0], [np.array([a.mean(), mu_b])], [cov]).mean(), abs=1e-7)


@pytest.mark.parametrize("covariance", ["full", "diag"])
def test_missing_em_likelihood_rises_and_matches_scipy(covariance):
    x = holed(mixture(400, spread=0.8), 0.3, seed=1)
    lls = []
    for t in range(1, 16):        # EM from one start, stopped after t M-steps: its likelihood path
        gmm = GMM(Spec(n_continuous=2), n_components=3, covariance=covariance, reg_covar=0.0, max_iter=t, tol=0.0)
        lls.append(gmm.fit_closed_form(batch(x), generator=torch.Generator().manual_seed(0))["train_log_lik"])
    assert np.all(np.diff(lls) >= -1e-10) and lls[-1] > lls[0] + 0.01
    if covariance == "full":
        cov = (gmm.scale_tril @ gmm.scale_tril.mT).numpy()
    else:
        cov = np.stack([np.diag(s ** 2) for s in gmm.scale.numpy()])
    ref = observed_log_lik(x, gmm.log_weights.exp().numpy(), gmm.means.numpy(), cov)
    np.testing.assert_allclose(gmm.log_prob(batch(x)).numpy(), ref, rtol=0, atol=1e-7)
    assert lls[-1] == pytest.approx(ref.mean(), abs=1e-7)
    # and the fit on holed data lands near the fit on the complete data
    full = GMM(Spec(n_continuous=2), n_components=3, covariance=covariance)
    full.fit_closed_form(batch(mixture(400, spread=0.8)), generator=torch.Generator().manual_seed(0))
    order = lambda g: g.means[g.means[:, 0].argsort()].numpy()
    np.testing.assert_allclose(order(gmm), order(full), atol=0.35)


def test_low_rank_one_component_is_sklearn_pca_covariance():
    # probabilistic PCA's maximum-likelihood covariance is scikit-learn's PCA(q).get_covariance() (which
    # uses the n - 1 scatter; the MLE uses n): top q eigen-directions kept, the rest averaged
    from sklearn.decomposition import PCA
    rng = np.random.default_rng(3)
    x = rng.standard_normal((300, 3)) @ rng.standard_normal((3, 6)) + 0.3 * rng.standard_normal((300, 6))
    for q in (1, 2, 4):
        gmm = GMM(Spec(n_continuous=6), n_components=1, rank=q, reg_covar=0.0)
        gmm.fit_closed_form(batch(x), generator=torch.Generator().manual_seed(0))
        ref = PCA(n_components=q).fit(x).get_covariance() * (len(x) - 1) / len(x)
        L = gmm.scale_tril[0].numpy()
        np.testing.assert_allclose(L @ L.T, ref, atol=1e-8)
        np.testing.assert_allclose(gmm.log_prob(batch(x)).numpy(), multivariate_normal(x.mean(0), ref).logpdf(x),
                                   atol=1e-8)
        assert gmm.n_parameters(1) == 6 + 6 * q - q * (q - 1) // 2 + 1


@pytest.mark.parametrize("holes", [0.0, 0.2])
def test_low_rank_em_likelihood_rises(holes):
    # the low-rank M-step is exact, so EM's likelihood never falls (complete and incomplete data)
    rng = np.random.default_rng(4)
    z = rng.integers(0, 2, 400)
    x = rng.standard_normal((400, 2)) @ rng.standard_normal((2, 5)) + 0.7 * z[:, None] + 0.5 * rng.standard_normal((400, 5))
    x = holed(x, holes, seed=2) if holes else x
    lls = [GMM(Spec(n_continuous=5), n_components=2, rank=2, reg_covar=0.0, max_iter=t, tol=0.0)
           .fit_closed_form(batch(x), generator=torch.Generator().manual_seed(0))["train_log_lik"] for t in range(1, 12)]
    assert np.all(np.diff(lls) >= -1e-10) and lls[-1] > lls[0] + 0.01


def test_missing_em_with_missing_categories():
    data = mixed_data(600, seed=2)
    g = torch.Generator().manual_seed(3)
    x = data["x"].double().masked_fill(torch.rand(600, 2, generator=g) < 0.25, float("nan"))
    c = data["c"].masked_fill(torch.rand(600, 2, generator=g) < 0.25, -1)
    spec = Spec(n_continuous=2, cardinalities=(2, 4))
    gmm = GMM(spec, n_components=2, reg_covar=0.0, category_prior=0.0, tol=1e-10, max_iter=500)
    gmm.fit_closed_form({"x": x, "c": c}, generator=torch.Generator().manual_seed(0))
    # slot 0 agrees with the cluster 80% of the time: theta recovered from the rows that show it
    hi = int(gmm.means[:, 0].argmax())
    assert gmm.log_theta[hi, 1].exp().item() == pytest.approx(0.8, abs=0.06)
    assert gmm.log_theta[1 - hi, 0].exp().item() == pytest.approx(0.8, abs=0.06)
    # the observed-data likelihood: a missing category contributes nothing, as a missing x
    lp = gmm.log_prob({"x": x, "c": c})
    only_x = gmm.log_prob({"x": x, "c": torch.full_like(c, -1)})
    assert torch.isfinite(lp).all() and (lp <= only_x + 1e-9).all()


@pytest.mark.parametrize("covariance", ["full", "diag"])
def test_conditional_mean_matches_closed_form(covariance):
    gmm, cov = known_gmm(covariance)
    rows = [([1], [0.6], 2), ([0, 2], [0.2, 0.8], None), ([], [], 1), ([0, 1, 2], [0.1, 0.2, 0.3], None)]
    cond = {k: torch.cat([condition_batch(1, *r)[k] for r in rows]) for k in ("x", "c")}
    out = gmm.conditional_mean(cond)
    for i, (A, xa, c0) in enumerate(rows):
        w, means, _, B = closed_form(cov, A, np.array(xa), c0)
        if B:
            np.testing.assert_allclose(out["x"][i, B].numpy(), sum(wk * m for wk, m in zip(w, means)), atol=1e-5)
        np.testing.assert_array_equal(out["x"][i, A].numpy(), np.float32(xa))        # given slots as given
        assert out["c"][i, 1].item() == int(np.argmax(w))                              # the tag is the component
        if c0 is None:
            assert out["c"][i, 0].item() == int(np.argmax(w @ THETA))
        else:
            assert out["c"][i, 0].item() == c0


def test_mixture_of_is_the_average_density():
    X = mixture(300)
    fits = [GMM(Spec(n_continuous=2), n_components=2) for _ in range(3)]
    for i, g in enumerate(fits):
        g.fit_closed_form(batch(X), generator=torch.Generator().manual_seed(i))
    mix = GMM.mixture_of(fits)
    assert mix.config["n_components"] == 6 and mix.means.shape == (6, 2)
    each = torch.stack([g.log_prob(batch(X)) for g in fits])                          # (3, N)
    np.testing.assert_allclose(mix.log_prob(batch(X)).numpy(), (torch.logsumexp(each, 0) - math.log(3)).numpy(),
                               atol=1e-9)
    other = GMM(Spec(n_continuous=2), n_components=1, covariance="diag")
    other.fit_closed_form(batch(X), generator=torch.Generator().manual_seed(0))
    with pytest.raises(ConfigError):
        GMM.mixture_of([fits[0], other])
    with pytest.raises(NotFittedError):
        GMM.mixture_of([GMM(Spec(n_continuous=2), n_components=1)])
