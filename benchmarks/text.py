#!/usr/bin/env python
"""Text benchmark (issue 6): genmodels' ``gpt`` against nanoGPT's CPU recipe, and the three text families.

Data: ``gm.datasets.load("shakespeare")``: train = the first 90% of the 5,057,198 characters, test =
the last 10% (505,720 characters). 84 distinct characters, all of them in the training text.

Part "speed". The baseline is a plain PyTorch loop of nanoGPT's ``train_shakespeare_char`` config
with its CPU overrides (README: ``--device=cpu --compile=False --block_size=64 --batch_size=12
--n_layer=4 --n_head=4 --n_embd=128 --max_iters=2000 --lr_decay_iters=2000 --dropout=0.0``): a GPT
of its own written here (pre-LayerNorm blocks without biases, learned positions, tied embeddings,
GPT-2 init; genmodels' GPT is not imported for it), a vocabulary of the 84 characters and nothing
else, each step a batch of 12 windows of 64 + 1 characters drawn uniformly from the training text,
AdamW (betas 0.9, 0.99; weight decay 0.1 on the matrices only), learning rate 1e-3 with 100 linear
warm-up steps then cosine decay to 1e-4 at step 2,000, gradient clipping at 1.0. Its 2,000 steps are
timed (wall time; nothing else inside the timed loop); it is evaluated afterwards. nanoGPT's log
for this recipe on this data and split: validation loss 1.8717 nats/char.

Then, in the same process under the same torch thread count, ``gm.Model("gpt", block_size=64,
**GM_SPEED)`` is fitted on the training text with ``max_time`` = half of the baseline's wall time
less 1.5 s and scored. The budget covers the whole fit (encoding, set-up, training); the 1.5 s leave
room for its last step and its final early-stopping validation, which come after the budget, so that
the whole fit's wall time, which is what is compared, stays within half. GM_SPEED (stated in the
report): a 2-layer GPT of the same width (half the work per token: at a budget of about a million
tokens the smaller model is the better use of the time), batch 16 at learning rate 1e-2 (with
genmodels' warm-up and cosine decay over the time budget), validation on 256 held-out windows; the
other settings are gpt's defaults.

Evaluation, identical for both ("validation loss", nats per character over the whole test text).
The test text is cut into the windows of genmodels' window factorisation: window w holds stream
positions 64 w .. 64 w + 64 (consecutive windows share one position) and predicts its last 64
positions, each from the earlier positions of its window, so every character is predicted from 1 to
64 earlier tokens, the context lengths of nanoGPT's random-window estimate. genmodels' stream starts
with its separator token (BOS), so its first window predicts the first character from BOS and its
last target is the end-of-text token: its number is exactly ``Model.log_prob(test) / len(test)``
(checked against a direct forward of its module over the same windows). The baseline has no BOS:
its windows hold the same characters, except that the first character (no context) is not scored;
its number is the mean over the other N - 1.

Part "families". Each family with its defaults and the codec's ``block_size=--block`` (128, the
codec's documented window for one long text, passed explicitly) fitted on the training text for
``--budget`` seconds (n-gram: closed form, as long as it takes, for several orders; the order with
the best held-out validation loss, inside the fit's 10% split, is the one reported) and scored on the test text with
``Model.log_prob`` (bits per character = nats / ln 2 / characters); three samples of 300 characters
each prompted with "ROMEO:" (temperature 0.8 for the neural families, 1.0 for the n-gram).

Usage: ``.venv/bin/python benchmarks/text.py [--only speed|families] [--budget 600] [--threads 1]``
(``make bench-text``). Results: benchmarks/results/text.md and .json. The machine is shared: its
load (``uptime``) is recorded before every run.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from _common import file_logger, report_only, uptime  # noqa: E402  (this folder is sys.path[0])
import genmodels as gm  # noqa: E402

BLOCK = 64
TARGET = 1.87                      # nats/char: what nanoGPT's CPU recipe reaches (1.8717)
NANOGPT_LOG = 1.8717
PROMPT = "ROMEO:"
OVERRUN = 1.5                      # s: max_time = half the baseline's time less this, so that the whole
                                   # fit (its last step and final validation come after the budget) fits in half

# nanoGPT's train_shakespeare_char.py with the README's CPU overrides (train.py defaults otherwise)
RECIPE = dict(n_layer=4, n_head=4, n_embd=128, block_size=BLOCK, batch_size=12, dropout=0.0, bias=False,
              learning_rate=1e-3, max_iters=2000, lr_decay_iters=2000, min_lr=1e-4, beta1=0.9, beta2=0.99,
              warmup_iters=100, weight_decay=0.1, grad_clip=1.0)

# genmodels' gpt in the speed part: its defaults plus these (stated in the report)
GM_SPEED = dict(block_size=BLOCK, n_layer=2, batch_size=16, lr=1e-2, val_rows=256)


# ---------------------------------------------------------------- the baseline: a small GPT of its own

class _Attention(nn.Module):
    def __init__(self, C: int, h: int, bias: bool):
        super().__init__()
        self.h = h
        self.c_attn = nn.Linear(C, 3 * C, bias=bias)
        self.c_proj = nn.Linear(C, C, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)
        q, k, v = (z.view(B, T, self.h, C // self.h).transpose(1, 2) for z in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.c_proj(y.transpose(1, 2).contiguous().view(B, T, C))


class _Block(nn.Module):
    def __init__(self, C: int, h: int, bias: bool):
        super().__init__()
        self.ln_1, self.ln_2 = nn.LayerNorm(C, bias=bias), nn.LayerNorm(C, bias=bias)
        self.attn = _Attention(C, h, bias)
        self.mlp = nn.Sequential(nn.Linear(C, 4 * C, bias=bias), nn.GELU(), nn.Linear(4 * C, C, bias=bias))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class BaselineGPT(nn.Module):
    """nanoGPT's model: token + position embeddings, pre-LN blocks, final LN, tied output layer."""

    def __init__(self, vocab: int, n_layer: int, n_head: int, n_embd: int, block_size: int, bias: bool):
        super().__init__()
        self.block_size = block_size
        self.wte = nn.Embedding(vocab, n_embd)
        self.wpe = nn.Embedding(block_size, n_embd)
        self.blocks = nn.ModuleList(_Block(n_embd, n_head, bias) for _ in range(n_layer))
        self.ln_f = nn.LayerNorm(n_embd, bias=bias)
        self.lm_head = nn.Linear(n_embd, vocab, bias=False)
        self.lm_head.weight = self.wte.weight                       # weight tying
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.normal_(m.weight, 0.0, 0.02)
            if isinstance(m, nn.Linear) and m.bias is not None:
                nn.init.zeros_(m.bias)
        for name, p in self.named_parameters():                     # GPT-2's scaled residual projections
            if name.endswith("c_proj.weight") or name.endswith("mlp.2.weight"):
                nn.init.normal_(p, 0.0, 0.02 / math.sqrt(2 * n_layer))

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        T = idx.shape[1]
        x = self.wte(idx) + self.wpe(torch.arange(T, device=idx.device))
        for b in self.blocks:
            x = b(x)
        return self.lm_head(self.ln_f(x))                           # (B, T, V) logits


def nanogpt_lr(it: int, r: dict) -> float:
    """nanoGPT's get_lr: linear warm-up, cosine decay to min_lr at lr_decay_iters."""
    if it < r["warmup_iters"]:
        return r["learning_rate"] * (it + 1) / (r["warmup_iters"] + 1)
    if it > r["lr_decay_iters"]:
        return r["min_lr"]
    ratio = (it - r["warmup_iters"]) / (r["lr_decay_iters"] - r["warmup_iters"])
    return r["min_lr"] + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (r["learning_rate"] - r["min_lr"])


def train_baseline(train_ids: np.ndarray, vocab: int, r: dict = RECIPE, seed: int = 0,
                   iters: int | None = None) -> tuple[BaselineGPT, float, list[float]]:
    """nanoGPT's loop; returns the model, the wall time of its iterations and the training losses."""
    torch.manual_seed(seed)
    model = BaselineGPT(vocab, r["n_layer"], r["n_head"], r["n_embd"], r["block_size"], r["bias"])
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": r["weight_decay"]},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=r["learning_rate"], betas=(r["beta1"], r["beta2"]))
    data = torch.from_numpy(train_ids)
    T, B = r["block_size"], r["batch_size"]
    offsets = torch.arange(T + 1)
    gen = torch.Generator().manual_seed(seed)
    losses = []
    model.train()
    t0 = time.perf_counter()
    for it in range(r["max_iters"] if iters is None else iters):
        for group in opt.param_groups:
            group["lr"] = nanogpt_lr(it, r)
        ix = torch.randint(len(data) - T, (B,), generator=gen)
        chunk = data[ix[:, None] + offsets]                          # (B, T + 1)
        x, y = chunk[:, :-1], chunk[:, 1:]
        logits = model(x)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), r["grad_clip"])
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(loss.item())
    return model, time.perf_counter() - t0, losses


# ---------------------------------------------------------------- the one evaluation

@torch.no_grad()
def window_nll(logits_fn, stream: np.ndarray, T: int = BLOCK, chunk: int = 256,
               no_bos: bool = False) -> tuple[float, int]:
    """Sum of -log p over the windows of ``stream`` (window w: positions w T .. w T + T, the last T
    predicted each from the earlier positions of the window) and the number of targets.
    ``logits_fn(x)`` gives (B, t, V) next-token logits for windows x (B, t). ``no_bos``: the stream
    lacks genmodels' leading BOS; its first window is then positions 0 .. T-1 (T-1 targets) and the
    next ones start at position T-1, so every window holds the same characters as genmodels' windows."""
    if no_bos:
        head, n_head = window_nll(logits_fn, stream[:T], T, chunk)
        tail, n_tail = window_nll(logits_fn, stream[T - 1:], T, chunk) if len(stream) > T else (0.0, 0)
        return head + tail, n_head + n_tail
    s = torch.from_numpy(stream.astype(np.int64))
    n_targets = len(s) - 1
    n_full = n_targets // T
    total = 0.0
    if n_full:
        starts = torch.arange(n_full) * T
        idx = starts[:, None] + torch.arange(T + 1)
        for i in range(0, n_full, chunk):
            w = s[idx[i:i + chunk]]
            lg = logits_fn(w[:, :-1]).float()
            total += float(F.cross_entropy(lg.reshape(-1, lg.shape[-1]), w[:, 1:].reshape(-1), reduction="sum"))
    rest = s[n_full * T:]
    if len(rest) > 1:
        lg = logits_fn(rest[None, :-1]).float()
        total += float(F.cross_entropy(lg[0], rest[1:], reduction="sum"))
    return total, n_targets


def char_ids(text: str, chars: list[str]) -> np.ndarray:
    table = np.array([ord(c) for c in chars], dtype=np.int64)
    cp = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32).astype(np.int64)
    return np.searchsorted(table, cp)



def gm_stream(model: gm.Model, text: str) -> np.ndarray:
    """genmodels' framed token stream of one text: [BOS, ids..., EOS]."""
    return np.concatenate([[0], model.codec_._ids([text])[0], [0]])


def score(model: gm.Model, text: str) -> dict:
    """Test nats and bits per character through Model.log_prob, and the scoring time."""
    t0 = time.perf_counter()
    nats = -float(model.log_prob(text)[0]) / len(text)
    return {"nats_per_char": nats, "bits_per_char": nats / math.log(2), "score_seconds": round(time.perf_counter() - t0, 1)}


def samples(model: gm.Model, temperature: float, n: int = 3, length: int = 300) -> list[str]:
    return model.sample(n, seed=0, prompt=PROMPT, max_length=length, temperature=temperature)


def first_reach(history: list[dict], target: float) -> dict | None:
    """The first validation inside fit at or below ``target`` (nats/token on its held-out windows)."""
    for h in history or []:
        if h["val"] <= target:
            return {"step": h["step"], "time": h["time"], "val": h["val"]}
    return None


# ---------------------------------------------------------------- part 1: speed against nanoGPT's recipe

def run_speed(data, threads: int, log, loads: list, gm_hp: dict) -> dict:
    chars = sorted(set(data.train))
    train_ids, test_ids = char_ids(data.train, chars), char_ids(data.test, chars)
    out = {"recipe": RECIPE, "vocab": len(chars)}

    loads.append(f"before the baseline: {uptime()}")
    log(loads[-1])
    model, secs, losses = train_baseline(train_ids, len(chars))
    model.eval()
    with torch.no_grad():
        tot, n = window_nll(model, test_ids, no_bos=True)
    out["baseline"] = {"seconds": round(secs, 2), "iters": RECIPE["max_iters"], "val_loss": tot / n,
                       "targets": n, "final_train_loss": float(np.mean(losses[-50:])),
                       "ms_per_iter": round(1000 * secs / RECIPE["max_iters"], 1)}
    log(f"baseline: {RECIPE['max_iters']} iterations in {secs:.1f}s, val loss {tot / n:.4f} nats/char")
    del model

    budget = secs / 2 - OVERRUN
    loads.append(f"before genmodels gpt: {uptime()}")
    log(loads[-1])
    hp = {"block_size": BLOCK, **gm_hp}
    t0 = time.perf_counter()
    m = gm.Model("gpt", num_threads=threads, seed=0, **hp).fit(data.train, max_time=budget, verbose=False)
    fit_secs = time.perf_counter() - t0
    s = score(m, data.test)
    with torch.no_grad():
        direct, n_direct = window_nll(lambda x: m.module_.step_logits(x, None)[0], gm_stream(m, data.test))
    cfg = {**m.module_.config}
    out["genmodels"] = {"hyperparameters": hp, "module_config": cfg, "train_defaults": type(m.module_).train_defaults,
                        "budget": round(budget, 2), "fit_seconds": round(fit_secs, 2), "steps": m.fit_info_["steps"],
                        "stopped": m.fit_info_["stopped"], "val_loss": s["nats_per_char"],
                        "val_loss_direct": direct / len(data.test), "targets": n_direct,
                        "best_inner_val": m.fit_info_["best_val_loss"],
                        "reached_inner": first_reach(m.history_, TARGET), "history": m.history_}
    g = out["genmodels"]
    log(f"genmodels gpt: budget {budget:.1f}s, fit {fit_secs:.1f}s, {g['steps']} steps, val loss "
        f"{g['val_loss']:.4f} nats/char (direct forward {g['val_loss_direct']:.4f})")
    out["ratio"] = fit_secs / secs
    out["met"] = bool(g["val_loss"] <= TARGET and fit_secs <= secs / 2)
    return out


# ---------------------------------------------------------------- part 2: each family for a budget

def run_families(data, threads: int, budget: float, orders: list[int], block: int, log, loads: list) -> dict:
    out = {"budget": budget, "block": block, "ngram_orders": {}, "families": {}}
    best = None
    for order in orders:
        loads.append(f"before ngram order {order}: {uptime()}")
        log(loads[-1])
        t0 = time.perf_counter()
        m = gm.Model("ngram", order=order, block_size=block, num_threads=threads, seed=0).fit(data.train, verbose=False)
        secs = time.perf_counter() - t0
        row = {"order": order, "fit_seconds": round(secs, 1), "inner_val_nll": m.fit_info_.get("val_nll"),
               **score(m, data.test)}
        out["ngram_orders"][order] = row
        log(f"ngram order {order}: fit {secs:.1f}s, held-out {row['inner_val_nll']:.4f} nats/token, "
            f"test {row['bits_per_char']:.4f} bits/char")
        if best is None or row["inner_val_nll"] < best[0]["inner_val_nll"]:
            best = (row, m)
        else:
            del m
    row, m = best
    out["families"]["ngram"] = {**row, "steps": None, "hyperparameters": {"order": row["order"]},
                                "temperature": 1.0, "samples": samples(m, 1.0)}
    del best, m
    for family in ("rnn", "gpt"):
        loads.append(f"before {family}: {uptime()}")
        log(loads[-1])
        t0 = time.perf_counter()
        m = gm.Model(family, block_size=block, num_threads=threads, seed=0).fit(data.train, max_time=budget, verbose=False)
        secs = time.perf_counter() - t0
        row = {"fit_seconds": round(secs, 1), "steps": m.fit_info_["steps"], "stopped": m.fit_info_["stopped"],
               "module_config": dict(m.module_.config), "block": m.codec_.block_,
               "train_defaults": type(m.module_).train_defaults, **score(m, data.test),
               "temperature": 0.8, "samples": samples(m, 0.8)}
        out["families"][family] = row
        log(f"{family}: fit {secs:.1f}s, {row['steps']} steps, test {row['bits_per_char']:.4f} bits/char")
    return out


# ---------------------------------------------------------------- report

def render(payload: dict) -> str:
    meta = payload["meta"]
    out = ["# Text: genmodels vs nanoGPT's CPU recipe, and the three text families (shakespeare)", "",
           f"Run {meta['started']} to {meta.get('finished', '?')}; {meta['machine']}; torch threads "
           f"{meta['threads']} (both sides of every comparison in one process, one after the other).",
           f"Command: `{meta['command']}`", "",
           "Data: `gm.datasets.load(\"shakespeare\")`, train = first 90% of 5,057,198 characters "
           "(4,551,478), test = last 10% (505,720).", ""]
    out += ["Machine load (`uptime`) before each run:", ""] + [f"- {line}" for line in meta.get("load", [])] + [""]
    sp = payload.get("speed")
    if sp:
        b, g = sp["baseline"], sp["genmodels"]
        hp = ", ".join(f"{k}={v}" for k, v in g["hyperparameters"].items())
        cfg = ", ".join(f"{k}={v}" for k, v in g["module_config"].items())
        td = ", ".join(f"{k}={v}" for k, v in g["train_defaults"].items())
        reach = g.get("reached_inner")
        reach_s = (f"step {reach['step']}, {reach['time']:.0f} s into the fit (held-out val {reach['val']:.4f})"
                   if reach else "not within the budget")
        out += ["## Speed: genmodels `gpt` against a plain PyTorch loop of nanoGPT's CPU recipe", "",
                "Validation loss = mean NLL in nats per character over the whole test text, windows of 64 "
                "targets (each character predicted from 1..64 earlier tokens of its window; module docstring). "
                f"nanoGPT's own log for this recipe, data and split: {NANOGPT_LOG}.", "",
                "| | wall time | steps | tokens per step | val loss (nats/char) |",
                "|---|---|---|---|---|",
                f"| baseline (nanoGPT recipe, own PyTorch loop) | {b['seconds']:.1f} s ({b['ms_per_iter']} ms/step) | "
                f"{b['iters']} | 12 x 64 | {b['val_loss']:.4f} |",
                f"| genmodels `gpt`, max_time = {g['budget']:.1f} s | {g['fit_seconds']:.1f} s (whole fit) | "
                f"{g['steps']} | {g['hyperparameters'].get('batch_size', g['train_defaults'].get('batch_size'))} x 64 | "
                f"{g['val_loss']:.4f} |", "",
                f"- genmodels call: `gm.Model(\"gpt\", {hp}, num_threads={meta['threads']}, seed=0)"
                f".fit(train, max_time={g['budget']:.1f})`; module config: {cfg}; train_defaults: {td}.",
                f"- Same number by a direct forward of the module over the same windows: "
                f"{g['val_loss_direct']:.6f} (Model.log_prob: {g['val_loss']:.6f}).",
                f"- Inner validation (fit's own held-out split) first at or below {TARGET}: {reach_s}.",
                f"- Ratio of wall times (genmodels fit / baseline): **{sp['ratio']:.2f}**. Target (val loss <= "
                f"{TARGET} within half the baseline's wall time): **{'met' if sp['met'] else 'missed'}**.", ""]
    fam = payload.get("families")
    if fam:
        out += [f"## Families: test bits per character after a {fam['budget']:.0f} s budget", "",
                "| family | settings | bits/char | nats/char | train time | steps | scoring time |",
                "|---|---|---|---|---|---|---|"]
        for name, r in fam["families"].items():
            sett = (f"order {r['order']} (best held-out of {', '.join(str(o) for o in fam['ngram_orders'])})"
                    if name == "ngram" else "defaults, block " + str(r["block"]))
            out.append(f"| {name} | {sett} | {r['bits_per_char']:.4f} | {r['nats_per_char']:.4f} | "
                       f"{r['fit_seconds']:.0f} s | {r['steps'] if r['steps'] is not None else 'closed form'} | "
                       f"{r['score_seconds']:.0f} s |")
        out += ["", "n-gram orders tried (modified interpolated Kneser-Ney; held-out = the fit's 10% split of "
                "training windows, nats/token):", "",
                "| order | fit time | held-out nats/token | test bits/char |", "|---|---|---|---|"]
        for o, r in fam["ngram_orders"].items():
            out.append(f"| {o} | {r['fit_seconds']:.0f} s | {r['inner_val_nll']:.4f} | {r['bits_per_char']:.4f} |")
        for name in ("rnn", "gpt"):
            if name in fam["families"]:
                r = fam["families"][name]
                out.append("")
                out.append(f"{name}: module config {r['module_config']}; train_defaults {r['train_defaults']}; "
                           f"stopped by {r['stopped']}.")
        out += ["", f"### Samples (prompt {PROMPT!r}, 300 new characters, seed 0)", ""]
        for name, r in fam["families"].items():
            out += [f"**{name}** (temperature {r['temperature']}):", ""]
            for i, s in enumerate(r["samples"]):
                out += [f"Sample {i + 1}:", "", "```", s, "```", ""]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--only", choices=["speed", "families"], default=None, help="run one part only")
    p.add_argument("--budget", type=float, default=600.0, help="seconds per family in the families part")
    p.add_argument("--threads", type=int, default=1, help="torch threads for every run (both sides)")
    p.add_argument("--block", type=int, default=128, help="codec block_size (context) in the families part")
    p.add_argument("--orders", default="3,4,5,6,7,8", help="n-gram orders tried")
    p.add_argument("--out", default="benchmarks/results/text")
    p.add_argument("--report-only", action="store_true")
    a = p.parse_args(argv)
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if a.report_only:
        return report_only(out, render)
    torch.set_num_threads(a.threads)
    log = file_logger(out.with_suffix(".log"))

    meta = {"started": _dt.datetime.now().isoformat(timespec="seconds"), "threads": a.threads,
            "machine": f"{platform.platform()}, {os.cpu_count()} CPU cores, no GPU, shared; torch {torch.__version__}",
            "command": " ".join([".venv/bin/python", "benchmarks/text.py", *(argv if argv is not None else sys.argv[1:])]),
            "load": []}
    log(f"command: {meta['command']}")
    data = gm.datasets.load("shakespeare")
    payload: dict = {"meta": meta}
    if a.only in (None, "speed"):
        payload["speed"] = run_speed(data, a.threads, log, meta["load"], GM_SPEED)
    if a.only in (None, "families"):
        payload["families"] = run_families(data, a.threads, a.budget, [int(o) for o in a.orders.split(",")],
                                           a.block, log, meta["load"])
    meta["finished"] = _dt.datetime.now().isoformat(timespec="seconds")
    meta["load"].append(f"at the end: {uptime()}")
    out.with_suffix(".json").write_text(json.dumps(payload, indent=1, default=str))
    out.with_suffix(".md").write_text(render(payload))
    print(out.with_suffix(".md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
