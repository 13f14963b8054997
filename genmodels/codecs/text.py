"""Text <-> token windows: character-level or byte-level BPE (Hugging Face ``tokenizers``).

Raw data is one text (a ``str``, or the path of a UTF-8 text file: one long document such as a
corpus) or a list of strings (one document each: lines, reviews, molecules). Every document is
tokenised and framed by the separator token, id 0, as ``[0, t1, ..., tN, 0]``: the leading 0 is the
start (BOS) and the trailing 0 the end (EOS), which the model learns to predict, so log_prob is the
probability of the whole string, its end included.

Windows (the factorisation every sequence family uses; see ``genmodels.nets.sequence``). A
document's framed stream is cut into windows of ``block_size + 1`` positions that overlap by one
position: window w holds positions [w T, w T + T] (T = block_size), and each position after the
first is predicted from the earlier positions of its window. The batch holds one window per row::

    batch["tokens"]  int64 (W, T + 1)  the window's ids; 0 past its end (padding)
    batch["length"]  int64 (W,)        valid positions of the row (position 0 included)
    batch["doc"]     int64 (W,)        the document the window belongs to (Model sums its windows)
    batch["log_w"]   float64 (W,)      0 (bookkeeping)

``Model.log_prob`` sums the windows of each document, so it returns nats per document. Tokenizers:

- ``"char"`` (default): one token per Unicode character seen in training. The log-probability of
  the ids is exactly that of the string. A character never seen in training cannot be scored or
  prompted: a DataError names it (fit on text that has it, or remove it).
- ``"bpe"``: byte-level BPE trained on the data (``vocab_size`` tokens); any string can be encoded.
  The string is scored through its one canonical tokenisation, whose probability is a lower bound on
  the string's (other tokenisations have mass too): the likelihood is labelled a bound.

Bits per character (``genmodels.metrics.text``) divide by characters, so they compare across tokenizers.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from ..core import Batch, Spec
from ..errors import ConfigError, DataError

TOKENIZERS = ("char", "bpe")
SEP = 0                         # BOS and EOS
CORPUS_BLOCK = 128              # default window of one long text
MAX_DOC_BLOCK = 512             # default window of a list of documents: the longest, up to this


def _is_text_file(raw: Any) -> bool:
    if not isinstance(raw, (str, os.PathLike)) or len(str(raw)) > 1024 or "\n" in str(raw):
        return False
    try:
        return Path(raw).is_file()
    except OSError:                     # a text with a component longer than the file system allows
        return False


def read_documents(raw: Any) -> tuple[list[str], bool]:
    """(documents, is_corpus): a text file or one string is one document; a list gives one each."""
    if _is_text_file(raw):
        try:
            return [Path(raw).read_text(encoding="utf-8")], True
        except UnicodeDecodeError as e:
            raise DataError(f"{raw} is not UTF-8 text ({e}); convert it to UTF-8 first") from None
    if isinstance(raw, str):
        return [raw], True
    if isinstance(raw, (list, tuple)) or (isinstance(raw, np.ndarray) and raw.ndim == 1) or \
            type(raw).__name__ == "Series":
        docs = list(raw)
        bad = [i for i, d in enumerate(docs) if not isinstance(d, str)]
        if bad:
            raise DataError(f"text data must be strings; entry {bad[0]} is a {type(docs[bad[0]]).__name__} "
                            f"({len(bad)} such entries); convert or drop them")
        return docs, False
    raise DataError(f"text data is a string, a path to a UTF-8 text file or a list of strings, not a "
                    f"{type(raw).__name__}")


def _positions(lengths: np.ndarray, T: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For framed streams of the given lengths laid end to end: each window's document, start offset in
    the concatenation, and number of valid positions."""
    per_doc = np.maximum(1, -(-(lengths - 1) // T))                      # ceil((len - 1) / T)
    doc = np.repeat(np.arange(len(lengths)), per_doc)
    first = np.concatenate([[0], np.cumsum(per_doc)[:-1]])
    w = np.arange(len(doc)) - np.repeat(first, per_doc)                  # window index within its doc
    base = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    start = base[doc] + w * T
    valid = np.minimum(T + 1, lengths[doc] - w * T)
    return doc, start, valid


class TextCodec:
    """Strings <-> token windows; learns the vocabulary (and the BPE merges) from the training text."""

    modality: ClassVar[str] = "text"
    rows_per_pass: ClassVar[int] = 512      # windows per forward pass when scoring or sampling (memory)

    def __init__(self, tokenizer: str = "char", vocab_size: int = 1000, block_size: int | None = None):
        if tokenizer not in TOKENIZERS:
            raise ConfigError(f"tokenizer must be one of {TOKENIZERS}, got {tokenizer!r}")
        for name, v, low in (("vocab_size", vocab_size, 2), ("block_size", block_size, 1)):
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < low):
                raise ConfigError(f"{name} must be an integer >= {low}, got {v!r}")
        self.tokenizer = tokenizer
        self.vocab_size = int(vocab_size)
        self.block_size = None if block_size is None else int(block_size)

    # ---- recognising and reading raw data
    @staticmethod
    def accepts(raw: Any) -> bool:
        # a string is a text itself, or "" (an empty one, refused in fit with its own error); a file's path
        # or a one-word string needs modality="text" (likely a path)
        if isinstance(raw, str):
            return raw == "" or (not _is_text_file(raw) and (len(raw) > 200 or any(c.isspace() for c in raw)))
        return isinstance(raw, (list, tuple)) and len(raw) > 0 and all(isinstance(d, str) for d in raw[:100])

    @staticmethod
    def coerce(raw: Any) -> list[str]:
        return read_documents(raw)[0]

    def _documents(self, raw: Any) -> list[str]:
        return raw if isinstance(raw, list) and all(isinstance(d, str) for d in raw) else self.coerce(raw)

    # ---- fitting
    def fit(self, raw: Any) -> "TextCodec":
        docs = read_documents(raw)[0] if not isinstance(raw, list) else self._documents(raw)
        corpus = len(docs) == 1            # one text (Model.fit hands it over as a one-element list)
        if not docs or not any(docs):
            raise DataError("the text is empty: there is nothing to learn from; give a non-empty text or list of strings")
        if self.tokenizer == "char":
            chars = sorted(set("".join(docs)))
            self.chars_ = chars
            self.n_tokens_ = len(chars) + 1
        else:
            self._train_bpe(docs)
        if self.block_size is not None:
            self.block_ = self.block_size
        elif corpus:
            self.block_ = CORPUS_BLOCK
        else:
            longest = max(len(ids) for ids in self._ids(docs)) + 1        # the EOS
            self.block_ = int(min(MAX_DOC_BLOCK, max(8, longest)))
        return self

    def _train_bpe(self, docs: list[str]) -> None:
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=self.vocab_size, show_progress=False,
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
        tok.train_from_iterator(docs, trainer=trainer)
        self._bpe = tok
        self.n_tokens_ = tok.get_vocab_size() + 1

    def _check_fitted(self) -> None:
        if not hasattr(self, "n_tokens_"):
            raise ConfigError("the text codec is not fitted; call fit(text) first")

    def spec(self) -> Spec:
        self._check_fitted()
        return Spec(extra={"vocab_size": int(self.n_tokens_), "block_size": int(self.block_)})

    @property
    def bound_reasons(self) -> list[str]:
        if self.tokenizer == "bpe":
            return ["BPE: the probability of the string's canonical tokenisation is a lower bound on the "
                    "string's probability"]
        return []

    # ---- tokens
    def _ids(self, docs: list[str]) -> list[np.ndarray]:
        """Token ids (1..V-1) of each document, without the separators."""
        self._check_fitted()
        if self.tokenizer == "bpe":
            return [np.asarray(e.ids, dtype=np.int64) + 1 for e in self._bpe.encode_batch(docs)]
        table = np.array([ord(c) for c in self.chars_], dtype=np.int64)       # sorted code points
        out = []
        for d in docs:
            cp = np.frombuffer(d.encode("utf-32-le"), dtype=np.uint32).astype(np.int64)
            pos = np.searchsorted(table, cp)
            ok = (pos < len(table)) & (table[np.minimum(pos, len(table) - 1)] == cp)
            if not ok.all():
                unseen = sorted({chr(c) for c in cp[~ok]})
                raise DataError(f"characters never seen in training: {''.join(unseen[:20])!r} ({len(unseen)} "
                                f"distinct); the character-level model cannot score or continue them: remove them, "
                                f"or fit on text that has them (or use tokenizer='bpe', which encodes any text)")
            out.append(pos + 1)
        return out

    def _frame(self, docs: list[str]) -> Batch:
        return self._frame_ids(self._ids(docs))

    def _frame_ids(self, ids: list[np.ndarray]) -> Batch:
        """Windows of the documents with these token ids (see the module docstring)."""
        lengths = np.array([len(a) + 2 for a in ids], dtype=np.int64)
        stream = np.zeros(int(lengths.sum()), dtype=np.int64)                # separators where not filled
        base = np.concatenate([[0], np.cumsum(lengths)[:-1]])
        for b, a in zip(base, ids):
            stream[b + 1: b + 1 + len(a)] = a
        T = self.block_
        doc, start, valid = _positions(lengths, T)
        idx = start[:, None] + np.arange(T + 1)[None, :]
        inside = np.arange(T + 1)[None, :] < valid[:, None]
        tokens = np.where(inside, stream[np.minimum(idx, len(stream) - 1)], 0)
        n = len(doc)
        return {"tokens": torch.from_numpy(tokens), "length": torch.from_numpy(valid.astype(np.int64)),
                "doc": torch.from_numpy(doc.astype(np.int64)), "log_w": torch.zeros(n, dtype=torch.float64)}

    def check_columns(self, raw: Any) -> list[str]:
        self._check_fitted()
        return self._documents(raw)

    def encode(self, raw: Any) -> Batch:
        return self._frame(self.check_columns(raw))

    def n_characters(self, raw: Any) -> np.ndarray:
        """Characters of each document (the unit of bits per character)."""
        return np.array([len(d) for d in self.check_columns(raw)], dtype=np.int64)

    def dequantize(self, batch: Batch, generator: torch.Generator | None = None) -> Batch:
        return batch

    def log_det(self, batch: Batch) -> torch.Tensor:
        return torch.zeros(batch["tokens"].shape[0], dtype=torch.float64, device=batch["tokens"].device)

    def _text(self, ids: np.ndarray) -> str:
        if self.tokenizer == "bpe":
            return self._bpe.decode([int(i) - 1 for i in ids], skip_special_tokens=False)
        return "".join(self.chars_[int(i) - 1] for i in ids)

    def decode(self, batch: Batch, generator: torch.Generator | None = None) -> list[str]:
        """Each row's text: the ids after position 0 up to the first separator (EOS) or the row's end."""
        tokens, length = batch["tokens"].cpu().numpy(), batch["length"].cpu().numpy()
        out = []
        for row, n in zip(tokens, length):
            ids = row[1:n]
            stop = np.flatnonzero(ids == SEP)
            out.append(self._text(ids[: stop[0]] if len(stop) else ids))
        return out

    # ---- sampling options and conditions
    def sample_options(self, options: dict[str, Any]) -> dict[str, Any]:
        """The user's sampling options with ``prompt`` (a string) encoded as ids [0, t1, ...]."""
        out = dict(options)
        prompt = out.get("prompt")
        if prompt is not None:
            if not isinstance(prompt, str):
                raise ConfigError(f"prompt must be a string, got {type(prompt).__name__}")
            ids = self._ids([prompt])[0] if prompt else np.zeros(0, dtype=np.int64)
            out["prompt"] = torch.from_numpy(np.concatenate([[SEP], ids]).astype(np.int64))
        return out

    def encode_condition(self, condition: dict[str, Any]) -> Batch:
        raise ConfigError("sequence models do not sample given a condition; continue a text with "
                          "sample(n, prompt='...') instead")

    def apply_condition(self, out: Any, condition: dict[str, Any]) -> Any:
        return out

    # ---- persistence
    def state(self) -> dict:
        self._check_fitted()
        return {"tokenizer": self.tokenizer, "vocab_size": self.vocab_size, "block_size": self.block_size,
                "block": self.block_, "n_tokens": self.n_tokens_, "chars": getattr(self, "chars_", None),
                "bpe": self._bpe.to_str() if self.tokenizer == "bpe" else None}

    @classmethod
    def from_state(cls, state: dict) -> "TextCodec":
        codec = cls(tokenizer=state["tokenizer"], vocab_size=state["vocab_size"], block_size=state["block_size"])
        codec._restore(state)
        return codec

    def _restore(self, state: dict) -> None:
        self.block_ = int(state["block"])
        self.n_tokens_ = int(state["n_tokens"])
        if state.get("chars") is not None:
            self.chars_ = list(state["chars"])
        if state.get("bpe"):
            from tokenizers import Tokenizer
            self._bpe = Tokenizer.from_str(state["bpe"])

