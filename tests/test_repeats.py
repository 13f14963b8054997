"""Repeated rows as point masses in imputation (genmodels.apps.repeats): the pair search against a
plain loop, the grouping rules, and the Imputer copying a twin's cells where they are known."""
from __future__ import annotations

import itertools
import pickle

import numpy as np
import pandas as pd
import pytest

import genmodels as gm
from genmodels.apps import repeats as R
from genmodels.errors import ConfigError


def test_compatible_pairs_match_a_plain_loop():
    rng = np.random.default_rng(0)
    c = rng.integers(0, 2, size=(40, 5))
    c[rng.random(c.shape) < 0.4] = -1
    s = R.surprise(c)
    got = {(int(i), int(j)): ev for i, j, ev in R.compatible_pairs(c, s)}
    want = {}
    for i, j in itertools.combinations(range(len(c)), 2):
        both = (c[i] >= 0) & (c[j] >= 0)
        if both.any() and (c[i][both] == c[j][both]).all():
            want[(i, j)] = s[i][both].sum()
    assert got.keys() == want.keys() and len(want) > 20
    assert all(np.isclose(got[k], want[k]) for k in want)
    # surprise: -log of the value's share among the column's observed cells
    col = c[:, 0][c[:, 0] >= 0]
    assert np.isclose(s[np.flatnonzero(c[:, 0] == 1)[0], 0], -np.log(np.mean(col == 1)))


def test_groups_join_the_best_match_and_refuse_conflicts():
    c = np.array([[1, 2, -1, 4],      # A
                  [1, -1, 3, 4],      # B: agrees with A on columns 0 and 3
                  [1, 2, 5, -1],      # C: agrees with A on 0 and 1, but says 5 where B says 3
                  [7, 8, 9, 9]])      # D: nobody's twin
    s = np.array([[0.1, 1.0, 0, 5.0], [0.1, 0, 2.0, 5.0], [0.1, 1.0, 3.0, 0], [1, 1, 1, 1]])
    pairs = R.compatible_pairs(c, s)
    assert {(int(i), int(j)) for i, j, _ in pairs} == {(0, 1), (0, 2)}
    labels = R.groups(c, pairs)
    assert labels[0] == labels[1] and len({labels[0], labels[2], labels[3]}) == 3   # A-B (5.1 nats) beats A-C (1.1)
    donor, evidence = R.donors(c, s, labels)
    assert donor[0].tolist() == [-1, -1, 3, -1] and donor[1].tolist() == [-1, 2, -1, -1]
    assert (donor[2:] == -1).all()
    assert np.allclose(evidence, [5.1, 5.1, 0, 0])      # own observed cells that another member saw


def twins_table(seed: int = 0, n: int = 300, n_twins: int = 60, d: int = 6, missing: float = 0.2):
    """Correlated Gaussian rows, ``n_twins`` of them repeated once, and the same table with holes."""
    rng = np.random.default_rng(seed)
    base = rng.standard_normal((n, d)) @ rng.standard_normal((d, d))
    x = np.vstack([base, base[:n_twins]])
    holed = np.where(rng.random(x.shape) < missing, np.nan, x)
    return x, holed, n_twins


def test_twins_copy_each_others_cells():
    x, holed, k = twins_table()
    imp = gm.Imputer(seed=0)
    out = imp.fit_transform(holed)
    n = len(x) - k
    assert imp.repeats_info_["used"] and max(imp.repeats_info_["weight"]) > 0.9
    miss = np.isnan(holed)
    assert np.array_equal(out[~miss], x[~miss])                     # observed cells untouched
    first, second = np.arange(k), np.arange(n, n + k)                 # the twin pairs
    known = np.zeros_like(miss)                                       # missing in one twin, seen in the other
    known[first] = miss[first] & ~miss[second]
    known[second] = miss[second] & ~miss[first]
    weak = (~miss[first] & ~miss[second]).sum(1) < 2                  # one shared cell: under 5 nats of evidence,
    known[first[weak]] = known[second[weak]] = False                   # a band without trust here
    assert known.sum() > 80
    assert np.abs(out[known] - x[known]).max() < 1e-9                 # copied exactly
    alone = gm.Imputer(seed=0, repeats=False).fit_transform(holed)
    assert np.sqrt(np.mean((alone[known] - x[known]) ** 2)) > 0.3     # what the smooth model alone gets
    others = miss & ~known
    assert np.allclose(out[others], alone[others])                    # rows without a twin: the model's guess
    # fit(X).transform(X) is fit_transform(X); multiple imputations copy the twin too
    assert np.array_equal(imp.transform(holed), out)
    for draw in gm.Imputer(seed=0, n_imputations=2).fit(holed).transform(holed):
        assert np.mean(np.abs(draw[known] - x[known]) < 1e-9) > 0.9


def test_a_new_row_copies_a_training_record_and_the_imputer_pickles():
    x, holed, k = twins_table(seed=1)
    imp = gm.Imputer(seed=0).fit(pd.DataFrame(holed, columns=list("abcdef")))
    row = int(np.flatnonzero(~np.isnan(holed).any(1))[0])              # a training row with no hole
    new = pd.DataFrame([x[row]], columns=list("abcdef"))
    new.iloc[0, [1, 4]] = np.nan
    out = imp.transform(new)
    assert np.allclose(out.iloc[0].to_numpy(), x[row])               # the record's own values
    again = pickle.loads(pickle.dumps(imp))
    assert not hasattr(again.repeats_, "_last")                       # the search cache is not saved
    pd.testing.assert_frame_equal(again.transform(new), out)


def test_no_repeats_no_change_and_bad_value():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((200, 4)) @ rng.standard_normal((4, 4))
    holed = np.where(rng.random(x.shape) < 0.2, np.nan, x)
    on = gm.Imputer(seed=0).fit(holed)
    assert on.repeats_info_["hidden_cells_with_donor"] == 0
    assert np.array_equal(on.transform(holed), gm.Imputer(seed=0, repeats=False).fit_transform(holed))
    with pytest.raises(ConfigError, match="repeats must be True or False"):
        gm.Imputer(repeats="yes").fit(holed)
