"""The exceptions a user of genmodels can cause, and catch.

Every one is a subclass of :class:`GenmodelsError`; where the standard library has a matching
class (a bad value, a missing attribute) it is a subclass of that too, so code written for
scikit-learn (``except ValueError``) keeps working. Messages name the problem and the fix.
"""
from __future__ import annotations


class GenmodelsError(Exception):
    """Base of every error genmodels raises for a user's mistake."""


class DataError(GenmodelsError, ValueError):
    """The data cannot be used as given: empty, ragged, wrong columns, wrong types, unseen values."""


class ConfigError(GenmodelsError, ValueError):
    """A bad argument: unknown hyper-parameter, impossible value, non-positive n."""


class UnknownModelError(ConfigError):
    """A family, modality or data set name that is not registered."""


class NotFittedError(GenmodelsError, AttributeError):
    """sample/log_prob/save/evaluate called before fit."""


class NoLikelihoodError(GenmodelsError, TypeError):
    """log_prob asked of a family that has no likelihood (``likelihood == "none"``)."""


class CheckpointError(GenmodelsError, OSError):
    """A saved model that cannot be read: missing, corrupt, truncated or from an unknown version."""
