"""Autoregressive family: the mixture head against scipy, log_prob normalised under any order, the
training loss an unbiased estimate of the order-averaged NLL, a fit to a known joint, conditional
sampling that matches the known conditionals (module and Model), seeds, rebuild and bad input."""
from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.special import logsumexp
from scipy.stats import norm

import genmodels as gm
from genmodels.core import Spec
from genmodels.errors import ConfigError, DataError
from genmodels.families.autoregressive import Autoregressive, mixture_log_prob

torch.set_num_threads(1)

# The known joint: c1 ~ Cat(PI), x | c1 ~ N(MU[c1], SD^2), c2 | c1 ~ Bernoulli(P2[c1]). Spec(1, (3, 2)).
PI = torch.tensor([0.2, 0.3, 0.5], dtype=torch.float64)
MU = torch.tensor([-1.0, 0.0, 1.0], dtype=torch.float64)
SD = 0.5
P2 = torch.tensor([0.1, 0.5, 0.9], dtype=torch.float64)
NAN = float("nan")


def draw(n: int, g: torch.Generator) -> dict[str, torch.Tensor]:
    c1 = torch.multinomial(PI, n, replacement=True, generator=g)
    x = MU[c1] + SD * torch.randn(n, generator=g, dtype=torch.float64)
    c2 = (torch.rand(n, generator=g, dtype=torch.float64) < P2[c1]).long()
    return {"x": x[:, None].float(), "c": torch.stack([c1, c2], dim=1)}


def true_log_prob(b: dict[str, torch.Tensor]) -> torch.Tensor:
    x, c1, c2 = b["x"][:, 0].double(), b["c"][:, 0], b["c"][:, 1]
    p2 = torch.where(c2 == 1, P2[c1], 1 - P2[c1])
    return PI.log()[c1] + torch.distributions.Normal(MU[c1], SD).log_prob(x) + p2.log()


@pytest.fixture(scope="module")
def fitted():
    """Trained briefly (~3 s) on 20 000 rows of the known joint; returns (module, test batch)."""
    g = torch.Generator().manual_seed(0)
    train, test = draw(20_000, g), draw(4_000, g)
    torch.manual_seed(0)
    ar = Autoregressive(Spec(1, (3, 2)), hidden=(64, 64), n_mixtures=4)
    ar.prepare(train)
    steps = 600
    opt = torch.optim.Adam(ar.parameters(), lr=3e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    for _ in range(steps):
        idx = torch.randint(0, 20_000, (256,), generator=g)
        loss = ar.loss({k: v[idx] for k, v in train.items()})
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    return ar.eval(), test


def _reordered(ar: Autoregressive, order) -> Autoregressive:
    """The same network scoring and sampling in another fixed order."""
    other = Autoregressive(ar.spec, **{**ar.config, "order": order})
    other.load_state_dict(ar.state_dict())
    return other.to(next(ar.parameters()).dtype).eval()


def _all_codes(cards) -> torch.Tensor:
    return torch.tensor(list(itertools.product(*[range(m) for m in cards])), dtype=torch.long)


# ------------------------------------------------------------------ exact likelihood

def test_mixture_head_matches_scipy():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(50, 3, generator=g, dtype=torch.float64)
    logits, means, log_scales = torch.randn(3, 50, 3, 5, generator=g, dtype=torch.float64)   # each (B, D, M)
    log_scales = log_scales * 0.5
    ours = mixture_log_prob(x, logits.log_softmax(-1), means, log_scales).numpy()
    w = logits.softmax(-1).numpy()
    ref = logsumexp(np.log(w) + norm.logpdf(x.numpy()[..., None], means.numpy(), np.exp(log_scales.numpy())), axis=-1)
    np.testing.assert_allclose(ours, ref, atol=1e-10, rtol=0)
    # A one-slot model's log_prob is that mixture with the head's parameters given nothing observed.
    torch.manual_seed(0)
    ar = Autoregressive(Spec(1, ()), hidden=(16,), n_mixtures=3).double()
    xs = torch.randn(20, 1, generator=g, dtype=torch.float64)
    log_w, mu, ls, _ = ar.conditionals(torch.zeros(1, 1, dtype=torch.float64), torch.zeros(1, 0, dtype=torch.long),
                                       torch.zeros(1, 1, dtype=torch.bool))
    ref = logsumexp(log_w[0, 0].detach().numpy() + norm.logpdf(xs.numpy(), mu[0, 0].detach().numpy(),
                                                                 ls[0, 0].exp().detach().numpy()), axis=-1)
    np.testing.assert_allclose(ar.log_prob({"x": xs}).detach().numpy(), ref, atol=1e-10, rtol=0)


@pytest.mark.parametrize("cards,order", [((3, 2, 4), None), ((3, 2, 4), [2, 0, 1]), ((1, 5), None), ((2,), None)])
def test_discrete_log_prob_sums_to_one(cards, order):
    torch.manual_seed(0)
    ar = Autoregressive(Spec(0, cards), hidden=(16, 16), order=order)
    codes = _all_codes(cards)
    lp = ar.log_prob({"c": codes})
    torch.testing.assert_close(lp.exp().sum(), torch.tensor(1.0), atol=1e-5, rtol=0)
    assert lp.std() > 1e-4                               # a random net, not a uniform pmf by accident


def _integral(ar: Autoregressive, lo: float, hi: float, step: float) -> float:
    """sum over all discrete configurations of the integral of exp(log_prob) over the one x slot."""
    grid = torch.arange(lo, hi + step / 2, step, dtype=torch.float64)                 # (G,)
    codes = _all_codes(ar.spec.cardinalities)                                        # (C, K)
    x = grid.repeat(len(codes))[:, None]
    c = codes.repeat_interleave(len(grid), dim=0)
    with torch.no_grad():
        dens = ar.log_prob({"x": x, "c": c}).exp().view(len(codes), len(grid)).sum(0).numpy()
    return float(np.trapezoid(dens, dx=step))


@pytest.mark.parametrize("order", [None, [0, 1]])
def test_mixed_density_integrates_to_one_untrained(order):
    torch.manual_seed(0)
    ar = Autoregressive(Spec(1, (3,)), hidden=(16,), n_mixtures=3, order=order).double()
    assert abs(_integral(ar, -40.0, 40.0, 0.002) - 1.0) < 1e-3


@pytest.mark.parametrize("order", [None, [0, 1, 2], [1, 0, 2]])
def test_trained_density_integrates_to_one_and_fits_the_truth_in_any_order(fitted, order):
    ar, test = fitted
    ar = _reordered(ar, order).double()
    assert abs(_integral(ar, -12.0, 12.0, 0.002) - 1.0) < 1e-3
    with torch.no_grad():
        model, truth = ar.log_prob(test).mean().item(), true_log_prob(test).mean().item()
    assert abs(model - truth) < 0.05, (order, model, truth)


def test_loss_is_unbiased_for_the_order_averaged_nll():
    torch.manual_seed(0)
    ar = Autoregressive(Spec(1, (3, 2)), hidden=(16,), n_mixtures=2).double()
    row = {"x": torch.tensor([[0.3]], dtype=torch.float64), "c": torch.tensor([[2, 1]])}
    with torch.no_grad():
        orders = [_reordered(ar, list(p)).log_prob(row).item() for p in itertools.permutations(range(3))]
        exact = -float(np.mean(orders))                  # E over uniformly random orders of -log p_order
        ar.train()
        torch.manual_seed(1)
        estimate = ar.loss({k: v.repeat(40_000, 1) for k, v in row.items()}).item()
    assert np.ptp(orders) > 0.05                     # the orders disagree, so the average is a real check
    assert abs(estimate - exact) < 0.03, (estimate, exact)


# ------------------------------------------------------------------ conditional sampling

@pytest.mark.parametrize("k", [0, 1, 2])
def test_conditional_on_category_matches_truth(fitted, k):
    ar, _ = fitted
    cond = {"x": torch.full((2000, 1), NAN), "c": torch.tensor([[k, -1]]).repeat(2000, 1)}
    s = ar.sample(2000, condition=cond, generator=torch.Generator().manual_seed(1))
    assert (s["c"][:, 0] == k).all()
    assert abs(s["x"].mean().item() - MU[k].item()) < 0.08
    assert abs(s["x"].std().item() - SD) < 0.05
    assert abs(s["c"][:, 1].float().mean().item() - P2[k].item()) < 0.05


@pytest.mark.parametrize("value", [-0.5, 0.25])
def test_conditional_on_number_follows_bayes(fitted, value):
    ar, _ = fitted
    cond = {"x": torch.full((2000, 1), value), "c": torch.full((2000, 2), -1)}
    s = ar.sample(2000, condition=cond, generator=torch.Generator().manual_seed(2))
    assert torch.equal(s["x"], cond["x"])
    post = PI * torch.distributions.Normal(MU, SD).log_prob(torch.tensor(value, dtype=torch.float64)).exp()
    post = post / post.sum()
    freq = torch.bincount(s["c"][:, 0], minlength=3).double() / 2000
    torch.testing.assert_close(freq, post, atol=0.05, rtol=0)


def test_model_conditional_sampling_on_a_dataframe():
    rng = np.random.default_rng(0)
    n = 3000
    colour = rng.choice(["red", "green", "blue"], n, p=[0.3, 0.3, 0.4])
    mean = {"red": 10.0, "green": 12.0, "blue": 14.0}
    df = pd.DataFrame({"colour": pd.array(colour, dtype="str"),
                       "value": np.array([mean[c] for c in colour]) + 0.5 * rng.normal(size=n)})
    m = gm.Model("autoregressive", seed=0, device="cpu", hidden=[64, 64], n_mixtures=4, lr=3e-3)
    m.fit(df, max_steps=400, verbose=False)
    s = m.sample(2000, condition={"colour": "red"}, seed=0)
    assert (s["colour"] == "red").all() and len(s) == 2000
    assert abs(s["value"].mean() - 10.0) < 0.15 and abs(s["value"].std() - 0.5) < 0.1
    s = m.sample(500, condition={"value": 12.0}, seed=0)
    assert (s["value"] == 12.0).all() and (s["colour"] == "green").mean() > 0.95
    assert np.isfinite(m.log_prob(df)).all()


# ------------------------------------------------------------------ layouts, seeds, rebuild, errors

@pytest.mark.parametrize("spec", [Spec(2, (3, 2)), Spec(1, ()), Spec(0, (4, 2)), Spec(3, ()), Spec(0, (1,))])
def test_layouts_sampling_and_rebuild(spec):
    torch.manual_seed(0)
    ar = Autoregressive(spec, hidden=(16, 16), n_mixtures=3)
    s1 = ar.sample(50, generator=torch.Generator().manual_seed(7))
    s2 = ar.sample(50, generator=torch.Generator().manual_seed(7))
    assert torch.equal(s1["x"], s2["x"]) and torch.equal(s1["c"], s2["c"])
    assert s1["x"].shape == (50, spec.n_continuous) and s1["x"].dtype == torch.float32
    assert s1["c"].shape == (50, len(spec.cardinalities)) and s1["c"].dtype == torch.long
    for k, m in enumerate(spec.cardinalities):
        assert 0 <= s1["c"][:, k].min() and s1["c"][:, k].max() < m
    lp = ar.log_prob(s1)
    assert lp.shape == (50,) and torch.isfinite(lp).all()
    ar.loss(s1).backward()
    rebuilt = Autoregressive(spec, **json.loads(json.dumps(ar.config)))
    rebuilt.load_state_dict(ar.state_dict())
    assert torch.equal(rebuilt.log_prob(s1), lp)
    s3 = rebuilt.sample(50, generator=torch.Generator().manual_seed(7))
    assert torch.equal(s3["x"], s1["x"]) and torch.equal(s3["c"], s1["c"])
    # Eval-mode loss (validation) is repeatable; conditioning on every slot returns the condition.
    ar.eval()
    assert ar.loss(s1).item() == ar.loss(s1).item()
    s4 = ar.sample(50, condition=s1, generator=torch.Generator().manual_seed(8))
    assert torch.equal(s4["x"], s1["x"]) and torch.equal(s4["c"], s1["c"])


@pytest.mark.parametrize("kwargs", [dict(n_mixtures=0), dict(n_mixtures=2.5), dict(hidden=()), dict(hidden=8),
                                    dict(hidden=(0, 8)), dict(order=[0, 1]), dict(order=[0, 0, 1]),
                                    dict(order=[0, 1, 3]), dict(order="012"), dict(order=[True, 0, 2])])
def test_bad_hyperparameters_raise(kwargs):
    with pytest.raises(ConfigError):
        Autoregressive(Spec(1, (3, 2)), **kwargs)


def test_bad_calls_raise():
    ar = Autoregressive(Spec(1, (3,)), hidden=(8,))
    with pytest.raises(ConfigError):
        ar.sample(0)
    with pytest.raises(ConfigError):
        Autoregressive(Spec(0, ()))
    with pytest.raises(DataError, match="rows"):            # condition of the wrong length
        ar.sample(3, condition={"x": torch.full((2, 1), NAN), "c": torch.full((2, 1), -1)})
    with pytest.raises(DataError, match="outside"):         # a category code the model does not have
        ar.sample(2, condition={"x": torch.full((2, 1), NAN), "c": torch.full((2, 1), 5)})
    with pytest.raises(DataError):                          # wrong width
        ar.sample(2, condition={"x": torch.full((2, 2), NAN), "c": torch.full((2, 1), -1)})
    with pytest.raises(DataError, match="NaN"):
        ar.log_prob({"x": torch.tensor([[NAN]]), "c": torch.tensor([[0]])})
    assert math.isfinite(ar.log_prob({"x": torch.tensor([[0.5]]), "c": torch.tensor([[2]])}).item())
