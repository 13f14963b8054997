#!/usr/bin/env python
"""Density-estimation benchmark: every genmodels family against scikit-learn and zuko, side by side.

For each data set, on one fixed train/test split, this script fits

- every genmodels family for tabular data (``gm.list_models("tabular")``), with ``max_time=BUDGET``
  (closed-form families ignore the budget; their actual fit time is recorded);
- scikit-learn's ``GaussianMixture`` (full covariance, n_components in 1..10 chosen by BIC,
  random_state=0, n_init=1, default reg_covar) on standardised data;
- scikit-learn's ``KernelDensity`` (Gaussian kernel, bandwidth chosen by 5-fold ``GridSearchCV``
  over 20 log-spaced values from min(0.05, 0.1 s) to 2 s, s = Scott's factor n^(-1/(d+4))) on
  standardised data;
- zuko's ``NSF`` trained with the loop of zuko's "Train from data" tutorial
  (``NSF(features=D, transforms=3, hidden_features=(64, 64))``, Adam lr 1e-3, shuffled batches of
  64, loss ``-flow().log_prob(x).mean()``), for as many epochs as fit in BUDGET seconds, on
  standardised data;

and reports the test mean log-likelihood in nats per row in the data's raw units (the baselines'
standardisation is undone by its Jacobian, -sum(log std)), its kind ("exact" or "bound") and the fit
wall time. Higher log-likelihood is better.

Integer columns (adult-numeric) are dequantized for every model the way genmodels does it: the
baselines see k + U[0, 1) (train noise seed 0, test noise seed 1), so their densities are lower
bounds on the probability mass of the integers, as genmodels' are. The full mixed adult table is
modelled by genmodels only (the baselines cannot model categorical columns).

Usage::

    python benchmarks/density.py [--datasets a,b,...] [--budget SECONDS] [--out benchmarks/results/density.json]
    python benchmarks/density.py --report-only --out benchmarks/results/density.json   # tables from a saved run
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
import traceback
from pathlib import Path

import numpy as np
import pandas as pd
import torch

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import genmodels as gm  # noqa: E402

ADULT_CSV = (REPO / ".." / "shared" / "data" / "tabular" / "adult.csv").resolve()
ADULT_NUMERIC = ["age", "fnlwgt", "education-num", "capital-gain", "capital-loss", "hours-per-week"]
ADULT_TRAIN_ROWS = 10_000
TOYS = ("moons", "circles", "checkerboard", "8gaussians")
DEFAULT_DATASETS = ("wine", "breast_cancer", "diabetes", "moons", "circles", "checkerboard", "8gaussians",
                    "adult-numeric", "adult")
BASELINES = ("sklearn-gmm", "sklearn-kde")
ZUKO = "zuko-nsf"
ZUKO_SETTINGS = dict(transforms=3, hidden_features=(64, 64))
ZUKO_LR, ZUKO_BATCH = 1e-3, 64
THREADS = 2


# =========================================================================== data
def load_dataset(name: str) -> dict:
    """{'train', 'test': DataFrames, 'kind': continuous|integer|mixed, 'true_log_prob', 'notes'}."""
    if name in ("adult", "adult-numeric"):
        from sklearn.model_selection import train_test_split
        df = gm.datasets.read_table(ADULT_CSV)
        if name == "adult-numeric":
            df = df[ADULT_NUMERIC]
        train, test = train_test_split(df, test_size=0.2, random_state=0, shuffle=True)
        n_train_full = len(train)
        train = train.sample(n=ADULT_TRAIN_ROWS, random_state=0)
        train, test = train.reset_index(drop=True), test.reset_index(drop=True)
        notes = [f"adult.csv split 80/20 (train_test_split, random_state=0); train subsampled from "
                 f"{n_train_full} to {ADULT_TRAIN_ROWS} rows (random_state=0); full 20% test part"]
        if name == "adult":
            # genmodels refuses (DataError) a category never seen in training; the subsampled train part
            # lacks a few rare values, so the test rows holding them are dropped (and counted).
            keep = np.ones(len(test), dtype=bool)
            for col in train.columns:
                if not (pd.api.types.is_string_dtype(train[col]) or train[col].dtype == object):
                    continue
                seen = set(train[col].dropna().unique())
                t = test[col]
                keep &= (t.isna() & train[col].isna().any()).to_numpy() | t.isin(seen).to_numpy()
            dropped = int((~keep).sum())
            test = test[keep].reset_index(drop=True)
            notes.append(f"{dropped} test rows dropped: a category value absent from the 10,000 training rows")
            kind = "mixed"
        else:
            kind = "integer"
        return {"train": train, "test": test, "kind": kind, "true_log_prob": None, "notes": "; ".join(notes)}
    d = gm.datasets.load(name, seed=0)
    notes = "genmodels.datasets.load(name, seed=0)"
    if name == "diabetes":
        notes += ("; column 'sex' is a float with two values, so every continuous density on it is "
                  "degenerate (unbounded in principle; finite only through regularisation)")
    return {"train": d.train, "test": d.test, "kind": "continuous", "true_log_prob": d.true_log_prob,
            "notes": notes}


def numeric_arrays(train: pd.DataFrame, test: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Float arrays for the baselines; integer columns dequantized with U[0, 1) (train seed 0, test seed 1)."""
    ints = [c for c in train.columns if pd.api.types.is_integer_dtype(train[c].dtype)]
    xtr = train.to_numpy(dtype=np.float64).copy()
    xte = test.to_numpy(dtype=np.float64).copy()
    idx = [train.columns.get_loc(c) for c in ints]
    if idx:
        xtr[:, idx] += np.random.default_rng(0).uniform(0.0, 1.0, (len(xtr), len(idx)))
        xte[:, idx] += np.random.default_rng(1).uniform(0.0, 1.0, (len(xte), len(idx)))
    return xtr, xte, ints


def standardise(xtr: np.ndarray, xte: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Standardise by the train mean/std; returns the log-Jacobian back to raw units, -sum(log std)."""
    mu, sd = xtr.mean(0), xtr.std(0)
    sd = np.where(sd > 0, sd, 1.0)
    return (xtr - mu) / sd, (xte - mu) / sd, float(-np.log(sd).sum())


# =========================================================================== models
def run_genmodels(family: str, train: pd.DataFrame, test: pd.DataFrame, budget: float) -> dict:
    m = gm.Model(family, seed=0)
    t0 = time.monotonic()
    m.fit(train, max_time=budget, verbose=False)
    fit_s = time.monotonic() - t0
    lp = m.log_prob(test)
    info = {k: v for k, v in getattr(m, "fit_info_", {}).items()}
    cfg = {k: v for k, v in m.module_.config.items() if not isinstance(v, (list, tuple)) or len(v) < 8}
    notes = []
    if m.module_.closed_form:
        notes.append("closed form (budget not used)")
    else:
        notes.append(f"stopped: {info.get('stopped')}, epochs {info.get('epochs')}, steps {info.get('steps')}")
    if family == "gmm":
        notes.append(f"k={cfg.get('n_components')}")
    if family == "kde":
        h, s = cfg.get("bandwidth"), cfg.get("category_smoothing")
        notes.append(f"h={h:.3g}" if h is not None else "h=-")
        if s is not None:
            notes.append(f"s={s:.3g}")
    return {"lp": lp, "likelihood": m.likelihood, "fit_seconds": fit_s, "notes": "; ".join(notes),
            "details": {"fit_info": info, "module_config": cfg,
                        "bound_reasons": list(m.codec_.bound_reasons)}}


def run_sklearn_gmm(xtr: np.ndarray, xte: np.ndarray, log_jac: float) -> dict:
    from sklearn.mixture import GaussianMixture
    t0 = time.monotonic()
    best, bics = None, {}
    for k in range(1, 11):
        g = GaussianMixture(n_components=k, covariance_type="full", random_state=0, n_init=1).fit(xtr)
        bics[k] = float(g.bic(xtr))
        if best is None or bics[k] < bics[best[0]]:
            best = (k, g)
    fit_s = time.monotonic() - t0
    k, g = best
    lp = g.score_samples(xte) + log_jac
    return {"lp": lp, "fit_seconds": fit_s, "notes": f"k={k} by BIC over 1..10",
            "details": {"n_components": k, "bic": bics, "converged": bool(g.converged_)}}


def run_sklearn_kde(xtr: np.ndarray, xte: np.ndarray, log_jac: float) -> dict:
    from sklearn.model_selection import GridSearchCV, KFold
    from sklearn.neighbors import KernelDensity
    n, d = xtr.shape
    scott = n ** (-1.0 / (d + 4))
    grid = np.geomspace(min(0.05, 0.1 * scott), 2.0 * scott, 20)
    t0 = time.monotonic()
    cv = GridSearchCV(KernelDensity(kernel="gaussian"), {"bandwidth": grid},
                      cv=KFold(5, shuffle=True, random_state=0), n_jobs=1)
    cv.fit(xtr)
    fit_s = time.monotonic() - t0
    h = float(cv.best_params_["bandwidth"])
    lp = cv.best_estimator_.score_samples(xte) + log_jac
    edge = " (at the grid's lower edge)" if h == grid[0] else " (at the grid's upper edge)" if h == grid[-1] else ""
    return {"lp": lp, "fit_seconds": fit_s,
            "notes": f"h={h:.3g}{edge}, grid {grid[0]:.3g}..{grid[-1]:.3g} (standardised units)",
            "details": {"bandwidth": h, "grid": grid.tolist(), "scott": scott}}


def run_zuko(xtr: np.ndarray, xte: np.ndarray, log_jac: float, budget: float) -> dict:
    """zuko's tutorial loop ("Train from data"), run for as many epochs as fit in ``budget`` seconds."""
    import zuko
    torch.manual_seed(0)
    t0 = time.monotonic()
    x_train = torch.as_tensor(xtr, dtype=torch.float32)
    trainset = torch.utils.data.TensorDataset(x_train)
    loader = torch.utils.data.DataLoader(trainset, batch_size=ZUKO_BATCH, shuffle=True,
                                         generator=torch.Generator().manual_seed(0))
    flow = zuko.flows.NSF(features=xtr.shape[1], **ZUKO_SETTINGS)
    optimizer = torch.optim.Adam(flow.parameters(), lr=ZUKO_LR)
    epochs, steps, done, last = 0, 0, False, float("nan")
    while not done:
        for (x,) in loader:
            loss = -flow().log_prob(x).mean()
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            steps += 1
            last = float(loss.detach())
            if time.monotonic() - t0 >= budget:
                done = True
                break
        else:
            epochs += 1
    fit_s = time.monotonic() - t0
    with torch.no_grad():
        lp = flow().log_prob(torch.as_tensor(xte, dtype=torch.float32)).double().numpy() + log_jac
    return {"lp": lp, "fit_seconds": fit_s,
            "notes": f"{epochs} full epochs, {steps} steps, last train loss {last:.3f} (standardised units)",
            "details": {"epochs": epochs, "steps": steps, "last_train_loss": last, **ZUKO_SETTINGS,
                        "lr": ZUKO_LR, "batch_size": ZUKO_BATCH}}


# =========================================================================== running
def finite_mean(lp: np.ndarray) -> tuple[float | None, float | None, int]:
    """(mean, standard error, number of non-finite rows); mean None when any row is not finite."""
    bad = int((~np.isfinite(lp)).sum())
    if bad:
        return None, None, bad
    return float(lp.mean()), float(lp.std(ddof=1) / math.sqrt(len(lp))) if len(lp) > 1 else 0.0, 0


def make_row(dataset: str, model: str, res: dict, likelihood: str, extra_notes: str = "") -> dict:
    mean, se, bad = finite_mean(res["lp"])
    notes = res.get("notes", "")
    if bad:
        notes = f"{bad} test rows scored non-finite; " + notes
    if extra_notes:
        notes = f"{notes}; {extra_notes}" if notes else extra_notes
    return {"dataset": dataset, "model": model, "test_ll": mean, "test_ll_se": se, "likelihood": likelihood,
            "fit_seconds": round(float(res["fit_seconds"]), 3),
            "cpu_seconds": round(float(res["cpu_seconds"]), 2) if "cpu_seconds" in res else None,
            "loadavg_1min": res.get("loadavg_1min"), "notes": notes,
            "details": res.get("details", {})}


def error_row(dataset: str, model: str, err: BaseException) -> dict:
    return {"dataset": dataset, "model": model, "test_ll": None, "test_ll_se": None, "likelihood": None,
            "fit_seconds": None, "notes": f"FAILED: {type(err).__name__}: {str(err)[:300]}", "details": {}}


def bench_dataset(name: str, budget: float, families: list[str], per_row: dict) -> tuple[list[dict], dict]:
    data = load_dataset(name)
    train, test, kind = data["train"], data["test"], data["kind"]
    info = {"dataset": name, "kind": kind, "n_train": len(train), "n_test": len(test),
            "n_columns": train.shape[1], "notes": data["notes"]}
    rows = []
    print(f"\n=== {name}: {kind}, {len(train)} train x {len(test)} test rows, {train.shape[1]} columns", flush=True)
    if data["true_log_prob"] is not None:
        lp = np.asarray(data["true_log_prob"](test), dtype=np.float64)
        per_row[(name, "true density")] = lp
        rows.append(make_row(name, "true density", {"lp": lp, "fit_seconds": 0.0,
                                                    "notes": "Dataset.true_log_prob(test): the best possible"},
                             "exact"))
        print(f"  {'true density':<14} {rows[-1]['test_ll']:9.4f}", flush=True)

    def record(model: str, fn, likelihood: str | None = None, extra: str = "") -> None:
        cpu0 = time.process_time()
        try:
            res = fn()
            # CPU seconds of this process (all threads) while fitting and scoring: with 2 threads an idle
            # machine gives about 2 x fit_seconds for the trained models; much less means contention
            res["cpu_seconds"] = time.process_time() - cpu0
            res["loadavg_1min"] = os.getloadavg()[0]
        except Exception as e:  # one failure must not end the run; it is reported in the table
            traceback.print_exc()
            rows.append(error_row(name, model, e))
            print(f"  {model:<14} FAILED {type(e).__name__}: {e}", flush=True)
            return
        per_row[(name, model)] = res["lp"]
        rows.append(make_row(name, model, res, likelihood or res.get("likelihood"), extra))
        r = rows[-1]
        ll = "   -inf  " if r["test_ll"] is None else f"{r['test_ll']:9.4f}"
        print(f"  {model:<14} {ll}  {r['likelihood']:<5}  {r['fit_seconds']:7.2f} s  {r['notes']}", flush=True)

    for fam in families:
        if gm.registry.family(fam).likelihood == "none":
            rows.append({"dataset": name, "model": f"genmodels-{fam}", "test_ll": None, "test_ll_se": None,
                         "likelihood": "none", "fit_seconds": None, "cpu_seconds": None, "loadavg_1min": None,
                         "notes": "not run: the family has no likelihood to score", "details": {}})
            continue
        record(f"genmodels-{fam}", lambda fam=fam: run_genmodels(fam, train, test, budget))
    if kind != "mixed":
        xtr, xte, ints = numeric_arrays(train, test)
        xtr_s, xte_s, log_jac = standardise(xtr, xte)
        lik = "bound" if ints else "exact"
        extra = "integer columns dequantized with U[0,1) as genmodels does" if ints else ""
        record("sklearn-gmm", lambda: run_sklearn_gmm(xtr_s, xte_s, log_jac), lik, extra)
        record("sklearn-kde", lambda: run_sklearn_kde(xtr_s, xte_s, log_jac), lik, extra)
        record(ZUKO, lambda: run_zuko(xtr_s, xte_s, log_jac, budget), lik, extra)
    return rows, info


def paired(per_row: dict, dataset: str, a: str, b: str) -> tuple[float | None, float | None]:
    """Mean and standard error of the per-row difference a - b on the same test rows."""
    if (dataset, a) not in per_row or (dataset, b) not in per_row:
        return None, None
    d = per_row[(dataset, a)] - per_row[(dataset, b)]
    if not np.all(np.isfinite(d)):
        return None, None
    return float(d.mean()), float(d.std(ddof=1) / math.sqrt(len(d)))


def summarise(rows: list[dict], infos: list[dict], per_row: dict) -> list[dict]:
    out = []
    for info in infos:
        ds = info["dataset"]
        r = {x["model"]: x for x in rows if x["dataset"] == ds}
        ok = lambda m: m in r and r[m]["test_ll"] is not None  # noqa: E731
        gms = [m for m in r if m.startswith("genmodels-") and ok(m)]
        sks = [m for m in BASELINES if ok(m)]
        s = {"dataset": ds, "kind": info["kind"]}
        if gms:
            best_gm = max(gms, key=lambda m: r[m]["test_ll"])
            s["best_genmodels"], s["best_genmodels_ll"] = best_gm, r[best_gm]["test_ll"]
        if gms and sks:
            best_sk = max(sks, key=lambda m: r[m]["test_ll"])
            s["best_sklearn"], s["best_sklearn_ll"] = best_sk, r[best_sk]["test_ll"]
            s["gm_minus_sklearn"] = s["best_genmodels_ll"] - s["best_sklearn_ll"]
            s["gm_minus_sklearn_se"] = paired(per_row, ds, best_gm, best_sk)[1]
            s["target_sklearn_met"] = s["gm_minus_sklearn"] > 0
        if ok("genmodels-flow") and ok(ZUKO):
            diff, se = paired(per_row, ds, "genmodels-flow", ZUKO)
            s["flow_ll"], s["zuko_ll"] = r["genmodels-flow"]["test_ll"], r[ZUKO]["test_ll"]
            s["flow_minus_zuko"], s["flow_minus_zuko_se"] = diff, se
            s["flow_time_ratio"] = r["genmodels-flow"]["fit_seconds"] / r[ZUKO]["fit_seconds"]
            if r["genmodels-flow"].get("cpu_seconds") and r[ZUKO].get("cpu_seconds"):
                s["flow_cpu_ratio"] = r["genmodels-flow"]["cpu_seconds"] / r[ZUKO]["cpu_seconds"]
            # "matches or beats": ahead, or behind by no more than two paired standard errors
            s["target_zuko_met"] = diff >= 0 or (se is not None and diff >= -2 * se)
        elif ok("genmodels-flow") and ZUKO in r:
            s["flow_ll"], s["zuko_ll"] = r["genmodels-flow"]["test_ll"], None
            s["target_zuko_met"] = True   # zuko's score is -inf or failed (see its row)
        if ok("true density") and gms:
            s["true_ll"] = r["true density"]["test_ll"]
            s["gap_to_true"] = s["true_ll"] - s["best_genmodels_ll"]
            if ok("genmodels-flow"):
                s["flow_gap_to_true"] = s["true_ll"] - r["genmodels-flow"]["test_ll"]
        out.append(s)
    return out


# =========================================================================== report
def _f(v, fmt="{:.3f}", none="n/a") -> str:
    return none if v is None else fmt.format(v)


def render_markdown(result: dict) -> str:
    rows, infos, summary = result["rows"], result["datasets"], result["summary"]
    lines = []
    for info in infos:
        ds = info["dataset"]
        lines += [f"### {ds}", "",
                  f"{info['kind']}; {info['n_train']} train rows, {info['n_test']} test rows, "
                  f"{info['n_columns']} columns. {info['notes']}.", "",
                  "| model | test log-likelihood (nats/row, ± s.e.) | likelihood | fit seconds | CPU seconds "
                  "| load (1 min) | notes |",
                  "|---|---:|---|---:|---:|---:|---|"]
        for r in rows:
            if r["dataset"] != ds:
                continue
            ll = ("(no likelihood)" if r["likelihood"] == "none" else "-inf / failed") if r["test_ll"] is None \
                else f"{r['test_ll']:.3f} ± {r['test_ll_se']:.3f}"
            lines.append(f"| {r['model']} | {ll} | {r['likelihood'] or '-'} | {_f(r['fit_seconds'], '{:.2f}')} "
                         f"| {_f(r.get('cpu_seconds'), '{:.1f}', '-')} | {_f(r.get('loadavg_1min'), '{:.1f}', '-')} "
                         f"| {r['notes'].replace('|', '/')} |")
        lines.append("")
    lines += ["### Summary", "",
              "Differences are in nats per test row (higher log-likelihood is better), with the standard "
              "error of the paired per-row difference. Time ratio = genmodels flow / zuko NSF, in fit wall "
              "seconds (and in CPU seconds of fit + scoring, where recorded). \"flow vs zuko met\" means flow is ahead, or behind by at most two standard errors.", "",
              "| data set | kind | best genmodels | best sklearn | genmodels - sklearn | target (beat sklearn) "
              "| flow - zuko NSF | time ratio (wall / CPU) | target (flow >= zuko) | gap to true (best gm / flow) |",
              "|---|---|---|---|---:|---|---:|---:|---|---:|"]
    for s in summary:
        bg = f"{s['best_genmodels'].removeprefix('genmodels-')} {s['best_genmodels_ll']:.3f}" \
            if "best_genmodels" in s else "n/a"
        bs = f"{s['best_sklearn'].removeprefix('sklearn-')} {s['best_sklearn_ll']:.3f}" if "best_sklearn" in s else "n/a"
        d1 = f"{s['gm_minus_sklearn']:+.3f} ± {s['gm_minus_sklearn_se']:.3f}" if "gm_minus_sklearn" in s else "n/a"
        if "target_sklearn_met" not in s:
            t1 = "n/a (genmodels only)"
        elif s["kind"] != "continuous":
            t1 = f"n/a (not continuous; would be {'met' if s['target_sklearn_met'] else 'missed'})"
        else:
            t1 = "**met**" if s["target_sklearn_met"] else "**MISSED**"
        if s.get("flow_minus_zuko") is not None:
            d2 = f"{s['flow_minus_zuko']:+.3f} ± {s['flow_minus_zuko_se']:.3f}"
            tr = f"{s['flow_time_ratio']:.2f}" + (f" / {s['flow_cpu_ratio']:.2f}" if "flow_cpu_ratio" in s else "")
        elif "target_zuko_met" in s:
            d2, tr = "zuko -inf/failed", "n/a"
        else:
            d2, tr = "n/a", "n/a"
        t2 = "n/a" if "target_zuko_met" not in s else ("**met**" if s["target_zuko_met"] else "**MISSED**")
        gap = (f"{s['gap_to_true']:.3f} / {s['flow_gap_to_true']:.3f}" if "flow_gap_to_true" in s
               else f"{s['gap_to_true']:.3f}" if "gap_to_true" in s else "-")
        lines.append(f"| {s['dataset']} | {s['kind']} | {bg} | {bs} | {d1} | {t1} | {d2} | {tr} | {t2} | {gap} |")
    lines.append("")
    return "\n".join(lines)


def print_table(result: dict) -> None:
    print("\n" + "=" * 100)
    print(f"{'dataset':<14} {'model':<16} {'test_ll':>10} {'s.e.':>7} {'kind':<6} {'fit s':>8}  notes")
    for r in result["rows"]:
        ll = f"{r['test_ll']:10.4f}" if r["test_ll"] is not None else f"{'-inf/fail':>10}"
        se = f"{r['test_ll_se']:7.4f}" if r["test_ll_se"] is not None else f"{'':>7}"
        fs = f"{r['fit_seconds']:8.2f}" if r["fit_seconds"] is not None else f"{'':>8}"
        print(f"{r['dataset']:<14} {r['model']:<16} {ll} {se} {str(r['likelihood']):<6} {fs}  {r['notes'][:90]}")
    print("\n" + render_markdown({"rows": [], "datasets": [], "summary": result["summary"]}))


def warm_up() -> None:
    """Pay one-time per-process costs (lazy imports on the first optimizer step, ~1.5 s) outside any timing."""
    import zuko
    x = pd.DataFrame({"a": np.random.default_rng(0).normal(size=64), "b": np.random.default_rng(1).normal(size=64)})
    for fam in gm.list_models("tabular"):
        if gm.registry.family(fam).likelihood != "none":
            gm.Model(fam, seed=0).fit(x, max_steps=2, verbose=False)
    flow = zuko.flows.NSF(features=2, **ZUKO_SETTINGS)
    opt = torch.optim.Adam(flow.parameters(), lr=ZUKO_LR)
    loss = -flow().log_prob(torch.tensor(x.to_numpy(), dtype=torch.float32)).mean()
    loss.backward()
    opt.step()


def source_digest() -> str:
    """sha256 over genmodels/**/*.py (path + bytes): which version of the package was measured."""
    import hashlib
    h = hashlib.sha256()
    for f in sorted((REPO / "genmodels").rglob("*.py")):
        h.update(str(f.relative_to(REPO)).encode())
        h.update(f.read_bytes())
    return h.hexdigest()


def machine() -> dict:
    import sklearn
    import zuko
    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as f:
            names = [ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    return {"platform": platform.platform(), "cpu": cpu, "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(), "gpu": torch.cuda.is_available(),
            "python": platform.python_version(), "torch": torch.__version__, "zuko": zuko.__version__,
            "sklearn": sklearn.__version__, "numpy": np.__version__, "pandas": pd.__version__,
            "genmodels": getattr(gm, "__version__", "?"),
            "note": "2 CPU cores shared with other processes (the lead's test runs) while this ran"}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--datasets", default=",".join(DEFAULT_DATASETS),
                   help=f"comma-separated (default: {','.join(DEFAULT_DATASETS)})")
    p.add_argument("--budget", type=float, default=30.0, help="wall-clock seconds per model per data set (default 30)")
    p.add_argument("--out", default=str(HERE / "results" / "density.json"), help="JSON output path")
    p.add_argument("--md", default=None, help="also write the markdown tables here (default: OUT with .md)")
    p.add_argument("--threads", type=int, default=THREADS,
                   help=f"torch CPU threads (default {THREADS}); 1 avoids spin-waiting when the cores are shared")
    p.add_argument("--report-only", action="store_true", help="re-render the tables of an existing --out JSON")
    args = p.parse_args(argv)
    out = Path(args.out)
    md = Path(args.md) if args.md else out.with_suffix(".md")
    if args.report_only:
        result = json.loads(out.read_text())
        print_table(result)
        md.write_text(render_markdown(result))
        return 0

    torch.set_num_threads(args.threads)
    datasets = [d.strip() for d in args.datasets.split(",") if d.strip()]
    families = gm.list_models("tabular")
    digest_start = source_digest()
    warm_up()
    started = _dt.datetime.now().isoformat(timespec="seconds")
    t0 = time.monotonic()
    load_start = os.getloadavg()
    rows, infos, per_row = [], [], {}
    for ds in datasets:
        r, info = bench_dataset(ds, args.budget, families, per_row)
        rows += r
        infos.append(info)
    result = {"meta": {"command": "python " + " ".join([os.path.relpath(__file__, REPO)] + sys.argv[1:]),
                       "started": started, "total_seconds": round(time.monotonic() - t0, 1),
                       "budget_seconds": args.budget, "families": families, "machine": machine(),
                       "genmodels_source_sha256": digest_start,
                       "genmodels_source_changed_during_run": source_digest() != digest_start,
                       "loadavg_start": load_start, "loadavg_end": os.getloadavg(),
                       "zuko_loop": {**ZUKO_SETTINGS, "lr": ZUKO_LR, "batch_size": ZUKO_BATCH,
                                     "source": "zuko docs, tutorial 'Train from data' (forward_kl.ipynb)"}},
              "datasets": infos, "rows": rows}
    result["summary"] = summarise(rows, infos, per_row)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1, default=lambda o: o.item() if hasattr(o, "item") else str(o)))
    np.savez_compressed(out.with_suffix(".per_row.npz"),
                        **{f"{d}|{m}": v for (d, m), v in per_row.items()})
    md.write_text(render_markdown(result))
    print_table(result)
    print(f"\nwrote {out}, {md}; total {result['meta']['total_seconds']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
