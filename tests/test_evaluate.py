"""gm.evaluate: the metrics separate a good model from a wrong one, and label bounds as bounds."""
import numpy as np
import pandas as pd

import genmodels as gm


def test_good_model_scores_better_than_a_wrong_one():
    d = gm.datasets.load("8gaussians", seed=0)
    good = gm.Model("gmm", seed=0).fit(d.train, verbose=False)
    wrong = gm.Model("gmm", n_components=1, seed=0).fit(d.train, verbose=False)
    g, w = gm.evaluate(good, d.test), gm.evaluate(wrong, d.test)
    assert g["c2st_auroc"] < 0.6 < w["c2st_auroc"]
    assert g["log_likelihood"] > w["log_likelihood"] + 0.5
    assert g["ks_mean"] < w["ks_mean"] and g["copy_rate"] == 0.0
    assert abs(g["log_likelihood"] - d.true_log_prob(d.test).mean()) < 0.05


def test_bound_is_labelled_and_categorical_metrics_present():
    d = gm.datasets.load("penguins", seed=0)
    m = gm.Model("gmm", seed=0).fit(d.train, verbose=False)
    out = gm.evaluate(m, d.test, train=d.train)
    assert "log_likelihood_bound" in out and "log_likelihood" not in out
    assert {"tv_mean", "ks_mean", "correlation_difference", "dcr_median", "dcr_holdout_median"} <= set(out)
    assert all(isinstance(v, float) and np.isfinite(v) for v in out.values())


def test_copy_rate_sees_a_model_that_memorises():
    # a KDE with a tiny fixed bandwidth on integer-only data reproduces training rows
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"a": rng.integers(0, 1000, 300), "b": rng.integers(0, 1000, 300)})
    m = gm.Model("kde", bandwidth=1e-4, seed=0).fit(df, verbose=False)
    assert gm.evaluate(m, df.head(50))["copy_rate"] > 0.9
