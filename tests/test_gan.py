"""The gan family: mode-specific normalisation, the gradient penalty, the validation metric, and a
short fit through Model on a table whose conditionals are known:

    colour ~ Cat(red 0.2, green 0.3, blue 0.5);  size | colour ~ N(mu_colour, 1);  shape | colour ~ Cat(SHAPE[colour])
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

import genmodels as gm
from genmodels.core import Spec
from genmodels.errors import ConfigError, DataError, NoLikelihoodError
from genmodels.families.gan import GAN, VAL_SEED, energy_distance, gradient_penalty
from genmodels.train import evaluate_loss
from known_table import MU, P_COLOUR, SHAPE, SHAPES, freqs, table

torch.set_num_threads(1)

SMALL = dict(hidden=(16,), critic_hidden=(16,), embedding_dim=8, n_modes=3, pac=2)
# A short budget that learns the table (600 steps): pac=1 (each row its own critic input) learned the
# conditionals clearly better than pac=10 in a few hundred steps, a critic twice as fast as the generator
# (TTUR) and an EMA of the weights damp the GAN's oscillation. Over seeds 0-4 the largest errors were
# 0.033 (marginal frequencies) and 0.088 (p(shape | red)), hence the tolerances below.
FIT = dict(hidden=(128, 128), critic_hidden=(128, 128), embedding_dim=32, pac=1, g_lr=1e-3, d_lr=2e-3,
           batch_size=250, warmup_steps=20, ema=0.99)


@pytest.fixture(scope="module")
def data() -> pd.DataFrame:
    return table(2000, count=False)


@pytest.fixture(scope="module")
def model(data) -> gm.Model:
    return gm.Model("gan", seed=0, device="cpu", **FIT).fit(data, max_steps=600, verbose=False)


# ---------------------------------------------------------------- parts
def test_mode_normalisation_round_trips_and_recovers_modes():
    g = torch.Generator().manual_seed(0)
    two = torch.where(torch.rand(4000, generator=g) < 0.4, -2 + 0.3 * torch.randn(4000, generator=g),
                      1 + 0.5 * torch.randn(4000, generator=g))
    x = torch.stack([two, torch.randn(4000, generator=g)], 1)                       # (N, 2)
    c = torch.randint(3, (4000, 1), generator=g)
    gan = GAN(Spec(n_continuous=2, cardinalities=(3,)), **{**SMALL, "n_modes": 10})
    gan.prepare({"x": x, "c": c})
    on = gan.mode_weights[0] > 0
    order = gan.mode_means[0, on].argsort()
    assert int(on.sum()) == 2                                                      # BIC picks two modes
    torch.testing.assert_close(gan.mode_means[0, on][order], torch.tensor([-2.0, 1.0]), atol=0.05, rtol=0)
    torch.testing.assert_close(gan.mode_stds[0, on][order], torch.tensor([0.3, 0.5]), atol=0.04, rtol=0)
    torch.testing.assert_close(gan.mode_weights[0, on][order], torch.tensor([0.4, 0.6]), atol=0.03, rtol=0)
    assert int((gan.mode_weights[1] > 0).sum()) == 1                               # a Gaussian needs one
    torch.testing.assert_close(gan.mode_weights.sum(1), torch.ones(2))
    assert gan.cat_counts.tolist() == torch.bincount(c[:, 0], minlength=3).float().tolist()
    for sample in (False, True):                                                   # any mode inverts exactly
        alpha, mode = gan.normalize(x, generator=torch.Generator().manual_seed(1), sample=sample)
        assert alpha.shape == mode.shape == x.shape and bool((gan.mode_weights.gather(1, mode.T) > 0).all())
        torch.testing.assert_close(gan.denormalize(alpha, mode), x, atol=1e-5, rtol=0)
    alpha, _ = gan.normalize(x)
    assert float((alpha.abs() <= 1).float().mean()) > 0.999                       # within 4 sd of its mode


def test_gradient_penalty_matches_hand_computation():
    torch.manual_seed(0)
    pac, width = 2, 3
    real, fake = torch.randn(6, width), torch.randn(6, width)
    linear = torch.nn.Linear(pac * width, 1)
    # a linear critic has gradient w everywhere: penalty (|w| - 1)^2
    expected = (linear.weight.norm() - 1) ** 2
    torch.testing.assert_close(gradient_penalty(linear, real, fake, pac), expected)
    # a quadratic critic sum(v^2) has gradient 2 v at the mixed pack v = eps real + (1 - eps) fake
    eps = torch.tensor([[0.2], [0.5], [0.9]])
    mixed = (eps.repeat_interleave(pac, 0) * real + (1 - eps.repeat_interleave(pac, 0)) * fake).reshape(3, -1)
    by_hand = ((2 * mixed).norm(dim=1) - 1).pow(2).mean()
    quad = lambda v: v.pow(2).sum(1, keepdim=True)                                 # noqa: E731
    torch.testing.assert_close(gradient_penalty(quad, real, fake, pac, eps=eps), by_hand)


def test_validation_metric_is_zero_for_identical_samples_and_grows_with_a_shift():
    a = torch.randn(200, 4)
    assert float(energy_distance(a, a)) < 1e-5 and float(energy_distance(a, a + 1)) > 0.5
    gan = GAN(Spec(n_continuous=2, cardinalities=(3, 2)), **SMALL)
    gan.prepare({"x": torch.randn(500, 2), "c": torch.randint(2, (500, 2))})
    batch = gan.sample(300, generator=torch.Generator().manual_seed(VAL_SEED))     # what loss() draws
    assert float(gan.loss(batch)) < 1e-4
    base, scores = gan.mode_means.clone(), []
    for shift in (0.25, 0.5, 1.0, 2.0):                                            # the generator's x moves by shift
        gan.mode_means.copy_(base + shift)
        scores.append(float(gan.loss(batch)))
    assert scores == sorted(scores) and scores[0] > 1e-3, scores


@pytest.mark.parametrize("spec", [Spec(n_continuous=0, cardinalities=(3, 2)), Spec(n_continuous=2),
                                  Spec(n_continuous=1, cardinalities=(4,))])
def test_training_step_on_any_layout_and_ragged_batches(spec):
    torch.manual_seed(0)
    gan = GAN(spec, **{**SMALL, "pac": 5, "n_critic": 2})
    batch = {"x": torch.randn(13, spec.n_continuous), "c": torch.stack([torch.randint(m, (13,)) for m in
                                                                        spec.cardinalities], 1)
             if spec.cardinalities else torch.zeros(13, 0, dtype=torch.long)}
    gan.prepare(batch)
    opts = gan.configure_optimizers(1e-3, 0.0)
    before = [p.clone() for p in gan.generator.parameters()]
    out = gan.training_step(batch, 0, opts)                                        # 13 rows, pac 5: 15 rows used
    assert set(out) == {"loss", "d_loss", "gp"} and all(math.isfinite(v) for v in out.values())
    assert any(not torch.equal(a, b) for a, b in zip(before, gan.generator.parameters()))
    s = gan.sample(7, generator=torch.Generator().manual_seed(0))
    assert s["x"].shape == (7, spec.n_continuous) and s["c"].shape == (7, len(spec.cardinalities))
    with pytest.raises(NoLikelihoodError):
        gan.log_prob(batch)


@pytest.mark.parametrize("bad", [{"pac": 0}, {"hidden": ()}, {"critic_hidden": [0]}, {"n_modes": 0},
                                 {"gp_weight": -1.0}, {"g_lr": 0.0}, {"d_lr": float("nan")}, {"n_critic": 0},
                                 {"embedding_dim": 2.5}, {"g_decay": -1e-3}, {"hidden": 64}])
def test_bad_hyperparameters_raise(bad):
    with pytest.raises(ConfigError):
        GAN(Spec(n_continuous=1, cardinalities=(2,)), **bad)


def test_bad_hyperparameter_through_model(data):
    with pytest.raises(ConfigError, match="pac"):
        gm.Model("gan", pac=0, device="cpu").fit(data.head(50), max_steps=1, verbose=False)


# ---------------------------------------------------------------- through Model
def test_samples_have_schema_and_category_frequencies(model, data):
    s = model.sample(2000, seed=1)
    assert list(s.columns) == list(data.columns) and s.dtypes.tolist() == data.dtypes.tolist()
    np.testing.assert_allclose(freqs(s["colour"], list(P_COLOUR)), freqs(data["colour"], list(P_COLOUR)), atol=0.1)
    np.testing.assert_allclose(freqs(s["shape"], SHAPES), freqs(data["shape"], SHAPES), atol=0.1)
    assert model.likelihood == "none"
    with pytest.raises(NoLikelihoodError, match="no likelihood"):
        model.log_prob(data)


def test_conditional_sampling_by_the_conditional_vector(model):
    s = model.sample(500, seed=2, condition={"colour": "red"})
    assert len(s) == 500 and (s["colour"] == "red").all()
    # shape depends on colour: red is mostly circles (0.7), unlike the marginal (~0.33)
    np.testing.assert_allclose(freqs(s["shape"], SHAPES), SHAPE["red"], atol=0.12)
    assert s["size"].mean() == pytest.approx(MU["red"], abs=1.0)                  # -4, far from the marginal's 1.2
    both = model.sample(50, seed=3, condition={"colour": "green", "shape": "triangle"})
    assert (both["colour"] == "green").all() and (both["shape"] == "triangle").all()
    with pytest.raises(ConfigError, match="gmm, autoregressive, diffusion, kde"):
        model.sample(10, condition={"size": 0.5})
    with pytest.raises(DataError, match="never seen"):
        model.sample(10, condition={"colour": "purple"})


def test_seeded_sampling_repeats_and_rebuilds_from_config(model):
    pd.testing.assert_frame_equal(model.sample(100, seed=5), model.sample(100, seed=5))
    assert not model.sample(100, seed=5).equals(model.sample(100, seed=6))
    cond = {"colour": "blue"}
    pd.testing.assert_frame_equal(model.sample(100, seed=5, condition=cond), model.sample(100, seed=5, condition=cond))
    module = model.module_
    back = GAN(module.spec, **module.config)
    back.load_state_dict(module.state_dict())
    a = module.sample(64, generator=torch.Generator().manual_seed(9))
    b = back.sample(64, generator=torch.Generator().manual_seed(9))
    assert torch.equal(a["x"], b["x"]) and torch.equal(a["c"], b["c"])


def test_model_keeps_the_weights_best_by_the_validation_metric(model, data):
    vals = [h["val"] for h in model.history_]
    assert model.fit_info_["best_val_loss"] == min(vals) and len(set(vals)) > 1
    # recompute the metric of the restored weights on the same held-out split
    n, encoded = len(data), model.codec_.encode(data)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(model.seed))
    val = {k: v[perm[:n // 10]] for k, v in encoded.items()}
    score = evaluate_loss(model.module_, val, model.codec_.dequantize, model.seed + 1, 4 * FIT["batch_size"], "cpu")
    model.module_.eval()
    assert score == pytest.approx(model.fit_info_["best_val_loss"], rel=1e-5)


def test_model_stops_early_on_the_validation_metric(data):
    m = gm.Model("gan", seed=0, device="cpu", patience_steps=1, batch_size=100, **SMALL)
    m.fit(data.head(600), max_steps=400, validation=0.2, verbose=False)
    assert m.fit_info_["stopped"] == "early_stopping" and m.fit_info_["steps"] < 400
    assert m.fit_info_["best_val_loss"] == min(h["val"] for h in m.history_)
