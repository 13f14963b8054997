"""VAE family: its bounds against the exact marginal likelihood of a 1-D-latent model (by quadrature),
mixed-type data, seeded sampling and rebuild from config."""
from __future__ import annotations

import json
import math

import pytest
import torch

from genmodels.core import Spec
from genmodels.errors import ConfigError
from genmodels.families.vae import VAE

torch.set_num_threads(1)
LOG_2PI = math.log(2 * math.pi)


@pytest.fixture(scope="module")
def curve_vae():
    """A latent_dim=1 VAE trained briefly on a noisy parabola, x = (z, z^2 - 1) + noise."""
    torch.manual_seed(0)
    n = 2000
    z = torch.randn(n)
    x = torch.stack([z, z ** 2 - 1], dim=1) + 0.1 * torch.randn(n, 2)
    c = torch.zeros(n, 0, dtype=torch.long)
    vae = VAE(Spec(2, ()), latent_dim=1, hidden=(32, 32))
    opt = torch.optim.Adam(vae.parameters(), lr=3e-3)
    for _ in range(600):
        idx = torch.randint(0, n, (256,))
        loss = vae.loss({"x": x[idx], "c": c[idx]})
        opt.zero_grad()
        loss.backward()
        opt.step()
    vae.eval()
    return vae, {"x": x[:200], "c": c[:200]}, z[:200]


def _quadrature(vae: VAE, batch):
    """Exact log p(x) and the exact ELBO of each example, by a fine grid over the 1-D latent."""
    grid = torch.linspace(-8.0, 8.0, 8001)                               # (G,)
    dz = (grid[1] - grid[0]).item()
    with torch.no_grad():
        ll = vae.log_likelihood(grid[:, None, None].expand(-1, len(batch["x"]), 1), batch["x"], batch["c"])  # (G, B)
        log_pz = (-0.5 * grid ** 2 - 0.5 * LOG_2PI)[:, None]             # (G, 1)
        exact = torch.logsumexp(ll + log_pz, dim=0) + math.log(dz)       # (B,)
        mu, log_std = vae.encode(batch["x"], batch["c"])                 # (B, 1)
        log_q = -0.5 * ((grid[:, None] - mu[:, 0]) / log_std[:, 0].exp()) ** 2 - log_std[:, 0] - 0.5 * LOG_2PI
        q_mass = log_q.exp().sum(dim=0) * dz
        w = log_q.softmax(dim=0)                                         # q on the grid, normalised
        elbo = (w * (ll + log_pz - log_q)).sum(dim=0)                    # (B,)
    assert torch.allclose(q_mass, torch.ones_like(q_mass), atol=1e-3), "grid does not resolve q"
    return exact, elbo


def test_bounds_against_exact_marginal_by_quadrature(curve_vae):
    vae, batch, z = curve_vae
    exact, elbo_quad = _quadrature(vae, batch)
    # Jensen: the ELBO never exceeds log p(x), example by example.
    assert (elbo_quad <= exact + 1e-4).all()
    assert (exact - elbo_quad).mean() > 0.01                             # a real gap, so the checks bite
    torch.manual_seed(1)
    with torch.no_grad():
        # The module's Monte Carlo ELBO (analytic KL) agrees with the quadrature ELBO.
        elbo_mc = vae.elbo(batch, n_samples=4000)
        assert abs(elbo_mc.mean() - elbo_quad.mean()) < 0.01
        # IWAE (the log_prob) is a lower bound in expectation and tighter than the ELBO.
        iw = vae.log_prob(batch)
        assert iw.shape == (200,)
        assert iw.mean() <= exact.mean() + 0.02
        assert iw.mean() >= elbo_quad.mean()
        # With many samples it converges to log p(x) (on the bulk, where q is a decent proposal).
        bulk = z.abs() < 2
        sub = {"x": batch["x"][bulk], "c": batch["c"][bulk]}
        iw_many = vae.iwae(sub, n_samples=5000)
    gap = (iw_many - exact[bulk]).abs().mean()
    assert gap < 0.05, gap


def test_random_vae_bounds_by_quadrature():
    """Same checks on an untrained model: the bounds do not depend on training."""
    torch.manual_seed(3)
    vae = VAE(Spec(1, (3,)), latent_dim=1, hidden=(16,))
    batch = {"x": torch.randn(100, 1), "c": torch.randint(0, 3, (100, 1))}
    exact, elbo_quad = _quadrature(vae, batch)
    assert (elbo_quad <= exact + 1e-4).all()
    with torch.no_grad():
        iw_many = vae.iwae(batch, n_samples=5000)
    assert (iw_many - exact).abs().mean() < 0.05
    assert iw_many.mean() <= exact.mean() + 0.01


def test_chunked_iwae_equals_unchunked():
    """Chunking over importance samples (for memory) must not change the bound."""
    vae = VAE(Spec(2, (2,)), latent_dim=3, hidden=(16,))
    batch = {"x": torch.randn(2 ** 14, 2), "c": torch.randint(0, 2, (2 ** 14, 1))}   # forces chunks of 2
    torch.manual_seed(0)
    with torch.no_grad():
        chunked = vae.iwae(batch, n_samples=5)
    # Redo by hand in one piece with the same noise stream.
    torch.manual_seed(0)
    with torch.no_grad():
        mu, log_std = vae.encode(batch["x"], batch["c"])
        eps = torch.cat([torch.randn(2, *mu.shape), torch.randn(2, *mu.shape), torch.randn(1, *mu.shape)])
        zs = mu + log_std.exp() * eps
        log_w = vae.log_likelihood(zs, batch["x"], batch["c"]) + (-0.5 * zs ** 2).sum(-1) \
            - (-0.5 * eps ** 2 - log_std).sum(-1)
        ref = torch.logsumexp(log_w, 0) - math.log(5)
    torch.testing.assert_close(chunked, ref, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("spec", [Spec(2, (3, 2)), Spec(1, ()), Spec(0, (4, 2)), Spec(3, ()), Spec(1, (1,))])
def test_mixed_types_sampling_and_rebuild(spec):
    torch.manual_seed(0)
    vae = VAE(spec, latent_dim=2, hidden=(16, 16), iw_samples=8)
    s1 = vae.sample(40, generator=torch.Generator().manual_seed(5))
    s2 = vae.sample(40, generator=torch.Generator().manual_seed(5))
    assert torch.equal(s1["x"], s2["x"]) and torch.equal(s1["c"], s2["c"])
    assert s1["x"].shape == (40, spec.n_continuous) and s1["x"].dtype == torch.float32
    assert s1["c"].shape == (40, len(spec.cardinalities)) and s1["c"].dtype == torch.long
    for k, m in enumerate(spec.cardinalities):
        assert 0 <= s1["c"][:, k].min() and s1["c"][:, k].max() < m
    # A few training steps on its own samples: loss is finite and goes down.
    opt = torch.optim.Adam(vae.parameters(), lr=1e-2)
    first = vae.loss(s1)
    for _ in range(30):
        loss = vae.loss(s1)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert torch.isfinite(first) and vae.loss(s1) < first
    torch.manual_seed(1)
    lp = vae.log_prob(s1)
    assert lp.shape == (40,) and torch.isfinite(lp).all()
    # Rebuild from config (JSON round trip) + state_dict: same bound under the same global seed, same samples.
    rebuilt = VAE(spec, **json.loads(json.dumps(vae.config)))
    rebuilt.load_state_dict(vae.state_dict())
    torch.manual_seed(1)
    assert torch.equal(rebuilt.log_prob(s1), lp)
    s3 = vae.sample(40, generator=torch.Generator().manual_seed(5))
    s4 = rebuilt.sample(40, generator=torch.Generator().manual_seed(5))
    assert torch.equal(s3["x"], s4["x"]) and torch.equal(s3["c"], s4["c"])


def test_decoder_scale_is_clamped():
    vae = VAE(Spec(2, ()), latent_dim=2, hidden=(8,))
    for raw, lo, hi in [(-100.0, -6.0 - 1e-3, -5.9), (100.0, 2.9, 3.0 + 1e-3), (0.0, -0.1, 0.1)]:
        with torch.no_grad():
            vae.decoder[-1].weight.zero_()
            vae.decoder[-1].bias[2:].fill_(raw)
            _, log_scale, _ = vae.decode(torch.zeros(3, 2))
        assert lo <= log_scale.min() and log_scale.max() <= hi, (raw, log_scale)


@pytest.mark.parametrize("kwargs", [dict(latent_dim=0), dict(iw_samples=0), dict(hidden=()), dict(hidden=(8, 0)),
                                    dict(latent_dim=True), dict(iw_samples=1.5)])
def test_bad_hyperparameters_raise(kwargs):
    with pytest.raises(ConfigError):
        VAE(Spec(2, (3,)), **kwargs)


def test_bad_calls_raise():
    vae = VAE(Spec(1, (2,)), hidden=(8,))
    with pytest.raises(ConfigError, match="conditional"):
        vae.sample(3, condition={"x": torch.zeros(3, 1), "c": torch.zeros(3, 1, dtype=torch.long)})
    with pytest.raises(ConfigError):
        vae.sample(-1)
    with pytest.raises(ValueError):
        vae.log_prob({"x": torch.zeros(3, 2), "c": torch.zeros(3, 1, dtype=torch.long)})
