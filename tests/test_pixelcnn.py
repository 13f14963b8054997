"""PixelCNN image family and the discretized logistic maths (genmodels.nets.discretized).

Checks: the discretized logistic and its coupled mixture are normalised and agree with a direct
computation through torch.distributions; the samplers draw from the stated masses; the network is
causal with no blind spot; each PixelCNN conditional sums to 1 over a pixel's 256 values and log_prob
is the chain-rule sum of the conditionals (+ D log 256); training lowers the loss; sampling is
repeatable and follows the label; bad arguments raise ConfigError.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import distributions as dist

from genmodels.core import Spec
from genmodels.errors import ConfigError
from genmodels.families.pixelcnn import PixelCNN
from genmodels.nets.discretized import (discretized_logistic_log_prob, discretized_logistic_sample,
                                        discretized_mix_logistic_log_prob, discretized_mix_logistic_sample,
                                        mixture_n_params, split_mixture_params)
from genmodels.nets.pixelcnn import GatedPixelCNN

ALL = torch.arange(256)


def logistic_bin_mass(k: torch.Tensor, mean: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Direct reference: CDF differences of torch's logistic (a sigmoid-transformed uniform), float64."""
    base = dist.Uniform(torch.zeros_like(mean), torch.ones_like(mean))
    logistic = dist.TransformedDistribution(base, [dist.SigmoidTransform().inv, dist.AffineTransform(mean, scale)])
    x = 2 * k.double() / 255 - 1
    upper = torch.where(k == 255, torch.ones_like(x), logistic.cdf((x + 1 / 255).clamp(-50, 50)))
    lower = torch.where(k == 0, torch.zeros_like(x), logistic.cdf((x - 1 / 255).clamp(-50, 50)))
    return upper - lower


# ---------------------------------------------------------------- discretized logistic

def test_discretized_logistic_is_normalised_and_matches_reference():
    g = torch.Generator().manual_seed(0)
    mean = (torch.rand(1, 40, generator=g, dtype=torch.float64) * 2.6 - 1.3)
    log_scale = torch.rand(1, 40, generator=g, dtype=torch.float64) * 9 - 7      # scales e^-7 .. e^2
    k = ALL.view(256, 1).expand(256, 40)
    lp = discretized_logistic_log_prob(k, mean, log_scale)                      # (256, 40)
    assert lp.shape == (256, 40) and torch.isfinite(lp).all()
    assert torch.allclose(lp.exp().sum(0), torch.ones(40, dtype=torch.float64), atol=1e-10)
    ref = logistic_bin_mass(k, mean.expand(256, 40), log_scale.exp().expand(256, 40))
    assert torch.allclose(lp.exp(), ref, atol=1e-9)
    lp32 = discretized_logistic_log_prob(k, mean.float(), log_scale.float())    # float32 too
    assert (lp32.exp().sum(0) - 1).abs().max() < 1e-5
    # far tails stay finite (no log 0): a pixel 255 under a narrow logistic at -1
    far = discretized_logistic_log_prob(torch.tensor([255, 128]), torch.tensor(-1.0), torch.tensor(-7.0))
    assert torch.isfinite(far).all() and (far < -100).all()


def test_discretized_logistic_sampler_follows_the_mass():
    mean, log_scale = torch.tensor(0.9), torch.tensor(-2.5)        # a good share lands in the edge bin 255
    draws = discretized_logistic_sample(mean.expand(40000), log_scale.expand(40000),
                                        torch.Generator().manual_seed(1))
    assert draws.dtype == torch.long and draws.min() >= 0 and draws.max() <= 255
    freq = torch.bincount(draws, minlength=256).double() / len(draws)
    mass = discretized_logistic_log_prob(ALL, mean.double(), log_scale.double()).exp()
    assert 0.5 * (freq - mass).abs().sum() < 0.03                  # total variation
    again = discretized_logistic_sample(mean.expand(40000), log_scale.expand(40000), torch.Generator().manual_seed(1))
    assert torch.equal(draws, again)


def _mixture_reference(pixels: torch.Tensor, params: torch.Tensor, C: int, M: int) -> torch.Tensor:
    """Direct mixture mass of one pixel (C,) given params (P,), float64, by the PixelCNN++ formulas."""
    logits, means, log_scales, coeffs = (t[0] for t in split_mixture_params(params[None].double(), C, M))
    x = 2 * pixels.double() / 255 - 1
    total = torch.zeros((), dtype=torch.float64)
    for m in range(M):
        p = torch.softmax(logits, 0)[m]
        for c in range(C):
            mu = means[m, c] + sum(coeffs[m, c * (c - 1) // 2 + j] * x[j] for j in range(c))
            p = p * logistic_bin_mass(pixels[c:c + 1], mu.view(1), log_scales[m, c].exp().view(1))[0]
        total = total + p
    return total


def test_mixture_matches_reference_and_is_normalised():
    g = torch.Generator().manual_seed(2)
    for C, M in ((1, 3), (2, 2), (3, 2)):
        params = torch.randn(mixture_n_params(C, M), generator=g, dtype=torch.float64) * 1.5
        assert params.shape[0] == M * (1 + 2 * C + C * (C - 1) // 2)
        pix = torch.randint(0, 256, (6, C), generator=g)
        pix[0], pix[1] = 0, 255
        lp = discretized_mix_logistic_log_prob(pix, params.expand(6, -1), M)        # (6,)
        ref = torch.stack([_mixture_reference(p, params, C, M) for p in pix])
        assert torch.allclose(lp.exp(), ref, rtol=1e-7, atol=1e-12)
        if C == 1:
            total = discretized_mix_logistic_log_prob(ALL.view(256, 1), params.expand(256, -1), M).exp().sum()
        elif C == 2:      # all 65,536 values of the pixel
            grid = torch.cartesian_prod(ALL, ALL)
            total = discretized_mix_logistic_log_prob(grid, params.expand(len(grid), -1), M).exp().sum()
        else:             # C = 3: the mass summed over (green, blue) equals the red marginal, for a few reds
            grid = torch.cartesian_prod(ALL, ALL)
            logits, means, log_scales, _ = split_mixture_params(params[None], C, M)
            for red in (0, 77, 255):
                pix3 = torch.cat([torch.full((len(grid), 1), red), grid], 1)
                s = discretized_mix_logistic_log_prob(pix3, params.expand(len(grid), -1), M).exp().sum()
                marg = (torch.softmax(logits[0], 0) * discretized_logistic_log_prob(
                    torch.tensor(red), means[0, :, 0], log_scales[0, :, 0]).exp()).sum()
                assert abs(float(s - marg)) < 1e-9
            total = torch.tensor(1.0, dtype=torch.float64)
        assert abs(float(total) - 1) < 1e-9


def test_mixture_sampler_follows_the_joint_mass():
    C, M, n = 2, 3, 30000
    params = torch.randn(mixture_n_params(C, M), generator=torch.Generator().manual_seed(3))
    params[M + M * C:M + 2 * M * C] = -1.5                                  # log scales: moderately narrow
    params[-M:] = 2.0                                                        # channel 1 follows channel 0
    draws = discretized_mix_logistic_sample(params.expand(n, -1), C, M, torch.Generator().manual_seed(4))
    assert draws.shape == (n, C) and draws.dtype == torch.long
    grid = torch.cartesian_prod(ALL, ALL)
    joint = discretized_mix_logistic_log_prob(grid, params.double().expand(len(grid), -1), M).exp().view(256, 256)
    for c in range(C):   # both marginals (channel 1's depends on the coupling to channel 0)
        freq = torch.bincount(draws[:, c], minlength=256).double() / n
        assert 0.5 * (freq - joint.sum(1 - c)).abs().sum() < 0.04
    # the joint (hence the coupling) is right: chi-square over 16 x 16 coarse cells
    expected = joint.view(16, 16, 16, 16).sum((1, 3)) * n
    counts = torch.zeros(256, 256, dtype=torch.float64)
    counts.index_put_((draws[:, 0], draws[:, 1]), torch.ones(n, dtype=torch.float64), accumulate=True)
    observed = counts.view(16, 16, 16, 16).sum((1, 3))
    keep = expected > 5
    chi2, dof = float(((observed - expected) ** 2 / expected)[keep].sum()), int(keep.sum()) - 1
    assert chi2 < dof + 5 * math.sqrt(2 * dof)
    # a sampler that ignored the coupling would fail it
    free = params.clone()
    free[-M:] = 0.0                                                          # tanh(0): no coupling
    grid_free = discretized_mix_logistic_log_prob(grid, free.double().expand(len(grid), -1), M).exp()
    wrong = grid_free.view(16, 16, 16, 16).sum((1, 3)) * n
    keep = wrong > 5
    assert float(((observed - wrong) ** 2 / wrong)[keep].sum()) > 3 * (dof + 5 * math.sqrt(2 * dof))


# ---------------------------------------------------------------- the network

def test_network_is_causal_without_blind_spot():
    torch.manual_seed(0)
    H = W = 6
    net = GatedPixelCNN(3, 4, channels=8, n_layers=2, kernel_size=3, first_kernel=5, cond_dim=0).double()
    x = torch.randn(4, 3, H, W, dtype=torch.float64, requires_grad=True)   # 4 images: no chance dead ReLUs
    out = net(x)
    R = net.receptive_rows
    for i in range(H):
        for j in range(W):
            (grad,) = torch.autograd.grad(out[:, :, i, j].sum(), x, retain_graph=True)
            seen = grad.abs().sum((0, 1)).flatten()                     # (H W,) over images and channels
            assert float(seen[i * W + j:].max()) == 0.0, (i, j)        # not itself, nothing after
            if j > 0:
                assert float(seen[i * W + j - 1]) > 0                  # the pixel to the left
            if i > 0 and j < W - 1:
                assert float(seen[(i - 1) * W + j + 1]) > 0            # above-right: no blind spot
            assert float(seen[:max(0, i - R) * W].sum()) == 0.0        # receptive_rows is right
    # the sampler's route (vertical stack on the band of rows above, horizontal stack on the first
    # j + 1 columns of row i) gives the full network's output
    with torch.no_grad():
        for i in range(H):
            vh = net.vertical_row(x, i)
            for j in range(W):
                part = net.horizontal(x[:, :, i:i + 1, :j + 1], [t[..., :j + 1] for t in vh])[:, :, 0, j]
                assert torch.allclose(part, out[:, :, i, j], atol=1e-12), (i, j)


def _tiny(K: int = 2, C: int = 1, size: int = 3, **kw) -> PixelCNN:
    torch.manual_seed(0)
    cfg = dict(channels=8, n_layers=2, n_mixtures=2, embed_dim=4)
    cfg.update(kw)
    return PixelCNN(Spec(event_shape=(C, size, size), extra={"n_classes": K}), **cfg)


def _batch(pixels: torch.Tensor, label: torch.Tensor) -> dict:
    pixels = pixels.to(torch.uint8)
    return {"x": (pixels.float() + 0.5) / 256, "pixels": pixels, "label": label,
            "log_w": torch.zeros(len(pixels), dtype=torch.float64)}


@torch.no_grad()
def test_conditionals_are_normalised_and_log_prob_is_their_sum():
    model = _tiny(K=2).double()
    g = torch.Generator().manual_seed(5)
    base = torch.randint(0, 256, (1, 1, 3, 3), generator=g)
    # pixel (1, 1): vary it over its 256 values, the rest fixed; its conditionals sum to 1
    imgs = base.repeat(256, 1, 1, 1)
    imgs[:, 0, 1, 1] = ALL
    cond = model.pixel_log_prob(_batch(imgs, torch.ones(256, dtype=torch.long)))[:, 1, 1]
    assert abs(float(cond.exp().sum()) - 1) < 1e-9
    # chain rule: each conditional recomputed with every later pixel scrambled; their sum is log_prob
    b = _batch(base, torch.tensor([1]))
    total = 0.0
    for k in range(9):
        scrambled = base.clone().flatten()
        scrambled[k + 1:] = torch.randint(0, 256, (8 - k,), generator=g)
        scrambled = scrambled.view(1, 1, 3, 3)
        total += float(model.pixel_log_prob(_batch(scrambled, torch.tensor([1]))).flatten()[k])
    lp = model.log_prob(b)
    assert lp.shape == (1,) and lp.dtype == torch.float64
    assert abs(float(lp) - (total + 9 * math.log(256))) < 1e-9
    # the label matters (class embedding reaches the output)
    assert abs(float(model.log_prob(_batch(base, torch.tensor([0]))) - lp)) > 1e-6


@torch.no_grad()
def test_rgb_shapes_and_a_rgb_conditional_sums_to_one():
    model = _tiny(K=0, C=3, size=4, n_mixtures=2).double()
    g = torch.Generator().manual_seed(6)
    pix = torch.randint(0, 256, (3, 3, 4, 4), generator=g)
    lp = model.log_prob(_batch(pix, torch.full((3,), -1)))
    assert lp.shape == (3,) and torch.isfinite(lp).all()
    # pixel (2, 1): its mass summed over the 256 blue values is the (red, green) marginal of its mixture
    imgs = pix[:1].repeat(256, 1, 1, 1)
    imgs[:, 2, 2, 1] = ALL
    p_blue = model.pixel_log_prob(_batch(imgs, torch.full((256,), -1)))[:, 2, 1].exp().sum()
    params = model.params(pix[:1], torch.tensor([-1]))[0, :, 2, 1]                  # (P,)
    logits, means, log_scales, coeffs = split_mixture_params(params[None], 3, 2)
    r, gr = pix[0, 0, 2, 1], pix[0, 1, 2, 1]
    x_r = 2 * r.double() / 255 - 1
    pr = discretized_logistic_log_prob(r, means[0, :, 0], log_scales[0, :, 0]).exp()
    pg = discretized_logistic_log_prob(gr, means[0, :, 1] + coeffs[0, :, 0] * x_r, log_scales[0, :, 1]).exp()
    assert abs(float(p_blue - (torch.softmax(logits[0], 0) * pr * pg).sum())) < 1e-9


# ---------------------------------------------------------------- training and sampling

def _two_classes(n: int = 64) -> dict:
    """8x8 images: class 0 dark (around 30), class 1 bright (around 220), with noise."""
    g = torch.Generator().manual_seed(7)
    label = torch.arange(n) % 2
    level = torch.where(label == 1, 220.0, 30.0).view(n, 1, 1, 1)
    pixels = (level + 15 * torch.randn(n, 1, 8, 8, generator=g)).round().clamp(0, 255)
    return _batch(pixels, label)


def _fit(model: PixelCNN, batch: dict, steps: int) -> list[float]:
    model.prepare(batch)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(steps):
        loss = model.loss(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def test_training_lowers_the_loss_and_labels_condition_samples():
    batch = _two_classes()
    model = _tiny(K=2, size=8, channels=16, n_mixtures=3)
    with torch.no_grad():
        before = float(model.loss(batch))
    losses = _fit(model, batch, 25)
    assert losses[-1] < before - 1.0 and losses[-1] < 4.5      # nats/dim; 8 bits uniform is 5.55

    def g() -> torch.Generator:
        return torch.Generator().manual_seed(11)

    dark = model.sample(16, condition={"label": torch.zeros(16, dtype=torch.long)}, generator=g())["x"]
    bright = model.sample(16, condition={"label": torch.ones(16, dtype=torch.long)}, generator=g())["x"]
    assert dark.shape == (16, 1, 8, 8) and dark.dtype == torch.float32
    assert abs(float(dark.mean()) - 30 / 256) < 0.1             # the class means: 0.12 and 0.86
    assert abs(float(bright.mean()) - 220 / 256) < 0.1
    # samples are (pixel + 0.5) / 256 and repeat with the generator's seed
    pixels = dark * 256 - 0.5
    assert torch.allclose(pixels, pixels.round(), atol=1e-4) and pixels.min() >= 0 and pixels.max() <= 255
    assert torch.equal(dark, model.sample(16, condition={"label": torch.zeros(16, dtype=torch.long)},
                                          generator=g())["x"])
    other = model.sample(16, condition={"label": torch.zeros(16, dtype=torch.long)},
                         generator=torch.Generator().manual_seed(12))["x"]
    assert not torch.equal(dark, other)


def test_unconditional_sampling_draws_training_label_frequencies():
    model = _tiny(K=3, size=8)
    label = torch.tensor([2] * 30 + [0] * 2)
    model.prepare(_batch(torch.zeros(32, 1, 8, 8), label))
    assert model.class_counts.tolist() == [2.0, 0.0, 30.0, 0.0]
    a = model.sample(5, generator=torch.Generator().manual_seed(0))["x"]
    b = model.sample(5, generator=torch.Generator().manual_seed(0))["x"]
    assert torch.equal(a, b) and a.shape == (5, 1, 8, 8)
    unlabelled = _tiny(K=0, size=8)
    assert unlabelled.sample(2, generator=torch.Generator().manual_seed(0))["x"].shape == (2, 1, 8, 8)


def test_bad_arguments_raise_config_error():
    spec = Spec(event_shape=(1, 8, 8), extra={"n_classes": 2})
    for bad in ({"channels": 0}, {"n_layers": 0}, {"kernel_size": 4}, {"first_kernel": 1},
                {"n_mixtures": 0}, {"embed_dim": 1.5}, {"channels": True}):
        with pytest.raises(ConfigError):
            PixelCNN(spec, **bad)
    with pytest.raises(ConfigError):
        PixelCNN(Spec(n_continuous=3))                           # a tabular spec
    model = _tiny(K=0, size=8)
    with pytest.raises(ConfigError, match="without labels"):
        model.sample(2, condition={"label": torch.tensor([0, 1])})
    with pytest.raises(ConfigError):
        _tiny(K=2, size=8).sample(2, condition={"colour": 1})
    with pytest.raises(ConfigError):
        model.sample(2, temperature=0.0)
    with pytest.raises(ConfigError):
        model.sample(0)


def test_end_to_end_through_model():
    gm = pytest.importorskip("genmodels")
    from sklearn.datasets import load_digits
    digits = load_digits()
    images = (digits.images[:120] * 255 / 16).round().astype(np.uint8)
    m = gm.Model("pixelcnn", modality="image", seed=0, channels=8, n_layers=2, n_mixtures=2, batch_size=32)
    m.fit((images, digits.target[:120]), max_steps=6, verbose=False)
    assert m.likelihood == "exact"
    lp = m.log_prob((images[:10], digits.target[:10]))
    assert lp.shape == (10,) and np.isfinite(lp).all() and (lp < 0).all()    # log P(pixels) of a mass
    out = m.sample(3, condition={"label": 4})
    assert out.shape[0] == 3 and out.dtype == np.uint8
