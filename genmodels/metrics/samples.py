"""Sample-based two-sample metrics: classifier two-sample test (C2ST) and MMD.

Both compare a real sample with a synthetic one as arrays of features; ``table_to_features`` turns
two tables into such arrays with one shared encoding, so the metrics of ``tabular.py`` and these
agree on how a column is seen. Column kinds follow the tabular codec: "continuous", "integer",
"datetime" (numbers) and "categorical", "boolean", "constant" (sets of values).

Example::

    >>> Xr, Xs = table_to_features(real_df, synth_df, {"age": "integer", "sex": "categorical"})
    >>> c2st_auroc(Xr, Xs)          # 0.5: indistinguishable, ~1.0: separable
    >>> mmd_rbf(Xr, Xs)             # ~0 for the same distribution
"""
from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
import pandas as pd
from scipy.spatial.distance import cdist, pdist
from threadpoolctl import threadpool_limits

from ..errors import ConfigError, DataError

NUMERIC_KINDS = ("continuous", "integer", "datetime")
DISCRETE_KINDS = ("categorical", "boolean", "constant")


class _Missing:
    """The category that stands for a missing value: one object, equal only to itself, so it can
    never collide with a real value (a string "nan" or "<NA>" could)."""

    def __repr__(self) -> str:
        return "<missing>"


MISSING = _Missing()


# --------------------------------------------------------------------------- column helpers
def check_kinds(kinds: Mapping[str, str], **frames: pd.DataFrame) -> None:
    """Raise ConfigError for an unknown kind and DataError for a column absent from a frame."""
    if not kinds:
        raise ConfigError("kinds is empty; pass a dict column -> kind for the columns to compare")
    for col, kind in kinds.items():
        if kind not in NUMERIC_KINDS + DISCRETE_KINDS:
            raise ConfigError(f"column {col!r} has unknown kind {kind!r}; "
                              f"use one of {', '.join(NUMERIC_KINDS + DISCRETE_KINDS)}")
    for label, df in frames.items():
        if not isinstance(df, pd.DataFrame):
            raise DataError(f"{label} must be a pandas DataFrame, got {type(df).__name__}")
        if len(df) == 0:
            raise DataError(f"the {label} table has no rows; pass at least one row")
        absent = [c for c in kinds if c not in df.columns]
        if absent:
            raise DataError(f"column(s) {absent} are missing from the {label} table; "
                            f"it has {list(df.columns)}")


def numeric_values(s: pd.Series, kind: str = "continuous") -> np.ndarray:
    """Column as float64 with NaN for missing; datetimes become seconds since 1970-01-01 (UTC)."""
    if kind == "datetime" or pd.api.types.is_datetime64_any_dtype(s):
        try:
            s = pd.to_datetime(s)
        except (ValueError, TypeError) as e:
            raise DataError(f"column {s.name!r} is declared datetime but holds values that are not "
                            f"dates ({e}); fix the values or declare another kind") from e
        if getattr(s.dt, "tz", None) is not None:  # compare instants, not wall-clock times
            s = s.dt.tz_convert("UTC").dt.tz_localize(None)
        # seconds, not the raw integers: two frames may store different units (ns vs us)
        return (s - pd.Timestamp("1970-01-01")).dt.total_seconds().to_numpy(dtype=float, na_value=np.nan)
    if pd.api.types.is_bool_dtype(s):
        return s.to_numpy(dtype=float, na_value=np.nan)
    try:
        v = pd.to_numeric(s).to_numpy(dtype=float, na_value=np.nan)
    except (ValueError, TypeError) as e:
        raise DataError(f"column {s.name!r} is declared {kind} but holds non-numeric values ({e}); "
                        f"declare it categorical or fix the values") from e
    if np.isinf(v).any():
        raise DataError(f"column {s.name!r} holds infinite values; replace them or drop those rows")
    return v


def category_values(s: pd.Series) -> np.ndarray:
    """Column as an object array whose missing entries are the MISSING category."""
    out = s.astype(object).to_numpy(dtype=object, copy=True)
    out[s.isna().to_numpy()] = MISSING
    return out


def sorted_categories(*arrays: np.ndarray) -> list:
    """Union of the values of the arrays in a deterministic order (MISSING last)."""
    union = set()
    for a in arrays:
        union.update(a.tolist())
    return sorted(union, key=lambda v: (v is MISSING, type(v).__name__, str(v)))


# --------------------------------------------------------------------------- shared encoding
def table_to_features(real: pd.DataFrame, synth: pd.DataFrame,
                      kinds: Mapping[str, str]) -> tuple[np.ndarray, np.ndarray]:
    """Encode two tables with one shared encoding fitted on ``real``; returns float64 arrays.

    Numeric kinds (datetimes as seconds) are standardised by the real column's mean and standard
    deviation; where either table has a missing value the column gains a 0/1 missing indicator and
    missing entries become 0 (the mean). Discrete kinds are one-hot over the union of the two tables'
    values, missing being a value of its own, so a value only the synthetic table has still counts.
    Columns appear in the order of ``kinds``.
    """
    check_kinds(kinds, real=real, synth=synth)
    blocks_r: list[np.ndarray] = []
    blocks_s: list[np.ndarray] = []
    for col, kind in kinds.items():
        if kind in NUMERIC_KINDS:
            r, s = numeric_values(real[col], kind), numeric_values(synth[col], kind)
            obs = r[~np.isnan(r)]
            mu = obs.mean() if obs.size else 0.0
            sd = obs.std() if obs.size > 1 else 1.0
            if not np.isfinite(sd) or sd == 0:  # constant column: keep it, at unit scale
                sd = 1.0
            mr, ms = np.isnan(r), np.isnan(s)
            blocks_r.append(np.nan_to_num((r - mu) / sd, nan=0.0)[:, None])
            blocks_s.append(np.nan_to_num((s - mu) / sd, nan=0.0)[:, None])
            if mr.any() or ms.any():
                blocks_r.append(mr[:, None].astype(float))
                blocks_s.append(ms[:, None].astype(float))
        else:
            r, s = category_values(real[col]), category_values(synth[col])
            index = {v: i for i, v in enumerate(sorted_categories(r, s))}
            for values, blocks in ((r, blocks_r), (s, blocks_s)):
                onehot = np.zeros((len(values), len(index)))
                onehot[np.arange(len(values)), [index[v] for v in values]] = 1.0
                blocks.append(onehot)
    return np.hstack(blocks_r), np.hstack(blocks_s)


def _as_2d(a, label: str, allow_nan: bool = False) -> np.ndarray:
    try:
        x = np.asarray(a, dtype=float)
    except (ValueError, TypeError) as e:
        raise DataError(f"{label} must be numeric ({e}); encode a table with table_to_features first") from e
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2:
        raise DataError(f"{label} must be a 2-D array (n, d), got shape {x.shape}")
    if np.isinf(x).any() or (not allow_nan and np.isnan(x).any()):
        raise DataError(f"{label} holds NaN or infinite values; encode with table_to_features "
                        f"(which fills them and adds missing indicators) or drop those rows")
    return x


# --------------------------------------------------------------------------- C2ST
def _hgb(seed: int):
    from sklearn.ensemble import HistGradientBoostingClassifier
    return HistGradientBoostingClassifier(random_state=seed)


def _logistic(seed: int):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000, random_state=seed))


# name -> (factory(seed), accepts NaN)
_CLASSIFIERS: dict[str, tuple[Callable[[int], object], bool]] = {
    "hgb": (_hgb, True),
    "logistic": (_logistic, False),
}


def c2st_auroc(real, synth, *, seed: int = 0, n_folds: int = 5, classifier: str = "hgb",
               n_threads: int | None = None) -> float:
    """Classifier two-sample test: cross-validated AUROC of telling real rows from synthetic ones.

    The larger set is subsampled (without replacement, by ``seed``) to the size of the smaller, so
    chance is exactly 0.5; out-of-fold probabilities of a stratified K-fold split give the AUROC.
    0.5 means the classifier cannot tell the two apart, ~1.0 that they are separable (values a
    little under 0.5 are noise). ``classifier``: "hgb" (HistGradientBoostingClassifier, takes NaN)
    or "logistic" (standardised LogisticRegression, a linear test). ``n_threads`` caps the
    classifier's OpenMP/BLAS threads; by default 1 below 20,000 rows in all, else the library's
    default, because on a busy machine OpenMP threads that wait for a core make a small fit
    ~20x slower while the parallel gain on small data is slight.

    References: Lopez-Paz & Oquab, "Revisiting Classifier Two-Sample Tests", ICLR 2017.
    """
    if classifier not in _CLASSIFIERS:
        raise ConfigError(f"unknown classifier {classifier!r}; use one of {', '.join(_CLASSIFIERS)}")
    if int(n_folds) < 2:
        raise ConfigError(f"n_folds must be at least 2, got {n_folds}")
    factory, allow_nan = _CLASSIFIERS[classifier]
    xr, xs = _as_2d(real, "real", allow_nan), _as_2d(synth, "synth", allow_nan)
    if xr.shape[1] != xs.shape[1]:
        raise DataError(f"real has {xr.shape[1]} features but synth has {xs.shape[1]}; encode both alike")
    n = min(len(xr), len(xs))
    if n < n_folds:
        raise DataError(f"need at least n_folds={n_folds} rows in each sample, got {len(xr)} and {len(xs)}")
    rng = np.random.default_rng(seed)
    if len(xr) > n:
        xr = xr[np.sort(rng.choice(len(xr), n, replace=False))]
    if len(xs) > n:
        xs = xs[np.sort(rng.choice(len(xs), n, replace=False))]

    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    x = np.vstack([xr, xs])
    y = np.r_[np.zeros(n, dtype=int), np.ones(n, dtype=int)]
    cv = StratifiedKFold(n_splits=int(n_folds), shuffle=True, random_state=seed)
    limit = n_threads if n_threads is not None else (1 if len(x) < 20_000 else None)
    with threadpool_limits(limits=limit):   # limits=None leaves the thread pools as they are
        proba = cross_val_predict(factory(seed), x, y, cv=cv, method="predict_proba")[:, 1]
    return float(roc_auc_score(y, proba))


# --------------------------------------------------------------------------- MMD
def _kernel_sum(a: np.ndarray, b: np.ndarray, gamma: float, block: int = 1024) -> float:
    """sum_ij exp(-gamma ||a_i - b_j||^2), in row blocks so memory stays O(block * len(b))."""
    total = 0.0
    for i in range(0, len(a), block):
        total += np.exp(-gamma * cdist(a[i:i + block], b, "sqeuclidean")).sum()
    return float(total)


def median_bandwidth(x: np.ndarray, y: np.ndarray, max_points: int = 2000, seed: int = 0) -> float:
    """Median pairwise Euclidean distance of the pooled sample (a fixed subsample above max_points)."""
    z = np.vstack([x, y])
    if len(z) > max_points:  # the median is stable long before O(n^2) pairs
        z = z[np.random.default_rng(seed).choice(len(z), max_points, replace=False)]
    h = float(np.median(pdist(z)))
    return h if h > 0 else 1.0  # all points equal: any bandwidth gives MMD 0


def mmd_rbf(X, Y, bandwidth: float | None = None) -> float:
    """Unbiased estimate of MMD^2 between samples X (n, d) and Y (m, d) with a Gaussian kernel.

    k(x, y) = exp(-||x - y||^2 / (2 h^2)); ``bandwidth`` h defaults to the median pairwise distance
    of the pooled sample (median heuristic). The unbiased estimate drops the i == j terms, so it
    can be slightly negative when the two distributions are equal.

    References: Gretton et al., "A Kernel Two-Sample Test", JMLR 13, 2012 (eq. 3 and section 8).
    """
    x, y = _as_2d(X, "X"), _as_2d(Y, "Y")
    if x.shape[1] != y.shape[1]:
        raise DataError(f"X has {x.shape[1]} features but Y has {y.shape[1]}")
    n, m = len(x), len(y)
    if n < 2 or m < 2:
        raise DataError(f"the unbiased MMD needs at least 2 rows in each sample, got {n} and {m}")
    h = median_bandwidth(x, y) if bandwidth is None else float(bandwidth)
    if not h > 0:
        raise ConfigError(f"bandwidth must be positive, got {bandwidth}")
    gamma = 1.0 / (2.0 * h * h)
    # k(x, x) = 1 exactly on the diagonals (cdist gives exact zeros there), so subtract n and m
    kxx = (_kernel_sum(x, x, gamma) - n) / (n * (n - 1))
    kyy = (_kernel_sum(y, y, gamma) - m) / (m * (m - 1))
    kxy = _kernel_sum(x, y, gamma) / (n * m)
    return float(kxx + kyy - 2.0 * kxy)
