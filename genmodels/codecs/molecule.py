"""Molecules as strings: canonical SMILES (atom-level tokens) or SELFIES, in token windows.

Raw data is a list of SMILES strings (or the path of a file with one SMILES per line, its first
whitespace-separated field). Training molecules are canonicalised with RDKit (isomeric canonical
SMILES); a string RDKit cannot parse is skipped and counted (``skipped_``, and one warning with the
count and the first few), never a crash. The representation:

- ``"smiles"``: canonical SMILES cut into atom-level tokens by the regular expression of Schwaller et
  al. (2019): bracket atoms, two-letter halogens, ring-closure digits and %nn, bonds, branches.
- ``"selfies"``: the canonical SMILES translated to SELFIES (Krenn et al. 2020; the ``selfies``
  package), one token per SELFIES symbol. Every SELFIES string decodes to a molecule.

Windows, separators and the batch are those of the text codec (``codecs/text.py``); the block
length defaults to the longest training molecule in tokens plus its end token.

``augment=k`` (SMILES only) adds k random SMILES of each training molecule to the training windows
(Bjerrum 2017; Arús-Pous et al. 2019); scoring always reads the canonical SMILES.

Decoding. A sampled string becomes the molecule's canonical SMILES, or ``None`` when RDKit cannot
parse it (for SELFIES: when the decoded molecule is empty). Invalid samples are reported as ``None``,
never repaired or dropped, so validity is the share of non-None samples. The opt-in sampling option
``canonical_only=True`` is rejection sampling instead: only strings that are the canonical string of
their molecule are kept (``MoleculeCodec.decode``), and ``Model.sample_stats_`` counts the draws.

Likelihood. log_prob scores the canonical string of each molecule, so it is exact for that string
and a lower bound for the molecule (its other SMILES have mass too): labelled a bound.
"""
from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from ..core import REJECTED, Batch, Spec
from ..errors import ConfigError, DataError
from ..metrics.molecule import canonical
from .text import TextCodec

REPRESENTATIONS = ("smiles", "selfies")
SMILES_TOKENS = re.compile(r"(\[[^\]]+]|Br?|Cl?|N|O|S|P|F|I|b|c|n|o|s|p|\(|\)|\.|=|#|-|\+|\\|/|:|~|@|\?|>|\*|\$|%[0-9]{2}|[0-9])")


def _check_canonical_only(value: Any) -> None:
    if not isinstance(value, bool):
        raise ConfigError(f"canonical_only must be True or False, got {value!r}")


def random_smiles(smiles: str, k: int, rng: np.random.Generator) -> list[str]:
    """``k`` random (non-canonical) SMILES of one molecule, from RDKit's random atom orders."""
    from rdkit import Chem
    return list(Chem.MolToRandomSmilesVect(Chem.MolFromSmiles(smiles), k, randomSeed=int(rng.integers(2**31 - 1))))


class MoleculeCodec(TextCodec):
    """SMILES strings <-> token windows of canonical SMILES or SELFIES."""

    modality: ClassVar[str] = "molecule"
    decode_options: ClassVar[tuple[str, ...]] = ("canonical_only",)   # rejection sampling, see decode

    def __init__(self, representation: str = "smiles", augment: int = 0, block_size: int | None = None):
        if representation not in REPRESENTATIONS:
            raise ConfigError(f"representation must be one of {REPRESENTATIONS}, got {representation!r}")
        if isinstance(augment, bool) or not isinstance(augment, (int, np.integer)) or augment < 0:
            raise ConfigError(f"augment must be an integer >= 0 (random SMILES per molecule), got {augment!r}")
        if augment and representation != "smiles":
            raise ConfigError("augment (random SMILES) works with representation='smiles' only")
        super().__init__(tokenizer="char", block_size=block_size)
        self.representation = representation
        self.augment = int(augment)

    # ---- reading
    @staticmethod
    def accepts(raw: Any) -> bool:
        return False                                   # SMILES are strings too: ask with modality="molecule"

    @staticmethod
    def coerce(raw: Any) -> list[str]:
        if isinstance(raw, (str, Path)) and Path(raw).is_file():
            lines = Path(raw).read_text(encoding="utf-8").splitlines()
            return [ln.split()[0] for ln in lines if ln.strip()]
        if isinstance(raw, str):
            return [raw]
        if isinstance(raw, (list, tuple)) or (isinstance(raw, np.ndarray) and raw.ndim == 1) or \
                type(raw).__name__ == "Series":
            return [s if isinstance(s, str) else None for s in raw]
        raise DataError(f"molecules are a list of SMILES strings or a file of one SMILES per line, not a "
                        f"{type(raw).__name__}")

    def _documents(self, raw: Any) -> list[str]:
        """Canonical SMILES of the molecules; DataError for strings RDKit cannot parse."""
        smiles = self.coerce(raw)
        canon = [canonical(s) for s in smiles]
        bad = [i for i, c in enumerate(canon) if c is None]
        if bad:
            raise DataError(f"{len(bad)} of {len(smiles)} SMILES cannot be parsed by RDKit (first: entry {bad[0]}, "
                            f"{smiles[bad[0]]!r}); remove or fix them before scoring")
        return canon

    # ---- fitting
    def fit(self, raw: Any) -> "MoleculeCodec":
        smiles = self.coerce(raw)
        canon = [canonical(s) for s in smiles]
        bad = [s for s, c in zip(smiles, canon) if c is None]
        self.skipped_ = len(bad)
        if bad:
            warnings.warn(f"skipped {len(bad)} of {len(smiles)} training SMILES that RDKit cannot parse "
                          f"(e.g. {bad[:3]})", stacklevel=3)
        docs = [c for c in canon if c is not None]
        if not docs:
            raise DataError(f"none of the {len(smiles)} training SMILES could be parsed by RDKit; give valid SMILES")
        strings = [self._string(d) for d in docs]
        # kept for the encode_train that follows fit, which takes it (SELFIES encoding of 300k molecules
        # takes minutes; strings, not token lists: those would take ten times the memory)
        self._fit_strings = (docs, strings)
        if self.augment:
            rng = np.random.default_rng(0)
            strings = strings + [r for d in docs[:2000] for r in random_smiles(d, self.augment, rng)]
        symbols, longest = set(), 0
        for string in strings:
            tokens = self._split(string)
            symbols.update(tokens)
            longest = max(longest, len(tokens))
        self.chars_ = sorted(symbols)               # the vocabulary: one entry per token, ids 1..V-1
        self.n_tokens_ = len(symbols) + 1
        self.block_ = self.block_size or longest + 1
        return self

    def _string(self, smiles: str) -> str:
        if self.representation == "selfies":
            import selfies
            return selfies.encoder(smiles)
        return smiles

    def _split(self, s: str) -> list[str]:
        if self.representation == "selfies":
            import selfies
            return list(selfies.split_selfies(s))
        tokens = SMILES_TOKENS.findall(s)
        if "".join(tokens) != s:
            raise DataError(f"the SMILES {s!r} holds characters outside the SMILES token set")
        return tokens

    def spec(self) -> Spec:
        """The text codec's spec plus ``nonempty``: an empty string is no molecule, so sequence models give
        the end token no mass right after the start (``SequenceModule``): no sample is ever empty."""
        spec = super().spec()
        return Spec(extra={**spec.extra, "nonempty": True})

    @property
    def bound_reasons(self) -> list[str]:
        return ["a molecule is scored by its canonical string; its other SMILES/SELFIES strings have mass too, "
                "so the molecule's log-probability is at least this"]

    def _ids(self, docs: list[str], strings: list[str] | None = None) -> list[np.ndarray]:
        """Token ids of each canonical SMILES in ``docs`` (``strings``: their representation, if known)."""
        self._check_fitted()
        lookup = {t: i + 1 for i, t in enumerate(self.chars_)}
        out = []
        for i, d in enumerate(docs):
            tokens = self._split(strings[i] if strings is not None else self._string(d))
            unknown = [t for t in tokens if t not in lookup]
            if unknown:
                raise DataError(f"the molecule {d!r} has tokens never seen in training: {sorted(set(unknown))}; "
                                f"the model cannot score or continue them")
            out.append(np.array([lookup[t] for t in tokens], dtype=np.int64))
        return out

    def encode_train(self, raw: Any) -> Batch:
        """The training windows: each valid molecule's canonical string, plus ``augment`` random SMILES
        of it (tokens of a random SMILES unseen in ``fit`` drop that one string). Right after ``fit`` on
        the same data, the strings ``fit`` made are used (and released) instead of being made again."""
        docs, strings = self.__dict__.pop("_fit_strings", (None, None))    # fit's work, used once
        if docs is None:
            docs = [c for c in map(canonical, self.coerce(raw)) if c]
        ids = self._ids(docs, strings)
        if self.augment:
            lookup = {t: i + 1 for i, t in enumerate(self.chars_)}
            rng = np.random.default_rng(0)
            for d in docs:
                for r in random_smiles(d, self.augment, rng):
                    tokens = self._split(r)
                    if all(t in lookup for t in tokens):
                        ids.append(np.array([lookup[t] for t in tokens], dtype=np.int64))
        return self._frame_ids(ids)

    def _text(self, ids: np.ndarray) -> str:
        return "".join(self.chars_[int(i) - 1] for i in ids)

    def decode(self, batch: Batch, generator: torch.Generator | None = None,
               canonical_only: bool = False) -> list[str | None]:
        """Canonical SMILES of each sampled string, None where it is not a valid molecule.

        ``canonical_only`` (a sampling option: ``m.sample(n, canonical_only=True)``): a string that is not
        the canonical SMILES/SELFIES of the molecule it decodes to (every training string is) becomes
        ``REJECTED`` and ``Model.sample`` draws another in its place, so the samples come from the model
        conditioned on canonical strings. It removes the SELFIES model's slips that still decode to a
        molecule: a branch-length symbol that cuts a branch short, a ring bond the valence rules turn
        into another (see BENCHMARKS.md, "Molecules on MOSES"). Invalid strings are rejected too, so every
        sample is valid by construction: read validity from plain sampling, and the acceptance rate
        from ``Model.sample_stats_``. ``log_prob`` stays a lower bound for this sampler's molecules: its
        probabilities are the model's divided by the acceptance probability."""
        _check_canonical_only(canonical_only)
        strings = super().decode(batch, generator)
        out = [self._molecule(s) for s in strings]
        if canonical_only:
            out = [o if o is not None and self._canonical_string(o) == s else REJECTED for s, o in zip(strings, out)]
        return out

    def _molecule(self, string: str) -> str | None:
        if self.representation != "selfies":
            return canonical(string)
        import selfies
        try:
            return canonical(selfies.decoder(string))
        except Exception:                             # selfies raises its own DecoderError on malformed input
            return None

    def _canonical_string(self, smiles: str) -> str | None:
        try:
            return self._string(smiles)
        except Exception:                             # selfies raises its own EncoderError (e.g. odd valences)
            return None

    def sample_options(self, options: dict[str, Any]) -> dict[str, Any]:
        """A prompt is a SMILES prefix as written (not canonicalised: a prefix is rarely a molecule), or for
        SELFIES models SELFIES symbols (or a complete SMILES)."""
        out = dict(options)
        _check_canonical_only(out.get("canonical_only", False))      # before drawing, not after
        prompt = out.get("prompt")
        if prompt is not None:
            if not isinstance(prompt, str):
                raise ConfigError(f"prompt must be a string, got {type(prompt).__name__}")
            lookup = {t: i + 1 for i, t in enumerate(self.chars_)}
            tokens = self._split(self._prompt_string(prompt))
            unknown = [t for t in tokens if t not in lookup]
            if unknown:
                raise DataError(f"the prompt has tokens never seen in training: {sorted(set(unknown))}")
            out["prompt"] = torch.tensor([0] + [lookup[t] for t in tokens], dtype=torch.long)
        return out

    def _prompt_string(self, prompt: str) -> str:
        """A prompt in the model's representation: SMILES as written; for SELFIES, SELFIES symbols as written
        ("[C][C]") or a complete SMILES translated to SELFIES."""
        if self.representation != "selfies" or not prompt or prompt.startswith("["):
            return prompt
        import selfies
        try:
            return selfies.encoder(prompt)
        except Exception:                              # selfies raises its own EncoderError
            raise DataError(f"the prompt {prompt!r} is not a SMILES that SELFIES can encode; give a complete "
                            "SMILES or SELFIES symbols such as '[C][C][O]'") from None

    # ---- persistence
    def state(self) -> dict:
        return {**super().state(), "representation": self.representation, "augment": self.augment,
                "skipped": self.skipped_}

    @classmethod
    def from_state(cls, state: dict) -> "MoleculeCodec":
        codec = cls(representation=state["representation"], augment=state["augment"], block_size=state["block_size"])
        codec._restore(state)
        codec.skipped_ = int(state.get("skipped", 0))
        return codec
