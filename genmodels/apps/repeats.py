"""Exact repeated rows as point masses of a table's distribution, for imputation.

A smooth model (a Gaussian mixture, a flow) gives an exact repeat of a row probability zero, yet
many tables hold repeated records: the same e-mail sent twice, a customer entered twice, an empty
form. Such rows are point masses of the data's distribution. When a row with missing cells is a
copy of another row, that row's observed cells are the best guess of the missing ones, far better
than any smooth conditional (on spam, 198 of 2,000 rows have an exact twin; a Gaussian mixture's
RMSE on their missing cells is 0.08, copying the true twin's cells 0.025).

Finding repeats under missing cells (``groups``):

- two rows are *compatible* when they agree on every cell observed in both;
- the *evidence* of a match is the surprise of the cells they agree on: the sum over those cells of
  -log of the value's frequency in its column. A value in 80% of the rows (a 0 in a sparse table)
  adds 0.2 nats, a value seen once in 2,000 rows 7.6, so chance matches of sparse rows score low;
- compatible pairs are joined into groups, most evidence first, and a pair only where it agrees
  with every cell its two groups have seen. A row that looks like two different records in
  different cells joins the better match only.

In a group, a row's *donor* value for a missing cell is the value the other members observed there
(they agree, by construction). The row's evidence is the surprise of its own observed cells that
the others observed too.

How much a donor is trusted is learnt from the table, as the Imputer chooses its other settings:
a share of the observed cells is hidden (``MASKS`` times, pooled), groups and donors are found again
on the rest, and in each band of evidence (``BANDS``, nats) two figures are read off the hidden
cells that got a donor:

- ``weight``: the w minimising the squared error of ``w * donor + (1 - w) * model_guess`` over the
  numeric cells (each column in units of its standard deviation), clipped to [0, 1]. This is the
  "mean" strategy's blend;
- ``share``: the share of hidden cells whose donor was exactly right, the probability that the row
  is a copy. Draws copy the donor with this probability (one choice per row), else keep the
  model's draw; categorical cells take the donor where it is at least 0.5.

The weights are fitted non-decreasing in evidence (isotonic regression): more evidence never earns
less trust. A band with fewer than ``MIN_CELLS`` hidden cells takes the figures of the band below
it (0, the model alone, below the first band with enough cells). The
model's guesses on the hidden cells come from the model fitted on all observed cells, hidden ones
included, so they are a little better there than on truly missing cells and the blend leans toward
the model: it errs on the side of the smooth conditional.

At transform time the rows to fill are grouped together with the training rows (a training row
identical to a row being filled, holes and all, is that row and is left out), so ``fit_transform``
and ``fit(X).transform(X)`` agree, and a new row can copy a training record. Finding compatible
pairs costs O(n^2 d): up to ``MAX_ROWS`` rows in all; past that, repeats are not used
(``Imputer.repeats_info_`` says so).
"""
from __future__ import annotations

import warnings
from typing import Callable

import numpy as np
import pandas as pd
from sklearn.isotonic import IsotonicRegression

BANDS = np.array([0.0, 5.0, 10.0, 15.0, 20.0, 30.0, 50.0, np.inf])   # evidence bands, nats
MASKS = 3                      # hidden-cell masks whose statistics are pooled
MIN_CELLS = 20                 # hidden cells with a donor a band needs before it is trusted at all
MAX_ROWS = 20_000              # rows (training + to fill) at most for the O(n^2 d) pair search
CHUNK_CELLS = 4_000_000        # pair-search working set: rows x rows x columns per chunk


def codes(df: pd.DataFrame) -> tuple[np.ndarray, list[np.ndarray]]:
    """(n, d) int64 codes of each column's values, -1 where a cell is missing (equal values, equal
    codes), and each column's values by code (to decode donors)."""
    out, uniques = np.empty(df.shape, dtype=np.int64), []
    for j in range(df.shape[1]):
        out[:, j], u = pd.factorize(df.iloc[:, j], use_na_sentinel=True)
        uniques.append(np.asarray(u, dtype=object))
    return out, uniques


def surprise(c: np.ndarray) -> np.ndarray:
    """(n, d): -log of each observed value's frequency among its column's observed values; 0 where missing."""
    out = np.zeros(c.shape)
    for j in range(c.shape[1]):
        seen = c[:, j] >= 0
        if seen.any():
            counts = np.bincount(c[seen, j])
            out[seen, j] = -np.log(counts[c[seen, j]] / seen.sum())
    return out


def compatible_pairs(c: np.ndarray, s: np.ndarray) -> np.ndarray:
    """(m, 3) rows (i, j, evidence), i < j, of every compatible pair with a cell observed in both."""
    n, d = c.shape
    seen = c >= 0
    step = max(1, CHUNK_CELLS // max(1, n * d))
    found = []
    for lo in range(0, n, step):
        a, sa = c[lo:lo + step], seen[lo:lo + step]
        both = sa[:, None, :] & seen[None, :, :]
        clash = (both & (a[:, None, :] != c[None, :, :])).any(2)
        ii, jj = np.nonzero(~clash & both.any(2))
        ii = ii + lo
        keep = jj > ii
        ii, jj = ii[keep], jj[keep]
        ev = (s[ii] * (seen[ii] & seen[jj])).sum(1)
        found.append(np.c_[ii, jj, ev])
    return np.concatenate(found) if found else np.empty((0, 3))


def groups(c: np.ndarray, pairs: np.ndarray) -> np.ndarray:
    """(n,) group labels: compatible pairs joined most evidence first, where the groups agree."""
    parent = np.arange(len(c))
    known = {}                                                  # root -> the group's cells so far

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, j, _ in pairs[np.argsort(-pairs[:, 2], kind="stable")]:
        ra, rb = root(int(i)), root(int(j))
        if ra == rb:
            continue
        va, vb = known.get(ra, c[ra]), known.get(rb, c[rb])
        both = (va >= 0) & (vb >= 0)
        if (va[both] != vb[both]).any():
            continue
        parent[rb] = ra
        known[ra] = np.where(va >= 0, va, vb)
        known.pop(rb, None)
    return np.array([root(i) for i in range(len(c))])


def donors(c: np.ndarray, s: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the donor code of each missing cell (-1: none) and the row's evidence (see the docstring)."""
    n, d = c.shape
    seen = c >= 0
    _, g = np.unique(labels, return_inverse=True)
    observers = np.zeros((g.max() + 1, d), dtype=np.int64)
    np.add.at(observers, g, seen.astype(np.int64))
    value = np.full((g.max() + 1, d), -1, dtype=np.int64)
    rows, cols = np.nonzero(seen)
    value[g[rows], cols] = c[rows, cols]                        # members agree: any observer's code
    others = observers[g] - seen > 0                            # a cell some other member observed
    donor = np.where(~seen & others, value[g], -1)
    evidence = (s * (seen & others)).sum(1)
    return donor, evidence


def find(train: pd.DataFrame | None, X: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray] | None:
    """Donor values (NaN: none) and evidence bands for the rows of ``X``, grouped with ``train``'s rows
    (those identical to a row of ``X``, holes and all, left out); None past ``MAX_ROWS``."""
    X = X.set_axis(range(X.shape[1]), axis=1)
    table = X
    if train is not None:
        train = train.set_axis(range(X.shape[1]), axis=1)
        mine = set(pd.util.hash_pandas_object(X, index=False))
        new = ~pd.util.hash_pandas_object(train, index=False).isin(mine).to_numpy()
        table = pd.concat([X, train[new]], ignore_index=True)
    if len(table) > MAX_ROWS:
        return None
    c, uniques = codes(table)
    s = surprise(c)
    donor, evidence = donors(c, s, groups(c, compatible_pairs(c, s)))
    donor = donor[:len(X)]
    values = np.full(donor.shape, np.nan, dtype=object)
    for j, u in enumerate(uniques):
        has = donor[:, j] >= 0
        values[has, j] = u[donor[has, j]]
    return pd.DataFrame(values), np.digitize(evidence[:len(X)], BANDS) - 1


class Repeats:
    """Learnt trust in donors per evidence band (``weight``, ``share``), and the training rows."""

    def __init__(self, train: pd.DataFrame, numeric: list[bool], integer: list[bool], scale: np.ndarray):
        self.train, self.scale = train.reset_index(drop=True), scale
        self.numeric, self.integer = np.asarray(numeric), np.asarray(integer)
        self.weight = np.zeros(len(BANDS) - 1)
        self.share = np.zeros(len(BANDS) - 1)
        self.info: dict = {}

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "_last"}      # the search cache is not saved

    @classmethod
    def fit(cls, df: pd.DataFrame, numeric: list[bool], integer: list[bool],
            guess: Callable[[pd.DataFrame], pd.DataFrame], holdout: float, seed: int) -> Repeats:
        """Learn the trust bands from ``holdout`` of ``df``'s observed cells (``guess`` fills a frame by the
        model; ``numeric`` and ``integer`` flag the columns by kind)."""
        scale = np.array([float(pd.to_numeric(df.iloc[:, j], errors="coerce").std()) if numeric[j] else 1.0
                          for j in range(df.shape[1])])
        scale = np.where(np.isfinite(scale) & (scale > 0), scale, 1.0)
        self = cls(df, numeric, integer, scale)
        rng = np.random.default_rng(seed + 3)
        seen, truth = df.notna().to_numpy(), df.to_numpy(dtype=object)
        bands = len(BANDS) - 1
        stats = np.zeros((4, bands))                     # per band: cells, exact donors, sum (t-m)(d-m), sum (d-m)^2
        for _ in range(MASKS):
            hide = seen & (rng.random(df.shape) < holdout)
            hide[(seen & ~hide).sum(1) == 0] = False             # every row keeps an observed cell
            hidden = df.mask(hide)
            found = find(None, hidden)
            if found is None:
                self.info = {"used": False, "why": f"{len(df)} rows > {MAX_ROWS} (the pair search is O(n^2 d))"}
                return self
            values, band = found[0].to_numpy(dtype=object), found[1]
            cells = hide & pd.notna(values)
            if not cells.any():
                continue
            model = np.full(df.shape, np.nan, dtype=object)
            some = cells.any(1)                                  # the model's guess only where it is needed
            model[some] = guess(hidden[some]).to_numpy(dtype=object)
            for b in range(bands):
                here = cells & (band == b)[:, None]
                stats[:2, b] += here.sum(), np.sum(values[here] == truth[here])
                r, k = np.nonzero(here & self.numeric[None, :])
                t, dv, m = (np.asarray(a[r, k], dtype=float) / self.scale[k] for a in (truth, values, model))
                stats[2:, b] += np.sum((t - m) * (dv - m)), np.sum((dv - m) ** 2)
        ok = stats[0] >= MIN_CELLS
        self.share = np.where(ok, stats[1] / np.maximum(stats[0], 1), 0.0)
        fit = ok & (stats[3] > 0)
        if fit.any():                                    # least squares per band, then non-decreasing in evidence
            raw = stats[2, fit] / stats[3, fit]
            iso = IsotonicRegression(y_min=0.0, y_max=1.0, increasing=True)
            self.weight[fit] = iso.fit_transform(np.flatnonzero(fit), raw, sample_weight=stats[3, fit])
        for b in range(1, bands):                        # too few cells: as much trust as less evidence gets
            if not fit[b]:
                self.weight[b] = self.weight[b - 1]
            if not ok[b]:
                self.share[b] = self.share[b - 1]
        self.info = {"used": True, "hidden_cells_with_donor": int(stats[0].sum()),
                     "weight": self.weight.round(3).tolist(), "share": self.share.round(3).tolist(),
                     "bands": BANDS.tolist()}
        return self

    def apply(self, X: pd.DataFrame, filled: pd.DataFrame, rng: np.random.Generator | None = None) -> pd.DataFrame:
        """``filled`` (X's missing cells filled by the model) with donors blended in: by ``weight`` when
        ``rng`` is None (the mean strategy), else copied with probability ``share`` per row (a draw)."""
        if not self.info.get("used") or not (self.weight.any() or self.share.any()):
            return filled
        key = (X.shape, pd.util.hash_pandas_object(X, index=False).to_numpy().tobytes())
        if getattr(self, "_last", (None,))[0] != key:           # multiple imputations: one search for all
            self._last = (key, find(self.train, X))
        found = self._last[1]
        if found is None:
            warnings.warn(f"repeated rows not used: more than {MAX_ROWS} rows with the training table "
                          "(transform in smaller batches to use them)", UserWarning, stacklevel=3)
            return filled
        values, band = found
        has = values.notna().to_numpy()
        if not has.any():
            return filled
        out = filled.copy()
        copy = None if rng is None else rng.random(len(X)) < self.share[band]
        for j, name in enumerate(X.columns):
            rows = np.flatnonzero(has[:, j])
            if not len(rows):
                continue
            v = values.iloc[rows, j].to_numpy()
            if copy is not None:
                rows, v = rows[copy[rows]], v[copy[rows]]
                v = v.astype(float) if self.numeric[j] else v
            elif self.numeric[j]:
                w = self.weight[band[rows]]
                model = out.iloc[rows, j].to_numpy(dtype=float)
                v = w * v.astype(float) + (1 - w) * model
                if self.integer[j]:
                    v = np.round(v)
            else:
                keep = self.share[band[rows]] >= 0.5
                rows, v = rows[keep], v[keep]
            if len(rows):
                out.iloc[rows, j] = v
        return out
