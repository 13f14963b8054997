"""The one abstraction: a GenerativeModule over tensors, and a Codec between raw data and tensors.

A *module* is a ``torch.nn.Module`` that knows nothing of files, pandas or the CLI. It sees a
``Batch``: a dict of tensors whose layout the codec describes with a ``Spec``. For tables::

    batch = {"x": FloatTensor (B, D),    # real-valued slots (continuous, dequantized integers, ...)
             "c": LongTensor  (B, K)}    # discrete slots, c[:, k] in [0, spec.cardinalities[k])

Either part may have width 0. A module is built as ``Family(spec, **hyperparameters)`` and keeps
every constructor argument it needs to be rebuilt in ``self.config`` (JSON-able), so a checkpoint
is ``config`` + ``state_dict``. Log-densities are in nats per example *in tensor units*; the codec's
``log_det`` turns them into the raw data's units (see design.md, section 3).

This file imports nothing else of the package.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar, Literal, Protocol, runtime_checkable

import torch
from torch import Tensor, nn

Batch = dict[str, Tensor]
Likelihood = Literal["exact", "bound", "none"]


@dataclass(frozen=True)
class Spec:
    """What a codec tells a module about the tensors it will see.

    n_continuous:  width D of ``batch["x"]``.
    cardinalities: number of values of each discrete slot, the width K of ``batch["c"]``.
    event_shape:   shape of one example for array modalities (images); () for tables.
    """

    n_continuous: int = 0
    cardinalities: tuple[int, ...] = ()
    event_shape: tuple[int, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict) -> "Spec":
        return cls(n_continuous=int(d["n_continuous"]), cardinalities=tuple(int(k) for k in d["cardinalities"]),
                   event_shape=tuple(d.get("event_shape", ())), extra=dict(d.get("extra", {})))


class GenerativeModule(nn.Module):
    """Base class of every family. Subclasses set ``likelihood`` and implement the three methods.

    Gradient-trained families implement ``loss``; the one loop in train.py minimises it.
    Closed-form families (GMM by EM, KDE) set ``closed_form = True`` and implement
    ``fit_closed_form`` instead; ``loss`` may then raise.
    """

    likelihood: ClassVar[Likelihood] = "exact"
    closed_form: ClassVar[bool] = False
    modalities: ClassVar[tuple[str, ...]] = ("tabular",)

    def __init__(self, spec: Spec, **config: Any):
        super().__init__()
        self.spec = spec
        self.config: dict[str, Any] = dict(config)   # everything needed to rebuild, JSON-able

    def loss(self, batch: Batch) -> Tensor:          # scalar to minimise
        raise NotImplementedError(f"{type(self).__name__} is fitted in closed form; it has no loss")

    def log_prob(self, batch: Batch) -> Tensor:      # (B,) nats, tensor units
        raise NotImplementedError

    def sample(self, n: int, *, condition: Batch | None = None,
               generator: torch.Generator | None = None) -> Batch:
        raise NotImplementedError

    def fit_closed_form(self, train: Batch, val: Batch | None = None, *,
                        generator: torch.Generator | None = None) -> dict[str, float]:
        raise NotImplementedError(f"{type(self).__name__} is trained by gradient; use train.py")

    @property
    def device(self) -> torch.device:
        for t in list(self.parameters()) + list(self.buffers()):
            return t.device
        return torch.device("cpu")


@runtime_checkable
class Codec(Protocol):
    """Raw data <-> tensors for one modality. Fitted once on training data; JSON-serialisable state."""

    modality: ClassVar[str]
    bound_reasons: list[str]       # why log_prob is a bound in raw units (dequantized integers, ...); [] if exact

    def fit(self, raw: Any) -> "Codec": ...
    def spec(self) -> Spec: ...
    def encode(self, raw: Any) -> Batch: ...                                   # deterministic
    def dequantize(self, batch: Batch, generator: torch.Generator) -> tuple[Batch, Tensor]: ...
    def decode(self, batch: Batch, generator: torch.Generator | None = None) -> Any: ...
    def log_det(self, batch: Batch) -> Tensor: ...                             # (B,) added to module log_prob
    def state(self) -> dict: ...
    @classmethod
    def from_state(cls, state: dict) -> "Codec": ...
