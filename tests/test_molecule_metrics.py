"""Molecule metrics (MOSES definitions) and the MOSES data: closed forms on two or three molecules,
MOSES's own unit-test numbers, the fcd package's get_fcd, and MOSES's published "Train" row on
small subsamples where the numbers do not depend on n.

The MOSES files come from the molsets 0.3.1 wheel, downloaded once into the cache: a failed download
fails these tests (the machine reaches PyPI), it never skips them. RDKit and fcd are required too.
"""
import gzip
import json
import math
import pickle
import warnings

import numpy as np
import pytest
from rdkit import Chem, DataStructs
from rdkit.Chem import Crippen, Descriptors

from genmodels import moses
from genmodels.errors import ConfigError, DataError
from genmodels.metrics import molecule as M

# MOSES's tests/test_metrics.py (molsets 0.3.1): inputs and expected values of get_all_metrics
MOSES_TEST = ["Oc1ccccc1-c1cccc2cnccc12", "COc1cccc(NC(=O)Cc2coc3ccc(OC)cc23)c1"]
MOSES_TEST_SF = ["COCc1nnc(NC(=O)COc2ccc(C(C)(C)C)cc2)s1", "O=C(C1CC2C=CC1C2)N1CCOc2ccccc21",
                 "Nc1c(Br)cccc1C(=O)Nc1ccncn1"]
MOSES_GEN = ["CNC", "Oc1ccccc1-c1cccc2cnccc12", "INVALID", "CCCP", "Cc1noc(C)c1CN(C)C(=O)Nc1cc(F)cc(F)c1",
             "Cc1nc(NCc2ccccc2)no1-c1ccccc1"]
MOSES_TARGET = {"valid": 2 / 3, "unique@3": 1.0, "SNN/Test": 0.3152585653588176, "Frag/Test": 0.3,
                "Scaf/Test": 0.5, "IntDiv1": 0.7189187309761661, "Filters": 0.75, "logP": 1.63229,
                "QED": 0.20370891752648637, "weight": 106.87}
MOSES_FCD = 52.58371754126664        # fcd_torch's ChemNet; the fcd package's agrees to ~1e-6 relative


@pytest.fixture(scope="module")
def train():
    return moses.smiles("train")


@pytest.fixture(scope="module")
def test_set():
    return moses.smiles("test")


@pytest.fixture(scope="module")
def stats():
    return moses.test_stats("test")


def _subsample(smiles, n, seed):
    idx = np.random.default_rng(seed).choice(len(smiles), n, replace=False)
    return [smiles[i] for i in np.sort(idx)]


# --------------------------------------------------------------------------- parsing, validity, unique, novelty
def test_canonical():
    assert M.canonical("OCC") == M.canonical("C(C)O") == "CCO"
    assert M.canonical("C1=CC=CC=C1") == "c1ccccc1"
    assert "@" in M.canonical("N[C@@H](C)C(=O)O")                 # isomeric
    for bad in (None, "", "   ", "INVALID", "c1cccc1"):
        assert M.canonical(bad) is None
    with pytest.raises(DataError, match="SMILES string"):
        M.canonical(5)


def test_validity_and_bad_input():
    assert M.validity(["CCO", None, "INVALID", "", "c1ccccc1"]) == pytest.approx(2 / 5)
    assert M.validity([float("nan"), "C"]) == 0.5                 # a missing pandas cell is invalid
    with pytest.raises(DataError, match="one string"):
        M.validity("CCO")
    with pytest.raises(DataError, match="empty"):
        M.validity([])
    with pytest.raises(DataError, match=r"generated\[1\]"):
        M.validity(["CCO", 3])


def test_uniqueness_first_k_valid():
    gen = ["CCO", None, "OCC", "C(C)O", "CCN"]                     # valid: CCO, CCO, CCO, CCN
    assert M.uniqueness(gen) == 0.5
    assert M.uniqueness(gen, k=2) == 0.5                           # the first two *valid*: CCO, CCO
    assert M.uniqueness(gen, k=1) == 1.0
    with pytest.warns(UserWarning, match="only 4 valid"):
        assert M.uniqueness(gen, k=10) == 0.5
    assert math.isnan(M.uniqueness([None, "INVALID"]))


def test_novelty_canonicalises_train():
    gen = ["CCO", "OCC", "CCN", "C1=CC=CC=C1", None]               # distinct: CCO, CCN, c1ccccc1
    train = ["OCC", "c1ccccc1", "INVALID"]
    assert M.novelty(gen, train) == pytest.approx(1 / 3)
    assert M.novelty(gen, train, train_canonical=True) == pytest.approx(2 / 3)   # raw strings, as MOSES
    assert math.isnan(M.novelty([None], train))


def test_canonical_set_disk_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GENMODELS_CACHE", str(tmp_path))
    monkeypatch.setattr(M, "_CACHE_MIN", 3)
    monkeypatch.setattr(M, "_SETS", {})
    smiles = ["CCO", "OCC", "INVALID", "c1ccccc1", "C1=CC=CC=C1"]
    first = M.canonical_set(smiles)
    assert first == {"CCO", "c1ccccc1"}
    (path,) = (tmp_path / "molecules").glob("canonical-*.json.gz")
    with gzip.open(path, "rt") as f:
        assert json.load(f)["changed"] == {"1": "CCO", "2": None, "4": "c1ccccc1"}   # only what changed
    M._SETS.clear()
    monkeypatch.setattr(M, "_describe", lambda *a, **k: pytest.fail("recomputed instead of read from the cache"))
    assert M.canonical_set(smiles) == first


# --------------------------------------------------------------------------- Tanimoto, IntDiv, SNN
def test_tanimoto_closed_form():
    a = np.array([[1, 1, 0, 0], [1, 0, 1, 0], [0, 0, 0, 0]], np.uint8)
    b = np.array([[1, 1, 1, 0], [0, 0, 0, 0]], np.uint8)
    # T(a0, b0) = 2/3, T(a1, b0) = 2/3, T(a2, b0) = 0; against the empty b1: 0, 0 and 1 (both empty, as MOSES)
    assert M.tanimoto_aggregate(a, b, agg="max") == pytest.approx([2 / 3, 2 / 3, 1.0])
    assert M.tanimoto_aggregate(a, b, agg="mean") == pytest.approx([1 / 3, 1 / 3, 0.5])
    assert M.tanimoto_aggregate(a, b, agg="mean", p=2) == pytest.approx([math.sqrt(2 / 9)] * 2 + [math.sqrt(0.5)])
    assert M.tanimoto_aggregate(a, b, agg="max", block=1) == pytest.approx([2 / 3, 2 / 3, 1.0])
    with pytest.raises(DataError, match="0/1"):
        M.tanimoto_aggregate(a * 2, b)
    with pytest.raises(ConfigError, match="agg"):
        M.tanimoto_aggregate(a, b, agg="min")


def test_fingerprints_match_rdkit_tanimoto():
    smiles = ["CCOc1ccccc1", "CCNc1ccccc1", "OC(=O)c1ccncc1"]
    fps = M.fingerprints(smiles)
    assert fps.shape == (3, 1024) and fps.dtype == np.uint8
    from rdkit.Chem import rdFingerprintGenerator
    gen = rdFingerprintGenerator.GetMorganGenerator(radius=2, fpSize=1024)
    bv = [gen.GetFingerprint(Chem.MolFromSmiles(s)) for s in smiles]
    expected = DataStructs.BulkTanimotoSimilarity(bv[0], bv[1:])
    # mean over {self, other} of T: (1 + T) / 2 per molecule pair
    for other, t in zip((1, 2), expected):
        pair = fps[[0, other]]
        assert M.tanimoto_aggregate(pair[:1], pair[1:], agg="max")[0] == pytest.approx(t)
        assert M.internal_diversity(pair) == pytest.approx((1 - t) / 2)                 # 1 - (1 + 1 + 2T) / 4
        assert M.internal_diversity(pair, 2) == pytest.approx(1 - math.sqrt((1 + t * t) / 2))


def test_internal_diversity_and_snn_edge_cases():
    assert M.internal_diversity(["CCO"] * 5) == 0.0
    assert M.internal_diversity(["CCO", "OCC", None], 2) == 0.0
    assert math.isnan(M.internal_diversity([None, "INVALID"]))
    assert M.snn(["CCO", "c1ccccc1"], ["c1ccccc1", "CCO", "CCN"]) == pytest.approx(1.0)
    assert 0.0 < M.snn(["CCCO"], ["CCO"]) < 1.0


# --------------------------------------------------------------------------- fragments, scaffolds, filters, properties
def test_cosine_similarity():
    assert M.cosine_similarity({"a": 1, "b": 2}, {"b": 2, "c": 1}) == pytest.approx(0.8)     # 4 / (sqrt5 sqrt5)
    assert M.cosine_similarity({"a": 3}, {"a": 1}) == pytest.approx(1.0)
    assert M.cosine_similarity({"a": 1}, {"b": 1}) == 0.0
    assert math.isnan(M.cosine_similarity({}, {"a": 1}))


def test_fragment_and_scaffold_similarity():
    # BRICS cuts the amide C-N bond of CCC(=O)NCC into two fragments
    assert M.fragment_similarity(["CCC(=O)NCC"], ["CCC(=O)NCC", "CCC(=O)NCC"]) == pytest.approx(1.0)
    assert M.fragment_similarity(["CCC(=O)NCC"], ["CCCC"]) == 0.0
    # scaffolds with fewer than 2 rings are not counted (MOSES's min_rings=2): benzene alone is nothing
    assert math.isnan(M.scaffold_similarity(["Cc1ccccc1"], ["CCc1ccccc1"]))
    assert M.scaffold_similarity(["Cc1ccc2ccccc2c1"], ["CCc1ccc2ccccc2c1"]) == pytest.approx(1.0)
    two = ["Cc1ccc2ccccc2c1", "OC1CCC(c2ccccc2)CC1"]                # naphthalene : phenylcyclohexane
    assert M.scaffold_similarity(two, [two[0]]) == pytest.approx(1 / math.sqrt(2))


@pytest.mark.parametrize("smiles, ok", [
    ("CCO", True), ("CC(=O)Nc1ccc(O)cc1", True),
    ("CCCP", False),                     # phosphorus is not an allowed atom
    ("C[N+](C)(C)C", False),             # charged
    ("C1CCCCCCC1", False),               # 8-membered ring
    ("C=CC#N", False),                   # MCF1: Michael acceptor nitrile
    ("CCCCCl", False),                   # MCF4: primary alkyl halide
    ("INVALID", False), (None, False),
])
def test_passes_filters(smiles, ok):
    assert M.passes_filters(smiles) is ok


def test_filters_share_and_property_distances():
    assert M.filters(["CCO", "CCCP", None, "c1ccccc1"]) == pytest.approx(2 / 3)
    d = M.property_distances(["C"], ["CC"])
    methane, ethane = Chem.MolFromSmiles("C"), Chem.MolFromSmiles("CC")
    assert d["weight"] == pytest.approx(Descriptors.MolWt(ethane) - Descriptors.MolWt(methane))
    assert d["logP"] == pytest.approx(abs(Crippen.MolLogP(ethane) - Crippen.MolLogP(methane)))
    assert M.property_distances(["CCO", "c1ccccc1"], ["c1ccccc1", "OCC"]) == pytest.approx(
        {"logP": 0.0, "SA": 0.0, "QED": 0.0, "weight": 0.0})


# --------------------------------------------------------------------------- MOSES's own unit test, evaluate_molecules
def test_moses_unit_test_numbers():
    with warnings.catch_warnings():
        warnings.simplefilter("error")                             # no stray warnings from rdkit / fcd / scipy
        out = M.evaluate_molecules(MOSES_GEN, train=MOSES_TEST, test=MOSES_TEST, test_scaffolds=MOSES_TEST_SF,
                                   k=3)
    for key, value in MOSES_TARGET.items():
        assert out[key] == pytest.approx(value, rel=1e-9, abs=1e-12), key
    assert out["FCD/Test"] == pytest.approx(MOSES_FCD, rel=1e-5)
    # SA: MOSES's target (0.5238) came from an older RDKit; the SA scores of today's RDKit give this number
    sa = M._sascorer().calculateScore
    gen_sa = [sa(Chem.MolFromSmiles(s)) for s in (MOSES_GEN[0], MOSES_GEN[1], MOSES_GEN[3], MOSES_GEN[4])]
    from scipy.stats import wasserstein_distance
    assert out["SA"] == pytest.approx(wasserstein_distance([sa(Chem.MolFromSmiles(s)) for s in MOSES_TEST], gen_sa))
    assert out["novelty"] == pytest.approx(3 / 4) and out["Scaf/TestSF"] == 0.0
    assert {"FCD/TestSF", "SNN/TestSF", "Frag/TestSF", "fcd_n_reference/TestSF"} <= set(out)
    assert (out["n_generated"], out["n_valid"], out["fcd_n_generated"], out["fcd_n_reference"]) == (6, 4, 4, 2)


def test_evaluate_molecules_options_and_errors():
    ref = ["CCO", "CCN", "c1ccccc1O", "CC(=O)O", "c1ccncc1"]
    gen = ["CCO", "CCCO", "c1ccccc1N", "CC(=O)N", None]
    pre = M.reference_stats(ref)
    assert pre["n"] == 5 and pre["fingerprints"].shape == (5, 1024)
    with pytest.warns(UserWarning, match="unique@10"):
        out = M.evaluate_molecules(gen, train=ref, test_stats=pre, fcd_sample=3, k=(2, 10))
    assert out["fcd_n_generated"] == 3 and out["fcd_n_reference"] == 5 and out["unique@2"] == 1.0
    assert out["SNN/Test"] == pytest.approx(M.snn(gen, ref))
    assert out["IntDiv1"] == pytest.approx(M.internal_diversity(gen))
    with pytest.warns(UserWarning, match="only 0 valid"):
        bad = M.evaluate_molecules([None, "INVALID"], train=ref, test_stats=pre, k=1)
    assert bad["valid"] == 0.0 and bad["n_valid"] == 0
    for key in ("FCD/Test", "SNN/Test", "IntDiv1", "Filters", "novelty", "logP", "unique@1"):
        assert math.isnan(bad[key]), key
    with pytest.raises(ConfigError, match="test_stats"):
        M.evaluate_molecules(gen, train=ref)
    with pytest.raises(ConfigError, match="describes 5"):
        M.evaluate_molecules(gen, train=ref, test=ref[:3], test_stats=pre)
    with pytest.raises(ConfigError, match="missing"):
        M.evaluate_molecules(gen, train=ref, test_stats={"n": 5})
    with pytest.raises(ConfigError, match="n_jobs"):
        M.evaluate_molecules(gen, train=ref, test_stats=pre, n_jobs=0)


def test_parallel_equals_serial(test_set):
    smiles = test_set[:40] + ["INVALID", None]
    serial = M._describe(smiles, tuple(M._PARTS), n_jobs=1)
    parallel = M._describe(smiles, tuple(M._PARTS), n_jobs=2)
    assert serial[-2:] == [None, None] == parallel[-2:]
    for s, p in zip(serial[:-2], parallel[:-2]):
        assert s.keys() == p.keys() and all(np.array_equal(s[k], p[k]) for k in s)


# --------------------------------------------------------------------------- FCD
def test_fcd_equals_fcd_package(train, test_set):
    import fcd
    gen = [M.canonical(s) for s in _subsample(train, 64, 1)]
    ref = [M.canonical(s) for s in _subsample(test_set, 64, 2)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")                            # fcd's own deprecation / worker warnings
        expected = fcd.get_fcd(gen, ref, device="cpu")
    assert M.fcd(gen, ref, device="cpu") == pytest.approx(expected, rel=1e-6)
    with pytest.raises(DataError, match="at least 2"):
        M.fcd(["CCO", None], ref)
    with pytest.raises(ConfigError, match="exactly one"):
        M.fcd(gen)


@pytest.mark.slow
def test_fcd_against_moses_statistics(train, test_set, stats):
    # MOSES computed its statistics with fcd_torch: the fcd package's ChemNet must give the same
    # activations, so the mean of n test molecules is off MOSES's mean by sampling noise alone
    act = M.chemnet_activations([M.canonical(s) for s in _subsample(test_set, 150, 4)])
    d = act.mean(0) - stats["fcd_mu"]
    assert d @ d < 2 * np.trace(stats["fcd_sigma"]) / 150            # E||mean - mu||^2 = tr(Sigma) / n
    # the training set as a generator: MOSES's 0.008 needs all 1.6M molecules; at n = 150 FCD's small-sample
    # floor is ~9 (150 test molecules score 9.3 against their own set's statistics), a skewed set ~18
    ref = {"mu": stats["fcd_mu"], "sigma": stats["fcd_sigma"]}
    assert M.fcd(_subsample(train, 150, 3), reference_stats=ref) < 12.0


# --------------------------------------------------------------------------- MOSES's "Train" row on subsamples
@pytest.mark.slow
def test_moses_train_row_on_subsamples(train, test_set, stats):
    assert M.filters(_subsample(train, 300, 6)) == 1.0                          # MOSES's data passes its filters
    fps = M.fingerprints(_subsample(test_set, 1000, 7))
    assert M.internal_diversity(fps, 1) == pytest.approx(0.857, abs=0.01)
    assert M.internal_diversity(fps, 2) == pytest.approx(0.851, abs=0.01)
    sample = _subsample(train, 1000, 8)
    assert M.snn(M.fingerprints(sample[:300]), stats["fingerprints"]) == pytest.approx(0.642, abs=0.02)
    frags = M._fragment_counts(M._valid(sample[:500], "sample", ["fragments"]))
    assert M.cosine_similarity(frags, stats["fragments"]) > 0.99                  # MOSES: 1.000 (0.996 at n = 500)
    assert M.novelty(sample[:200], sample) == 0.0


# --------------------------------------------------------------------------- genmodels.moses
def test_moses_data(train, test_set):
    assert len(train) == 1_584_663 and len(test_set) == 176_074
    assert len(moses.smiles("test_scaffolds")) == 176_225
    assert train[0] == "CCCS(=O)c1ccc2[nH]c(=NC(=O)OC)[nH]c2c1"
    with pytest.raises(ConfigError, match="train, test, test_scaffolds"):
        moses.smiles("valid")
    table = moses.filters_table()
    assert [f.source for f in table].count("MCF") == 22 and [f.source for f in table].count("PAINS") == 480
    assert table[0].smarts == "[#6]=&!@[#6]-[#6]#[#7]" and all(f.smarts == f.smarts.strip() for f in table)


def test_moses_test_stats(stats, test_set):
    assert stats["n"] == stats["fcd_n"] == len(test_set)
    assert stats["fcd_mu"].shape == (512,) and stats["fcd_sigma"].shape == (512, 512)
    assert stats["fingerprints"].shape == (len(test_set), 1024) and not stats["fingerprints"].flags.writeable
    assert len(stats["fragments"]) == 16038 and len(stats["scaffolds"]) == 77114
    assert all(stats[p].shape == (len(test_set),) for p in M.PROPERTIES)
    # the same fingerprints and properties as computed here, for the first test molecules
    assert np.array_equal(M.fingerprints(test_set[:50]), stats["fingerprints"][:50])
    assert stats["logP"][:3] == pytest.approx([Crippen.MolLogP(Chem.MolFromSmiles(s)) for s in test_set[:3]])
    with pytest.raises(ConfigError, match="test, test_scaffolds"):
        moses.test_stats("train")


def test_stats_unpickler_refuses_code():
    payload = pickle.dumps(__import__("os").getcwd)                 # a reference to a function: refused
    with pytest.raises(pickle.UnpicklingError, match="not allowed"):
        moses._StatsUnpickler(__import__("io").BytesIO(payload)).load()
