"""The image vae family: shapes at even and odd sizes, the decoder's masses, the IWAE bound against
exact quadrature over a 1-D latent, training, repeatable and class-conditional sampling, errors, and
one short fit through Model on the digits."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import genmodels as gm
from genmodels.core import Spec
from genmodels.errors import ConfigError, DataError
from genmodels.families.image_vae import ImageVAE

torch.set_num_threads(1)

SMALL = {"latent_dim": 4, "channels": (8, 16), "embed_dim": 4}


def make_batch(pixels: torch.Tensor, label: torch.Tensor, seed: int = 0) -> dict[str, torch.Tensor]:
    """What the image codec hands a module: dequantized x, integer pixels, labels."""
    g = torch.Generator().manual_seed(seed)
    x = (pixels.float() + torch.rand(pixels.shape, generator=g)) / 256
    return {"x": x, "pixels": pixels.to(torch.uint8), "label": label.long(),
            "log_w": torch.zeros(len(label), dtype=torch.float64)}


def halves(n: int, seed: int = 0, size: int = 8) -> dict[str, torch.Tensor]:
    """Two very different classes: 0 = bright top half, 1 = bright bottom half (plus pixel noise)."""
    g = torch.Generator().manual_seed(seed)
    label = torch.arange(n) % 2
    top = torch.zeros(size, size)
    top[: size // 2] = 1
    mean = torch.where(label[:, None, None] == 0, top, 1 - top) * 200 + 25            # (n, H, W)
    pixels = (mean + 20 * torch.randn(n, size, size, generator=g)).round().clamp(0, 255).long()
    return make_batch(pixels[:, None], label, seed)


def binary(n: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """The two classes of ``halves`` thresholded to 0 / 255 (and unlabelled)."""
    data = halves(n, seed)
    return make_batch(255 * (data["pixels"].long() > 127), torch.full((n,), -1), seed)


def build(shape: tuple[int, int, int] = (1, 8, 8), K: int = 2, **kw) -> ImageVAE:
    torch.manual_seed(0)                                                            # the same weights in any test order
    return ImageVAE(Spec(event_shape=shape, extra={"n_classes": K}), **{**SMALL, **kw})


def train(vae: ImageVAE, data: dict, steps: int, lr: float = 3e-3, bs: int = 64, seed: int = 0) -> None:
    torch.manual_seed(seed)
    opt = torch.optim.Adam(vae.parameters(), lr=lr)
    vae.prepare(data)
    n = len(data["label"])
    for step in range(steps):
        idx = torch.randint(n, (bs,))
        loss = vae.loss({k: v[idx] for k, v in data.items()})
        opt.zero_grad()
        loss.backward()
        opt.step()


# ---------------------------------------------------------------- shapes
@pytest.mark.parametrize("shape", [(1, 8, 8), (1, 12, 12), (3, 9, 11)])
@pytest.mark.parametrize("K", [0, 3])
def test_shapes_at_even_and_odd_sizes(shape, K):
    vae = ImageVAE(Spec(event_shape=shape, extra={"n_classes": K}), **SMALL)
    out = vae.sample(5, generator=torch.Generator().manual_seed(0))
    assert set(out) == {"x"} and out["x"].shape == (5, *shape) and out["x"].dtype == torch.float32
    pixels = (out["x"] * 256).floor()
    assert float(pixels.min()) >= 0 and float(pixels.max()) <= 255
    torch.testing.assert_close(out["x"], (pixels + 0.5) / 256)                     # a discrete family's x
    label = torch.tensor([0, 1, 2, -1, 0]) if K else torch.full((5,), -1)
    batch = make_batch(pixels.long(), label)
    lp = vae.log_prob(batch)
    assert lp.shape == (5,) and lp.dtype == torch.float32 and bool(torch.isfinite(lp).all())
    loss = vae.loss(batch)
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    if K:
        cond = vae.sample(3, condition={"label": torch.tensor([2, 2, 0])}, generator=torch.Generator().manual_seed(0))
        assert cond["x"].shape == (3, *shape)


# ---------------------------------------------------------------- the decoder's masses
def test_decoder_masses_sum_to_one_over_the_256_values():
    vae = ImageVAE(Spec(event_shape=(2, 8, 8), extra={"n_classes": 2}), **SMALL)
    z, label = torch.randn(3, 4), torch.tensor([0, 1, -1])
    with torch.no_grad():
        out = vae.decode(z, label)                                                    # (3, 4, 8, 8)
        values = torch.arange(256)[:, None, None, None, None].expand(256, 3, 2, 8, 8)
        lp = torch.stack([vae.pixel_log_prob(out, v) for v in values])               # (256, 3, 2, 8, 8)
    torch.testing.assert_close(torch.logsumexp(lp, 0), torch.zeros(3, 2, 8, 8), atol=2e-5, rtol=0)
    assert bool((lp < 0).all())

    bern = ImageVAE(Spec(event_shape=(1, 8, 8)), decoder="bernoulli", **SMALL)
    with torch.no_grad():
        out = bern.decode(z, torch.full((3,), -1))
        lp0 = bern.pixel_log_prob(out, torch.zeros(3, 1, 8, 8, dtype=torch.long))
        lp255 = bern.pixel_log_prob(out, torch.full((3, 1, 8, 8), 255))
        lp7 = bern.pixel_log_prob(out, torch.full((3, 1, 8, 8), 7))
    torch.testing.assert_close(torch.logaddexp(lp0, lp255), torch.zeros(3, 1, 8, 8), atol=1e-6, rtol=0)
    assert bool(torch.isneginf(lp7).all())                                          # mass 0 off {0, 255}


# ---------------------------------------------------------------- the bound
def exact_log_mass(vae: ImageVAE, batch: dict) -> torch.Tensor:
    """log P(pixels | y) = log of the integral of P(pixels | z, y) p(z | y) dz over a 1-D latent, by
    quadrature (a Riemann sum with step 0.02: the posteriors here have standard deviations of 0.1 to 1)."""
    z = torch.linspace(-6, 6, 601)
    with torch.no_grad():
        ll = vae.log_likelihood(z[:, None, None].expand(-1, len(batch["label"]), 1), batch["pixels"].long(),
                                batch["label"])                                       # (Z, B)
        m, log_t = vae.prior_params(batch["label"])                                   # (B, 1) each
    log_prior = torch.distributions.Normal(m[:, 0], log_t[:, 0].exp()).log_prob(z[:, None])   # (Z, B)
    return torch.logsumexp(ll + log_prior, 0) + math.log(float(z[1] - z[0]))


@pytest.mark.parametrize("decoder", ["logistic", "bernoulli"])
def test_iwae_bound_approaches_the_exact_log_mass_from_below(decoder):
    data = halves(256) if decoder == "logistic" else binary(256)
    K = 2 if decoder == "logistic" else 0
    vae = build(K=K, latent_dim=1, decoder=decoder)
    train(vae, data, 30, bs=32)
    batch = {k: v[:8] for k, v in data.items()}
    exact = exact_log_mass(vae, batch)                                                # (8,)
    torch.manual_seed(0)
    with torch.no_grad():
        elbo = vae.elbo(batch, n_samples=200)
        iwae = vae.iwae(batch, n_samples=1000)
        # log_prob is the iw_samples bound plus D log 256, so that the codec's -D log 256 leaves log P(pixels)
        torch.manual_seed(5)
        lp = vae.log_prob(batch)
        torch.manual_seed(5)
        torch.testing.assert_close(lp, vae.iwae(batch, n_samples=64) + 64 * math.log(256))
    # Both are lower bounds in expectation only: one estimate per image scatters around its mean (the
    # ELBO's reconstruction term by about 0.1 nats with 200 draws; the IWAE's weights are heavy-tailed
    # where q is narrower than the posterior, and one estimate here overshot by 0.36 nats), so the
    # checks are on the mean over the 8 images.
    gap_elbo, gap_iwae = float((exact - elbo).mean()), float((exact - iwae).mean())
    assert gap_elbo > 0.05                                                          # the ELBO is not tight
    assert -0.1 < gap_iwae < 0.5 * gap_elbo, (gap_elbo, gap_iwae)                    # IWAE closes most of it


def test_more_importance_samples_tighten_the_bound():
    data = halves(256)
    vae = build()
    train(vae, data, 30)
    batch = {k: v[:64] for k, v in data.items()}
    torch.manual_seed(1)
    with torch.no_grad():
        k1 = torch.stack([vae.iwae(batch, n_samples=1) for _ in range(10)]).mean()
        k50 = torch.stack([vae.iwae(batch, n_samples=50) for _ in range(10)]).mean()
        elbo = torch.stack([vae.elbo(batch) for _ in range(10)]).mean()
    assert float(k50) > float(k1) + 0.1
    assert abs(float(k1 - elbo)) < 0.5 + 0.05 * abs(float(elbo)) ** 0.5                # L_1 is the ELBO


# ---------------------------------------------------------------- training and sampling
def test_training_reduces_the_loss():
    data = halves(512)
    val = halves(128, seed=9)
    vae = build()
    torch.manual_seed(0)
    with torch.no_grad():
        before = float(vae.loss(val))
    train(vae, data, 60)
    torch.manual_seed(0)
    with torch.no_grad():
        after = float(vae.loss(val))
    assert after < 0.8 * before, (before, after)


def test_sampling_is_repeatable_with_the_same_generator():
    vae = ImageVAE(Spec(event_shape=(1, 8, 8), extra={"n_classes": 3}), **SMALL)
    for mean in (False, True):
        a = vae.sample(6, generator=torch.Generator().manual_seed(3), mean=mean)["x"]
        b = vae.sample(6, generator=torch.Generator().manual_seed(3), mean=mean)["x"]
        c = vae.sample(6, generator=torch.Generator().manual_seed(4), mean=mean)["x"]
        torch.testing.assert_close(a, b, atol=0, rtol=0)
        assert not torch.equal(a, c)


def test_labels_condition_the_samples():
    data = halves(512)
    vae = build()
    train(vae, data, 80)
    means = [data["x"][data["label"] == k].mean(0) for k in (0, 1)]
    g = torch.Generator().manual_seed(0)
    for k in (0, 1):
        s = vae.sample(64, condition={"label": torch.full((64,), k)}, generator=g)["x"].mean(0)
        own, other = float((s - means[k]).abs().mean()), float((s - means[1 - k]).abs().mean())
        assert own < 0.5 * other, (k, own, other)
    # the class priors moved apart (M-step in training steps only: scoring leaves them alone)
    assert float((vae.prior_mean[0] - vae.prior_mean[1]).norm()) > 0.5
    before = vae.prior_mean.clone()
    vae.eval()
    vae.loss(data)
    assert torch.equal(vae.prior_mean, before)
    vae.train()
    vae.loss(data)
    assert not torch.equal(vae.prior_mean, before)
    # unconditional draws use the training class frequencies (here 50/50): both halves appear
    s = vae.sample(200, generator=g)["x"]
    top = s[:, 0, :4].mean((1, 2)) > s[:, 0, 4:].mean((1, 2))
    assert 0.3 < float(top.float().mean()) < 0.7


# ---------------------------------------------------------------- errors
def test_bad_hyperparameters_and_conditions_raise():
    spec = Spec(event_shape=(1, 8, 8), extra={"n_classes": 2})
    for bad in ({"latent_dim": 0}, {"channels": ()}, {"channels": (8, 0)}, {"decoder": "gaussian"},
                {"iw_samples": 0}, {"embed_dim": 1.5}):
        with pytest.raises(ConfigError):
            ImageVAE(spec, **bad)
    with pytest.raises(ConfigError, match="event_shape"):
        ImageVAE(Spec(n_continuous=4))
    vae = ImageVAE(spec, **SMALL)
    with pytest.raises(ConfigError):
        vae.sample(2, mean="yes")
    with pytest.raises(DataError):
        vae.sample(2, condition={"label": torch.tensor([0, 2])})                     # class 2 of 2
    with pytest.raises(ConfigError, match="without labels"):
        ImageVAE(Spec(event_shape=(1, 8, 8)), **SMALL).sample(2, condition={"label": torch.tensor([0, 0])})
    with pytest.raises(DataError, match="shape"):
        vae.loss(make_batch(torch.zeros(2, 1, 9, 8, dtype=torch.long), torch.zeros(2)))
    with pytest.raises(DataError, match="binary"):
        ImageVAE(spec, decoder="bernoulli", **SMALL).prepare(halves(8))
    ImageVAE(Spec(event_shape=(1, 8, 8)), decoder="bernoulli", **SMALL).prepare(binary(8))   # binary: fine


def test_fit_sample_and_score_through_model():
    data = gm.datasets.load("digits")
    m = gm.Model("vae", modality="image", seed=0, batch_size=64, **SMALL)
    m.fit(data.train[:600], max_steps=40, verbose=False)
    assert m.likelihood == "bound"
    s = m.sample(5, condition={"label": 3})
    assert s.dtype == np.uint8 and s.shape[0] == 5 and s.shape[1:3] == (8, 8)
    lp = m.log_prob(data.test[:20])
    assert lp.shape == (20,) and np.isfinite(lp).all()
    assert 0 < -lp.mean() / (64 * math.log(2)) < 8                                  # better than uniform pixels
    np.testing.assert_array_equal(m.sample(4, seed=5), m.sample(4, seed=5))
