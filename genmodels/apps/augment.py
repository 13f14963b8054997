"""Class-conditional synthetic rows to balance or enlarge a labelled training table.

``augment(X, y, family, strategy=...)`` fits a generative model to the labelled rows and returns
the real rows followed by synthetic ones, with their labels:

``strategy="balance"``
    every class is topped up to ``n`` rows (default: the size of the largest class); classes
    that already have ``n`` rows get none.
``strategy="enlarge"``
    ``n`` synthetic rows in all (default: as many as there are real rows), shared among the classes
    in proportion to their frequencies (largest-remainder rounding), so the class balance is kept.

How the rows are made class-conditional (``mode=``):

``"joint"`` (the default for families with conditional sampling: gmm, kde, autoregressive,
    diffusion, gan)
    one model of the table with the label joined as a categorical column; a class's rows are
    ``sample(k, condition={label: class})``, so they carry that label exactly and every class
    borrows strength from the others (shared components, shared network).
``"per_class"`` (the default for the others, e.g. flow and vae)
    one model per class, fitted on that class's rows only. Small classes are then modelled from
    very few rows; ``min_class_rows`` guards against the worst of it.

In "joint" mode the family's smoothing of the label column (gmm's ``category_prior``, kde's
``category_smoothing``) is part of its conditional distribution: a minority class's samples then
include a few rows from the majority's region (about 3% for gmm's default prior on a 1:10 split),
i.e. some label noise. Pass ``category_prior=0.01`` (gmm) or ``mode="per_class"`` to avoid it.

Augmentation helps a downstream classifier when the minority class is too small for the
classifier to find its region but big enough for the generator to model it; it does not help, and
may hurt, when the classifier already copes (enough minority rows, or a classifier that reweights
classes), or when the generator blurs the classes together (see benchmarks/ood_augment.py).

References:
    Chawla, Bowyer, Hall & Kegelmeyer (2002), SMOTE: synthetic minority over-sampling technique.
    Xu, Skoularidou, Cuesta-Infante & Veeramachaneni (2019), Modeling tabular data using
    conditional GAN (the conditional generator for imbalanced categories).

Example:
    >>> import numpy as np
    >>> from genmodels.apps.augment import augment
    >>> rng = np.random.default_rng(0)
    >>> X = np.r_[rng.normal(0, 1, (90, 2)), rng.normal(3, 1, (10, 2))]
    >>> y = np.r_[np.zeros(90, int), np.ones(10, int)]
    >>> X_aug, y_aug = augment(X, y, "gmm", seed=0)
    >>> X_aug.shape, np.bincount(y_aug).tolist()
    ((180, 2), [90, 90])
"""
from __future__ import annotations

import copy
import numbers
from typing import Any

import numpy as np
import pandas as pd

from .. import registry
from ..errors import ConfigError, DataError

STRATEGIES = ("balance", "enlarge")
MODES = ("auto", "joint", "per_class")
LABEL = "__label__"


# =========================================================================== input checks
def _as_frame(X: Any) -> pd.DataFrame:
    """The codec's coercion, then column names as the codec sees them (str), unique, and a fresh index."""
    X = registry.codec("tabular").coerce(X)
    if X.shape[1] == 0:
        raise DataError("X has no columns; give at least one feature column")
    names = pd.Index([str(c) for c in X.columns])
    if names.duplicated().any():
        raise DataError(f"X has duplicate column names {list(names[names.duplicated()])}; rename them")
    out = X.reset_index(drop=True).set_axis(names, axis=1)
    out.attrs.clear()      # a frame of our own: models fitted on it give DataFrames back, arrays or not
    return out


def _as_labels(y: Any, n_rows: int) -> np.ndarray:
    if isinstance(y, pd.DataFrame):
        raise DataError("y must be one column of labels (a Series, list or 1-D array), not a DataFrame")
    labels = y.to_numpy() if isinstance(y, pd.Series) else np.asarray(y)
    if labels.ndim != 1:
        raise DataError(f"y must be 1-D (one label per row), got shape {labels.shape}")
    if len(labels) != n_rows:
        raise DataError(f"X has {n_rows} rows but y has {len(labels)} labels; give one label per row")
    if pd.isna(labels).any():
        raise DataError(f"y has {int(pd.isna(labels).sum())} missing labels; drop those rows or label them")
    return labels


def _check_count(name: str, n: Any) -> int:
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 0:
        raise ConfigError(f"{name} must be a whole number >= 0, got {n!r}")
    return int(n)


def synthetic_counts(counts: dict[Any, int], strategy: str, n: int | None) -> dict[Any, int]:
    """How many synthetic rows each class gets, from its real ``counts`` (see the module docstring)."""
    if strategy not in STRATEGIES:
        raise ConfigError(f"strategy={strategy!r} is not one; use one of {STRATEGIES}")
    if strategy == "balance":
        target = max(counts.values()) if n is None else _check_count("n", n)
        return {c: max(0, target - k) for c, k in counts.items()}
    total = sum(counts.values()) if n is None else _check_count("n", n)
    exact = {c: total * k / sum(counts.values()) for c, k in counts.items()}
    out = {c: int(np.floor(v)) for c, v in exact.items()}
    by_remainder = sorted(counts, key=lambda c: out[c] - exact[c])      # largest remainder first
    for c in by_remainder[: total - sum(out.values())]:
        out[c] += 1
    return out


# =========================================================================== fitting and sampling
def _seeds(seed: int | None) -> np.random.Generator:
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, numbers.Integral)):
        raise ConfigError(f"seed must be an integer or None, got {seed!r}")
    return np.random.default_rng(seed)


def _new_model(family: str, seed: int, kw: dict[str, Any], codec_kinds: dict[str, str] | None = None) -> Any:
    from ..model import Model
    kw = copy.deepcopy(kw)
    codec = dict(kw.pop("codec", None) or {})
    if codec_kinds:
        codec["column_kinds"] = {**codec.get("column_kinds", {}), **codec_kinds}
    return Model(family, seed=seed, codec=codec, **kw)


def _sample_joint(df: pd.DataFrame, labels: np.ndarray, classes: list, need: dict[int, int], family: str,
                  rng: np.random.Generator, max_time: float | None, kw: dict[str, Any]) -> list[pd.DataFrame]:
    """One model of [X, label]; class i's rows by sampling with condition {label: "class_i"}."""
    label = LABEL
    while label in df.columns:
        label = "_" + label + "_"
    codes = {c: f"class_{i}" for i, c in enumerate(classes)}      # strings: a categorical column of any label type
    table = df.assign(**{label: pd.Series([codes[v] for v in labels], dtype=object).astype(str)})
    model = _new_model(family, int(rng.integers(2**31)), kw, {label: "categorical"})
    model.fit(table, max_time=max_time, verbose=False)
    parts = []
    for i, k in need.items():
        if k:
            rows = model.sample(k, seed=int(rng.integers(2**31)), condition={label: codes[classes[i]]})
            parts.append(rows.drop(columns=[label]))
    return parts


def _sample_per_class(df: pd.DataFrame, labels: np.ndarray, classes: list, need: dict[int, int], family: str,
                      rng: np.random.Generator, max_time: float | None, kw: dict[str, Any]) -> list[pd.DataFrame]:
    """One model per class that needs rows, fitted on that class's rows alone."""
    parts = []
    for i, k in need.items():
        if k:
            rows = df[labels == classes[i]].reset_index(drop=True)
            model = _new_model(family, int(rng.integers(2**31)), kw)
            model.fit(rows, max_time=max_time, verbose=False, validation=0.1 if len(rows) >= 20 else 0.0)
            parts.append(model.sample(k, seed=int(rng.integers(2**31))))
    return parts


def _resolve_mode(mode: str, family: str) -> str:
    if mode not in MODES:
        raise ConfigError(f"mode={mode!r} is not one; use one of {MODES}")
    cls = registry.family(family)                    # an unknown family fails here, with the list
    if mode == "joint" and not cls.conditional:
        able = registry.families_where("tabular", lambda c: c.conditional)
        raise ConfigError(f"mode='joint' needs a family with conditional sampling ({able}); "
                          f"{family!r} has none: use mode='per_class'")
    if mode == "auto":
        return "joint" if cls.conditional else "per_class"
    return mode


# =========================================================================== public
def augment(X: Any, y: Any, family: str = "gmm", n: int | None = None, strategy: str = "balance",
            seed: int | None = None, max_time: float | None = None, *, mode: str = "auto",
            min_class_rows: int = 5, **kw: Any) -> tuple[Any, Any]:
    """Real rows plus class-conditional synthetic rows: ``(X_aug, y_aug)``.

    Args:
        X: features, a DataFrame (any column kinds the tabular codec handles) or a 2-D array.
        y: one label per row (Series, list or 1-D array); any hashable labels, at least two classes.
        family: the generative family (``genmodels.list_models()``).
        n: "balance": rows per class after augmentation (default: the largest class's count);
           "enlarge": synthetic rows in all (default: ``len(X)``). See the module docstring.
        strategy: "balance" or "enlarge".
        seed: makes the result repeatable (None: fresh randomness each call).
        max_time: ``max_time`` of each model's fit, seconds (gradient-trained families).
        mode: "auto", "joint" (one model, label as a conditioned column) or "per_class".
        min_class_rows: a class with fewer real rows is an error (too few to model).
        **kw: passed to ``genmodels.Model`` (hyper-parameters, ``num_threads``, ``codec``, ...).

    Returns:
        ``X_aug`` of X's type (DataFrame with a fresh RangeIndex, or an array of X's dtype) and
        ``y_aug`` of y's type (a Series keeps its name and dtype; a list becomes an array): the real
        rows first, in their order, then the synthetic rows grouped by class.
    """
    df = _as_frame(X)
    labels = _as_labels(y, len(df))
    if len(df) == 0:
        raise DataError("X has no rows")
    min_class_rows = _check_count("min_class_rows", min_class_rows)
    classes, counts = _classes(labels)
    if len(classes) < 2:
        raise DataError(f"y has a single class ({classes[0]!r}); augmentation needs at least two classes")
    small = {c: int(k) for c, k in zip(classes, counts) if k < min_class_rows}
    if small:
        raise DataError(f"classes with fewer than min_class_rows={min_class_rows} rows: {small}; a model cannot "
                        "learn a class from so few rows: drop or merge them, or lower min_class_rows")
    need_by_class = synthetic_counts(dict(zip(classes, (int(k) for k in counts))), strategy, n)
    need = {i: need_by_class[c] for i, c in enumerate(classes)}
    rng = _seeds(seed)
    sampler = _sample_joint if _resolve_mode(mode, family) == "joint" else _sample_per_class
    if sum(need.values()) == 0:
        return _assemble(X, y, df, [], [], classes)
    parts = sampler(df, labels, classes, need, family, rng, max_time, kw)
    synth_labels = [i for i, k in need.items() for _ in range(k)]
    return _assemble(X, y, df, parts, synth_labels, classes)


def _classes(labels: np.ndarray) -> tuple[list, np.ndarray]:
    """The classes (sorted where they can be, else in order of first appearance) and their counts."""
    counts = pd.Series(labels).value_counts(sort=False)
    try:
        counts = counts.sort_index()
    except TypeError:       # mixed label types that do not compare
        pass
    return list(counts.index), counts.to_numpy()


def _assemble(X: Any, y: Any, df: pd.DataFrame, parts: list[pd.DataFrame], synth_labels: list[int],
              classes: list) -> tuple[Any, Any]:
    """Real rows then synthetic rows, in the input's types."""
    new_y = np.array([classes[i] for i in synth_labels], dtype=object)
    if isinstance(X, np.ndarray):
        synth = [p.to_numpy(dtype=X.dtype) for p in parts]
        X_aug = np.concatenate([X] + synth, axis=0) if synth else X.copy()
    else:
        X_aug = pd.concat([df] + [p[df.columns] for p in parts], ignore_index=True) if parts else df.copy()
        X_aug = X_aug.astype(df.dtypes.to_dict()).set_axis(X.columns, axis=1)
    if isinstance(y, pd.Series):
        y_aug = pd.concat([y.reset_index(drop=True), pd.Series(new_y, name=y.name)], ignore_index=True)
        return X_aug, y_aug.astype(y.dtype)
    real = np.asarray(y)
    return X_aug, np.concatenate([real, new_y.astype(real.dtype)])
