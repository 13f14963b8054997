"""AnomalyDetector: PyOD conventions, a closed-form check, bad input, persistence, CLI, sklearn clone."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy.stats import multivariate_normal

import genmodels.cli
from genmodels.apps.anomaly import (
    DETECTOR_FILE,
    AnomalyDetector,
    add_cli,
    likelihood_families,
)
from genmodels.errors import (
    CheckpointError,
    ConfigError,
    DataError,
    GenmodelsError,
    NoLikelihoodError,
    NotFittedError,
)


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    """300 inliers from a correlated Gaussian, and 20 far-off test rows after 100 fresh inliers."""
    rng = np.random.default_rng(0)
    cov = np.array([[1.0, 0.6, 0.0], [0.6, 1.0, 0.3], [0.0, 0.3, 1.0]])
    train = rng.multivariate_normal([1.0, -2.0, 0.5], cov, size=300)
    test = np.vstack([rng.multivariate_normal([1.0, -2.0, 0.5], cov, size=100),
                      rng.normal(0, 1, size=(20, 3)) * 1.5 + np.array([6.0, 4.0, -5.0])])
    return train, test


@pytest.fixture(scope="module")
def fitted(data) -> AnomalyDetector:
    return AnomalyDetector("gmm", contamination=0.05, seed=0, num_threads=1, n_components=1).fit(data[0])


def test_conventions(fitted, data):
    train, test = data
    det = fitted
    assert det.decision_scores_.shape == (300,) and det.labels_.shape == (300,)
    assert set(np.unique(det.labels_)) <= {0, 1}
    # threshold: the (1 - contamination) quantile of the training scores, so ~5% flagged
    assert det.threshold_ == pytest.approx(np.quantile(det.decision_scores_, 0.95))
    assert abs(det.labels_.mean() - 0.05) <= 1 / 300
    s = det.decision_function(test)
    assert s.shape == (120,) and np.isfinite(s).all()
    assert s[100:].min() > s[:100].max()                   # higher = more anomalous
    np.testing.assert_allclose(det.decision_function(train), det.decision_scores_)
    labels = det.predict(test)
    assert labels.dtype.kind == "i" and labels[100:].all() and labels[:100].mean() < 0.2
    np.testing.assert_array_equal(det.score_samples(test), -s)


@pytest.mark.parametrize("method", ["linear", "unify"])
def test_predict_proba(fitted, data, method):
    test = data[1]
    p = fitted.predict_proba(test, method=method)
    assert p.shape == (120, 2)
    assert (p >= 0).all() and (p <= 1).all()
    np.testing.assert_allclose(p.sum(1), 1.0)
    order = np.argsort(fitted.decision_function(test))
    assert (np.diff(p[order, 1]) >= -1e-12).all()          # monotone in the score
    assert p[100:, 1].min() > 0.5


def test_confidence(fitted, data):
    labels, conf = fitted.predict(data[1], return_confidence=True)
    assert conf.shape == labels.shape and (conf >= 0).all() and (conf <= 1).all()
    assert conf[100:].min() > 0.99                          # far-off rows: sure they are outliers


def test_scores_are_the_fitted_gaussian_nll(fitted, data):
    """One full-covariance component: the score is -log N(x; mean, cov + reg) of the training data."""
    train, test = data
    mean = train.mean(0)
    cov = np.cov(train, rowvar=False, bias=True)
    # the codec standardises each column; the GMM's covariance floor (reg_covar) is in those units
    sd = train.std(0)
    cov = cov + np.diag(1e-6 * sd ** 2)
    expected = -multivariate_normal(mean, cov).logpdf(test)
    np.testing.assert_allclose(fitted.decision_function(test), expected, rtol=1e-4, atol=1e-4)


def test_default_family_matches_sklearn_gaussian_mixture(data):
    """The default (gmm with a covariance floor in standardised units) against scikit-learn's GaussianMixture."""
    from sklearn.mixture import GaussianMixture

    from genmodels.apps.anomaly import DEFAULT_HYPERPARAMETERS
    train, test = data
    det = AnomalyDetector(n_components=1, seed=0).fit(train)
    mu, sd = train.mean(0), train.std(0)
    gm = GaussianMixture(1, reg_covar=DEFAULT_HYPERPARAMETERS["reg_covar"], random_state=0).fit((train - mu) / sd)
    expected = -gm.score_samples((test - mu) / sd) + np.log(sd).sum()   # Jacobian back to raw units
    np.testing.assert_allclose(det.decision_function(test), expected, rtol=1e-4, atol=1e-4)


def test_dataframe_columns_and_constant_column():
    rng = np.random.default_rng(1)
    df = pd.DataFrame({"a": rng.normal(size=200), "b": rng.normal(size=200), "k": 3.0})
    det = AnomalyDetector(contamination=0.1).fit(df)
    assert det.constant_columns_ == {"k": 3.0}
    base = det.decision_function(df.head(5))
    moved = det.decision_function(df.head(5).assign(k=5.0))
    np.testing.assert_allclose(moved - base, 0.5 * 2.0 ** 2)           # N(3, 1) for the constant column
    np.testing.assert_allclose(det.decision_function(df[["b", "k", "a"]].head(5)), base)   # any column order
    with pytest.raises(DataError, match="missing \\['b'\\]"):
        det.decision_function(df[["a", "k"]])


@pytest.mark.parametrize("c", [0, -0.1, 0.6, 1.0, "0.1", True, float("nan")])
def test_bad_contamination(data, c):
    det = AnomalyDetector(contamination=c)                  # stored unchanged, checked in fit
    assert det.contamination is c
    with pytest.raises(ConfigError, match=r"contamination must be a number in \(0, 0.5\]"):
        det.fit(data[0])


def test_family_without_likelihood_is_refused(data):
    with pytest.raises(NoLikelihoodError) as e:
        AnomalyDetector("gan").fit(data[0])
    for name in likelihood_families():
        assert name in str(e.value)
    assert "gan" not in likelihood_families() and "gmm" in likelihood_families()


def test_unknown_family_and_hyperparameter(data):
    with pytest.raises(GenmodelsError, match="did you mean 'gmm'"):
        AnomalyDetector("gmn").fit(data[0])
    with pytest.raises(ConfigError, match="unknown hyper-parameters"):
        AnomalyDetector("gmm", n_compnents=2).fit(data[0])


def test_mismatched_columns_and_not_fitted(fitted, data):
    with pytest.raises(DataError, match="fitted on 3"):
        fitted.decision_function(data[1][:, :2])
    with pytest.raises(DataError, match="2-D"):
        fitted.decision_function(data[1][:, 0])
    with pytest.raises(NotFittedError, match="call fit"):
        AnomalyDetector().decision_function(data[1])
    with pytest.raises(ConfigError, match="method"):
        fitted.predict_proba(data[1], method="softmax")


def test_save_load_round_trip(fitted, data, tmp_path):
    fitted.save(tmp_path / "det")
    back = AnomalyDetector.load(tmp_path / "det")
    np.testing.assert_array_equal(back.decision_function(data[1]), fitted.decision_function(data[1]))
    assert back.threshold_ == fitted.threshold_ and back.contamination == 0.05
    np.testing.assert_array_equal(back.labels_, fitted.labels_)
    np.testing.assert_array_equal(back.predict_proba(data[1], "unify"), fitted.predict_proba(data[1], "unify"))
    assert back.get_params()["n_components"] == 1
    (tmp_path / "det" / DETECTOR_FILE).write_text("{not json")
    with pytest.raises(CheckpointError, match="corrupt"):
        AnomalyDetector.load(tmp_path / "det")
    with pytest.raises(CheckpointError, match="no saved AnomalyDetector"):
        AnomalyDetector.load(tmp_path)


def test_sklearn_clone_and_params(data):
    from sklearn.base import clone
    det = AnomalyDetector("kde", contamination=0.2, seed=3, bandwidth=0.5)
    twin = clone(det)
    assert twin.get_params() == det.get_params() and not hasattr(twin, "model_")
    twin.set_params(contamination=0.1, bandwidth=0.7)
    assert twin.contamination == 0.1 and twin.hyperparameters == {"bandwidth": 0.7}
    labels = twin.fit_predict(data[0])
    assert labels.mean() == pytest.approx(0.1, abs=1 / 300)
    assert "kde" in repr(twin)


def test_max_time_and_threads_pass_through(data):
    det = AnomalyDetector("vae", seed=0, num_threads=1, max_time=1.0, hidden=(16,), latent_dim=2).fit(data[0])
    assert det.model_.num_threads == 1
    assert det.model_.fit_info_["stopped"] == "max_time"                 # the budget reached the loop
    assert np.isfinite(det.decision_function(data[1])).all()
    with pytest.raises(ConfigError, match="max_time"):
        AnomalyDetector(max_time=-1).fit(data[0])


# ---------------------------------------------------------------- CLI
@pytest.fixture
def cli(monkeypatch):
    monkeypatch.setattr(genmodels.cli, "APP_COMMANDS", ("genmodels.apps.anomaly",))
    return genmodels.cli.main


def test_cli_detect_saved_detector(cli, fitted, data, tmp_path):
    fitted.save(tmp_path / "det")
    pd.DataFrame(data[1], columns=["x0", "x1", "x2"]).to_csv(tmp_path / "test.csv", index=False)
    assert cli(["detect", str(tmp_path / "det"), str(tmp_path / "test.csv"), "-o", str(tmp_path / "out.csv")]) == 0
    out = pd.read_csv(tmp_path / "out.csv")
    assert list(out.columns) == ["anomaly_score", "is_anomaly"]
    np.testing.assert_allclose(out["anomaly_score"], fitted.decision_function(data[1]), rtol=1e-9)
    np.testing.assert_array_equal(out["is_anomaly"], fitted.predict(data[1]))


def test_cli_detect_fit_and_plain_model(cli, data, tmp_path):
    cols = ["x0", "x1", "x2"]
    pd.DataFrame(data[0], columns=cols).to_csv(tmp_path / "train.csv", index=False)
    pd.DataFrame(data[1], columns=cols).to_csv(tmp_path / "test.csv", index=False)
    out = tmp_path / "out.parquet"
    assert cli(["detect", "--fit", str(tmp_path / "train.csv"), str(tmp_path / "test.csv"), "-o", str(out),
                "--model", "kde", "--save", str(tmp_path / "det")]) == 0
    assert pd.read_parquet(out)["is_anomaly"].iloc[100:].all()
    assert (tmp_path / "det" / DETECTOR_FILE).is_file()
    (tmp_path / "det" / DETECTOR_FILE).unlink()            # now a plain saved Model
    assert cli(["detect", str(tmp_path / "det"), str(tmp_path / "test.csv"), "-o", str(out),
                "--contamination", "0.25"]) == 0
    flags = pd.read_parquet(out)["is_anomaly"]
    assert flags.iloc[100:].all() and flags.sum() <= 30


def test_cli_user_errors_exit_2(cli, fitted, data, tmp_path, capsys):
    fitted.save(tmp_path / "det")
    pd.DataFrame(data[1][:, :2], columns=["x0", "x1"]).to_csv(tmp_path / "narrow.csv", index=False)
    assert cli(["detect", str(tmp_path / "det"), str(tmp_path / "narrow.csv"), "-o", str(tmp_path / "o.csv")]) == 2
    err = capsys.readouterr().err
    assert "genmodels detect: error:" in err and "fitted on 3" in err and "Traceback" not in err
    (tmp_path / "det" / DETECTOR_FILE).unlink()
    pd.DataFrame(data[1], columns=["x0", "x1", "x2"]).to_csv(tmp_path / "test.csv", index=False)
    assert cli(["detect", str(tmp_path / "det"), str(tmp_path / "test.csv"), "-o", str(tmp_path / "o.csv")]) == 2
    assert "--contamination" in capsys.readouterr().err
    assert cli(["detect", str(tmp_path / "det"), str(tmp_path / "test.csv"), "-o", str(tmp_path / "o.csv"),
                "--contamination", "0.9"]) == 2
    assert cli(["detect", "--fit", str(tmp_path / "test.csv"), str(tmp_path / "test.csv"), "-o",
                str(tmp_path / "o.csv"), "--model", "gan"]) == 2
    assert "no likelihood" in capsys.readouterr().err


def test_add_cli_on_own_parser():
    import argparse
    p = argparse.ArgumentParser()
    add_cli(p.add_subparsers(dest="command"))
    args = p.parse_args(["detect", "d", "x.csv", "-o", "y.csv", "--contamination", "0.2"])
    assert args.model_dir == "d" and args.data == "x.csv" and args.contamination == 0.2


def test_save_state_is_json(fitted, tmp_path):
    fitted.save(tmp_path / "d")
    state = json.loads((tmp_path / "d" / DETECTOR_FILE).read_text())
    assert state["params"]["contamination"] == 0.05 and len(state["decision_scores_"]) == 300


def test_images_are_pixel_columns_on_one_shared_scale(fitted, tmp_path):
    """(n, H, W) arrays: the pixels become columns on one shared scale s (the root of their mean
    variance), so the default's floor is isotropic in pixel units: with one component the score is
    -log N(x; mean, cov + 0.3 s^2 I) over the varying pixels, plus N(value, s) for a pixel that was
    constant in training (a closed form, computed here with scipy)."""
    from genmodels.apps.anomaly import DEFAULT_HYPERPARAMETERS
    from genmodels.codecs.image import Images
    rng = np.random.default_rng(4)
    spread = np.array([[0.0, 3.0, 0.3], [1.0, 2.0, 0.5], [4.0, 0.2, 1.0]])
    train = 8.0 + rng.normal(size=(300, 3, 3)) * spread           # pixel (0, 0) constant
    test = 8.0 + rng.normal(size=(40, 3, 3)) * spread * 1.5
    test[:5, 0, 0] += np.arange(5)
    det = AnomalyDetector(n_components=1, seed=0).fit(train)
    assert det.image_shape_ == (3, 3) and det.constant_columns_ == {"x0": 8.0}
    assert det.model_.codec_.scale == "shared"

    flat, tflat = train.reshape(300, 9)[:, 1:], test.reshape(40, 9)
    s2 = flat.var(0).mean()
    cov = np.cov(flat, rowvar=False, bias=True) + DEFAULT_HYPERPARAMETERS["reg_covar"] * s2 * np.eye(8)
    expected = (-multivariate_normal(flat.mean(0), cov).logpdf(tflat[:, 1:])
                + 0.5 * (tflat[:, 0] - 8.0) ** 2 / s2 + 0.5 * np.log(2 * np.pi * s2))
    np.testing.assert_allclose(det.decision_function(test), expected, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(det.decision_function(tflat), expected, rtol=1e-4, atol=1e-4)   # flat rows too
    np.testing.assert_allclose(det.decision_function(Images(test.astype(np.uint8))),
                               det.decision_function(test.astype(np.uint8)))

    with pytest.raises(DataError, match=r"fitted on images of shape \(3, 3\), got images of shape \(4, 4\)"):
        det.decision_function(np.zeros((2, 4, 4)))
    with pytest.raises(DataError, match="fitted on a table of 3 columns, got images"):
        fitted.decision_function(np.zeros((2, 3, 3)))
    own = AnomalyDetector(n_components=1, codec={"scale": "column"}).fit(train)    # the user's codec wins
    assert own.model_.codec_.scale == "column" and own.model_.codec_.atoms == "none"

    det.save(tmp_path / "img")
    back = AnomalyDetector.load(tmp_path / "img")
    assert back.image_shape_ == (3, 3) and back.constant_scale_ == det.constant_scale_
    np.testing.assert_array_equal(back.decision_function(test), det.decision_function(test))


def test_cli_detect_image_folders(cli, tmp_path, capsys):
    """Folders of PNGs: fitted on one, scored on another; the scores are the API's on the same pixels,
    and a folder of other-sized images is refused with the shapes named."""
    from PIL import Image

    from genmodels.codecs.image import read_folder
    rng = np.random.default_rng(5)
    bar = np.zeros((8, 8)); bar[:, 3:5] = 200                          # inliers: a vertical bar, plus noise
    for folder, n, odd in (("train", 60, 0), ("test", 20, 10)):
        (tmp_path / folder).mkdir()
        for i in range(n):
            img = np.rot90(bar) if i < odd else bar                     # the first `odd` test images: a horizontal bar
            px = np.clip(img + rng.normal(0, 20, (8, 8)), 0, 255).astype(np.uint8)
            Image.fromarray(px).save(tmp_path / folder / f"{i:03d}.png")
    out = tmp_path / "flags.csv"
    assert cli(["detect", "--fit", str(tmp_path / "train"), str(tmp_path / "test"), "-o", str(out),
                "--save", str(tmp_path / "det")]) == 0
    scores = pd.read_csv(out)["anomaly_score"].to_numpy()
    det = AnomalyDetector(seed=0).fit(read_folder(tmp_path / "train"))
    np.testing.assert_allclose(scores, det.decision_function(read_folder(tmp_path / "test").images), rtol=1e-9)
    assert scores[:10].min() > scores[10:].max()                        # the rotated bars score higher
    (tmp_path / "big").mkdir()
    Image.fromarray(np.zeros((9, 9), np.uint8)).save(tmp_path / "big" / "a.png")
    assert cli(["detect", str(tmp_path / "det"), str(tmp_path / "big"), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "images of shape (8, 8), got images of shape (9, 9)" in err and "Traceback" not in err
