"""Missing-value imputation from a generative model's conditional distribution.

``Imputer`` is a scikit-learn transformer: ``fit`` learns the joint distribution of a table that
has missing cells, ``transform`` fills each missing cell given the observed cells of its row and
never changes an observed cell.

How the model is fitted:

- ``gmm`` (default): by the EM for incomplete data (Ghahramani & Jordan 1994; ``GMM.fit_closed_form``
  on a batch with missing cells): the likelihood of the *observed* cells is maximised, each missing
  cell integrated out, so the fit is exact when cells are missing at random (MAR). The codec learns
  the columns (kinds, categories, scaling, point masses) from the observed values only. The number
  of components and the covariance regulariser, unless given, are chosen by held-out imputation
  error: a share (``holdout``) of the observed real-valued cells is hidden, each candidate fitted
  and scored by the squared error of its conditional mean on them (standardised units), the best
  refitted on all cells (``selection_`` lists the scores). Candidates: ``reg_covar`` in ``REGS``;
  ``n_components`` 1, 2, 3, 4, 6, 8, 12, 16, 24, 32 (up to ``max_components`` and a fifth of the
  rows), stopping when two larger k in a row do not cut the best error by 0.5%; past k = 1 only the
  best regulariser so far and the next larger one are tried (more components want more). The model
  is then an equal-weight mixture of ``ensemble`` EM runs from different starts at the chosen
  setting (one GMM; averaging over the runs' local optima lowers the error).
- other families that can condition (``kde``, ``autoregressive``, ``diffusion``): the tabular codec
  models "missing" as a state of the column; ``refits`` rounds of stochastic EM (complete the table
  by one conditional draw per missing cell, refit; Celeux & Diebolt 1985) then learn the relations
  between columns from completed rows.

Repeated rows (``repeats=True``, the default; ``genmodels.apps.repeats``): a smooth model gives an
exact repeat of a row probability zero, yet many tables repeat records. Rows that agree on every
cell observed in both are grouped (most evidence first), and a row's missing cell that another
member of its group observed takes that value, blended with the model's guess by a trust learnt
on held-out cells, per band of evidence (``repeats_info_``). Where nothing repeats, nothing changes.

How a cell is filled (``strategy``):

- ``"mean"`` (default, the best single guess for squared error): for ``gmm`` the exact conditional
  mean E[x_mis | x_obs] (a posterior-weighted sum of per-component Gaussian conditional means;
  rounded in integer columns) and the most probable category; in columns with point masses, and for
  other families, ``n_draws`` conditional draws averaged (the mode for categories);
- ``"draw"``: one draw from the conditional (keeps the data's spread; a proper single imputation).

``n_imputations > 1`` returns that many tables, each an independent conditional draw (multiple
imputation, Rubin 1987): their spread per cell is the model's uncertainty, and quantiles over
them give intervals (``interval``). The draws come from one fitted model (for ``gmm``, the mixture
of several EM runs), not from a posterior over its parameters, so they understate the uncertainty
of small tables somewhat. For ``gmm`` the codec does not clip decoded values to the range of the
observed values (pass ``codec={"clip": True}`` to clip): when cells are missing at random, that
range is a biased sample of the column's.

The conditionals are exact for ``gmm`` and ``kde``; ``autoregressive`` samples exactly when the
missing columns come after the observed ones in its order and approximately otherwise;
``diffusion`` inpaints (RePaint). Families that cannot condition (``flow``, ``vae``, ``gan`` for
numbers) are refused with the list of those that can. Nothing models why a cell is missing: under
MNAR (a cell's own value decides whether it is missing) the conditionals are those of MAR.
"""
from __future__ import annotations

import argparse
import math
import time
import warnings
from typing import Any

import numpy as np
import pandas as pd
import torch
from sklearn.base import BaseEstimator, TransformerMixin

from ..errors import ConfigError, DataError, NotFittedError
from . import KeywordParams
from .repeats import Repeats

STRATEGIES = ("mean", "draw")
DEFAULT_FAMILY = "gmm"
REGS = (1e-3, 1e-2, 3e-2, 0.1, 0.3)                 # reg_covar candidates (standardised units)
KS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32)             # n_components candidates
GAIN = 0.005                                        # a larger k must cut the held-out error by 0.5%
MAX_MASKS = 2                                       # hidden-cell masks at most
SELECT_TOL = 1e-3                                   # EM tolerance of the candidates' fits
FINAL_TOL = 1e-6                                    # ... and of the final fits (EM with missing cells is slow
                                                    # to converge: at 1e-4 a slope can be off by percents)


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
    exact = _conditional_mean(model, part)              # the exact best guess, where the family has it
    todo = [j for j, name in enumerate(df.columns) if miss[rows, j].any() and str(name) not in exact]
    stacked = model.impute(pd.concat([part] * n_draws, ignore_index=True), seed=seed) if todo else None
    out = df.copy()
    for j, name in enumerate(df.columns):
        cells = np.flatnonzero(miss[rows, j])
        if not len(cells):
            continue
        if str(name) in exact:
            value = exact[str(name)].to_numpy()[cells]
        else:                                            # Monte Carlo: n_draws conditional draws per cell
            draws = stacked[name].to_numpy().reshape(n_draws, len(rows))[:, cells]      # (n_draws, cells)
            if _is_numeric(df[name], model, name):
                value = np.nanmean(draws.astype(float), axis=0)
                if model.codec_.kinds.get(str(name)) == "integer":
                    value = np.round(value)              # the column holds whole numbers: keep it so
            else:
                value = pd.DataFrame(draws).mode(axis=0, dropna=True).iloc[0].to_numpy()
        out.iloc[rows[cells], j] = value
    return out


def _conditional_mean(model, part: pd.DataFrame) -> dict[str, pd.Series]:
    """Per column, the family's exact best guess for ``part``'s rows: E[x_mis | x_obs] for numbers
    (decoded: unscaled, clipped to the training range, rounded in integer columns) and the most
    probable category. Only for families with ``conditional_mean`` and only for columns where it is
    the best guess of the raw value: not numeric columns with point masses (the conditional mean of
    the real slot is that of the non-point values) nor categories with a "missing" category."""
    module = model.module_
    if not hasattr(module, "conditional_mean") or getattr(model, "modality_", None) != "tabular":
        return {}
    from ..codecs.tabular import MISSING, NUMERIC
    codec = model.codec_
    cond, _ = codec.encode_partial(part)
    with model._threads(), torch.no_grad():
        best = module.conditional_mean({k: v.to(module.device) for k, v in cond.items()})
    dec = codec.decode({k: v.cpu() for k, v in best.items()}, generator=torch.Generator().manual_seed(0))
    names = [c.name for c in codec.columns_]
    dec = pd.DataFrame(dec, columns=names) if isinstance(dec, np.ndarray) else dec
    ok = [c.name for c in codec.columns_ if (c.kind in NUMERIC and not c.atoms)
          or (c.kind in ("categorical", "boolean") and MISSING not in c.categories)]
    return {name: dec[name] for name in ok}


def _is_numeric(s: pd.Series, model, name: str) -> bool:
    kind = model.codec_.kinds.get(str(name))
    return kind in ("continuous", "integer") if kind else pd.api.types.is_numeric_dtype(s.dtype)


def _hot_deck(df: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    """``df`` with each missing cell set to a random observed value of its column (columns with no
    observed value stay missing, so the codec names them)."""
    out = df.copy()
    for j in range(df.shape[1]):
        miss = df.iloc[:, j].isna().to_numpy()
        if miss.any() and not miss.all():
            seen = df.iloc[:, j][~miss].to_numpy()
            out.iloc[np.flatnonzero(miss), j] = seen[rng.integers(len(seen), size=int(miss.sum()))]
    return out


def select(cls, spec, batch: dict, family_kw: dict, fixed: dict, holdout: float, seed: int,
           max_components: int | None = None) -> tuple[dict, list[dict]]:
    """Choose ``n_components`` and ``reg_covar`` (those not in ``fixed``) of a family fitted by the
    EM for incomplete data, by held-out imputation error.

    ``holdout`` of the observed real-valued cells of ``batch`` (x NaN where missing) are hidden (never
    a row's last observed cell; a second such mask when one scores fewer than 2,000 cells), every candidate
    is fitted on the rest and scored by the mean squared error of its conditional mean on the hidden
    cells. Returns the best {n_components, reg_covar} and every candidate's score.
    """
    x, c = batch["x"].double(), batch["c"]
    N = x.shape[0]
    observed = ~torch.isnan(x)
    g = torch.Generator().manual_seed(seed + 1)
    repeats = min(MAX_MASKS, max(1, math.ceil(2000 / max(1.0, holdout * float(observed.sum())))))
    masks = []
    for _ in range(repeats):
        hide = observed & (torch.rand(x.shape, generator=g, dtype=torch.float64) < holdout)
        hide[(observed & ~hide).sum(1) == 0] = False     # every row keeps an observed cell
        if hide.any():
            masks.append(hide)
    if not masks:
        return {k: v for k, v in fixed.items()}, []

    def score(k: int, reg: float) -> float:
        errs = []
        for hide in masks:
            xc = x.masked_fill(hide, float("nan"))
            m = cls(spec, **{"tol": SELECT_TOL, **family_kw, "n_components": k, "reg_covar": reg})
            try:
                m.fit_closed_form({"x": xc, "c": c}, generator=torch.Generator().manual_seed(seed))
            except DataError:                           # a singular covariance: not a candidate
                return math.inf
            pred = m.conditional_mean({"x": xc, "c": c})["x"].double()
            errs.append(float(((pred - x)[hide] ** 2).mean()))
        return float(np.mean(errs))

    top = min(max_components or KS[-1], max(1, N // 5))
    ks = [fixed["n_components"]] if "n_components" in fixed else [k for k in KS if k <= top]
    regs = [fixed["reg_covar"]] if "reg_covar" in fixed else list(REGS)
    scores: list[dict] = []
    best, worse = None, 0
    for i, k in enumerate(ks):
        j = regs.index(best["reg_covar"]) if best else 0
        tried = regs if best is None else regs[j: j + 2]    # past the first k: the best's and the next larger
        for reg in tried:
            scores.append({"n_components": k, "reg_covar": reg, "error": score(k, reg)})
        here = min(scores[-len(tried):], key=lambda s: s["error"])
        if best is None or here["error"] < (1 - GAIN) * best["error"]:
            best, worse = here, 0
        else:
            worse += 1
            if worse >= 2:
                break
    return {"n_components": best["n_components"], "reg_covar": best["reg_covar"]}, scores


class Imputer(KeywordParams, TransformerMixin, BaseEstimator):
    """Fill missing cells from a generative model's conditional distribution (see the module docstring).

    Args:
        family: a family that can condition (``gmm``, the default; ``kde``, ``autoregressive``, ``diffusion``).
        n_imputations: 1 gives one table; more gives a list of that many conditional draws.
        seed: seeds the model and the draws (repeatable results).
        strategy: "mean" or "draw" (used when ``n_imputations == 1``).
        n_draws: draws averaged by the "mean" strategy where there is no exact conditional mean.
        max_time: training budget in seconds for the neural families (per fit).
        refits: families without an EM for incomplete data: rounds of stochastic EM after the first
            fit (the table completed by one conditional draw per missing cell, the model refitted on
            it; Celeux & Diebolt 1985). The first fit learns "missing" as a state, with noise in its
            place, which blurs how columns relate; refits learn them from completed rows. 0: keep it.
        holdout: ``gmm``: share of observed cells hidden to choose ``n_components`` and ``reg_covar``
            (those not given in ``**kw``) by imputation error; ``selection_`` holds the scores.
        ensemble: ``gmm``: EM runs from different k-means++ starts; the model is their equal-weight
            mixture (``GMM.mixture_of``: one GMM with ``ensemble`` x ``n_components`` components).
        repeats: treat exactly repeated rows as point masses: a row compatible with other rows of the
            table (or of the training table) takes their values for its missing cells, blended with the
            model's guess by a trust learnt on held-out cells (``genmodels.apps.repeats``;
            ``repeats_info_`` holds the learnt trust). False: the model alone.
        **kw: hyper-parameters of the family and ``Model`` (``n_components``, ``reg_covar``,
            ``num_threads``, ``codec``, ...).

    >>> import numpy as np, genmodels as gm
    >>> X = np.random.default_rng(0).normal(size=(200, 3)); X[::7, 1] = np.nan
    >>> filled = gm.Imputer(seed=0).fit_transform(X)
    >>> bool(np.isnan(filled).any())
    False
    """

    _EXPLICIT = ("family", "n_imputations", "seed", "strategy", "n_draws", "max_time", "refits", "holdout",
                 "ensemble", "repeats")

    def __init__(self, family: str | None = None, n_imputations: int = 1, seed: int | None = None,
                 strategy: str = "mean", n_draws: int = 20, max_time: float | None = None, refits: int = 3,
                 holdout: float = 0.1, ensemble: int = 5, repeats: bool = True, **kw: Any):
        self.family = family
        self.n_imputations = n_imputations
        self.seed = seed
        self.strategy = strategy
        self.n_draws = n_draws
        self.max_time = max_time
        self.refits = refits
        self.holdout = holdout
        self.ensemble = ensemble
        self.repeats = repeats
        self.kw = kw

    def _check_params(self) -> None:
        for name, least in (("n_imputations", 1), ("n_draws", 1), ("refits", 0), ("ensemble", 1)):
            v = getattr(self, name)
            if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < least:
                raise ConfigError(f"{name} must be an integer >= {least}, got {v!r}")
        if self.strategy not in STRATEGIES:
            raise ConfigError(f"strategy must be one of {STRATEGIES}, got {self.strategy!r}")
        if isinstance(self.holdout, bool) or not isinstance(self.holdout, (int, float)) or not 0 < self.holdout < 1:
            raise ConfigError(f"holdout must be a share in (0, 1), got {self.holdout!r}")
        if not isinstance(self.repeats, (bool, np.bool_)):
            raise ConfigError(f"repeats must be True or False, got {self.repeats!r}")

    def fit(self, X: Any, y: Any = None) -> Imputer:
        from ..model import Model
        self._check_params()
        df = _as_frame(X)
        seed = 0 if self.seed is None else self.seed
        make = lambda **over: Model(self.family or DEFAULT_FAMILY, seed=seed, **{**self.kw, **over})
        model = make()                                           # checks the family and its hyper-parameters
        model._check_conditional("impute missing values")        # before a long fit, not after
        self.selection_: list[dict] = []
        if getattr(model._family_class(), "fits_missing", False):
            model = self._fit_incomplete(df, make, seed)
        else:
            model.fit(df, max_time=self.max_time, verbose=False)
            if df.isna().to_numpy().any():
                for r in range(self.refits):      # stochastic EM: complete by a draw, refit on the completed table
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")           # all-missing rows: said once, at transform
                        done = fill(model, df, "draw", seed=seed + 7919 * (r + 1))
                    model = make().fit(done, max_time=self.max_time, verbose=False)
        self.model_ = model
        self.repeats_, self.repeats_info_ = None, {"used": False, "why": "repeats=False"}
        if self.repeats:
            numeric = [_is_numeric(df[name], model, name) for name in df.columns]
            integer = [model.codec_.kinds.get(str(name)) == "integer" for name in df.columns]
            guess = lambda part: fill(model, part, "mean", self.n_draws, seed)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")                   # all-missing rows: said once, at transform
                self.repeats_ = Repeats.fit(df, numeric, integer, guess, self.holdout, seed)
            self.repeats_info_ = self.repeats_.info
        self.n_features_in_ = df.shape[1]
        if isinstance(X, pd.DataFrame):
            self.feature_names_in_ = np.asarray(X.columns, dtype=object)
        return self

    def _fit_incomplete(self, df: pd.DataFrame, make, seed: int):
        """The EM for incomplete data (see the module docstring): the codec learns the columns from
        observed values (missing cells hot-decked from their column, for the codec's fit alone), the
        family then fits the cells as they are, missing ones integrated out."""
        # decoded values are not clipped to the observed range (unless asked): when cells are missing
        # at random, the range of the observed values is a biased sample of the column's
        codec_options = {"clip": False, **(self.kw.get("codec") or {})}
        started = time.monotonic()
        model = make(n_components=1, codec=codec_options).fit(_hot_deck(df, np.random.default_rng(seed)),
                                                              max_time=self.max_time, verbose=False, validation=0)
        codec, spec, dev = model.codec_, model.codec_.spec(), model.module_.device
        cond, _ = codec.encode_partial(df)                # x NaN / c -1 where a cell is missing
        batch = codec.dequantize({k: v.to(dev) for k, v in cond.items()}, torch.Generator(dev).manual_seed(seed))
        cls = type(model.module_)
        family_kw = {k: v for k, v in model._family_kwargs().items() if k not in ("n_components", "reg_covar")}
        fixed = {k: self.kw[k] for k in ("n_components", "reg_covar") if k in self.kw}
        with model._threads():
            choice = dict(fixed)
            if spec.n_continuous and len(fixed) < 2:
                choice, self.selection_ = select(cls, spec, batch, family_kw, fixed, self.holdout, seed,
                                                 self.kw.get("max_components"))
            fits, stats = [], []
            for r in range(self.ensemble if choice.get("n_components") != 1 else 1):   # one component: one optimum
                fits.append(cls(spec, **{"tol": FINAL_TOL, **family_kw, **choice}).to(dev))
                g = torch.Generator(dev).manual_seed(seed + 7919 * r)
                stats.append(fits[-1].fit_closed_form(batch, generator=g))
            module = fits[0] if len(fits) == 1 else cls.mixture_of(fits)
        k = int(module.config["n_components"])
        model.hyperparameters = {**model.hyperparameters, **choice, "n_components": k}
        model.module_ = module
        model.fit_info_ = {**model.fit_info_, "rows": len(df), "missing_cells": int(df.isna().to_numpy().sum()),
                           "n_components": float(k), "ensemble": float(len(fits)),
                           "train_log_lik": float(np.mean([st["train_log_lik"] for st in stats])),
                           "n_iter": float(np.mean([st["n_iter"] for st in stats])),
                           "fit_seconds": round(time.monotonic() - started, 3)}
        model.train_hashes_ = model._row_hashes(df)
        return model

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
            return self._like(X, self._fill(df, self.strategy, seed))
        return [self._like(X, self._fill(df, "draw", None if seed is None else seed + i))
                for i in range(self.n_imputations)]

    def _fill(self, df: pd.DataFrame, strategy: str, seed: int | None) -> pd.DataFrame:
        """``fill`` by the model, then repeated rows' donors blended in (a draw copies them by chance)."""
        out = fill(self.model_, df, strategy, self.n_draws, seed)
        if getattr(self, "repeats_", None) is None or not df.isna().to_numpy().any():
            return out
        rng = None if strategy == "mean" else np.random.default_rng(None if seed is None else seed + 104729)
        return self.repeats_.apply(df, out, rng)

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
        draws = [self._fill(df, "draw", None if self.seed is None else self.seed + 1000 + i)
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
