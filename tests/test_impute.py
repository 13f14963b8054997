"""Imputation: Model.impute, the Imputer transformer and `genmodels impute`, against closed forms."""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from sklearn.base import clone
from sklearn.linear_model import LinearRegression
from sklearn.pipeline import make_pipeline

import genmodels as gm
from genmodels.cli import main
from genmodels.errors import ConfigError, DataError

RHO, SB = 0.8, 2.0          # corr(a, b) and sd(b); a ~ N(0, 1)


def gaussian(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    cov = [[1.0, RHO * SB], [RHO * SB, SB ** 2]]
    return pd.DataFrame(rng.multivariate_normal([0.0, 1.0], cov, n), columns=["a", "b"])


def mixed(n: int, seed: int, missing: float = 0.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    g = rng.choice(["x", "y"], n, p=[0.4, 0.6])
    df = pd.DataFrame({"g": g, "v": np.where(g == "x", -3.0, 3.0) + rng.standard_normal(n),
                       "k": rng.poisson(np.where(g == "x", 2, 9)).astype("int64")})
    if missing:
        df = df.mask(rng.random(df.shape) < missing).astype({"k": "Int64"})   # whole numbers with gaps
    return df


@pytest.fixture(scope="module")
def gauss_model():
    return gm.Model("gmm", seed=0, n_components=1).fit(gaussian(4000, 0), verbose=False)


def test_mean_strategy_is_the_closed_form_conditional_mean(gauss_model):
    from genmodels.apps.impute import fill
    test = gaussian(400, 1)
    holed = test.assign(b=np.nan)
    out = fill(gauss_model, holed, "mean", n_draws=200, seed=0)
    exact = 1.0 + RHO * SB * test["a"]             # E[b | a] under the true model
    assert np.abs(out["b"] - exact).mean() < 0.08  # fitted vs true parameters + Monte-Carlo error
    pd.testing.assert_series_equal(out["a"], test["a"])          # observed cells untouched
    draw = fill(gauss_model, holed, "draw", seed=0)
    resid = (draw["b"] - exact) / (SB * np.sqrt(1 - RHO ** 2))    # one draw: N(0, 1) around the mean
    assert stats.kstest(resid, "norm").pvalue > 0.01


def test_multiple_imputations_give_calibrated_intervals(gauss_model):
    test = gaussian(300, 2)
    holed = test.assign(b=np.nan)
    imp = gm.Imputer(seed=0, n_components=1).fit(gaussian(3000, 3))
    lo, hi = imp.interval(holed, level=0.9, n_imputations=60)
    cover = ((test["b"] >= lo[:, 1]) & (test["b"] <= hi[:, 1])).mean()
    assert 0.85 <= cover <= 0.95
    assert np.isnan(lo[:, 0]).all()                              # observed cells have no interval
    many = gm.Imputer(seed=0, n_imputations=3, n_components=1).fit(gaussian(500, 4)).transform(holed)
    assert isinstance(many, list) and len(many) == 3
    assert not many[0]["b"].equals(many[1]["b"])


def test_mixed_types_with_missing_training_cells():
    train, test = mixed(2000, 0, missing=0.2), mixed(300, 1)
    holed = test.mask(np.random.default_rng(5).random(test.shape) < 0.3).astype({"k": "Int64"})
    holed = holed[holed.notna().any(axis=1)]
    imp = gm.Imputer(seed=0).fit(train)
    with warnings.catch_warnings():
        warnings.simplefilter("error")                             # no all-missing rows here: no warning
        out = imp.transform(holed)
    assert out.notna().all().all() and list(out.columns) == ["g", "v", "k"]
    obs = holed.notna()
    for c in holed:
        pd.testing.assert_series_equal(out[c][obs[c]], holed[c][obs[c]], check_dtype=False)
    assert set(out["g"]) <= {"x", "y"}                            # never "missing", never a new category
    assert (out["k"] == out["k"].round()).all() and (out["k"] >= 0).all()
    # the category is recovered from v (the groups are 6 sd apart)
    truth = test.loc[holed.index]
    filled_g = holed["g"].isna() & holed["v"].notna()
    assert (out["g"][filled_g] == truth["g"][filled_g]).mean() > 0.97
    # fitted by the EM for incomplete data: the codec learned no "missing" state, and draws need no rejection
    assert not any(c.has_missing for c in imp.model_.codec_.columns_)
    drawn = imp.set_params(strategy="draw").transform(holed)
    assert drawn.notna().all().all() and imp.model_.impute_info_["unresolved_rows"] == 0


def test_arrays_in_arrays_out_and_pipeline():
    x = gaussian(600, 6).to_numpy()
    holed = x.copy()
    holed[::5, 1] = np.nan
    imp = gm.Imputer(seed=0, n_components=1)
    out = imp.fit_transform(holed)
    assert isinstance(out, np.ndarray) and out.dtype == np.float64 and not np.isnan(out).any()
    np.testing.assert_array_equal(out[~np.isnan(holed)], holed[~np.isnan(holed)])
    assert clone(imp).get_params() == imp.get_params()
    pipe = make_pipeline(gm.Imputer(seed=0, n_components=1), LinearRegression())
    first = x[:, :1].copy()
    first[::4, 0] = np.nan                        # one feature with gaps: rows with none are filled from the joint
    with pytest.warns(UserWarning, match="no observed cell"):
        pipe.fit(first, x[:, 1])
    with pytest.warns(UserWarning, match="no missing cell"):       # complete rows pass through, said so
        assert pipe.score(x[:, :1], x[:, 1]) > 0.5


def test_bad_input(gauss_model):
    imp = gm.Imputer(seed=0, n_components=1).fit(gaussian(300, 7))
    full = gaussian(20, 8)
    with pytest.warns(UserWarning, match="no missing cell"):
        same = imp.transform(full)
    pd.testing.assert_frame_equal(same, full)
    rows = full.copy()
    rows.iloc[0] = np.nan
    with pytest.warns(UserWarning, match="no observed cell"):
        assert imp.transform(rows).notna().all().all()
    with pytest.raises(DataError, match="entirely missing"):
        gm.Imputer().fit(gaussian(50, 9).assign(b=np.nan))
    with pytest.raises(ConfigError, match="cannot impute.*gmm"):
        gm.Imputer(family="flow").fit(gaussian(50, 9))
    with pytest.raises(DataError, match="missing columns"):
        imp.transform(rows.rename(columns={"b": "c"}))
    for bad in (dict(strategy="median"), dict(n_imputations=0), dict(n_draws=1.5)):
        with pytest.raises(ConfigError):
            gm.Imputer(**bad).fit(gaussian(50, 9))
    with pytest.raises(gm.errors.NotFittedError):
        gm.Imputer().transform(rows)


def test_cli_impute(tmp_path, capsys):
    train, test = mixed(800, 0, missing=0.1), mixed(50, 2)
    train.to_csv(tmp_path / "train.csv", index=False)
    holed = test.mask(np.random.default_rng(3).random(test.shape) < 0.2)
    holed.to_csv(tmp_path / "holed.csv", index=False)
    assert main(["fit", str(tmp_path / "train.csv"), "--model", "gmm", "--out", str(tmp_path / "m"), "--quiet"]) == 0
    assert main(["impute", str(tmp_path / "m"), str(tmp_path / "holed.csv"), "-o", str(tmp_path / "out.csv"),
                 "--seed", "0"]) == 0
    out = pd.read_csv(tmp_path / "out.csv")
    assert out.notna().all().all() and len(out) == 50
    test.to_csv(tmp_path / "full.csv", index=False)
    capsys.readouterr()
    assert main(["impute", str(tmp_path / "m"), str(tmp_path / "full.csv"), "-o", str(tmp_path / "same.csv")]) == 0
    assert "no missing cell" in capsys.readouterr().err
    assert main(["fit", str(tmp_path / "train.csv"), "--model", "flow", "--out", str(tmp_path / "f"), "--quiet",
                 "--max-steps", "5"]) == 0
    assert main(["impute", str(tmp_path / "f"), str(tmp_path / "holed.csv"), "-o", str(tmp_path / "o.csv")]) == 2
    assert "cannot impute" in capsys.readouterr().err


def test_missing_at_random_is_fitted_exactly():
    # b is missing more often where a is large (MAR): the complete rows under-represent large b, but
    # the maximum-likelihood fill is in closed form: the complete rows' regression line of b on a
    full = gaussian(3000, 10)
    rng = np.random.default_rng(11)
    gone = rng.random(len(full)) < 1 / (1 + np.exp(-2.5 * full["a"]))
    holed = full.assign(b=full["b"].mask(gone))
    assert holed["b"].mean() < 0.0                              # the observed b are far below E[b] = 1
    imp = gm.Imputer(seed=0, n_components=1, reg_covar=1e-9, tol=1e-10).fit(holed)
    out = imp.transform(holed)
    cc = full[~gone]
    beta = np.cov(cc["a"], cc["b"])[0, 1] / cc["a"].var()
    mle = cc["b"].mean() + beta * (full["a"][gone] - cc["a"].mean())
    np.testing.assert_allclose(out["b"][gone], mle, atol=1e-3)
    assert np.abs(out["b"][gone] - (1.0 + RHO * SB * full["a"][gone])).mean() < 0.1     # near the truth
    assert out["b"].mean() == pytest.approx(full["b"].mean(), abs=0.05)
    pd.testing.assert_series_equal(out["a"], holed["a"])
    chosen = gm.Imputer(seed=0, n_components=1).fit(holed)      # reg_covar chosen by held-out error
    assert chosen.selection_ and {s["n_components"] for s in chosen.selection_} == {1}
    assert np.abs(chosen.transform(holed)["b"][gone] - mle).mean() < 0.02


def test_selection_and_ensemble():
    x = mixed(1500, 3)[["v"]].assign(w=lambda d: d["v"] ** 2 + np.random.default_rng(0).normal(size=len(d)))
    holed = x.mask(np.random.default_rng(1).random(x.shape) < 0.2)
    holed = holed[holed.notna().any(axis=1)]
    imp = gm.Imputer(seed=0, ensemble=3).fit(holed)
    scores = pd.DataFrame(imp.selection_)
    best = scores.loc[scores["error"].idxmin()]
    k = imp.model_.hyperparameters["n_components"]
    assert k % 3 == 0 and k // 3 >= 2                            # two clusters: more than one component
    assert imp.model_.hyperparameters["reg_covar"] in set(scores["reg_covar"])
    assert best["error"] < scores[scores["n_components"] == 1]["error"].min()
    fixed = gm.Imputer(seed=0, ensemble=3, n_components=2, reg_covar=1e-3).fit(holed)
    assert fixed.selection_ == [] and fixed.model_.module_.config["n_components"] == 6
