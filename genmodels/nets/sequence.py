"""SequenceModule: the base of every token-sequence family (GPT, RNN, n-gram), and sampling filters.

A batch of token sequences (what the text and molecule codecs produce)::

    batch["tokens"]  LongTensor (B, L)  row r = [0, t1, t2, ..., t_{len-1}, padding (0)...]
    batch["length"]  LongTensor (B,)    valid positions of the row, position 0 included
    spec.extra = {"vocab_size": V, "block_size": T}    id 0 is "<s>": BOS and EOS; ordinary ids 1..V-1
                 (optional "nonempty": True, below)

Targets are the positions 1..length-1 (a document's final EOS, id 0, is an ordinary target).

Windows: the one factorisation that training, scoring AND sampling share. A family sees at most T
tokens of context. Positions are split into windows of T+1 positions that overlap by one: window w
covers positions [w T, w T + T]. Target position j (1 <= j < length) belongs to window w = (j-1) // T
and is predicted from the tokens at positions w T .. j-1 only, so

    log p(row) = sum_{j=1}^{length-1} log p(tokens[j] | tokens[w T : j]),   w = (j-1) // T.

Training rows from the codec are at most T+1 long (one window each), so the training loss is this
same quantity, averaged per target token. ``sample`` continues a sequence past T+1 positions in the
same way: when the next position j starts a new window ((j-1) % T == 0), the context restarts at
position j-1 (the KV cache / hidden state is dropped and rebuilt from that one token). Hence sampling
draws exactly from the distribution that ``log_prob`` scores (at temperature 1 without top-k/top-p).

Non-empty documents: with ``spec.extra["nonempty"]`` (the molecule codec sets it: an empty string is no
molecule) the end token is impossible right after the start of a document. Its logit there is set
to -inf in training, scoring and sampling alike, so the model is a normalised distribution over
non-empty documents and never samples an empty one.

Units: ``log_prob`` is nats per row (float64, (B,)); ``loss`` is nats per target token (mean over
every valid target of the batch); bits per token = nats / ln 2.

A family implements one method, ``step_logits(tokens, cache) -> (logits, cache)``: next-token logits
(B, t, V) for the t positions of ``tokens`` (B, t), continuing the context held in ``cache`` (None: a
fresh window whose first position is ``tokens[:, 0]``). Logits may be unnormalised: the base applies
log_softmax. The base class turns it into ``loss``, ``log_prob``, ``token_log_probs`` and ``sample``.

Example:
    >>> class Uniform(SequenceModule):
    ...     def step_logits(self, tokens, cache):
    ...         return torch.zeros(*tokens.shape, self.vocab_size), None
    >>> m = Uniform(Spec(extra={"vocab_size": 4, "block_size": 8}))
    >>> batch = {"tokens": torch.tensor([[0, 1, 2, 0]]), "length": torch.tensor([4])}
    >>> round(float(m.log_prob(batch)[0] / math.log(4)), 6)       # 3 targets of mass 1/4
    -3.0
    >>> m.sample(2, generator=torch.Generator().manual_seed(0), max_length=5)["tokens"].shape[0]
    2
"""
from __future__ import annotations

import math
import numbers
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from ..core import Batch, GenerativeModule, Likelihood, Spec, check_int, check_sample_args
from ..errors import ConfigError, DataError

EVAL_CHUNK = 256          # windows per forward pass when scoring without gradients


# ---------------------------------------------------------------- sampling options

def check_sampling(temperature: Any = 1.0, top_k: Any = None, top_p: Any = None, max_length: Any = None) -> None:
    """Raise ConfigError for a bad sampling option (None means "not used" for top_k, top_p, max_length)."""
    if isinstance(temperature, bool) or not isinstance(temperature, numbers.Real) \
            or not math.isfinite(temperature) or temperature <= 0:
        raise ConfigError(f"temperature must be > 0 (1 samples the model itself; smaller is sharper), "
                          f"got {temperature!r}")
    if top_p is not None and (isinstance(top_p, bool) or not isinstance(top_p, numbers.Real)
                              or not 0 < top_p <= 1):
        raise ConfigError(f"top_p must be in (0, 1] (1 keeps every token; None turns it off), got {top_p!r}")
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, numbers.Integral) or top_k < 1):
        raise ConfigError(f"top_k must be an integer >= 1 (None turns it off), got {top_k!r}")
    if max_length is not None and (isinstance(max_length, bool) or not isinstance(max_length, numbers.Integral)
                                   or max_length < 1):
        raise ConfigError(f"max_length must be an integer >= 1 (new tokens after the prompt), got {max_length!r}")


def filter_logits(logits: Tensor, temperature: float = 1.0, top_k: int | None = None,
                  top_p: float | None = None) -> Tensor:
    """Log-probabilities (..., V) to sample from: logits / temperature, then top-k, then top-p, renormalised.

    top_k keeps exactly the k most likely tokens; top_p keeps the smallest set of most likely tokens whose
    probability is >= top_p (the most likely token is always kept). Removed tokens get -inf.
    """
    check_sampling(temperature, top_k, top_p)
    logp = torch.log_softmax(logits / temperature, dim=-1)
    V = logp.shape[-1]
    if top_k is not None and top_k < V:
        vals, idx = torch.topk(logp, top_k, dim=-1)
        logp = torch.full_like(logp, -math.inf).scatter(-1, idx, vals)
        logp = torch.log_softmax(logp, dim=-1)
    if top_p is not None and top_p < 1:
        sorted_lp, idx = torch.sort(logp, dim=-1, descending=True)
        before = torch.cumsum(sorted_lp.exp(), dim=-1) - sorted_lp.exp()        # mass of the more likely tokens
        drop_sorted = before >= top_p
        drop_sorted[..., 0] = False                                              # the most likely always stays
        drop = torch.zeros_like(drop_sorted).scatter(-1, idx, drop_sorted)
        logp = torch.log_softmax(logp.masked_fill(drop, -math.inf), dim=-1)
    return logp


# ---------------------------------------------------------------- spec checks

def sequence_spec(spec: Spec, family: str) -> tuple[int, int]:
    """(V, T) from spec.extra, or ConfigError."""
    extra = spec.extra or {}
    V, T = extra.get("vocab_size"), extra.get("block_size")
    if isinstance(V, bool) or not isinstance(V, numbers.Integral) or V < 2:
        raise ConfigError(f"{family}: spec.extra['vocab_size'] must be an integer >= 2 (id 0 is <s>), got {V!r}; "
                          "build the spec with a text or molecule codec")
    if isinstance(T, bool) or not isinstance(T, numbers.Integral) or T < 1:
        raise ConfigError(f"{family}: spec.extra['block_size'] (the context length T in tokens) must be an "
                          f"integer >= 1, got {T!r}; build the spec with a text or molecule codec")
    return int(V), int(T)


def model_block_size(block_size: Any, T: int) -> int:
    """The family's own block_size (None: the data's T), checked to hold the data's windows."""
    if block_size is None:
        return T
    B = check_int("block_size", block_size, 1)
    if T > B:
        raise ConfigError(f"the data's block length T={T} is longer than the model's block_size {B}; "
                          f"lower the codec's block_size or raise the model's (block_size >= {T})")
    return B


def _trim(tokens: Tensor, length: Tensor) -> Tensor:
    """tokens without the padding columns that no row reaches (the codec pads every row to T+1)."""
    L = int(length.max()) if length.numel() else tokens.shape[1]
    return tokens[:, :L] if L < tokens.shape[1] else tokens


# ---------------------------------------------------------------- the base class

class SequenceModule(GenerativeModule):
    """Autoregressive model over token rows with the window factorisation (see the module docstring).

    Subclasses call ``super().__init__(spec, **config)`` and implement ``step_logits``.
    Attributes: ``vocab_size`` V and ``block_length`` T (the data's window, spec.extra["block_size"]).
    """

    likelihood: ClassVar[Likelihood] = "exact"
    modalities: ClassVar[tuple[str, ...]] = ("text", "molecule")
    conditional: ClassVar[bool] = False
    train_defaults: ClassVar[dict[str, Any]] = {}

    def __init__(self, spec: Spec, **config: Any):
        self.vocab_size, self.block_length = sequence_spec(spec, type(self).__name__)
        self.nonempty = bool((spec.extra or {}).get("nonempty", False))
        super().__init__(spec, **config)

    # -- what a family implements ----------------------------------------------------------------

    def step_logits(self, tokens: Tensor, cache: Any | None) -> tuple[Tensor, Any]:
        """Next-token logits (B, t, V) for the t positions of ``tokens`` (B, t), continuing ``cache``
        (None: a fresh window starting at tokens[:, 0]). Returns (logits, new_cache)."""
        raise NotImplementedError

    # -- batches ---------------------------------------------------------------------------------

    def unpack_tokens(self, batch: Batch, need_targets: bool = False) -> tuple[Tensor, Tensor]:
        """tokens (B, L) int64 and length (B,) int64 on the module's device, checked (``need_targets``: at
        least one row with length >= 2). A missing "length" means every row is L positions long."""
        if not isinstance(batch, dict) or "tokens" not in batch:
            raise DataError('a sequence batch is a dict with "tokens" (B, L) and "length" (B,); '
                            "encode the data with a text or molecule codec")
        tokens = batch["tokens"]
        if not isinstance(tokens, Tensor) or tokens.ndim != 2 or tokens.is_floating_point() \
                or tokens.is_complex() or tokens.dtype == torch.bool:
            raise DataError(f'batch["tokens"] must be an integer tensor (B, L), got '
                            f"{getattr(tokens, 'dtype', type(tokens).__name__)} {tuple(getattr(tokens, 'shape', ()))}")
        B, L = tokens.shape
        length = batch.get("length")
        if length is None:
            length = torch.full((B,), L, dtype=torch.long)
        if not isinstance(length, Tensor) or length.shape != (B,) or length.is_floating_point():
            raise DataError(f'batch["length"] must be an integer tensor ({B},), one per row of "tokens"')
        tokens = tokens.to(self.device, torch.long)
        length = length.to(self.device, torch.long)
        if B > 0 and L > 0:         # one device sync for all checks; the details only on an error
            lo, hi, lmin, lmax = torch.stack([tokens.min(), tokens.max(), length.min(), length.max()]).tolist()
            if lo < 0 or hi >= self.vocab_size:
                raise DataError(f"token ids must be in [0, {self.vocab_size}); got ids in [{lo}, {hi}]: "
                                "a vocabulary of another codec?")
            if lmin < 1 or lmax > L:
                raise DataError(f'batch["length"] must be in [1, {L}] (position 0 counts), got values in '
                                f"[{lmin}, {lmax}]")
            if need_targets and lmax < 2:
                raise DataError("the batch has no targets: every row needs length >= 2 (<s> and one token)")
        elif need_targets:
            raise DataError("the batch has no targets: every row needs length >= 2 (<s> and one token)")
        return tokens, length

    # -- scoring ---------------------------------------------------------------------------------

    def _window_logits(self, inputs: Tensor, starts: Tensor) -> Tensor:
        """Fresh-window logits (N, t, V) for windows (N, t), ``starts`` (N,) marking the windows that begin
        a document (for ``nonempty``: no end token at their first target); chunked without gradients."""
        if torch.is_grad_enabled() or inputs.shape[0] <= EVAL_CHUNK:
            logits = self.step_logits(inputs, None)[0]
        else:
            logits = torch.cat([self.step_logits(x, None)[0] for x in inputs.split(EVAL_CHUNK)])
        if self.nonempty:
            logits = logits.clone()
            logits[starts, 0, 0] = -math.inf
        return logits

    def _targets_and_logits(self, tokens: Tensor, length: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Logits (N, t, V), targets (N, t) with -100 at padding, and the (B, L-1) index of each target."""
        B, L = tokens.shape
        T = self.block_length
        pos = torch.arange(1, L, device=tokens.device)                          # target positions (L-1,)
        targets = tokens[:, 1:].masked_fill(pos >= length[:, None], -100)      # (B, L-1)
        if L - 1 <= T:                                                          # one window per row
            starts = torch.ones(B, dtype=torch.bool, device=tokens.device)
            return (self._window_logits(tokens[:, :-1], starts), targets,
                    torch.arange(B * (L - 1), device=tokens.device))
        n_w = -(-(L - 1) // T)                                                  # windows per row
        pad = n_w * T + 1 - L
        tok = F.pad(tokens, (0, pad))                                            # (B, n_w T + 1)
        tgt = F.pad(targets, (0, pad), value=-100)
        inputs = tok[:, :-1].unfold(1, T, T)                                     # (B, n_w, T): positions w T .. w T + T - 1
        tgt = tgt.unfold(1, T, T)                                                # (B, n_w, T): positions w T + 1 .. w T + T
        keep = (torch.arange(n_w, device=tokens.device) * T + 1 < length[:, None]).reshape(-1)   # windows with targets
        inputs, tgt = inputs.reshape(B * n_w, T)[keep], tgt.reshape(B * n_w, T)[keep]
        where = torch.arange(B * n_w * T, device=tokens.device).view(B * n_w, T)[keep]   # flat index in (B, n_w T)
        starts = (torch.arange(n_w, device=tokens.device) == 0).repeat(B)[keep]            # each row's first window
        return self._window_logits(inputs, starts), tgt, where.reshape(-1)

    def token_log_probs(self, batch: Batch) -> Tensor:
        """log p(tokens[j] | window context) for j = 1..L-1: (B, L-1), 0 at padding (float32, or float64
        when the family's logits are float64)."""
        tokens, length = self.unpack_tokens(batch)
        B, full = tokens.shape
        tokens = _trim(tokens, length)                          # the result is padded back to full - 1
        L = tokens.shape[1]
        if L < 2:
            return torch.zeros(B, max(full - 1, 0), device=tokens.device)
        logits, tgt, where = self._targets_and_logits(tokens, length)
        logits = logits if logits.dtype == torch.float64 else logits.float()
        nll = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tgt.reshape(-1), ignore_index=-100,
                              reduction="none")                                 # 0 where ignored
        T, n_w = self.block_length, -(-(L - 1) // self.block_length)
        width = L - 1 if L - 1 <= T else n_w * T
        out = torch.zeros(B * width, dtype=nll.dtype, device=nll.device).index_copy(0, where, -nll)
        return F.pad(out.view(B, width)[:, :L - 1], (0, full - L))

    def log_prob(self, batch: Batch) -> Tensor:
        """(B,) float64 nats: sum over targets of the window-factorised conditionals."""
        return self.token_log_probs(batch).double().sum(1)

    def loss(self, batch: Batch) -> Tensor:
        """Mean negative log-likelihood per target token (nats/token) over the batch's valid targets."""
        tokens, length = self.unpack_tokens(batch, need_targets=True)
        logits, tgt, _ = self._targets_and_logits(_trim(tokens, length), length)
        logits = logits if logits.dtype == torch.float64 else logits.float()
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tgt.reshape(-1), ignore_index=-100)

    # -- sampling --------------------------------------------------------------------------------

    def check_prompt(self, prompt: Any) -> Tensor:
        if prompt is None:
            return torch.zeros(1, dtype=torch.long, device=self.device)
        if not isinstance(prompt, Tensor) or prompt.ndim != 1 or prompt.numel() == 0 \
                or prompt.is_floating_point() or prompt.dtype == torch.bool:
            raise ConfigError("prompt must be a 1-D integer tensor of token ids starting with 0 (<s>), "
                              f"got {prompt!r}")
        if int(prompt[0]) != 0:
            raise ConfigError(f"prompt must start with id 0 (<s>, the start of a document), got {int(prompt[0])}")
        if int(prompt.min()) < 0 or int(prompt.max()) >= self.vocab_size:
            raise ConfigError(f"prompt ids must be in [0, {self.vocab_size})")
        return prompt.to(self.device, torch.long)

    @torch.no_grad()
    def sample(self, n: int, *, condition: Batch | None = None, generator: torch.Generator | None = None,
               prompt: Tensor | None = None, max_length: int | None = None, temperature: float = 1.0,
               top_k: int | None = None, top_p: float | None = None) -> Batch:
        """n rows {"tokens": (n, L), "length": (n,)} that start with ``prompt`` (default [0]) and go on for
        up to ``max_length`` new tokens (None: T), a row stopping at EOS (id 0, kept as its last valid
        position). Draws with ``generator`` only; the context restarts at window boundaries (module doc)."""
        n = check_sample_args(type(self).__name__, n, condition, self.conditional)
        check_sampling(temperature, top_k, top_p, max_length)
        p = self.check_prompt(prompt)
        P, T = p.numel(), self.block_length
        new = T if max_length is None else int(max_length)
        dev = self.device
        tokens = torch.zeros(n, P + new, dtype=torch.long, device=dev)
        tokens[:, :P] = p
        length = torch.full((n,), P + new, dtype=torch.long, device=dev)
        done = torch.zeros(n, dtype=torch.bool, device=dev)
        was_training = self.training
        self.eval()
        cache, end = None, P + new
        for j in range(P, P + new):                              # position j gets drawn
            if cache is None or (j - 1) % T == 0:                # new window: context tokens[w T : j]
                logits, cache = self.step_logits(tokens[:, ((j - 1) // T) * T:j], None)
            else:
                logits, cache = self.step_logits(tokens[:, j - 1:j], cache)
            logits = logits[:, -1].float()
            if self.nonempty and j == 1:                         # no end token right after the start
                logits[:, 0] = -math.inf
            logp = filter_logits(logits, temperature, top_k, top_p)                    # (n, V)
            probs = logp.exp()
            if generator is not None and generator.device != probs.device:
                nxt = torch.multinomial(probs.to(generator.device), 1, generator=generator).to(dev)
            else:
                nxt = torch.multinomial(probs, 1, generator=generator)
            nxt = nxt.squeeze(1).masked_fill(done, 0)
            tokens[:, j] = nxt
            ended = ~done & (nxt == 0)
            length = torch.where(ended, torch.full_like(length, j + 1), length)
            done |= ended
            if bool(done.all()):
                end = j + 1
                break
        self.train(was_training)
        L = int(length.max()) if n > 0 else end
        return {"tokens": tokens[:, :L].contiguous(), "length": length}
