"""Built-in data sets (exact toy densities, fixed splits, metadata) and read_table's errors."""
from __future__ import annotations

import gzip
import math

import numpy as np
import pandas as pd
import pytest
from scipy.stats import multivariate_normal

from genmodels import datasets
from genmodels.errors import ConfigError, DataError, UnknownModelError

TOYS = ["moons", "circles", "checkerboard", "8gaussians"]
# bounding box (x1 lo, x1 hi, x2 lo, x2 hi) holding all but a negligible mass, and grid step:
# the step is a fraction of each toy's noise sigma, so the midpoint rule is accurate far below 1e-2
BOXES = {"moons": ((-1.7, 2.7, -1.2, 1.7), 0.04),
         "circles": ((-1.45, 1.45, -1.45, 1.45), 0.02),
         "checkerboard": ((-2.5, 2.5, -2.5, 2.5), 0.05),
         "8gaussians": ((-3.4, 3.4, -3.4, 3.4), 0.05)}


def _grid(box, step):
    x1 = np.arange(box[0] + step / 2, box[1], step)   # midpoints: never on a checkerboard edge
    x2 = np.arange(box[2] + step / 2, box[3], step)
    g1, g2 = np.meshgrid(x1, x2, indexing="ij")
    return pd.DataFrame({"x1": g1.ravel(), "x2": g2.ravel()})


@pytest.mark.parametrize("name", TOYS)
def test_toy_density_integrates_to_one_and_matches_its_samples(name):
    data = datasets.load(name)
    box, step = BOXES[name]
    grid = _grid(box, step)
    p = np.exp(data.true_log_prob(grid))
    assert abs(p.sum() * step * step - 1.0) < 1e-2

    # the generator and the density describe the same distribution: mass of 3x3 blocks of the box
    # by the density against the share of the 5000 generated rows (standard error <= 0.007)
    rows = pd.concat([data.train, data.test], ignore_index=True)
    e1, e2 = np.linspace(box[0], box[1], 4), np.linspace(box[2], box[3], 4)
    mass = np.histogram2d(grid.x1, grid.x2, bins=[e1, e2], weights=p * step * step)[0]
    share = np.histogram2d(rows.x1, rows.x2, bins=[e1, e2])[0] / len(rows)
    assert np.abs(mass - share).max() < 0.03


def test_toy_frames():
    for name in TOYS:
        d = datasets.load(name)
        assert list(d.train.columns) == ["x1", "x2"]
        assert (d.train.dtypes == np.float64).all()
        assert len(d.train) + len(d.test) == 5000
        assert np.isfinite(d.true_log_prob(d.test)).all()


def test_moons_quadrature_matches_monte_carlo():
    # stratified Monte Carlo over the angle: one uniform draw in each of 200k equal slices of [0, pi]
    n = 200_000
    t = (np.arange(n) + np.random.default_rng(0).uniform(size=n)) * math.pi / n
    curves = [np.c_[np.cos(t), np.sin(t)], np.c_[1 - np.cos(t), 0.5 - np.sin(t)]]
    points = np.array([[0.0, 1.0], [1.0, 0.0], [0.5, 0.25], [2.0, 0.6], [-1.2, -0.3]])
    lp = datasets.load("moons").true_log_prob(pd.DataFrame(points, columns=["x1", "x2"]))
    for x, v in zip(points, lp):
        mc = 0.5 * sum(np.mean(np.exp(-((x - c) ** 2).sum(1) / (2 * 0.01)) / (2 * math.pi * 0.01)) for c in curves)
        assert v == pytest.approx(math.log(mc), abs=1e-3)


def test_moons_quadrature_converged():
    # the default rule against 8x more nodes, out to |x| ~ 5: numerically exact (< 1e-6 nats)
    x = _grid((-3.0, 4.0, -3.0, 3.5), 0.4).to_numpy()
    np.testing.assert_allclose(datasets._moons_log_prob(x), datasets._moons_log_prob(x, panels=2048), atol=1e-6)


def test_circles_closed_form_matches_quadrature():
    x = _grid((-1.5, 1.5, -1.5, 1.5), 0.1).to_numpy()
    t = np.linspace(0, 2 * math.pi, 4096, endpoint=False)   # periodic: the trapezoid rule is spectral
    s2 = 0.05**2
    dens = 0
    for r in (1.0, 0.5):
        d2 = (x[:, :1] - r * np.cos(t)) ** 2 + (x[:, 1:] - r * np.sin(t)) ** 2
        dens = dens + 0.5 * np.exp(-d2 / (2 * s2)).mean(1) / (2 * math.pi * s2)
    lp = datasets.load("circles").true_log_prob(x)
    ok = dens > 1e-200
    np.testing.assert_allclose(lp[ok], np.log(dens[ok]), atol=1e-8)


def test_eight_gaussians_matches_scipy():
    x = _grid((-3, 3, -3, 3), 0.5)
    means = [2 * np.array([math.cos(k * math.pi / 4), math.sin(k * math.pi / 4)]) for k in range(8)]
    ref = np.log(sum(multivariate_normal(m, 0.04 * np.eye(2)).pdf(x.to_numpy()) for m in means) / 8)
    np.testing.assert_allclose(datasets.load("8gaussians").true_log_prob(x), ref, rtol=1e-10)


def test_checkerboard_values():
    d = datasets.load("checkerboard")
    np.testing.assert_allclose(d.true_log_prob(d.train), math.log(1 / 8))
    pts = pd.DataFrame({"x1": [-1.5, -0.5, 0.5, 2.5, 1.5], "x2": [-1.5, -1.5, 0.5, 0.0, 0.5]})
    np.testing.assert_array_equal(d.true_log_prob(pts), [math.log(1 / 8), -np.inf, math.log(1 / 8), -np.inf, -np.inf])


def test_splits_fixed_by_seed():
    a, b, c = datasets.load("wine", seed=1), datasets.load("wine", seed=1), datasets.load("wine", seed=2)
    pd.testing.assert_frame_equal(a.train, b.train)
    pd.testing.assert_frame_equal(a.test, b.test)
    assert not a.train.equals(c.train)
    assert isinstance(a.train.index, pd.RangeIndex) and a.train.index[0] == 0
    assert len(a.test) == math.ceil(0.2 * 178)
    t1, t2 = datasets.load("moons", seed=0), datasets.load("moons", seed=3)   # same data, new split
    whole = [pd.concat([d.train, d.test]).sort_values(["x1", "x2"]).reset_index(drop=True) for d in (t1, t2)]
    pd.testing.assert_frame_equal(*whole)
    assert not t1.test.equals(t2.test)
    assert len(datasets.load("iris", test_size=0.5).test) == 75


def test_list_covers_load():
    entries = datasets.list()
    names = [e["name"] for e in entries]
    assert set(names) >= {"moons", "circles", "checkerboard", "8gaussians", "wine", "breast_cancer",
                          "diabetes", "iris", "penguins"}
    for e in entries:
        assert set(e) == {"name", "modality", "rows", "columns", "description", "source", "licence"}
        d = datasets.load(e["name"])
        assert (d.name, d.modality, d.description, d.source, d.licence) == \
            (e["name"], e["modality"], e["description"], e["source"], e["licence"])
        assert len(d.train) + len(d.test) == e["rows"]
        if e["modality"] == "image":          # Images: "columns" counts the pixels of one image
            assert np.prod(d.train.shape[1:]) == e["columns"] and d.train.shape[1:] == d.test.shape[1:]
        elif e["modality"] == "text":         # one text: "rows" counts its characters
            assert isinstance(d.train, str) and isinstance(d.test, str) and e["columns"] == 1
        elif e["modality"] == "molecule":     # lists of SMILES
            assert isinstance(d.train, list) and isinstance(d.train[0], str) and e["columns"] == 1
        else:
            assert d.train.shape[1] == e["columns"] and list(d.train.columns) == list(d.test.columns)
        assert (d.true_log_prob is not None) == (e["name"] in TOYS)


def test_sequence_sets_split_as_documented():
    d = datasets.load("shakespeare")
    assert len(d.train) + len(d.test) == 5_057_198 and len(set(d.train + d.test)) == 84
    assert len(d.train) == round(0.9 * 5_057_198)
    small = datasets.load("shakespeare", size=1000)
    assert small.train == d.train[:1000] and small.test == d.test
    m = datasets.load("moses", size=500, seed=1)
    assert len(m.train) == 500 and len(set(m.train)) == 500 and m.train == datasets.load("moses", size=500, seed=1).train
    with pytest.raises(ConfigError, match="size"):
        datasets.load("moses", size=0)
    with pytest.raises(ConfigError, match="size="):
        datasets.load("wine", size=10)


def test_table_dtypes():
    for name in ("wine", "breast_cancer", "diabetes"):
        assert (datasets.load(name).train.dtypes == np.float64).all()
    assert "target" in datasets.load("diabetes").train.columns
    iris = datasets.load("iris").train
    assert pd.api.types.is_string_dtype(iris["species"]) and iris["species"].nunique() == 3
    pen = pd.concat([datasets.load("penguins").train, datasets.load("penguins").test])
    for col in ("species", "island", "sex"):
        assert pd.api.types.is_string_dtype(pen[col])
    assert pen["year"].dtype == np.int64
    assert pen["sex"].isna().any() and pen["bill_length_mm"].isna().any()


def test_unknown_name_and_bad_split():
    with pytest.raises(UnknownModelError, match="known data sets: .*moons"):
        datasets.load("mnist_toy")
    with pytest.raises(ConfigError):
        datasets.load("wine", test_size=1.5)


# --------------------------------------------------------------------------- read_table
def test_read_table_errors(tmp_path):
    with pytest.raises(DataError, match="not found"):
        datasets.read_table(tmp_path / "nope.csv")
    with pytest.raises(DataError, match="folder"):
        datasets.read_table(tmp_path)
    (tmp_path / "empty.csv").write_bytes(b"")
    with pytest.raises(DataError, match="empty"):
        datasets.read_table(tmp_path / "empty.csv")
    (tmp_path / "blank.csv").write_text("\n  \n")
    with pytest.raises(DataError, match="whitespace"):
        datasets.read_table(tmp_path / "blank.csv")
    (tmp_path / "header.csv").write_text("a,b,c\n")
    with pytest.raises(DataError, match="no data rows"):
        datasets.read_table(tmp_path / "header.csv")
    (tmp_path / "long.csv").write_text("a,b,c\n1,2,3\n4,5,6,7\n")
    with pytest.raises(DataError, match="line 3 has 4 field.* but the header has 3"):
        datasets.read_table(tmp_path / "long.csv")
    (tmp_path / "short.csv").write_text("a,b,c\n1,2,3\n4,5,6\n7,8\n")
    with pytest.raises(DataError, match="line 4 has 2 field"):
        datasets.read_table(tmp_path / "short.csv")
    (tmp_path / "dup.csv").write_text("a, b,a\n1,2,3\n")
    with pytest.raises(DataError, match="repeats column name"):
        datasets.read_table(tmp_path / "dup.csv")
    (tmp_path / "table.xlsx").write_bytes(b"PK\x03\x04")
    with pytest.raises(DataError, match="unsupported file type.*parquet"):
        datasets.read_table(tmp_path / "table.xlsx")
    (tmp_path / "bad.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(DataError, match="Parquet"):
        datasets.read_table(tmp_path / "bad.parquet")
    (tmp_path / "latin.csv").write_bytes("name\nJos\xe9\n".encode("latin-1"))
    with pytest.raises(DataError, match="encoding="):
        datasets.read_table(tmp_path / "latin.csv")
    assert datasets.read_table(tmp_path / "latin.csv", encoding="latin-1")["name"][0] == "José"


def _frame() -> pd.DataFrame:
    return pd.DataFrame({"age": [39, 50, 38, 53], "w": [1.5, np.nan, -2.25, 1e-3],
                         "job": ["State-gov", "Private", None, "Self-emp"], "ok": [True, False, True, True]})


def test_read_table_round_trips(tmp_path):
    df = _frame()
    df.to_csv(tmp_path / "t.csv", index=False)
    pd.testing.assert_frame_equal(datasets.read_table(tmp_path / "t.csv"), df)
    df.to_parquet(tmp_path / "t.parquet")
    pd.testing.assert_frame_equal(datasets.read_table(tmp_path / "t.parquet"), df)
    df.to_csv(tmp_path / "t.tsv", sep="\t", index=False)
    pd.testing.assert_frame_equal(datasets.read_table(tmp_path / "t.tsv"), df)
    df.to_csv(tmp_path / "semi.csv", sep=";", index=False)           # sniffed delimiter
    pd.testing.assert_frame_equal(datasets.read_table(tmp_path / "semi.csv"), df)
    with gzip.open(tmp_path / "t.csv.gz", "wt") as f:
        df.to_csv(f, index=False)
    pd.testing.assert_frame_equal(datasets.read_table(tmp_path / "t.csv.gz"), df)


def test_read_table_whitespace_and_missing(tmp_path):
    # adult.csv style: a space after each comma, "?" for missing
    (tmp_path / "adult.csv").write_text(" age, workclass , hours\n39, State-gov, 40\n50, ?, ?\n38, Private , 35\n")
    df = datasets.read_table(tmp_path / "adult.csv")
    assert list(df.columns) == ["age", "workclass", "hours"]
    assert df["workclass"].tolist()[0] == "State-gov" and df["workclass"].tolist()[2] == "Private"
    assert pd.isna(df["workclass"][1]) and pd.isna(df["hours"][1])
    assert pd.api.types.is_integer_dtype(df["age"]) and pd.api.types.is_float_dtype(df["hours"])
    kept = datasets.read_table(tmp_path / "adult.csv", na_values=[])      # nothing is missing
    assert kept["workclass"][1] == "?" and kept["hours"].tolist() == ["40", "?", "35"]
    only_q = datasets.read_table(tmp_path / "adult.csv", na_values=["?"])
    assert only_q["hours"].isna().sum() == 1


def test_default_na_values_match_pandas():
    parsers = pytest.importorskip("pandas._libs.parsers")
    assert datasets.DEFAULT_NA_VALUES == frozenset(parsers.STR_NA_VALUES) | {"?"}
