"""Text metrics: bits per character, perplexity per token, memorization and distinct-n.

- bits per character = -sum_docs log2 p(doc) / sum_docs characters(doc). ``p(doc)`` includes the
  document's end, and the characters exclude it: the usual convention for character-level models
  (one end per document is a negligible share of a long text). Dividing by characters, not tokens,
  makes models with different tokenizers comparable.
- perplexity per token = exp(-sum log p / number of predicted tokens), the ends included (each is a
  predicted token); depends on the tokenizer.
- memorization: the share of samples that copy a span of ``span`` (50) or more characters from the
  training text verbatim. Every ``span``-character window of the training text is hashed, sample
  windows are looked up among the sorted hashes, and each hit is confirmed by comparing the strings,
  so hash collisions cannot count.
- distinct-n (Li et al. 2016): distinct word n-grams over all samples / all word n-grams (words split
  on white space); low values mean repetitive samples.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np


def bits_per_char(log_prob: np.ndarray, characters: np.ndarray) -> float:
    """-sum log_prob (nats) / (sum characters * ln 2)."""
    chars = float(np.sum(characters))
    if chars <= 0:
        raise ValueError("no characters to divide by")
    return float(-np.sum(log_prob) / (chars * math.log(2.0)))


def perplexity(log_prob: np.ndarray, tokens: int) -> float:
    """exp(-sum log_prob / tokens), per predicted token."""
    return float(math.exp(-float(np.sum(log_prob)) / tokens))


def _window_hashes(text: str, span: int) -> np.ndarray:
    """Python's hash of every ``span``-character window of ``text`` (int64; consistent within a process)."""
    n = len(text) - span + 1
    if n <= 0:
        return np.zeros(0, dtype=np.int64)
    return np.fromiter((hash(text[i:i + span]) for i in range(n)), dtype=np.int64, count=n)


class SpanIndex:
    """Every ``span``-character window of a training text, for exact copy checks."""

    def __init__(self, train_text: str, span: int = 50):
        self.text, self.span = train_text, span
        h = _window_hashes(train_text, span)
        self.order = np.argsort(h, kind="stable")
        self.hashes = h[self.order]

    def copies(self, sample: str) -> bool:
        """Whether ``sample`` holds a window of ``span`` characters found verbatim in the training text."""
        h = _window_hashes(sample, self.span)
        if not len(h) or not len(self.hashes):
            return False
        pos = np.searchsorted(self.hashes, h)
        for i in np.flatnonzero((pos < len(self.hashes)) & (self.hashes[np.minimum(pos, len(self.hashes) - 1)] == h)):
            j = pos[i]
            while j < len(self.hashes) and self.hashes[j] == h[i]:
                start = int(self.order[j])
                if self.text[start:start + self.span] == sample[i:i + self.span]:
                    return True
                j += 1
        return False


def memorization(samples: list[str], train_text: str | list[str], span: int = 50) -> float:
    """Share of samples that copy ``span``+ consecutive characters of the training text."""
    text = train_text if isinstance(train_text, str) else "\x00".join(train_text)
    index = SpanIndex(text, span)
    return float(np.mean([index.copies(s) for s in samples])) if samples else 0.0


def distinct_n(samples: list[str], n: int) -> float:
    """Distinct word n-grams / word n-grams over all samples (0 when there are none)."""
    grams: list[tuple[str, ...]] = []
    for s in samples:
        w = s.split()
        grams += [tuple(w[i:i + n]) for i in range(len(w) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 0.0


def evaluate_text(model: Any, data: Any, *, train: Any = None, n_samples: int = 20, max_length: int | None = None,
                  seed: int = 0, span: int = 50) -> dict[str, float]:
    """Bits per character and perplexity per token on ``data``; memorization (needs ``train``, the training
    text) and distinct-1/2/3 of ``n_samples`` samples of ``max_length`` tokens (default: the block length)."""
    codec = model.codec_
    docs = codec.check_columns(codec.coerce(data))
    lp = model.log_prob(docs)
    batch = codec.encode(docs)
    tokens = int((batch["length"] - 1).sum())
    key = "bits_per_char" if model.likelihood == "exact" else "bits_per_char_bound"
    out = {key: bits_per_char(lp, codec.n_characters(docs)),
           "perplexity_per_token" + ("" if model.likelihood == "exact" else "_bound"): perplexity(lp, tokens),
           "log_likelihood" + ("" if model.likelihood == "exact" else "_bound"): float(np.mean(lp))}
    samples = model.sample(n_samples, seed=seed, max_length=max_length or codec.spec().extra["block_size"])
    for k in (1, 2, 3):
        out[f"distinct_{k}"] = distinct_n(samples, k)
    out["sample_characters_mean"] = float(np.mean([len(s) for s in samples]))
    if train is not None:
        out[f"memorization_{span}"] = memorization(samples, codec.coerce(train) if not isinstance(train, str) else train, span)
    return out
