"""Image diffusion: U-Net shapes at even and odd sizes, the discretized Gaussian decoder's normalisation,
the variational bound against a closed form (the exact denoiser of a one-image data set), the stratified
estimate's unbiasedness, training on a two-class toy (loss falls, labels steer samples), DDIM against a
reference loop with and without classifier-free guidance, seeded sampling, rebuild from config,
bad options, and the end-to-end path through gm.Model."""
from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest
import torch
from torch.distributions import Normal

import genmodels as gm
from genmodels.core import Spec
from genmodels.errors import ConfigError, DataError
from genmodels.families.diffusion import normal_kl
from genmodels.families.image_diffusion import (
    ImageDiffusion,
    discretized_gaussian_log_prob,
)
from genmodels.nets.unet import UNet

torch.set_num_threads(1)
LOG_256 = math.log(256)


def spec(K: int = 2, shape: tuple[int, int, int] = (1, 8, 8)) -> Spec:
    return Spec(event_shape=shape, extra={"n_classes": K})


def small(K: int = 2, **kw) -> ImageDiffusion:
    torch.manual_seed(0)                                                 # repeatable weights
    kw = {"timesteps": 100, "channels": (8, 16), "bound_timesteps": None, **kw}
    return ImageDiffusion(spec(K), **kw)


def randomise_output(d: ImageDiffusion, scale: float = 0.1, seed: int = 0) -> ImageDiffusion:
    """Non-zero weights where the U-Net starts at zero, so its output depends on x_t, t and the label."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in d.net.named_parameters():
            if "conv2" in name or "conv_out" in name or "proj" in name:
                p.copy_(scale * torch.randn(p.shape, generator=g))
    return d


# ------------------------------------------------------------------ the network
@pytest.mark.parametrize("size, levels", [(8, (8, 4, 2)), (12, (12, 6, 3)), (7, (7, 4, 2))])
def test_unet_shapes(size, levels):
    net = UNet(3, 3, channels=(8, 16, 16), n_classes=4)
    seen = []
    for blocks in net.down:
        blocks[-1].register_forward_hook(lambda mod, inp, out: seen.append(out.shape[-1]))
    x = torch.randn(2, 3, size, size)
    out = net(x, torch.tensor([1, 700]), torch.tensor([0, 4]))           # label 4: the null class
    assert out.shape == x.shape and out.dtype == torch.float32
    assert tuple(seen) == levels
    assert torch.all(out == 0)                                          # zero-initialised output layer
    uncond = UNet(1, 2, channels=(8, 16))
    assert uncond(torch.randn(2, 1, size, size + 3), torch.tensor(5)).shape == (2, 2, size, size + 3)


def test_unet_reads_time_and_label():
    d = randomise_output(small(K=3))
    x = torch.randn(1, 1, 8, 8).expand(4, -1, -1, -1)
    out = d.predict(x, torch.tensor([10, 10, 90, 10]), torch.tensor([0, 1, 0, 3]))
    for j in (1, 2, 3):                                                  # label, timestep, null label matter
        assert not torch.allclose(out[0], out[j])


# ------------------------------------------------------------------ the bound
def test_discretized_gaussian_is_a_pmf():
    pixels = torch.arange(256)
    for mean, scale in [(0.0, 0.01), (0.3, 0.2), (-0.999, 0.003), (2.0, 0.5), (0.5, 1e-4), (-40.0, 0.01)]:
        lp = discretized_gaussian_log_prob(pixels, torch.tensor(mean), scale)
        assert torch.isfinite(lp).all() and (lp <= 0).all()
        assert abs(float(torch.logsumexp(lp, 0))) < 1e-9, (mean, scale)
    # interior bins against the plain CDF difference
    N, x = Normal(0.3, 0.2), pixels[1:-1].double() * 2 / 255 - 1
    ref = (N.cdf(x + 1 / 255) - N.cdf(x - 1 / 255)).log()
    torch.testing.assert_close(discretized_gaussian_log_prob(pixels[1:-1], torch.tensor(0.3), 0.2), ref)


def point_mass_model(image: torch.Tensor, T: int) -> ImageDiffusion:
    """A model whose v_hat is the exact denoiser of data that is always ``image`` (x0_hat = that image)."""
    d = small(K=0, timesteps=T)
    x_star = image.float() * 2 / 255 - 1

    def predict(x_t, t, label):
        ab = d.schedule.abar[t].float()[:, None, None, None]
        return (ab.sqrt() * x_t - x_star) / (1 - ab).sqrt()

    d.predict = predict
    return d


def test_bound_against_closed_form():
    """For one-image data and the exact denoiser every KL term is the variance mismatch alone and the
    decoder's mean is the image, so the bound is a closed form, the same for every draw."""
    g = torch.Generator().manual_seed(0)
    image = torch.randint(0, 256, (1, 1, 8, 8), generator=g).to(torch.uint8)
    image[0, 0, 0, :2] = torch.tensor([0, 255], dtype=torch.uint8)      # both edge bins
    T, D = 60, 64
    d = point_mass_model(image, T)
    s, x = d.schedule, image.double() * 2 / 255 - 1
    prior = -normal_kl(s.abar[T].sqrt() * x, 1 - s.abar[T], 0.0, 1.0).sum()
    var_mismatch = sum(0.5 * (math.log(s.beta[t] / s.post_var[t]) + s.post_var[t] / s.beta[t] - 1)
                       for t in range(2, T + 1))
    h = Normal(0.0, 1.0).cdf(torch.tensor(1 / 255) / s.beta[1].sqrt())  # P(bin) = Phi(h) - Phi(-h) inside
    edge = (image == 0) | (image == 255)
    decoder = torch.where(edge, h.log(), (2 * h - 1).log()).sum()
    closed = float(prior + decoder - D * var_mismatch)
    batch = {"pixels": image, "label": torch.tensor([-1])}
    lp = d.log_prob(batch, bound_timesteps=None) - D * LOG_256
    assert lp.dtype == torch.float64 and lp.shape == (1,)
    assert abs(float(lp) - closed) < 1e-4                                # float32 network arithmetic
    # the stratified estimate: noisy draw to draw, unbiased on average
    g = torch.Generator().manual_seed(0)
    est = torch.cat([d.log_prob(batch, generator=g, bound_timesteps=6) for _ in range(300)]) - D * LOG_256
    assert est.std() > 1.0
    assert abs(float(est.mean()) - closed) < 4 * float(est.std()) / math.sqrt(len(est))


def test_stratified_estimate_is_unbiased_for_a_network():
    d = randomise_output(small(K=2, timesteps=30))
    g = torch.Generator().manual_seed(1)
    batch = {"pixels": torch.randint(0, 256, (2, 1, 8, 8), generator=g).to(torch.uint8),
             "label": torch.tensor([1, -1])}
    full = torch.stack([d.log_prob(batch, generator=g, bound_timesteps=None) for _ in range(10)])      # (R, B)
    est = torch.stack([d.log_prob(batch, generator=g, bound_timesteps=4) for _ in range(50)])
    # every draw is a sum of log masses (<= 0) and minus KL divergences (<= 0): below log P <= 0 itself
    assert (torch.cat([full, est]) - 64 * LOG_256 <= 0).all()
    se = (full.var(0) / len(full) + est.var(0) / len(est)).sqrt()
    assert ((full.mean(0) - est.mean(0)).abs() < 4 * se).all(), (full.mean(0), est.mean(0), se)
    assert (est.std(0) > full.std(0)).all()                              # sampling timesteps costs variance


# ------------------------------------------------------------------ training on a two-class toy
def toy(n_per_class: int = 48, seed: int = 0) -> dict[str, torch.Tensor]:
    """Class 0: bright top half; class 1: bright bottom half; pixel noise on both."""
    g = torch.Generator().manual_seed(seed)
    top = torch.zeros(1, 8, 8)
    top[:, :4] = 1.0
    means = torch.stack([30 + 190 * top, 30 + 190 * (1 - top)])                 # (2, 1, 8, 8)
    label = torch.arange(2).repeat_interleave(n_per_class)
    pixels = (means[label] + 15 * torch.randn(2 * n_per_class, 1, 8, 8, generator=g)).clamp(0, 255).round()
    return {"pixels": pixels.to(torch.uint8), "label": label}


@pytest.fixture(scope="module")
def trained():
    torch.manual_seed(0)
    data = toy()
    d = ImageDiffusion(spec(2), timesteps=100, channels=(8, 16), bound_timesteps=None)
    d.prepare(data)
    d.eval()
    with torch.no_grad():
        before = float(d.loss(data))
    d.train()
    opt = torch.optim.AdamW(d.parameters(), lr=5e-3)
    for step in range(40):
        idx = torch.randint(0, len(data["label"]), (32,))
        loss = d.loss({k: v[idx] for k, v in data.items()})
        opt.zero_grad()
        loss.backward()
        opt.step()
    d.eval()
    with torch.no_grad():
        return d, data, before, float(d.loss(data))


def test_training_reduces_the_loss(trained):
    d, data, before, after = trained
    assert after < 0.6 * before, (before, after)
    with torch.no_grad():
        assert float(d.loss(data)) == after                              # validation draws are fixed


def test_labels_steer_the_samples(trained):
    d, data, _, _ = trained
    means = torch.stack([data["pixels"][data["label"] == k].float().mean(0) for k in range(2)]) / 255
    for k in range(2):
        x = d.sample(12, condition={"label": torch.full((12,), k)}, steps=20,
                     generator=torch.Generator().manual_seed(k))["x"]
        dist = ((x[:, None] - means[None]) ** 2).flatten(2).mean(2)      # (12, 2)
        assert (dist[:, k] < dist[:, 1 - k]).all(), dist


def test_unconditional_labels_follow_the_training_frequencies():
    d = small(K=3)
    label = torch.tensor([0] * 60 + [2] * 30 + [-1] * 10)
    d.prepare({"pixels": torch.zeros(100, 1, 8, 8, dtype=torch.uint8), "label": label})
    assert d.class_counts.tolist() == [60, 0, 30, 10]
    drawn = d._labels(4000, None, torch.Generator().manual_seed(0))
    share = torch.bincount(drawn, minlength=4).double() / 4000
    assert torch.allclose(share, torch.tensor([0.6, 0.0, 0.3, 0.1], dtype=torch.float64), atol=0.03)
    mixed = d._labels(4, {"label": torch.tensor([1, -1, 1, 2])}, torch.Generator().manual_seed(0))
    assert mixed[[0, 2, 3]].tolist() == [1, 1, 2] and mixed[1] in (0, 2, 3)


# ------------------------------------------------------------------ sampling
def reference_ddim(d: ImageDiffusion, noise: torch.Tensor, label: torch.Tensor, steps: int, w: float) -> torch.Tensor:
    """DDIM (eta = 0, Song et al. eq. 12) written out: x_s = sqrt(abar_s) x0_hat + sqrt(1 - abar_s) eps_hat,
    eps_hat from classifier-free guidance on the network's velocity."""
    T, abar = d.schedule.T, d.schedule.abar.double()
    grid = [round(T - i * T / steps) for i in range(steps + 1)]
    x = noise.double()
    null = torch.full_like(label, d.n_classes)
    for t, s in itertools.pairwise(grid):
        tt = torch.full(label.shape, t)
        v = (1 + w) * d.predict(x.float(), tt, label).double() - w * d.predict(x.float(), tt, null).double()
        eps = (1 - abar[t]).sqrt() * x + abar[t].sqrt() * v
        x0 = abar[t].sqrt() * x - (1 - abar[t]).sqrt() * v
        x = abar[s].sqrt() * x0 + (1 - abar[s]).sqrt() * eps
    return ((x.clamp(-1, 1) + 1) * 127.5 + 0.5) / 256


def test_ddim_and_guidance_against_reference(trained):
    d = trained[0]
    label = torch.tensor([0, 1, 0, 1])
    cond = {"label": label}
    noise = torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(3))
    plain = d.sample(4, condition=cond, steps=8, clip=False, generator=torch.Generator().manual_seed(3))["x"]
    guided = d.sample(4, condition=cond, steps=8, clip=False, guidance=2.0,
                      generator=torch.Generator().manual_seed(3))["x"]
    assert plain.dtype == torch.float32 and plain.shape == (4, 1, 8, 8)
    torch.testing.assert_close(plain.double(), reference_ddim(d, noise, label, 8, 0.0), atol=1e-4, rtol=0)
    torch.testing.assert_close(guided.double(), reference_ddim(d, noise, label, 8, 2.0), atol=1e-4, rtol=0)
    assert (plain - guided).abs().max() > 0.05                           # guidance changes the samples
    # guidance = 0 is plain conditional sampling: one network pass per step, the null label never read
    calls = []
    predict = d.predict
    d.predict = lambda x, t, y: calls.append(y.clone()) or predict(x, t, y)
    try:
        again = d.sample(4, condition=cond, steps=8, clip=False, guidance=0.0,
                         generator=torch.Generator().manual_seed(3))["x"]
    finally:
        del d.predict
    assert torch.equal(again, plain) and len(calls) == 8 and all(torch.equal(y, label) for y in calls)


@pytest.mark.parametrize("sampler", ["ddim", "ddpm"])
def test_seeded_sampling_is_repeatable(trained, sampler):
    d = trained[0]
    draw = lambda seed: d.sample(6, sampler=sampler, steps=10, guidance=1.0,
                                 generator=torch.Generator().manual_seed(seed))["x"]
    a, b, c = draw(0), draw(0), draw(1)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.dtype == torch.float32 and a.shape == (6, 1, 8, 8)
    assert a.min() >= 0.5 / 256 and a.max() <= 255.5 / 256                # the centres of pixels 0 and 255


def test_rebuild_from_config_gives_identical_samples(trained):
    d = trained[0]
    config = json.loads(json.dumps(d.config))
    twin = ImageDiffusion(spec(2), **config)
    twin.load_state_dict(d.state_dict())
    twin.eval()
    assert torch.equal(twin.class_counts, d.class_counts)
    out = [m.sample(3, steps=5, generator=torch.Generator().manual_seed(0))["x"] for m in (d, twin)]
    assert torch.equal(out[0], out[1])


# ------------------------------------------------------------------ bad input
@pytest.mark.parametrize("kw", [{"timesteps": 1}, {"schedule": "quadratic"}, {"channels": ()}, {"channels": (8, 0)},
                                {"res_blocks": 0}, {"p_uncond": 1.0}, {"p_uncond": -0.1}, {"guidance": -1.0},
                                {"sampler": "euler"}, {"sampling_steps": 0}, {"sampling_steps": 101},
                                {"bound_timesteps": 0}, {"dropout": 1.0}, {"attention": "yes"}])
def test_bad_hyperparameters(kw):
    with pytest.raises(ConfigError):
        small(**kw)


def test_bad_spec_and_batches():
    with pytest.raises(ConfigError):
        ImageDiffusion(Spec(n_continuous=4))
    with pytest.raises(ConfigError, match="without labels"):
        ImageDiffusion(spec(0), guidance=1.0)
    d = small(K=2, timesteps=10)
    with pytest.raises(DataError, match="shape"):
        d.loss({"pixels": torch.zeros(2, 1, 9, 8, dtype=torch.uint8), "label": torch.zeros(2, dtype=torch.long)})
    with pytest.raises(DataError, match="labels"):
        d.loss({"pixels": torch.zeros(2, 1, 8, 8, dtype=torch.uint8), "label": torch.tensor([0, 2])})


@pytest.mark.parametrize("kw", [{"guidance": -0.5}, {"guidance": float("nan")}, {"steps": 0}, {"steps": 101},
                                {"steps": 2.5}, {"sampler": "euler"}, {"clip": "no"},
                                {"condition": {"label": torch.tensor([0, 2])}},
                                {"condition": {"label": torch.tensor([0, 1, 1])}},
                                {"condition": {"label": torch.tensor([0.0, 1.0])}},
                                {"condition": {"colour": torch.tensor([0, 1])}}])
def test_bad_sampling_options(kw):
    with pytest.raises(ConfigError):
        small(K=2).sample(2, **kw)


def test_no_labels_no_condition():
    d = small(K=0, timesteps=10)
    with pytest.raises(ConfigError, match="without labels"):
        d.sample(2, condition={"label": torch.tensor([0, 0])})
    with pytest.raises(ConfigError, match="without labels"):
        d.sample(2, guidance=1.0)
    assert d.sample(2, steps=3)["x"].shape == (2, 1, 8, 8)


# ------------------------------------------------------------------ end to end
def test_model_end_to_end_on_digits():
    data = gm.datasets.load("digits")
    m = gm.Model("diffusion", modality="image", seed=0, channels=(8, 16), timesteps=50, bound_timesteps=5)
    m.fit(data.train[:200], max_steps=3, verbose=False)
    assert m.likelihood == "bound"
    a = m.sample(4, seed=0, condition={"label": 3}, guidance=1.0, steps=5)
    assert a.shape == (4, 8, 8) and a.dtype == np.uint8
    assert np.array_equal(a, m.sample(4, seed=0, condition={"label": 3}, guidance=1.0, steps=5))
    lp = m.log_prob(data.test[:3])
    assert lp.shape == (3,) and np.isfinite(lp).all() and (lp <= 0).all()   # a bound on log P(pixels) <= 0
    with pytest.raises(ConfigError):
        m.sample(2, guidance=-1.0)
    with pytest.raises(ConfigError):
        m.sample(2, temperature=0.5)
