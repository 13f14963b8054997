"""Fidelity and privacy metrics for synthetic tables.

Fidelity: how close each column's distribution is (``marginal_distances``) and how close the
pairwise linear dependence is (``correlation_difference``). Privacy: how near synthetic rows sit to
training rows (``distance_to_closest_record``) and how many are verbatim copies (``copy_rate``;
``row_hashes`` + ``copy_rate_from_hashes`` let a saved model answer that without the training data).

Column kinds follow the tabular codec: "continuous", "integer", "datetime", "categorical",
"boolean", "constant".

Example::

    >>> kinds = {"age": "integer", "income": "continuous", "sex": "categorical"}
    >>> marginal_distances(real, synth, kinds)      # {"age": 0.04, "income": 0.06, "sex": 0.01}
    >>> copy_rate(train, synth)                     # 0.0: no synthetic row is a training row
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from ..errors import DataError
from .samples import (NUMERIC_KINDS, category_values, check_kinds, numeric_values,
                      sorted_categories, table_to_features)


# --------------------------------------------------------------------------- marginals
def ks_statistic_with_missing(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sample KS statistic where a missing value (NaN) is an atom below every number.

    sup_x |F_a(x) - F_b(x)| over the two empirical CDFs; the atom makes the statistic at least
    the difference of the missing rates, and without missing values it is scipy's ks_2samp.
    """
    a = np.sort(np.where(np.isnan(a), -np.inf, a))
    b = np.sort(np.where(np.isnan(b), -np.inf, b))
    points = np.concatenate([a, b])
    fa = np.searchsorted(a, points, side="right") / len(a)
    fb = np.searchsorted(b, points, side="right") / len(b)
    return float(np.max(np.abs(fa - fb)))


def total_variation(a: np.ndarray, b: np.ndarray) -> float:
    """Total variation distance 1/2 sum_v |p_a(v) - p_b(v)| between two samples' frequency vectors."""
    ca, cb = Counter(a.tolist()), Counter(b.tolist())
    na, nb = len(a), len(b)
    return float(0.5 * sum(abs(ca[v] / na - cb[v] / nb) for v in sorted_categories(a, b)))


def marginal_distances(real: pd.DataFrame, synth: pd.DataFrame,
                       kinds: Mapping[str, str]) -> dict[str, float]:
    """Per-column distance between the real and synthetic marginals, in [0, 1] (0: identical).

    Numeric kinds ("continuous", "integer", "datetime"): the two-sample Kolmogorov-Smirnov
    statistic, with a missing value counted as an atom below all numbers, so a different missing
    rate shows (without missing values this equals scipy.stats.ks_2samp). Discrete kinds
    ("categorical", "boolean", "constant"): total variation distance between the category
    frequencies, missing being a category of its own.

    References: Massey, "The Kolmogorov-Smirnov Test for Goodness of Fit", JASA 1951; SDMetrics'
    KSComplement / TVComplement (which report 1 - these).
    """
    check_kinds(kinds, real=real, synth=synth)
    out: dict[str, float] = {}
    for col, kind in kinds.items():
        if kind in NUMERIC_KINDS:
            out[col] = ks_statistic_with_missing(numeric_values(real[col], kind),
                                                 numeric_values(synth[col], kind))
        else:
            out[col] = total_variation(category_values(real[col]), category_values(synth[col]))
    return out


# --------------------------------------------------------------------------- correlations
def _numeric_frame(df: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    return pd.DataFrame({c: numeric_values(df[c]) for c in columns})


def correlation_difference(real: pd.DataFrame, synth: pd.DataFrame, columns: Sequence[str]) -> float:
    """Mean absolute difference of the pairwise Pearson correlations of numeric ``columns``.

    Averaged over the pairs i < j; each correlation uses the rows where both columns are present
    (pairwise deletion). A correlation that is undefined (a constant column, fewer than 2 shared
    rows) counts as 0, so a synthetic column that collapsed to a constant is penalised rather than
    skipped. 0.0 when fewer than 2 columns are given.
    """
    columns = [c for c in columns]
    if len(columns) < 2:
        return 0.0
    for label, df in (("real", real), ("synth", synth)):
        absent = [c for c in columns if c not in df.columns]
        if absent:
            raise DataError(f"column(s) {absent} are missing from the {label} table")
    cr = _numeric_frame(real, columns).corr(method="pearson").to_numpy()
    cs = _numeric_frame(synth, columns).corr(method="pearson").to_numpy()
    iu = np.triu_indices(len(columns), k=1)
    return float(np.mean(np.abs(np.nan_to_num(cr[iu]) - np.nan_to_num(cs[iu]))))


# --------------------------------------------------------------------------- privacy
def distance_to_closest_record(train: pd.DataFrame, synth: pd.DataFrame,
                               kinds: Mapping[str, str]) -> np.ndarray:
    """Per synthetic row, the Euclidean distance to its nearest training row, shape (len(synth),).

    Rows are encoded by ``table_to_features`` fitted on ``train``: numeric columns standardised by
    the training mean and std (with a 0/1 missing indicator where values are missing), discrete
    columns one-hot (two rows differing in one category are sqrt(2) apart). Distances of 0 are
    copies; compare with the same statistic of a held-out real set against train.

    References: Park et al., "Data Synthesis based on Generative Adversarial Networks", VLDB 2018.
    """
    from sklearn.neighbors import NearestNeighbors

    xt, xs = table_to_features(train, synth, kinds)
    dist, _ = NearestNeighbors(n_neighbors=1).fit(xt).kneighbors(xs)
    return dist[:, 0]


_MISSING_TOKEN = "\x00<missing>\x00"  # stands for a missing value in string columns when hashing


def _canonical_column(s: pd.Series) -> np.ndarray:
    """One column in a dtype-independent form, so equal values hash equally (1 == 1.0, NaN == NaN)."""
    if isinstance(s.dtype, pd.CategoricalDtype) or s.dtype == object:
        s = s.astype(object).infer_objects()  # an object column of numbers is a numeric column
    if pd.api.types.is_datetime64_any_dtype(s):
        if getattr(s.dt, "tz", None) is not None:
            s = s.dt.tz_convert("UTC").dt.tz_localize(None)
        # integers, not floats: nanoseconds since 1970 exceed float64's exact range
        return s.astype("datetime64[ns]").to_numpy(dtype="datetime64[ns]").view("int64")
    if pd.api.types.is_timedelta64_dtype(s):
        return s.astype("timedelta64[ns]").to_numpy(dtype="timedelta64[ns]").view("int64")
    if pd.api.types.is_bool_dtype(s) or pd.api.types.is_numeric_dtype(s):
        v = s.to_numpy(dtype=float, na_value=np.nan) + 0.0   # + 0.0 turns -0.0 into 0.0
        v[np.isnan(v)] = np.nan                               # one NaN bit pattern
        return v
    mask = s.isna().to_numpy()
    out = np.array([str(x) for x in s.to_numpy(dtype=object)], dtype=object)
    out[mask] = _MISSING_TOKEN
    return out


def row_hashes(df: pd.DataFrame) -> np.ndarray:
    """A stable 64-bit hash per row (int64, shape (len(df),)), independent of column order.

    Values are first put in a canonical form (numbers as float64, NaN and -0.0 unified, datetimes
    as UTC nanoseconds, everything else as its string), then hashed with
    ``pandas.util.hash_pandas_object`` (a fixed-key SipHash, the same in every session). Column
    names are not hashed: compare tables with the same columns. Collisions are negligible
    (about n^2 / 2^64).
    """
    if not isinstance(df, pd.DataFrame):
        raise DataError(f"row_hashes needs a pandas DataFrame, got {type(df).__name__}")
    if df.shape[1] == 0:
        raise DataError("the table has no columns; nothing to hash")
    cols = sorted(df.columns, key=str)  # the same hash whatever the column order
    canon = pd.DataFrame({i: _canonical_column(df[c]) for i, c in enumerate(cols)})
    return pd.util.hash_pandas_object(canon, index=False).to_numpy().view(np.int64)


def copy_rate_from_hashes(train_hashes: np.ndarray, synth: pd.DataFrame) -> float:
    """Share of synthetic rows whose ``row_hashes`` value is among ``train_hashes``."""
    if len(synth) == 0:
        raise DataError("the synthetic table has no rows")
    return float(np.isin(row_hashes(synth), np.asarray(train_hashes, dtype=np.int64)).mean())


def copy_rate(train: pd.DataFrame, synth: pd.DataFrame) -> float:
    """Share of synthetic rows exactly equal to some training row, on all columns (NaN == NaN).

    Both tables must have the same columns (in any order). Values are compared after the
    canonical form of ``row_hashes`` (so an integer 3 equals a float 3.0).
    """
    if set(map(str, train.columns)) != set(map(str, synth.columns)) or train.shape[1] != synth.shape[1]:
        raise DataError(f"train and synth must have the same columns; train has {list(train.columns)}, "
                        f"synth has {list(synth.columns)}")
    if len(train) == 0:
        raise DataError("the training table has no rows")
    return copy_rate_from_hashes(row_hashes(train), synth)
