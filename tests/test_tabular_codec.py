"""The tabular codec: kinds, exact round trips, the raw-unit Jacobian, missing values, bad input."""
import json
import math

import numpy as np
import pandas as pd
import pytest
import torch

from genmodels.codecs.tabular import OTHER, TabularCodec
from genmodels.errors import ConfigError, DataError


@pytest.fixture
def table() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    n = 200
    df = pd.DataFrame({
        "height": rng.normal(170, 10, n),
        "kids": rng.integers(0, 5, n),
        "city": rng.choice(["Paris", "Lyon", "Nice"], n),
        "member": rng.random(n) < 0.3,
        "when": pd.to_datetime("2024-01-01") + pd.to_timedelta(rng.integers(0, 10**6, n), unit="s"),
        "flag": ["x"] * n,
    })
    df.loc[rng.random(n) < 0.1, "height"] = np.nan
    df.loc[rng.random(n) < 0.05, "city"] = None
    return df


def test_kinds_inferred_and_overridable(table):
    codec = TabularCodec().fit(table)
    assert codec.kinds == {"height": "continuous", "kids": "integer", "city": "categorical",
                           "member": "boolean", "when": "datetime", "flag": "constant"}
    codec = TabularCodec(column_kinds={"kids": "categorical"}).fit(table)
    assert codec.kinds["kids"] == "categorical"
    with pytest.raises(ConfigError, match="not a kind"):
        TabularCodec(column_kinds={"kids": "ordinal"})
    with pytest.raises(DataError, match="not in the data"):
        TabularCodec(column_kinds={"nope": "categorical"}).fit(table)


def test_round_trip_is_exact_and_keeps_schema(table):
    codec = TabularCodec().fit(table)
    out = codec.decode(codec.encode(table), generator=torch.Generator().manual_seed(0))
    assert list(out.columns) == list(table.columns)
    assert out.dtypes.tolist() == table.dtypes.tolist()
    for c in ["kids", "city", "member", "flag"]:
        pd.testing.assert_series_equal(out[c], table[c], check_names=True)
    assert (out["height"].isna() == table["height"].isna()).all()
    np.testing.assert_allclose(out["height"].dropna(), table["height"].dropna(), rtol=1e-5)
    assert (out["when"] - table["when"]).abs().max() < pd.Timedelta(seconds=1)


def test_state_is_json_and_restores(table):
    codec = TabularCodec().fit(table)
    again = TabularCodec.from_state(json.loads(json.dumps(codec.state())))
    for k, v in codec.encode(table).items():
        assert torch.equal(v, again.encode(table)[k])


def test_log_det_is_the_scaling_jacobian():
    # one continuous column: log p_raw(x) = log p_z(z) - log std, exactly
    x = pd.DataFrame({"a": [1.0, 2.0, 4.0, 8.0]})
    codec = TabularCodec().fit(x)
    b = codec.dequantize(codec.encode(x), torch.Generator().manual_seed(0))
    std = np.std([1.0, 2.0, 4.0, 8.0])
    assert torch.allclose(codec.log_det(b), torch.full((4,), -math.log(std), dtype=torch.float64))


def test_missing_numeric_gets_noise_and_its_density_removed(table):
    codec = TabularCodec(atoms="none").fit(table)
    b = codec.dequantize(codec.encode(table), torch.Generator().manual_seed(0))
    miss = table["height"].isna().to_numpy()
    j = [c.name for c in codec.numeric_].index("height")
    z = b["x"][:, j].double()
    others = -sum(math.log(c.std) for c in codec.numeric_ if c.name != "height")
    expect = torch.where(torch.from_numpy(miss.copy()), 0.5 * z**2 + 0.5 * math.log(2 * math.pi),
                         torch.full_like(z, -math.log(codec.numeric_[j].std))) + others
    assert torch.allclose(codec.log_det(b), expect)
    assert "missing values" in " ".join(codec.bound_reasons)


def test_integer_dequantization_stays_in_cell(table):
    codec = TabularCodec().fit(table)
    b = codec.dequantize(codec.encode(table), torch.Generator().manual_seed(1))
    out = codec.decode(b, generator=torch.Generator().manual_seed(0))
    pd.testing.assert_series_equal(out["kids"], table["kids"])


def test_high_cardinality_folds_into_other_with_exact_mass():
    values = ["a"] * 50 + ["b"] * 30 + [f"r{i}" for i in range(20)] + ["r0"] * 5
    df = pd.DataFrame({"v": values})
    codec = TabularCodec(max_categories=3).fit(df)
    col = codec.columns_[0]
    assert col.categories == ["a", "b", OTHER] and sum(col.other.values()) == 25
    b = codec.encode(pd.DataFrame({"v": ["r0", "r7", "a"]}))
    assert np.allclose(b["log_w"].numpy(), [math.log(6 / 25), math.log(1 / 25), 0.0])
    # sampling "other" returns folded training values, by frequency
    out = codec.decode({"x": torch.zeros(2000, 0), "c": torch.full((2000, 1), 2)}, torch.Generator().manual_seed(0))
    assert set(out["v"]) <= {f"r{i}" for i in range(20)}
    assert 0.15 < (out["v"] == "r0").mean() < 0.35   # 6/25 = 0.24


@pytest.mark.parametrize("bad, match", [
    (lambda d: d.drop(columns="city"), "missing columns"),
    (lambda d: d.assign(extra=1), "extra columns"),
    (lambda d: d.assign(city="Berlin"), "never seen in training"),
    (lambda d: d.assign(kids=d["kids"].astype(object).where(d.index > 0, "three")), "non-numeric"),
    (lambda d: d.assign(kids=d["kids"].astype(float).where(d.index > 0, np.nan)), "had none in training"),
    (lambda d: d.assign(flag="y"), "constant"),
    (lambda d: d.iloc[:0], "no rows"),
])
def test_bad_input_at_score_time(table, bad, match):
    codec = TabularCodec().fit(table)
    with pytest.raises(DataError, match=match):
        codec.encode(bad(table))


def test_bad_training_data():
    with pytest.raises(DataError, match="entirely missing"):
        TabularCodec().fit(pd.DataFrame({"a": [1.0, 2.0], "b": [np.nan, np.nan]}))
    with pytest.raises(DataError, match="empty"):
        TabularCodec().fit(pd.DataFrame())
    with pytest.raises(ConfigError):
        TabularCodec(max_categories=1)


def test_columns_in_another_order_are_accepted(table):
    codec = TabularCodec().fit(table)
    b1, b2 = codec.encode(table), codec.encode(table[table.columns[::-1]])
    assert torch.equal(b1["x"], b2["x"]) and torch.equal(b1["c"], b2["c"])


def test_coerce_array_round_trips_as_array():
    x = np.random.default_rng(0).normal(size=(30, 3))
    df = TabularCodec.coerce(x)
    codec = TabularCodec().fit(df)
    out = codec.decode(codec.encode(df))
    assert isinstance(out, np.ndarray) and out.shape == (30, 3)
    np.testing.assert_allclose(out, x, rtol=1e-5, atol=1e-5)
    with pytest.raises(DataError, match="2-D"):
        TabularCodec.coerce(np.zeros(5))


def test_codec_implements_the_protocol(table):
    from genmodels.core import Codec
    assert isinstance(TabularCodec().fit(table), Codec)


def zero_inflated(n: int = 4000, seed: int = 0) -> pd.DataFrame:
    """gain: 0 with probability 0.6, else uniform on 100..199; visits: Poisson(6) (no spike)."""
    rng = np.random.default_rng(seed)
    gain = np.where(rng.random(n) < 0.6, 0, rng.integers(100, 200, n))
    return pd.DataFrame({"gain": gain.astype("int64"), "visits": rng.poisson(6.0, n).astype("int64"),
                         "hours": np.where(rng.random(n) < 0.5, 40.0, rng.normal(40, 8, n))})


def test_point_masses_found_only_where_a_value_towers_over_its_neighbours():
    df = zero_inflated()
    codec = TabularCodec().fit(df)
    atoms = {c.name: c.atoms for c in codec.columns_}
    assert atoms == {"gain": [0.0], "visits": [], "hours": []}      # floats only with atoms="numeric"
    assert TabularCodec(atoms="numeric").fit(df).columns_[2].atoms == [40.0]
    assert TabularCodec(atoms="none").fit(df).columns_[0].atoms == []
    assert codec.spec().cardinalities == (2,)                          # gain's state slot: ordinary, 0
    gain = codec.columns_[0]                                           # scaled on the ordinary values only
    assert gain.mean == pytest.approx(df.gain[df.gain > 0].mean() + 0.5) and gain.lo == 0
    assert "point masses" in " ".join(codec.bound_reasons)
    for bad in (dict(atoms="all"), dict(atom_share=0.0), dict(max_atoms=-1)):
        with pytest.raises(ConfigError):
            TabularCodec(**bad)


def test_point_masses_round_trip_and_get_noise_with_its_density_removed():
    df = zero_inflated(500)
    codec = TabularCodec(atoms="numeric").fit(df)
    enc = codec.encode(df)
    at = {"gain": (df.gain == 0).to_numpy(), "hours": (df.hours == 40.0).to_numpy()}
    assert torch.equal(enc["c"][:, 0], torch.from_numpy(at["gain"].astype(np.int64)))
    b = codec.dequantize(enc, torch.Generator().manual_seed(0))
    out = codec.decode(b, generator=torch.Generator().manual_seed(0))
    pd.testing.assert_series_equal(out["gain"], df["gain"])
    assert (out["hours"][at["hours"]] == 40.0).all()
    z = b["x"].double()
    expect = torch.zeros(len(df), dtype=torch.float64)
    for j, col in enumerate(codec.numeric_):
        m = torch.from_numpy(at.get(col.name, np.zeros(len(df), bool)).copy())
        expect += torch.where(m, 0.5 * z[:, j] ** 2 + 0.5 * math.log(2 * math.pi),
                              torch.full_like(z[:, j], -math.log(col.std)))
    assert torch.allclose(codec.log_det(b), expect)
    for j, col in enumerate(codec.numeric_):                           # the noise is N(0, 1)
        m = at.get(col.name)
        if m is not None:
            assert abs(float(z[torch.from_numpy(m.copy()), j].mean())) < 0.2


def test_point_mass_gets_its_share_as_probability_and_conditions_exactly():
    import genmodels as gm
    df = zero_inflated(3000)[["gain"]]
    m = gm.Model("gmm", seed=0, device="cpu").fit(df, verbose=False)
    lp = m.log_prob(pd.DataFrame({"gain": [0] * 2000}))
    # a bound: log P(0) = log 0.6 minus the GMM's misfit of the N(0, 1) noise (small for EM)
    assert lp.mean() == pytest.approx(math.log((df.gain == 0).mean()), abs=0.05)
    assert lp.mean() <= math.log((df.gain == 0).mean()) + 0.01
    s = m.sample(2000, seed=0)
    assert (s.gain == 0).mean() == pytest.approx(0.6, abs=0.04)
    assert s.gain[s.gain > 0].between(100, 199).mean() > 0.95
    assert (m.sample(50, seed=1, condition={"gain": 0}).gain == 0).all()
    assert (m.sample(50, seed=1, condition={"gain": 150}).gain == 150).all()


def test_shared_scale_keeps_relative_spreads_and_raw_unit_likelihood():
    """scale="shared": every continuous/integer column divided by one scale, the root of their mean
    variance; a one-Gaussian GMM's covariance floor is then isotropic in raw units (a reg_covar share
    of the average variance), and log_prob stays in raw units (checked against scipy)."""
    from scipy.stats import multivariate_normal

    import genmodels as gm
    rng = np.random.default_rng(3)
    x = rng.multivariate_normal([0.0, 5.0, -1.0], [[4.0, 1.0, 0.0], [1.0, 1.0, 0.1], [0.0, 0.1, 0.04]], size=400)
    df = pd.DataFrame(x, columns=["a", "b", "c"]).assign(when=pd.Timestamp("2024-01-01")
                                                        + pd.to_timedelta(rng.integers(0, 10**6, 400), unit="s"))
    codec = TabularCodec(scale="shared").fit(df)
    shared = math.sqrt(np.mean(x.var(0)))
    stds = {c.name: c.std for c in codec.columns_}
    assert stds["a"] == stds["b"] == stds["c"] == pytest.approx(shared)
    seconds = (df["when"] - pd.Timestamp("1970-01-01")).dt.total_seconds()
    assert stds["when"] == pytest.approx(seconds.std(ddof=0), rel=1e-6)         # datetimes keep their own scale
    again = TabularCodec.from_state(json.loads(json.dumps(codec.state())))
    assert again.scale == "shared" and [c.std for c in again.columns_] == [c.std for c in codec.columns_]
    assert TabularCodec().fit(df).columns_[2].std == pytest.approx(x[:, 2].std())   # "column": its own

    reg = 0.1
    m = gm.Model("gmm", n_components=1, reg_covar=reg, seed=0, codec={"scale": "shared"})
    m.fit(df[["a", "b", "c"]], validation=0)
    cov = np.cov(x, rowvar=False, bias=True) + reg * shared ** 2 * np.eye(3)
    np.testing.assert_allclose(m.log_prob(df[["a", "b", "c"]].head(20)),
                               multivariate_normal(x.mean(0), cov).logpdf(x[:20]), rtol=1e-5)
    with pytest.raises(ConfigError, match="scale='unit' is not an option.*'shared' for columns in one unit"):
        TabularCodec(scale="unit")
