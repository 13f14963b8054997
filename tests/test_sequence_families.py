"""Sequence base class (genmodels.nets.sequence), GPT and RNN families, on hand-built specs and batches.

Checks: log_prob equals a brute-force loop over step_logits with the window rule (rows longer than T+1,
padded rows) and a closed form for a hand-written module; the loss is the mean NLL per target; the KV
cache / hidden state gives the full pass's logits; the mass over all sequences (ended or not) sums to
one across windows; sampling is repeatable, greedy at top_k=1 and temperature -> 0, follows top-p by
hand, and draws the model's own distribution (also right after a window reset); prompts, max_length,
EOS; bad options raise ConfigError; a GPT and an RNN learn a deterministic language; state_dict round trip.
"""
from __future__ import annotations

import itertools
import math

import pytest
import torch

from genmodels.core import Spec
from genmodels.errors import ConfigError, DataError
from genmodels.families.gpt import GPT
from genmodels.families.rnn import RNN
from genmodels.nets.sequence import SequenceModule, check_sampling, filter_logits

torch.set_num_threads(1)

V, T = 5, 4
SPEC = Spec(extra={"vocab_size": V, "block_size": T})

FAMILIES = {
    "gpt": lambda spec: GPT(spec, n_layer=2, n_head=2, n_embd=16),
    "lstm": lambda spec: RNN(spec, cell="lstm", hidden=16, n_layers=2),
    "gru-untied": lambda spec: RNN(spec, cell="gru", hidden=12, n_layers=1, tie_weights=False),
    "lstm-proj": lambda spec: RNN(spec, cell="lstm", hidden=12, n_layers=1, embedding=8),
}


def build(name: str, spec: Spec = SPEC, seed: int = 0, sharp: float | None = 0.7) -> SequenceModule:
    """A module in eval mode; ``sharp`` re-draws every parameter N(0, sharp^2) so that the next-token
    distributions differ strongly between contexts (a fresh GPT is nearly uniform everywhere)."""
    torch.manual_seed(seed)
    m = FAMILIES[name](spec)
    if sharp is not None:
        g = torch.Generator().manual_seed(seed + 1)
        with torch.no_grad():
            for p in m.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * sharp)
    return m.eval()


def rows(lengths: list[int], seed: int = 0, vocab: int = V) -> dict[str, torch.Tensor]:
    """Padded rows [0, random tokens (EOS allowed inside, as in a later window)...] of the given lengths."""
    g = torch.Generator().manual_seed(seed)
    L = max(lengths)
    tokens = torch.randint(0, vocab, (len(lengths), L), generator=g)
    tokens[:, 0] = 0
    for r, n in enumerate(lengths):
        tokens[r, n:] = 0
    return {"tokens": tokens, "length": torch.tensor(lengths), "log_w": torch.zeros(len(lengths), dtype=torch.float64)}


@torch.no_grad()
def brute_log_prob(m: SequenceModule, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """sum_j log p(tokens[j] | tokens[w T : j]), w = (j-1) // T, one fresh step_logits call per target."""
    Tb = m.block_length
    out = []
    for tok, n in zip(batch["tokens"], batch["length"].tolist()):
        lp = 0.0
        for j in range(1, n):
            w = (j - 1) // Tb
            logits, _ = m.step_logits(tok[None, w * Tb:j], None)
            lp += float(torch.log_softmax(logits[0, -1].double(), -1)[tok[j]])
        out.append(lp)
    return torch.tensor(out, dtype=torch.float64)


@torch.no_grad()
def next_log_probs(m: SequenceModule, context: torch.Tensor) -> torch.Tensor:
    """log p(next | context) (V,) under the window rule, from log_prob of context + each token."""
    P = context.numel()
    tok = torch.cat([context.expand(m.vocab_size, P), torch.arange(m.vocab_size)[:, None]], 1)
    lp = m.log_prob({"tokens": tok, "length": torch.full((m.vocab_size,), P + 1)})
    return lp - m.log_prob({"tokens": context[None], "length": torch.tensor([P])})


class WindowPosition(SequenceModule):
    """Closed-form module: logit 2 on token (position inside the window) % V, 0 elsewhere."""

    def step_logits(self, tokens, cache):
        s = 0 if cache is None else cache
        pos = torch.arange(s, s + tokens.shape[1])
        logits = 2.0 * torch.nn.functional.one_hot(pos % self.vocab_size, self.vocab_size).float()
        return logits.expand(tokens.shape[0], -1, -1), s + tokens.shape[1]


# ---------------------------------------------------------------- likelihood

def test_window_rule_closed_form():
    m = WindowPosition(SPEC)
    batch = rows([14, 3, 9, 1, 2], seed=3)
    lp = m.log_prob(batch)
    ref = []
    for tok, n in zip(batch["tokens"], batch["length"].tolist()):
        s = 0.0
        for j in range(1, n):
            inside = (j - 1) - ((j - 1) // T) * T            # position of the last context token in its window
            s += 2.0 * (int(tok[j]) == inside % V) - math.log(math.exp(2.0) + V - 1)
        ref.append(s)
    assert lp.dtype == torch.float64 and lp.shape == (5,)
    assert torch.allclose(lp, torch.tensor(ref, dtype=torch.float64), atol=1e-5)
    tlp = m.token_log_probs(batch)
    assert tlp.shape == (5, 13) and (tlp[1, 2:] == 0).all() and (tlp[3] == 0).all()


@pytest.mark.parametrize("name", list(FAMILIES))
def test_log_prob_equals_brute_force_over_windows(name):
    m = build(name)
    batch = rows([13, 5, 2, 9, 6, 1], seed=1)              # longer than T+1 = 5, padded, one empty row
    lp = m.log_prob(batch)
    assert lp.dtype == torch.float64 and torch.isfinite(lp).all()
    assert torch.allclose(lp, brute_log_prob(m, batch), atol=1e-4)
    assert lp[5] == 0.0
    short = rows([5, 4, 2], seed=2)                        # one window, the training case
    assert torch.allclose(m.log_prob(short), brute_log_prob(m, short), atol=1e-4)


@pytest.mark.parametrize("name", ["gpt", "lstm"])
def test_padding_columns_no_row_reaches_change_nothing(name):
    """loss and log_prob drop the padding columns beyond the longest row (the codec pads every row to
    T+1); the token log-probs keep the caller's width, zeros there."""
    m = build(name)
    batch = rows([4, 3, 2], seed=5)
    wide = dict(batch, tokens=torch.nn.functional.pad(batch["tokens"], (0, 6)))
    assert torch.allclose(m.log_prob(wide), m.log_prob(batch), atol=1e-6)
    assert torch.allclose(m.loss(wide), m.loss(batch), atol=1e-6)
    tlp = m.token_log_probs(wide)
    assert tlp.shape == (3, 9) and (tlp[:, 3:] == 0).all()
    assert m.token_log_probs(dict(wide, length=torch.ones(3, dtype=torch.long))).shape == (3, 9)


def test_bucketed_batches_hold_rows_of_similar_length():
    from genmodels.train import BUCKET_CHUNK, _batches
    n, bs = 1000, 8
    length = torch.randint(1, 60, (n,), generator=torch.Generator().manual_seed(0))
    plain = _batches(n, bs, n // bs, torch.Generator().manual_seed(1), None)
    bucketed = _batches(n, bs, n // bs, torch.Generator().manual_seed(1), length)
    assert all(len(b) == bs for b in bucketed) and len(bucketed) == len(plain) == n // bs
    assert sorted(torch.cat(bucketed).tolist()) == sorted(torch.cat(plain).tolist())    # the same rows
    spread = lambda bs_: float(torch.stack([length[b].max() - length[b].min() for b in bs_]).float().mean())
    assert spread(bucketed) < 0.2 * spread(plain)
    again = _batches(n, bs, n // bs, torch.Generator().manual_seed(1), length)
    assert all(torch.equal(a, b) for a, b in zip(bucketed, again))                     # seeded
    assert BUCKET_CHUNK * bs < n          # more than one chunk: the batches order is shuffled across chunks
    firsts = [int(length[b].min()) for b in bucketed]
    assert firsts != sorted(firsts)


@pytest.mark.parametrize("name", ["gpt", "lstm"])
def test_loss_is_mean_nll_per_target(name):
    m = build(name)
    batch = rows([5, 3, 4, 2, 5], seed=4)
    loss = m.loss(batch)
    n_targets = int((batch["length"] - 1).sum())
    assert loss.ndim == 0
    assert torch.allclose(loss.double(), -m.log_prob(batch).sum() / n_targets, atol=1e-5)
    loss.backward()                                         # differentiable
    with pytest.raises(DataError, match="no targets"):
        m.loss({"tokens": torch.zeros(2, 1, dtype=torch.long), "length": torch.ones(2, dtype=torch.long)})


@pytest.mark.parametrize("name", list(FAMILIES))
def test_incremental_logits_equal_full_pass(name):
    m = build(name, sharp=None)
    tok = rows([4, 4, 4], seed=5)["tokens"]
    full, _ = m.step_logits(tok, None)                     # (3, 4, V)
    a, cache = m.step_logits(tok[:, :1], None)
    b, cache = m.step_logits(tok[:, 1:2], cache)           # one token with the cache
    c, _ = m.step_logits(tok[:, 2:4], cache)               # several tokens with the cache (mask path)
    assert torch.allclose(torch.cat([a, b, c], 1), full, atol=1e-5)


@pytest.mark.parametrize("name", ["gpt", "lstm"])
def test_mass_over_all_sequences_is_one(name):
    """V=3, T=2: ended sequences up to K tokens plus the unended prefixes of K tokens carry mass 1."""
    spec = Spec(extra={"vocab_size": 3, "block_size": 2})
    m = build(name, spec)
    K = 5
    seqs = [[0, *s, 0] for k in range(K) for s in itertools.product((1, 2), repeat=k)]
    seqs += [[0, *s] for s in itertools.product((1, 2), repeat=K)]
    L = max(map(len, seqs))
    batch = {"tokens": torch.tensor([s + [0] * (L - len(s)) for s in seqs]),
             "length": torch.tensor([len(s) for s in seqs])}
    with torch.no_grad():
        total = m.log_prob(batch).exp().sum()
    assert abs(float(total) - 1.0) < 1e-5
    # and every conditional over the V ids sums to one (here across a window boundary)
    ctx = torch.tensor([0, 1, 2, 2, 1])
    assert abs(float(next_log_probs(m, ctx).exp().sum()) - 1.0) < 1e-5


def test_gpt_context_longer_than_block_size_raises():
    m = build("gpt")
    with pytest.raises(DataError, match="block_size"):
        m.step_logits(torch.zeros(1, T + 1, dtype=torch.long), None)


def test_bad_batches_raise():
    m = build("lstm")
    with pytest.raises(DataError, match="token ids"):
        m.log_prob({"tokens": torch.tensor([[0, V]]), "length": torch.tensor([2])})
    with pytest.raises(DataError, match="length"):
        m.log_prob({"tokens": torch.tensor([[0, 1]]), "length": torch.tensor([3])})
    with pytest.raises(DataError, match="integer"):
        m.log_prob({"tokens": torch.tensor([[0.0, 1.0]]), "length": torch.tensor([2])})
    with pytest.raises(DataError, match="tokens"):
        m.log_prob({"x": torch.zeros(2, 3)})


# ---------------------------------------------------------------- sampling

@torch.no_grad()
def greedy(m: SequenceModule, prompt: list[int], new: int) -> list[int]:
    seq, Tb = list(prompt), m.block_length
    for _ in range(new):
        j = len(seq)
        w = (j - 1) // Tb
        logits, _ = m.step_logits(torch.tensor([seq[w * Tb:j]]), None)
        seq.append(int(logits[0, -1].argmax()))
        if seq[-1] == 0:
            break
    return seq


@pytest.mark.parametrize("name", ["gpt", "lstm"])
def test_sampling_repeatable_and_greedy_limits(name):
    m = build(name)
    g = lambda s: torch.Generator().manual_seed(s)
    a = m.sample(6, generator=g(0), max_length=11)
    b = m.sample(6, generator=g(0), max_length=11)
    c = m.sample(6, generator=g(1), max_length=11)
    assert torch.equal(a["tokens"], b["tokens"]) and torch.equal(a["length"], b["length"])
    assert not torch.equal(a["tokens"], c["tokens"])
    prompt = [0, 3, 1]
    ref = greedy(m, prompt, 11)                            # crosses two window boundaries (T = 4)
    for kw in ({"top_k": 1}, {"temperature": 1e-6}, {"top_p": 1e-9}):
        out = m.sample(3, generator=g(2), prompt=torch.tensor(prompt), max_length=11, **kw)
        for r in range(3):
            assert out["tokens"][r, :out["length"][r]].tolist() == ref, kw
    assert m.training is False


def test_filter_logits_by_hand():
    p = torch.tensor([0.5, 0.3, 0.15, 0.05])
    logits = p.log() + 1.7                                 # unnormalised
    f = lambda **kw: filter_logits(logits, **kw).exp()   
    assert torch.allclose(f(), p, atol=1e-6)
    assert torch.allclose(f(top_p=0.75), torch.tensor([0.625, 0.375, 0, 0]), atol=1e-6)
    assert torch.allclose(f(top_p=0.85), torch.tensor([0.5, 0.3, 0.15, 0]) / 0.95, atol=1e-6)
    assert torch.allclose(f(top_p=0.4), torch.tensor([1.0, 0, 0, 0]))
    assert torch.allclose(f(top_p=1.0), p, atol=1e-6)
    assert torch.allclose(f(top_k=2), torch.tensor([0.625, 0.375, 0, 0]), atol=1e-6)
    assert torch.allclose(f(top_k=9), p, atol=1e-6)
    sq = p.sqrt() / p.sqrt().sum()
    assert torch.allclose(f(temperature=2.0), sq, atol=1e-6)
    assert torch.allclose(f(temperature=2.0, top_k=3, top_p=0.6),           # top-p on the top-k renormalised
                          torch.tensor([sq[0], sq[1], 0, 0]) / (sq[0] + sq[1]), atol=1e-6)
    assert f(temperature=1e-4)[0] > 1 - 1e-6               # -> greedy
    batched = filter_logits(torch.stack([logits, logits.flip(0)]), top_p=0.75).exp()
    assert torch.allclose(batched[1], torch.tensor([0, 0, 0.375, 0.625]), atol=1e-6)


@pytest.mark.parametrize("name", ["gpt", "lstm"])
def test_samples_follow_the_model_across_a_window_reset(name):
    """Prompt of T positions: the 1st new token uses the full window, the 2nd starts a new window
    (context = the 1st new token only). Joint frequencies of the two new tokens match log_prob."""
    m = build(name)
    prompt = torch.tensor([0, 2, 4, 1])                    # P = T = 4: drawing position 4, then 5 (reset)
    N = 6000
    out = m.sample(N, generator=torch.Generator().manual_seed(7), prompt=prompt, max_length=2)
    first = out["tokens"][:, 4]
    second = torch.where(out["length"] == 6, out["tokens"][:, 5], torch.full_like(first, -1))
    assert ((first == 0) == (out["length"] == 5)).all()    # a row ends at its EOS
    lp1 = next_log_probs(m, prompt)
    probs, freqs = [], []
    for a in range(V):
        if a == 0:
            probs.append(float(lp1[0].exp()))
            freqs.append(float((first == 0).double().mean()))
            continue
        lp2 = next_log_probs(m, torch.cat([prompt, torch.tensor([a])]))
        for b in range(V):
            probs.append(float((lp1[a] + lp2[b]).exp()))
            freqs.append(float(((first == a) & (second == b)).double().mean()))
    probs, freqs = torch.tensor(probs, dtype=torch.float64), torch.tensor(freqs, dtype=torch.float64)
    assert abs(float(probs.sum()) - 1) < 1e-5
    tol = 4.5 * (probs * (1 - probs) / N).sqrt() + 2e-3
    assert ((freqs - probs).abs() < tol).all(), (freqs, probs)
    # the check can fail: a sliding window (context = the last T tokens) would draw another 2nd token
    a = int(lp1[1:].argmax()) + 1
    with torch.no_grad():
        sliding = torch.cat([prompt[1:], torch.tensor([a])])[None]                   # T tokens
        no_reset = torch.log_softmax(m.step_logits(sliding, None)[0][0, -1].double(), -1)
    with_reset = next_log_probs(m, torch.cat([prompt, torch.tensor([a])]))
    assert (no_reset.exp() - with_reset.exp()).abs().max() > 0.05


@pytest.mark.parametrize("name", ["gpt", "gru-untied"])
def test_prompt_max_length_and_eos(name):
    m = build(name)
    prompt = torch.tensor([0, 1, 2])
    out = m.sample(40, generator=torch.Generator().manual_seed(3), prompt=prompt, max_length=9)
    tok, length = out["tokens"], out["length"]
    assert tok.dtype == torch.long and length.dtype == torch.long
    assert tok.shape[0] == 40 and tok.shape[1] == int(length.max()) <= 3 + 9
    assert (tok[:, :3] == prompt).all()
    assert ((length >= 4) & (length <= 12)).all()
    assert (length < 12).any()                            # some rows ended early at EOS
    for r in range(40):
        n = int(length[r])
        gen = tok[r, 3:n]
        assert (gen[:-1] != 0).all()                       # no EOS before the last valid position
        assert gen[-1] == 0 or n == 12                     # ended at EOS, or ran out of max_length
        assert (tok[r, n:] == 0).all()                     # padding
    default = m.sample(5, generator=torch.Generator().manual_seed(0))        # prompt [0], up to T new
    assert (default["tokens"][:, 0] == 0).all() and default["tokens"].shape[1] <= 1 + T
    assert torch.isfinite(m.log_prob(out)).all()           # samples score in the same layout


def test_sampling_and_config_errors():
    m = build("gpt")
    for kw, msg in [({"temperature": 0}, "temperature must be > 0"), ({"temperature": -1.0}, "temperature"),
                    ({"top_p": 0.0}, r"top_p must be in \(0, 1\]"), ({"top_p": 1.5}, "top_p"),
                    ({"top_k": 0}, "top_k must be an integer >= 1"), ({"top_k": 1.5}, "top_k"),
                    ({"max_length": 0}, "max_length must be an integer >= 1"), ({"top_k": True}, "top_k")]:
        with pytest.raises(ConfigError, match=msg):
            m.sample(2, **kw)
        with pytest.raises(ConfigError, match=msg):
            check_sampling(**{"temperature": 1.0, **kw})
    with pytest.raises(ConfigError, match="start with id 0"):
        m.sample(2, prompt=torch.tensor([1, 2]))
    with pytest.raises(ConfigError, match="prompt ids"):
        m.sample(2, prompt=torch.tensor([0, V]))
    with pytest.raises(ConfigError, match="condition"):
        m.sample(2, condition={"x": torch.zeros(2, 1)})
    with pytest.raises(ConfigError, match="longer than the model's block_size"):
        GPT(Spec(extra={"vocab_size": V, "block_size": 8}), n_layer=1, n_head=1, n_embd=8, block_size=4)
    assert GPT(Spec(extra={"vocab_size": V, "block_size": 8}), n_layer=1, n_head=1, n_embd=8,
               block_size=16).wpe.num_embeddings == 16
    with pytest.raises(ConfigError, match="'lstm', 'gru'"):
        RNN(SPEC, cell="transformer")
    with pytest.raises(ConfigError, match="multiple of n_head"):
        GPT(SPEC, n_head=3, n_embd=16)
    for extra in ({"block_size": 4}, {"vocab_size": 1, "block_size": 4}, {"vocab_size": 5, "block_size": 0}):
        with pytest.raises(ConfigError, match="spec.extra"):
            RNN(Spec(extra=extra))
    for bad in ({"n_layer": 0}, {"dropout": 1.0}, {"bias": "yes"}):
        with pytest.raises(ConfigError):
            GPT(SPEC, **bad)


# ---------------------------------------------------------------- training and state

@pytest.mark.parametrize("name", ["gpt", "lstm"])
def test_learns_a_deterministic_language(name):
    """'abcabc...' after <s> (V = 4): every target is determined, so the loss must approach zero."""
    spec = Spec(extra={"vocab_size": 4, "block_size": 8})
    torch.manual_seed(0)
    m = GPT(spec, n_layer=2, n_head=2, n_embd=32) if name == "gpt" else RNN(spec, hidden=32, n_layers=1)
    L = 9
    lengths = torch.tensor([9, 9, 7, 5, 9, 3, 8, 9])
    tokens = torch.tensor([[0] + [1 + (i % 3) for i in range(L - 1)]] * len(lengths))
    tokens = tokens.masked_fill(torch.arange(L) >= lengths[:, None], 0)
    batch = {"tokens": tokens, "length": lengths}
    opt = torch.optim.AdamW(m.parameters(), lr=1e-2, weight_decay=0.0)
    m.train()
    for _ in range(150):
        opt.zero_grad()
        loss = m.loss(batch)
        loss.backward()
        opt.step()
    m.eval()
    with torch.no_grad():
        assert float(m.loss(batch)) < 0.02
    out = m.sample(4, generator=torch.Generator().manual_seed(0), max_length=8)
    assert (out["tokens"] == tokens[0]).all()


@pytest.mark.parametrize("name", list(FAMILIES))
def test_state_dict_round_trip(name):
    from safetensors.torch import save
    m = build(name, seed=3)
    state = m.state_dict()
    save({k: v.contiguous() for k, v in state.items()})    # no shared tensors (tied weights by F.linear)
    again = type(m)(m.spec, **m.config).eval()
    again.load_state_dict(state)
    batch = rows([9, 4, 6], seed=8)
    assert torch.equal(m.log_prob(batch), again.log_prob(batch))
    assert m.config == again.config


# ---------------------------------------------------------------- non-empty documents (molecules)

@pytest.mark.parametrize("name", ["gpt", "lstm"])
def test_nonempty_documents_renormalise_the_first_token(name):
    """spec.extra["nonempty"]: no end token right after the start; the other first tokens get
    p / (1 - p_end) of the same weights without the flag; later positions are unchanged; the mass over
    all sequences is still one; no sample is empty (the free model draws empty ones)."""
    spec = Spec(extra={"vocab_size": 3, "block_size": 2})
    free, m = build(name, spec), build(name, Spec(extra={**spec.extra, "nonempty": True}))
    first = {"tokens": torch.tensor([[0, t] for t in range(3)]), "length": torch.tensor([2, 2, 2])}
    with torch.no_grad():
        lp_free, lp = free.token_log_probs(first)[:, 0].double(), m.token_log_probs(first)[:, 0].double()
    assert lp[0] == -math.inf and 0.05 < float(lp_free[0].exp()) < 0.95
    assert torch.allclose(lp[1:], lp_free[1:] - torch.log1p(-lp_free[0].exp()), atol=1e-5)
    later = rows([7, 5, 6], seed=2, vocab=3)
    later["tokens"][:, 1] = 1
    with torch.no_grad():
        diff = m.token_log_probs(later)[:, 1:] - free.token_log_probs(later)[:, 1:]
    assert float(diff.abs().max()) < 1e-5
    K = 5
    seqs = [[0, *s, 0] for k in range(1, K) for s in itertools.product((1, 2), repeat=k)]
    seqs += [[0, *s] for s in itertools.product((1, 2), repeat=K)]
    L = max(map(len, seqs))
    batch = {"tokens": torch.tensor([s + [0] * (L - len(s)) for s in seqs]),
             "length": torch.tensor([len(s) for s in seqs])}
    with torch.no_grad():
        assert abs(float(m.log_prob(batch).exp().sum()) - 1.0) < 1e-5
    g = lambda: torch.Generator().manual_seed(0)
    assert int((free.sample(400, generator=g(), max_length=3)["length"] == 2).sum()) > 0
    assert int((m.sample(400, generator=g(), max_length=3)["length"] == 2).sum()) == 0
    m.train()
    loss = m.loss(later)                 # the masked logit keeps the graph intact
    loss.backward()
    assert math.isfinite(loss.detach().item())
