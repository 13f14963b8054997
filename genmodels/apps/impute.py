"""Missing-value imputation from a generative model's conditional distribution.

``Imputer`` is a scikit-learn transformer: ``fit`` learns the joint distribution of a table that
has missing cells (the tabular codec models "missing" itself, so no row is dropped), ``transform``
fills each missing cell given the observed cells of its row and never changes an observed cell.

How a cell is filled (``strategy``):

- ``"mean"`` (default, the best single guess for squared error): ``n_draws`` draws from the
  conditional, averaged for numbers (a Monte-Carlo estimate of E[x_mis | x_obs]; rounded in
  integer columns) and the most frequent draw for categories (the conditional mode);
- ``"draw"``: one draw from the conditional (keeps the data's spread; a proper single imputation).

``n_imputations > 1`` returns that many tables, each an independent conditional draw (multiple
imputation, Rubin 1987): their spread per cell is the model's uncertainty, and quantiles over
them give intervals (``interval``).

The conditionals are exact for ``gmm`` (the closed-form conditional of each mixture, default) and
``kde``; ``autoregressive`` samples exactly when the missing columns come after the observed ones
in its order and approximately otherwise; ``diffusion`` inpaints (RePaint). Families that cannot
condition (``flow``, ``vae``, ``gan`` for numbers) are refused with the list of those that can.
"""
from __future__ import annotations

import argparse
import warnings
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin

from ..errors import ConfigError, NotFittedError
from . import KeywordParams

STRATEGIES = ("mean", "draw")
DEFAULT_FAMILY = "gmm"


def _as_frame(X: Any) -> pd.DataFrame:
    from ..codecs.tabular import TabularCodec
    return TabularCodec.coerce(X)


def _check_rows(df: pd.DataFrame) -> np.ndarray:
    """The missing mask; a warning for rows with no observed cell (they are drawn from the joint)."""
    miss = df.isna().to_numpy()
    empty = np.flatnonzero(miss.all(1))
    if len(empty):
        warnings.warn(f"{len(empty)} row(s) have no observed cell (first: row {int(empty[0])}); they are filled "
                      "from the model's joint distribution, with nothing to condition on", UserWarning, stacklevel=3)
    return miss


def fill(model, df: pd.DataFrame, strategy: str = "mean", n_draws: int = 20, seed: int | None = None) -> pd.DataFrame:
    """``df`` with its missing cells filled by ``model`` (a fitted, conditional ``Model``) by ``strategy``."""
    if strategy not in STRATEGIES:
        raise ConfigError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")
    model.codec_.check_columns(df)                      # the training columns, before anything else
    miss = _check_rows(df)
    if strategy == "draw" or not miss.any():
        return model.impute(df, seed=seed)
    rows = np.flatnonzero(miss.any(1))
    part = df.iloc[rows]
    stacked = model.impute(pd.concat([part] * n_draws, ignore_index=True), seed=seed)   # one call: shared set-up
    out = df.copy()
    for j, name in enumerate(df.columns):
        cells = np.flatnonzero(miss[rows, j])
        if not len(cells):
            continue
        draws = stacked[name].to_numpy().reshape(n_draws, len(rows))[:, cells]      # (n_draws, cells)
        if _is_numeric(df[name], model, name):
            value = np.nanmean(draws.astype(float), axis=0)
            if model.codec_.kinds.get(str(name)) == "integer":
                value = np.round(value)                  # the column holds whole numbers: keep it so
        else:
            value = pd.DataFrame(draws).mode(axis=0, dropna=True).iloc[0].to_numpy()
        out.iloc[rows[cells], j] = value
    return out


def _is_numeric(s: pd.Series, model, name: str) -> bool:
    kind = model.codec_.kinds.get(str(name))
    return kind in ("continuous", "integer") if kind else pd.api.types.is_numeric_dtype(s.dtype)


class Imputer(KeywordParams, TransformerMixin, BaseEstimator):
    """Fill missing cells from a generative model's conditional distribution (see the module docstring).

    Args:
        family: a family that can condition (``gmm``, the default; ``kde``, ``autoregressive``, ``diffusion``).
        n_imputations: 1 gives one table; more gives a list of that many conditional draws.
        seed: seeds the model and the draws (repeatable results).
        strategy: "mean" or "draw" (used when ``n_imputations == 1``).
        n_draws: draws averaged by the "mean" strategy.
        max_time: training budget in seconds for the neural families (per fit).
        refits: rounds of stochastic EM after the first fit: the table is completed by one conditional
            draw per missing cell and the model refitted on it (Celeux & Diebolt 1985). The first fit
            learns "missing" as a state, with noise in its place, which blurs how columns relate;
            refits learn the relations from completed rows. 0: keep the first fit.
        **kw: hyper-parameters of the family and ``Model`` (``num_threads``, ``codec``, ...).

    >>> import numpy as np, genmodels as gm
    >>> X = np.random.default_rng(0).normal(size=(200, 3)); X[::7, 1] = np.nan
    >>> filled = gm.Imputer(seed=0).fit_transform(X)
    >>> bool(np.isnan(filled).any())
    False
    """

    _EXPLICIT = ("family", "n_imputations", "seed", "strategy", "n_draws", "max_time", "refits")

    def __init__(self, family: str | None = None, n_imputations: int = 1, seed: int | None = None,
                 strategy: str = "mean", n_draws: int = 20, max_time: float | None = None, refits: int = 3,
                 **kw: Any):
        self.family = family
        self.n_imputations = n_imputations
        self.seed = seed
        self.strategy = strategy
        self.n_draws = n_draws
        self.max_time = max_time
        self.refits = refits
        self.kw = kw

    def _check_params(self) -> None:
        for name, least in (("n_imputations", 1), ("n_draws", 1), ("refits", 0)):
            v = getattr(self, name)
            if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < least:
                raise ConfigError(f"{name} must be an integer >= {least}, got {v!r}")
        if self.strategy not in STRATEGIES:
            raise ConfigError(f"strategy must be one of {STRATEGIES}, got {self.strategy!r}")

    def fit(self, X: Any, y: Any = None) -> "Imputer":
        from ..model import Model
        self._check_params()
        df = _as_frame(X)
        seed = 0 if self.seed is None else self.seed
        make = lambda: Model(self.family or DEFAULT_FAMILY, seed=seed, **self.kw)   # noqa: E731
        model = make()
        model._check_conditional("impute missing values")        # before a long fit, not after
        model.fit(df, max_time=self.max_time, verbose=False)
        if df.isna().to_numpy().any():
            for r in range(self.refits):      # stochastic EM: complete by a draw, refit on the completed table
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")           # all-missing rows: said once, at transform
                    done = fill(model, df, "draw", seed=seed + 7919 * (r + 1))
                model = make().fit(done, max_time=self.max_time, verbose=False)
        self.model_ = model
        self.n_features_in_ = df.shape[1]
        if isinstance(X, pd.DataFrame):
            self.feature_names_in_ = np.asarray(X.columns, dtype=object)
        return self

    def transform(self, X: Any) -> Any:
        if not hasattr(self, "model_"):
            raise NotFittedError("this Imputer is not fitted yet; call fit(X) first")
        self._check_params()
        df = _as_frame(X)
        if not df.isna().to_numpy().any():
            warnings.warn("the data has no missing cell; returned unchanged", UserWarning, stacklevel=2)
            return self._like(X, df.copy())
        seed = None if self.seed is None else self.seed + 1
        if self.n_imputations == 1:
            return self._like(X, fill(self.model_, df, self.strategy, self.n_draws, seed))
        return [self._like(X, fill(self.model_, df, "draw", seed=None if seed is None else seed + i))
                for i in range(self.n_imputations)]

    @staticmethod
    def _like(X: Any, out: pd.DataFrame) -> Any:
        """The input's own type: an array for an array (float where it was), a DataFrame otherwise."""
        if isinstance(X, np.ndarray):
            arr = out.to_numpy()
            return arr.astype(X.dtype) if X.dtype.kind == "f" else arr
        return out

    def interval(self, X: Any, level: float = 0.9, n_imputations: int = 50) -> tuple[np.ndarray, np.ndarray]:
        """Per-cell (lower, upper) bounds of a central ``level`` interval from ``n_imputations`` conditional
        draws, as float arrays shaped like X; NaN for observed and non-numeric cells."""
        if not 0 < level < 1:
            raise ConfigError(f"level must be in (0, 1), got {level!r}")
        if not hasattr(self, "model_"):
            raise NotFittedError("this Imputer is not fitted yet; call fit(X) first")
        df = _as_frame(X)
        miss = _check_rows(df)
        draws = [fill(self.model_, df, "draw", seed=None if self.seed is None else self.seed + 1000 + i)
                 for i in range(n_imputations)]
        lo, hi = np.full(df.shape, np.nan), np.full(df.shape, np.nan)
        for j, name in enumerate(df.columns):
            if not _is_numeric(df[name], self.model_, name) or not miss[:, j].any():
                continue
            v = np.stack([d[name].to_numpy(dtype=float) for d in draws])                # (draws, rows)
            q = np.quantile(v, [(1 - level) / 2, (1 + level) / 2], axis=0)
            lo[miss[:, j], j], hi[miss[:, j], j] = q[0, miss[:, j]], q[1, miss[:, j]]
        return lo, hi


# ---------------------------------------------------------------------------- command line
def cmd_impute(args: argparse.Namespace) -> None:
    from ..cli import _console, _data, _write
    from ..model import load
    model = load(args.model_dir)
    df = _as_frame(_data(args.data, "test"))
    miss = df.isna().to_numpy()
    if not miss.any():
        _console(stderr=True).print("warning: the data has no missing cell; written unchanged")
    _write(fill(model, df, args.strategy, args.draws, args.seed) if miss.any() else df, args.output)
    _console(stderr=True).print(f"filled {int(miss.sum())} missing cells in {int(miss.any(1).sum())} rows; "
                                f"wrote {args.output}")


def add_cli(sub: Any) -> None:
    s = sub.add_parser("impute", help="fill missing cells of a table from a saved model's conditionals")
    s.add_argument("model_dir", help="a model saved by `genmodels fit` (a family that can condition)")
    s.add_argument("data", help="CSV/Parquet path with missing cells")
    s.add_argument("-o", "--output", required=True, help=".csv or .parquet")
    s.add_argument("--strategy", choices=STRATEGIES, default="mean",
                   help="mean: average of --draws conditional draws (mode for categories); draw: one draw")
    s.add_argument("--draws", type=int, default=20)
    s.add_argument("--seed", type=int, default=None)
    s.set_defaults(func=cmd_impute)
