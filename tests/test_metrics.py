"""Each metric against a closed form or a reference implementation (scipy, numpy, scikit-learn)."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy.stats import ks_2samp
from threadpoolctl import threadpool_limits

from genmodels.errors import ConfigError, DataError
from genmodels.metrics import (bits_per_dim, c2st_auroc, copy_rate, copy_rate_from_hashes,
                               correlation_difference, distance_to_closest_record, marginal_distances,
                               mmd_rbf, nats_to_bits, row_hashes, summarize_log_likelihood,
                               table_to_features)


# --------------------------------------------------------------------------- likelihood
def test_summarize_log_likelihood_known_numbers():
    s = summarize_log_likelihood(np.array([-1.0, -2.0, -3.0, -4.0]))
    assert s["mean"] == pytest.approx(-2.5)
    assert s["std"] == pytest.approx(math.sqrt(5.0 / 3.0))        # ddof=1
    assert s["stderr"] == pytest.approx(math.sqrt(5.0 / 3.0) / 2.0)
    assert s["min"] == -4.0 and s["count"] == 4
    one = summarize_log_likelihood([3.0])
    assert one["std"] == 0.0 and one["count"] == 1


def test_summarize_log_likelihood_bad_input():
    with pytest.raises(DataError, match="NaN"):
        summarize_log_likelihood(np.array([1.0, np.nan]))
    with pytest.raises(DataError):
        summarize_log_likelihood(np.array([]))
    s = summarize_log_likelihood(np.array([-1.0, -np.inf]))   # impossible example: honest -inf
    assert s["mean"] == -np.inf and s["min"] == -np.inf


def test_bits_per_dim_and_nats_to_bits():
    assert nats_to_bits(math.log(8.0)) == pytest.approx(3.0)
    # a log-likelihood of -30 ln 2 nats over 10 dims is 3 bits per dim
    assert bits_per_dim(-30.0 * math.log(2.0), 10) == pytest.approx(3.0)
    np.testing.assert_allclose(bits_per_dim(np.array([-math.log(2.0), -2 * math.log(2.0)]), 1), [1.0, 2.0])
    with pytest.raises(ConfigError):
        bits_per_dim(-1.0, 0)


# --------------------------------------------------------------------------- marginals
def test_ks_equals_scipy_for_numeric_kinds():
    rng = np.random.default_rng(0)
    real = pd.DataFrame({"c": rng.normal(size=300), "i": rng.poisson(3, 300),
                         "d": pd.Timestamp("2020-01-01") + pd.to_timedelta(rng.integers(0, 365, 300), "D")})
    synth = pd.DataFrame({"c": rng.normal(0.3, 1.2, 200), "i": rng.poisson(3.5, 200),
                          "d": pd.Timestamp("2020-03-01") + pd.to_timedelta(rng.integers(0, 365, 200), "D")})
    out = marginal_distances(real, synth, {"c": "continuous", "i": "integer", "d": "datetime"})
    assert out["c"] == pytest.approx(ks_2samp(real.c, synth.c).statistic, abs=1e-12)
    assert out["i"] == pytest.approx(ks_2samp(real.i, synth.i).statistic, abs=1e-12)
    days_r = (real.d - pd.Timestamp("2020-01-01")).dt.days
    days_s = (synth.d - pd.Timestamp("2020-01-01")).dt.days
    assert out["d"] == pytest.approx(ks_2samp(days_r, days_s).statistic, abs=1e-12)


def test_ks_counts_missing_rate():
    # same observed values, 30% missing in synth only: sup |F_r - F_s| = 0.3 at the missing atom
    vals = np.arange(70, dtype=float)
    real = pd.DataFrame({"x": vals})
    synth = pd.DataFrame({"x": np.r_[vals, [np.nan] * 30]})
    assert marginal_distances(real, synth, {"x": "continuous"})["x"] == pytest.approx(0.3)


def test_total_variation_closed_form():
    real = pd.DataFrame({"k": ["a"] * 5 + ["b"] * 3 + [None] * 2,
                         "b": [True] * 7 + [False] * 3, "z": ["same"] * 10})
    synth = pd.DataFrame({"k": ["a"] * 2 + ["b"] * 6 + ["c"] * 2,
                          "b": [True] * 4 + [False] * 6, "z": ["same"] * 10})
    out = marginal_distances(real, synth, {"k": "categorical", "b": "boolean", "z": "constant"})
    # p = (a .5, b .3, missing .2, c 0), q = (a .2, b .6, missing 0, c .2)
    assert out["k"] == pytest.approx(0.5 * (0.3 + 0.3 + 0.2 + 0.2))
    assert out["b"] == pytest.approx(0.5 * (0.3 + 0.3))
    assert out["z"] == 0.0


def test_marginal_distances_bad_input():
    df = pd.DataFrame({"x": [1.0, 2.0]})
    with pytest.raises(ConfigError, match="unknown kind"):
        marginal_distances(df, df, {"x": "real"})
    with pytest.raises(DataError, match="missing"):
        marginal_distances(df, df, {"y": "continuous"})
    with pytest.raises(DataError, match="non-numeric"):
        marginal_distances(df, pd.DataFrame({"x": ["a", "b"]}), {"x": "continuous"})


# --------------------------------------------------------------------------- correlations
def _corr_pairwise(df: pd.DataFrame) -> np.ndarray:
    """Pearson correlations by hand with numpy, each pair on the rows where both are present."""
    x = df.to_numpy(float)
    d = x.shape[1]
    out = np.eye(d)
    for i in range(d):
        for j in range(i + 1, d):
            ok = ~np.isnan(x[:, i]) & ~np.isnan(x[:, j])
            out[i, j] = out[j, i] = np.corrcoef(x[ok, i], x[ok, j])[0, 1]
    return out


def test_correlation_difference_matches_numpy():
    rng = np.random.default_rng(1)
    cov = [[1, 0.8, 0.1, 0], [0.8, 1, 0, 0], [0.1, 0, 1, -0.5], [0, 0, -0.5, 1]]
    real = pd.DataFrame(rng.multivariate_normal(np.zeros(4), cov, 200), columns=list("abcd"))
    synth = pd.DataFrame(rng.normal(size=(150, 4)), columns=list("abcd"))
    iu = np.triu_indices(4, 1)
    expected = np.mean(np.abs(np.corrcoef(real.to_numpy().T)[iu] - np.corrcoef(synth.to_numpy().T)[iu]))
    assert correlation_difference(real, synth, list("abcd")) == pytest.approx(expected, abs=1e-12)

    real.iloc[::7, 0] = np.nan                      # pairwise deletion
    synth.iloc[::5, 2] = np.nan
    expected = np.mean(np.abs(_corr_pairwise(real)[iu] - _corr_pairwise(synth)[iu]))
    assert correlation_difference(real, synth, list("abcd")) == pytest.approx(expected, abs=1e-12)
    assert correlation_difference(real, synth, ["a"]) == 0.0
    assert correlation_difference(real, real, list("abcd")) == pytest.approx(0.0)


# --------------------------------------------------------------------------- encoding and DCR
def test_table_to_features_encoding():
    real = pd.DataFrame({"x": [1.0, 3.0, np.nan], "k": ["a", "b", "a"]})
    synth = pd.DataFrame({"x": [2.0, 5.0], "k": ["c", None]})
    fr, fs = table_to_features(real, synth, {"x": "continuous", "k": "categorical"})
    # x: standardised by real (mean 2, std 1), missing indicator; k: one-hot a, b, c, missing
    np.testing.assert_allclose(fr, [[-1, 0, 1, 0, 0, 0], [1, 0, 0, 1, 0, 0], [0, 1, 1, 0, 0, 0]])
    np.testing.assert_allclose(fs, [[0, 0, 0, 0, 1, 0], [3, 0, 0, 0, 0, 1]])


def test_dcr_matches_brute_force():
    rng = np.random.default_rng(2)
    train = pd.DataFrame({"x": rng.normal(5, 3, 60), "y": rng.normal(size=60),
                          "k": rng.choice(["u", "v", "w"], 60)})
    synth = pd.DataFrame({"x": rng.normal(5, 3, 25), "y": rng.normal(size=25),
                          "k": rng.choice(["u", "v", "w"], 25)})
    # numeric only: standardise by the training std by hand
    num = train[["x", "y"]].to_numpy()
    z_t, z_s = num / num.std(0), synth[["x", "y"]].to_numpy() / num.std(0)
    brute = np.sqrt(((z_s[:, None] - z_t[None]) ** 2).sum(-1)).min(1)
    np.testing.assert_allclose(distance_to_closest_record(train, synth, {"x": "continuous", "y": "continuous"}),
                               brute, rtol=1e-10)
    # mixed, with missing values: brute force on the shared encoding
    train.loc[::9, "x"] = np.nan
    kinds = {"x": "continuous", "y": "continuous", "k": "categorical"}
    ft, fs = table_to_features(train, synth, kinds)
    brute = np.sqrt(((fs[:, None] - ft[None]) ** 2).sum(-1)).min(1)
    np.testing.assert_allclose(distance_to_closest_record(train, synth, kinds), brute, rtol=1e-10)
    assert np.all(distance_to_closest_record(train, train.iloc[:5], kinds) == 0)


# --------------------------------------------------------------------------- copies
def test_copy_rate_on_constructed_duplicates():
    rng = np.random.default_rng(3)
    train = pd.DataFrame({"a": rng.integers(0, 1000, 50), "b": rng.normal(size=50),
                          "c": rng.choice(["x", "y"], 50)})
    train.loc[3, "b"] = np.nan
    train.loc[4, "c"] = None
    fresh = pd.DataFrame({"a": rng.integers(2000, 3000, 30), "b": rng.normal(size=30),
                          "c": rng.choice(["x", "y"], 30)})
    copies = train.iloc[[0, 1, 2, 3, 4, 5, 6, 7, 8, 9]]             # rows 3 and 4 hold missing values
    synth = pd.concat([copies, fresh], ignore_index=True)
    synth = synth[["c", "a", "b"]].astype({"a": "float64"})          # other column order, int -> float
    assert copy_rate(train, synth) == pytest.approx(10 / 40)
    assert copy_rate_from_hashes(row_hashes(train), synth) == pytest.approx(10 / 40)
    nudged = synth.copy()
    nudged.loc[:9, "b"] = nudged.loc[:9, "b"] + 1e-9                 # not equal any more (row 3's NaN stays)
    assert copy_rate(train, nudged) == pytest.approx(1 / 40)
    with pytest.raises(DataError, match="same columns"):
        copy_rate(train, synth.drop(columns="c"))


def test_row_hashes_stable_and_order_free():
    df = pd.DataFrame({"a": [1, 2, 3], "b": ["x", None, "z"], "t": pd.to_datetime(["2020-01-01", None, "2021-05-02"])})
    h = row_hashes(df)
    assert h.dtype == np.int64 and h.shape == (3,) and len(set(h.tolist())) == 3
    np.testing.assert_array_equal(h, row_hashes(df[["t", "b", "a"]].copy()))
    np.testing.assert_array_equal(h, row_hashes(df.astype({"a": "float64", "b": object})))


# --------------------------------------------------------------------------- C2ST
def test_c2st_same_distribution_near_half():
    rng = np.random.default_rng(4)
    auc = c2st_auroc(rng.normal(size=(500, 2)), rng.normal(size=(500, 2)), seed=0)
    assert abs(auc - 0.5) < 0.08


def test_c2st_separated_near_one():
    rng = np.random.default_rng(5)
    auc = c2st_auroc(rng.normal(size=(300, 2)), rng.normal(4.0, 1.0, size=(200, 2)), seed=0)
    assert auc > 0.95
    auc = c2st_auroc(rng.normal(size=(200, 2)), rng.normal(4.0, 1.0, size=(200, 2)), classifier="logistic")
    assert auc > 0.95


def test_c2st_equals_out_of_fold_reference():
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold

    rng = np.random.default_rng(6)
    real, synth = rng.normal(size=(150, 3)), rng.normal(0.5, 1.0, size=(150, 3))
    x = np.vstack([real, synth])
    y = np.r_[np.zeros(150), np.ones(150)].astype(int)
    proba = np.empty(len(y))
    with threadpool_limits(1):                      # as c2st_auroc runs it on small data
        for tr, te in StratifiedKFold(5, shuffle=True, random_state=7).split(x, y):
            clf = HistGradientBoostingClassifier(random_state=7).fit(x[tr], y[tr])
            proba[te] = clf.predict_proba(x[te])[:, 1]
    assert c2st_auroc(real, synth, seed=7) == pytest.approx(roc_auc_score(y, proba), abs=1e-12)


def test_c2st_bad_input():
    x = np.zeros((20, 2))
    with pytest.raises(ConfigError):
        c2st_auroc(x, x, classifier="forest")
    with pytest.raises(DataError):
        c2st_auroc(x, np.zeros((20, 3)))
    with pytest.raises(DataError):
        c2st_auroc(x[:3], x)
    with pytest.raises(DataError, match="NaN"):
        c2st_auroc(np.full((20, 2), np.nan), x, classifier="logistic")


# --------------------------------------------------------------------------- MMD
def _mmd2_direct(x: np.ndarray, y: np.ndarray, h: float) -> float:
    def k(a, b):
        return np.exp(-((a[:, None, :] - b[None, :, :]) ** 2).sum(-1) / (2 * h * h))
    n, m = len(x), len(y)
    kxx, kyy, kxy = k(x, x), k(y, y), k(x, y)
    return ((kxx.sum() - np.trace(kxx)) / (n * (n - 1)) + (kyy.sum() - np.trace(kyy)) / (m * (m - 1))
            - 2 * kxy.mean())


def test_mmd_matches_direct_formula():
    rng = np.random.default_rng(8)
    x, y = rng.normal(size=(40, 3)), rng.normal(0.5, 1.0, size=(55, 3))
    assert mmd_rbf(x, y, bandwidth=1.3) == pytest.approx(_mmd2_direct(x, y, 1.3), rel=1e-10)
    z = np.vstack([x, y])
    d = np.sqrt(((z[:, None] - z[None]) ** 2).sum(-1))[np.triu_indices(len(z), 1)]
    assert mmd_rbf(x, y) == pytest.approx(_mmd2_direct(x, y, np.median(d)), rel=1e-10)


def test_mmd_same_vs_different_distribution():
    rng = np.random.default_rng(9)
    same = mmd_rbf(rng.normal(size=(300, 2)), rng.normal(size=(300, 2)))
    diff = mmd_rbf(rng.normal(size=(300, 2)), rng.normal(1.0, 1.0, size=(300, 2)))
    assert abs(same) < 0.01 and diff > 0.1
    with pytest.raises(ConfigError):
        mmd_rbf(np.zeros((5, 1)), np.ones((5, 1)), bandwidth=0.0)
