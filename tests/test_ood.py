"""OODDetector and ood_metrics: closed forms, a constructed failure of plain likelihood, bad input."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import average_precision_score, roc_auc_score

import genmodels as gm
from genmodels.apps.ood import OODDetector, TypicalityResult, ood_metrics, perturb
from genmodels.errors import ConfigError, DataError, NoLikelihoodError, NotFittedError

torch.set_num_threads(1)

D = 12
COV = np.diag(np.linspace(0.5, 2.0, D)) + 0.3            # positive definite, correlated columns


def gaussian(n: int, seed: int, scale: float = 1.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return scale * rng.multivariate_normal(np.zeros(D), COV, size=n)


@pytest.fixture(scope="module")
def model() -> gm.Model:
    return gm.Model("gmm", seed=0, n_components=1).fit(gaussian(3000, 0), verbose=False)


@pytest.fixture(scope="module")
def detector(model) -> OODDetector:
    return OODDetector(model, seed=0).fit(gaussian(4000, 1), train=gaussian(3000, 0))


# ------------------------------------------------------------------ metrics against references
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_metrics_match_sklearn_with_ties(seed):
    rng = np.random.default_rng(seed)
    s_in = rng.integers(0, 6, 57).astype(float)            # many ties, inside and across groups
    s_out = rng.integers(2, 9, 31).astype(float)
    m = ood_metrics(s_in, s_out)
    y = np.r_[np.zeros(len(s_in)), np.ones(len(s_out))]
    s = np.r_[s_in, s_out]
    assert m["auroc"] == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert m["aupr"] == pytest.approx(average_precision_score(y, s), abs=1e-12)


def test_fpr95_by_hand():
    # 20 OOD scores 1..20: 95% TPR needs 19 flagged, so t = 2 (the 19th largest)
    s_out = np.arange(1, 21, dtype=float)
    s_in = np.array([0.5, 1.5, 2.0, 2.5, 3.0, 10.0, 0.0, -1.0])   # >= 2: 2.0, 2.5, 3.0, 10.0
    assert ood_metrics(s_in, s_out)["fpr95"] == pytest.approx(4 / 8)
    assert ood_metrics(s_in, s_out, tpr=1.0)["fpr_at_tpr1"] == pytest.approx(5 / 8)   # t = 1
    perfect = ood_metrics([0.0, 1.0], [2.0, 3.0])
    assert (perfect["auroc"], perfect["aupr"], perfect["fpr95"]) == (1.0, 1.0, 0.0)
    worst = ood_metrics([2.0, 3.0], [0.0, 1.0])
    assert worst["auroc"] == 0.0 and worst["fpr95"] == 1.0


@pytest.mark.parametrize("bad", [[], [0.0, np.nan], [np.inf]])
def test_metrics_reject_bad_scores(bad):
    with pytest.raises(DataError):
        ood_metrics(bad, [1.0, 2.0])
    with pytest.raises(ConfigError):
        ood_metrics([1.0], [2.0], tpr=1.5)


# ------------------------------------------------------------------ closed forms
def test_entropy_estimate_matches_gaussian_entropy(detector):
    exact = 0.5 * np.linalg.slogdet(2 * math.pi * math.e * COV)[1]    # H[N(0, COV)] in nats
    assert abs(detector.entropy_ - exact) < 4 * detector.entropy_se_ + 0.02


def test_scores_are_their_formulas(model, detector):
    X = gaussian(50, 7)
    nll = -model.log_prob(X)
    np.testing.assert_allclose(detector.score(X), nll)
    np.testing.assert_allclose(detector.score(X, "typicality"), np.abs(nll - detector.entropy_))
    np.testing.assert_allclose(detector.score(X, "ratio"), detector.background_.log_prob(X) + nll)


def test_ratio_with_user_background_is_difference_of_gmm_log_probs(model):
    bg = gm.Model("gmm", seed=3, n_components=2).fit(gaussian(1000, 5, scale=2.0), verbose=False)
    det = OODDetector(model, background=bg).fit(gaussian(200, 1))
    X = gaussian(40, 9)
    assert det.background_ is bg
    np.testing.assert_allclose(det.score(X, "ratio"), bg.log_prob(X) - model.log_prob(X), rtol=1e-12)


def test_unfitted_user_background_is_fitted_on_perturbed_data(model):
    bg = gm.Model("gmm", seed=0, n_components=1)
    det = OODDetector(model, background=bg, rate=0.5).fit(gaussian(300, 1), train=gaussian(2000, 0))
    assert not hasattr(bg, "module_") and hasattr(det.background_, "module_")
    # resampling half the cells shrinks every covariance by (1 - 0.5)^2 and keeps the variances
    cov_bg = np.cov(det.background_.sample(20000, seed=0), rowvar=False)
    off = ~np.eye(D, dtype=bool)
    np.testing.assert_allclose(np.diag(cov_bg), np.diag(COV), rtol=0.1)
    assert np.mean(cov_bg[off]) == pytest.approx(0.25 * 0.3, abs=0.02)    # not 0.3: perturbed


def test_threshold_controls_false_alarms(detector):
    res = detector.typicality_test(gaussian(4000, 11), batch_size=20)
    assert isinstance(res, TypicalityResult) and res.statistic.shape == (200,)
    assert res.is_ood.mean() < 0.05                          # alpha = 0.01 on in-distribution batches
    # the threshold is the (1 - alpha) quantile of a batch mean's deviation: ~ z * sd / sqrt(M)
    sd = detector.nll_holdout_.std()
    assert detector.threshold(20) == pytest.approx(2.576 * sd / math.sqrt(20), rel=0.15)
    assert detector.threshold(80) < detector.threshold(20)


# ------------------------------------------------------------------ the failure and its remedies
def test_near_mode_inputs_fool_nll_but_not_typicality(detector):
    X_in, X_out = gaussian(400, 21), gaussian(400, 22, scale=0.2)    # near the mode: too likely
    assert ood_metrics(detector.score(X_in), detector.score(X_out))["auroc"] < 0.05
    assert ood_metrics(detector.score(X_in, "typicality"), detector.score(X_out, "typicality"))["auroc"] > 0.95
    res = detector.typicality_test(X_out, batch_size=10)
    assert res.is_ood.all()


def test_ratio_fixes_a_semantic_shift_hidden_by_background():
    """Columns 0-1 carry the structure (correlation +0.9), columns 2+ are background noise.
    OOD rows flip the correlation and have a quieter background: plain NLL prefers them."""
    rng = np.random.default_rng(0)

    def rows(n, rho, bsd):
        s1 = rng.standard_normal(n)
        s2 = rho * s1 + math.sqrt(1 - rho**2) * rng.standard_normal(n)
        return np.column_stack([s1, s2, bsd * rng.standard_normal((n, 30))])

    train = rows(2000, 0.9, 1.0)
    model = gm.Model("gmm", seed=0, n_components=1).fit(train, verbose=False)
    det = OODDetector(model, rate=0.5, seed=0).fit(rows(500, 0.9, 1.0), train=train)
    X_in, X_out = rows(500, 0.9, 1.0), rows(500, -0.9, 0.2)
    assert ood_metrics(det.score(X_in), det.score(X_out))["auroc"] < 0.4
    assert ood_metrics(det.score(X_in, "ratio"), det.score(X_out, "ratio"))["auroc"] > 0.8


# ------------------------------------------------------------------ perturbations
def test_perturb_resample_keeps_marginals_and_types():
    df = pd.DataFrame({"a": np.arange(100.0), "b": np.arange(100) % 7, "c": list("xyz" * 33) + ["x"]},
                      index=np.arange(100, 200))
    out = perturb(df, "resample", rate=0.5, seed=0)
    assert isinstance(out, pd.DataFrame) and list(out.dtypes) == list(df.dtypes)
    assert (out.index == df.index).all()
    assert set(out["c"]) <= set(df["c"]) and set(out["a"]) <= set(df["a"])
    changed = (out["a"] != df["a"]).mean()
    assert 0.3 < changed < 0.6                                # rate 0.5, less draws of the same row
    pd.testing.assert_frame_equal(perturb(df, "resample", rate=0.0), df)
    arr = perturb(df[["a"]].to_numpy(), "noise", rate=0.1, seed=0)
    assert isinstance(arr, np.ndarray) and arr.shape == (100, 1)
    assert np.std(arr[:, 0] - df["a"].to_numpy()) == pytest.approx(0.1 * df["a"].std(ddof=0), rel=0.2)
    noisy = perturb(df, "noise", rate=0.1)
    assert (noisy["b"] == df["b"]).all() and (noisy["c"] == df["c"]).all()   # only float columns


@pytest.mark.parametrize("kind,rate", [("shuffle", 0.1), ("resample", 1.5), ("noise", -1.0), ("noise", True)])
def test_perturb_rejects_bad_options(kind, rate):
    with pytest.raises(ConfigError):
        perturb(np.zeros((5, 2)), kind, rate)


# ------------------------------------------------------------------ bad input
def test_refuses_models_without_likelihood_or_unfitted():
    with pytest.raises(NoLikelihoodError, match="gmm"):
        OODDetector(gm.Model("gan"))
    with pytest.raises(NotFittedError):
        OODDetector(gm.Model("gmm"))
    with pytest.raises(ConfigError):
        OODDetector("not a model")


@pytest.mark.parametrize("kw", [{"alpha": 0.0}, {"alpha": 1.0}, {"batch_size": 0}, {"n_bootstrap": 2.5},
                                {"perturbation": "blur"}])
def test_bad_options(model, kw):
    with pytest.raises(ConfigError):
        OODDetector(model, **kw)


def test_bad_calls(model, detector):
    fresh = OODDetector(model)
    assert fresh.score(gaussian(3, 0)).shape == (3,)          # plain NLL needs no calibration
    for method in ("ratio", "typicality"):
        with pytest.raises(NotFittedError, match="fit"):
            fresh.score(gaussian(3, 0), method)
    with pytest.raises(NotFittedError):
        fresh.typicality_test(gaussian(30, 0))
    with pytest.raises(ConfigError, match="nll"):
        detector.score(gaussian(3, 0), "likelihood")
    with pytest.raises(DataError, match="fewer than one batch"):
        detector.typicality_test(gaussian(5, 0), batch_size=10)
    with pytest.raises(ConfigError):
        detector.typicality_test(gaussian(30, 0), batch_size=-1)
    with pytest.raises(DataError):
        detector.score(np.zeros((3, D + 1)))                   # wrong width: the model's own error
    with pytest.raises(DataError):
        OODDetector(model).fit(gaussian(1, 0))


def test_mixed_table_with_default_background():
    rng = np.random.default_rng(0)
    n = 600
    colour = rng.choice(["red", "blue"], n)
    df = pd.DataFrame({"size": np.where(colour == "red", 2.0, -2.0) + rng.standard_normal(n),
                       "count": rng.poisson(3, n), "colour": colour})
    model = gm.Model("kde", seed=0).fit(df.iloc[:400], verbose=False)
    det = OODDetector(model, seed=0).fit(df.iloc[400:500], train=df.iloc[:400])
    assert det.background_.family == "kde" and det.background_ is not model
    test = df.iloc[500:]
    swapped = test.assign(colour=np.where(test["colour"] == "red", "blue", "red"))   # size no longer fits colour
    for method in ("nll", "ratio", "typicality"):
        s_in, s_out = det.score(test, method), det.score(swapped, method)
        assert s_in.shape == (100,) and np.isfinite(s_in).all()
        if method != "typicality":
            assert ood_metrics(s_in, s_out)["auroc"] > 0.9
