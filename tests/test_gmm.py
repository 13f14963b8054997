"""GMM family: exact against scikit-learn, EM as good as scikit-learn's, BIC, normalisation, rebuild."""
from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
import torch
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
    {"category_prior": float("nan")}, {"n_init": True},
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
    with pytest.raises(ConfigError, match="conditional"):
        gmm.sample(5, condition=data)
    with pytest.raises(DataError, match="slot 0"):
        gmm.log_prob({"x": torch.randn(2, 2), "c": torch.tensor([[0], [3]])})
    with pytest.raises(DataError, match="expects x"):
        gmm.log_prob({"x": torch.randn(2, 3), "c": torch.tensor([[0], [1]])})
    with pytest.raises(ConfigError):
        GMM(Spec())
