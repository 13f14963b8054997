"""Molecule generation on MOSES: a model trained for at most ``--budget`` seconds, 10,000 samples, the
MOSES metrics against MOSES's test set, next to MOSES's published CharRNN row.

For each representation (SMILES, SELFIES), in its own process on ``--threads`` torch threads (``--jobs``
at a time): ``gm.Model(family, modality="molecule", representation=R)`` fitted on a seeded subset of
``--size`` training molecules for ``--budget`` seconds, ``--samples`` molecules drawn (timed) at each
sampling temperature of ``--temperatures`` (with ``--canonical-only`` also by rejection sampling,
``canonical_only=True``: only strings that are the canonical string of their molecule are kept; the
acceptance rate is reported; ``--reuse`` evaluates the saved models again), and
``genmodels.metrics.molecule.evaluate_molecules`` against MOSES's own precomputed statistics of its
test set (``genmodels.moses.test_stats``: the same reference the published numbers use), novelty
against the whole MOSES training set (stricter than against the subset), FCD of ``--fcd-sample``
generated molecules. The published row (Polykovskiy et al. 2020, CharRNN trained on a GPU on the full set):
valid 0.975, unique@10k 0.999, FCD/Test 0.073, SNN/Test 0.602, IntDiv 0.856, novelty 0.842.

    .venv/bin/python benchmarks/molecules.py --budget 1800 --size 300000 --family rnn --jobs 1 --threads 2 \\
        --temperatures 1.0,0.9 --out benchmarks/results/molecules

The defaults (the LSTM with its own defaults, one model at a time on 2 threads) are the setting that met
every target on SMILES (BENCHMARKS.md, "Molecules on MOSES").
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from _common import uptime  # noqa: E402  (this folder is sys.path[0])

PUBLISHED = {"valid": 0.975, "unique@10000": 0.999, "FCD/Test": 0.073, "SNN/Test": 0.602, "IntDiv1": 0.856,
             "novelty": 0.842}
TARGETS = {"valid": (">=", {"smiles": 0.95, "selfies": 1.0}), "unique@10000": (">=", 0.99),
           "novelty": (">=", 0.85), "FCD/Test": ("<=", 1.0)}
COLUMNS = ("valid", "unique@1000", "unique@10000", "novelty", "IntDiv1", "IntDiv2", "FCD/Test", "SNN/Test",
           "Frag/Test", "Scaf/Test", "Filters", "logP", "SA", "QED", "weight")


def run_one(rep: str, args: argparse.Namespace, out: Path) -> dict:
    import genmodels as gm
    from genmodels import moses
    from genmodels.metrics.molecule import evaluate_molecules
    torch.set_num_threads(args.threads)
    d = gm.datasets.load("moses", size=args.size, seed=0)
    load_before = uptime()
    saved = out / f"model-{rep}"
    if args.reuse and saved.exists():             # evaluate a model this script trained and saved before
        m = gm.load(saved)
        m.num_threads = args.threads
    else:
        m = gm.Model(args.family, modality="molecule", representation=rep, seed=0, num_threads=args.threads,
                     **json.loads(args.hyper))
        m.fit(d.train, max_time=args.budget, verbose=False)
        m.save(saved)
    evals = []
    train, stats = moses.smiles("train"), moses.test_stats("test")
    for temperature in args.temperatures:
        for canonical_only in (False, True) if args.canonical_only else (False,):
            t = time.monotonic()
            samples = m.sample(args.samples, seed=1, temperature=temperature, canonical_only=canonical_only)
            sample_s = time.monotonic() - t
            name = f"samples-{rep}-T{temperature:g}{'-canonical' if canonical_only else ''}.txt"
            (out / name).write_text("".join(f"{s if s else '<invalid>'}\n" for s in samples))
            t = time.monotonic()
            metrics = evaluate_molecules(samples, train=train, test_stats=stats, fcd_sample=args.fcd_sample, seed=0,
                                         train_canonical=True)
            evals.append({"temperature": temperature, "canonical_only": canonical_only, "sample_s": round(sample_s, 1),
                          "kept": m.sample_stats_["kept"] / m.sample_stats_["drawn"],
                          "metrics_s": round(time.monotonic() - t, 1), "metrics": metrics, "examples": samples[:12]})
    lp = m.log_prob(d.test[:2000])
    return {"representation": rep, "family": m.family, "hyper": m.hyperparameters, "budget_s": args.budget,
            "train_molecules": len(d.train), "fit_info": m.fit_info_, "module_config": m.module_.config,
            "vocab_size": m.codec_.spec().extra["vocab_size"], "block_size": m.codec_.spec().extra["block_size"],
            "test_nats_per_molecule_bound": float(-lp.mean()), "evals": evals, "reused": bool(args.reuse),
            "uptime_before": load_before, "uptime_after": uptime()}


def _label(r: dict, e: dict) -> str:
    canonical = f", canonical only, kept {e['kept']:.3f}" if e.get("canonical_only") else ""
    return f"{r['representation']}, T={e['temperature']:g}{canonical}"


def _fmt(v) -> str:
    return "n/a" if v is None else (f"{v:.3f}" if isinstance(v, float) else str(v))


def report(out: Path, args: argparse.Namespace, started: str, results: list[dict]) -> str:
    lines = ["# Molecules: MOSES metrics of a CPU-trained generator", "",
             f"Run {started} to {_dt.datetime.now().isoformat(timespec='seconds')}; {platform.platform()}, "
             f"{os.cpu_count()} CPU cores, no GPU, shared; {args.threads} torch thread(s) per model, {args.jobs} model(s) "
             "at a time.",
             f"Command: `{' '.join([Path(sys.executable).name, *sys.argv])}`", "",
             f"Each model: `{args.family}` fitted for {args.budget:.0f} s on a seeded subset of {args.size:,} MOSES "
             f"training molecules, {args.samples:,} samples; metrics against MOSES's precomputed statistics of its test "
             f"set (176,074 molecules; FCD of at most {args.fcd_sample:,} generated molecules), novelty against the "
             "whole MOSES training set (1,584,663).", "",
             "| model | " + " | ".join(COLUMNS) + " |", "|---|" + "---|" * len(COLUMNS)]
    for r in results:
        for e in r["evals"]:
            lines.append(f"| genmodels {r['family']} ({_label(r, e)}) | "
                         + " | ".join(_fmt(e["metrics"].get(c)) for c in COLUMNS) + " |")
    lines.append("| MOSES CharRNN (published, GPU, full set) | "
                 + " | ".join(_fmt(PUBLISHED.get(c)) for c in COLUMNS) + " |")
    lines += ["", "| model | steps | epochs | sample 10k (s) | metrics (s) | test nats/molecule (bound) | "
                  "vocab | block | uptime before fit |", "|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        fi = r["fit_info"]
        lines.append(f"| {r['representation']} | {fi.get('steps')} | {fi.get('epochs')} | "
                     f"{' / '.join(str(e['sample_s']) for e in r['evals'])} | "
                     f"{' / '.join(str(e['metrics_s']) for e in r['evals'])} | {r['test_nats_per_molecule_bound']:.2f} | "
                     f"{r['vocab_size']} | {r['block_size']} | {r['uptime_before']} |")
    lines += ["", "Targets:", ""]
    for r in results:
        for e in r["evals"]:
            for key, (op, goal) in TARGETS.items():
                g = goal[r["representation"]] if isinstance(goal, dict) else goal
                v = e["metrics"].get(key)
                if key == "valid" and e.get("canonical_only"):
                    lines.append(f"- {_label(r, e)} {key}: not a target here (a kept sample is valid by "
                                 "construction; read validity from plain sampling)")
                    continue
                ok = v is not None and (v >= g if op == ">=" else v <= g)
                lines.append(f"- {_label(r, e)} {key} {op} {g}: {_fmt(v)} "
                             f"({'met' if ok else '**missed**'})")
    lines += ["", "First samples:", ""]
    for r in results:
        e = r["evals"][0]
        lines.append(f"- {r['representation']} (T={e['temperature']:g}): "
                     + ", ".join(f"`{s}`" if s else "None" for s in e["examples"]))
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--budget", type=float, default=1800)
    p.add_argument("--size", type=int, default=300_000)
    p.add_argument("--samples", type=int, default=10_000)
    p.add_argument("--fcd-sample", type=int, default=10_000)
    p.add_argument("--family", default="rnn")
    p.add_argument("--hyper", default="{}", help="JSON hyper-parameters for the model")
    p.add_argument("--representations", default="smiles,selfies")
    p.add_argument("--jobs", type=int, default=1)
    p.add_argument("--threads", type=int, default=2, help="torch threads per model")
    p.add_argument("--temperatures", type=lambda v: [float(t) for t in v.split(",")], default=[1.0],
                   help="sampling temperatures, each with its own 10,000 samples and metrics (e.g. 1.0,0.8)")
    p.add_argument("--canonical-only", action="store_true",
                   help="also sample with canonical_only=True (rejection of non-canonical strings) at each temperature")
    p.add_argument("--reuse", action="store_true", help="evaluate the models saved in --out instead of fitting")
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "molecules"))
    p.add_argument("--one", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.one:
        result = run_one(args.one, args, out)
        (out / f"{args.one}.json").write_text(json.dumps(result, indent=1, default=str))
        return
    started = _dt.datetime.now().isoformat(timespec="seconds")
    reps = [r for r in args.representations.split(",") if r]
    passthrough = sys.argv[1:]                  # the child takes --one REP and ignores --representations
    running: list[subprocess.Popen] = []
    for rep in reps:
        while len([q for q in running if q.poll() is None]) >= args.jobs:
            time.sleep(5)
        log = open(out / f"{rep}.log", "w")
        running.append(subprocess.Popen([sys.executable, __file__, *passthrough, "--one", rep],
                                        stdout=log, stderr=subprocess.STDOUT))
    codes = [q.wait() for q in running]
    results = [json.loads((out / f"{r}.json").read_text()) for r in reps if (out / f"{r}.json").exists()]
    text = report(out, args, started, results)
    (out / "molecules.md").write_text(text)
    (out / "molecules.json").write_text(json.dumps(results, indent=1, default=str))
    print(text)
    if any(codes):
        sys.exit(f"some runs failed (exit codes {codes}); see {out}/*.log")


if __name__ == "__main__":
    main()
