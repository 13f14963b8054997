"""The MOSES benchmark's data, read from the ``molsets==0.3.1`` wheel on the Python package index.

MOSES (Polykovskiy et al., 2020) ships its molecules, the precomputed statistics of its test sets and
the substructure filters of its ``Filters`` metric inside the ``molsets`` package. That package does
not install on Python >= 3.10, so nothing is installed: the wheel is fetched once into the cache
(``genmodels.fetch.pypi_file``; ``$GENMODELS_CACHE`` or ``~/.cache/genmodels``) and single members
are extracted from it.

- ``smiles(split)``: the SMILES column of ``moses/dataset/data/<split>.csv.gz``; ``train`` (1,584,663
  molecules), ``test`` (176,074) and ``test_scaffolds`` (176,225, molecules whose Bemis-Murcko
  scaffolds are absent from ``train``). MOSES wrote them as RDKit canonical SMILES (no stereo).
- ``filters_table()``: MOSES's MCF (22 medicinal-chemistry filters, ``moses/metrics/mcf.csv``) and
  PAINS (480 patterns, ``moses/metrics/wehi_pains.csv``) SMARTS, parsed once with RDKit.
- ``test_stats(split)``: the statistics MOSES precomputed for ``test`` and ``test_scaffolds``
  (``<split>_stats.npz``), so a model is scored against the full sets without recomputing ChemNet
  activations for 176k molecules. See its docstring for the keys.

MOSES stores those statistics as a pickled dict. They are read with an unpickler that accepts only
the five types the file holds (numpy arrays and dtypes, ``collections.Counter``), never arbitrary
code, and rewritten once as a plain ``.npz`` (no pickle) next to the extracted file.

References:
    | Molecular Sets (MOSES): A Benchmarking Platform for Molecular Generation Models
    | (Polykovskiy et al., 2020), https://arxiv.org/abs/1811.12823; https://github.com/molecularsets/moses

Example::

    >>> from genmodels import moses
    >>> train = moses.smiles("train")            # list of 1,584,663 SMILES
    >>> stats = moses.test_stats("test")         # {"n": 176074, "fcd_mu": ..., "fingerprints": ...}
"""
from __future__ import annotations

import csv
import importlib
import io
import pickle
import zipfile
from collections import Counter
from functools import lru_cache
from pathlib import Path
from typing import Any, ClassVar, NamedTuple

import numpy as np

from .errors import ConfigError, DataError
from .fetch import pypi_file

PACKAGE, VERSION = "molsets", "0.3.1"
SPLITS = ("train", "test", "test_scaffolds")
STATS_SPLITS = ("test", "test_scaffolds")
PROPERTIES = ("logP", "SA", "QED", "weight")
_DATA = "moses/dataset/data"
_FP_BITS = 1024


def _member(member: str) -> Path:
    return pypi_file(PACKAGE, VERSION, member)


def _check_split(split: Any, allowed: tuple[str, ...]) -> str:
    if split not in allowed:
        raise ConfigError(f"unknown MOSES split {split!r}; choose one of {', '.join(allowed)}")
    return split


# --------------------------------------------------------------------------- molecules
@lru_cache(maxsize=3)
def _smiles(split: str) -> tuple[str, ...]:
    import pandas as pd
    path = _member(f"{_DATA}/{split}.csv.gz")
    try:
        column = pd.read_csv(path, compression="gzip", usecols=["SMILES"])["SMILES"]
    except (ValueError, OSError, EOFError) as e:
        raise DataError(f"{path} is not MOSES's {split} table ({e}); delete it and try again") from None
    if column.isna().any():
        raise DataError(f"{path} has empty SMILES cells; delete it and try again")
    return tuple(column.astype(str).tolist())


def smiles(split: str = "train") -> list[str]:
    """The SMILES of one MOSES split: "train" (1,584,663), "test" (176,074) or "test_scaffolds" (176,225).

    The strings are MOSES's own (RDKit canonical SMILES of its time, no stereochemistry), in file order.
    The first call per split reads the file (~1 s for train); later calls copy a cached tuple.
    """
    return list(_smiles(_check_split(split, SPLITS)))


# --------------------------------------------------------------------------- filters
class FilterPattern(NamedTuple):
    """One substructure alert of MOSES's ``Filters`` metric."""
    source: str          # "MCF" or "PAINS"
    name: str            # e.g. "MCF1", "<regId=anil_di_alk_F(14)>"
    smarts: str
    pattern: Any         # the parsed RDKit query molecule (rdkit.Chem.Mol)


def _read_csv_rows(member: str) -> list[list[str]]:
    text = _member(member).read_text(encoding="utf-8")
    return [row for row in csv.reader(io.StringIO(text)) if row]


@lru_cache(maxsize=1)
def filters_table() -> tuple[FilterPattern, ...]:
    """MOSES's MCF and PAINS SMARTS (22 + 480), parsed with RDKit once per process.

    ``mcf.csv`` has a header (names, smarts); ``wehi_pains.csv`` has none and holds (smarts, name)
    with the SMARTS padded by spaces, which are stripped. MOSES matches every pattern against the
    molecule with explicit hydrogens (``Chem.AddHs``): see ``metrics.molecule.passes_filters``.
    """
    from rdkit import Chem
    out = []
    mcf = _read_csv_rows("moses/metrics/mcf.csv")
    if not mcf or [c.strip() for c in mcf[0]] != ["names", "smarts"]:
        raise DataError("moses/metrics/mcf.csv does not start with the header names,smarts; delete the "
                        "cached molsets files and try again")
    rows = [("MCF", name, smarts) for name, smarts in mcf[1:]]
    rows += [("PAINS", name, smarts) for smarts, name in _read_csv_rows("moses/metrics/wehi_pains.csv")]
    for source, name, smarts in rows:
        smarts = smarts.strip()
        pattern = Chem.MolFromSmarts(smarts)
        if pattern is None:
            raise DataError(f"RDKit cannot parse the {source} filter {name.strip()!r} ({smarts!r}); "
                            f"delete the cached molsets files and try again")
        out.append(FilterPattern(source, name.strip(), smarts, pattern))
    return tuple(out)


# --------------------------------------------------------------------------- test statistics
class _StatsUnpickler(pickle.Unpickler):
    """Unpickles MOSES's statistics: numpy arrays, dtypes and Counters only, nothing that runs code."""

    _ALLOWED: ClassVar = {("collections", "Counter"), ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
                ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct")}

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"{module}.{name} is not allowed in MOSES statistics")
        if name == "_reconstruct":            # numpy.core became numpy._core in numpy 2
            for mod in ("numpy._core.multiarray", "numpy.core.multiarray"):
                try:
                    return getattr(importlib.import_module(mod), name)
                except (ImportError, AttributeError):
                    continue
        return getattr(importlib.import_module(module), name)


def _read_moses_stats(path: Path) -> dict:
    """The dict inside MOSES's ``<split>_stats.npz`` (a 0-d object array named ``stats``)."""
    try:
        with zipfile.ZipFile(path) as z:
            raw = z.read("stats.npy")
        f = io.BytesIO(raw)
        version = np.lib.format.read_magic(f)
        read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                       else np.lib.format.read_array_header_2_0)
        shape, _, dtype = read_header(f)
        if shape != () or dtype != np.dtype(object):
            raise ValueError(f"expected one pickled object, got shape {shape} of {dtype}")
        stats = _StatsUnpickler(f).load()
        if isinstance(stats, np.ndarray) and stats.shape == ():
            stats = stats.item()
    except (zipfile.BadZipFile, KeyError, ValueError, EOFError, pickle.UnpicklingError) as e:
        raise DataError(f"{path} is not MOSES's statistics file ({e}); delete it and try again") from None
    if not isinstance(stats, dict) or not {"FCD", "SNN", "Frag", "Scaf", *PROPERTIES} <= set(stats):
        raise DataError(f"{path} does not hold MOSES's statistics (FCD, SNN, Frag, Scaf, logP, SA, QED, weight)")
    return stats


def _parse_stats(split: str, target: Path) -> None:
    stats = _read_moses_stats(_member(f"{_DATA}/{split}_stats.npz"))
    fps = np.asarray(stats["SNN"]["fps"])
    if fps.ndim != 2 or fps.shape[1] != _FP_BITS or fps.dtype != np.uint8:
        raise DataError(f"MOSES's {split} fingerprints have shape {fps.shape} of {fps.dtype}, expected (n, 1024) uint8")
    frag, scaf = Counter(stats["Frag"]["frag"]), Counter(stats["Scaf"]["scaf"])
    arrays = {
        "n": np.array(len(fps)),
        "fcd_mu": np.asarray(stats["FCD"]["mu"], dtype=np.float64),
        "fcd_sigma": np.asarray(stats["FCD"]["sigma"], dtype=np.float64),
        "fingerprints_packed": np.packbits(fps, axis=1, bitorder="little"),
        "fragment_keys": np.array(list(frag.keys()), dtype=str),
        "fragment_counts": np.array(list(frag.values()), dtype=np.int64),
        "scaffold_keys": np.array(list(scaf.keys()), dtype=str),
        "scaffold_counts": np.array(list(scaf.values()), dtype=np.int64),
    }
    for name in PROPERTIES:
        arrays[name] = np.asarray(stats[name]["values"], dtype=np.float64)
        if arrays[name].shape != (len(fps),):
            raise DataError(f"MOSES's {split} {name} values do not match its {len(fps)} fingerprints")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".part")
    with open(tmp, "wb") as f:
        np.savez(f, **arrays)
    tmp.replace(target)


@lru_cache(maxsize=2)
def _stats(split: str) -> dict:
    from .datasets import cache_dir
    target = cache_dir() / "files" / f"{PACKAGE}-{VERSION}" / "parsed" / f"{split}_stats.npz"
    if not target.is_file():
        _parse_stats(split, target)
    try:
        with np.load(target, allow_pickle=False) as z:
            a = {k: z[k] for k in z.files}
        fps = np.unpackbits(a["fingerprints_packed"], axis=1, bitorder="little", count=_FP_BITS)
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as e:
        raise DataError(f"{target} is damaged ({e}); delete it and it is rebuilt from the molsets wheel") from None
    out = {"n": int(a["n"]), "fcd_mu": a["fcd_mu"], "fcd_sigma": a["fcd_sigma"], "fcd_n": int(a["n"]),
           "fingerprints": fps}
    out.update({name: a[name] for name in PROPERTIES})
    for v in out.values():
        if isinstance(v, np.ndarray):
            v.flags.writeable = False
    out["fragments"] = dict(zip(a["fragment_keys"].tolist(), a["fragment_counts"].tolist()))
    out["scaffolds"] = dict(zip(a["scaffold_keys"].tolist(), a["scaffold_counts"].tolist()))
    return out


def test_stats(split: str = "test") -> dict[str, Any]:
    """MOSES's precomputed statistics of "test" or "test_scaffolds", in the layout of
    ``genmodels.metrics.molecule.reference_stats`` (pass as ``evaluate_molecules(..., test_stats=)``):

    - ``n``: number of molecules (176,074 for test, 176,225 for test_scaffolds);
    - ``fcd_mu`` (512,), ``fcd_sigma`` (512, 512): mean and covariance (ddof=1) of ChemNet's
      penultimate activations (MOSES computed them with ``fcd_torch``, the same ChemNet weights as
      the ``fcd`` package);
    - ``fingerprints``: (n, 1024) uint8 Morgan bits, radius 2 (for SNN);
    - ``fragments``: BRICS fragment SMILES -> count over the set (for Frag);
    - ``scaffolds``: Bemis-Murcko scaffold SMILES -> count, scaffolds with at least 2 rings (for Scaf);
    - ``logP``, ``SA``, ``QED``, ``weight``: (n,) property values (for the Wasserstein distances).

    The arrays are read-only; the dicts are fresh copies. The first call per split unpickles MOSES's
    file (200 MB unpacked, a few seconds) and stores a plain ``.npz``; later processes read that (~2 s).
    """
    stats = _stats(_check_split(split, STATS_SPLITS))
    out = dict(stats)
    out["fragments"], out["scaffolds"] = dict(stats["fragments"]), dict(stats["scaffolds"])
    return out
