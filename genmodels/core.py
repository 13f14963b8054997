"""The one abstraction: a GenerativeModule over tensors, and a Codec between raw data and tensors.

A *module* is a ``torch.nn.Module`` that knows nothing of files, pandas or the CLI. It sees a
``Batch``: a dict of tensors whose layout the codec describes with a ``Spec``. For tables::

    batch = {"x": FloatTensor (B, D),    # real-valued slots (continuous, dequantized integers, ...)
             "c": LongTensor  (B, K)}    # discrete slots, c[:, k] in [0, spec.cardinalities[k])

Either part may have width 0. A module is built as ``Family(spec, **hyperparameters)`` and keeps
every constructor argument it needs to be rebuilt in ``self.config`` (JSON-able), so a checkpoint
is ``config`` + ``state_dict``. Log-densities are in nats per example *in tensor units*; the codec's
``log_det`` turns them into the raw data's units (see design.md, section 3).

This file imports nothing else of the package but its errors.
"""
from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar, Literal, Protocol, runtime_checkable

import torch
from torch import Tensor, nn

from .errors import ConfigError, DataError

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

    Gradient-trained families implement ``loss``; the one loop in train.py minimises it (two-player
    families add ``configure_optimizers`` and ``training_step``; see train.py).
    Closed-form families (GMM by EM, KDE) set ``closed_form = True`` and implement
    ``fit_closed_form`` instead; ``loss`` may then raise.
    """

    likelihood: ClassVar[Likelihood] = "exact"
    closed_form: ClassVar[bool] = False
    conditional: ClassVar[bool] = False              # sample(condition=...) supported
    modalities: ClassVar[tuple[str, ...]] = ("tabular",)
    train_defaults: ClassVar[dict[str, Any]] = {}   # the family's own TrainConfig defaults (lr, batch_size, ...);
                                                    # what the user passes wins
    exact_on_discrete: ClassVar[bool] = False         # log_prob is the exact mass of the codec's integer values
                                                      # (e.g. PixelCNN on 8-bit pixels): dequantizing the
                                                      # data does not make it a bound

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
        """``n`` examples. ``condition`` (families with ``conditional = True``): a batch of n rows where
        ``x`` is NaN and ``c`` is -1 in the free slots; the returned batch must equal it elsewhere."""
        raise NotImplementedError

    def prepare(self, train: Batch) -> None:
        """Data-dependent set-up before gradient training (e.g. per-column modes); state in buffers."""

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
    """Raw data <-> tensors for one modality. Fitted once on training data; JSON-serialisable state.

    This is what ``Model`` and ``evaluate`` call on a codec; a new modality implements all of it.
    """

    modality: ClassVar[str]
    bound_reasons: list[str]       # why log_prob is a bound in raw units (dequantized integers, ...); [] if exact

    @staticmethod
    def accepts(raw: Any) -> bool: ...                                         # modality inference
    @staticmethod
    def coerce(raw: Any) -> Any: ...                                           # path/array -> raw data
    def fit(self, raw: Any) -> "Codec": ...
    def spec(self) -> Spec: ...
    def check_columns(self, raw: Any) -> Any: ...                              # raw data in training layout
    def encode(self, raw: Any) -> Batch: ...                                   # deterministic
    def dequantize(self, batch: Batch, generator: torch.Generator | None = None) -> Batch: ...
    def log_det(self, batch: Batch) -> Tensor: ...                             # (B,) added to module log_prob
    def decode(self, batch: Batch, generator: torch.Generator | None = None) -> Any: ...
    def encode_condition(self, condition: dict[str, Any]) -> Batch: ...        # one row, NaN / -1 free
    def apply_condition(self, out: Any, condition: dict[str, Any]) -> Any: ...
    def state(self) -> dict: ...
    @classmethod
    def from_state(cls, state: dict) -> "Codec": ...


class _Rejected:
    """The type of ``REJECTED`` (one instance; its repr names it)."""

    def __repr__(self) -> str:
        return "REJECTED"


# Rejection sampling: a codec that lists option names in ``decode_options`` takes them as keywords of
# ``decode`` (e.g. molecules' ``canonical_only``) and may return REJECTED for a drawn example they rule
# out; ``Model.sample`` then draws replacements until n are kept (``Model.sample_stats_`` counts them).
REJECTED: Any = _Rejected()


# ---------------------------------------------------------------- checks every family shares
# Clear errors at construction and at the module boundary, not deep inside torch.

def check_int(name: str, value: Any, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise ConfigError(f"{name} must be an integer >= {low}, got {value!r}")
    return int(value)


def check_float(name: str, value: Any, low: float, high: float | None = None, open_low: bool = False) -> float:
    ok = (not isinstance(value, bool) and isinstance(value, numbers.Real) and math.isfinite(value)
          and (value > low if open_low else value >= low) and (high is None or value <= high))
    if not ok:
        lo, hi = "(" if open_low else "[", f"{high}]" if high is not None else "inf)"
        raise ConfigError(f"{name} must be a finite number in {lo}{low}, {hi}, got {value!r}")
    return float(value)


def check_widths(name: str, value: Any) -> list[int]:
    if isinstance(value, (int, str)) or not isinstance(value, Sequence) or len(value) == 0 or \
            any(isinstance(h, bool) or not isinstance(h, numbers.Integral) or h < 1 for h in value):
        raise ConfigError(f"{name} must be a non-empty sequence of integers >= 1, e.g. (128, 128); got {value!r}")
    return [int(h) for h in value]


def check_spec(spec: Spec, family: str) -> None:
    """A tabular spec with at least one slot and valid cardinalities."""
    if spec.n_continuous < 0 or any(m < 1 for m in spec.cardinalities):
        raise ConfigError(f"{family}: invalid spec {spec}: n_continuous must be >= 0 and cardinalities >= 1")
    if spec.n_continuous == 0 and len(spec.cardinalities) == 0:
        raise ConfigError(f"{family}: the data has no columns (n_continuous=0 and no discrete slots)")


def check_sample_args(family: str, n: Any, condition: Any, conditional: bool = False) -> int:
    if condition is not None and not conditional:
        raise ConfigError(f"{family} cannot sample conditionally; call sample(n) without condition")
    return check_int("n", n, 1)


def unpack(spec: Spec, batch: Batch, *, dtype: torch.dtype | None = None,
           device: torch.device | None = None) -> tuple[Tensor, Tensor]:
    """The batch's x (B, D) and c (B, K), checked against the spec; x cast to ``dtype`` if given."""
    D, cards = spec.n_continuous, spec.cardinalities
    x, c = batch.get("x"), batch.get("c")
    if x is None and c is None:
        raise DataError('batch has neither "x" nor "c"')
    B = x.shape[0] if x is not None else c.shape[0]
    x = torch.zeros(B, 0) if x is None and D == 0 else x
    c = torch.zeros(B, 0, dtype=torch.long) if c is None and not cards else c
    if x is None or c is None or x.ndim != 2 or x.shape[1] != D or c.ndim != 2 or c.shape[1] != len(cards) \
            or c.shape[0] != B:
        raise DataError(f"batch has x {None if x is None else tuple(x.shape)} and c "
                        f"{None if c is None else tuple(c.shape)}; the model expects x (B, {D}) and c (B, {len(cards)})")
    if c.is_floating_point() or c.is_complex():
        raise DataError(f'batch["c"] must hold integer category codes, got dtype {c.dtype}')
    x, c = x.to(device=device, dtype=dtype or x.dtype), c.to(device=device, dtype=torch.long)
    if not torch.isfinite(x).all():
        raise DataError('batch["x"] contains NaN or infinite values')
    if cards:
        bad = (c < 0) | (c >= torch.tensor(cards, device=c.device))                    # (B, K)
        if bad.any():
            j = int(bad.any(0).nonzero()[0])
            raise DataError(f"discrete slot {j} has a code outside [0, {cards[j]}): a category never seen in training?")
    return x, c


def unpack_condition(spec: Spec, condition: Batch | None, n: int, *, dtype: torch.dtype | None = None,
                     device: torch.device | None = None) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """A condition batch (NaN / -1 in free slots) checked against the spec and n.

    Returns x (n, D) and c (n, K) with the free slots set to 0, and the masks of the conditioned
    slots, given_x (n, D) and given_c (n, K). ``condition=None`` gives zeros and all-False masks.
    """
    D, K = spec.n_continuous, len(spec.cardinalities)
    if condition is None:
        x = torch.zeros(n, D, dtype=dtype or torch.float32, device=device)
        c = torch.zeros(n, K, dtype=torch.long, device=device)
        return x, c, torch.zeros_like(x, dtype=torch.bool), torch.zeros_like(c, dtype=torch.bool)
    if not isinstance(condition, dict):
        raise DataError(f'a condition is a batch dict with "x" and "c" (NaN / -1 in free slots), '
                        f"not a {type(condition).__name__}")
    xr, cr = condition.get("x"), condition.get("c")
    if xr is not None and not xr.is_floating_point():
        raise DataError(f'condition["x"] must be floating point (NaN marks a free slot), got dtype {xr.dtype}')
    if xr is not None and torch.isinf(xr).any():
        raise DataError('condition["x"] holds infinite values; give finite values, or NaN for a free slot')
    filled = {}
    if xr is not None:
        filled["x"] = torch.nan_to_num(xr, nan=0.0)
    if cr is not None:
        if cr.is_floating_point() or cr.dtype == torch.bool:
            raise DataError(f'condition["c"] must hold integer category codes (-1 marks a free slot), got dtype {cr.dtype}')
        filled["c"] = torch.where(cr == -1, torch.zeros_like(cr), cr)
    x, c = unpack(spec, filled, dtype=dtype, device=device)             # shapes, codes in range
    if x.shape[0] != n:
        raise DataError(f"the condition has {x.shape[0]} rows; sample({n}, condition=...) needs {n}")
    given_x = ~torch.isnan(xr).to(x.device) if xr is not None else torch.zeros_like(x, dtype=torch.bool)
    given_c = (cr != -1).to(c.device) if cr is not None else torch.zeros_like(c, dtype=torch.bool)
    return x, c, given_x, given_c
