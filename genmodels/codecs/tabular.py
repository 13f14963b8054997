"""Tables <-> tensors: infers column kinds, scales numbers, indexes categories, tracks the Jacobian.

Layout of the tensors a module sees (``Spec``): one real-valued slot in ``x`` per numeric column
(continuous, integer, datetime), one discrete slot in ``c`` per categorical or boolean column, and
one more discrete "state" slot per numeric column that had missing values or point masses in
training (0: an ordinary value in ``x``; then "missing" if the column had missing values; then one
state per point mass).

Column kinds, inferred from the dtype (override with ``column_kinds={"col": "categorical"}``):

=============  ===========================  ==================================================
kind           inferred from                log-likelihood contribution (raw units)
=============  ===========================  ==================================================
continuous     float dtypes                 density, with the Jacobian of the scaling
integer        integer dtypes               probability mass, *lower bound* by uniform
                                            dequantization: log P(k) >= E_u log p(k + u)
datetime       datetime64 dtypes            density per second since the epoch
categorical    str / object / category      exact probability mass
boolean        bool dtypes                  exact probability mass
constant       one value, never missing     0 (that value has probability 1)
=============  ===========================  ==================================================

Point masses ("atoms"): a value that holds at least ``atom_share`` of an integer column's rows and
three times the share of either neighbour (k - 1, k + 1), such as 0 in a zero-inflated count or 40
in hours worked per week, is its own state of the column's state slot, at most
``max_atoms`` per column, so the model gives it its exact share instead of squeezing a spike into a
smooth density. ``atoms="numeric"`` also finds them in continuous and datetime columns; the
log-likelihood of such a column is then a mass at its atoms and a density elsewhere (a density
with respect to a mixed measure), so compare it only with models that do the same.
``atoms="none"`` turns them off. A row at an atom has N(0, 1) noise in its real slot, handled as
for missing values below (a variational bound).

Missing values: a categorical column gets a "missing" category (exact). A numeric column gets a
missing indicator slot; where the value is missing, its real slot is filled with N(0, 1) noise and
``log_det`` subtracts that noise's log-density, so the result is a variational lower bound on the
marginal likelihood of the observed values (exact in expectation when the model has learned that
the noise is independent, which it is in the data it was trained on).

High-cardinality categoricals: at most ``max_categories`` categories get their own index (the most
frequent, ties by first appearance); the rest share one "other" index. Scoring a folded value
adds log(count(value) / count(all folded)), so the mass stays a proper pmf over training values;
sampling "other" draws a folded value by its training frequency.

Rules at score time (never a silent wrong number): the columns must be the training columns (any
order); a category, boolean or constant value never seen in training raises ``DataError``; so does a
missing value in a column that had none in training, and a non-numeric value in a numeric column.
"""
from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import torch

from ..core import Batch, Spec
from ..errors import ConfigError, DataError

KINDS = ("continuous", "integer", "datetime", "categorical", "boolean", "constant")
NUMERIC = ("continuous", "integer", "datetime")
ATOM_MODES = ("integer", "numeric", "none")
SCALE_MODES = ("column", "shared")
SHARED_KINDS = ("continuous", "integer")     # the columns scale="shared" puts on one scale
ATOM_RATIO = 3.0    # an integer atom holds at least this many times the share of each neighbour (k - 1, k + 1)
MISSING = "__missing__"      # JSON-able stand-ins for the special categories
OTHER = "__other__"
TABLE_SUFFIXES = (".csv", ".tsv", ".txt", ".parquet", ".pq")
_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


@dataclass
class Column:
    """What the codec learned about one column (all JSON-able)."""

    name: str
    kind: str
    dtype: str
    has_missing: bool = False
    missing_rate: float = 0.0
    mean: float = 0.0
    std: float = 1.0
    lo: float = 0.0
    hi: float = 0.0
    categories: list = field(default_factory=list)       # index -> value (MISSING / OTHER included)
    other: dict = field(default_factory=dict)            # folded value (as str) -> training count
    other_values: list = field(default_factory=list)     # folded values, original type, same order
    atoms: list = field(default_factory=list)            # point masses (floats), state 1 + has_missing + i

    @property
    def n_states(self) -> int:
        """Cardinality of a numeric column's state slot (1: no slot)."""
        return 1 + int(self.has_missing) + len(self.atoms)


def _jsonable(v: Any) -> Any:
    return v.item() if isinstance(v, np.generic) else v


def _infer_kind(s: pd.Series) -> str:
    if s.nunique(dropna=False) == 1:
        return "constant"
    if pd.api.types.is_bool_dtype(s.dtype):
        return "boolean"
    if pd.api.types.is_datetime64_any_dtype(s.dtype):
        return "datetime"
    if pd.api.types.is_integer_dtype(s.dtype):
        return "integer"
    if pd.api.types.is_float_dtype(s.dtype):
        return "continuous"
    if isinstance(s.dtype, pd.CategoricalDtype) or pd.api.types.is_string_dtype(s.dtype) or s.dtype == object:
        non_null = s.dropna()
        if len(non_null) and non_null.map(lambda v: isinstance(v, (bool, np.bool_))).all():
            return "boolean"
        return "categorical"
    raise DataError(f"column {s.name!r} has dtype {s.dtype}, which genmodels cannot model; "
                    "convert it to numbers, strings or datetimes, or drop it")


class TabularCodec:
    """Fitted on a DataFrame; ``encode``/``decode`` between rows and the tensors a module sees.

    Args:
        column_kinds: override the inferred kind of some columns, e.g. ``{"zip": "categorical"}``.
        max_categories: categories kept per column before the rest share one "other" index.
        clip: clip sampled numbers to the training range.
        atoms: which numeric columns get point masses: "integer" (default), "numeric" (also
            continuous and datetime columns; see the module docstring), or "none".
        atom_share: the least share of a column's non-missing rows that makes a value a point mass.
        max_atoms: point masses per column at most (the most frequent).
        scale: "column" (default): each numeric column is centred and divided by its own standard
            deviation, for columns in different units. "shared": for columns in one unit (the pixels
            of an image, the channels of one sensor): each is centred, and every continuous and
            integer column is divided by one scale, the root of their mean variance, so their
            relative spreads are kept (a rarely inked pixel stays small next to a busy one) and a
            family's covariance floor (``reg_covar``) is one share of the average column's variance.
            Datetime columns keep their own scale. Log-likelihoods are in raw units either way.
    """

    modality: ClassVar[str] = "tabular"

    def __init__(self, column_kinds: dict[str, str] | None = None, max_categories: int = 50, clip: bool = True,
                 atoms: str = "integer", atom_share: float = 0.05, max_atoms: int = 10, scale: str = "column"):
        for name, kind in (column_kinds or {}).items():
            if kind not in KINDS:
                raise ConfigError(f"column_kinds[{name!r}] = {kind!r} is not a kind; use one of {', '.join(KINDS)}")
        if not isinstance(max_categories, int) or max_categories < 2:
            raise ConfigError(f"max_categories must be an integer >= 2, got {max_categories!r}")
        if atoms not in ATOM_MODES:
            raise ConfigError(f"atoms={atoms!r} is not an option; use one of {', '.join(ATOM_MODES)}")
        if not isinstance(atom_share, (int, float)) or not 0 < atom_share <= 1:
            raise ConfigError(f"atom_share must be a number in (0, 1], got {atom_share!r}")
        if not isinstance(max_atoms, int) or max_atoms < 0:
            raise ConfigError(f"max_atoms must be an integer >= 0, got {max_atoms!r}")
        if scale not in SCALE_MODES:
            raise ConfigError(f"scale={scale!r} is not an option; use one of {', '.join(SCALE_MODES)} ('column' for "
                              "columns in different units, 'shared' for columns in one unit)")
        self.atoms, self.atom_share, self.max_atoms = atoms, float(atom_share), max_atoms
        self.scale = scale
        self.column_kinds = dict(column_kinds or {})
        self.max_categories = max_categories
        self.clip = clip
        self.columns_: list[Column] = []
        self.input_ = "dataframe"

    # ------------------------------------------------------------------ raw input
    @staticmethod
    def accepts(data: Any) -> bool:
        if isinstance(data, (pd.DataFrame, pd.Series)):
            return True
        if isinstance(data, np.ndarray):
            return data.ndim <= 2            # (n, H, W[, C]) arrays are images
        return isinstance(data, (str, os.PathLike)) and Path(data).suffix.lower() in TABLE_SUFFIXES

    @staticmethod
    def coerce(data: Any) -> pd.DataFrame:
        """A DataFrame from a DataFrame, a 2-D array or a CSV/Parquet path (DataError otherwise)."""
        if isinstance(data, (str, os.PathLike)):
            from ..datasets import read_table
            return read_table(data)
        if isinstance(data, pd.Series):
            return data.to_frame()
        if isinstance(data, np.ndarray):
            if data.ndim != 2:
                raise DataError(f"a table must be a 2-D array (rows x columns), got shape {data.shape}; "
                                "use x.reshape(-1, 1) for a single column")
            df = pd.DataFrame(data, columns=[f"x{i}" for i in range(data.shape[1])])
            df.attrs["genmodels_input"] = "ndarray"
            return df
        if isinstance(data, pd.DataFrame):
            return data
        raise DataError(f"a table must be a DataFrame, a 2-D numpy array or a path to a CSV/Parquet file, "
                        f"not a {type(data).__name__}")

    # ------------------------------------------------------------------ fit
    def fit(self, df: pd.DataFrame) -> "TabularCodec":
        if df.shape[0] == 0 or df.shape[1] == 0:
            raise DataError(f"the training table is empty ({df.shape[0]} rows x {df.shape[1]} columns); "
                            "give at least a few rows and one column")
        unknown = set(self.column_kinds) - set(map(str, df.columns))
        if unknown:
            raise DataError(f"column_kinds names columns not in the data: {sorted(unknown)}; "
                            f"the columns are {list(map(str, df.columns))}")
        if df.columns.duplicated().any():
            raise DataError(f"duplicate column names {list(df.columns[df.columns.duplicated()])}; rename them")
        self.columns_ = [self._fit_column(df[c]) for c in df.columns]
        if self.scale == "shared":
            self._share_scale()
        self.input_ = df.attrs.get("genmodels_input", "dataframe")
        return self

    def _share_scale(self) -> None:
        """scale="shared": one scale for the continuous and integer columns, the root of the mean of
        their variances (a column that was constant keeps its stand-in scale out of the mean)."""
        cols = [c for c in self.columns_ if c.kind in SHARED_KINDS]
        varied = [c.std for c in cols if c.hi > c.lo]
        if not varied:
            return
        shared = float(np.sqrt(np.mean(np.square(varied))))
        for c in cols:
            c.std = shared

    def _fit_column(self, s: pd.Series) -> Column:
        name = str(s.name)
        if s.isna().all():
            raise DataError(f"column {name!r} is entirely missing; drop it before fitting")
        kind = self.column_kinds.get(name) or _infer_kind(s)
        col = Column(name=name, kind=kind, dtype=str(s.dtype), has_missing=bool(s.isna().any()),
                     missing_rate=float(s.isna().mean()))
        if kind == "constant" and col.has_missing:
            kind = col.kind = "categorical"   # one value plus missing: a two-way category
        if kind in NUMERIC:
            v = self._numeric(s, col)
            v = v[~np.isnan(v)]
            if kind == "integer" and not np.all(v == np.round(v)):
                raise DataError(f"column {name!r} was declared integer but holds non-integer values; "
                                "declare it continuous")
            col.atoms = self._find_atoms(v, kind)
            # integers are dequantized to [k, k+1): scale that, so the slot is ~N(0, 1); values at
            # point masses never reach the slot, so they are left out of the scaling
            regular = v[~np.isin(v, col.atoms)] if len(v) > np.isin(v, col.atoms).sum() else v
            centre = regular + 0.5 if kind == "integer" else regular
            col.mean, col.std = float(centre.mean()), float(centre.std())
            if not np.isfinite(col.std) or col.std <= 0:
                col.std = 1.0
            col.lo, col.hi = float(v.min()), float(v.max())
        elif kind in ("categorical", "boolean"):
            self._fit_categories(s, col)
        elif kind == "constant":
            col.categories = [_jsonable(s.iloc[0])]
        return col

    def _find_atoms(self, v: np.ndarray, kind: str) -> list[float]:
        if self.atoms == "none" or (self.atoms == "integer" and kind != "integer") or not len(v):
            return []
        values, counts = np.unique(v, return_counts=True)
        share = dict(zip(values.tolist(), (counts / len(v)).tolist()))
        def spike(a: float) -> bool:   # an integer's share must also tower over its neighbours'
            return kind != "integer" or share[a] >= ATOM_RATIO * max(share.get(a - 1, 0.0), share.get(a + 1, 0.0))
        order = np.argsort(-counts, kind="stable")[: self.max_atoms]
        return [float(values[i]) for i in order if counts[i] >= self.atom_share * len(v) and spike(values[i])]

    def _fit_categories(self, s: pd.Series, col: Column) -> None:
        counts = s.dropna().value_counts(sort=False)
        counts = counts.sort_values(ascending=False, kind="stable")   # ties keep first appearance
        values = [_jsonable(v) for v in counts.index]
        if col.kind == "boolean":
            bad = [v for v in values if not isinstance(v, bool)]
            if bad:
                raise DataError(f"column {col.name!r} was declared boolean but holds {bad[:3]}; "
                                "declare it categorical")
            values = sorted(values)
        budget = self.max_categories - int(col.has_missing)
        if len(values) > budget:
            keep, folded = values[: budget - 1], values[budget - 1:]
            col.other_values = folded
            col.other = {str(v): int(counts.iloc[i + budget - 1]) for i, v in enumerate(folded)}
            values = keep + [OTHER]
        col.categories = values + ([MISSING] if col.has_missing else [])

    # ------------------------------------------------------------------ layout
    def _check_fitted(self) -> None:
        if not self.columns_:
            raise RuntimeError("TabularCodec used before fit")

    @property
    def numeric_(self) -> list[Column]:
        return [c for c in self.columns_ if c.kind in NUMERIC]

    @property
    def discrete_(self) -> list[tuple[Column, str]]:
        """Discrete slots in order: (column, "value") for categories, (column, "state") for numeric columns
        with missing values or point masses."""
        slots = [(c, "value") for c in self.columns_ if c.kind in ("categorical", "boolean")]
        return slots + [(c, "state") for c in self.numeric_ if c.n_states > 1]

    def spec(self) -> Spec:
        self._check_fitted()
        cards = tuple(len(c.categories) if role == "value" else c.n_states for c, role in self.discrete_)
        return Spec(n_continuous=len(self.numeric_), cardinalities=cards)

    @property
    def kinds(self) -> dict[str, str]:
        return {c.name: c.kind for c in self.columns_}

    @property
    def bound_reasons(self) -> list[str]:
        reasons = []
        ints = [c.name for c in self.numeric_ if c.kind == "integer"]
        if ints:
            reasons.append(f"integer columns are dequantized (a lower bound on their probability mass): {ints}")
        miss = [c.name for c in self.numeric_ if c.has_missing]
        if miss:
            reasons.append(f"missing values in numeric columns are bounded variationally: {miss}")
        atoms = {c.name: c.atoms for c in self.numeric_ if c.atoms}
        if atoms:
            reasons.append(f"point masses in numeric columns are bounded variationally: {atoms}")
        return reasons

    # ------------------------------------------------------------------ encode
    def _numeric(self, s: pd.Series, col: Column) -> np.ndarray:
        if col.kind == "datetime":
            try:
                t = pd.to_datetime(s)
            except (ValueError, TypeError) as e:
                raise DataError(f"column {col.name!r} should hold datetimes: {e}") from None
            if getattr(t.dt, "tz", None) is not None:
                t = t.dt.tz_convert("UTC").dt.tz_localize(None)
            # seconds since the epoch, whatever the unit (pandas 3 defaults to microseconds)
            return ((t - pd.Timestamp(0)) / pd.Timedelta(seconds=1)).to_numpy(dtype=np.float64, na_value=np.nan)
        if pd.api.types.is_bool_dtype(s.dtype):
            return s.astype(float).to_numpy()
        v = pd.to_numeric(s, errors="coerce")
        bad = v.isna() & s.notna()
        if bad.any():
            examples = list(dict.fromkeys(map(str, s[bad].head(3))))
            raise DataError(f"column {col.name!r} is numeric but holds non-numeric values such as {examples} "
                            f"(row {int(np.flatnonzero(bad.to_numpy())[0])}); fix or remove those rows")
        return v.to_numpy(dtype=np.float64, na_value=np.nan)

    def check_columns(self, df: pd.DataFrame) -> pd.DataFrame:
        """The training columns in training order; a clear error for missing or extra ones."""
        self._check_fitted()
        names = [c.name for c in self.columns_]
        given = list(map(str, df.columns))
        missing = [n for n in names if n not in given]
        extra = [n for n in given if n not in names]
        if missing or extra:
            parts = ([f"missing columns {missing}"] if missing else []) + ([f"extra columns {extra}"] if extra else [])
            raise DataError(f"the data does not match the training columns: {'; '.join(parts)}; "
                            f"give exactly the columns {names}")
        if df.shape[0] == 0:
            raise DataError("the table has no rows; give at least one row")
        df = df.copy()
        df.columns = given
        return df[names]

    def encode(self, df: pd.DataFrame) -> Batch:
        """Deterministic encoding; ``dequantize`` adds the noise. Raises DataError on bad values."""
        df = self.check_columns(df)
        n = len(df)
        x = np.zeros((n, len(self.numeric_)), dtype=np.float32)
        c = np.zeros((n, len(self.discrete_)), dtype=np.int64)
        log_w = np.zeros(n, dtype=np.float64)
        state_slot = {id(cl): k for k, (cl, role) in enumerate(self.discrete_) if role == "state"}
        for j, col in enumerate(self.numeric_):
            v = self._numeric(df[col.name], col)
            miss = np.isnan(v)
            if miss.any() and not col.has_missing:
                raise DataError(f"column {col.name!r} has missing values (row {int(np.flatnonzero(miss)[0])}) "
                                "but had none in training; fill or drop those rows, or refit with missing values")
            if col.kind == "integer":
                if not np.all(v[~miss] == np.round(v[~miss])):
                    raise DataError(f"integer column {col.name!r} holds non-integer values; give whole numbers")
            states = self._states(v, col)
            if col.kind == "integer":
                v = v + 0.5   # the centre of the dequantization cell [k, k+1): decode's floor is exact
            x[:, j] = np.where(states > 0, 0.0, (v - col.mean) / col.std)
            if col.n_states > 1:
                c[:, state_slot[id(col)]] = states
        slot = {id(cl): k for k, (cl, role) in enumerate(self.discrete_) if role == "value"}
        for col in self.columns_:
            s = df[col.name]
            if col.kind == "constant":
                bad = s.isna() | (s.astype(object) != col.categories[0])
                if bad.any():
                    raise DataError(f"column {col.name!r} was constant ({col.categories[0]!r}) in training but holds "
                                    f"{s[bad].iloc[0]!r}; that value has probability 0 under the model")
            elif id(col) in slot:
                c[:, slot[id(col)]], log_w_col = self._category_codes(s, col)
                log_w += log_w_col
        return {"x": torch.from_numpy(x), "c": torch.from_numpy(c), "log_w": torch.from_numpy(log_w)}

    @staticmethod
    def _states(v: np.ndarray, col: Column) -> np.ndarray:
        """A numeric column's state per value: 0 ordinary, then missing (if any), then each atom."""
        states = np.zeros(len(v), dtype=np.int64)
        if col.has_missing:
            states[np.isnan(v)] = 1
        for i, a in enumerate(col.atoms):
            states[v == a] = 1 + int(col.has_missing) + i
        return states

    def _category_codes(self, s: pd.Series, col: Column) -> tuple[np.ndarray, np.ndarray]:
        index = {v: i for i, v in enumerate(col.categories) if v not in (MISSING, OTHER)}
        codes = np.empty(len(s), dtype=np.int64)
        log_w = np.zeros(len(s))
        total_other = sum(col.other.values())
        for r, v in enumerate(s.to_numpy(dtype=object)):
            if v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v)):
                if not col.has_missing:
                    raise DataError(f"column {col.name!r} has a missing value (row {r}) but had none in training; "
                                    "fill or drop those rows")
                codes[r] = col.categories.index(MISSING)
                continue
            v = _jsonable(v)
            i = index.get(v)
            if i is None and str(v) in col.other and type(v) is type(col.other_values[0]):
                i = col.categories.index(OTHER)
                log_w[r] = math.log(col.other[str(v)] / total_other)
            if i is None:
                known = [k for k in col.categories if k not in (MISSING, OTHER)][:8]
                raise DataError(f"column {col.name!r} holds {v!r} (row {r}), a value never seen in training; "
                                f"known values include {known}; map it to a known value or refit on data that has it")
            codes[r] = i
        return codes, log_w

    # ------------------------------------------------------------------ conditions
    def encode_condition(self, condition: dict[str, Any]) -> Batch:
        """One row: ``x`` NaN and ``c`` -1 in free slots, the encoded value in conditioned ones.

        A value never seen in training (a category, or a number outside the training range) is an
        error; ``None`` conditions on "missing" where the column had missing values.
        """
        self._check_fitted()
        by_name = {c.name: c for c in self.columns_}
        unknown = [k for k in condition if k not in by_name]
        if unknown:
            from ..registry import suggest
            raise DataError(f"condition names unknown columns {unknown}{suggest(unknown[0], by_name)} "
                            f"(the columns are {list(by_name)})")
        x = torch.full((1, len(self.numeric_)), float("nan"))
        c = torch.full((1, len(self.discrete_)), -1, dtype=torch.long)
        xi = {col.name: j for j, col in enumerate(self.numeric_)}
        ci = {(col.name, role): k for k, (col, role) in enumerate(self.discrete_)}
        for name, value in condition.items():
            col = by_name[name]
            value = condition[name] = self._from_text(value, col) if isinstance(value, str) else value
            one = pd.Series([value], name=name, dtype=object)
            missing = value is None or (isinstance(value, float) and math.isnan(value))
            if col.kind == "constant":
                if value != col.categories[0]:
                    raise DataError(f"condition {name}={value!r}: the column was always {col.categories[0]!r} in training")
            elif col.kind in NUMERIC:
                if missing and not col.has_missing:
                    raise DataError(f"condition {name}=missing: the column had no missing values in training")
                v = np.array([np.nan]) if missing else self._numeric(one, col)
                if not missing and not col.lo <= v[0] <= col.hi:
                    raise DataError(f"condition {name}={value!r} is outside the training range "
                                    f"[{col.lo:g}, {col.hi:g}]; the model has not seen such values")
                if not missing and col.kind == "integer" and v[0] != round(v[0]):
                    raise DataError(f"condition {name}={value!r}: the column holds whole numbers")
                state = int(self._states(v, col)[0])
                if col.n_states > 1:
                    c[0, ci[(name, "state")]] = state
                if state == 0:
                    x[0, xi[name]] = ((v[0] + 0.5 if col.kind == "integer" else v[0]) - col.mean) / col.std
            else:
                try:
                    c[0, ci[(name, "value")]] = int(self._category_codes(one, col)[0][0])
                except DataError:
                    known = [k for k in col.categories if k not in (MISSING, OTHER)][:8]
                    raise DataError(f"condition {name}={value!r} is a value never seen in training; known values "
                                    f"include {known}") from None
        return {"x": x, "c": c}

    def encode_partial(self, df: pd.DataFrame) -> tuple[Batch, torch.Tensor]:
        """Rows with missing cells as a per-row condition: observed cells encoded as in ``encode``, missing
        ones free (``x`` NaN, ``c`` -1; a numeric column's state slot given as "a value" when it has no
        point masses), for imputation. Also returns, per discrete slot, the code that
        means "missing" (-1: none), so a sampler can reject draws that fill a cell with "missing"."""
        df = self.check_columns(df)
        miss = df.isna().to_numpy()
        filled = df.copy()
        for j, col in enumerate(self.columns_):       # a valid stand-in, so encode checks only observed cells
            if miss[:, j].any():
                filled[col.name] = filled[col.name].astype(object).where(~miss[:, j], self._stand_in(col))
        batch = self.encode(filled)
        x, c = batch["x"].clone(), batch["c"].clone()
        names = [col.name for col in self.columns_]
        for j, col in enumerate(self.numeric_):
            m = torch.from_numpy(miss[:, names.index(col.name)].copy())
            x[:, j] = torch.where(m, float("nan"), x[:, j])
        missing_code = torch.full((len(self.discrete_),), -1, dtype=torch.long)
        for k, (col, role) in enumerate(self.discrete_):
            m = torch.from_numpy(miss[:, names.index(col.name)].copy())
            c[:, k] = torch.where(m, -1, c[:, k])
            if role == "state":
                j = self.numeric_.index(col)
                if not col.atoms:          # states {value, missing}: a missing cell is given as "a value"
                    c[:, k] = torch.where(m, 0, c[:, k])
                x[:, j] = torch.where(c[:, k] > 0, float("nan"), x[:, j])      # a point mass: its slot is noise
                missing_code[k] = 1 if col.has_missing else -1
            elif MISSING in col.categories:
                missing_code[k] = col.categories.index(MISSING)
        return {"x": x, "c": c}, missing_code

    @staticmethod
    def _stand_in(col: Column) -> Any:
        """Some value the column held in training (overwritten before use)."""
        if col.kind == "datetime":
            return pd.Timestamp(0) + pd.Timedelta(seconds=col.lo)
        if col.kind in NUMERIC:
            return col.lo
        return next(v for v in col.categories if v not in (MISSING, OTHER))

    @staticmethod
    def _from_text(value: str, col: Column) -> Any:
        """A condition typed as text (the CLI's) in the column's own type: "40" -> 40.0, "true" -> True."""
        if col.kind in ("continuous", "integer"):
            try:
                return float(value)
            except ValueError:
                raise DataError(f"condition {col.name}={value!r}: the column is numeric; give a number") from None
        if col.kind == "boolean" and value.lower() in ("true", "false"):
            return value.lower() == "true"
        if col.kind in ("categorical", "constant") and value not in col.categories and value not in col.other:
            same = [v for v in col.categories + col.other_values if str(v) == value]
            return same[0] if same else value
        return value

    def apply_condition(self, out: pd.DataFrame | np.ndarray, condition: dict[str, Any]) -> pd.DataFrame | np.ndarray:
        """Write the conditioned values into decoded rows exactly (undoing float rounding, folded draws)."""
        if isinstance(out, np.ndarray):
            names = [c.name for c in self.columns_]
            for name, value in condition.items():
                out[:, names.index(name)] = value
            return out
        for name, value in condition.items():
            col = next(c for c in self.columns_ if c.name == name)
            out[name] = self._restore(pd.Series([value] * len(out), dtype=object), col)
        return out

    # ------------------------------------------------------------------ likelihood bookkeeping
    def dequantize(self, batch: Batch, generator: torch.Generator | None = None) -> Batch:
        """Integer slots move from k + 1/2 to k + U[0, 1) in raw units; missing or point-mass slots get N(0, 1) noise."""
        x = batch["x"].clone()
        if x.shape[1] == 0:
            return dict(batch)
        for j, col in enumerate(self.numeric_):
            if col.kind == "integer":
                u = torch.rand(x.shape[0], generator=generator, device=x.device)
                x[:, j] += (u - 0.5) / col.std
        special = self._special_mask(batch)                                 # (B, D) bool
        noise = torch.randn(x.shape, generator=generator, device=x.device)
        x = torch.where(special, noise, x)
        return {**batch, "x": x}

    def _special_mask(self, batch: Batch) -> torch.Tensor:
        """(B, D) bool: numeric slots whose value is missing or at a point mass (state > 0)."""
        mask = torch.zeros_like(batch["x"], dtype=torch.bool)
        slots = {cl.name: k for k, (cl, role) in enumerate(self.discrete_) if role == "state"}
        for j, col in enumerate(self.numeric_):
            if col.name in slots:
                mask[:, j] = batch["c"][:, slots[col.name]] > 0
        return mask

    def log_det(self, batch: Batch) -> torch.Tensor:
        """(B,) nats to add to the module's log-density (on a dequantized batch) to reach raw units."""
        x = batch["x"].double()
        special = self._special_mask(batch)
        log_std = torch.tensor([math.log(c.std) for c in self.numeric_], dtype=torch.float64, device=x.device)
        out = -(log_std * (~special)).sum(1)                                # Jacobian of the scaling
        out = out + ((0.5 * x**2 + _HALF_LOG_2PI) * special).sum(1)        # minus log N(noise; 0, 1)
        return out + batch.get("log_w", torch.zeros(x.shape[0], dtype=torch.float64)).to(x.device)

    # ------------------------------------------------------------------ decode
    def decode(self, batch: Batch, generator: torch.Generator | None = None) -> pd.DataFrame | np.ndarray:
        """Tensors -> a DataFrame with the training schema (columns, order, dtypes); an array if fitted on one."""
        self._check_fitted()
        x = batch["x"].detach().double().cpu().numpy()
        c = batch["c"].detach().cpu().numpy()
        n = x.shape[0] if x.shape[1] else c.shape[0]
        rng = np.random.default_rng(int(torch.randint(0, 2**62, (1,), generator=generator)))
        out: dict[str, Any] = {}
        state_slot = {cl.name: k for k, (cl, role) in enumerate(self.discrete_) if role == "state"}
        for j, col in enumerate(self.numeric_):
            v = x[:, j] * col.std + col.mean
            if col.kind == "integer":
                v = np.floor(v)
            if self.clip:
                v = np.clip(v, col.lo, col.hi)
            state = c[:, state_slot[col.name]] if col.name in state_slot else np.zeros(n, np.int64)
            for i, a in enumerate(col.atoms):
                v[state == 1 + int(col.has_missing) + i] = a
            out[col.name] = self._restore_numeric(v, col.has_missing & (state == 1), col)
        slots = [(cl, k) for k, (cl, role) in enumerate(self.discrete_) if role == "value"]
        for col, k in slots:
            values = np.array(col.categories, dtype=object)[c[:, k]]
            is_other = values == OTHER
            if is_other.any():
                p = np.array([col.other[str(v)] for v in col.other_values], dtype=float)
                values[is_other] = np.array(col.other_values, dtype=object)[rng.choice(len(p), is_other.sum(), p=p / p.sum())]
            values[values == MISSING] = None
            out[col.name] = self._restore(pd.Series(values, dtype=object), col)
        for col in self.columns_:
            if col.kind == "constant":
                out[col.name] = self._restore(pd.Series([col.categories[0]] * n, dtype=object), col)
        df = pd.DataFrame({c.name: out[c.name] for c in self.columns_})
        return df.to_numpy(copy=True) if self.input_ == "ndarray" else df   # writable, unlike a CoW view

    def _restore_numeric(self, v: np.ndarray, miss: np.ndarray, col: Column) -> pd.Series:
        if col.kind == "datetime":
            s = pd.Series(pd.Timestamp(0) + pd.to_timedelta(np.round(v * 1e6).astype("int64"), unit="us"))
            s[miss] = pd.NaT
            return self._restore(s, col)
        s = pd.Series(v)
        s[miss] = np.nan
        if col.kind == "integer" and miss.any() and pd.api.types.is_integer_dtype(col.dtype) \
                and col.dtype == col.dtype.lower():
            return s   # a numpy int column cannot hold NaN; keep floats (only if overridden to missing)
        return self._restore(s, col)

    @staticmethod
    def _restore(s: pd.Series, col: Column) -> pd.Series:
        try:
            return s.astype(col.dtype)
        except (TypeError, ValueError):
            return s

    # ------------------------------------------------------------------ state
    def state(self) -> dict:
        return {"column_kinds": self.column_kinds, "max_categories": self.max_categories, "clip": self.clip,
                "atoms": self.atoms, "atom_share": self.atom_share, "max_atoms": self.max_atoms,
                "scale": self.scale, "columns": [asdict(c) for c in self.columns_], "input": self.input_}

    @classmethod
    def from_state(cls, state: dict) -> "TabularCodec":
        codec = cls(state["column_kinds"], state["max_categories"], state["clip"], state.get("atoms", "none"),
                    state.get("atom_share", 0.05), state.get("max_atoms", 10), state.get("scale", "column"))
        codec.columns_ = [Column(**c) for c in state["columns"]]
        codec.input_ = state.get("input", "dataframe")
        return codec
