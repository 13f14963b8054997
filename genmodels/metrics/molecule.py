"""Molecule metrics with the definitions of the MOSES benchmark (Polykovskiy et al., 2020).

Inputs are lists of SMILES strings; ``None``, an empty string or a string RDKit cannot parse is an
invalid molecule. Every metric but ``valid`` is computed over the valid generated molecules, with
their duplicates (as MOSES does), against a reference set (MOSES's ``test`` or ``test_scaffolds``).

- ``valid``: share of generated entries RDKit parses (to a molecule with at least one atom).
- ``unique@k``: share of distinct canonical SMILES among the first k valid molecules (fewer than k
  valid: computed on those, with a warning, as MOSES).
- ``novelty``: share of the distinct valid canonical SMILES that are not in the training set.
- ``IntDiv_p`` (p = 1, 2): 1 - mean_i [ (mean_j T(i, j)^p)^(1/p) ], i and j over the generated set
  (pairs i = j included), T the Tanimoto similarity of Morgan fingerprints (radius 2, 1024 bits). For
  p = 1 this is 1 - mean over all pairs of T; for p = 2 it is MOSES's code (the paper writes
  1 - (mean over all pairs of T^2)^(1/2), a slightly different number): ``internal_diversity``.
- ``SNN``: mean over generated molecules of the largest Tanimoto similarity to a reference molecule.
- ``Frag`` / ``Scaf``: cosine similarity of the count vectors of BRICS fragments / Bemis-Murcko
  scaffolds (scaffolds with at least 2 rings, MOSES's ``min_rings``) of generated and reference.
- ``Filters``: share passing MOSES's filters: no ring of 8+ atoms, no charged atom, only C N S O F
  Cl Br H, none of the MCF and PAINS substructures (``genmodels.moses.filters_table``) on the
  molecule with explicit hydrogens, and a non-stereo SMILES that parses again.
- ``FCD``: Fréchet ChemNet Distance (Preuer et al., 2018) between the penultimate ChemNet
  activations of the generated and reference canonical SMILES (the ``fcd`` package's network and
  Fréchet distance). FCD is biased upwards at small n: the sample sizes are always reported.
- ``logP``, ``SA``, ``QED``, ``weight``: Wasserstein-1 distance between the property distributions
  of generated and reference molecules (Crippen logP, RDKit Contrib SA score, QED, MolWt).

``evaluate_molecules`` runs them all; each is also a plain function over SMILES lists. Reference
statistics (``reference_stats``, or MOSES's own, ``genmodels.moses.test_stats``) are computed once
and passed in, so the 176k MOSES test molecules are not featurised again for every model.

References:
    | Molecular Sets (MOSES): A Benchmarking Platform for Molecular Generation Models
    | (Polykovskiy et al., 2020), https://arxiv.org/abs/1811.12823
    | Fréchet ChemNet Distance (Preuer et al., 2018), https://arxiv.org/abs/1803.09518
    | Estimation of Synthetic Accessibility Score (Ertl & Schuffenhauer, 2009), doi:10.1186/1758-2946-1-8

Example::

    >>> from genmodels import moses
    >>> evaluate_molecules(samples, train=moses.smiles("train"), test_stats=moses.test_stats("test"))
    {"valid": 0.97, "unique@1000": 1.0, "novelty": 0.91, "FCD/Test": 0.6, "SNN/Test": 0.55, ...}
"""
from __future__ import annotations

import contextlib
import gzip
import hashlib
import importlib.util
import json
import math
import os
import warnings
from collections import Counter
from collections.abc import Callable, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from ..core import check_int
from ..errors import ConfigError, DataError

try:
    from rdkit import Chem, RDConfig, rdBase
    from rdkit.Chem import QED as _QED
    from rdkit.Chem import AllChem, Crippen, Descriptors, rdFingerprintGenerator
    from rdkit.Chem.Scaffolds import MurckoScaffold
except ImportError as e:                        # pragma: no cover - rdkit is in the molecules extra
    raise ImportError("genmodels.metrics.molecule needs RDKit: pip install rdkit "
                      "(or pip install genmodels[molecules])") from e

FP_RADIUS, FP_BITS = 2, 1024                    # MOSES's Morgan fingerprint
ALLOWED_ATOMS = frozenset({"C", "N", "S", "O", "F", "Cl", "Br", "H"})
MIN_SCAFFOLD_RINGS = 2                          # MOSES's compute_scaffolds(min_rings=2)
PROPERTIES = ("logP", "SA", "QED", "weight")
_CACHE_MIN = 50_000                             # canonicalised training sets at least this big go to the disk cache


# --------------------------------------------------------------------------- parsing
def _smiles_list(x: Any, name: str) -> list[str | None]:
    if isinstance(x, (str, bytes)):
        raise DataError(f"{name} must be a list of SMILES strings, got one string; wrap it in a list")
    try:
        items = list(x)
    except TypeError:
        raise DataError(f"{name} must be a list of SMILES strings (None for invalid), got {type(x).__name__}") from None
    for i, s in enumerate(items):
        if isinstance(s, float) and math.isnan(s):            # a missing cell of a pandas column
            items[i] = None
        elif s is not None and not isinstance(s, str):
            raise DataError(f"{name}[{i}] is {type(s).__name__} {s!r}; entries must be SMILES strings or None")
    return items


def _mol(smiles: str | None):
    """The RDKit molecule of ``smiles``, or None (None, blank, unparsable, or no atoms)."""
    if smiles is None or not smiles.strip():
        return None
    mol = Chem.MolFromSmiles(smiles)
    return mol if mol is not None and mol.GetNumAtoms() > 0 else None


def canonical(smiles: str | None) -> str | None:
    """RDKit's isomeric canonical SMILES of ``smiles``, or None when it is not a valid molecule."""
    if smiles is not None and not isinstance(smiles, str):
        raise DataError(f"canonical() takes a SMILES string or None, got {type(smiles).__name__}")
    with rdBase.BlockLogs():
        mol = _mol(smiles)
        return None if mol is None else Chem.MolToSmiles(mol)


# --------------------------------------------------------------------------- per-molecule descriptors
@lru_cache(maxsize=1)
def _fp_generator():
    return rdFingerprintGenerator.GetMorganGenerator(radius=FP_RADIUS, fpSize=FP_BITS)


@lru_cache(maxsize=1)
def _sascorer():
    """RDKit's Contrib SA_Score module (Ertl & Schuffenhauer), loaded from its file."""
    path = Path(RDConfig.RDContribDir) / "SA_Score" / "sascorer.py"
    if not path.is_file():
        raise ConfigError(f"the SA score needs RDKit's Contrib/SA_Score/sascorer.py, not found at {path}; "
                          f"install an RDKit wheel that ships Contrib (pip install rdkit)")
    spec = importlib.util.spec_from_file_location("genmodels_sascorer", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.readFragmentScores()                 # once, before any worker process forks
    return module


def _scaffold(mol) -> str | None:
    """MOSES's compute_scaffold: the Bemis-Murcko scaffold's SMILES, None under 2 rings or on failure."""
    try:
        scaffold = MurckoScaffold.GetScaffoldForMol(mol)
    except (ValueError, RuntimeError):
        return None
    smiles = Chem.MolToSmiles(scaffold)
    if not smiles or scaffold.GetRingInfo().NumRings() < MIN_SCAFFOLD_RINGS:
        return None
    return smiles


def passes_filters(mol: Any) -> bool:
    """MOSES's mol_passes_filters: True when the molecule (RDKit Mol or SMILES) has no ring of 8 or
    more atoms, no formal charge, only C N S O F Cl Br H atoms, matches none of the MCF and PAINS
    SMARTS with explicit hydrogens added, and writes a non-stereo SMILES that parses again."""
    from ..moses import filters_table
    if mol is None or isinstance(mol, str):
        with rdBase.BlockLogs():
            mol = _mol(mol)
        if mol is None:
            return False
    if any(len(ring) >= 8 for ring in mol.GetRingInfo().AtomRings()):
        return False
    if any(a.GetFormalCharge() != 0 or a.GetSymbol() not in ALLOWED_ATOMS for a in mol.GetAtoms()):
        return False
    h_mol = Chem.AddHs(mol)
    if any(h_mol.HasSubstructMatch(f.pattern) for f in filters_table()):
        return False
    smiles = Chem.MolToSmiles(mol, isomericSmiles=False)
    return bool(smiles) and Chem.MolFromSmiles(smiles) is not None


_PARTS: dict[str, Callable[[Any], Any]] = {
    "canonical": Chem.MolToSmiles,
    "fingerprint": lambda m: _fp_generator().GetFingerprintAsNumPy(m).astype(np.uint8),
    "fragments": lambda m: Chem.MolToSmiles(AllChem.FragmentOnBRICSBonds(m)).split("."),
    "scaffold": _scaffold,
    "filters": passes_filters,
    "logP": Crippen.MolLogP,
    "SA": lambda m: _sascorer().calculateScore(m),
    "QED": _QED.qed,
    "weight": Descriptors.MolWt,
}


def _describe_chunk(task: tuple[list, tuple[str, ...]]) -> list[dict | None]:
    smiles, parts = task
    out = []
    with rdBase.BlockLogs():
        for s in smiles:
            mol = _mol(s)
            out.append(None if mol is None else {p: _PARTS[p](mol) for p in parts})
    return out


def _n_jobs(n_jobs: Any) -> int:
    if n_jobs == -1:
        return os.cpu_count() or 1
    return check_int("n_jobs", n_jobs, 1)


def _describe(smiles: list, parts: Sequence[str], n_jobs: int = 1) -> list[dict | None]:
    """Per entry: None (invalid) or {part: value} for the named parts, over n_jobs processes."""
    parts = tuple(parts)
    if "SA" in parts:
        _sascorer()
    if "filters" in parts:
        from ..moses import filters_table
        filters_table()                          # parsed in this process, inherited by the workers
    n_jobs = _n_jobs(n_jobs)
    size = max(64, math.ceil(len(smiles) / (8 * n_jobs)))
    tasks = [(smiles[i:i + size], parts) for i in range(0, len(smiles), size)]
    if n_jobs == 1 or len(tasks) < 2:
        chunks = [_describe_chunk(t) for t in tasks]
    else:
        import multiprocessing as mp
        ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else None)
        with ctx.Pool(min(n_jobs, len(tasks))) as pool:
            chunks = pool.map(_describe_chunk, tasks)
    return [d for chunk in chunks for d in chunk]


def _valid(smiles: Any, name: str, parts: Sequence[str], n_jobs: int = 1) -> list[dict]:
    return [d for d in _describe(_smiles_list(smiles, name), parts, n_jobs) if d is not None]


# --------------------------------------------------------------------------- validity, uniqueness, novelty
def validity(generated: Sequence[str | None]) -> float:
    """Share of entries that are valid molecules (None, blank and unparsable strings are not)."""
    gen = _smiles_list(generated, "generated")
    if not gen:
        raise DataError("generated is empty: validity needs at least one entry")
    return sum(d is not None for d in _describe(gen, ())) / len(gen)


def _unique_at(canon: list[str], k: int | None) -> float:
    if k is not None:
        if len(canon) < k:
            warnings.warn(f"unique@{k}: only {len(canon)} valid molecules; computed on those (as MOSES)",
                          UserWarning, stacklevel=3)
        canon = canon[:k]
    return len(set(canon)) / len(canon) if canon else float("nan")


def uniqueness(generated: Sequence[str | None], k: int | None = None) -> float:
    """unique@k: share of distinct canonical SMILES among the first ``k`` valid molecules (all when
    k is None); NaN without valid molecules."""
    k = None if k is None else check_int("k", k, 1)
    return _unique_at([d["canonical"] for d in _valid(generated, "generated", ["canonical"])], k)


def _sha256(smiles: list[str | None]) -> str:
    return hashlib.sha256("\0".join("\1" if s is None else s for s in smiles).encode("utf-8")).hexdigest()


def _save(path: Path, write: Callable[[Any], Any]) -> None:
    """Write a cache file atomically (a temporary file, then a rename); ``.gz``: gzip-compressed text."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    with (gzip.open(tmp, "wt", encoding="utf-8") if path.suffix == ".gz" else open(tmp, "wb")) as f:
        write(f)
    tmp.replace(path)


_SETS: dict[str, frozenset] = {}


def canonical_set(smiles: Sequence[str | None], *, n_jobs: int = 1) -> frozenset[str]:
    """The canonical SMILES of the valid entries, as a set. Lists of 50,000 or more are cached (in
    this process, and on disk under ``cache_dir()/molecules`` keyed by the list's SHA-256 and the
    RDKit version, storing only the entries whose canonical form differs): MOSES's training set is
    canonicalised once per machine, not once per evaluation."""
    items = _smiles_list(smiles, "smiles")
    if len(items) < _CACHE_MIN:
        return frozenset(d["canonical"] for d in _describe(items, ["canonical"], n_jobs) if d is not None)
    from ..datasets import cache_dir
    key = f"{_sha256(items)[:40]}-rdkit{rdBase.rdkitVersion}"
    if key in _SETS:
        return _SETS[key]
    path = cache_dir() / "molecules" / f"canonical-{key}.json.gz"
    changed: dict[int, str | None] | None = None
    if path.is_file():
        try:
            with gzip.open(path, "rt", encoding="utf-8") as f:
                saved = json.load(f)
            if saved.get("n") == len(items):
                changed = {int(i): c for i, c in saved["changed"].items()}
        except (OSError, ValueError, KeyError, EOFError):
            changed = None                       # damaged: recompute and overwrite
    if changed is None:
        described = _describe(items, ["canonical"], n_jobs)
        changed = {i: (None if d is None else d["canonical"]) for i, (s, d) in enumerate(zip(items, described))
                   if d is None or d["canonical"] != s}
        _save(path, lambda f: json.dump({"n": len(items), "changed": changed}, f))
    out = frozenset(c for i, s in enumerate(items) for c in [changed.get(i, s)] if c is not None)
    _SETS.clear()                                # one big set in memory at a time
    _SETS[key] = out
    return out


def novelty(generated: Sequence[str | None], train: Sequence[str | None], *, n_jobs: int = 1,
            train_canonical: bool = False) -> float:
    """Share of the distinct valid generated molecules (canonical SMILES) absent from ``train``; NaN
    without valid molecules. ``train`` is canonicalised (``canonical_set``) unless
    ``train_canonical=True`` says its strings already are this RDKit's canonical SMILES (MOSES
    compares against the raw strings)."""
    gen = {d["canonical"] for d in _valid(generated, "generated", ["canonical"], n_jobs)}
    return _novelty(gen, train, n_jobs, train_canonical)


def _novelty(gen: set[str], train: Any, n_jobs: int, train_canonical: bool) -> float:
    if not gen:
        return float("nan")
    ref = set(_smiles_list(train, "train")) if train_canonical else canonical_set(train, n_jobs=n_jobs)
    return len(gen - ref) / len(gen)


# --------------------------------------------------------------------------- fingerprint similarity
def fingerprints(smiles: Sequence[str | None], *, n_jobs: int = 1) -> np.ndarray:
    """(n_valid, 1024) uint8 Morgan fingerprint bits (radius 2) of the valid entries, in order."""
    fps = [d["fingerprint"] for d in _valid(smiles, "smiles", ["fingerprint"], n_jobs)]
    return np.stack(fps) if fps else np.zeros((0, FP_BITS), np.uint8)


def _torch_device(device: Any):
    import torch
    return torch.device(device if device is not None else ("cuda" if torch.cuda.is_available() else "cpu"))


def _bits(a: Any, name: str) -> np.ndarray:
    x = np.asarray(a)
    if x.ndim != 2 or x.shape[1] == 0 or (x.size and (x.min() < 0 or x.max() > 1)):
        raise DataError(f"{name} must be an (n, bits) array of 0/1 fingerprint bits, got shape {x.shape}")
    return x


def _tensor(x: np.ndarray, dev):
    import torch
    return torch.from_numpy(np.array(x, dtype=np.float32)).to(dev)      # a writable float32 copy


def _block_tanimoto(ta, na, tb, nb):
    """T of two blocks of bit rows (float32, exact: counts < 2^24); 1 where both rows are empty (MOSES)."""
    import torch
    inter = ta @ tb.T                                                      # (bi, bj)
    union = na[:, None] + nb[None, :] - inter
    return torch.where(union > 0, inter / union.clamp_min(1.0), torch.ones_like(inter))


def _tanimoto_max(a: np.ndarray, b: np.ndarray, device: Any, block: int) -> np.ndarray:
    import torch
    dev = _torch_device(device)
    ta = _tensor(a, dev)                                                   # (n, D)
    na = ta.sum(1)
    out = torch.zeros(len(a), dtype=torch.float32, device=dev)
    for j in range(0, len(b), block):                                      # each reference block converted once
        tb = _tensor(b[j:j + block], dev)                                  # (m, D)
        nb = tb.sum(1)
        for i in range(0, len(a), block):
            t = _block_tanimoto(ta[i:i + block], na[i:i + block], tb, nb)
            out[i:i + block] = torch.maximum(out[i:i + block], t.max(1).values)
    return out.double().cpu().numpy()


def _tanimoto_sums(a: np.ndarray, b: np.ndarray | None, powers: Sequence[float], device: Any,
                   block: int) -> dict[float, np.ndarray]:
    """Per row i of a: sum_j T(a_i, b_j)^p for each p. ``b=None``: b is a, and only the blocks on
    and above the diagonal are computed (T is symmetric), their column sums added to the rows below."""
    import torch
    dev = _torch_device(device)
    sym = b is None
    b = a if sym else b
    ta = _tensor(a, dev)
    na = ta.sum(1)
    out = {p: torch.zeros(len(a), dtype=torch.float64, device=dev) for p in powers}
    for i in range(0, len(a), block):
        for j in range(i if sym else 0, len(b), block):
            tb = ta[j:j + block] if sym else _tensor(b[j:j + block], dev)
            t = _block_tanimoto(ta[i:i + block], na[i:i + block], tb, tb.sum(1))
            for p in powers:
                tp = t if p == 1 else (t * t if p == 2 else t.pow(p))
                out[p][i:i + block] += tp.sum(1, dtype=torch.float64)
                if sym and j != i:
                    out[p][j:j + block] += tp.sum(0, dtype=torch.float64)
    return {p: v.cpu().numpy() for p, v in out.items()}


def tanimoto_aggregate(a: Any, b: Any, *, agg: str = "max", p: float = 1.0, device: Any = None,
                       block: int = 2048) -> np.ndarray:
    """Per row i of ``a``: max_j T(a_i, b_j) (agg="max") or (mean_j T(a_i, b_j)^p)^(1/p) (agg="mean"),
    T = |a & b| / |a | b| (1 where both are empty, as MOSES). Bit matrices are multiplied as float32
    blocks of ``block`` rows (exact: counts < 2^24), so memory stays O(block^2 + n * bits)."""
    a, b = _bits(a, "a"), _bits(b, "b")
    if a.shape[1] != b.shape[1]:
        raise DataError(f"a has {a.shape[1]} bits per fingerprint but b has {b.shape[1]}")
    if agg not in ("max", "mean"):
        raise ConfigError(f"agg must be 'max' or 'mean', got {agg!r}")
    if len(b) == 0:
        raise DataError("the reference fingerprints are empty")
    block = check_int("block", block, 1)
    if agg == "max":
        return _tanimoto_max(a, b, device, block)
    return (_tanimoto_sums(a, b, [p], device, block)[p] / len(b)) ** (1.0 / p)


def _internal_diversities(fps: np.ndarray, powers: Sequence[float], device: Any,
                          block: int = 2048) -> dict[float, float]:
    if len(fps) == 0:
        return {p: float("nan") for p in powers}
    sums = _tanimoto_sums(_bits(fps, "fingerprints"), None, powers, device, block)
    return {p: float(1.0 - ((sums[p] / len(fps)) ** (1.0 / p)).mean()) for p in powers}


def internal_diversity(generated: Any, p: float = 1.0, *, n_jobs: int = 1, device: Any = None) -> float:
    """IntDiv_p = 1 - mean_i [(mean_j T(i, j)^p)^(1/p)] over the valid generated molecules (MOSES's
    code; pairs i = j included, so n identical molecules score 0). ``generated``: SMILES list or an
    (n, 1024) fingerprint bit matrix. NaN without valid molecules."""
    fps = generated if isinstance(generated, np.ndarray) else fingerprints(generated, n_jobs=n_jobs)
    return _internal_diversities(fps, [p], device)[p]


def snn(generated: Any, reference: Any, *, n_jobs: int = 1, device: Any = None) -> float:
    """Similarity to nearest neighbour: mean over generated of max Tanimoto to a reference molecule.
    Either argument: a SMILES list or an (n, 1024) fingerprint bit matrix. NaN without valid molecules."""
    g = generated if isinstance(generated, np.ndarray) else fingerprints(generated, n_jobs=n_jobs)
    r = reference if isinstance(reference, np.ndarray) else fingerprints(reference, n_jobs=n_jobs)
    if len(g) == 0:
        return float("nan")
    return float(tanimoto_aggregate(g, r, agg="max", device=device).mean())


# --------------------------------------------------------------------------- fragments and scaffolds
def cosine_similarity(counts_a: dict, counts_b: dict) -> float:
    """<a, b> / (|a| |b|) of two {key: count} dicts (absent keys count 0); NaN when either is empty."""
    if not counts_a or not counts_b:
        return float("nan")
    dot = sum(float(v) * float(counts_b[k]) for k, v in counts_a.items() if k in counts_b)
    na = math.sqrt(sum(float(v) ** 2 for v in counts_a.values()))
    nb = math.sqrt(sum(float(v) ** 2 for v in counts_b.values()))
    return dot / (na * nb)


def _fragment_counts(described: list[dict]) -> Counter:
    counts: Counter = Counter()
    for d in described:
        counts.update(d["fragments"])
    return counts


def _scaffold_counts(described: list[dict]) -> Counter:
    return Counter(d["scaffold"] for d in described if d["scaffold"] is not None)


def fragment_similarity(generated: Any, reference: Any, *, n_jobs: int = 1) -> float:
    """Frag: cosine similarity of the BRICS fragment counts of generated and reference SMILES."""
    g = _fragment_counts(_valid(generated, "generated", ["fragments"], n_jobs))
    return cosine_similarity(g, _fragment_counts(_valid(reference, "reference", ["fragments"], n_jobs)))


def scaffold_similarity(generated: Any, reference: Any, *, n_jobs: int = 1) -> float:
    """Scaf: cosine similarity of the Bemis-Murcko scaffold counts (>= 2 rings) of generated and reference."""
    g = _scaffold_counts(_valid(generated, "generated", ["scaffold"], n_jobs))
    return cosine_similarity(g, _scaffold_counts(_valid(reference, "reference", ["scaffold"], n_jobs)))


def filters(generated: Any, *, n_jobs: int = 1) -> float:
    """Share of the valid generated molecules that pass MOSES's filters (``passes_filters``)."""
    passed = [d["filters"] for d in _valid(generated, "generated", ["filters"], n_jobs)]
    return float(np.mean(passed)) if passed else float("nan")


# --------------------------------------------------------------------------- properties
def property_distances(generated: Any, reference: Any, *, n_jobs: int = 1) -> dict[str, float]:
    """Wasserstein-1 distances of logP, SA, QED and molecular weight between the valid generated and
    reference molecules (SMILES lists)."""
    g = _valid(generated, "generated", PROPERTIES, n_jobs)
    r = _valid(reference, "reference", PROPERTIES, n_jobs)
    return _property_distances(g, {p: [d[p] for d in r] for p in PROPERTIES})


def _property_distances(described: list[dict], ref: dict) -> dict[str, float]:
    from scipy.stats import wasserstein_distance
    if not described or any(len(ref[p]) == 0 for p in PROPERTIES):
        return {p: float("nan") for p in PROPERTIES}
    return {p: float(wasserstein_distance(ref[p], [d[p] for d in described])) for p in PROPERTIES}


# --------------------------------------------------------------------------- Fréchet ChemNet Distance
def chemnet_activations(smiles: Sequence[str], *, device: Any = None, batch_size: int = 512) -> np.ndarray:
    """(n, 512) float32 penultimate ChemNet activations of the given SMILES strings, as
    ``fcd.get_predictions`` computes them (its one-hot encoding, padded to 350 or the longest string),
    in this process and in batches."""
    import torch
    from fcd import load_ref_model
    from fcd.utils import SmilesDataset
    smiles = _smiles_list(smiles, "smiles")
    if any(s is None for s in smiles):
        raise DataError("chemnet_activations takes valid SMILES strings only; drop the None entries")
    if not smiles:
        return np.zeros((0, 512), np.float32)
    batch_size = check_int("batch_size", batch_size, 1)
    dataset = SmilesDataset(smiles)
    with _quiet_fcd():
        model = load_ref_model()
    dev = _torch_device(device)
    out = []
    try:
        model.to(dev)
        with torch.inference_mode():
            for i in range(0, len(smiles), batch_size):
                x = np.stack([dataset[j] for j in range(i, min(i + batch_size, len(smiles)))])   # (B, L, 35)
                x = torch.as_tensor(x, device=dev).transpose(1, 2).float()                     # (B, 35, L)
                out.append(model(x).cpu().numpy().astype(np.float32))                          # (B, 512)
    finally:
        model.to("cpu")
    return np.concatenate(out)


@contextlib.contextmanager
def _quiet_fcd():
    """Silence two warnings of the fcd package that are not the user's business: scipy's deprecated
    ``sqrtm(disp=)`` and the temporary folder load_ref_model leaves to the garbage collector."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The `disp` argument is deprecated", category=DeprecationWarning)
        warnings.filterwarnings("ignore", message="Implicitly cleaning up", category=ResourceWarning)
        yield


def fcd_stats(smiles: Sequence[str], *, device: Any = None, cache: bool = True) -> dict[str, Any]:
    """{"mu": (512,), "sigma": (512, 512), "n"}: mean and covariance (ddof=1) of the ChemNet
    activations of ``smiles`` (strings as given). With ``cache``, sets of 1,000 molecules or more are
    kept on disk (``cache_dir()/molecules``, keyed by the strings' SHA-256): a test set is run
    through ChemNet once per machine."""
    smiles = _smiles_list(smiles, "smiles")
    if len(smiles) < 2:
        raise DataError(f"FCD needs at least 2 valid molecules per set for a covariance, got {len(smiles)}")
    path = None
    if cache and len(smiles) >= 1000:
        from ..datasets import cache_dir
        path = cache_dir() / "molecules" / f"fcd-{_sha256(smiles)[:40]}.npz"
        if path.is_file():
            try:
                with np.load(path, allow_pickle=False) as z:
                    return {"mu": z["mu"], "sigma": z["sigma"], "n": int(z["n"])}
            except (OSError, ValueError, KeyError):
                pass                                              # damaged: recompute and overwrite
    act = chemnet_activations(smiles, device=device).astype(np.float64)
    stats = {"mu": act.mean(0), "sigma": np.cov(act.T), "n": len(smiles)}
    if path is not None:
        _save(path, lambda f: np.savez(f, **stats))
    return stats


def frechet_chemnet_distance(gen_stats: dict, ref_stats: dict) -> float:
    """||mu_g - mu_r||^2 + Tr(S_g + S_r - 2 (S_g S_r)^(1/2)) with ``fcd.calculate_frechet_distance``."""
    from fcd import calculate_frechet_distance
    with _quiet_fcd():
        return float(calculate_frechet_distance(mu1=gen_stats["mu"], sigma1=gen_stats["sigma"],
                                                mu2=ref_stats["mu"], sigma2=ref_stats["sigma"]))


def _sample(items: list, n: int | None, seed: int) -> list:
    if n is None or len(items) <= n:
        return items
    idx = np.sort(np.random.default_rng(seed).choice(len(items), size=n, replace=False))
    return [items[i] for i in idx]


def fcd(generated: Any, reference: Any = None, *, reference_stats: dict | None = None, sample: int | None = None,
        seed: int = 0, device: Any = None) -> float:
    """Fréchet ChemNet Distance between the valid generated molecules and ``reference`` (SMILES) or
    ``reference_stats`` ({"mu", "sigma"}, e.g. ``genmodels.moses.test_stats("test")``'s ``fcd_mu`` /
    ``fcd_sigma`` as ``{"mu": ..., "sigma": ...}``). Both sides are canonical SMILES, as in MOSES.
    ``sample``: use at most that many molecules of each SMILES set (seeded); FCD grows as n shrinks."""
    if (reference is None) == (reference_stats is None):
        raise ConfigError("fcd needs exactly one of reference (SMILES) and reference_stats ({'mu', 'sigma'})")
    sample = None if sample is None else check_int("sample", sample, 2)
    gen = _sample([d["canonical"] for d in _valid(generated, "generated", ["canonical"])], sample, seed)
    gen_stats = fcd_stats(gen, device=device, cache=False)
    if reference_stats is None:
        ref = _sample([d["canonical"] for d in _valid(reference, "reference", ["canonical"])], sample, seed + 1)
        reference_stats = fcd_stats(ref, device=device)
    return frechet_chemnet_distance(gen_stats, reference_stats)


# --------------------------------------------------------------------------- reference statistics, one entry point
_REF_PARTS = ("canonical", "fingerprint", "fragments", "scaffold") + PROPERTIES
_STATS_KEYS = ("n", "fcd_mu", "fcd_sigma", "fcd_n", "fingerprints", "fragments", "scaffolds") + PROPERTIES


def reference_stats(smiles: Sequence[str | None], *, n_jobs: int = 1, device: Any = None, fcd_sample: int | None = None,
                    seed: int = 0) -> dict[str, Any]:
    """What the metrics need of a reference set, computed once (MOSES's intermediate statistics):
    ``n`` (valid molecules; ``n_entries``: SMILES given), ``fcd_mu``, ``fcd_sigma``, ``fcd_n``
    (molecules behind the FCD statistics: all, or ``fcd_sample`` of them), ``fingerprints`` (n, 1024)
    uint8, ``fragments`` and ``scaffolds`` ({SMILES: count}) and the ``logP``/``SA``/``QED``/``weight``
    values: the layout of ``genmodels.moses.test_stats``. Invalid SMILES are skipped with a warning."""
    items = _smiles_list(smiles, "reference")
    described = _describe(items, _REF_PARTS, n_jobs)
    valid = [d for d in described if d is not None]
    if len(valid) < len(items):
        warnings.warn(f"skipped {len(items) - len(valid)} of {len(items)} reference SMILES that RDKit cannot parse",
                      UserWarning, stacklevel=2)
    if len(valid) < 2:
        raise DataError(f"the reference set needs at least 2 valid molecules, got {len(valid)}")
    fcd_smiles = _sample([d["canonical"] for d in valid], fcd_sample, seed + 1)
    f = fcd_stats(fcd_smiles, device=device)
    out = {"n": len(valid), "n_entries": len(items), "fcd_mu": f["mu"], "fcd_sigma": f["sigma"], "fcd_n": f["n"],
           "fingerprints": np.stack([d["fingerprint"] for d in valid]),
           "fragments": dict(_fragment_counts(valid)), "scaffolds": dict(_scaffold_counts(valid))}
    out.update({p: np.array([d[p] for d in valid]) for p in PROPERTIES})
    return out


def _check_stats(stats: Any, name: str) -> dict:
    if not isinstance(stats, dict) or not set(_STATS_KEYS) - {"fcd_n"} <= set(stats):
        missing = sorted(set(_STATS_KEYS) - {"fcd_n"} - set(stats)) if isinstance(stats, dict) else list(_STATS_KEYS)
        raise ConfigError(f"{name} must be the dict of reference_stats() or genmodels.moses.test_stats(); "
                          f"missing {', '.join(missing)}")
    return stats


def _reference(smiles: Any, stats: Any, name: str, n_jobs: int, device: Any, fcd_sample: int | None,
               seed: int) -> dict | None:
    if stats is None:
        return None if smiles is None else reference_stats(smiles, n_jobs=n_jobs, device=device,
                                                           fcd_sample=fcd_sample, seed=seed)
    stats = _check_stats(stats, f"{name}_stats")
    n = stats.get("n_entries", stats["n"])
    if smiles is not None and len(_smiles_list(smiles, name)) != n:
        raise ConfigError(f"{name} has {len(smiles)} SMILES but {name}_stats describes {n}: pass the "
                          f"statistics of this very set, or leave {name}_stats out to compute them")
    return stats


def evaluate_molecules(generated: Sequence[str | None], *, train: Sequence[str], test: Sequence[str] | None = None,
                       test_scaffolds: Sequence[str] | None = None, n_jobs: int = 1, fcd_sample: int | None = None,
                       seed: int = 0, test_stats: dict | None = None, test_scaffolds_stats: dict | None = None,
                       train_canonical: bool = False, k: Sequence[int] = (1000, 10000),
                       device: Any = None) -> dict[str, float]:
    """All MOSES metrics of ``generated`` SMILES (None = invalid) in one dict.

    ``test`` / ``test_scaffolds``: reference SMILES; or their precomputed ``test_stats`` /
    ``test_scaffolds_stats`` (``reference_stats(...)`` or ``genmodels.moses.test_stats(split)``).
    ``train``: for novelty (canonicalised, cached on disk when large, unless ``train_canonical``).
    ``fcd_sample``: at most that many generated molecules (seeded) enter the FCD, and as many
    reference molecules when their statistics are computed here. ``k``: the unique@k values.
    ``device``: where ChemNet and the Tanimoto products run (default: CUDA when available).

    Keys: ``valid``, ``unique@<k>``, ``novelty``, ``IntDiv1``, ``IntDiv2``, ``Filters``,
    ``FCD/Test``, ``SNN/Test``, ``Frag/Test``, ``Scaf/Test`` (and ``/TestSF`` with scaffold-split
    references), ``logP``, ``SA``, ``QED``, ``weight`` (vs test), ``n_generated``, ``n_valid``,
    ``fcd_n_generated``, ``fcd_n_reference`` (``fcd_n_reference/TestSF``). A metric that needs
    valid molecules is NaN when there are too few (none; fewer than 2 for FCD).
    """
    gen = _smiles_list(generated, "generated")
    if not gen:
        raise DataError("generated is empty: evaluate_molecules needs at least one entry")
    n_jobs = _n_jobs(n_jobs)
    seed = check_int("seed", seed, 0)
    fcd_sample = None if fcd_sample is None else check_int("fcd_sample", fcd_sample, 2)
    ks = [check_int("k", kk, 1) for kk in ([k] if isinstance(k, int) else k)]
    if train is None:
        raise ConfigError("evaluate_molecules needs the training SMILES (train=...) for novelty")
    refs = {"Test": _reference(test, test_stats, "test", n_jobs, device, fcd_sample, seed),
            "TestSF": _reference(test_scaffolds, test_scaffolds_stats, "test_scaffolds", n_jobs, device,
                                 fcd_sample, seed)}
    if refs["Test"] is None:
        raise ConfigError("evaluate_molecules needs the test SMILES (test=...) or their statistics (test_stats=...), "
                          "e.g. genmodels.moses.test_stats('test')")

    described = [d for d in _describe(gen, tuple(_PARTS), n_jobs) if d is not None]
    canon = [d["canonical"] for d in described]
    out: dict[str, float] = {"valid": len(described) / len(gen)}
    for kk in ks:
        out[f"unique@{kk}"] = _unique_at(canon, kk)
    fcd_gen = _sample(canon, fcd_sample, seed)
    gen_fcd = fcd_stats(fcd_gen, device=device, cache=False) if len(fcd_gen) >= 2 else None
    fps = np.stack([d["fingerprint"] for d in described]) if described else None
    frags, scafs = _fragment_counts(described), _scaffold_counts(described)
    nan = float("nan")
    for suffix, ref in refs.items():
        if ref is None:
            continue
        ref_fcd = {"mu": ref["fcd_mu"], "sigma": ref["fcd_sigma"]}
        out[f"FCD/{suffix}"] = frechet_chemnet_distance(gen_fcd, ref_fcd) if gen_fcd is not None else nan
        out[f"SNN/{suffix}"] = snn(fps, ref["fingerprints"], device=device) if fps is not None else nan
        out[f"Frag/{suffix}"] = cosine_similarity(frags, ref["fragments"])
        out[f"Scaf/{suffix}"] = cosine_similarity(scafs, ref["scaffolds"])
    div = _internal_diversities(fps if fps is not None else np.zeros((0, FP_BITS), np.uint8), (1, 2), device)
    out["IntDiv1"], out["IntDiv2"] = div[1], div[2]
    out["Filters"] = float(np.mean([d["filters"] for d in described])) if described else nan
    out.update(_property_distances(described, refs["Test"]))
    out["novelty"] = _novelty(set(canon), train, n_jobs, train_canonical)
    out.update({"n_generated": float(len(gen)), "n_valid": float(len(described)),
                "fcd_n_generated": float(len(fcd_gen)),
                "fcd_n_reference": float(refs["Test"].get("fcd_n", refs["Test"]["n"]))})
    if refs["TestSF"] is not None:
        out["fcd_n_reference/TestSF"] = float(refs["TestSF"].get("fcd_n", refs["TestSF"]["n"]))
    return out
