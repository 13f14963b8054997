"""augment: counts per strategy, class-conditional rows that follow their class, types, bad input."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from genmodels.apps.augment import _resolve_mode, augment, synthetic_counts
from genmodels.errors import ConfigError, DataError, UnknownModelError

torch.set_num_threads(1)

MU = {0: np.array([0.0, 0.0]), 1: np.array([4.0, -3.0])}


def two_classes(n0: int = 300, n1: int = 30, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = np.r_[MU[0] + rng.standard_normal((n0, 2)), MU[1] + 0.5 * rng.standard_normal((n1, 2))]
    return X, np.r_[np.zeros(n0, dtype=np.int64), np.ones(n1, dtype=np.int64)]


def nearer_to(rows: np.ndarray, cls: int) -> float:
    """Share of rows nearer to class cls's mean than to the other's."""
    d = {c: np.linalg.norm(rows - MU[c], axis=1) for c in MU}
    return float(np.mean(d[cls] < d[1 - cls]))


def mixed_frame(seed: int = 0) -> tuple[pd.DataFrame, pd.Series]:
    """A numeric and a categorical feature whose distribution depends on a string label."""
    rng = np.random.default_rng(seed)
    y = np.array(["common"] * 200 + ["rare"] * 25)
    size = np.where(y == "rare", 5.0, 0.0) + rng.standard_normal(len(y))
    colour = np.where(y == "rare", rng.choice(["red", "blue"], len(y), p=[0.9, 0.1]),
                      rng.choice(["red", "blue"], len(y), p=[0.1, 0.9]))
    X = pd.DataFrame({"size": size, "colour": colour}, index=np.arange(1000, 1000 + len(y)))
    return X, pd.Series(y, name="kind", index=X.index)


# ------------------------------------------------------------------ counts
def test_synthetic_counts():
    counts = {"a": 5, "b": 3, "c": 2}
    assert synthetic_counts(counts, "balance", None) == {"a": 0, "b": 2, "c": 3}
    assert synthetic_counts(counts, "balance", 4) == {"a": 0, "b": 1, "c": 2}
    assert synthetic_counts(counts, "enlarge", None) == {"a": 5, "b": 3, "c": 2}
    # 7 rows in proportion 5:3:2 = 3.5, 2.1, 1.4: floors 3, 2, 1 and the largest remainder (a) gets the 7th
    assert synthetic_counts(counts, "enlarge", 7) == {"a": 4, "b": 2, "c": 1}
    assert sum(synthetic_counts({"x": 7, "y": 13}, "enlarge", 11).values()) == 11


# ------------------------------------------------------------------ arrays, joint model
@pytest.mark.parametrize("family", ["gmm", "kde"])
def test_balance_arrays_joint(family):
    X, y = two_classes()
    X_aug, y_aug = augment(X, y, family, seed=0)
    assert isinstance(X_aug, np.ndarray) and isinstance(y_aug, np.ndarray)
    assert X_aug.dtype == X.dtype and y_aug.dtype == y.dtype
    assert X_aug.shape == (600, 2) and np.bincount(y_aug).tolist() == [300, 300]
    np.testing.assert_array_equal(X_aug[:330], X)              # real rows first, unchanged
    np.testing.assert_array_equal(y_aug[:330], y)
    synth = X_aug[330:]
    assert (y_aug[330:] == 1).all()
    # the synthetic rows follow the minority class N((4, -3), 0.25 I), not the majority; the family's
    # smoothing of the label column (gmm's category_prior, kde's category_smoothing) lets a few percent
    # come from the majority's region
    np.testing.assert_allclose(synth.mean(0), MU[1], atol=0.25)
    assert nearer_to(synth, 1) > 0.95


@pytest.mark.parametrize("kw", [{"mode": "per_class"}, {"category_prior": 0.01}])
def test_no_leak_per_class_or_without_label_smoothing(kw):
    X, y = two_classes()
    synth = augment(X, y, "gmm", seed=0, **kw)[0][330:]
    assert nearer_to(synth, 1) == 1.0
    np.testing.assert_allclose(synth.mean(0), MU[1], atol=0.15)
    np.testing.assert_allclose(synth.std(0), [0.5, 0.5], atol=0.1)


def test_enlarge_keeps_class_shares_and_follows_each_class():
    X, y = two_classes()
    X_aug, y_aug = augment(X, y, "gmm", n=110, strategy="enlarge", seed=1)
    assert len(X_aug) == 440 and np.bincount(y_aug[330:]).tolist() == [100, 10]
    s = X_aug[330:]
    np.testing.assert_allclose(s[y_aug[330:] == 0].mean(0), MU[0], atol=0.35)
    assert nearer_to(s[y_aug[330:] == 0], 0) > 0.97 and nearer_to(s[y_aug[330:] == 1], 1) > 0.8


def test_repeatable_with_seed():
    X, y = two_classes()
    a, b, c = augment(X, y, seed=5), augment(X, y, seed=5), augment(X, y, seed=6)
    np.testing.assert_array_equal(a[0], b[0])
    assert not np.array_equal(a[0], c[0])


def test_nothing_to_add_returns_the_real_rows():
    X, y = two_classes()
    X_aug, y_aug = augment(X, y, n=10, seed=0)                 # every class already has >= 10 rows
    np.testing.assert_array_equal(X_aug, X)
    np.testing.assert_array_equal(y_aug, y)
    assert X_aug is not X


# ------------------------------------------------------------------ frames, mixed kinds, per-class models
@pytest.mark.parametrize("family,mode", [("kde", "auto"), ("gmm", "per_class")])
def test_frames_with_mixed_columns_and_string_labels(family, mode):
    X, y = mixed_frame()
    X_aug, y_aug = augment(X, y, family, seed=0, mode=mode)
    assert isinstance(X_aug, pd.DataFrame) and isinstance(y_aug, pd.Series)
    assert list(X_aug.columns) == ["size", "colour"] and (X_aug.dtypes == X.dtypes).all()
    assert y_aug.name == "kind" and y_aug.dtype == y.dtype
    assert (X_aug.index == np.arange(400)).all() and (y_aug.index == X_aug.index).all()
    pd.testing.assert_frame_equal(X_aug.iloc[:225], X.reset_index(drop=True))
    synth = X_aug.iloc[225:]
    assert (y_aug.iloc[225:] == "rare").all() and len(synth) == 175
    assert abs(synth["size"].mean() - 5.0) < 0.5               # rare rows sit at size ~ 5
    assert 0.75 < (synth["colour"] == "red").mean() <= 1.0     # and are mostly red (0.9)


def test_label_column_name_collision_and_list_labels():
    X, y = two_classes(100, 10)
    df = pd.DataFrame(X, columns=["__label__", "b"])
    X_aug, y_aug = augment(df, list(y), "gmm", seed=0)
    assert list(X_aug.columns) == ["__label__", "b"] and isinstance(y_aug, np.ndarray)
    assert np.bincount(y_aug).tolist() == [100, 100]


def test_non_string_column_names_and_column_kinds():
    rng = np.random.default_rng(0)
    X = pd.DataFrame({0: rng.integers(0, 5, 60), 1: pd.Categorical(rng.choice(["u", "v"], 60)),
                      2: rng.random(60) > 0.5})
    X_aug, _ = augment(X, np.r_[np.zeros(50, int), np.ones(10, int)], "kde", seed=0)
    assert list(X_aug.columns) == [0, 1, 2] and (X_aug.dtypes == X.dtypes).all()
    assert len(X_aug) == 100 and set(X_aug[1]) <= {"u", "v"}
    with pytest.raises(DataError, match="duplicate"):
        augment(pd.DataFrame([[1.0, 2.0]] * 12, columns=[1, "1"]), [0] * 6 + [1] * 6)


def test_modes():
    assert _resolve_mode("auto", "gmm") == "joint"
    assert _resolve_mode("auto", "flow") == "per_class"
    with pytest.raises(ConfigError, match="per_class"):
        _resolve_mode("joint", "flow")
    with pytest.raises(ConfigError):
        _resolve_mode("both", "gmm")


# ------------------------------------------------------------------ bad input
def test_bad_input():
    X, y = two_classes(50, 10)
    with pytest.raises(DataError, match="50 rows|60 rows"):
        augment(X, y[:-1])
    with pytest.raises(DataError, match="single class"):
        augment(X, np.zeros(60))
    with pytest.raises(DataError, match="min_class_rows"):
        augment(X, np.r_[np.zeros(57), np.ones(3)])
    with pytest.raises(DataError, match="missing"):
        augment(X, np.r_[np.zeros(59), np.nan])
    with pytest.raises(DataError, match="1-D"):
        augment(X, y[:, None])
    with pytest.raises(DataError):
        augment(X[:, 0], y)
    with pytest.raises(DataError):
        augment(X.tolist(), y)
    with pytest.raises(ConfigError, match="strategy"):
        augment(X, y, strategy="oversample")
    for bad_n in (-1, 2.5, True):
        with pytest.raises(ConfigError, match="n must"):
            augment(X, y, n=bad_n)
    with pytest.raises(ConfigError, match="seed"):
        augment(X, y, seed="zero")
    with pytest.raises(UnknownModelError):
        augment(X, y, "gmn")
    with pytest.raises(ConfigError):
        augment(X, y, "gmm", n_components=0)                    # the family's own check
