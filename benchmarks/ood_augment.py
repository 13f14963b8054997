"""OOD detection and augmentation benchmark (issue 4): where plain likelihood fails, and where
class-conditional synthetic rows help a classifier.

Part A, OOD (``genmodels.apps.ood.OODDetector``). Scores: plain NLL, the likelihood ratio against a
background model trained on perturbed training rows (Ren et al. 2019; three perturbations:
resample 20% or 50% of cells from their column, Gaussian noise of 0.5 column std), the per-row
typicality |NLL - H| and the batch typicality test (Nalisnick et al. 2019b; batches of 10 rows,
alpha = 0.01). Reported: AUROC, AUPR (OOD positive) and FPR at 95% TPR, per row and per batch.

- A1 ``semantic+background``: 42 columns; columns 0-1 carry the structure (correlation +0.9),
  columns 2-41 are N(0, 1) background. OOD rows flip the correlation (-0.9) *and* have a quiet
  background (sd 0.2): 40 quiet columns gain ~19 nats, more than the flipped pair loses, so plain
  NLL ranks OOD rows as more likely (the constructed failure). Two single-shift controls.
- A2 ``digits``: scikit-learn's 8x8 digits as 64-D vectors (pixels 0..16 + U(0, 1) dequantization,
  continuous), 1,100 train / 300 held-out / 397 test images. OOD: transformations of the test
  images: the training mean image, images shrunk 70% toward it (low contrast), Gaussian blur
  (sigma 1 pixel), blank images, faint images (floor(x / 2)), pixel-shuffled images.

Part B, augmentation (``genmodels.apps.augment.augment``, strategy "balance"): train
LogisticRegression and HistGradientBoosting on real rows vs real + synthetic rows, test on real rows.

- B1 ``breast_cancer`` (scikit-learn): 60/40 stratified split per seed; the training split keeps only
  10 (severe) or 60 (moderate) malignant rows (the positive class) of its ~127. 5 seeds.
- B2 ``adult`` (../shared/data/tabular/adult.csv, income >50K positive, 24%): 4,000 training rows,
  8,000 test rows per seed; the minority is not rare here. 3 seeds.

Baselines: class_weight="balanced" on real rows, and random oversampling (duplicated minority rows).
SMOTE is compared only when imbalanced-learn is importable (it is not installed in .venv / .venv-bench).

Usage::

    .venv/bin/python benchmarks/ood_augment.py [--quick] [--out benchmarks/results/ood_augment.json]
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import genmodels as gm
from genmodels.apps.augment import augment
from genmodels.apps.ood import OODDetector, ood_metrics

ADULT_CSV = (REPO / ".." / "shared" / "data" / "tabular" / "adult.csv").resolve()
RATIOS = {"ratio (resample 0.2)": ("resample", 0.2), "ratio (resample 0.5)": ("resample", 0.5),
          "ratio (noise 0.5)": ("noise", 0.5)}
BATCH = 10
ALPHA = 0.01


# =========================================================================== part A: OOD data
def semantic_background(n: int, rng: np.random.Generator, rho: float, bsd: float, n_bg: int = 40) -> np.ndarray:
    s1 = rng.standard_normal(n)
    s2 = rho * s1 + np.sqrt(1 - rho**2) * rng.standard_normal(n)
    return np.column_stack([s1, s2, bsd * rng.standard_normal((n, n_bg))])


def case_semantic() -> dict:
    rng = np.random.default_rng(0)
    make = lambda n, rho=0.9, bsd=1.0: semantic_background(n, rng, rho, bsd)
    return {"train": make(3000), "held": make(1000), "test": make(1000),
            "ood": {"flipped corr. + quiet background": make(1000, -0.9, 0.2),
                    "flipped corr. only": make(1000, -0.9, 1.0),
                    "quiet background only": make(1000, 0.9, 0.2)}}


def case_digits() -> dict:
    from scipy.ndimage import gaussian_filter
    from sklearn.datasets import load_digits
    X = load_digits().data                                         # (1797, 64), integers 0..16
    rng = np.random.default_rng(0)
    perm = rng.permutation(len(X))
    tr, ho, te = X[perm[:1100]], X[perm[1100:1400]], X[perm[1400:]]
    deq = lambda a: a + rng.random(a.shape)                        # continuous pixels
    mean = tr.mean(0)
    blur = np.stack([gaussian_filter(im.reshape(8, 8), 1.0).ravel() for im in te])
    return {"train": deq(tr), "held": deq(ho), "test": deq(te),
            "ood": {"mean image": deq(np.repeat(mean[None], len(te), 0)),
                    "low contrast (70% toward mean)": deq(mean + 0.3 * (te - mean)),
                    "blurred (sigma 1)": deq(blur),
                    "blank": deq(np.zeros_like(te)),
                    "faint (x/2)": deq(np.floor(te / 2)),
                    "pixel-shuffled": deq(np.stack([rng.permutation(im) for im in te]))}}


def batch_stats(nll: np.ndarray, entropy: float) -> tuple[np.ndarray, np.ndarray]:
    """Per batch of BATCH consecutive rows: mean NLL and |mean NLL - entropy|."""
    k = len(nll) // BATCH
    means = nll[:k * BATCH].reshape(k, BATCH).mean(1)
    return means, np.abs(means - entropy)


def rounded(m: dict) -> dict:
    return {k: round(float(v), 4) for k, v in m.items()}


def run_ood_case(case: str, data: dict, family: str, budget: float) -> dict:
    """Fit one model and its backgrounds; metrics of every method on every OOD set."""
    kw = {"n_components": None} if family == "gmm" else {}
    t0 = time.monotonic()
    model = gm.Model(family, seed=0, num_threads=1, **kw).fit(data["train"], max_time=budget, verbose=False)
    fit_s = time.monotonic() - t0
    base = OODDetector(model, alpha=ALPHA, batch_size=BATCH, seed=0).fit(data["held"], ratio=False)
    dets, bg_s = {}, {}
    for name, (pert, rate) in RATIOS.items():
        t0 = time.monotonic()
        dets[name] = OODDetector(model, perturbation=pert, rate=rate, background_max_time=budget,
                                 seed=0).fit(data["held"], train=data["train"])
        bg_s[name] = round(time.monotonic() - t0, 2)

    def scores(X: np.ndarray) -> dict[str, np.ndarray]:
        out = {"nll": base.score(X), "typicality (per row)": base.score(X, "typicality")}
        out.update({name: d.score(X, "ratio") for name, d in dets.items()})
        return out

    s_in = scores(data["test"])
    b_in = batch_stats(s_in["nll"], base.entropy_)
    thr = base.threshold(BATCH)
    res = {"case": case, "family": family, "fit_seconds": round(fit_s, 2), "background_fit_seconds": bg_s,
           "fit_info": {k: v for k, v in model.fit_info_.items() if isinstance(v, (int, float, str))},
           "entropy_estimate": round(base.entropy_, 3), "threshold_batch10": round(thr, 3),
           "in_mean_loglik": round(float(-s_in["nll"].mean()), 3),
           "in_batches_flagged": round(float(np.mean(b_in[1] > thr)), 4), "ood": {}}
    for ood_name, X_out in data["ood"].items():
        s_out = scores(X_out)
        b_out = batch_stats(s_out["nll"], base.entropy_)
        per_row = {m: rounded(ood_metrics(s_in[m], s_out[m])) for m in s_in}
        per_batch = {"nll (batch mean)": rounded(ood_metrics(b_in[0], b_out[0])),
                     "typicality test": rounded(ood_metrics(b_in[1], b_out[1]))}
        res["ood"][ood_name] = {"mean_loglik": round(float(-s_out["nll"].mean()), 3), "per_row": per_row,
                                "per_batch": per_batch,
                                "batches_flagged": round(float(np.mean(b_out[1] > thr)), 4)}
    return res


# =========================================================================== part B: augmentation
def breast_cancer_split(seed: int, n_pos: int) -> tuple:
    from sklearn.datasets import load_breast_cancer
    from sklearn.model_selection import train_test_split
    d = load_breast_cancer(as_frame=True)
    X, y = d.data, (d.target == 0).astype(np.int64)                 # malignant = 1, the minority
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=0.4, stratify=y, random_state=seed)
    rng = np.random.default_rng(seed)
    pos = np.flatnonzero(y_tr.to_numpy() == 1)
    keep = np.r_[np.flatnonzero(y_tr.to_numpy() == 0), rng.choice(pos, n_pos, replace=False)]
    return (X_tr.iloc[keep].reset_index(drop=True), y_tr.iloc[keep].reset_index(drop=True),
            X_te.reset_index(drop=True), y_te.reset_index(drop=True))


def adult_split(seed: int, n_train: int = 4000, n_test: int = 8000) -> tuple:
    df = gm.datasets.read_table(ADULT_CSV)
    cat = [c for c in df.columns if not pd.api.types.is_numeric_dtype(df[c])]
    df[cat] = df[cat].fillna("missing")
    y = (df.pop("income") == ">50K").astype(np.int64)
    rng = np.random.default_rng(seed)
    perm = rng.permutation(len(df))
    tr, te = perm[:n_train], perm[n_train:n_train + n_test]
    return (df.iloc[tr].reset_index(drop=True), y.iloc[tr].reset_index(drop=True),
            df.iloc[te].reset_index(drop=True), y.iloc[te].reset_index(drop=True))


def classifier(kind: str, X: pd.DataFrame, seed: int, balanced: bool = False):
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler
    cat = [c for c in X.columns if not pd.api.types.is_numeric_dtype(X[c])]
    num = [c for c in X.columns if c not in cat]
    prep = ColumnTransformer([("num", StandardScaler(), num),
                              ("cat", OneHotEncoder(handle_unknown="ignore", sparse_output=False), cat)])
    cw = "balanced" if balanced else None
    est = (LogisticRegression(max_iter=5000, class_weight=cw) if kind == "logistic"
           else HistGradientBoostingClassifier(random_state=seed, class_weight=cw))
    return make_pipeline(prep, est)


def evaluate_clf(kind: str, X_tr, y_tr, X_te, y_te, seed: int, balanced: bool = False) -> dict:
    from sklearn.metrics import balanced_accuracy_score, f1_score, roc_auc_score
    clf = classifier(kind, X_tr, seed, balanced).fit(X_tr, y_tr)
    p = clf.predict_proba(X_te)[:, 1]
    return {"balanced_accuracy": balanced_accuracy_score(y_te, p >= 0.5), "f1": f1_score(y_te, p >= 0.5),
            "auc": roc_auc_score(y_te, p)}


def oversample(X: pd.DataFrame, y: pd.Series, seed: int) -> tuple[pd.DataFrame, pd.Series]:
    """Random oversampling: minority rows duplicated (drawn with replacement) up to the majority count."""
    rng = np.random.default_rng(seed)
    counts = y.value_counts()
    extra = rng.choice(np.flatnonzero(y.to_numpy() == counts.idxmin()), counts.max() - counts.min())
    return (pd.concat([X, X.iloc[extra]], ignore_index=True), pd.concat([y, y.iloc[extra]], ignore_index=True))


def smote_available() -> bool:
    try:
        import imblearn  # noqa: F401
        return True
    except ImportError:
        return False


AUGMENTERS = {"+ gmm (joint)": {"family": "gmm", "mode": "joint"},
              "+ gmm (per class)": {"family": "gmm", "mode": "per_class"},
              "+ kde (joint)": {"family": "kde", "mode": "joint"}}


def run_aug_case(case: str, split, seeds: list[int]) -> dict:
    """Every training condition x classifier x seed; returns per-seed metrics and timings."""
    rows = []
    for seed in seeds:
        X_tr, y_tr, X_te, y_te = split(seed)
        sets = {"real only": (X_tr, y_tr, False), "real, class_weight=balanced": (X_tr, y_tr, True),
                "+ duplicated minority": (*oversample(X_tr, y_tr, seed), False)}
        if smote_available():
            from imblearn.over_sampling import SMOTE, SMOTENC
            cat = [i for i, c in enumerate(X_tr.columns) if not pd.api.types.is_numeric_dtype(X_tr[c])]
            sm = SMOTENC(cat, random_state=seed) if cat else SMOTE(random_state=seed)
            sets["+ SMOTE"] = (*sm.fit_resample(X_tr, y_tr), False)
        aug_s = {}
        for name, opts in AUGMENTERS.items():
            t0 = time.monotonic()
            sets[name] = (*augment(X_tr, y_tr, seed=seed, num_threads=1, **opts), False)
            aug_s[name] = round(time.monotonic() - t0, 2)
        for name, (X, y, bal) in sets.items():
            for kind in ("logistic", "hgb"):
                m = evaluate_clf(kind, X, y, X_te, y_te, seed, bal)
                rows.append({"seed": seed, "condition": name, "classifier": kind,
                             "augment_seconds": aug_s.get(name), "train_rows": len(X),
                             "train_positives": int(np.sum(np.asarray(y) == 1)), **rounded(m)})
        print(f"  {case} seed {seed} done", flush=True)
    return {"case": case, "rows": rows}


# =========================================================================== report
def summarize_aug(res: dict) -> pd.DataFrame:
    df = pd.DataFrame(res["rows"])
    base = df[df.condition == "real only"].set_index(["seed", "classifier"])
    out = []
    for (cond, kind), g in df.groupby(["condition", "classifier"], sort=False):
        g = g.set_index(["seed", "classifier"])
        row = {"condition": cond, "classifier": kind, "train rows": int(g.train_rows.mean()),
               "positives": int(g.train_positives.mean())}
        for m in ("balanced_accuracy", "f1", "auc"):
            d = g[m] - base.loc[g.index, m]
            row[m] = f"{g[m].mean():.3f} ± {g[m].std(ddof=1):.3f}"
            row[f"Δ{m}"] = "" if cond == "real only" else f"{d.mean():+.3f} ({int((d > 0).sum())}/{len(d)} up)"
        out.append(row)
    return pd.DataFrame(out)


def md_table(df: pd.DataFrame) -> str:
    cols = list(df.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    lines += ["| " + " | ".join(str(v) for v in r) + " |" for r in df.itertuples(index=False)]
    return "\n".join(lines)


SHORT = {"nll": "NLL", "typicality (per row)": "typicality", "ratio (resample 0.2)": "ratio r0.2",
         "ratio (resample 0.5)": "ratio r0.5", "ratio (noise 0.5)": "ratio noise",
         "nll (batch mean)": "NLL, batch", "typicality test": "typicality test, batch"}


def ood_table(r: dict) -> str:
    """One row per OOD set; each method's cell is AUROC / AUPR / FPR@95TPR."""
    rows = []
    for ood_name, o in r["ood"].items():
        row = {"OOD set": ood_name, "log-lik": f"{o['mean_loglik']:.1f}"}
        for method, m in {**o["per_row"], **o["per_batch"]}.items():
            row[SHORT[method]] = f"{m['auroc']:.2f} / {m['aupr']:.2f} / {m['fpr95']:.2f}"
        row["batches flagged"] = f"{o['batches_flagged']:.2f}"
        rows.append(row)
    return md_table(pd.DataFrame(rows))


def headline(out: dict) -> str:
    """Cases where plain NLL fails (AUROC < 0.5) and what each remedy scores there (AUROC)."""
    rows = []
    for r in out["ood"]:
        for ood_name, o in r["ood"].items():
            nll = o["per_row"]["nll"]["auroc"]
            if nll < 0.5:
                rows.append({"case": r["case"], "family": r["family"], "OOD set": ood_name, "NLL": f"{nll:.2f}",
                             "best ratio": f"{max(o['per_row'][k]['auroc'] for k in RATIOS):.2f}",
                             "typicality (row)": f"{o['per_row']['typicality (per row)']['auroc']:.2f}",
                             "typicality test (batch 10)": f"{o['per_batch']['typicality test']['auroc']:.2f}"})
    return md_table(pd.DataFrame(rows)) if rows else "(plain NLL failed on no OOD set in this run)"


def report(out: dict) -> str:
    meta = out["meta"]
    lines = ["## OOD detection and augmentation (issue 4)", "",
             (f"Run {meta['date']} on {meta['machine']}; {meta['versions']}. Command: `{meta['command']}` "
              f"({meta['total_seconds']:.0f} s in all; torch 1 thread; 1-min load average at start "
              f"{meta['load_start']}, at end {meta['load_end']}, on cores shared with other jobs)."), "",
             "### A. Out-of-distribution detection", "",
             ("Scores are higher = more OOD; OOD is the positive class. AUROC < 0.5 means the score ranks OOD "
              "inputs as *more* in-distribution than real test inputs (the failure of plain likelihood). "
              "Ratio = log p_background - log p_model; background = same family fitted on perturbed training "
              f"rows. Typicality per row = |NLL - H|; batch level: {BATCH} consecutive rows, typicality test "
              f"statistic |mean NLL - H| (threshold by bootstrap at alpha={ALPHA}) and, for contrast, the plain "
              "batch-mean NLL. Each cell: AUROC / AUPR / FPR@95TPR; 'log-lik': the OOD set's mean "
              "log-likelihood (nats/row); 'batches flagged': share of OOD batches the typicality test rejects."), "",
             "**Where plain NLL fails** (per-row AUROC < 0.5), AUROC of each remedy:", "", headline(out), ""]
    for r in out["ood"]:
        lines += [f"#### {r['case']}, {r['family']}", "",
                  f"In-distribution test mean log-likelihood {r['in_mean_loglik']:.1f} nats/row; entropy estimate "
                  f"H = {r['entropy_estimate']:.1f}; batch threshold {r['threshold_batch10']:.2f} nats; "
                  f"in-distribution test batches flagged: {r['in_batches_flagged']:.2f}; fit {r['fit_seconds']} s, "
                  f"backgrounds {r['background_fit_seconds']} s. Batches flagged per OOD set: "
                  + ", ".join(f"{k}: {v['batches_flagged']:.2f}" for k, v in r["ood"].items()) + ".", "",
                  ood_table(r), ""]
    lines += ["### B. Augmentation (train on real + synthetic, test on real)", "",
              "Mean ± sd over seeds; Δ = mean paired difference to 'real only' with the count of seeds where it "
              "is higher. F1 and balanced accuracy at threshold 0.5 (positive = minority). "
              + ("SMOTE included." if out["smote"] else
                 "SMOTE not compared: imbalanced-learn is not importable in .venv or .venv-bench."), ""]
    for r in out["augment"]:
        lines += [f"#### {r['case']}", "", md_table(summarize_aug(r)), ""]
    return "\n".join(lines)


# =========================================================================== main
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="tiny smoke run (1 seed, gmm only, short budgets)")
    ap.add_argument("--budget", type=float, default=30.0, help="max_time of gradient-trained fits (seconds)")
    ap.add_argument("--out", default=str(HERE / "results" / "ood_augment.json"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    started = time.monotonic()
    load_start = os.getloadavg()[0]
    families = ["gmm"] if args.quick else ["gmm", "kde", "flow"]
    budget = 5.0 if args.quick else args.budget
    out: dict = {"ood": [], "augment": [], "smote": smote_available()}
    for case, make in (("semantic+background (42-D)", case_semantic), ("digits (64-D)", case_digits)):
        data = make()
        for fam in families:
            print(f"A: {case} / {fam}", flush=True)
            out["ood"].append(run_ood_case(case, data, fam, budget))
    bc_seeds = [0] if args.quick else [0, 1, 2, 3, 4]
    ad_seeds = [0] if args.quick else [0, 1, 2]
    for n_pos in (10, 60):
        print(f"B: breast_cancer, {n_pos} positives", flush=True)
        out["augment"].append(run_aug_case(f"breast_cancer, {n_pos} malignant training rows (of ~127)",
                                           lambda s, k=n_pos: breast_cancer_split(s, k), bc_seeds))
    print("B: adult", flush=True)
    n_adult = 1500 if args.quick else 4000
    out["augment"].append(run_aug_case(f"adult income (>50K = 24%), {n_adult:,} training rows, 8,000 test rows",
                                       lambda s: adult_split(s, n_adult), ad_seeds))
    import sklearn
    out["meta"] = {"date": _dt.datetime.now().isoformat(timespec="seconds"),
                   "machine": f"{os.cpu_count()} CPU cores ({platform.processor() or platform.machine()}), "
                              f"{platform.system()} {platform.release()}, no GPU used",
                   "versions": f"Python {platform.python_version()}, torch {torch.__version__}, "
                               f"scikit-learn {sklearn.__version__}, numpy {np.__version__}, pandas {pd.__version__}",
                   "command": " ".join([os.path.relpath(sys.executable, REPO),
                                        os.path.relpath(os.path.abspath(sys.argv[0]), REPO), *sys.argv[1:]]),
                   "total_seconds": time.monotonic() - started, "load_start": round(load_start, 2),
                   "load_end": round(os.getloadavg()[0], 2), "quick": args.quick}
    path = Path(args.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=1, default=str))
    path.with_suffix(".md").write_text(report(out))
    print(f"wrote {path} and {path.with_suffix('.md')} in {out['meta']['total_seconds']:.0f} s")


if __name__ == "__main__":
    main()
