"""NGram family (modified interpolated Kneser-Ney): probabilities against hand computations and a slow
dictionary-based reference written from the formulas, exact normalisation, state_dict round trip,
sampling from the distribution that log_prob scores, and bad input."""
from __future__ import annotations

import itertools
import math
from collections import Counter, defaultdict

import pytest
import torch

from genmodels import checkpoint
from genmodels.core import Spec
from genmodels.errors import ConfigError, DataError
from genmodels.families.ngram import NGram, kn_discounts
from genmodels.nets.sequence import SequenceModule

torch.set_num_threads(1)


def spec(V: int, T: int) -> Spec:
    return Spec(extra={"vocab_size": V, "block_size": T})


def batch(rows: list[list[int]]) -> dict:
    L = max(len(r) for r in rows)
    tokens = torch.zeros(len(rows), L, dtype=torch.long)
    for i, r in enumerate(rows):
        tokens[i, :len(r)] = torch.tensor(r)
    return {"tokens": tokens, "length": torch.tensor([len(r) for r in rows])}


def random_rows(n: int, V: int, max_len: int, seed: int) -> list[list[int]]:
    """Documents [0, t1, ..., 0] over a skewed alphabet (so counts repeat), some truncated (no EOS)."""
    g = torch.Generator().manual_seed(seed)
    weights = torch.tensor([1.0 / (i + 1) for i in range(V - 1)])
    rows = []
    for _ in range(n):
        k = int(torch.randint(1, max_len, (1,), generator=g))
        body = (torch.multinomial(weights, k, replacement=True, generator=g) + 1).tolist()
        rows.append([0] + body + ([0] if torch.rand(1, generator=g) < 0.7 else []))
    return rows


# ---------------------------------------------------------------- the slow, obvious reference

S = "S"      # the window-start mark


def ref_context(row: list[int], j: int, T: int, N: int) -> tuple:
    ws = (j - 1) // T * T
    ctx = tuple(row[max(ws, j - N + 1):j])
    return ((S,) + ctx) if j - ws < N - 1 else ctx


def ref_discounts(adjusted: list[int], fixed: float | None) -> tuple[float, float, float]:
    if fixed is not None:
        return fixed, fixed, fixed
    n = {i: sum(1 for a in adjusted if a == i) for i in (1, 2, 3, 4)}
    if n[1] == 0 or n[2] == 0 or n[3] == 0:
        return 0.5, 1.0, 1.5
    Y = n[1] / (n[1] + 2 * n[2])
    D = (1 - 2 * Y * n[2] / n[1], 2 - 3 * Y * n[3] / n[2], 3 - 4 * Y * n[4] / n[3])
    return D if 0 < D[0] <= 1 and 0 < D[1] <= 2 and 0 < D[2] <= 3 else (0.5, 1.0, 1.5)


class Reference:
    """Interpolated (modified) Kneser-Ney with dictionaries, straight from the formulas."""

    def __init__(self, rows: list[list[int]], V: int, T: int, N: int, discount: float | None = None):
        self.V, self.T, self.N = V, T, N
        raw = Counter()                                  # top n-grams: S-initial or of length N
        left = defaultdict(set)                          # gram -> its distinct left neighbours
        for row in rows:
            for j in range(1, len(row)):
                gram = ref_context(row, j, T, N) + (row[j],)
                raw[gram] += 1
                for s in range(len(gram) - 1):
                    left[gram[s + 1:]].add(gram[s])
        self.a = dict(raw)
        for g, xs in left.items():
            if g not in self.a:                          # lower orders: continuation counts
                self.a[g] = len(xs)
        tables = defaultdict(list)                       # (S-initial, length) -> adjusted counts
        for g, a in self.a.items():
            tables[(g[0] == S, len(g))].append(a)
        self.D = {t: ref_discounts(c, discount) for t, c in tables.items()}

    def prob(self, w: int, ctx: tuple) -> float:
        lower = self.prob(w, ctx[1:]) if ctx else 1.0 / self.V
        follow = {v: self.a.get(ctx + (v,), 0) for v in range(self.V)}
        A = sum(follow.values())
        if A == 0:
            return lower
        D1, D2, D3 = self.D[(bool(ctx) and ctx[0] == S, len(ctx) + 1)]
        disc = {v: (D1 if a == 1 else D2 if a == 2 else D3) for v, a in follow.items() if a > 0}
        gamma = sum(disc.values()) / A
        return max(follow[w] - disc.get(w, 0.0), 0.0) / A + gamma * lower

    def log_prob(self, row: list[int]) -> float:
        return sum(math.log(self.prob(row[j], ref_context(row, j, self.T, self.N))) for j in range(1, len(row)))


# ---------------------------------------------------------------- hand computations

def test_unigram_by_hand():
    # targets 1, 1, 2, 0: counts 2, 1, 1 (and 0 for id 3); n1 = 2, n2 = 1, n3 = 0 -> fall-back D = (0.5, 1, 1.5)
    # gamma = (0.5 * 2 + 1.0 * 1) / 4 = 0.5; p(w) = max(c - D, 0) / 4 + 0.5 / 4
    m = NGram(spec(4, 8), order=1)
    m.fit_closed_form(batch([[0, 1, 1, 2, 0]]))
    expected = torch.tensor([0.25, 0.375, 0.25, 0.125], dtype=torch.float64)
    logp, _ = m.step_logits(torch.tensor([[0, 3, 2]]), None)
    assert torch.allclose(logp[0].exp(), expected.expand(3, 4), atol=1e-15)
    lp = m.log_prob(batch([[0, 1, 3, 0]]))
    assert lp.dtype == torch.float64 and abs(float(lp[0]) - math.log(0.375 * 0.125 * 0.25)) < 1e-12


def test_bigram_fixed_discount_by_hand():
    # corpus 0 1 2 1 0 (one window), D = 0.5. Bigrams (0,1) (1,2) (2,1) (1,0) once each.
    # unigram continuation counts: 1 <- {0, 2}: 2; 2 <- {1}: 1; 0 <- {1}: 1; A = 4, gamma = 1.5 / 4
    #   p1 = (1.5/4 + 0.125, 0.5/4 + 0.125, ...) = (0: 0.25, 1: 0.5, 2: 0.25)
    # context 1: a(1 2) = a(1 0) = 1, A = 2, gamma = 0.5: p(0|1) = 0.25 + 0.125, p(1|1) = 0.25, p(2|1) = 0.375
    # context 0 (and 2): a = 1 for 1, A = 1, gamma = 0.5: p(1|0) = 0.5 + 0.25 = 0.75
    m = NGram(spec(3, 8), order=2, discount=0.5)
    m.fit_closed_form(batch([[0, 1, 2, 1, 0]]))
    logp, _ = m.step_logits(torch.tensor([[0, 1]]), None)
    assert torch.allclose(logp[0, 1].exp(), torch.tensor([0.375, 0.25, 0.375], dtype=torch.float64), atol=1e-15)
    assert torch.allclose(logp[0, 0].exp(), torch.tensor([0.125, 0.75, 0.125], dtype=torch.float64), atol=1e-15)
    lp = float(m.log_prob(batch([[0, 1, 2, 1, 0]]))[0])
    assert abs(lp - math.log(0.75 * 0.375 * 0.75 * 0.375)) < 1e-12


def test_modified_discounts_from_count_of_counts():
    # n1 = 4, n2 = 2, n3 = 2, n4 = 1: Y = 4 / 8; D1 = 1 - 2 Y 2/4 = 0.5, D2 = 2 - 3 Y 2/2 = 0.5, D3+ = 3 - 4 Y 1/2 = 2
    counts = torch.tensor([1, 1, 1, 1, 2, 2, 3, 3, 4, 7])
    assert kn_discounts(counts) == pytest.approx((0.5, 0.5, 2.0))
    assert kn_discounts(torch.tensor([1, 1, 2, 5])) == (0.5, 1.0, 1.5)      # no count of 3: fall-back
    assert kn_discounts(counts, fixed=0.3) == (0.3, 0.3, 0.3)


# ---------------------------------------------------------------- against the reference

@pytest.mark.parametrize("order,discount", [(1, None), (2, None), (3, None), (4, None), (5, None),
                                            (3, 0.7), (4, 0.25)])
def test_log_prob_equals_reference(order, discount):
    V, T = 6, 4
    train = random_rows(60, V, 12, seed=order)           # many rows longer than T + 1: several windows
    test = random_rows(15, V, 14, seed=100 + order) + [[0, 5, 5, 5, 5, 5, 5, 0], [0, 0]]
    ref = Reference(train, V, T, order, discount)
    m = NGram(spec(V, T), order=order, discount=discount)
    info = m.fit_closed_form(batch(train), batch(test))
    got = m.log_prob(batch(test))
    want = torch.tensor([ref.log_prob(r) for r in test], dtype=torch.float64)
    assert torch.allclose(got, want, rtol=0, atol=1e-10)
    n_test = sum(len(r) - 1 for r in test)
    assert info["val_nll"] == pytest.approx(-float(want.sum()) / n_test, abs=1e-10)
    # the full next-token distribution after random fresh-window contexts (seen and unseen)
    g = torch.Generator().manual_seed(order)
    for t in (1, 2, 3, 5):
        ctx = torch.randint(V, (4, t), generator=g)
        probs = m.step_logits(ctx, None)[0][:, -1].exp()
        for b in range(4):
            c = ctx[b].tolist()
            c = ((S,) if t < order - 1 else ()) + tuple(c[max(0, t - order + 1):])
            want = torch.tensor([ref.prob(v, c) for v in range(V)], dtype=torch.float64)
            assert torch.allclose(probs[b], want, rtol=0, atol=1e-12)


@pytest.mark.parametrize("order", [1, 3, 5])
def test_fit_stats_and_loss(order):
    V, T = 7, 6
    train, val = batch(random_rows(80, V, 10, seed=1)), batch(random_rows(30, V, 10, seed=2))
    m = NGram(spec(V, T), order=order)
    info = m.fit_closed_form(train)
    assert set(info) == {"train_nll", "ngrams"} and all(isinstance(v, float) for v in info.values())
    n = int((train["length"] - 1).sum())
    assert info["train_nll"] == pytest.approx(-float(m.log_prob(train).sum()) / n, rel=1e-12)
    assert float(m.loss(train)) == pytest.approx(info["train_nll"], rel=1e-12)
    assert "val_nll" in m.fit_closed_form(train, val)
    # the fast gather agrees with the base class's scoring through step_logits (windows of T + 1)
    long = batch(random_rows(5, V, 25, seed=3))
    assert torch.allclose(m.token_log_probs(long), SequenceModule.token_log_probs(m, long), atol=1e-12)


# ---------------------------------------------------------------- normalisation

@pytest.mark.parametrize("order", [1, 2, 3, 4, 6])
def test_distribution_normalised_and_positive(order):
    V, T = 9, 7
    m = NGram(spec(V, T), order=order)
    train = random_rows(120, V, 9, seed=order)
    m.fit_closed_form(batch(train))
    g = torch.Generator().manual_seed(0)
    seen = torch.tensor([r[:T] + [0] * (T - len(r[:T])) for r in train[:20]])
    unseen = torch.randint(V, (20, T), generator=g)
    for ctx in (seen, unseen):
        for t in range(1, T + 1):
            p = m.step_logits(ctx[:, :t], None)[0].exp()                      # (20, t, V)
            assert p.dtype == torch.float64
            assert (p.sum(-1) - 1).abs().max() < 1e-9
            assert (p > 0).all()
    # continuing through the cache gives the same distributions as one fresh pass
    full, _ = m.step_logits(unseen, None)
    a, cache = m.step_logits(unseen[:, :2], None)
    b, cache = m.step_logits(unseen[:, 2:3], cache)
    c, _ = m.step_logits(unseen[:, 3:], cache)
    assert torch.allclose(torch.cat([a, b, c], 1), full, atol=1e-14)


def test_unfitted_model_is_uniform():
    m = NGram(spec(5, 4), order=3)
    b = batch([[0, 1, 2, 3, 4, 1, 0], [0, 2]])
    assert torch.allclose(m.log_prob(b), torch.tensor([-6 * math.log(5), -math.log(5)], dtype=torch.float64))


# ---------------------------------------------------------------- storage

def test_state_dict_round_trip(tmp_path):
    V, T = 8, 5
    m = NGram(spec(V, T), order=4)
    m.fit_closed_form(batch(random_rows(50, V, 9, seed=4)))
    probe = batch(random_rows(10, V, 15, seed=5))
    want = m.log_prob(probe)
    checkpoint.save(tmp_path / "m", {"module_config": m.config}, {"model": m.state_dict()})
    fresh = NGram(spec(V, T), **checkpoint.read_config(tmp_path / "m")["module_config"])
    fresh.load_state_dict(checkpoint.load(tmp_path / "m", "model"))
    assert torch.equal(fresh.log_prob(probe), want)
    other = NGram(spec(V, T), **m.config)                   # fitted on other data: tables of other sizes
    other.fit_closed_form(batch(random_rows(5, V, 4, seed=6)))
    other.load_state_dict(m.state_dict())
    assert torch.equal(other.log_prob(probe), want)
    assert m.config == {"order": 4, "discount": None}


# ---------------------------------------------------------------- sampling

def test_sampling_draws_what_log_prob_scores():
    # V = 3, T = 2, up to 3 new tokens: every possible output row enumerated, crossing a window boundary
    V, T, order = 3, 2, 3
    m = NGram(spec(V, T), order=order)
    m.fit_closed_form(batch([[0, 1, 2], [0, 2, 2, 1, 0], [0, 1, 0], [0, 1, 1, 2, 0]]))
    rows = [[0] + list(t[:t.index(0) + 1] if 0 in t else t) for t in itertools.product(range(V), repeat=3)]
    rows = [list(r) for r in {tuple(r) for r in rows}]
    exact = m.log_prob(batch(rows)).exp()
    assert float(exact.sum()) == pytest.approx(1.0, abs=1e-12)
    n = 6000
    out = m.sample(n, generator=torch.Generator().manual_seed(0), max_length=3)
    drawn = Counter(tuple(r[:k].tolist()) for r, k in zip(out["tokens"], out["length"]))
    freq = torch.tensor([drawn[tuple(r)] / n for r in rows], dtype=torch.float64)
    assert sum(drawn.values()) == n and set(drawn) <= {tuple(r) for r in rows}
    assert float((freq - exact).abs().sum()) / 2 < 0.03                     # total variation
    again = m.sample(n, generator=torch.Generator().manual_seed(0), max_length=3)
    assert torch.equal(again["tokens"], out["tokens"])


def test_sample_with_prompt_and_filters():
    V, T = 6, 4
    m = NGram(spec(V, T), order=3)
    m.fit_closed_form(batch(random_rows(40, V, 8, seed=7)))
    out = m.sample(5, generator=torch.Generator().manual_seed(1), prompt=torch.tensor([0, 3, 3]),
                   max_length=9, temperature=0.7, top_k=2)
    assert (out["tokens"][:, :3] == torch.tensor([0, 3, 3])).all()
    assert torch.isfinite(m.log_prob(out)).all()


# ---------------------------------------------------------------- bad input

def test_config_errors():
    with pytest.raises(ConfigError, match="order must be an integer >= 1"):
        NGram(spec(5, 4), order=0)
    with pytest.raises(ConfigError, match="order"):
        NGram(spec(5, 4), order=2.5)
    for bad in (0, 1, 1.5, -0.1, True, "0.5"):
        with pytest.raises(ConfigError, match="discount"):
            NGram(spec(5, 4), discount=bad)
    # 1000 ** 6 = 1e18 < 2 ** 62 < 1000 ** 7
    with pytest.raises(ConfigError, match="largest order allowed is 6"):
        NGram(spec(1000, 8), order=7)
    NGram(spec(1000, 8), order=6)
    with pytest.raises(ConfigError, match="vocab_size"):
        NGram(Spec(extra={"block_size": 4}))


def test_data_errors():
    m = NGram(spec(4, 4), order=2)
    with pytest.raises(DataError, match="token ids"):
        m.fit_closed_form(batch([[0, 1, 7, 0]]))
    with pytest.raises(DataError, match="no targets"):
        m.fit_closed_form({"tokens": torch.zeros(3, 1, dtype=torch.long), "length": torch.ones(3, dtype=torch.long)})
    with pytest.raises(DataError, match="length"):
        m.log_prob({"tokens": torch.zeros(2, 3, dtype=torch.long), "length": torch.tensor([2, 5])})


def test_nonempty_documents_renormalise_the_first_token():
    # trained on data with empty documents: the free model gives [0, 0] mass, the nonempty one none
    V, T, order = 3, 2, 3
    data = batch([[0, 0], [0, 0], [0, 1, 2], [0, 2, 2, 1, 0], [0, 1, 0]])
    free = NGram(spec(V, T), order=order)
    free.fit_closed_form(data)
    m = NGram(Spec(extra={"vocab_size": V, "block_size": T, "nonempty": True}), order=order)
    m.fit_closed_form(data)
    lp_free, lp = free.token_log_probs(batch([[0, 0], [0, 1], [0, 2]]))[:, 0], m.token_log_probs(batch([[0, 0], [0, 1], [0, 2]]))[:, 0]
    assert lp[0] == -math.inf and float(lp_free[0].exp()) > 0.2
    assert torch.allclose(lp[1:], lp_free[1:] - torch.log1p(-lp_free[0].exp()), atol=1e-12)
    rows = [[0] + list(t[:t.index(0) + 1] if 0 in t else t) for t in itertools.product(range(V), repeat=3)]
    rows = [list(r) for r in {tuple(r) for r in rows} if r != (0, 0)]
    assert float(m.log_prob(batch(rows)).exp().sum()) == pytest.approx(1.0, abs=1e-12)
    g = lambda: torch.Generator().manual_seed(0)
    assert int((free.sample(500, generator=g(), max_length=3)["length"] == 2).sum()) > 0
    assert int((m.sample(500, generator=g(), max_length=3)["length"] == 2).sum()) == 0
