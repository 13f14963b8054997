"""Diffusion family: the Gaussian bound against a closed form (exact denoiser for N(0, I) data), the
masked-diffusion bound against the exact pmf (dynamic programming over mask states), samplers and
inpainting on a trained mixed toy, seeded sampling, rebuild from config, bad hyper-parameters."""
from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
from torch.distributions import Normal, kl_divergence

import genmodels as gm
from genmodels.core import Spec
from genmodels.errors import ConfigError, DataError
from genmodels.families.diffusion import Diffusion, normal_kl

torch.set_num_threads(1)
LOG_2PI = math.log(2 * math.pi)


def test_normal_kl_matches_torch():
    g = torch.Generator().manual_seed(0)
    m1, m2 = torch.randn(50, generator=g, dtype=torch.float64), torch.randn(50, generator=g, dtype=torch.float64)
    v1, v2 = (torch.rand(50, generator=g, dtype=torch.float64) + 0.05 for _ in range(2))
    ref = kl_divergence(Normal(m1, v1.sqrt()), Normal(m2, v2.sqrt()))
    torch.testing.assert_close(normal_kl(m1, v1, m2, v2), ref)
    torch.testing.assert_close(normal_kl(m1, v1, 0.0, 1.0), kl_divergence(Normal(m1, v1.sqrt()), Normal(0.0, 1.0)))


# ------------------------------------------------------------------ Gaussian part: closed form
def exact_denoiser(T: int, scale: float, schedule: str = "cosine") -> Diffusion:
    """A model whose predict is the exact denoiser E[eps | x_t] for N(0, scale^2 I) data (v_hat = 0 at scale 1)."""
    d = Diffusion(Spec(2, ()), timesteps=T, schedule=schedule, hidden=(8,), time_dim=4)

    def predict(x_t, z_t, t):
        ab = d.schedule.abar[t].to(x_t.dtype)[..., None]                 # (..., 1)
        return (ab * (1 - ab)).sqrt() * (1 - scale ** 2) * x_t / (ab * scale ** 2 + 1 - ab), []

    d.predict = predict
    return d


def expected_bound(d: Diffusion, sq: torch.Tensor, scale: float) -> torch.Tensor:
    """E over the forward process of the bound of ``exact_denoiser`` at |x_0|^2 = sq (B,) in D = 2,
    from Ho et al.'s formulas: eps_hat = k_t x_t, mu_theta = (x_t - beta_t k_t x_t / sqrt(1 - abar_t)) / sqrt(alpha_t)
    = m_t x_t, reverse variance beta_t; q(x_{t-1} | x_t, x_0) = N(c1 x_0 + c2 x_t, beta~_t) (eq. 7)."""
    abar, beta, T, D = d.schedule.abar, d.schedule.beta, d.schedule.T, 2
    m = lambda t: (1 - beta[t] / (abar[t] * scale ** 2 + 1 - abar[t])) / (1 - beta[t]).sqrt() 
    out = -D * kl_divergence(Normal(0.0, (1 - abar[T]).sqrt()), Normal(0.0, 1.0)) - 0.5 * abar[T] * sq
    for t in range(2, T + 1):
        c1 = abar[t - 1].sqrt() * beta[t] / (1 - abar[t])
        c2 = (1 - beta[t]).sqrt() * (1 - abar[t - 1]) / (1 - abar[t])
        var = (1 - abar[t - 1]) / (1 - abar[t]) * beta[t]
        # mean gap c1 x_0 + (c2 - m_t) x_t with x_t = sqrt(abar) x_0 + sqrt(1 - abar) eps
        a, b = c1 + (c2 - m(t)) * abar[t].sqrt(), (c2 - m(t)) * (1 - abar[t]).sqrt()
        out -= D * kl_divergence(Normal(0.0, var.sqrt()), Normal(0.0, beta[t].sqrt()))
        out -= (a ** 2 * sq + b ** 2 * D) / (2 * beta[t])
    a, b = 1 - m(1) * abar[1].sqrt(), m(1) * (1 - abar[1]).sqrt()       # decoder N(x_0; m_1 x_1, beta_1)
    return out - 0.5 * D * (LOG_2PI + beta[1].log()) - (a ** 2 * sq + b ** 2 * D) / (2 * beta[1])


def test_gaussian_bound_against_closed_form():
    x0 = torch.randn(400, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    # N(0, I) data: the reverse process with variance beta_t is exact, so is the bound, row by row.
    for T in (10, 1000):
        d = exact_denoiser(T, 1.0)
        torch.testing.assert_close(expected_bound(d, (x0 ** 2).sum(1), 1.0), Normal(0.0, 1.0).log_prob(x0).sum(1))
    # N(0, 0.5^2 I) data: a real gap, below the negative entropy, shrinking with the number of steps.
    neg_entropy = -2 * 0.5 * math.log(2 * math.pi * math.e * 0.25)
    gaps = [neg_entropy - float(expected_bound(exact_denoiser(T, 0.5), torch.tensor([2 * 0.25]), 0.5))
            for T in (10, 100, 1000)]
    assert gaps[0] > gaps[1] > gaps[2] > 0 and gaps[2] < 0.01, gaps
    # The module's log_prob is an unbiased one-draw estimate of the expectation: average 8 draws per row.
    x = 0.5 * x0.float()
    for T, schedule in ((10, "linear"), (100, "cosine")):
        d = exact_denoiser(T, 0.5, schedule)
        ref = expected_bound(d, (x.double() ** 2).sum(1), 0.5)
        torch.manual_seed(0)
        lp = d.log_prob({"x": x.repeat(8, 1)}).view(8, -1)               # (8, B)
        assert lp.dtype == torch.float64 and torch.isfinite(lp).all()
        err, se = float((lp.mean(0) - ref).mean()), float(lp.std(0).mean()) / math.sqrt(8 * len(x))
        assert abs(err) < 4 * se + 1e-4, (T, err, se)
        true = Normal(0.0, 0.5).log_prob(x.double()).sum(1)
        assert float(lp.mean()) <= float(true.mean()) + 4 * se


# ------------------------------------------------------------------ categorical part: exact pmf
def exact_pmf(d: Diffusion) -> dict[tuple[int, ...], float]:
    """p(c) of the reverse masked process, by pushing the distribution over mask states from T to 0."""
    cards, s, T = d.cards, d.schedule, d.schedule.T
    states = list(itertools.product(*[range(m + 1) for m in cards]))     # m_k is the mask code
    index = {z: i for i, z in enumerate(states)}
    z = torch.tensor(states)                                             # (S, K)
    pi = torch.zeros(len(states), dtype=torch.float64)
    pi[index[tuple(cards)]] = 1.0                                        # all masked at T
    with torch.no_grad():
        for t in range(T, 0, -1):
            _, logits = d.predict(torch.zeros(len(states), 0), z, torch.tensor(t))
            reveal = float((s.keep[t - 1] - s.keep[t]) / (1 - s.keep[t]))
            M = torch.ones(len(states), len(states), dtype=torch.float64)  # M[i, j] = p(z_{t-1} = j | z_t = i)
            for i, zi in enumerate(states):
                for j, zj in enumerate(states):
                    for k, m in enumerate(cards):
                        if zi[k] != m:
                            M[i, j] *= float(zj[k] == zi[k])
                        elif zj[k] == m:
                            M[i, j] *= 1 - reveal
                        else:
                            M[i, j] *= reveal * float(logits[k][i].double().softmax(-1)[zj[k]])
            pi = pi @ M
    out = {zz: float(pi[index[zz]]) for zz in itertools.product(*[range(m) for m in cards])}
    assert abs(sum(out.values()) - 1) < 1e-9                             # everything is unmasked at t = 0
    return out


def expected_categorical_bound(d: Diffusion, c: tuple[int, ...]) -> float:
    """E over the masking of the bound at c, exactly: a sum over timesteps and the 2^K mask patterns."""
    s, T, cards = d.schedule, d.schedule.T, d.cards
    out = 0.0
    with torch.no_grad():
        for t in range(1, T + 1):
            keep, w = float(s.keep[t]), float((s.keep[t - 1] - s.keep[t]) / (1 - s.keep[t]))
            for pattern in itertools.product((0, 1), repeat=len(cards)):
                prob = math.prod((1 - keep) if m else keep for m in pattern)
                z = torch.tensor([[m_k if m else c_k for m, m_k, c_k in zip(pattern, cards, c)]])
                _, logits = d.predict(torch.zeros(1, 0), z, torch.tensor(t))
                ce = sum(-float(lg[0].double().log_softmax(-1)[c_k]) for m, lg, c_k in zip(pattern, logits, c) if m)
                out -= prob * w * ce
    return out


def test_categorical_bound_against_exact_pmf():
    torch.manual_seed(0)
    d = Diffusion(Spec(0, (3, 2)), timesteps=6, schedule="linear", hidden=(16,), time_dim=8)
    with torch.no_grad():                                                # a lopsided, input-dependent model
        d.denoiser.net[-1].weight.mul_(8.0)
    pmf = exact_pmf(d)
    configs = list(pmf)
    log_pmf = torch.tensor([math.log(pmf[k]) for k in configs], dtype=torch.float64)
    exact = torch.tensor([expected_categorical_bound(d, k) for k in configs], dtype=torch.float64)
    assert (exact <= log_pmf).all() and (log_pmf - exact).max() > 0.02, (exact, log_pmf)   # a real gap
    assert float(exact.exp().sum()) < 1.0
    # The module's log_prob is a one-draw estimate of that expectation: average 3000 draws per configuration.
    c = torch.tensor(configs).repeat(3000, 1)                            # (3000 * 6, 2)
    torch.manual_seed(1)
    lp = d.log_prob({"c": c}).view(3000, len(configs))
    se = lp.std(0) / math.sqrt(3000)
    assert ((lp.mean(0) - exact).abs() < 4 * se + 1e-6).all(), (lp.mean(0), exact, se)
    # The sampler draws from that same model: frequencies match the exact pmf.
    s = d.sample(6000, generator=torch.Generator().manual_seed(2))["c"]
    for k in configs:
        assert abs(float((s == torch.tensor(k)).all(1).float().mean()) - pmf[k]) < 0.025, k
    # With a coarse grid the (different, coarser) model still gives valid codes.
    s = d.sample(200, generator=torch.Generator().manual_seed(2), steps=2)["c"]
    assert s.shape == (200, 2) and (s[:, 0] < 3).all() and (s[:, 1] < 2).all() and (s >= 0).all()


# ------------------------------------------------------------------ a trained mixed toy
MU, P1, P2 = torch.tensor([-1.5, 0.0, 1.5]), torch.tensor([0.2, 0.3, 0.5]), torch.tensor([0.1, 0.5, 0.9])


def toy(n: int, g: torch.Generator) -> dict[str, torch.Tensor]:
    """c1 ~ Cat(P1), x | c1 ~ N(MU[c1], 0.5^2), c2 | c1 ~ Bernoulli(P2[c1])."""
    c1 = torch.multinomial(P1, n, replacement=True, generator=g)
    x = MU[c1] + 0.5 * torch.randn(n, generator=g)
    c2 = (torch.rand(n, generator=g) < P2[c1]).long()
    return {"x": x[:, None], "c": torch.stack([c1, c2], 1)}


@pytest.fixture(scope="module")
def trained():
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    data = toy(4000, g)
    d = Diffusion(Spec(1, (3, 2)), timesteps=100, hidden=(64, 64), time_dim=32)
    opt = torch.optim.AdamW(d.parameters(), lr=3e-3)
    steps = 1200
    for i in range(steps):
        for group in opt.param_groups:
            group["lr"] = 3e-3 * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * i / steps)))
        idx = torch.randint(0, 4000, (256,), generator=g)
        loss = d.loss({k: v[idx] for k, v in data.items()})
        opt.zero_grad()
        loss.backward()
        opt.step()
    return d.eval()


@pytest.mark.parametrize("sampler,steps,tol", [("ddpm", None, 0.12), ("ddim", 10, 0.2), ("ddpm", 20, 0.2)])
def test_trained_marginals(trained, sampler, steps, tol):
    s = trained.sample(2000, generator=torch.Generator().manual_seed(1), sampler=sampler, steps=steps)
    assert s["x"].shape == (2000, 1) and s["c"].shape == (2000, 2) and s["c"].dtype == torch.long
    assert abs(float(s["x"].mean()) - float((P1 * MU).sum())) < tol
    x_std = float(((P1 * (MU ** 2 + 0.25)).sum() - (P1 * MU).sum() ** 2).sqrt())
    assert abs(float(s["x"].std()) - x_std) < tol
    freq = torch.bincount(s["c"][:, 0], minlength=3).float() / 2000
    assert (freq - P1).abs().max() < 0.1, freq
    assert abs(float(s["c"][:, 1].float().mean()) - float((P1 * P2).sum())) < 0.1


def test_trained_bound_is_sensible(trained):
    g = torch.Generator().manual_seed(5)
    test = toy(300, g)
    x, c1, c2 = test["x"][:, 0].double(), test["c"][:, 0], test["c"][:, 1]
    true = (Normal(MU[c1].double(), 0.5).log_prob(x) + P1[c1].double().log()
            + torch.where(c2 == 1, P2[c1], 1 - P2[c1]).double().log())
    torch.manual_seed(0)
    lp = trained.log_prob(test)
    torch.manual_seed(0)
    assert torch.equal(trained.log_prob(test), lp)                       # fixed noise: repeatable
    assert lp.mean() <= true.mean() + 0.2                                # a bound (in expectation)
    assert lp.mean() > true.mean() - 1.5                                 # and not a useless one
    shuffled = {"x": test["x"], "c": test["c"].roll(1, 0)}               # breaks x <-> c1: less likely
    torch.manual_seed(0)
    assert trained.log_prob(shuffled).mean() < lp.mean() - 0.5


def test_inpainting(trained):
    n = 600
    for k in range(3):
        cond = {"x": torch.full((n, 1), float("nan")), "c": torch.tensor([[k, -1]]).expand(n, 2)}
        s = trained.sample(n, condition=cond, generator=torch.Generator().manual_seed(k))
        assert (s["c"][:, 0] == k).all() and torch.isfinite(s["x"]).all()
        assert abs(float(s["x"].mean()) - float(MU[k])) < 0.2, (k, float(s["x"].mean()))
        assert abs(float(s["c"][:, 1].float().mean()) - float(P2[k])) < 0.12
    # Known real slot: returned exactly; the categories follow it (loosely: P(c1 = 2 | x = 1.5) = 0.99),
    # better with RePaint's resampling.
    cond = {"x": torch.full((n, 1), 1.5), "c": torch.full((n, 2), -1)}
    freq = []
    for resample in (1, 5):
        s = trained.sample(n, condition=cond, generator=torch.Generator().manual_seed(3), sampler="ddim", steps=25,
                           resample=resample)
        assert (s["x"] == 1.5).all() and s["c"][:, 0].bincount(minlength=3).argmax() == 2
        freq.append(float((s["c"][:, 0] == 2).float().mean()))
    assert freq[0] > 0.55 and freq[1] > max(0.7, freq[0]), freq
    with pytest.raises(DataError, match="rows"):
        trained.sample(3, condition={"x": torch.full((2, 1), 0.0), "c": torch.full((2, 2), -1)})


def test_model_conditional_on_dataframe():
    rng = np.random.default_rng(0)
    colour = rng.choice(["red", "green", "blue"], 300)
    df = pd.DataFrame({"colour": colour, "size": np.where(colour == "red", 5.0, 0.0) + rng.normal(size=300)})
    m = gm.Model("diffusion", seed=0, device="cpu", timesteps=50, hidden=[64, 64], time_dim=32, lr=3e-3)
    m.fit(df, max_steps=300, verbose=False)
    s = m.sample(500, condition={"colour": "red"}, seed=1)
    assert (s["colour"] == "red").all() and len(s) == 500
    assert s["size"].mean() > 3.0
    assert m.likelihood == "bound" and np.isfinite(m.log_prob(df.head(20))).all()


# ------------------------------------------------------------------ plumbing
@pytest.mark.parametrize("spec", [Spec(2, (3, 2)), Spec(1, ()), Spec(0, (4, 2)), Spec(1, (1,))])
def test_seeded_sampling_and_rebuild(spec):
    torch.manual_seed(0)
    d = Diffusion(spec, timesteps=20, hidden=(16, 16), time_dim=8, sampler="ddim", sampling_steps=5)
    s1 = d.sample(30, generator=torch.Generator().manual_seed(5))
    s2 = d.sample(30, generator=torch.Generator().manual_seed(5))
    assert torch.equal(s1["x"], s2["x"]) and torch.equal(s1["c"], s2["c"])
    assert s1["x"].shape == (30, spec.n_continuous) and s1["x"].dtype == torch.float32
    assert s1["c"].shape == (30, len(spec.cardinalities)) and s1["c"].dtype == torch.long
    for k, m in enumerate(spec.cardinalities):
        assert 0 <= s1["c"][:, k].min() and s1["c"][:, k].max() < m
    opt = torch.optim.Adam(d.parameters(), lr=1e-2)
    torch.manual_seed(1)
    first = float(d.loss(s1).detach())
    for _ in range(40):
        torch.manual_seed(1)                                             # same noise: the loss must go down
        loss = d.loss(s1)
        opt.zero_grad()
        loss.backward()
        opt.step()
    torch.manual_seed(1)
    assert math.isfinite(first) and float(d.loss(s1).detach()) < first
    torch.manual_seed(2)
    lp = d.log_prob(s1)
    assert lp.shape == (30,) and torch.isfinite(lp).all()
    rebuilt = Diffusion(spec, **json.loads(json.dumps(d.config)))
    rebuilt.load_state_dict(d.state_dict())
    torch.manual_seed(2)
    assert torch.equal(rebuilt.log_prob(s1), lp)
    for kw in ({}, {"sampler": "ddpm", "steps": 20}):
        a = d.sample(30, generator=torch.Generator().manual_seed(6), **kw)
        b = rebuilt.sample(30, generator=torch.Generator().manual_seed(6), **kw)
        assert torch.equal(a["x"], b["x"]) and torch.equal(a["c"], b["c"])
    assert set(d.state_dict()) == {k for k in d.state_dict() if k.startswith("denoiser.")}   # schedule: not learned


@pytest.mark.parametrize("kwargs", [dict(timesteps=1), dict(timesteps=0), dict(timesteps=1.5), dict(timesteps=True),
                                    dict(schedule="quadratic"), dict(hidden=()), dict(hidden=(8, 0)),
                                    dict(time_dim=3), dict(time_dim=0), dict(sampler="euler"),
                                    dict(sampling_steps=0), dict(timesteps=10, sampling_steps=11),
                                    dict(sampling_steps=2.0), dict(resample=0)])
def test_bad_hyperparameters_raise(kwargs):
    with pytest.raises(ConfigError):
        Diffusion(Spec(2, (3,)), **kwargs)


def test_bad_calls_raise():
    d = Diffusion(Spec(1, (2,)), timesteps=10, hidden=(8,), time_dim=4)
    for kw in (dict(sampler="heun"), dict(steps=0), dict(steps=11), dict(resample=0)):
        with pytest.raises(ConfigError):
            d.sample(3, **kw)
    with pytest.raises(ConfigError):
        d.sample(0)
    with pytest.raises(ValueError):
        d.log_prob({"x": torch.zeros(3, 2), "c": torch.zeros(3, 1, dtype=torch.long)})
    with pytest.raises(DataError, match="never seen"):
        d.sample(3, condition={"x": torch.full((3, 1), float("nan")), "c": torch.full((3, 1), 5)})
