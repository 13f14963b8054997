#!/usr/bin/env python
"""Tabular-synthesis benchmark: genmodels families against SDV, side by side, same splits and budgets.

For each data set, on one fixed 80/20 train/test split, this script fits

- genmodels ``gan``, ``diffusion``, ``autoregressive``, ``vae`` with ``max_time=B`` (and, with
  ``--half``, again with ``max_time=B/2``), and ``gmm`` (closed form; its actual time is recorded);
- SDV's ``GaussianCopulaSynthesizer`` (no budget: it is closed form), ``CTGANSynthesizer`` and
  ``TVAESynthesizer``. SDV has no time limit, so CTGAN and TVAE are given one on their training
  epochs: both loop over ``tqdm(range(epochs))``; a tqdm subclass stamps each epoch and stops the
  loop before an epoch that would pass B, so epochs = floor(B / seconds per epoch), measured in
  the same run (at least 1, at most SDV's default 300). As with genmodels' ``max_time``, B bounds
  the training and the setup before it (RDT transforms, the per-column Bayesian GMMs of
  CTGAN/TVAE) lies outside B but inside the reported fit time.

SDV gets single-table metadata detected from the training DataFrame (``detect_from_dataframes``),
checked and corrected where it differs from genmodels' view: integer columns SDV calls "ordinal"
(penguins' ``year``) are set to numerical, so both libraries see the same kinds.

Every model is scored by the same code (``genmodels.metrics``) on the real test rows:

- C2ST AUROC: ``c2st_auroc(*table_to_features(test, synth[:len(test)], kinds), seed=0)``
  (0.5: indistinguishable);
- mean KS over numeric columns and mean TV over categorical ones (``marginal_distances`` with the
  kinds of a genmodels ``TabularCodec`` fitted on the training rows), on 10,000 synthetic rows;
- ``correlation_difference`` over the numeric columns (mean |delta Pearson r| over pairs);
- machine-learning utility: ``HistGradientBoostingClassifier(random_state=0)`` with native
  categorical support, trained on min(10,000, n_train) synthetic rows and tested on the real test
  rows (income on adult: accuracy and ROC AUC; species on penguins/iris: macro-F1 and accuracy);
  the same classifier trained on real training rows is the reference row "real-train";
- ``copy_rate(train, synth)`` on the 10,000 synthetic rows (real-train row: the share of *test*
  rows that equal a training row, the rate an honest sampler of the population would show);
- fit wall time (the whole ``fit`` call) and wall time to sample 10,000 rows.

The run writes ``<out>.json`` (one row per data set and model), ``<out>.log`` and ``<out>.md``.
torch uses 1 thread for everything (on this 2-core machine, shared, 2 threads made timings worse).

Usage (from the repository root, in the benchmark venv; see ``make bench-sdv``)::

    .venv-bench/bin/python benchmarks/sdv_tabular.py [--datasets adult,penguins,iris]
        [--budget-adult 180] [--budget-small 45] [--half] [--out benchmarks/results/sdv]
    .venv-bench/bin/python benchmarks/sdv_tabular.py --report-only --out benchmarks/results/sdv
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
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from threadpoolctl import threadpool_limits

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import genmodels as gm  # noqa: E402
from genmodels import registry  # noqa: E402
from genmodels.metrics import (c2st_auroc, copy_rate, correlation_difference,  # noqa: E402
                               marginal_distances, table_to_features)

ADULT_CSV = (REPO / ".." / "shared" / "data" / "tabular" / "adult.csv").resolve()
TARGETS = {"adult": "income", "penguins": "species", "iris": "species"}
GM_NEURAL = ("gan", "diffusion", "autoregressive", "vae")
SDV_MODELS = ("sdv-gaussiancopula", "sdv-ctgan", "sdv-tvae")
N_SAMPLE = 10_000
THREADS = 1
SEED = 0

_LOG = None


def log(msg: str) -> None:
    line = f"[{_dt.datetime.now().strftime('%H:%M:%S')}] {msg}"
    print(line, flush=True)
    if _LOG is not None:
        with open(_LOG, "a") as f:
            f.write(line + "\n")


# =========================================================================== data
def load_dataset(name: str) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """(train, test, notes) on the fixed split."""
    if name == "adult":
        from sklearn.model_selection import train_test_split
        df = gm.datasets.read_table(ADULT_CSV)
        train, test = train_test_split(df, test_size=0.2, random_state=0)
        return (train.reset_index(drop=True), test.reset_index(drop=True),
                f"{ADULT_CSV.name} via genmodels.datasets.read_table; train_test_split(test_size=0.2, random_state=0)")
    d = gm.datasets.load(name, seed=0)
    return d.train, d.test, f"genmodels.datasets.load({name!r}, seed=0)"


def column_kinds(train: pd.DataFrame) -> dict[str, str]:
    return dict(registry.codec("tabular")().fit(train).kinds)


# =========================================================================== metrics
def _utility_frame(df: pd.DataFrame, kinds: dict[str, str], target: str,
                   cats: dict[str, list]) -> pd.DataFrame:
    """Features for HGB: numbers as float, categoricals as pandas categories over the real train's
    values (a value the real data never had becomes missing)."""
    out = {}
    for col, kind in kinds.items():
        if col == target:
            continue
        if kind in ("continuous", "integer"):
            out[col] = pd.to_numeric(df[col], errors="coerce").astype(float)
        else:
            out[col] = pd.Categorical(df[col].astype(object).where(df[col].notna(), None), categories=cats[col])
    return pd.DataFrame(out)


def ml_utility(train_rows: pd.DataFrame, test: pd.DataFrame, real_train: pd.DataFrame,
               kinds: dict[str, str], target: str) -> dict[str, float]:
    """HGB trained on ``train_rows``, tested on real ``test``: accuracy and ROC AUC (binary) or
    macro-F1 (multiclass). Categories are those of the real training rows."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.metrics import accuracy_score, f1_score, roc_auc_score

    cats = {c: sorted(real_train[c].dropna().astype(object).unique().tolist(), key=str)
            for c, k in kinds.items() if k not in ("continuous", "integer") and c != target}
    classes = sorted(real_train[target].dropna().astype(object).unique().tolist(), key=str)
    y_tr = train_rows[target].astype(object)
    keep = y_tr.isin(classes).to_numpy()            # a missing or unseen target label cannot be learnt
    x_tr = _utility_frame(train_rows, kinds, target, cats)[keep]
    y_tr = y_tr[keep].astype(str).to_numpy()
    x_te = _utility_frame(test, kinds, target, cats)
    y_te = test[target].astype(str).to_numpy()
    out: dict[str, float] = {"utility_train_rows": int(keep.sum())}
    present = sorted(set(y_tr))
    if len(present) < 2:  # nothing to learn: predict the single class seen
        pred = np.full(len(y_te), present[0] if present else classes[0], dtype=object)
        out["utility_accuracy"] = float(accuracy_score(y_te, pred))
        if len(classes) == 2:
            out["utility_auc"] = 0.5
        else:
            out["utility_macro_f1"] = float(f1_score(y_te, pred, average="macro", labels=[str(c) for c in classes]))
        out["utility_note"] = f"synthetic rows hold only the class(es) {present}"
        return out
    clf = HistGradientBoostingClassifier(random_state=SEED, categorical_features="from_dtype")
    # one OpenMP thread below 20,000 rows, as c2st_auroc does: on a shared machine waiting threads
    # make a small fit many times slower (a 120-row iris fit took ~50 s with the default)
    with threadpool_limits(limits=1 if len(x_tr) < 20_000 else None):
        clf.fit(x_tr, y_tr)
        pred = clf.predict(x_te)
        proba = clf.predict_proba(x_te)
    out["utility_accuracy"] = float(accuracy_score(y_te, pred))
    if len(classes) == 2:
        pos = str(classes[-1])                        # ">50K" on adult
        col = list(clf.classes_).index(pos) if pos in clf.classes_ else None
        out["utility_auc"] = float(roc_auc_score(y_te == pos, proba[:, col])) if col is not None else 0.5
    else:
        out["utility_macro_f1"] = float(f1_score(y_te, pred, average="macro", labels=[str(c) for c in classes]))
    return out


def score(synth: pd.DataFrame, train: pd.DataFrame, test: pd.DataFrame, kinds: dict[str, str],
          target: str, copy_reference: pd.DataFrame | None = None) -> dict:
    """Every metric of one model from its synthetic rows (at least len(test) of them)."""
    synth = synth[list(train.columns)].reset_index(drop=True)
    num = [c for c, k in kinds.items() if k in ("continuous", "integer", "datetime")]
    cat = [c for c in kinds if c not in num]
    out: dict = {}
    fr, fs = table_to_features(test, synth.iloc[:len(test)], kinds)
    out["c2st_auroc"] = c2st_auroc(fr, fs, seed=SEED)
    dist = marginal_distances(test, synth, kinds)
    out["ks_mean"] = float(np.mean([dist[c] for c in num])) if num else None
    out["tv_mean"] = float(np.mean([dist[c] for c in cat])) if cat else None
    out["marginal_mean"] = float(np.mean(list(dist.values())))
    out["marginal_per_column"] = {c: round(float(v), 4) for c, v in dist.items()}
    out["correlation_difference"] = correlation_difference(test, synth, [c for c in num if kinds[c] != "datetime"])
    n_util = min(N_SAMPLE, len(train))
    out.update(ml_utility(synth.iloc[:n_util], test, train, kinds, target))
    out["copy_rate"] = copy_rate(train, copy_reference if copy_reference is not None else synth)
    return out


# =========================================================================== models
def fit_genmodels(family: str, train: pd.DataFrame, budget: float | None) -> tuple[object, float, dict]:
    m = gm.Model(family, seed=SEED, num_threads=THREADS)
    t0 = time.perf_counter()
    m.fit(train, max_time=budget, verbose=False)
    fit_s = time.perf_counter() - t0
    info = {k: v for k, v in m.fit_info_.items() if isinstance(v, (int, float, str)) and v is not None}
    return m, fit_s, info


def sample_genmodels(m, n: int) -> pd.DataFrame:
    return m.sample(n, seed=SEED)


def sdv_metadata(name: str, train: pd.DataFrame, kinds: dict[str, str]):
    """SDV metadata detected from the training DataFrame, made to agree with genmodels' kinds."""
    from sdv.metadata import Metadata
    md = Metadata.detect_from_dataframes({name: train})
    cols = md.to_dict()["tables"][name]["columns"]
    fixes = []
    for col, kind in kinds.items():
        sd = cols[col]["sdtype"]
        if kind in ("continuous", "integer") and sd != "numerical":
            v = pd.to_numeric(train[col])
            extra = {"decimal_places": 0} if kind == "integer" else {}
            md.update_column(column_name=col, table_name=name, sdtype="numerical",
                             range_min=v.min().item(), range_max=v.max().item(),
                             range_is_nullable=bool(v.isna().any()), **extra)
            fixes.append(f"{col}: {sd} -> numerical")
        elif kind in ("categorical", "boolean") and sd not in ("categorical", "boolean"):
            md.update_column(column_name=col, table_name=name, sdtype="categorical")
            fixes.append(f"{col}: {sd} -> categorical")
    pk = md.to_dict()["tables"][name].get("primary_key")
    if pk:
        md.remove_primary_key(name)
        fixes.append(f"primary key {pk} removed")
    md.validate()
    md.validate_data({name: train})
    final = {c: v["sdtype"] for c, v in md.to_dict()["tables"][name]["columns"].items()}
    return md, fixes, final


def make_sdv(kind: str, md, epochs: int | None = None):
    from sdv.single_table import CTGANSynthesizer, GaussianCopulaSynthesizer, TVAESynthesizer
    if kind == "sdv-gaussiancopula":
        return GaussianCopulaSynthesizer(md)
    if kind == "sdv-ctgan":
        return CTGANSynthesizer(md, epochs=epochs, enable_gpu=False)
    if kind == "sdv-tvae":
        return TVAESynthesizer(md, epochs=epochs, enable_gpu=False)
    raise ValueError(kind)


SDV_MAX_EPOCHS = 300          # SDV's default epochs for CTGAN and TVAE: the budget never asks for more
_EPOCHS: list[tuple[float, float]] = []      # (start, end) of each epoch of the current SDV fit
_EPOCH_BUDGET: list[float | None] = [None]


def _install_epoch_clock() -> None:
    """Give CTGAN/TVAE a wall-clock budget on their training epochs.

    Both loop over ``tqdm(range(epochs))`` imported into their own module; a tqdm subclass stamps
    when each epoch starts and ends and, before starting another, stops the loop if the training
    time so far plus the mean epoch time would pass the budget: the number of epochs is
    floor(B / seconds per epoch), measured in the same run (at least 1). Training itself is
    unchanged (no learning-rate schedule depends on the epoch count in either model)."""
    from ctgan.synthesizers import ctgan as _ctgan, tvae as _tvae
    from tqdm import tqdm

    class BudgetedTqdm(tqdm):
        def __iter__(self):
            for item in super().__iter__():
                now = time.perf_counter()
                if _EPOCHS and _EPOCHS[-1][1] is None:
                    _EPOCHS[-1] = (_EPOCHS[-1][0], now)
                budget = _EPOCH_BUDGET[0]
                if budget is not None and _EPOCHS:
                    done = now - _EPOCHS[0][0]
                    if done + done / len(_EPOCHS) > budget:
                        break
                _EPOCHS.append((now, None))
                yield item
            if _EPOCHS and _EPOCHS[-1][1] is None:
                _EPOCHS[-1] = (_EPOCHS[-1][0], time.perf_counter())

    _ctgan.tqdm = BudgetedTqdm
    _tvae.tqdm = BudgetedTqdm


def _timed_sdv_fit(kind: str, md, train: pd.DataFrame, budget: float | None) -> tuple[object, float, dict]:
    """Fit; returns (synthesizer, wall seconds, timing details)."""
    torch.manual_seed(SEED)
    np.random.seed(SEED)
    syn = make_sdv(kind, md, SDV_MAX_EPOCHS)
    (name,) = md.tables                     # SDV 2.0: fit takes {table name: DataFrame}
    _EPOCHS.clear()
    _EPOCH_BUDGET[0] = budget
    t0 = time.perf_counter()
    try:
        syn.fit({name: train})
    finally:
        _EPOCH_BUDGET[0] = None
    t1 = time.perf_counter()
    if not _EPOCHS:
        return syn, t1 - t0, {}
    ep = [(b if b is not None else t1) - a for a, b in _EPOCHS]
    return syn, t1 - t0, {"epochs": len(ep), "setup_seconds": round(_EPOCHS[0][0] - t0, 2),
                          "training_seconds": round(float(sum(ep)), 2),
                          "mean_epoch_seconds": round(float(np.mean(ep)), 3),
                          "wrap_up_seconds": round(t1 - (_EPOCHS[-1][1] or t1), 2),
                          "epoch_cap": SDV_MAX_EPOCHS}


def fit_sdv(kind: str, md, train: pd.DataFrame, budget: float) -> tuple[object, float, dict]:
    """GaussianCopula: one fit, no budget. CTGAN/TVAE: epochs stop once another would pass B
    (so epochs = floor(B / seconds per epoch), at least 1, at most SDV's default 300). As with
    genmodels' max_time, B covers the training epochs; the setup before them (RDT transforms,
    the per-column Bayesian GMMs of CTGAN/TVAE's DataTransformer) is outside B and inside fit s."""
    if kind == "sdv-gaussiancopula":
        syn, fit_s, _ = _timed_sdv_fit(kind, md, train, None)
        return syn, fit_s, {}
    _install_epoch_clock()
    return _timed_sdv_fit(kind, md, train, budget)


def sample_sdv(syn, n: int) -> pd.DataFrame:
    out = syn.sample(num_rows=n)            # SDV 2.0: {table name: DataFrame}
    return next(iter(out.values())) if isinstance(out, dict) else out


# =========================================================================== run
def run_dataset(name: str, budget: float, half: bool, models: list[str], rows: list[dict], save) -> None:
    train, test, source = load_dataset(name)
    target = TARGETS[name]
    kinds = column_kinds(train)
    log(f"== {name}: train {train.shape}, test {test.shape}, target {target}, budget {budget:g}s; kinds {kinds}")
    base = {"dataset": name, "n_train": len(train), "n_test": len(test), "budget_seconds": budget,
            "target": target, "source": source}

    def add(row: dict) -> None:
        rows.append({**base, **row})
        save()

    # reference: real training rows in place of synthetic ones
    if "real-train" in models:
        try:
            ref = train.sample(n=min(N_SAMPLE, len(train)), random_state=SEED).reset_index(drop=True)
            met = score(ref, train, test, kinds, target, copy_reference=test)
            full = ml_utility(train, test, train, kinds, target)
            met.update({f"{k}_all_train_rows": v for k, v in full.items()})
            add({"model": "real-train", "library": "reference", "fit_seconds": None, "sample_seconds": None,
                 **met, "notes": f"real training rows ({len(ref)} of {len(train)}) in place of synthetic ones; "
                                 "copy_rate is the share of TEST rows equal to a training row; "
                                 "*_all_train_rows: utility trained on all training rows"})
            log(f"  real-train: {_brief(rows[-1])}")
        except Exception as e:  # noqa: BLE001
            log(f"  real-train FAILED: {e!r}\n{traceback.format_exc()}")

    sdv_md = None
    for model in models:
        if model == "real-train":
            continue
        variants = [] if half == "only" and model in GM_NEURAL else [(model, budget)]
        if half and model in GM_NEURAL:
            variants.append((f"{model}@B/2", budget / 2))
        for label, b in variants:
            t_start = time.perf_counter()
            load_before = os.getloadavg()[0]
            try:
                extra: dict = {}
                if model in SDV_MODELS:
                    if sdv_md is None:
                        sdv_md, fixes, final = sdv_metadata(name, train, kinds)
                        log(f"  SDV metadata sdtypes {final}; corrections: {fixes or 'none'}")
                    obj, fit_s, extra = fit_sdv(model, sdv_md, train, b)
                    t0 = time.perf_counter()
                    synth = sample_sdv(obj, N_SAMPLE)
                    lib, row_label = "sdv", model
                    extra["metadata_corrections"] = fixes
                else:
                    obj, fit_s, extra = fit_genmodels(model, train, None if model == "gmm" else b)
                    t0 = time.perf_counter()
                    synth = sample_genmodels(obj, N_SAMPLE)
                    lib, row_label = "genmodels", f"gm-{label}"
                sample_s = time.perf_counter() - t0
                met = score(synth, train, test, kinds, target)
                notes = []
                if model == "gmm":
                    notes.append("closed form (EM, components by BIC); no budget")
                elif model == "sdv-gaussiancopula":
                    notes.append("closed form; no budget")
                elif model in SDV_MODELS:
                    notes.append(f"{extra['epochs']} epochs of {extra['mean_epoch_seconds']:.2f} s in B; "
                                 f"setup {extra['setup_seconds']:.0f} s + training {extra['training_seconds']:.0f} s")
                else:
                    notes.append(f"max_time={b:g}s; stopped: {extra.get('stopped')}, epochs {extra.get('epochs')}")
                add({"model": row_label, "library": lib, "fit_budget_seconds": None if model in ("gmm", "sdv-gaussiancopula") else b,
                     "fit_seconds": round(fit_s, 2), "sample_seconds": round(sample_s, 3), **met,
                     "fit_info": extra, "notes": "; ".join(notes),
                     "loadavg_1m_before_after": [round(load_before, 2), round(os.getloadavg()[0], 2)]})
                log(f"  {row_label}: fit {fit_s:.1f}s sample {sample_s:.2f}s {_brief(rows[-1])}")
            except Exception as e:  # noqa: BLE001
                log(f"  {label} FAILED after {time.perf_counter() - t_start:.1f}s: {e!r}\n{traceback.format_exc()}")
                add({"model": f"gm-{label}" if model not in SDV_MODELS else model,
                     "library": "sdv" if model in SDV_MODELS else "genmodels", "error": repr(e),
                     "notes": "failed; see the log"})


def _brief(r: dict) -> str:
    keys = ("c2st_auroc", "ks_mean", "tv_mean", "correlation_difference", "utility_accuracy", "utility_auc",
            "utility_macro_f1", "copy_rate")
    return " ".join(f"{k}={r[k]:.3f}" for k in keys if isinstance(r.get(k), (int, float)))


# =========================================================================== report
def _f(v, nd=3) -> str:
    return "—" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{nd}f}"


def _utility_key(rows: list[dict]) -> str:
    return "utility_auc" if any("utility_auc" in r for r in rows) else "utility_macro_f1"


def render(payload: dict) -> str:
    rows, meta = payload["rows"], payload["meta"]
    out = ["# genmodels vs SDV: tabular synthesis", "",
           f"Run {meta['started']} to {meta.get('finished', '(unfinished)')}. Machine: {meta['machine']}.",
           f"Python {meta['python']}, torch {meta['torch']}, pandas {meta['pandas']}, scikit-learn {meta['sklearn']}, "
           f"sdv {meta['sdv']}, genmodels {meta['genmodels']}. torch threads: {THREADS}.", "",
           f"Command: `{meta['command']}`", "",
           "Budgets (wall clock per model): " + ", ".join(f"{k} {v:g} s" for k, v in meta["budgets"].items()) +
           (". genmodels' neural families were also run at B/2 (rows `@B/2`)." if meta.get("half") else "."),
           "", "How each number is made (the same code for every model, `genmodels.metrics`):", "",
           "- **fit s**: wall time of the whole `fit` call. genmodels: `Model(family, seed=0).fit(train, max_time=B)` "
           "(`gmm` closed form, no budget); `max_time` bounds the training loop, so setup before it (the gan's "
           "per-column mode fits, codec fitting) is in fit s but outside B. SDV: GaussianCopula has no budget; "
           "CTGAN and TVAE train until another epoch would pass B (so epochs = floor(B / seconds per epoch), "
           "measured in the same run, at least 1, at most SDV's default 300; the loop is stopped through the tqdm "
           "they iterate over). As for genmodels, their setup before training (RDT transforms, per-column "
           "Bayesian GMMs) is in fit s but outside B. **sample s**: time to sample 10,000 rows.",
           "- **C2ST**: `c2st_auroc(*table_to_features(test, synth[:n_test]), seed=0)` (HGB, 5-fold); 0.5 is best.",
           "- **KS** (numeric columns) / **TV** (categorical columns): mean `marginal_distances(test, synth)` on "
           "10,000 synthetic rows, kinds from genmodels' TabularCodec on train; 0 is best.",
           "- **corr**: `correlation_difference` over the numeric columns (mean |delta Pearson r|); 0 is best.",
           "- **utility**: `HistGradientBoostingClassifier(random_state=0)` with native categoricals, trained on "
           "min(10,000, n_train) synthetic rows, tested on the real test rows (adult: income, accuracy and ROC AUC; "
           "penguins, iris: species, accuracy and macro-F1). Row `real-train` is the same classifier on real "
           "training rows (the same number of rows; in brackets on all training rows).",
           "- **copy**: `copy_rate(train, synth)`, share of synthetic rows equal to a training row. For `real-train` "
           "it is the share of real *test* rows equal to a training row (duplicates an honest sampler also makes).",
           ""]
    for ds in meta["datasets"]:
        rs = [r for r in rows if r["dataset"] == ds]
        if not rs:
            continue
        uk = _utility_key(rs)
        r0 = rs[0]
        out += [f"## {ds} (train {r0['n_train']}, test {r0['n_test']}, target {r0['target']}, "
                f"budget {r0['budget_seconds']:g} s)", "", *table(rs, uk), "", c2st_noise(r0['n_test']), "",
                *summary(rs, uk), ""]
    return "\n".join(out) + "\n"


def c2st_noise(n: int) -> str:
    """The C2ST AUROC's standard error when real and synthetic rows are exchangeable (n each)."""
    se = math.sqrt((2 * n + 1) / (12 * n * n))
    return (f"C2ST here compares {n} real test rows with {n} synthetic rows: its standard error under "
            f"\"indistinguishable\" is about {se:.3f} (sqrt((2n+1)/(12 n^2))), so differences smaller than "
            f"~{2 * se:.2f} are noise.")


def table(rs: list[dict], uk: str) -> list[str]:
    ul = "util AUC" if uk == "utility_auc" else "util macro-F1"
    out = [f"| model | fit s | sample s (10k) | C2ST AUROC | KS mean | TV mean | corr diff | util acc | {ul} | copy rate | notes |",
           "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rs:
        if "error" in r:
            out.append(f"| {r['model']} | failed | | | | | | | | | {r['error'][:120]} |")
            continue
        acc, uv = _f(r.get("utility_accuracy")), _f(r.get(uk))
        if r["model"] == "real-train" and "utility_accuracy_all_train_rows" in r:
            acc += f" ({_f(r['utility_accuracy_all_train_rows'])})"
            uv += f" ({_f(r.get(uk + '_all_train_rows'))})"
        out.append(f"| {r['model']} | {_f(r.get('fit_seconds'), 1)} | {_f(r.get('sample_seconds'), 2)} | "
                   f"{_f(r.get('c2st_auroc'))} | {_f(r.get('ks_mean'))} | {_f(r.get('tv_mean'))} | "
                   f"{_f(r.get('correlation_difference'))} | {acc} | {uv} | {_f(r.get('copy_rate'), 4)} | "
                   f"{r.get('notes', '')} |")
    return out


def render_supplement(main: dict, supp: dict) -> str:
    """A re-run of some rows: its own table, then each data set's summary with the re-run rows in
    place of the main run's rows of the same name."""
    meta = supp["meta"]
    out = ["", "## Re-run of rows measured under contention", "",
           f"Run {meta['started']} to {meta.get('finished', '(unfinished)')}, same machine and code; 1-minute load "
           f"average at its start {meta.get('loadavg_at_start', ['?'])[0]}. Command: `{meta['command']}`.", ""]
    for ds in meta["datasets"]:
        rs = [r for r in supp["rows"] if r["dataset"] == ds and r["model"] != "real-train"]
        if not rs:
            continue
        names = {r["model"] for r in rs}
        uk = _utility_key([r for r in main["rows"] if r["dataset"] == ds])
        merged = [(dict(next(x for x in rs if x["model"] == r["model"]), model=r["model"] + " (re-run)")
                   if r["model"] in names else r) for r in main["rows"] if r["dataset"] == ds]
        out += [f"### {ds}: re-run rows", "", *table(rs, uk), "",
                f"### {ds}: summary with the re-run rows in place of the main run's", "", *summary(merged, uk), ""]
    return "\n".join(out) + "\n"


def summary(rs: list[dict], uk: str) -> list[str]:
    """Per data set: best genmodels row and best SDV model per metric, each target met or missed,
    and per genmodels row which of the targets it meets."""
    ok = [r for r in rs if "error" not in r and r["model"] != "real-train"]
    gmr = [r for r in ok if r["library"] == "genmodels"]
    sdr = [r for r in ok if r["library"] == "sdv"]
    if not gmr or not sdr:
        return ["Summary: not enough successful rows to compare."]
    yes = lambda b: "**met**" if b else "**missed**"  # noqa: E731
    un = uk.replace("utility_", "")
    # (label, key where lower is better, how to show the value)
    crit = [("C2ST", lambda r: abs(r["c2st_auroc"] - 0.5), lambda r: f"{r['c2st_auroc']:.3f}"),
            ("marginals", lambda r: r["marginal_mean"], lambda r: f"{r['marginal_mean']:.3f}"),
            ("utility", lambda r: -r[uk], lambda r: f"{r[uk]:.3f}")]
    desc = {"C2ST": "C2ST AUROC (closer to 0.5 is better)",
            "marginals": "marginals (mean of KS and TV over all columns; lower is better)",
            "utility": f"utility ({un}; higher is better)"}
    lines = ["**Summary.**", ""]
    best_s = {}
    for label, key, show in crit:
        g, s_ = min(gmr, key=key), min(sdr, key=key)
        best_s[label] = s_
        lines.append(f"- {desc[label]}: best genmodels `{g['model']}` {show(g)}, best SDV `{s_['model']}` {show(s_)}: "
                     f"target {yes(key(g) < key(s_))}")
    ct = next((r for r in sdr if r["model"] == "sdv-ctgan"), None)
    half = ct["fit_seconds"] / 2 if ct is not None else None
    if half is not None:
        lines.append(f"- time: CTGAN's fit took {ct['fit_seconds']:.1f} s, so the target is a fit of at most {half:.1f} s.")
    winners = [r for r in gmr if all(key(r) < key(best_s[label]) for label, key, _ in crit)
               and (half is None or r["fit_seconds"] <= half)]
    lines += ["", "The issue's target (one genmodels model better than the best SDV model on C2ST, marginals and "
                  "utility, fitting in at most half of CTGAN's time): " +
              (f"**met** by {', '.join('`' + r['model'] + '`' for r in winners)}."
               if winners else "**missed**: no genmodels row does all four."), "",
              "Per genmodels row, against the best SDV model on each metric (yes = better):", "",
              "| genmodels row | C2ST | marginals | utility | fit s | at most half of CTGAN's fit |",
              "|---|---|---|---|---|---|"]
    for r in gmr:
        cells = [("yes" if key(r) < key(best_s[label]) else "no") + f" ({show(r)})" for label, key, show in crit]
        t = "—" if half is None else ("yes" if r["fit_seconds"] <= half else "no")
        lines.append(f"| {r['model']} | {' | '.join(cells)} | {r['fit_seconds']:.1f} | {t} |")
    return lines


# =========================================================================== main
def main(argv: list[str] | None = None) -> int:
    global _LOG
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--datasets", default="adult,penguins,iris")
    p.add_argument("--budget-adult", type=float, default=180.0)
    p.add_argument("--budget-small", type=float, default=45.0)
    p.add_argument("--half", action="store_true", help="also fit genmodels' neural families with max_time=B/2")
    p.add_argument("--half-only", action="store_true",
                   help="fit genmodels' neural families with max_time=B/2 only (for re-running those rows)")
    p.add_argument("--models", default="real-train,gmm,gan,diffusion,autoregressive,vae,"
                                       "sdv-gaussiancopula,sdv-ctgan,sdv-tvae")
    p.add_argument("--out", default="benchmarks/results/sdv", help="output prefix: .json, .log, .md")
    p.add_argument("--report-only", action="store_true", help="re-render <out>.md from <out>.json")
    p.add_argument("--supplement", action="append", default=[],
                   help="with --report-only: output prefix of a re-run of some rows, appended to the report")
    a = p.parse_args(argv)
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    jpath, mpath = out.with_suffix(".json"), out.with_suffix(".md")
    if a.report_only:
        main_payload = json.loads(jpath.read_text())
        text = render(main_payload)
        for extra in a.supplement:
            text += render_supplement(main_payload, json.loads(Path(extra).with_suffix(".json").read_text()))
        notes = out.parent / f"{out.name}-notes.md"     # hand-written remarks on a run, if any
        if notes.exists():
            text += "\n" + notes.read_text()
        mpath.write_text(text)
        print(mpath.read_text())
        return 0
    _LOG = out.with_suffix(".log")
    _LOG.write_text("")
    torch.set_num_threads(THREADS)
    warnings.filterwarnings("ignore")
    import sdv
    import sklearn
    datasets = [d.strip() for d in a.datasets.split(",") if d.strip()]
    budgets = {d: (a.budget_adult if d == "adult" else a.budget_small) for d in datasets}
    meta = {"started": _dt.datetime.now().isoformat(timespec="seconds"),
            "machine": f"{platform.platform()}, {os.cpu_count()} CPU cores, no GPU; shared with other jobs "
                       f"(timings are wall clock under contention)",
            "python": platform.python_version(), "torch": torch.__version__, "pandas": pd.__version__,
            "sklearn": sklearn.__version__, "sdv": sdv.__version__, "genmodels": getattr(gm, "__version__", "?"),
            "command": " ".join([".venv-bench/bin/python", "benchmarks/sdv_tabular.py", *sys.argv[1:]]),
            "budgets": budgets, "half": a.half or a.half_only, "half_only": a.half_only,
            "datasets": datasets, "loadavg_at_start": [round(x, 2) for x in os.getloadavg()]}
    rows: list[dict] = []
    payload = {"meta": meta, "rows": rows}

    def save() -> None:
        jpath.write_text(json.dumps(payload, indent=1, default=str))

    log(f"start: {meta['command']}; {meta['machine']}")
    for d in datasets:
        run_dataset(d, budgets[d], "only" if a.half_only else a.half, [m.strip() for m in a.models.split(",")], rows, save)
    meta["finished"] = _dt.datetime.now().isoformat(timespec="seconds")
    save()
    mpath.write_text(render(payload))
    log(f"done: {jpath}, {mpath}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
