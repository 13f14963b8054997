"""Anomaly detection by likelihood, with PyOD's conventions, so it drops into existing code.

A row's anomaly score is its negative log-likelihood (nats) under a generative model fitted on the
training rows: higher means more anomalous. As in PyOD, training data may hold some anomalies
(``contamination`` is their expected share); the threshold is the ``1 - contamination`` quantile of
the training scores.

Images ((n, H, W) or (n, H, W, C) arrays, or ``Images``) are scored as rows of pixel columns that
share one scale (the tabular codec's ``scale="shared"``, no point masses): pixels are in one unit, so
a pixel that is rarely inked keeps its small spread instead of being blown up to unit variance, and
a stray stroke there does not outweigh the shape of the whole image.

>>> import numpy as np, genmodels as gm
>>> X = np.random.default_rng(0).normal(size=(300, 3))
>>> det = AnomalyDetector(contamination=0.05, seed=0).fit(X)
>>> det.decision_scores_.shape, int(det.labels_.sum())
((300,), 15)
>>> bool(det.decision_function(np.array([[8.0, 8.0, 8.0]]))[0] > det.threshold_)
True

Command line (registered through ``add_cli``)::

    genmodels detect DIR DATA -o FILE                 # DIR saved by AnomalyDetector.save
    genmodels detect DIR DATA -o FILE --contamination C   # DIR a plain saved Model (see cmd_detect)
    genmodels detect --fit TRAIN DATA -o FILE [--model FAMILY] [--contamination C] [--save DIR]
"""
from __future__ import annotations

import argparse
import json
import math
import numbers
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .. import registry
from ..errors import (
    CheckpointError,
    ConfigError,
    DataError,
    NoLikelihoodError,
    NotFittedError,
)
from ..model import Model
from . import KeywordParams

# Chosen by measurement (benchmarks/anomaly.py; results in benchmarks/results/anomaly.md). On the 17
# ODDS sets with PyOD's protocol (contaminated training data, standardised features), selection
# splits 100-101 (not the benchmark's 0-9), mean ROC-AUC: gmm with reg_covar=0.3 0.817, 0.1 0.813,
# 1.0 0.809, the family's own 1e-6 0.755, diagonal covariances (0.1) 0.779, one component 0.80,
# kde 0.699. On digits one-class (selection seeds) gmm 0.976, kde 0.979, vae 0.971, flow 0.964,
# autoregressive 0.941 (8 s budgets). So: a Gaussian mixture, components by BIC, full covariances,
# and a covariance floor of 0.3 in standardised units (the codec scales every column to unit
# variance). The floor matters: ODDS sets have few rows for their width (arrhythmia: 272 training
# rows, 274 columns) and columns with a handful of values, on which a component with scikit-learn's
# 1e-6 floor collapses. It also fits in about a second on every set, with no time budget to tune.
# More components help clean one-class data (digits, selection seeds 100-109: BIC 0.976, k=8 0.980)
# but hurt contaminated data (ODDS splits 100-101: BIC 0.826, k=8 0.778; musk falls from 0.99 to 0.23
# because a component takes the anomalies' cluster), so BIC stays. Low-rank covariances (gmm's
# rank=q, mixtures of probabilistic PCA) did not help digits either (selection seeds: rank 8 0.974,
# D//4 0.976, D//2 0.977; with reg_covar 0.01 and rank 16, 0.978; rank 16 with 8 components 0.980).
# Numpy prototypes of one Gaussian did no better on digits (selection seeds): Ledoit-Wolf 0.977, OAS
# 0.977, graphical lasso 0.972-0.975, Yeo-Johnson marginals 0.953-0.971; trimmed refits of this
# default (drop the training rows with the highest NLL, 0.5-2 x contamination, refit) 0.964-0.970; a
# KDE with a whitened kernel 0.979 (0.983 on the benchmark's seeds), and KDEs suit contaminated data badly;
# scikit-learn mixtures with one tied covariance, k = 1 to 16, 0.975-0.977. All of those fitted digits
# standardised pixel by pixel, which blows a rarely inked border pixel up to unit variance; given as
# images, with one shared pixel scale (IMAGE_CODEC), the same default reaches 0.9964 on the selection
# seeds (floors 0.1 and 1.0 of the mean pixel variance: 0.9956, 0.9963), 0.9970 on the benchmark's.
DEFAULT_FAMILY = "gmm"
DEFAULT_HYPERPARAMETERS: dict[str, Any] = {"reg_covar": 0.3}
IMAGE_CODEC: dict[str, Any] = {"scale": "shared", "atoms": "none"}   # the codec for images' pixel columns
DETECTOR_FILE = "anomaly.json"
PROBA_METHODS = ("linear", "unify")
_LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)


def likelihood_families() -> list[str]:
    """Registered families that can score data (``likelihood`` is "exact" or "bound")."""
    return registry.families_where("tabular", lambda c: c.likelihood != "none")


class AnomalyDetector(KeywordParams):
    """Outlier detector scoring rows by negative log-likelihood under a ``genmodels.Model``.

    Follows PyOD's ``BaseDetector``: ``fit`` returns self and sets ``decision_scores_`` (training
    scores), ``threshold_`` (their ``1 - contamination`` quantile) and ``labels_`` (1 = outlier);
    ``decision_function``, ``predict``, ``predict_proba`` and ``fit_predict`` behave as PyOD's. The
    constructor stores its arguments unchanged (scikit-learn's ``clone`` and grid search work); they
    are checked in ``fit``.

    Args:
        family: a family with a likelihood (``likelihood_families()``); None: the default,
            ``"gmm"`` with ``reg_covar=0.3``, chosen by the ODDS benchmark (see DEFAULT_FAMILY).
        contamination: expected share of anomalies in the training data, in (0, 0.5].
        seed: seed of the model (None: 0, so fits repeat).
        num_threads: torch CPU threads while fitting and scoring (None: torch's default).
        max_time: training budget in seconds for gradient-trained families (closed-form ones ignore it).
        device: "auto", "cpu", "cuda", ...
        **hyperparameters: the family's and the training loop's, as for ``genmodels.Model``; with
            ``family=None`` they update the default's.

    ``X`` is a table (DataFrame, 2-D array, CSV/Parquet path) or images ((n, H, W) or (n, H, W, C)
    arrays, ``Images``): pixels become columns on one shared scale (see the module docstring; a
    ``codec`` hyper-parameter overrides ``IMAGE_CODEC`` key by key). Scoring takes the same kind of
    data: images of the training shape, or their flattened rows.

    Columns that hold one value in the training data carry no density a model can learn; they are
    left out of the model and scored as a Gaussian of standard deviation ``CONSTANT_SCALE`` (in the
    column's units; for images, the pixels' shared scale) around that value, so a new row that
    departs from it scores higher, finitely.

    Attributes (after fit): ``model_``, ``decision_scores_``, ``threshold_``, ``labels_``,
    ``n_features_in_``, ``feature_names_in_`` (DataFrame input), ``constant_columns_``,
    ``constant_scale_``, ``image_shape_`` (None for a table).
    """

    CONSTANT_SCALE = 1.0

    def __init__(self, family: str | None = None, contamination: float = 0.1, seed: int | None = None,
                 num_threads: int | None = None, max_time: float | None = None, device: str = "auto",
                 **hyperparameters: Any):
        self.family = family
        self.contamination = contamination
        self.seed = seed
        self.num_threads = num_threads
        self.max_time = max_time
        self.device = device
        self.hyperparameters = hyperparameters

    # ------------------------------------------------------------------ scikit-learn parameters
    _EXPLICIT = ("family", "contamination", "seed", "num_threads", "max_time", "device")
    _KW = "hyperparameters"

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"AnomalyDetector({args})"

    # ------------------------------------------------------------------ validation
    def _check_params(self) -> tuple[str, dict[str, Any]]:
        c = self.contamination
        if isinstance(c, bool) or not isinstance(c, numbers.Real) or not (0 < c <= 0.5):
            raise ConfigError(f"contamination must be a number in (0, 0.5], the expected share of anomalies "
                              f"in the training data, got {c!r}; e.g. contamination=0.1")
        if self.max_time is not None and (isinstance(self.max_time, bool) or not isinstance(self.max_time, numbers.Real)
                                          or not self.max_time > 0):
            raise ConfigError(f"max_time must be a positive number of seconds or None, got {self.max_time!r}")
        if self.seed is not None and (isinstance(self.seed, bool) or not isinstance(self.seed, numbers.Integral)):
            raise ConfigError(f"seed must be an integer or None, got {self.seed!r}")
        if self.family is None:
            return DEFAULT_FAMILY, {**DEFAULT_HYPERPARAMETERS, **self.hyperparameters}
        if not isinstance(self.family, str):
            raise ConfigError(f"family must be a family name or None, got {self.family!r}")
        if registry.family(self.family).likelihood == "none":         # unknown names fail here, with the list
            raise NoLikelihoodError(f"the {self.family!r} family has no likelihood, so it cannot score anomalies; "
                                    f"use one of {likelihood_families()} (or family=None for the default)")
        return self.family, dict(self.hyperparameters)

    def _check_fitted(self, what: str) -> None:
        if not hasattr(self, "model_"):
            raise NotFittedError(f"this AnomalyDetector is not fitted yet; call fit(X) before {what}")

    # ------------------------------------------------------------------ data
    @staticmethod
    def _table(X: Any) -> pd.DataFrame:
        """The codec's own coercion (DataFrame, 2-D array, CSV/Parquet path); lists of rows too."""
        return registry.codec("tabular").coerce(np.asarray(X) if isinstance(X, (list, tuple)) else X)

    def _split(self, X: Any, fitting: bool) -> tuple[pd.DataFrame, pd.DataFrame]:
        """(columns the model sees, all columns: ``_constant_nll`` scores the rest)."""
        df = self._table(self._flat_pixels(X, fitting))
        if fitting:
            if df.shape[0] < 2 or df.shape[1] == 0:
                raise DataError(f"need at least 2 rows and 1 column to fit a detector, got {df.shape}")
            self.n_features_in_ = df.shape[1]
            if isinstance(X, pd.DataFrame):
                self.feature_names_in_ = np.asarray(list(map(str, df.columns)), dtype=object)
            self.constant_columns_ = {str(k): float(df[k].iloc[0]) for k in df.columns
                                      if pd.api.types.is_numeric_dtype(df[k].dtype)
                                      and not pd.api.types.is_bool_dtype(df[k].dtype)
                                      and df[k].notna().all() and df[k].nunique() == 1}
            if len(self.constant_columns_) == df.shape[1]:
                raise DataError("every column holds a single value in the training data; there is nothing to "
                                "learn; give data that varies")
        else:
            df = self._check_columns(df, X)
        keep = [c for c in df.columns if str(c) not in self.constant_columns_]
        return df[keep], df

    def _flat_pixels(self, X: Any, fitting: bool) -> Any:
        """Images ((n, H, W) or (n, H, W, C) arrays, ``Images``, a folder of image files) as a table of
        pixel columns; sets ``image_shape_`` when fitting (None for a table) and checks it when scoring."""
        from ..codecs.image import ImageCodec, Images
        if isinstance(X, (str, os.PathLike)) and ImageCodec.accepts(X):
            X = ImageCodec.coerce(X)
        pixels = X.images if isinstance(X, Images) else X
        is_images = isinstance(pixels, np.ndarray) and pixels.ndim in (3, 4)
        if fitting:
            self.image_shape_ = tuple(int(v) for v in pixels.shape[1:]) if is_images else None
        elif is_images and tuple(pixels.shape[1:]) != self.image_shape_:
            fitted = ("a table of " + f"{self.n_features_in_} columns" if self.image_shape_ is None
                      else f"images of shape {self.image_shape_}")
            raise DataError(f"the detector was fitted on {fitted}, got images of shape {tuple(pixels.shape[1:])}; "
                            "score data shaped like the training data")
        return pixels.reshape(len(pixels), -1) if is_images else X

    def _check_columns(self, df: pd.DataFrame, X: Any) -> pd.DataFrame:
        names = getattr(self, "feature_names_in_", None)
        if names is not None and isinstance(X, pd.DataFrame):
            given = list(map(str, df.columns))
            missing = [n for n in names if n not in given]
            extra = [n for n in given if n not in set(names)]
            if missing or extra:
                raise DataError(f"the columns do not match those the detector was fitted on: missing {missing}, "
                                f"extra {extra}; give exactly the columns {list(names)}")
            return df.set_axis(given, axis=1)[list(names)]
        if df.shape[1] != self.n_features_in_:
            raise DataError(f"X has {df.shape[1]} columns but the detector was fitted on {self.n_features_in_}; "
                            "give rows with the same columns, in the same order")
        if names is not None:                       # fitted on a DataFrame, scored with an array
            df = df.set_axis(list(names), axis=1)
        return df

    @property
    def constant_scale_(self) -> float:
        """Deviation of the Gaussian that scores a constant column: ``CONSTANT_SCALE`` in the column's
        units, or for images on one shared pixel scale that scale (the model's codec's, an average
        pixel's deviation)."""
        codec = self.model_.codec_
        if self.image_shape_ is not None and getattr(codec, "scale", "column") == "shared":
            return float(codec.numeric_[0].std)
        return self.CONSTANT_SCALE

    def _constant_nll(self, df: pd.DataFrame) -> np.ndarray:
        out = np.zeros(len(df))
        s = self.constant_scale_
        for name, value in self.constant_columns_.items():
            v = pd.to_numeric(df[name], errors="coerce").to_numpy(dtype=np.float64)
            if not np.isfinite(v).all():
                raise DataError(f"column {name!r} holds missing or non-numeric values; it held only {value} in "
                                "training; fix or remove those rows")
            out += 0.5 * ((v - value) / s) ** 2 + math.log(s) + _LOG_SQRT_2PI
        return out

    # ------------------------------------------------------------------ fit and score
    def fit(self, X: Any, y: Any = None, verbose: bool = False) -> AnomalyDetector:
        """Fit the model on ``X`` (unlabelled; ``y`` is ignored, as in PyOD); returns self."""
        family, hyper = self._check_params()
        df, whole = self._split(X, fitting=True)
        if self.image_shape_ is not None:         # pixels share one unit: keep their relative spreads
            hyper = {**hyper, "codec": {**IMAGE_CODEC, **(hyper.get("codec") or {})}}
        model = Model(family, seed=0 if self.seed is None else int(self.seed), device=self.device,
                      num_threads=self.num_threads, **hyper)
        # closed-form families (GMM, KDE) see every row (KDE picks its bandwidth by cross-validation);
        # gradient-trained ones hold out 10% for early stopping, as Model.fit does
        validation = 0.0 if registry.family(family).closed_form else 0.1
        self.model_ = model.fit(df, max_time=self.max_time, verbose=verbose, validation=validation)
        self.family_ = family
        self.decision_scores_ = -self.model_.log_prob(df) + self._constant_nll(whole)
        self._set_threshold()
        return self

    def _set_threshold(self) -> None:
        self.threshold_ = float(np.quantile(self.decision_scores_, 1.0 - float(self.contamination)))
        self.labels_ = (self.decision_scores_ > self.threshold_).astype(int)

    def decision_function(self, X: Any) -> np.ndarray:
        """Anomaly score of each row: negative log-likelihood in nats (higher = more anomalous), shape (n,)."""
        self._check_fitted("decision_function")
        df, whole = self._split(X, fitting=False)
        return -self.model_.log_prob(df) + self._constant_nll(whole)

    def score_samples(self, X: Any) -> np.ndarray:
        """Log-likelihood of each row (scikit-learn's convention: lower = more anomalous)."""
        return -self.decision_function(X)

    def predict(self, X: Any, return_confidence: bool = False) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """1 for rows scoring above ``threshold_``, else 0; with ``return_confidence``, also each
        label's confidence in [0, 1] (ExCeeD, Perini et al. 2020)."""
        scores = self.decision_function(X)
        labels = (scores > self.threshold_).astype(int)
        return (labels, self._confidence(scores, labels)) if return_confidence else labels

    def _confidence(self, scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """ExCeeD: a row's outlier probability is the Bayesian (Beta(1, 1)) share of training scores
        at or below it; confidence is the probability that at least n(1 - contamination) of n draws fall
        below it, i.e. that the row would be flagged again on a fresh training set."""
        from scipy.stats import binom
        train = np.sort(self.decision_scores_)
        n = len(train)
        p = (1 + np.searchsorted(train, scores, side="right")) / (2 + n)
        conf = 1.0 - binom.cdf(n - int(n * float(self.contamination)), n, p)
        return np.where(labels == 1, conf, 1.0 - conf)

    def predict_proba(self, X: Any, method: str = "linear", return_confidence: bool = False) -> np.ndarray | tuple:
        """(n, 2) array: probability of inlier (column 0) and outlier (column 1).

        method "linear": the score min-max scaled by the training scores, clipped to [0, 1];
        "unify": erf of the score standardised by the training scores' mean and deviation, clipped
        to [0, 1] (Kriegel et al. 2011, "Interpreting and unifying outlier scores").
        """
        if method not in PROBA_METHODS:
            raise ConfigError(f"method={method!r} is not a way to turn scores into probabilities; "
                              f"use one of {PROBA_METHODS}")
        scores = self.decision_function(X)
        train = self.decision_scores_
        if method == "linear":
            span = float(train.max() - train.min()) or 1.0
            p = np.clip((scores - train.min()) / span, 0.0, 1.0)
        else:
            from scipy.special import erf
            sd = float(train.std()) or 1.0
            p = np.clip(erf((scores - train.mean()) / (sd * math.sqrt(2))), 0.0, 1.0)
        proba = np.column_stack([1.0 - p, p])
        if return_confidence:
            return proba, self._confidence(scores, (scores > self.threshold_).astype(int))
        return proba

    def fit_predict(self, X: Any, y: Any = None) -> np.ndarray:
        """Fit on ``X`` and return its labels (``labels_``)."""
        return self.fit(X, y).labels_

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | os.PathLike) -> Path:
        """Save the model (as ``Model.save``) and, in ``anomaly.json`` beside it, the detector's state."""
        self._check_fitted("save")
        folder = Path(self.model_.save(path) or path)
        state = {"format": "genmodels-anomaly", "version": 1, "params": _jsonable_params(self.get_params()),
                 "family_": self.family_, "threshold_": self.threshold_, "n_features_in_": self.n_features_in_,
                 "feature_names_in_": None if getattr(self, "feature_names_in_", None) is None
                 else list(self.feature_names_in_),
                 "constant_columns_": self.constant_columns_, "image_shape_": self.image_shape_,
                 "decision_scores_": self.decision_scores_.tolist()}
        tmp = folder / f".{DETECTOR_FILE}.tmp"
        tmp.write_text(json.dumps(state))
        os.replace(tmp, folder / DETECTOR_FILE)
        return folder

    @classmethod
    def load(cls, path: str | os.PathLike, device: str = "auto") -> AnomalyDetector:
        """A detector saved by ``save``."""
        f = Path(path) / DETECTOR_FILE
        if not f.is_file():
            raise CheckpointError(f"{path} holds no saved AnomalyDetector (no {DETECTOR_FILE}); give a folder "
                                  "written by AnomalyDetector.save, or load a plain model with genmodels.load")
        try:
            state = json.loads(f.read_text())
            det = cls(**{**state["params"], "device": device})
            det.model_ = Model.load(path, device=device)
            det.family_, det.threshold_ = state["family_"], float(state["threshold_"])
            det.n_features_in_ = int(state["n_features_in_"])
            if state["feature_names_in_"] is not None:
                det.feature_names_in_ = np.asarray(state["feature_names_in_"], dtype=object)
            det.constant_columns_ = {k: float(v) for k, v in state["constant_columns_"].items()}
            shape = state.get("image_shape_")
            det.image_shape_ = None if shape is None else tuple(int(v) for v in shape)
            det.decision_scores_ = np.asarray(state["decision_scores_"], dtype=np.float64)
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
            raise CheckpointError(f"{f} is corrupt or incomplete ({e}); save the detector again") from None
        det.labels_ = (det.decision_scores_ > det.threshold_).astype(int)
        return det

    @classmethod
    def from_model(cls, model: Model, X: Any, contamination: float = 0.1) -> AnomalyDetector:
        """A detector around an already fitted ``model``, its threshold set from the scores of ``X``."""
        if not hasattr(model, "module_"):
            raise NotFittedError("the model is not fitted; fit it (or load a saved one) first")
        det = cls(family=model.family, contamination=contamination, seed=model.seed)
        det._check_params()
        det.model_, det.family_ = model, model.family
        columns = [c.name for c in getattr(model.codec_, "columns_", [])]
        det.n_features_in_, det.constant_columns_ = len(columns), {}
        det.image_shape_ = None
        det.feature_names_in_ = np.asarray(columns, dtype=object)
        df = det._table(X)
        if not isinstance(X, pd.DataFrame) and df.shape[1] == len(columns):
            df.columns = columns                   # arrays are read in the model's column order
        det.decision_scores_ = -model.log_prob(df)
        det._set_threshold()
        return det


def _jsonable_params(params: dict[str, Any]) -> dict[str, Any]:
    try:
        json.dumps(params)
    except TypeError as e:
        raise ConfigError(f"the detector's parameters cannot be saved as JSON ({e}); use plain numbers, "
                          "strings and lists") from None
    return params


# ====================================================================== command line
def add_cli(sub: Any) -> None:
    """Register ``genmodels detect`` on the CLI's sub-command parsers."""
    s = sub.add_parser("detect", help="anomaly score and flag of each row",
                       description="Score rows by negative log-likelihood and flag those above the threshold.")
    s.add_argument("model_dir", nargs="?", default=None,
                   help="folder from AnomalyDetector.save (or a plain saved model, with --contamination)")
    s.add_argument("data", help="rows to score: CSV/Parquet path, image folder or built-in data set name (its test "
                                "split); images are scored as pixel columns on one shared scale")
    s.add_argument("-o", "--output", required=True, help=".csv or .parquet with anomaly_score, is_anomaly")
    s.add_argument("--contamination", type=float, default=None,
                   help="expected share of anomalies; for a plain model folder the threshold is this quantile "
                        "of DATA's own scores")
    s.add_argument("--fit", default=None, metavar="TRAIN", help="fit a detector on TRAIN first (no DIR needed)")
    s.add_argument("--model", default=None, help="family for --fit (default: the detector's default)")
    s.add_argument("--max-time", type=float, default=None, help="training budget in seconds for --fit")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--save", default=None, metavar="DIR", help="with --fit: save the detector here")
    s.add_argument("--device", default="auto")
    s.set_defaults(func=cmd_detect)


def _detector_for(args: argparse.Namespace, data: Any) -> AnomalyDetector:
    """The detector the arguments name (see ``cmd_detect``)."""
    from ..cli import _data
    contamination = 0.1 if args.contamination is None else args.contamination
    if args.fit is not None:
        if args.model_dir is not None:
            raise ConfigError("give either DIR (a saved detector) or --fit TRAIN, not both")
        det = AnomalyDetector(args.model, contamination=contamination, seed=args.seed,
                              max_time=args.max_time, device=args.device)
        det.fit(_data(args.fit, "train"))
        if args.save:
            det.save(args.save)
        return det
    if args.model_dir is None:
        raise ConfigError("give DIR, a folder saved by AnomalyDetector.save, or --fit TRAIN to fit one")
    if (Path(args.model_dir) / DETECTOR_FILE).is_file():
        det = AnomalyDetector.load(args.model_dir, device=args.device)
        if args.contamination is not None:           # re-threshold on the training scores
            det.set_params(contamination=args.contamination)._check_params()
            det._set_threshold()
        return det
    if args.contamination is None:
        raise ConfigError(f"{args.model_dir} is a plain saved model, with no detector threshold; pass "
                          "--contamination C to flag the share C of DATA's own rows, or save an "
                          "AnomalyDetector there")
    from ..model import load
    return AnomalyDetector.from_model(load(args.model_dir, device=args.device), data, contamination)


def cmd_detect(args: argparse.Namespace) -> None:
    """Write ``anomaly_score`` (negative log-likelihood, nats) and ``is_anomaly`` (0/1) per row of DATA.

    DIR saved by ``AnomalyDetector.save``: its threshold (from its training scores) is used, or
    re-computed from those training scores when ``--contamination`` is given. DIR a plain saved
    ``Model``: there are no training scores, so ``--contamination C`` is required and the rows of
    DATA scoring in its top share C are flagged. ``--fit TRAIN`` fits a detector on TRAIN first.
    """
    from ..cli import _console, _data, _write
    data = _data(args.data, "test")
    det = _detector_for(args, data)
    scores = det.decision_function(data)
    flags = (scores > det.threshold_).astype(int)
    _write(pd.DataFrame({"anomaly_score": scores, "is_anomaly": flags}), args.output)
    _console(stderr=True).print(f"wrote {len(scores)} rows to {args.output}: {int(flags.sum())} flagged as anomalies "
                                f"(threshold {det.threshold_:.4f} nats)")
