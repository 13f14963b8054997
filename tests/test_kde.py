"""KDE family: exact against scikit-learn, normalised over categories, sensible bandwidth, rebuild,
conditional sampling against kernel weights computed by hand."""
from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest
import torch
from scipy.special import logsumexp
from sklearn.neighbors import KernelDensity

from genmodels.core import Spec
from genmodels.errors import ConfigError, DataError, NotFittedError
from genmodels.families import kde as kde_module
from genmodels.families.kde import KDE

torch.set_num_threads(1)


def cont(x: torch.Tensor) -> dict:
    return {"x": x, "c": torch.zeros(len(x), 0, dtype=torch.long)}


def mixed_data(n: int = 300, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    z = torch.randint(2, (n,), generator=g)
    x = torch.randn(n, 2, generator=g) + 3.0 * z[:, None]
    c = torch.stack([z, (z + torch.randint(2, (n,), generator=g)) % 3, torch.zeros(n, dtype=torch.long)], 1)
    return {"x": x, "c": c}


@pytest.mark.parametrize("h", [0.5, 1.0])
def test_continuous_log_prob_equals_sklearn(h):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(400, 3, generator=g, dtype=torch.float64)
    q = torch.randn(60, 3, generator=g, dtype=torch.float64)
    kde = KDE(Spec(n_continuous=3), bandwidth=h)
    kde.fit_closed_form(cont(x))
    ref = KernelDensity(bandwidth=h, kernel="gaussian").fit(x.numpy()).score_samples(q.numpy())
    np.testing.assert_allclose(kde.log_prob(cont(q)).numpy(), ref, rtol=0, atol=1e-6)


def test_continuous_log_prob_equals_brute_force_in_the_tails():
    # scikit-learn's tree sums drift in the far tails at small h (off by nats at ~-100), so far
    # queries are checked against a direct numpy sum instead
    g = torch.Generator().manual_seed(0)
    x = torch.randn(300, 3, generator=g, dtype=torch.float64)
    q = 2.0 * torch.randn(60, 3, generator=g, dtype=torch.float64)
    h = 0.15
    kde = KDE(Spec(n_continuous=3), bandwidth=h)
    kde.fit_closed_form(cont(x))
    d2 = ((q.numpy()[:, None, :] - x.numpy()[None]) ** 2).sum(-1)
    ref = logsumexp(-d2 / (2 * h * h), 1) - math.log(300) - 3 * (0.5 * math.log(2 * math.pi) + math.log(h))
    np.testing.assert_allclose(kde.log_prob(cont(q)).numpy(), ref, rtol=0, atol=1e-6)


def test_chunking_does_not_change_log_prob(monkeypatch):
    x = torch.randn(300, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    kde = KDE(Spec(n_continuous=2, cardinalities=(3,)), bandwidth=0.5, category_smoothing=0.2)
    data = {"x": x, "c": torch.randint(3, (300, 1), generator=torch.Generator().manual_seed(2))}
    kde.fit_closed_form(data)
    whole = kde.log_prob(data)
    monkeypatch.setattr(kde_module, "_MAX_ENTRIES", 200)   # tiny blocks over queries and centres
    torch.testing.assert_close(kde.log_prob(data), whole, rtol=0, atol=1e-10)


@pytest.mark.parametrize("smoothing", [None, 0.0, 0.4, 1.0])
def test_discrete_only_sums_to_one(smoothing):
    spec = Spec(cardinalities=(2, 3, 1, 4))
    g = torch.Generator().manual_seed(0)
    c = torch.stack([torch.randint(card, (200,), generator=g) for card in spec.cardinalities], 1)
    kde = KDE(spec, category_smoothing=smoothing)
    kde.fit_closed_form({"x": torch.zeros(200, 0), "c": c}, generator=g)
    grid = torch.tensor(list(itertools.product(*(range(card) for card in spec.cardinalities))))
    lp = kde.log_prob({"x": torch.zeros(len(grid), 0, dtype=torch.float64), "c": grid})
    assert lp.exp().sum().item() == pytest.approx(1.0, abs=1e-9)


def test_cv_bandwidth_near_grid_optimum():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(400, 1, generator=g, dtype=torch.float64)
    test = torch.randn(4000, 1, generator=g, dtype=torch.float64)
    kde = KDE(Spec(n_continuous=1))
    stats = kde.fit_closed_form(cont(x), generator=torch.Generator().manual_seed(1))
    chosen = kde.config["bandwidth"]
    assert stats["bandwidth"] == chosen and kde.config["n_points"] == 400
    # the h that is best on a large held-out sample, over a fine grid
    hs = np.geomspace(0.05, 2.0, 40)
    scores = []
    for h in hs:
        k = KDE(Spec(n_continuous=1), bandwidth=float(h))
        k.fit_closed_form(cont(x))
        scores.append(k.log_prob(cont(test)).mean().item())
    best = hs[int(np.argmax(scores))]
    assert best / 2 <= chosen <= best * 2
    # and the held-out validation route lands close too
    val = KDE(Spec(n_continuous=1))
    val.fit_closed_form(cont(x), cont(test[:1000]), generator=torch.Generator().manual_seed(1))
    assert best / 2 <= val.config["bandwidth"] <= best * 2


def test_smoothing_selection_follows_the_data():
    # a slot independent of everything should be smoothed a lot, a copied slot hardly at all
    g = torch.Generator().manual_seed(0)
    z = torch.randint(5, (400,), generator=g)
    dependent = KDE(Spec(cardinalities=(5, 5)))
    dependent.fit_closed_form({"x": torch.zeros(400, 0), "c": torch.stack([z, z], 1)}, generator=g)
    noise = KDE(Spec(cardinalities=(5,)))
    noise.fit_closed_form({"x": torch.zeros(400, 0), "c": z[:, None]}, generator=g)
    assert dependent.config["category_smoothing"] <= 0.1
    assert noise.config["category_smoothing"] >= 0.3


def test_mixed_samples_and_repeatability():
    spec, data = Spec(n_continuous=2, cardinalities=(2, 3, 1)), mixed_data()
    kde = KDE(spec)
    stats = kde.fit_closed_form(data, generator=torch.Generator().manual_seed(0))
    assert stats["bandwidth"] > 0 and 0 <= stats["category_smoothing"] <= 1
    lp = kde.log_prob(data)
    assert lp.shape == (300,) and lp.dtype == torch.float32 and torch.isfinite(lp).all()
    a, b = (kde.sample(500, generator=torch.Generator().manual_seed(7)) for _ in range(2))
    c = kde.sample(500, generator=torch.Generator().manual_seed(8))
    assert torch.equal(a["x"], b["x"]) and torch.equal(a["c"], b["c"]) and not torch.equal(a["x"], c["x"])
    assert a["x"].shape == (500, 2) and a["x"].dtype == torch.float32 and a["c"].dtype == torch.long
    for j, card in enumerate(spec.cardinalities):
        assert ((a["c"][:, j] >= 0) & (a["c"][:, j] < card)).all()


def test_sampled_categories_follow_the_kernel():
    # one stored row with c = 1 of 4: a sample keeps it w.p. 1 - lambda, else uniform over the others
    kde = KDE(Spec(cardinalities=(4,)), category_smoothing=0.6)
    kde.fit_closed_form({"x": torch.zeros(1, 0), "c": torch.tensor([[1]])})
    c = kde.sample(20000, generator=torch.Generator().manual_seed(0))["c"][:, 0]
    freq = torch.bincount(c, minlength=4).double() / len(c)
    lam = 0.6 * 3 / 4
    torch.testing.assert_close(freq, torch.tensor([lam / 3, 1 - lam, lam / 3, lam / 3], dtype=torch.float64),
                               rtol=0, atol=0.015)


def test_max_points_subsample_and_rebuild_exact():
    spec, data = Spec(n_continuous=2, cardinalities=(2, 3, 1)), mixed_data()
    kde = KDE(spec, max_points=120)
    kde.fit_closed_form(data, generator=torch.Generator().manual_seed(0))
    assert kde.config["n_points"] == 120 and kde.points_x.shape == (120, 2)
    clone = KDE(spec, **json.loads(json.dumps(kde.config)))
    clone.load_state_dict(kde.state_dict())
    assert torch.equal(clone.log_prob(data), kde.log_prob(data))
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    s1, s2 = clone.sample(30, generator=g1), kde.sample(30, generator=g2)
    assert torch.equal(s1["x"], s2["x"]) and torch.equal(s1["c"], s2["c"])


@pytest.mark.parametrize("kwargs", [
    {"bandwidth": 0.0}, {"bandwidth": -1.0}, {"bandwidth": math.inf}, {"category_smoothing": 1.5},
    {"category_smoothing": -0.1}, {"max_points": 0}, {"max_points": 10.5}, {"n_points": -1},
])
def test_bad_hyperparameters_raise(kwargs):
    with pytest.raises(ConfigError, match=next(iter(kwargs))):
        KDE(Spec(n_continuous=2, cardinalities=(3,)), **kwargs)


def test_bad_use_raises():
    spec = Spec(n_continuous=1, cardinalities=(3,))
    kde = KDE(spec, bandwidth=0.5, category_smoothing=0.1)
    data = {"x": torch.randn(20, 1), "c": torch.randint(3, (20, 1))}
    with pytest.raises(NotFittedError):
        kde.sample(3)
    kde.fit_closed_form(data)
    with pytest.raises(DataError, match=r"sample\(3, condition"):
        kde.sample(3, condition=data)        # a condition has one row per sample
    with pytest.raises(DataError, match="slot 0"):
        kde.log_prob({"x": torch.randn(1, 1), "c": torch.tensor([[5]])})
    with pytest.raises(DataError, match="NaN"):
        kde.log_prob({"x": torch.tensor([[math.nan]]), "c": torch.tensor([[0]])})
    with pytest.raises(ConfigError, match="bandwidth"):
        KDE(spec, n_points=10)     # stored points without the bandwidth they were fitted with


# ---------------------------------------------------------------- conditional sampling
# Four stored rows; x1 = 0, 100, 200, 300 tells which row a sample was drawn around (h << 100).
PX = [[0.0, 0.0], [0.5, 100.0], [1.5, 200.0], [-1.0, 300.0]]
PC = [[0, 0], [1, 1], [1, 0], [2, 1]]       # slot 0: 3 values, slot 1: 2 values


def tiny_kde(h: float = 0.6, s: float = 0.3) -> KDE:
    kde = KDE(Spec(n_continuous=2, cardinalities=(3, 2)), bandwidth=h, category_smoothing=s)
    kde.fit_closed_form({"x": torch.tensor(PX), "c": torch.tensor(PC)})
    return kde


def kernel_weights(h: float, s: float, x0: float | None, c0: int | None) -> np.ndarray:
    """w_i ∝ N(x0; x_i0, h^2) L(c0, c_i0), by hand."""
    lam = s * 2 / 3
    w = np.ones(4)
    for i, ((xi, _), (ci, _)) in enumerate(zip(PX, PC)):
        if x0 is not None:
            w[i] *= math.exp(-(x0 - xi) ** 2 / (2 * h * h))
        if c0 is not None:
            w[i] *= (1 - lam) if ci == c0 else lam / 2
    return w / w.sum()


def given(n: int, x0: float | None, c0: int | None) -> dict:
    x = torch.full((n, 2), math.nan)
    c = torch.full((n, 2), -1, dtype=torch.long)
    if x0 is not None:
        x[:, 0] = x0
    if c0 is not None:
        c[:, 0] = c0
    return {"x": x, "c": c}


def drawn_row(s: dict) -> np.ndarray:
    return torch.round(s["x"][:, 1] / 100).long().numpy()


@pytest.mark.parametrize("h, sm, x0, c0", [(0.6, 0.3, 0.4, 1), (0.6, 0.3, None, 0), (0.8, 0.0, 0.2, 1),
                                          (0.5, 1.0, -0.5, 2), (0.6, 0.3, 0.9, None)])
def test_conditional_frequencies_match_kernel_weights(h, sm, x0, c0):
    kde, n = tiny_kde(h, sm), 20000
    cond = given(n, x0, c0)
    s = kde.sample(n, condition=cond, generator=torch.Generator().manual_seed(0))
    if x0 is not None:
        assert torch.equal(s["x"][:, 0], cond["x"][:, 0])       # conditioned slots exactly as given
    if c0 is not None:
        assert (s["c"][:, 0] == c0).all()
    row = drawn_row(s)
    np.testing.assert_allclose(np.bincount(row, minlength=4) / n, kernel_weights(h, sm, x0, c0), atol=0.015)
    # the free slots come from the kernel around the drawn row
    assert np.std(s["x"][:, 1].double().numpy() - 100 * row) == pytest.approx(h, rel=0.05)
    keep = (s["c"][:, 1].numpy() == np.array(PC)[row, 1]).mean()
    assert keep == pytest.approx(1 - sm / 2, abs=0.015)
    if x0 is None:
        assert np.std(s["x"][:, 0].double().numpy() - np.array(PX)[row, 0]) == pytest.approx(h, rel=0.05)


def test_conditional_per_row_values_and_blocks(monkeypatch):
    # every row its own condition; tiny blocks of (condition rows x stored rows) give the same draws
    kde, n = tiny_kde(), 6000
    x0 = torch.tensor([0.4, -0.8, 1.2]).repeat(n // 3)
    c0 = torch.tensor([1, -1, 0]).repeat(n // 3)
    cond = {"x": torch.stack([x0, torch.full((n,), math.nan)], 1),
            "c": torch.stack([c0, torch.full((n,), -1)], 1)}
    s = kde.sample(n, condition=cond, generator=torch.Generator().manual_seed(1))
    row = drawn_row(s)
    for i, (a, b) in enumerate([(0.4, 1), (-0.8, None), (1.2, 0)]):
        freq = np.bincount(row[i::3], minlength=4) / (n // 3)
        np.testing.assert_allclose(freq, kernel_weights(0.6, 0.3, a, b), atol=0.03)
    many = {"x": cond["x"] + torch.linspace(0, 0.1, n)[:, None], "c": cond["c"]}   # n distinct rows
    whole = kde.sample(n, condition=many, generator=torch.Generator().manual_seed(2))
    monkeypatch.setattr(kde_module, "_MAX_ENTRIES", 8)                           # 2 condition rows a block
    blocked = kde.sample(n, condition=many, generator=torch.Generator().manual_seed(2))
    assert torch.equal(whole["x"], blocked["x"]) and torch.equal(whole["c"], blocked["c"])


def test_conditional_edge_cases_and_errors():
    kde = tiny_kde()
    cond = {"x": torch.tensor([[0.3, 150.0]]).expand(5, -1), "c": torch.tensor([[2, 1]]).expand(5, -1)}
    s = kde.sample(5, condition=cond, generator=torch.Generator().manual_seed(0))
    assert torch.equal(s["x"], cond["x"]) and torch.equal(s["c"], cond["c"])     # nothing left to draw
    a, b = (kde.sample(40, condition=given(40, 0.1, None), generator=torch.Generator().manual_seed(3))
            for _ in range(2))
    assert torch.equal(a["x"], b["x"]) and torch.equal(a["c"], b["c"])
    assert kde.sample(0, condition=given(0, 0.1, 1))["x"].shape == (0, 2)
    # a far-away x is fine (weights are normalised in log space); an unmatched category at s = 0 is not
    far = kde.sample(2000, condition=given(2000, 40.0, None), generator=torch.Generator().manual_seed(0))
    assert (drawn_row(far) == 2).all()                                           # the nearest row, x = 1.5
    exact = KDE(Spec(n_continuous=2, cardinalities=(4, 2)), bandwidth=0.6, category_smoothing=0.0)
    exact.fit_closed_form({"x": torch.tensor(PX), "c": torch.tensor(PC)})
    with pytest.raises(DataError, match="density zero"):
        exact.sample(3, condition={"x": torch.full((3, 2), math.nan), "c": torch.tensor([[3, -1]]).expand(3, -1)})
    for bad, match in [({"x": torch.zeros(3, 2)}, "c None"), ({"x": torch.zeros(2, 2), "c": torch.zeros(2, 2).long()},
                       r"sample\(3, condition"), ({"x": torch.zeros(3, 2), "c": torch.tensor([[0, 2]]).expand(3, -1)}, "slot 1")]:
        with pytest.raises(DataError, match=match):
            kde.sample(3, condition=bad)
