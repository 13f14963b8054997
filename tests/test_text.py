"""The text and molecule codecs, and sequence models through Model, the CLI and the built-in sets."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import genmodels as gm
from genmodels.cli import main
from genmodels.codecs.molecule import MoleculeCodec, canonical
from genmodels.codecs.text import TextCodec
from genmodels.errors import ConfigError, DataError

TINY = {"n_layer": 1, "n_head": 2, "n_embd": 16}
TEXT = "the cat sat on the mat. the dog sat on the log. " * 40
MOLS = ["CCO", "c1ccccc1", "CC(=O)O", "CCN(CC)CC", "OC1CCCCC1", "CC(C)Cc1ccc(C(C)C(=O)O)cc1", "C1CC1", "CCCl"] * 6


# ---------------------------------------------------------------- codec: windows and tokens
def test_windows_of_one_text_overlap_by_one_position():
    codec = TextCodec(block_size=2).fit("abcde")
    b = codec.encode("abcde")
    # stream [0, a, b, c, d, e, 0] with a..e = 1..5: windows [0..2], [2..4], [4..6]
    assert b["tokens"].tolist() == [[0, 1, 2], [2, 3, 4], [4, 5, 0]]
    assert b["length"].tolist() == [3, 3, 3] and b["doc"].tolist() == [0, 0, 0]
    assert codec.spec().extra == {"vocab_size": 6, "block_size": 2}


def test_windows_of_a_list_of_documents_pad_and_number_them():
    codec = TextCodec(block_size=4).fit(["ab", "ba"])
    b = codec.encode(["ab", "", "abab"])
    assert b["tokens"].tolist() == [[0, 1, 2, 0, 0], [0, 0, 0, 0, 0], [0, 1, 2, 1, 2], [2, 0, 0, 0, 0]]
    assert b["length"].tolist() == [4, 2, 5, 2]
    assert b["doc"].tolist() == [0, 1, 2, 2]


def test_decode_stops_at_the_end_token_and_round_trips():
    codec = TextCodec().fit(TEXT)
    docs = ["the cat", "sat. on"]
    b = codec.encode(docs)
    assert codec.decode(b) == docs


def test_default_block_is_the_longest_document_for_lists():
    assert TextCodec().fit(["ab", "abcde"]).spec().extra["block_size"] == 8
    assert TextCodec().fit(TEXT).spec().extra["block_size"] == 128
    assert TextCodec().fit([TEXT]).spec().extra["block_size"] == 128      # what Model.fit passes for one text
    m = gm.Model("ngram", order=2).fit(TEXT, verbose=False)
    assert m.codec_.spec().extra["block_size"] == 128


def test_unseen_characters_are_named():
    codec = TextCodec().fit("abc abc")
    with pytest.raises(DataError, match="never seen in training: 'z'"):
        codec.encode("abz")
    with pytest.raises(DataError, match="never seen"):
        codec.sample_options({"prompt": "zz"})


def test_bpe_round_trips_any_text_and_is_a_bound():
    text = "naïve café – ünïcode ☃ and plain words " * 30
    codec = TextCodec(tokenizer="bpe", vocab_size=300).fit(text)
    assert codec.bound_reasons
    b = codec.encode(["café ☃ words", "never seen: ✓"])
    assert codec.decode(b) == ["café ☃ words", "never seen: ✓"]
    again = TextCodec.from_state(codec.state())
    assert torch.equal(again.encode("café")["tokens"], codec.encode("café")["tokens"])


def test_empty_text_and_bad_options_are_refused():
    with pytest.raises(DataError, match="empty"):
        TextCodec().fit("")
    with pytest.raises(DataError, match="empty"):
        TextCodec().fit(["", ""])
    with pytest.raises(DataError, match="the text is empty"):     # not mistaken for the current folder of images
        gm.Model("rnn").fit("", max_steps=1, verbose=False)
    with pytest.raises(ConfigError, match="tokenizer"):
        TextCodec(tokenizer="word")
    with pytest.raises(ConfigError, match="block_size"):
        TextCodec(block_size=0)


# ---------------------------------------------------------------- Model with text
@pytest.fixture(scope="module")
def text_model():
    torch.manual_seed(0)
    return gm.Model("gpt", block_size=16, **TINY).fit(TEXT, max_steps=60, verbose=False)


def test_text_model_scores_documents_in_nats(text_model):
    m = text_model
    assert m.modality_ == "text" and m.likelihood == "exact"
    lp = m.log_prob(["the cat sat", "the dog sat on the log. " * 3])
    assert lp.shape == (2,) and np.all(lp < 0)
    # a document's log-probability is the sum over its windows: scoring a long document equals the sum of
    # the module's window scores
    doc = "the dog sat on the log. " * 3
    b = m.codec_.encode([doc])
    with torch.no_grad():
        per_window = m.module_.log_prob(b).double().sum().item()
    assert math.isclose(m.log_prob([doc])[0], per_window, rel_tol=1e-9)


def test_text_model_samples_strings_from_a_prompt(text_model):
    out = text_model.sample(3, prompt="the ", max_length=20, seed=1)
    assert isinstance(out, list) and len(out) == 3 and all(s.startswith("the ") for s in out)
    assert all(len(s) <= 4 + 20 for s in out)
    assert text_model.sample(3, prompt="the ", max_length=20, seed=1) == out
    many = text_model.sample(600, max_length=4, seed=2)             # more than one pass of rows
    assert len(many) == 600


@pytest.mark.parametrize("options, match", [({"temperature": 0}, "temperature"), ({"top_p": 1.5}, "top_p"),
                                            ({"top_k": 0}, "top_k"), ({"prompt": "zzq"}, "never seen"),
                                            ({"beam": 3}, "unknown sampling option")])
def test_bad_sampling_options(text_model, options, match):
    with pytest.raises((ConfigError, DataError), match=match):
        text_model.sample(2, **options)


def test_block_longer_than_the_model_is_refused():
    with pytest.raises(ConfigError, match="block"):
        gm.Model("gpt", codec={"block_size": 32}, **{**TINY, "block_size": 16}).fit(TEXT, max_steps=1, verbose=False)


def test_text_model_saves_and_loads(text_model, tmp_path):
    text_model.save(tmp_path / "m")
    again = gm.load(tmp_path / "m")
    doc = ["the cat sat on the mat."]
    assert np.allclose(again.log_prob(doc), text_model.log_prob(doc))
    assert again.sample(2, seed=3, max_length=10) == text_model.sample(2, seed=3, max_length=10)


def test_bits_per_char_metric_matches_the_definition(text_model):
    from genmodels.metrics.text import bits_per_char, distinct_n, memorization
    docs = ["the cat sat on the mat.", "the dog"]
    lp = text_model.log_prob(docs)
    assert math.isclose(bits_per_char(lp, [23, 7]), -lp.sum() / (30 * math.log(2)))
    assert distinct_n(["a b c a b", "a b"], 2) == pytest.approx(3 / 5)
    train = "x" * 10 + "the quick brown fox jumps over the lazy dog, twice over!" + "y" * 10
    assert memorization(["...the quick brown fox jumps over the lazy dog, twice over!", "the quick brown"], train) == 0.5
    out = gm.evaluate(text_model, "the cat sat on the log. the dog sat on the mat.", train=TEXT, n_samples=4)
    assert {"bits_per_char", "perplexity_per_token", "distinct_2", "memorization_50"} <= set(out)


def test_text_families_are_listed_for_text_and_molecules():
    assert {"gpt", "rnn", "ngram"} <= set(gm.list_models("text")) and "gpt" in gm.list_models("molecule")


# ---------------------------------------------------------------- molecules
def test_molecule_codec_canonicalises_and_skips_invalid_training_smiles():
    with pytest.warns(UserWarning, match="skipped 2 of 5"):
        codec = MoleculeCodec().fit(["OCC", "C1CC", "c1ccccc1", "not a molecule", "CC(=O)O"])
    assert codec.skipped_ == 2
    b = codec.encode(["OCC"])
    assert codec.decode(b) == ["CCO"]                       # canonical SMILES out
    with pytest.raises(DataError, match="cannot be parsed"):
        codec.encode(["C1CC"])
    assert canonical("C1CC") is None and canonical("OCC") == "CCO"


def test_molecule_decode_reports_invalid_strings_as_none():
    codec = MoleculeCodec().fit(["CCO", "c1ccccc1"])
    lookup = {t: i + 1 for i, t in enumerate(codec.chars_)}
    row = [0] + [lookup[t] for t in ["c", "1", "c", "c"]] + [0]          # an unclosed aromatic ring
    b = {"tokens": torch.tensor([row]), "length": torch.tensor([len(row)])}
    assert codec.decode(b) == [None]


def test_selfies_codec_decodes_every_string_to_a_molecule():
    codec = MoleculeCodec(representation="selfies").fit(MOLS)
    V = codec.spec().extra["vocab_size"]
    g = torch.Generator().manual_seed(0)
    rows = torch.randint(1, V, (50, 12), generator=g)
    rows[:, 0] = 0
    out = codec.decode({"tokens": rows, "length": torch.full((50,), 12)})
    assert sum(s is None for s in out) <= 2 and all(s is None or canonical(s) == s for s in out)


@pytest.mark.parametrize("representation", ["smiles", "selfies"])
def test_molecule_model_samples_canonical_smiles_or_none(representation):
    m = gm.Model("gpt", modality="molecule", representation=representation, **TINY)
    m.fit(MOLS, max_steps=80, verbose=False)
    assert m.likelihood == "bound"
    out = m.sample(20, seed=0)
    assert len(out) == 20 and all(s is None or canonical(s) == s for s in out)
    assert m.codec_.spec().extra["nonempty"] and m.module_.nonempty      # an empty string is no molecule
    assert all(s != "" for s in m.sample(200, seed=1, temperature=3.0))    # even when sampling wildly
    assert np.all(np.isfinite(m.log_prob(["CCO", "OCC"])))
    assert m.log_prob(["CCO"])[0] == pytest.approx(m.log_prob(["OCC"])[0])      # the same molecule


def _rows(codec, token_lists):
    lookup = {t: i + 1 for i, t in enumerate(codec.chars_)}
    width = max(map(len, token_lists)) + 2
    rows = [[0] + [lookup[t] for t in toks] + [0] * (width - 1 - len(toks)) for toks in token_lists]
    return {"tokens": torch.tensor(rows), "length": torch.tensor([len(t) + 2 for t in token_lists])}


def test_canonical_only_rejects_every_string_that_is_not_its_molecules_canonical_string():
    from genmodels.core import REJECTED
    codec = MoleculeCodec().fit(["CCO", "OCC(C)C", "c1ccccc1"])
    b = _rows(codec, [list("CCO"), list("OCC"), ["c", "1", "c", "c"]])   # canonical, another SMILES of CCO, invalid
    assert codec.decode(b) == ["CCO", "CCO", None]
    assert codec.decode(b, canonical_only=True) == ["CCO", REJECTED, REJECTED]
    sf = MoleculeCodec(representation="selfies").fit(["CCO", "FF", "CCF"])
    # [F][F][C]: F's valence is full after F-F, so SELFIES ignores [C] and the string decodes to FF, whose
    # own SELFIES is [F][F]: a slip that plain SELFIES decoding hides
    b = _rows(sf, [["[C]", "[C]", "[O]"], ["[O]", "[C]", "[C]"], ["[F]", "[F]", "[C]"], ["[F]", "[F]"]])
    assert sf.decode(b) == ["CCO", "CCO", "FF", "FF"]
    assert sf.decode(b, canonical_only=True) == ["CCO", REJECTED, REJECTED, "FF"]
    with pytest.raises(ConfigError, match="canonical_only must be True or False"):
        codec.decode(b, canonical_only="yes")


def test_canonical_only_sampling_keeps_n_canonical_molecules_in_the_models_proportions():
    m = gm.Model("ngram", modality="molecule", order=3, seed=0).fit(MOLS, verbose=False)
    plain = m.sample(3000, seed=0)
    assert m.sample_stats_ == {"drawn": 3000, "kept": 3000}
    out = m.sample(3000, seed=0, canonical_only=True)
    drawn = m.sample_stats_["drawn"]
    assert len(out) == 3000 and drawn > 3000 and m.sample_stats_["kept"] == 3000
    strings_ok = [s for s in plain if s is not None]
    assert all(s is not None for s in out)
    assert out == m.sample(3000, seed=0, canonical_only=True)                 # seeded
    # the kept share is the plain sampler's share of canonical strings (within sampling noise)
    canonical_share = 3000 / drawn
    assert 0 < canonical_share < len(strings_ok) / len(plain)
    # rejection keeps the model's probabilities: P(kept sample = m) = p(m) / P(accept), so a molecule's count
    # is about drawn * p(m) (binomial-ish: within 4 standard deviations)
    top = ["CC", "CCO", "CCCl", "CCCCl", "CCC", "CCCO", "CC(=O)O"]
    for mol, lp in zip(top, m.log_prob(top)):
        expected = drawn * math.exp(lp)
        assert expected > 80 and abs(out.count(mol) - expected) < 4 * math.sqrt(expected), mol


def test_canonical_only_errors_name_the_problem(monkeypatch, tmp_path, capsys):
    from genmodels.core import REJECTED
    m = gm.Model("ngram", modality="molecule", order=3, seed=0).fit(MOLS, verbose=False)
    monkeypatch.setattr(m.codec_, "decode", lambda batch, generator=None, canonical_only=False:
                        [REJECTED] * batch["tokens"].shape[0])
    with pytest.raises(DataError, match="only 0 of 1000 drawn examples passed.*train it longer"):
        m.sample(5, canonical_only=True)                              # 50 x max(n, 20) draws at most
    with pytest.raises(DataError, match="only 0 of 2000 drawn examples"):
        m.sample(40, canonical_only=True)
    monkeypatch.undo()
    drawn = []
    monkeypatch.setattr(m.module_, "sample", lambda *a, **k: drawn.append(1))
    with pytest.raises(ConfigError, match="canonical_only must be True or False"):
        m.sample(5, canonical_only="yes")
    assert not drawn                                                  # checked before drawing anything
    monkeypatch.undo()
    with pytest.raises(ConfigError, match="canonical_only"):           # listed among the options it takes
        m.sample(5, canonical=True)
    m.save(tmp_path / "m")
    assert main(["sample", str(tmp_path / "m"), "-n", "5", "--seed", "0", "--set", "canonical_only=true"]) == 0
    captured = capsys.readouterr()
    assert len(captured.out.splitlines()) == 5 and "<invalid>" not in captured.out and "drawn" in captured.err
    assert main(["sample", str(tmp_path / "m"), "-n", "5", "--set", "canonical_only=7"]) == 2
    assert "canonical_only must be True or False" in capsys.readouterr().err


def test_molecule_augmentation_adds_random_smiles_windows():
    plain = MoleculeCodec().fit(MOLS)
    aug = MoleculeCodec(augment=2).fit(MOLS)
    assert aug.encode_train(MOLS)["tokens"].shape[0] > plain.encode_train(MOLS)["tokens"].shape[0]
    with pytest.raises(ConfigError, match="smiles"):
        MoleculeCodec(representation="selfies", augment=1)


# ---------------------------------------------------------------- CLI
def test_cli_fits_a_text_file_samples_from_a_prompt_and_scores(tmp_path, capsys):
    path = tmp_path / "corpus.txt"
    path.write_text(TEXT, encoding="utf-8")
    out = tmp_path / "m"
    assert main(["fit", str(path), "--modality", "text", "--model", "gpt", "--out", str(out), "--max-steps", "20",
                 "--quiet", "--set", "n_layer=1", "--set", "n_embd=16", "--set", "n_head=2"]) == 0
    assert main(["sample", str(out), "-n", "2", "--prompt", "the", "--set", "max_length=10"]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("the") and printed.count("-" * 40) == 2
    assert main(["sample", str(out), "-n", "2", "--prompt", "ZZ"]) == 2
    assert "never seen" in capsys.readouterr().err
    assert main(["sample", str(out), "-n", "2", "--set", "top_p=0"]) == 2
    assert main(["score", str(out), str(path), "-o", str(tmp_path / "s.csv")]) == 0
    assert "bits/char" in capsys.readouterr().err


def test_molecule_prompts_and_evaluation(tmp_path, capsys):
    m = gm.Model("gpt", modality="molecule", representation="selfies", **TINY).fit(MOLS, max_steps=30, verbose=False)
    out = m.sample(4, prompt="[C][C]", seed=0)
    assert len(out) == 4
    with pytest.raises(DataError, match="SELFIES"):
        m.sample(2, prompt="C1CC(")
    res = gm.evaluate(m, MOLS[:8], train=MOLS, n_samples=20)
    assert {"valid", "unique@1000", "novelty", "FCD/Test", "log_likelihood_bound"} <= set(res)
    assert 0 <= res["valid"] <= 1


def test_cli_fits_a_file_of_smiles(tmp_path, capsys):
    path = tmp_path / "mols.smi"
    path.write_text("\n".join(MOLS + ["not_a_smiles"]) + "\n")
    out = tmp_path / "m"
    with pytest.warns(UserWarning, match="skipped 1"):
        assert main(["fit", str(path), "--modality", "molecule", "--model", "ngram", "--out", str(out), "--quiet",
                     "--set", "order=3"]) == 0
    assert main(["sample", str(out), "-n", "5", "--seed", "0", "-o", str(tmp_path / "s.txt")]) == 0
    lines = (tmp_path / "s.txt").read_text().splitlines()
    assert len(lines) == 5 and all(ln == "<invalid>" or canonical(ln) == ln for ln in lines)
