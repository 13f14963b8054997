"""One contract, every registered family (as zuko's test_flows and scikit-learn's check_estimator).

Each family is fitted on a tiny mixed table (continuous, integer, categorical, boolean, datetime,
missing values) and must: sample the training schema, give finite (n,) float64 log_prob, survive
save/load bit for bit, repeat itself under a seed, and refuse bad input with the right error.
"""
import json

import numpy as np
import pandas as pd
import pytest

import genmodels as gm
from genmodels import registry
from genmodels.errors import CheckpointError, ConfigError, DataError, NoLikelihoodError, NotFittedError

FAMILIES = registry.list_models("tabular")
FAST = {"max_steps": 40}                       # gradient families: a few steps are enough for the contract
TINY = {"flow": {"transforms": 2, "hidden": [32, 32]}, "vae": {"hidden": [32, 32], "iw_samples": 8},
        "autoregressive": {"hidden": [32, 32], "n_mixtures": 4},
        "diffusion": {"hidden": [32, 32], "time_dim": 16, "timesteps": 50},
        "gmm": {"max_components": 3},
        "gan": {"hidden": [32, 32], "critic_hidden": [32, 32], "embedding_dim": 16, "n_modes": 4, "pac": 4}}


def tiny_table(n: int = 120, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({
        "x": rng.normal(5.0, 2.0, n),
        "y": rng.normal(size=n) * 100 + 1000,
        "count": rng.poisson(3, n).astype("int64"),
        "colour": pd.array(rng.choice(["red", "green", "blue"], n), dtype="str"),
        "ok": rng.random(n) < 0.4,
        "when": pd.to_datetime("2025-03-01") + pd.to_timedelta(rng.integers(0, 86400 * 30, n), unit="s"),
    })
    df.loc[rng.random(n) < 0.15, "y"] = np.nan
    df.loc[rng.random(n) < 0.1, "colour"] = None
    return df


@pytest.fixture(scope="module")
def data() -> pd.DataFrame:
    return tiny_table()


@pytest.fixture(scope="module", params=FAMILIES)
def fitted(request, data):
    name = request.param
    model = gm.Model(name, seed=0, device="cpu", **TINY.get(name, {}))
    assert model.fit(data, verbose=False, **({} if registry.family(name).closed_form else FAST)) is model
    return model


def test_sample_has_training_schema(fitted, data):
    s = fitted.sample(300, seed=1)
    assert isinstance(s, pd.DataFrame) and list(s.columns) == list(data.columns)
    assert s.dtypes.tolist() == data.dtypes.tolist()
    assert set(s["colour"].dropna()) <= set(data["colour"].dropna())
    assert s["count"].between(data["count"].min(), data["count"].max()).all()
    assert s["x"].between(data["x"].min(), data["x"].max()).all()
    assert s["ok"].dtype == bool and s["count"].dtype == np.int64
    assert s["when"].between(data["when"].min(), data["when"].max()).all()


def test_log_prob_is_finite_float64_per_row(fitted, data):
    if fitted.likelihood == "none":                                # GANs: no likelihood, a clear error instead
        with pytest.raises(NoLikelihoodError, match="no likelihood"):
            fitted.log_prob(data)
        return
    lp = fitted.log_prob(data)
    assert lp.shape == (len(data),) and lp.dtype == np.float64 and np.isfinite(lp).all()
    assert fitted.likelihood in ("exact", "bound")
    # integers and missing numbers are dequantized: the codec demotes "exact" to "bound"
    assert fitted.likelihood == "bound" and fitted.codec_.bound_reasons
    np.testing.assert_array_equal(fitted.score_samples(data), lp)
    assert fitted.score(data) == pytest.approx(lp.mean())
    np.testing.assert_array_equal(fitted.log_prob(data), lp)       # repeatable, estimators included


def test_save_load_identical(fitted, data, tmp_path):
    path = fitted.save(tmp_path / "m")
    back = gm.load(path, device="cpu")
    if fitted.likelihood != "none":
        np.testing.assert_array_equal(back.log_prob(data), fitted.log_prob(data))
    pd.testing.assert_frame_equal(back.sample(50, seed=3), fitted.sample(50, seed=3))
    assert back.likelihood == fitted.likelihood
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    assert cfg["family"] == fitted.family and not list((tmp_path / "m").glob("*.pkl"))


def test_seed_repeats_and_varies(fitted):
    a, b, c = fitted.sample(40, seed=7), fitted.sample(40, seed=7), fitted.sample(40, seed=8)
    pd.testing.assert_frame_equal(a, b)
    assert not a.equals(c)


def test_bad_input_raises(fitted, data, tmp_path):
    with pytest.raises(ConfigError, match="positive"):
        fitted.sample(0)
    with pytest.raises(ConfigError, match="positive"):
        fitted.sample(-3)
    score = fitted.log_prob if fitted.likelihood != "none" else fitted.codec_.encode   # bad rows fail in the codec
    with pytest.raises(DataError, match="missing columns"):
        score(data.drop(columns="x"))
    with pytest.raises(DataError, match="extra columns"):
        score(data.assign(z=1.0))
    with pytest.raises(DataError, match="never seen"):
        score(data.assign(colour="purple"))
    with pytest.raises(DataError, match="non-numeric"):
        score(data.assign(x=data["x"].astype(object).where(data.index > 0, "oops")))
    path = fitted.save(tmp_path / "c")
    weights = next(path.glob("model-*.safetensors"))
    weights.write_bytes(weights.read_bytes()[:100])               # truncated
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        gm.load(path)


@pytest.mark.parametrize("name", FAMILIES)
def test_not_fitted_errors(name):
    m = gm.Model(name)
    for call in (lambda: m.sample(3), lambda: m.log_prob(tiny_table(5)), lambda: m.save("nowhere")):
        with pytest.raises(NotFittedError, match="fit"):
            call()


@pytest.mark.parametrize("name", FAMILIES)
def test_fit_is_repeatable_on_cpu_and_takes_arrays(name):
    x = np.random.default_rng(0).normal(size=(80, 2)) @ np.array([[1.0, 0.5], [0.0, 1.0]])
    kw = {**TINY.get(name, {}), **({} if registry.family(name).closed_form else {"max_steps": 15})}
    fit = lambda: gm.Model(name, seed=3, device="cpu", **{k: v for k, v in kw.items() if k != "max_steps"}).fit(
        x, verbose=False, max_steps=kw.get("max_steps"))
    a, b = fit(), fit()
    if a.likelihood == "none":
        np.testing.assert_array_equal(a.sample(50, seed=1), b.sample(50, seed=1))
    else:
        np.testing.assert_array_equal(a.log_prob(x), b.log_prob(x))
    s = a.sample(10, seed=0)
    assert isinstance(s, np.ndarray) and s.shape == (10, 2)
    assert a.likelihood == registry.family(name).likelihood      # all continuous: nothing dequantized


def test_unknown_family_lists_known_ones():
    with pytest.raises(ConfigError, match="known families: .*gmm"):
        gm.Model("transformer-xl")
    with pytest.raises(ConfigError, match="did you mean 'diffusion'"):
        gm.Model("difusion")
    with pytest.raises(ConfigError, match="did you mean 'autoregressive'"):
        gm.Model("autoregresive")
    with pytest.raises(ConfigError, match="unknown modality 'tabluar'; did you mean 'tabular'"):
        gm.Model("gmm", modality="tabluar")
    with pytest.raises(ConfigError, match="unknown hyper-parameters.*did you mean 'n_components'"):
        gm.Model("gmm", n_componnents=3)
