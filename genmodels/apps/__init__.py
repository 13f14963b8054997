"""Applications of density estimation built on ``Model``: anomaly detection, imputation,
out-of-distribution checks and augmentation. Each module is one tool; those with a command
register it through ``add_cli(subparsers)`` (listed in ``genmodels.cli.APP_COMMANDS``)."""
from __future__ import annotations

from typing import Any


class KeywordParams:
    """scikit-learn's ``get_params``/``set_params`` for a tool whose ``__init__`` also takes ``**kw``
    (the family's hyper-parameters), which ``BaseEstimator`` cannot list: the named arguments are
    ``_EXPLICIT``, the rest live in the dict attribute named by ``_KW``; ``clone`` rebuilds from both."""

    _EXPLICIT: tuple[str, ...] = ()
    _KW = "kw"

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        return {**{k: getattr(self, k) for k in self._EXPLICIT}, **getattr(self, self._KW)}

    def set_params(self, **params: Any):
        """Set constructor arguments; other names become family hyper-parameters (checked in fit)."""
        for key, value in params.items():
            if key in self._EXPLICIT:
                setattr(self, key, value)
            else:
                getattr(self, self._KW)[key] = value
        return self
