"""The image gan family and the conv blocks it shares with the image vae: sizes, label plumbing, the
hinge loss by hand, a short training run on two very different classes (the validation metric falls,
the EMA generator differs from the raw one and is what samples, labels condition), errors, and one
short fit through Model on the digits."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import genmodels as gm
from genmodels.core import Spec
from genmodels.errors import ConfigError, DataError, NoLikelihoodError
from genmodels.families.image_gan import ImageGAN
from genmodels.nets.conv import (
    CondGroupNorm,
    ConvDecoder,
    ConvEncoder,
    check_label_condition,
    class_counts,
    down_sizes,
    draw_labels,
)

torch.set_num_threads(1)

SMALL = {"latent_dim": 8, "g_channels": (8, 16), "d_channels": (8, 16), "embed_dim": 4}


def make_batch(pixels: torch.Tensor, label: torch.Tensor, seed: int = 0) -> dict[str, torch.Tensor]:
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
    mean = torch.where(label[:, None, None] == 0, top, 1 - top) * 200 + 25
    pixels = (mean + 20 * torch.randn(n, size, size, generator=g)).round().clamp(0, 255).long()
    return make_batch(pixels[:, None], label, seed)


def build(shape: tuple[int, int, int] = (1, 8, 8), K: int = 2, **kw) -> ImageGAN:
    torch.manual_seed(0)
    return ImageGAN(Spec(event_shape=shape, extra={"n_classes": K}), **{**SMALL, **kw})


# ---------------------------------------------------------------- conv blocks and labels
@pytest.mark.parametrize("size", [(8, 8), (12, 12), (13, 11), (28, 28)])
def test_conv_blocks_handle_even_and_odd_sizes(size):
    assert down_sizes(*size, 2)[-1] == ((size[0] + 3) // 4, (size[1] + 3) // 4)
    enc = ConvEncoder(3, size, (8, 16))
    h = enc(torch.zeros(2, 3, *size))
    assert tuple(h.shape[1:]) == enc.out_shape == (16, *down_sizes(*size, 2)[-1])
    dec = ConvDecoder(5, 2, size, (8, 16), cond_dim=4)
    assert dec(torch.randn(2, 5), torch.randn(2, 4)).shape == (2, 2, *size)


def test_conditional_norm_starts_as_the_plain_norm_and_then_depends_on_y():
    norm = CondGroupNorm(16, cond_dim=4)
    h, y = torch.randn(3, 16, 5, 5), torch.randn(3, 4)
    torch.testing.assert_close(norm(h, y), F.group_norm(h, 8, norm.norm.weight, norm.norm.bias))
    torch.nn.init.normal_(norm.cond.weight)
    assert not torch.allclose(norm(h, y), norm(h, -y))


def test_label_counts_draws_and_conditions():
    counts = class_counts(torch.tensor([0, 0, 0, 2, -1, -1, 2, 0]), 3)
    assert counts.tolist() == [4.0, 0.0, 2.0, 2.0]                                  # last: unlabelled
    labels = draw_labels(counts, 4000, torch.Generator().manual_seed(0), torch.device("cpu"))
    freq = [float((labels == k).float().mean()) for k in (0, 1, 2, -1)]
    np.testing.assert_allclose(freq, [0.5, 0.0, 0.25, 0.25], atol=0.03)
    one = check_label_condition({"label": torch.tensor([2])}, 3, 3, "x", torch.device("cpu"))
    assert one.tolist() == [2, 2, 2]                                               # one label for all n
    with pytest.raises(ConfigError, match="without labels"):
        check_label_condition({"label": torch.tensor([0])}, 1, 0, "x", torch.device("cpu"))
    with pytest.raises(ConfigError, match="label"):
        check_label_condition({"colour": torch.tensor([0])}, 1, 3, "x", torch.device("cpu"))
    for bad in (torch.tensor([3]), torch.tensor([-1]), torch.tensor([0.5]), torch.tensor([0, 1])):
        with pytest.raises(DataError):
            check_label_condition({"label": bad}, 3, 3, "x", torch.device("cpu"))


# ---------------------------------------------------------------- the module
@pytest.mark.parametrize("shape", [(1, 8, 8), (1, 12, 12), (3, 9, 11)])
@pytest.mark.parametrize("K", [0, 3])
def test_shapes_steps_and_no_likelihood(shape, K):
    gan = build(shape, K)
    out = gan.sample(5, generator=torch.Generator().manual_seed(0))
    assert set(out) == {"x"} and out["x"].shape == (5, *shape) and out["x"].dtype == torch.float32
    assert 0 <= float(out["x"].min()) and float(out["x"].max()) <= 1
    label = torch.tensor([0, 1, 2, -1, 0]) if K else torch.full((5,), -1)
    batch = make_batch((out["x"] * 255).round().long(), label)
    info = gan.training_step(batch, 0, gan.configure_optimizers(1e-3, 0.0))
    assert set(info) >= {"loss", "d_loss"} and all(np.isfinite(v) for v in info.values())
    val = gan.loss(batch)
    assert val.ndim == 0 and float(val) >= 0
    with pytest.raises(NoLikelihoodError):
        gan.log_prob(batch)


def test_hinge_loss_matches_the_formula():
    gan = build()
    data = halves(16)
    twin = copy.deepcopy(gan)                                  # same weights and spectral-norm vectors
    torch.manual_seed(3)
    d_loss = gan.training_step(data, 0, gan.configure_optimizers(1e-3, 0.0))["d_loss"]
    torch.manual_seed(3)
    with torch.no_grad():
        fake = twin.generator(torch.randn(16, 8), data["label"])
        d_real, d_fake = twin.discriminator(data["x"], data["label"]), twin.discriminator(fake, data["label"])
    expected = F.relu(1 - d_real).mean() + F.relu(1 + d_fake).mean()
    assert d_loss == pytest.approx(float(expected), rel=1e-5)


@pytest.mark.parametrize("loss", ["ns", "wgan-gp"])
def test_other_losses_step(loss):
    gan = build(loss=loss, n_critic=2)
    info = gan.training_step(halves(16), 0, gan.configure_optimizers(1e-3, 0.0))
    assert np.isfinite(info["d_loss"]) and np.isfinite(info["loss"])


@pytest.fixture(scope="module")
def trained() -> tuple[ImageGAN, dict, float]:
    """A small GAN trained for 120 steps on the two classes; its validation metric before training."""
    data, val = halves(512), halves(256, seed=7)
    gan = build(g_lr=2e-3, d_lr=2e-3, ema_decay=0.99)
    gan.prepare(data)
    before = float(gan.loss(val))
    opts = gan.configure_optimizers(1e-3, 0.0)
    torch.manual_seed(0)
    for step in range(120):
        idx = torch.randint(512, (32,))
        gan.training_step({k: v[idx] for k, v in data.items()}, step, opts)
    return gan, val, before


def test_training_lowers_the_validation_metric(trained):
    gan, val, before = trained
    after = float(gan.loss(val))
    assert after < 0.5 * before, (before, after)
    # the metric is a fixed-seed distance: the same weights score the same
    assert float(gan.loss(val)) == after


def test_ema_generator_differs_from_the_raw_one_and_samples(trained):
    gan, _, _ = trained
    assert int(gan.ema_updates) == 120
    diffs = [float((a - b).detach().abs().max())
             for a, b in zip(gan.generator_ema.parameters(), gan.generator.parameters())]
    assert max(diffs) > 1e-3
    n, g = 6, torch.Generator().manual_seed(1)
    out = gan.sample(n, condition={"label": torch.tensor([0, 1, 0, 1, 0, 1])}, generator=g)["x"]
    z = torch.randn(n, 8, generator=torch.Generator().manual_seed(1))
    by_hand = gan.generator_ema(z, torch.tensor([0, 1, 0, 1, 0, 1]))
    torch.testing.assert_close(out, by_hand)
    raw = gan.sample(n, condition={"label": torch.tensor([0, 1, 0, 1, 0, 1])},
                     generator=torch.Generator().manual_seed(1), ema=False)["x"]
    assert not torch.allclose(out, raw)


def test_sampling_is_repeatable_with_the_same_generator(trained):
    gan, _, _ = trained
    a = gan.sample(5, generator=torch.Generator().manual_seed(3))["x"]
    b = gan.sample(5, generator=torch.Generator().manual_seed(3))["x"]
    c = gan.sample(5, generator=torch.Generator().manual_seed(4))["x"]
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_labels_condition_the_samples(trained):
    gan, val, _ = trained
    means = [val["x"][val["label"] == k].mean(0) for k in (0, 1)]
    g = torch.Generator().manual_seed(0)
    for k in (0, 1):
        s = gan.sample(64, condition={"label": torch.full((64,), k)}, generator=g)["x"].mean(0)
        own, other = float((s - means[k]).abs().mean()), float((s - means[1 - k]).abs().mean())
        assert own < 0.5 * other, (k, own, other)
    assert gan.class_counts.tolist() == [256.0, 256.0, 0.0]                        # kept by prepare
    s = gan.sample(200, generator=g)["x"]                                          # labels drawn 50/50
    top = s[:, 0, :4].mean((1, 2)) > s[:, 0, 4:].mean((1, 2))
    assert 0.3 < float(top.float().mean()) < 0.7


# ---------------------------------------------------------------- errors and Model
def test_bad_hyperparameters_and_conditions_raise():
    for bad in ({"loss": "bce"}, {"n_critic": 0}, {"ema_decay": 1.5}, {"g_channels": ()}, {"d_lr": 0.0},
                {"latent_dim": -1}, {"spectral_norm": "yes"}, {"beta1": 1.0}):
        with pytest.raises(ConfigError):
            build(**bad)
    with pytest.raises(ConfigError, match="event_shape"):
        ImageGAN(Spec(n_continuous=3))
    with pytest.raises(ConfigError, match="without labels"):
        build(K=0).sample(2, condition={"label": torch.tensor([0, 0])})
    gan = build()
    with pytest.raises(DataError):
        gan.sample(2, condition={"label": torch.tensor([0, 5])})
    with pytest.raises(ConfigError):
        gan.sample(2, ema="no")
    with pytest.raises(DataError, match="shape"):
        gan.loss(make_batch(torch.zeros(2, 1, 8, 9, dtype=torch.long), torch.zeros(2)))


def test_fit_and_sample_through_model():
    data = gm.datasets.load("digits")
    m = gm.Model("gan", modality="image", seed=0, batch_size=32, **SMALL)
    m.fit(data.train[:400], max_steps=30, verbose=False)
    assert m.likelihood == "none"
    s = m.sample(6, condition={"label": 3})
    assert s.dtype == np.uint8 and s.shape[0] == 6 and s.shape[1:3] == (8, 8)
    np.testing.assert_array_equal(m.sample(4, seed=5), m.sample(4, seed=5))
    assert all(np.isfinite(h["val"]) for h in m.history_)                         # the validation metric
    with pytest.raises(NoLikelihoodError):
        m.log_prob(data.test[:5])
