"""RNN: an LSTM or GRU language model over token sequences (text, SMILES), with an exact likelihood.

Each row is factorised left to right inside windows of T+1 positions (``nets.sequence``); the
recurrent state starts from zeros at every window start, so

    log p(row) = sum_j log softmax(W h_{j-1} + b)[tokens[j]],   h_i = cell(E tokens[i], h_{i-1}),

with h the top layer's output (projected to the embedding width when tying needs it) and W the token
embedding E when ``tie_weights`` (computed with F.linear on the one embedding parameter, so the
state_dict holds no shared tensors), a separate Linear otherwise. Every conditional is a softmax over
the V ids: ``likelihood = "exact"``.

The recurrence is torch's ``nn.LSTM`` / ``nn.GRU`` (batch_first, cuDNN on a GPU): no Python loop over
positions in training or scoring. The cache of ``step_logits`` is the hidden state (h, or (h, c) for
an LSTM), so sampling costs one step per token and restarts at window boundaries.

Units: ``log_prob`` nats per row (float64); ``loss`` nats per target token.

References:
    | Long Short-Term Memory (Hochreiter & Schmidhuber, 1997)
    | Learning Phrase Representations using RNN Encoder-Decoder (Cho et al., 2014) -- the GRU
    | Using the Output Embedding to Improve Language Models (Press & Wolf, 2017) https://arxiv.org/abs/1608.05859
    | Generating Focused Molecule Libraries ... with RNNs (Segler et al., 2018) https://arxiv.org/abs/1701.01329

Example:
    >>> spec = Spec(extra={"vocab_size": 5, "block_size": 8})
    >>> model = RNN(spec, cell="gru", hidden=16, n_layers=1)
    >>> batch = {"tokens": torch.tensor([[0, 1, 2, 3, 0]]), "length": torch.tensor([5])}
    >>> model.log_prob(batch).shape
    torch.Size([1])
    >>> out = model.sample(3, generator=torch.Generator().manual_seed(0), max_length=6)
    >>> out["tokens"][:, 0].tolist()                  # every row starts with <s>
    [0, 0, 0]
"""
from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..core import Spec, check_float, check_int
from ..errors import ConfigError
from ..nets.sequence import SequenceModule, sequence_spec

CELLS: dict[str, type[nn.RNNBase]] = {"lstm": nn.LSTM, "gru": nn.GRU}


class RNN(SequenceModule):
    """Embedding -> multi-layer LSTM/GRU -> (projection) -> softmax over the vocabulary.

    Arguments:
        spec: extra["vocab_size"] = V (id 0 is <s>), extra["block_size"] = T (the data's context length).
        cell: "lstm" or "gru".
        hidden: width of the recurrent state.
        n_layers: stacked recurrent layers.
        embedding: width of the token embedding; None = hidden.
        dropout: dropout on the embedding, between recurrent layers and before the output (0 = none).
        tie_weights: output layer = transposed token embedding; when embedding != hidden a Linear
            projection (hidden -> embedding) comes first.
    """

    # Adam at a high rate suits small LSTMs; weight decay off (dropout regularises). Batch 32 at 3e-3
    # learns far more per token within a short budget than 64 at 2e-3 (shakespeare, 10 min on a CPU:
    # 1.64 vs 1.91 nats/char, benchmarks/text.py); on MOSES SMILES (50k, 150 s) batch 32 reached 0.642
    # nats/token against 0.811 for 128 at the same molecules per second, and bucketing by length 0.642
    # against 0.651 without (1,893 against 1,575 steps). Validation on a fixed 1,024 held-out rows stays cheap
    train_defaults: ClassVar[dict[str, Any]] = {"batch_size": 32, "lr": 3e-3, "warmup_steps": 100,
                                                "weight_decay": 0.0, "eval_every": 250, "val_rows": 1024,
                                                "bucket": True}

    def __init__(self, spec: Spec, cell: str = "lstm", hidden: int = 256, n_layers: int = 2,
                 embedding: int | None = None, dropout: float = 0.0, tie_weights: bool = True):
        V, _ = sequence_spec(spec, "RNN")
        if not isinstance(cell, str) or cell.lower() not in CELLS:
            raise ConfigError(f"cell must be one of {', '.join(repr(c) for c in CELLS)}; got {cell!r}")
        if not isinstance(tie_weights, bool):
            raise ConfigError(f"tie_weights must be True or False, got {tie_weights!r}")
        hidden = check_int("hidden", hidden, 1)
        cfg = dict(cell=cell.lower(), hidden=hidden, n_layers=check_int("n_layers", n_layers, 1),
                   embedding=hidden if embedding is None else check_int("embedding", embedding, 1),
                   dropout=check_float("dropout", dropout, 0.0, 1.0), tie_weights=tie_weights)
        if cfg["dropout"] >= 1.0:
            raise ConfigError(f"dropout must be in [0, 1), got {dropout!r}")
        super().__init__(spec, **cfg)
        E, H = cfg["embedding"], hidden
        self.embed = nn.Embedding(V, E)
        self.drop = nn.Dropout(cfg["dropout"])
        self.rnn = CELLS[cfg["cell"]](E, H, num_layers=cfg["n_layers"], batch_first=True,
                                      dropout=cfg["dropout"] if cfg["n_layers"] > 1 else 0.0)
        if tie_weights:
            self.proj = nn.Linear(H, E) if E != H else None
            self.head_bias = nn.Parameter(torch.zeros(V))
            self.head = None
        else:
            self.proj, self.head_bias = None, None
            self.head = nn.Linear(H, V)
        nn.init.uniform_(self.embed.weight, -0.1, 0.1)       # as in the PyTorch word_language_model example

    def step_logits(self, tokens: Tensor, cache: Any | None) -> tuple[Tensor, Any]:
        """Logits (B, t, V) for tokens (B, t) continuing the hidden state ``cache`` (None: zeros)."""
        x = self.drop(self.embed(tokens))                                   # (B, t, E)
        out, state = self.rnn(x, cache)                                     # (B, t, H)
        out = self.drop(out)
        if self.head is not None:
            return self.head(out), state
        if self.proj is not None:
            out = self.proj(out)                                            # (B, t, E)
        return F.linear(out, self.embed.weight, self.head_bias), state      # (B, t, V), tied
