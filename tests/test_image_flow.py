"""ImageFlow (multi-scale Glow): every layer's log-det and the whole map's against autograd Jacobians,
exact inversion, the unlabelled mixture, data-dependent init, training on 8x8 digits, class
conditioning, seeded sampling, rebuild from config and clear errors."""
from __future__ import annotations

import math

import pytest
import torch
from sklearn.datasets import load_digits

from genmodels.core import Spec
from genmodels.errors import ConfigError, DataError
from genmodels.families.image_flow import ImageFlow, max_levels
from genmodels.nets.glow import ActNorm, AffineCoupling, FlowStep, InvConv1x1, gaussian_log_prob, squeeze, unsqueeze

torch.set_num_threads(1)


def _spec(shape=(1, 8, 8), k=0) -> Spec:
    return Spec(event_shape=shape, extra={"n_classes": k})


def _perturb(module: torch.nn.Module, scale: float = 0.2, seed: int = 0) -> None:
    """Move every parameter off its (near-identity) initial value so no check is vacuous."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g, dtype=p.dtype))


def _digits(classes=None, seed: int = 0) -> dict[str, torch.Tensor]:
    """sklearn's 8x8 digits as 0..255 pixels, dequantized as the image codec does."""
    d = load_digits()
    pix = torch.tensor(d.images).round().mul(255.0 / 16.0).round().clamp(0, 255).to(torch.uint8)[:, None]
    label = torch.tensor(d.target, dtype=torch.long)
    if classes is not None:
        keep = torch.isin(label, torch.tensor(classes))
        pix, label = pix[keep], label[keep]
        label = torch.searchsorted(torch.tensor(sorted(classes)), label)      # relabel 0..len-1
    u = torch.rand(pix.shape, generator=torch.Generator().manual_seed(seed))
    return {"x": (pix.float() + u) / 256.0, "pixels": pix, "label": label,
            "log_w": torch.zeros(len(label), dtype=torch.float64)}


def _train(flow: ImageFlow, data: dict, steps: int, bs: int = 64, lr: float = 2e-3) -> list[float]:
    flow.prepare(data)
    opt = torch.optim.AdamW(flow.parameters(), lr=lr)
    g = torch.Generator().manual_seed(1)
    losses = []
    for _ in range(steps):
        idx = torch.randint(0, len(data["label"]), (bs,), generator=g)
        loss = flow.loss({k: v[idx] for k, v in data.items()})
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(flow.parameters(), 5.0)
        opt.step()
        losses.append(float(loss.detach()))
    return losses


def _slogdet(f, x: torch.Tensor) -> torch.Tensor:
    """log |det J| of f at one example x (C, H, W), f mapping (1, C, H, W) to a flat (D,) vector."""
    J = torch.autograd.functional.jacobian(lambda v: f(v.view(1, *x.shape)), x.reshape(-1))
    return torch.linalg.slogdet(J).logabsdet


@pytest.mark.parametrize("make,shape,k", [
    (lambda: ActNorm(4), (4, 2, 3), 0),
    (lambda: InvConv1x1(4), (4, 2, 3), 0),
    (lambda: AffineCoupling(4, 8, "channel"), (4, 2, 3), 0),
    (lambda: AffineCoupling(3, 8, "channel", n_classes=3), (3, 2, 2), 3),
    (lambda: AffineCoupling(1, 8, "checkerboard0"), (1, 3, 3), 0),
    (lambda: AffineCoupling(2, 8, "checkerboard1", n_classes=2), (2, 3, 2), 2),
    (lambda: FlowStep(4, 8, n_classes=3), (4, 2, 2), 3),
])
def test_each_layer_log_det_matches_jacobian_and_inverts(make, shape, k):
    torch.manual_seed(0)
    layer = make().double()
    _perturb(layer)
    x = torch.randn(3, *shape, dtype=torch.float64)
    label = torch.arange(3) % k if k else None
    args = (lambda i=None: ()) if label is None else (lambda i=None: (label if i is None else label[i:i + 1],))
    y, ld = layer(x, *args())
    assert y.shape == x.shape and ld.shape == (3,)
    for i in range(3):
        ref = _slogdet(lambda v: layer(v, *args(i))[0].reshape(-1), x[i])
        torch.testing.assert_close(ld[i], ref, atol=1e-8, rtol=1e-8)
    assert ld.abs().max() > 1e-2                                        # not the identity
    torch.testing.assert_close(layer.inverse(y, *args()), x, atol=1e-10, rtol=0)
    if k:                                                               # the label changes the map
        other = (label + 1) % k
        assert (layer(x, other)[0] - y).abs().max() > 1e-3


def test_squeeze_is_a_permutation_and_inverts():
    x = torch.arange(2 * 3 * 4 * 6, dtype=torch.float32).view(2, 3, 4, 6)
    s = squeeze(x)
    assert s.shape == (2, 12, 2, 3)
    assert torch.equal(s.flatten(1).sort(1).values, x.flatten(1).sort(1).values)
    assert torch.equal(s[0, :4, 0, 0], torch.tensor([0.0, 1.0, 6.0, 7.0]))      # one 2x2 block -> 4 channels
    assert torch.equal(unsqueeze(s), x)


@pytest.mark.parametrize("shape,levels,alpha", [((1, 8, 8), 2, 1e-6), ((3, 4, 4), 1, 0.05), ((1, 5, 5), 1, 0.2)])
def test_change_of_variables_matches_jacobian_of_whole_map(shape, levels, alpha):
    """log_prob = log N(z; prior) + log|det dz/dx| with the determinant from autograd (logit included)."""
    torch.manual_seed(0)
    flow = ImageFlow(_spec(shape, k=2), depth=2, hidden=8, alpha=alpha).double()
    assert flow.n_levels == levels and flow.squeezes == (shape != (1, 5, 5))
    _perturb(flow, 0.1)
    x = torch.rand(3, *shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    label = torch.tensor([0, 1, 1])
    lp = flow.log_prob({"x": x, "label": label})
    top, zs, hs, log_det = flow.transform(x, label)

    def flat(v: torch.Tensor, i: int) -> torch.Tensor:
        t, z, _, _ = flow.transform(v, label[i:i + 1])
        return torch.cat([t.reshape(-1)] + [zz.reshape(-1) for zz in z])

    ref_ld = torch.stack([_slogdet(lambda v: flat(v, i), x[i]) for i in range(3)])
    torch.testing.assert_close(log_det, ref_ld, atol=1e-7, rtol=1e-7)
    prior = flow._prior_log_prob(top, zs, hs, label)
    torch.testing.assert_close(lp, prior + ref_ld, atol=1e-7, rtol=1e-7)
    # the Gaussian is the normalised one
    m, s = torch.randn(2, 3, 2, 2, dtype=torch.float64), torch.randn(2, 3, 2, 2, dtype=torch.float64)
    z = torch.randn(2, 3, 2, 2, dtype=torch.float64)
    ref = torch.distributions.Normal(m, s.exp()).log_prob(z).flatten(1).sum(1)
    torch.testing.assert_close(gaussian_log_prob(z, m, s), ref)


@pytest.mark.parametrize("shape,k", [((1, 8, 8), 0), ((3, 8, 8), 3), ((1, 28, 28), 10), ((1, 9, 9), 2)])
def test_inverse_of_forward_is_exact(shape, k):
    torch.manual_seed(0)
    flow = ImageFlow(_spec(shape, k), depth=3, hidden=16)
    x = torch.rand(4, *shape, generator=torch.Generator().manual_seed(2))
    x[0, 0, 0, :2] = torch.tensor([0.0, 1.0])                            # the edges of [0, 1]
    label = torch.arange(4) % k if k else None
    flow.initialize(x, label)
    _perturb(flow, 0.05)
    top, zs, _, _ = flow.transform(x, label)
    assert top.numel() + sum(z.numel() for z in zs) == x.numel()
    torch.testing.assert_close(flow.inverse(top, label, lambda level, h: zs[level]), x, atol=1e-4, rtol=0)


def test_levels_follow_the_image_size():
    assert [max_levels(h, w) for h, w in [(8, 8), (28, 28), (32, 32), (9, 9), (8, 12), (4, 4)]] == [2, 2, 4, 0, 2, 1]
    assert ImageFlow(_spec((1, 28, 28)), depth=1, hidden=4).top.shape == (8, 7, 7)
    assert ImageFlow(_spec((3, 32, 32)), depth=1, hidden=4).n_levels == 3            # auto caps at 3
    assert ImageFlow(_spec((1, 8, 8)), levels=1, depth=1, hidden=4).top.shape == (4, 4, 4)


def test_unlabelled_images_get_the_exact_class_mixture():
    torch.manual_seed(0)
    flow = ImageFlow(_spec(k=3), depth=2, hidden=8)
    data = _digits(classes=[0, 1, 2])
    flow.prepare(data)
    counts = torch.bincount(data["label"], minlength=3).float()
    torch.testing.assert_close(flow.class_log_prior.exp(), (counts + 1) / (counts.sum() + 3))
    _perturb(flow, 0.1)                                       # make the classes' priors differ
    x = data["x"][:5]
    per = torch.stack([flow.log_prob({"x": x, "label": torch.full((5,), k)}) for k in range(3)], 1)
    mix = flow.log_prob({"x": x, "label": torch.full((5,), -1)})
    torch.testing.assert_close(mix, torch.logsumexp(per + flow.class_log_prior, 1))
    assert (per.max(1).values - per.min(1).values).min() > 1e-3
    both = flow.log_prob({"x": x, "label": torch.tensor([0, -1, 2, -1, 1])})   # mixed batch, row by row
    torch.testing.assert_close(both, torch.stack([per[0, 0], mix[1], per[2, 2], mix[3], per[4, 1]]))


def test_actnorm_data_init_standardises_and_survives_reload():
    torch.manual_seed(0)
    data = _digits()
    flow = ImageFlow(_spec(k=10), depth=2, hidden=8)
    flow.prepare(data)
    assert bool(flow.initialized)
    y = squeeze(flow._logit(data["x"][:512])[0])
    out, _ = flow.flows[0][0].norm(y)                                     # first ActNorm's output
    torch.testing.assert_close(out.mean((0, 2, 3)), torch.zeros(4), atol=1e-4, rtol=0)
    torch.testing.assert_close(out.std((0, 2, 3), unbiased=False), torch.ones(4), atol=1e-3, rtol=0)
    again = ImageFlow(_spec(k=10), **flow.config)                                # rebuild from config
    again.load_state_dict(flow.state_dict())
    before = {k: v.clone() for k, v in again.state_dict().items()}
    again.loss({"x": data["x"][-64:], "label": data["label"][-64:]})              # must not re-initialise
    assert all(torch.equal(before[k], v) for k, v in again.state_dict().items())
    b = {"x": data["x"][:8], "label": data["label"][:8]}
    torch.testing.assert_close(again.log_prob(b), flow.log_prob(b))


def test_training_reduces_the_loss_on_digits():
    torch.manual_seed(0)
    data = _digits()
    flow = ImageFlow(_spec(k=10), depth=2, hidden=16)
    held_out = {"x": data["x"][-256:], "label": data["label"][-256:]}
    train = {k: v[:-256] for k, v in data.items()}

    def bits_per_dim() -> float:                                           # 8-bit units, held-out images
        with torch.no_grad():
            lp = flow.log_prob(held_out)
        assert torch.isfinite(lp).all()
        return float(-(lp - 64 * math.log(256)).mean() / (64 * math.log(2)))

    flow.prepare(train)
    before = bits_per_dim()
    losses = _train(flow, train, steps=40, lr=5e-3)
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    assert last < first - 0.3, (first, last)                              # nats per dimension
    after = bits_per_dim()
    assert after < before - 0.5 and after < 5.0, (before, after)          # uniform noise would be 8


def test_labels_condition_the_samples():
    """Trained briefly on digits 0 and 1, samples asked for a class are nearer that class's mean image."""
    torch.manual_seed(0)
    data = _digits(classes=[0, 1])
    flow = ImageFlow(_spec(k=2), depth=2, hidden=16)
    _train(flow, data, steps=50, lr=1e-2)
    with torch.no_grad():                                  # the class-conditional densities classify
        per = torch.stack([flow.log_prob({"x": data["x"], "label": torch.full_like(data["label"], k)})
                           for k in range(2)], 1)
    assert (per.argmax(1) == data["label"]).float().mean() > 0.9
    means = torch.stack([data["x"][data["label"] == k].mean(0) for k in range(2)])   # (2, 1, 8, 8)
    g = torch.Generator().manual_seed(0)
    for k in range(2):
        x = flow.sample(64, condition={"label": torch.full((64,), k)}, generator=g, temperature=0.7)["x"]
        d = ((x.mean(0)[None] - means) ** 2).flatten(1).sum(1)                         # (2,)
        assert d[k] < 0.5 * d[1 - k], (k, d)


def test_sampling_is_repeatable_and_well_formed():
    torch.manual_seed(0)
    flow = ImageFlow(_spec((3, 8, 8), k=4), depth=2, hidden=8)
    _perturb(flow, 0.05)
    a = flow.sample(6, generator=torch.Generator().manual_seed(5))["x"]
    b = flow.sample(6, generator=torch.Generator().manual_seed(5))["x"]
    c = flow.sample(6, generator=torch.Generator().manual_seed(6))["x"]
    assert a.shape == (6, 3, 8, 8) and a.dtype == torch.float32
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.min() >= 0 and a.max() <= 1
    cold = flow.sample(2, condition={"label": torch.tensor([1, 1])}, generator=torch.Generator().manual_seed(0),
                       temperature=0.0)["x"]
    torch.testing.assert_close(cold[0], cold[1])                           # temperature 0: the prior's mode
    one = flow.sample(3, condition={"label": torch.tensor(2)}, generator=torch.Generator().manual_seed(0))["x"]
    assert one.shape == (3, 3, 8, 8)                                       # one label for every row


def test_bad_hyperparameters_and_conditions_raise():
    for kw in [{"levels": 3}, {"levels": 0}, {"depth": 0}, {"hidden": 0}, {"alpha": 0.5}, {"alpha": 0.0},
               {"alpha": float("nan")}, {"depth": 2.5}]:
        with pytest.raises(ConfigError):
            ImageFlow(_spec(), **kw)
    with pytest.raises(ConfigError, match="levels"):
        ImageFlow(_spec((1, 9, 9)), levels=2)
    for spec in [Spec(event_shape=(8, 8)), Spec(event_shape=(1, 8, 8), extra={"n_classes": -1})]:
        with pytest.raises(ConfigError):
            ImageFlow(spec)
    flow = ImageFlow(_spec(k=0), depth=1, hidden=4)
    with pytest.raises(ConfigError, match="without labels"):
        flow.sample(2, condition={"label": torch.tensor([0, 0])})
    flow = ImageFlow(_spec(k=3), depth=1, hidden=4)
    for cond in [{"label": torch.tensor([3, 0])}, {"label": torch.tensor([0, 1, 2])}, {"label": torch.tensor([0.5, 1.0])},
                 {"x": torch.zeros(2, 1, 8, 8)}]:
        with pytest.raises(ConfigError):
            flow.sample(2, condition=cond)
    with pytest.raises(ConfigError):
        flow.sample(2, temperature=-1.0)
    with pytest.raises(ConfigError):
        flow.sample(0)
    with pytest.raises(DataError, match="wrong size"):
        flow.log_prob({"x": torch.rand(2, 1, 9, 9)})
    with pytest.raises(DataError):
        flow.log_prob({"x": torch.rand(2, 1, 8, 8), "label": torch.tensor([0, 3])})
    with pytest.raises(DataError):
        flow.log_prob({"x": torch.rand(2, 1, 8, 8) + 1.0})
