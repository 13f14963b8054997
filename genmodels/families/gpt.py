"""GPT: a decoder-only transformer over token sequences (text, SMILES), with an exact likelihood.

Each row is factorised left to right inside windows of T+1 positions (``nets.sequence``):

    log p(row) = sum_j log softmax(W_e h_L(tokens[w T : j]))[tokens[j]],   w = (j-1) // T,

where h_L is the last pre-LayerNorm block's output at position j-1 after the final LayerNorm, and W_e
the token embedding (weight tying: the output layer is the transposed input embedding, computed with
F.linear on the one embedding parameter, so the state_dict holds no shared tensors). Every conditional is
a softmax over the V ids, so the product is a normalised mass: ``likelihood = "exact"``.

Blocks (GPT-2 / nanoGPT): x + attn(LN(x)), then x + MLP(LN(x)); causal multi-head self-attention through
one fused qkv Linear and ``F.scaled_dot_product_attention(is_causal=True)`` (no mask materialised in the
full pass); learned positional embeddings over the model's ``block_size`` positions; GELU MLP of width
4 n_embd. Init: N(0, 0.02) weights, zero biases, residual projections N(0, 0.02 / sqrt(2 n_layer)).

Sampling keeps a KV cache: ``step_logits(tokens, cache)`` appends the new positions' keys and values, so
one new token costs one position's work; the cache is dropped at window boundaries (``nets.sequence``).

Units: ``log_prob`` nats per row (float64); ``loss`` nats per target token.

References:
    | Language Models are Unsupervised Multitask Learners (Radford et al., 2019) -- GPT-2
    | Attention Is All You Need (Vaswani et al., 2017) https://arxiv.org/abs/1706.03762
    | nanoGPT (Karpathy) https://github.com/karpathy/nanoGPT

Example:
    >>> spec = Spec(extra={"vocab_size": 5, "block_size": 8})
    >>> model = GPT(spec, n_layer=1, n_head=2, n_embd=16)
    >>> batch = {"tokens": torch.tensor([[0, 1, 2, 3, 0]]), "length": torch.tensor([5])}
    >>> model.log_prob(batch).shape
    torch.Size([1])
    >>> out = model.sample(3, generator=torch.Generator().manual_seed(0), max_length=6)
    >>> out["tokens"][:, 0].tolist()                  # every row starts with <s>
    [0, 0, 0]
"""
from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..core import Spec, check_float, check_int
from ..errors import ConfigError, DataError
from ..nets.sequence import SequenceModule, model_block_size, sequence_spec

KVCache = list[tuple[Tensor, Tensor]]      # per layer: keys, values (B, n_head, s, head_dim)


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention with one fused qkv projection; optional KV cache."""

    def __init__(self, n_embd: int, n_head: int, dropout: float, bias: bool):
        super().__init__()
        self.n_head, self.dropout = n_head, dropout
        self.c_attn = nn.Linear(n_embd, 3 * n_embd, bias=bias)
        self.c_proj = nn.Linear(n_embd, n_embd, bias=bias)
        self.resid_drop = nn.Dropout(dropout)

    def forward(self, x: Tensor, past: tuple[Tensor, Tensor] | None = None) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        B, t, C = x.shape
        h = self.n_head
        q, k, v = self.c_attn(x).split(C, dim=2)                                   # (B, t, C) each
        q, k, v = (z.view(B, t, h, C // h).transpose(1, 2) for z in (q, k, v))     # (B, h, t, hd)
        mask, causal = None, t > 1
        if past is not None:
            k, v = torch.cat([past[0], k], dim=2), torch.cat([past[1], v], dim=2)  # (B, h, s + t, hd)
            s = k.shape[2] - t
            causal = False
            if t > 1:     # query i (absolute s + i) sees keys <= s + i (is_causal would align top-left)
                mask = torch.ones(t, s + t, dtype=torch.bool, device=x.device).tril(diagonal=s)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal,
                                           dropout_p=self.dropout if self.training else 0.0)   # (B, h, t, hd)
        y = y.transpose(1, 2).reshape(B, t, C)
        return self.resid_drop(self.c_proj(y)), (k, v)


class MLP(nn.Module):
    def __init__(self, n_embd: int, dropout: float, bias: bool):
        super().__init__()
        self.c_fc = nn.Linear(n_embd, 4 * n_embd, bias=bias)
        self.c_proj = nn.Linear(4 * n_embd, n_embd, bias=bias)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.drop(self.c_proj(F.gelu(self.c_fc(x))))


class Block(nn.Module):
    """Pre-LayerNorm transformer block."""

    def __init__(self, n_embd: int, n_head: int, dropout: float, bias: bool):
        super().__init__()
        self.ln_1 = nn.LayerNorm(n_embd, bias=bias)
        self.attn = CausalSelfAttention(n_embd, n_head, dropout, bias)
        self.ln_2 = nn.LayerNorm(n_embd, bias=bias)
        self.mlp = MLP(n_embd, dropout, bias)

    def forward(self, x: Tensor, past: tuple[Tensor, Tensor] | None = None) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        a, kv = self.attn(self.ln_1(x), past)
        x = x + a
        return x + self.mlp(self.ln_2(x)), kv


class GPT(SequenceModule):
    """Decoder-only transformer with learned positions, tied embeddings and a KV cache for sampling.

    Arguments:
        spec: extra["vocab_size"] = V (id 0 is <s>), extra["block_size"] = T (the data's context length).
        n_layer: transformer blocks.
        n_head: attention heads; must divide n_embd.
        n_embd: width of the residual stream.
        dropout: dropout on embeddings, attention weights, residual branches (0 = none).
        bias: biases in the Linear and LayerNorm layers.
        block_size: positions the model is built for (the positional table); None = the data's T.
            Must be >= T.
    """

    # AdamW, weight decay 0.1, short warm-up, clipping at 1 (nanoGPT); smaller batches at a higher rate
    # than nanoGPT's 1e-3 learn far more per token within a short budget (shakespeare, 10 min on a CPU:
    # 1.81 vs 2.09 nats/char with batch 64 at 1e-3, benchmarks/text.py); validation on a fixed 1,024
    # held-out rows keeps early stopping cheap on a large corpus. bucket stays off: on MOSES SMILES (50k,
    # 150 s, batch 32) bucketing by length gave more steps (1,497 against 1,325) but a slightly worse
    # validation loss (0.755 against 0.747 nats/token)
    train_defaults: ClassVar[dict[str, Any]] = {"batch_size": 32, "lr": 3e-3, "warmup_steps": 100,
                                                "weight_decay": 0.1, "grad_clip": 1.0, "eval_every": 250,
                                                "val_rows": 1024}

    def __init__(self, spec: Spec, n_layer: int = 4, n_head: int = 4, n_embd: int = 128, dropout: float = 0.0,
                 bias: bool = True, block_size: int | None = None):
        V, T = sequence_spec(spec, "GPT")
        if not isinstance(bias, bool):
            raise ConfigError(f"bias must be True or False, got {bias!r}")
        cfg = dict(n_layer=check_int("n_layer", n_layer, 1), n_head=check_int("n_head", n_head, 1),
                   n_embd=check_int("n_embd", n_embd, 1), dropout=check_float("dropout", dropout, 0.0, 1.0),
                   bias=bias, block_size=model_block_size(block_size, T))
        if cfg["dropout"] >= 1.0:
            raise ConfigError(f"dropout must be in [0, 1), got {dropout!r}")
        if cfg["n_embd"] % cfg["n_head"]:
            raise ConfigError(f"n_embd ({cfg['n_embd']}) must be a multiple of n_head ({cfg['n_head']}); "
                              f"e.g. n_embd={cfg['n_head'] * max(1, round(cfg['n_embd'] / cfg['n_head']))}")
        super().__init__(spec, **cfg)
        C, L = cfg["n_embd"], cfg["n_layer"]
        self.wte = nn.Embedding(V, C)                       # also the output layer (tied)
        self.wpe = nn.Embedding(cfg["block_size"], C)
        self.drop = nn.Dropout(cfg["dropout"])
        self.blocks = nn.ModuleList(Block(C, cfg["n_head"], cfg["dropout"], bias) for _ in range(L))
        self.ln_f = nn.LayerNorm(C, bias=bias)
        self.apply(self._init_weights)
        for name, p in self.named_parameters():             # GPT-2: scale the residual projections
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * L))

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, mean=0.0, std=0.02)
        if isinstance(m, nn.Linear) and m.bias is not None:
            nn.init.zeros_(m.bias)

    def step_logits(self, tokens: Tensor, cache: KVCache | None) -> tuple[Tensor, KVCache]:
        """Logits (B, t, V) for tokens (B, t) after the positions held in ``cache`` (None: fresh window)."""
        t = tokens.shape[1]
        s = 0 if cache is None else cache[0][0].shape[2]
        if s + t > self.config["block_size"]:
            raise DataError(f"a context of {s + t} tokens is longer than the model's block_size "
                            f"{self.config['block_size']}; windows of the data's block_size T keep within it")
        pos = torch.arange(s, s + t, device=tokens.device)
        x = self.drop(self.wte(tokens) + self.wpe(pos))                           # (B, t, C)
        new: KVCache = []
        for i, block in enumerate(self.blocks):
            x, kv = block(x, None if cache is None else cache[i])
            new.append(kv)
        x = self.ln_f(x)
        return F.linear(x, self.wte.weight), new                                  # (B, t, V), tied
