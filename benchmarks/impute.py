#!/usr/bin/env python
"""Imputation benchmark (issue 4): genmodels' Imputer against scikit-learn's imputers, GAIN protocol.

Protocol (Yoon et al., "GAIN", ICML 2018): each data set's features are min-max scaled to [0, 1];
cells are removed by a missingness mechanism at a 20% rate; every imputer fills the whole table it
is given (fit and transform on the same holed table, as in GAIN); the score is the RMSE over the
removed cells, in the scaled units. Mechanisms:

- MCAR: each cell is removed independently with probability 0.2 (all data sets);
- MAR (breast_cancer): half of the columns (chosen per seed) are always observed; a cell of the
  other half is removed with probability sigmoid(a * s + b), s being the row's standardised mean of
  the always-observed columns, with a = 2 and b set by bisection so that 20% of all cells go;
- MNAR, self-masked (breast_cancer): a cell is removed with probability sigmoid(a * z + b), z its
  own standardised value (high values go more often), a = 2, b bisected to a 20% rate.

Imputers: column mean; KNNImputer(n_neighbors=5) on standardised data; IterativeImputer with
BayesianRidge (max_iter=10); a MissForest-style IterativeImputer(ExtraTreesRegressor(n_estimators=
30), max_iter=5) (MissForest's own defaults, 100 trees and up to 10 rounds, took minutes per run
here; on the full letter table 30 trees took 11 minutes per run); genmodels ``Imputer()`` with its
defaults: a Gaussian mixture fitted by the EM for incomplete data, n_components and reg_covar chosen
by held-out imputation error, an equal-weight mixture of 5 EM runs, the exact conditional mean. For
genmodels the coverage of the 90% interval from 40 multiple imputations (share of removed cells whose
true value lies inside) is reported too, and the components and regulariser it chose. Rows removed
entirely by the mechanism are kept (every imputer fills them; genmodels from the joint). The load
of the machine (``uptime``) is recorded before each data set and at the end.

Usage: ``.venv/bin/python benchmarks/impute.py [--seeds 5] [--datasets ...] [--out benchmarks/results/impute]``
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from sklearn.datasets import load_breast_cancer, load_diabetes, load_wine
from sklearn.ensemble import ExtraTreesRegressor
from sklearn.experimental import enable_iterative_imputer  # noqa: F401
from sklearn.impute import IterativeImputer, KNNImputer, SimpleImputer
from sklearn.linear_model import BayesianRidge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from _common import file_logger, report_only, uptime  # noqa: E402  (this folder is sys.path[0])
import genmodels as gm

SHARED = (REPO / ".." / "shared" / "data" / "impute").resolve()
RATE = 0.2


def load(name: str, max_rows: int | None = None) -> np.ndarray:
    """Features only, min-max scaled to [0, 1] (constant columns dropped); at most ``max_rows`` rows
    (a seeded subset, the same for every seed and imputer)."""
    if name in ("letter", "spam"):
        x = pd.read_csv(SHARED / f"{name}.csv").to_numpy(dtype=float)
        if max_rows and len(x) > max_rows:
            x = x[np.sort(np.random.default_rng(12345).choice(len(x), max_rows, replace=False))]
    else:
        x = {"breast_cancer": load_breast_cancer, "wine": load_wine, "diabetes": load_diabetes}[name]().data
    x = x[:, x.max(0) > x.min(0)]
    return (x - x.min(0)) / (x.max(0) - x.min(0))


def _bisect_rate(logit: np.ndarray, eligible: np.ndarray, target: float) -> float:
    """b so that mean(sigmoid(logit + b) * eligible) == target."""
    lo, hi = -30.0, 30.0
    for _ in range(100):
        b = (lo + hi) / 2
        rate = (eligible / (1 + np.exp(-(logit + b)))).mean()
        lo, hi = (b, hi) if rate < target else (lo, b)
    return (lo + hi) / 2


def holes(x: np.ndarray, mechanism: str, rng: np.random.Generator) -> np.ndarray:
    """A boolean mask of removed cells."""
    n, d = x.shape
    if mechanism == "mcar":
        return rng.random((n, d)) < RATE
    z = (x - x.mean(0)) / x.std(0)
    if mechanism == "mar":
        observed = rng.permutation(d)[: d // 2]
        s = z[:, observed].mean(1)
        s = (s - s.mean()) / s.std()
        eligible = np.ones((n, d))
        eligible[:, observed] = 0
        logit = 2.0 * np.repeat(s[:, None], d, 1)
    elif mechanism == "mnar":
        eligible, logit = np.ones((n, d)), 2.0 * z
    else:
        raise ValueError(mechanism)
    b = _bisect_rate(logit, eligible, RATE)
    return (rng.random((n, d)) < eligible / (1 + np.exp(-(logit + b)))) & (eligible > 0)


def twins(x: np.ndarray) -> np.ndarray:
    """(n,) bool: rows with an exact duplicate elsewhere in the table (spam has many)."""
    _, inverse, counts = np.unique(x, axis=0, return_inverse=True, return_counts=True)
    return counts[inverse.ravel()] > 1


def baselines(seed: int) -> dict:
    return {
        "mean": lambda: SimpleImputer(strategy="mean"),
        "knn": lambda: make_pipeline(StandardScaler(), KNNImputer(n_neighbors=5)),
        "iterative-bayesridge": lambda: IterativeImputer(BayesianRidge(), max_iter=10, random_state=seed),
        "missforest-style": lambda: IterativeImputer(
            ExtraTreesRegressor(n_estimators=30, n_jobs=1, random_state=seed), max_iter=5, random_state=seed),
        "genmodels": lambda: gm.Imputer(seed=seed, num_threads=1),
    }


def impute(name: str, make, xh: np.ndarray):
    est = make()
    out = est.fit_transform(xh)
    if name == "knn":   # the scaler's inverse (KNN worked on standardised data); observed cells as given
        out = np.where(np.isnan(xh), est[0].inverse_transform(out), xh)
    return out, est


def run(datasets: list[tuple[str, str]], seeds: int, log, max_rows: int | None = None,
        loads: list | None = None) -> list[dict]:
    rows = []
    for ds, mech in datasets:
        x = load(ds, max_rows)
        twin = np.repeat(twins(x)[:, None], x.shape[1], 1)
        if loads is not None:
            loads.append(f"before {ds}/{mech}: {uptime()}")
            log(loads[-1])
        for seed in range(seeds):
            rng = np.random.default_rng(seed)
            mask = holes(x, mech, rng)
            xh = np.where(mask, np.nan, x)
            for name, make in baselines(seed).items():
                t0 = time.perf_counter()
                with warnings.catch_warnings(), threadpool_limits(limits=1):   # 1 BLAS thread: a shared machine
                    warnings.simplefilter("ignore")
                    out, est = impute(name, make, xh)
                secs = time.perf_counter() - t0
                assert np.array_equal(out[~mask], x[~mask]), f"{name} changed observed cells"
                rmse = float(np.sqrt(np.mean((out[mask] - x[mask]) ** 2)))
                row = {"dataset": ds, "mechanism": mech, "seed": seed, "imputer": name, "rmse": rmse,
                       "seconds": round(secs, 2), "missing_share": float(mask.mean())}
                if (twin & mask).any():     # the same RMSE over rows with and without an exact duplicate
                    for key, cells in (("rmse_twin", twin & mask), ("rmse_no_twin", ~twin & mask)):
                        row[key] = float(np.sqrt(np.mean((out[cells] - x[cells]) ** 2)))
                    row["twin_cell_share"] = float((twin & mask).sum() / mask.sum())
                if name == "genmodels":
                    row["coverage90"] = coverage(est, xh, x, mask)
                    hp = est.model_.hyperparameters
                    row["choice"] = (f"k={hp['n_components'] // int(est.model_.fit_info_.get('ensemble', 1))}"
                                     f" reg={hp['reg_covar']:g}")
                rows.append(row)
                log(f"{ds}/{mech} seed {seed} {name}: rmse {rmse:.4f} ({secs:.1f}s)"
                    + (f" coverage90 {row['coverage90']:.3f} {row['choice']}" if "coverage90" in row else ""))
    return rows


def coverage(imp, xh: np.ndarray, x: np.ndarray, mask: np.ndarray) -> float:
    """Share of removed cells inside the 90% interval of 40 multiple imputations (the fitted model's)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lo, hi = imp.interval(xh, level=0.9, n_imputations=40)
    return float(((x[mask] >= lo[mask]) & (x[mask] <= hi[mask])).mean())


def render(payload: dict) -> str:
    df = pd.DataFrame(payload["rows"])
    meta = payload["meta"]
    rows_note = (f"; letter and spam as seeded {meta['max_rows']:,}-row subsets" if meta.get("max_rows") else "")
    out = ["# Imputation: genmodels vs scikit-learn (GAIN protocol)", "",
           f"Run {meta['started']} to {meta.get('finished', '?')}; {meta['machine']}; torch threads 1, "
           f"1 BLAS thread{rows_note}; {df['seed'].nunique()} seeds.",
           f"Command: `{meta['command']}`", ""]
    out += ["Machine load (`uptime`) during the run:", ""] + [f"- {line}" for line in meta.get("load", [])] + [""]
    out += ["RMSE over the removed cells on min-max-scaled data (mean ± sd over seeds; lower is better); "
            "20% of cells removed. genmodels: `gm.Imputer()` defaults (gmm fitted by the EM for incomplete "
            "data, k and reg_covar chosen by held-out imputation error, mixture of 5 EM runs, exact "
            "conditional mean).", ""]
    names = list(dict.fromkeys(df["imputer"]))
    out += ["| data set | mechanism | " + " | ".join(names) + " | genmodels 90% coverage | genmodels best? | "
            "genmodels' choices (k per run, reg_covar) |",
            "|---|---|" + "---|" * len(names) + "---|---|---|"]
    wins = 0
    groups = list(df.groupby(["dataset", "mechanism"], sort=False))
    for (ds, mech), g in groups:
        stats = g.groupby("imputer")["rmse"].agg(["mean", "std"])
        best_base = min(stats.loc[n, "mean"] for n in names if n != "genmodels")
        win = stats.loc["genmodels", "mean"] < best_base
        wins += win
        gm_rows = g[g.imputer == "genmodels"]
        cov = gm_rows["coverage90"].mean()
        choices = ", ".join(gm_rows["choice"]) if "choice" in gm_rows else ""
        cells = [f"{stats.loc[n, 'mean']:.4f} ± {stats.loc[n, 'std']:.4f}" for n in names]
        seeds_won = int(sum(gr.set_index("imputer")["rmse"].pipe(lambda r: r["genmodels"] < r.drop("genmodels").min())
                            for _, gr in g.groupby("seed")))
        out.append(f"| {ds} | {mech} | " + " | ".join(cells) + f" | {cov:.3f} | "
                   f"{'yes' if win else '**no**'} ({seeds_won}/{g['seed'].nunique()} seeds) | {choices} |")
    out += _twin_table(df, names)
    secs = df.groupby("imputer")["seconds"].mean()
    out += ["", "Mean seconds per imputation (fit + transform): " +
            ", ".join(f"{n} {secs[n]:.1f}" for n in names), "",
            f"Target (lower RMSE than every baseline on every data set): "
            f"{'**met**' if wins == len(groups) else f'**missed** ({wins} of {len(groups)})'}.", ""]
    return "\n".join(out)


def _twin_table(df: pd.DataFrame, names: list[str]) -> list[str]:
    """RMSE over the removed cells of rows that have an exact duplicate in the table, and of the others
    (an imputer that copies from a row's twin gains there); empty when no data set has twins."""
    if "rmse_twin" not in df or df["rmse_twin"].isna().all():
        return []
    out = ["", "RMSE split by whether the row has an exact duplicate elsewhere in the table (mean over "
           "seeds; rows with a twin / rows without):", "",
           "| data set | mechanism | removed cells in rows with a twin | " + " | ".join(names) + " |",
           "|---|---|---|" + "---|" * len(names)]
    for (ds, mech), g in df[df["rmse_twin"].notna()].groupby(["dataset", "mechanism"], sort=False):
        m = g.groupby("imputer")[["rmse_twin", "rmse_no_twin"]].mean()
        out.append(f"| {ds} | {mech} | {g['twin_cell_share'].mean():.1%} | "
                   + " | ".join(f"{m.loc[n, 'rmse_twin']:.4f} / {m.loc[n, 'rmse_no_twin']:.4f}" for n in names) + " |")
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--datasets", default="breast_cancer:mcar,wine:mcar,diabetes:mcar,letter:mcar,spam:mcar,"
                                         "breast_cancer:mar,breast_cancer:mnar")
    p.add_argument("--out", default="benchmarks/results/impute")
    p.add_argument("--max-rows", type=int, default=None, help="seeded subset of letter/spam (time on a small machine)")
    p.add_argument("--report-only", action="store_true")
    a = p.parse_args(argv)
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if a.report_only:
        return report_only(out, render)
    torch.set_num_threads(1)
    log = file_logger(out.with_suffix(".log"))

    meta = {"started": _dt.datetime.now().isoformat(timespec="seconds"), "max_rows": a.max_rows,
            "machine": f"{platform.platform()}, {os.cpu_count()} CPU cores, no GPU, shared",
            "command": " ".join([".venv/bin/python", "benchmarks/impute.py", *sys.argv[1:]])}
    datasets = [tuple(s.split(":")) for s in a.datasets.split(",")]
    meta["load"] = []
    payload = {"meta": meta, "rows": run(datasets, a.seeds, log, a.max_rows, meta["load"])}
    meta["finished"] = _dt.datetime.now().isoformat(timespec="seconds")
    meta["load"].append(f"at the end: {uptime()}")
    out.with_suffix(".json").write_text(json.dumps(payload, indent=1))
    out.with_suffix(".md").write_text(render(payload))
    print(out.with_suffix(".md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
