"""Every registered image family through the same checks, end to end through ``gm.Model``:
fit, sample (layout, dtype, repeatability, labels), log_prob (units, marginal over labels), save/load."""
from __future__ import annotations

import math

import numpy as np
import pytest

import genmodels as gm
from genmodels import registry
from genmodels.codecs.image import Images
from genmodels.errors import ConfigError, DataError, NoLikelihoodError

FAMILIES = registry.list_models("image")
# small networks so that a few steps take seconds on one thread
TINY = {"vae": {"latent_dim": 4}, "gan": {}, "autoregressive": {}, "flow": {}, "diffusion": {"timesteps": 50,
                                                                                              "bound_timesteps": 5}}
STEPS = {"batch_size": 16}


def _digits(n: int = 48) -> Images:
    d = gm.datasets.load("digits")
    keep = np.flatnonzero(d.train.labels < 3)[:n]                # three classes keep it small
    return d.train[keep]


@pytest.fixture(scope="module", params=FAMILIES)
def fitted(request):
    name = request.param
    data = _digits()
    m = gm.Model(name, seed=0, **TINY.get(name, {}), **STEPS).fit(data, verbose=False, validation=0.25, max_steps=3)
    return name, m, data


def test_sample_layout_and_repeatability(fitted):
    name, m, data = fitted
    s = m.sample(5, seed=3)
    assert s.shape == (5, 8, 8) and s.dtype == np.uint8
    assert (m.sample(5, seed=3) == s).all()
    c = m.sample(4, seed=3, condition={"label": 2})
    assert c.shape == (4, 8, 8)
    with pytest.raises(DataError, match="never seen"):
        m.sample(2, condition={"label": 7})


def test_log_prob_units(fitted):
    name, m, data = fitted
    if m.likelihood == "none":
        with pytest.raises(NoLikelihoodError):
            m.log_prob(data)
        return
    lp = m.log_prob(data[:6])
    assert lp.shape == (6,) and np.isfinite(lp).all()
    # nats per image in 8-bit units: a log-probability of 64 pixel values is below 0 and above
    # the uniform model's 64 log(1/256) by far less than an untrained model could miss
    assert (lp < 1e-6).all() or m.likelihood != "exact"
    assert (lp > 64 * math.log(1 / 256) * 3).all()
    assert m.likelihood in ("exact", "bound")
    unlabelled = m.log_prob(data.images[:6])           # the marginal over the three training classes
    assert unlabelled.shape == (6,) and np.isfinite(unlabelled).all()


def test_save_load_roundtrip(fitted, tmp_path):
    name, m, data = fitted
    m.save(tmp_path / name)
    m2 = gm.load(tmp_path / name)
    assert (m2.sample(3, seed=1) == m.sample(3, seed=1)).all()
    if m.likelihood != "none":
        assert np.allclose(m2.log_prob(data[:4]), m.log_prob(data[:4]), rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("name", FAMILIES)
def test_rgb_and_unlabelled(name):
    rgb = np.random.default_rng(0).integers(0, 256, (24, 8, 8, 3), dtype=np.uint8)
    m = gm.Model(name, seed=0, **TINY.get(name, {}), **STEPS).fit(rgb, verbose=False, validation=0, max_steps=3)
    s = m.sample(2, seed=0)
    assert s.shape == (2, 8, 8, 3) and s.dtype == np.uint8
    with pytest.raises(ConfigError, match="without labels"):
        m.sample(2, condition={"label": 0})
    with pytest.raises(DataError, match="RGB.*grayscale"):
        m.log_prob(rgb[:, :, :, 0]) if m.likelihood != "none" else m.codec_.encode(rgb[:, :, :, 0])
