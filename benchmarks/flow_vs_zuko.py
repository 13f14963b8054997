#!/usr/bin/env python
"""genmodels ``flow`` against zuko's NSF (its tutorial loop), run *concurrently*, one thread each.

``density.py`` fits the models one after the other with 2 threads each; on a machine shared with
other work the load changes from one 30-second window to the next, so two models fitted a minute
apart can get very different amounts of CPU. Here, for each data set, the two fits run at the same
time in two processes (``torch.set_num_threads(1)`` each, same wall-clock budget), so whatever else
the machine is doing slows both alike. Splits, dequantization, standardisation, settings and
scoring are those of ``density.py`` (imported from it).

Usage::

    python benchmarks/flow_vs_zuko.py [--datasets a,b,...] [--budget SECONDS] [--out benchmarks/results/flow_vs_zuko.json]
"""
from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import density as D  # noqa: E402

DATASETS = ("wine", "breast_cancer", "diabetes", "moons", "circles", "checkerboard", "8gaussians", "adult-numeric")


def worker(model: str, dataset: str, budget: float, out: Path) -> None:
    import torch
    torch.set_num_threads(1)
    D.warm_up()
    data = D.load_dataset(dataset)
    cpu0 = time.process_time()
    if model == "genmodels-flow":
        res = D.run_genmodels("flow", data["train"], data["test"], budget)
    else:
        xtr, xte, _ = D.numeric_arrays(data["train"], data["test"])
        xtr_s, xte_s, log_jac = D.standardise(xtr, xte)
        res = D.run_zuko(xtr_s, xte_s, log_jac, budget)
    np.savez(out, lp=res["lp"], fit_seconds=res["fit_seconds"], cpu_seconds=time.process_time() - cpu0,
             notes=res["notes"], loadavg=os.getloadavg()[0])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--datasets", default=",".join(DATASETS))
    p.add_argument("--budget", type=float, default=30.0)
    p.add_argument("--out", default=str(HERE / "results" / "flow_vs_zuko.json"))
    p.add_argument("--worker", nargs=3, metavar=("MODEL", "DATASET", "OUT"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        worker(args.worker[0], args.worker[1], args.budget, Path(args.worker[2]))
        return 0
    rows = []
    env = {**os.environ, "PYTHONPATH": str(D.REPO)}
    with tempfile.TemporaryDirectory() as tmp:
        for ds in [d.strip() for d in args.datasets.split(",") if d.strip()]:
            outs = {m: Path(tmp) / f"{ds}-{m}.npz" for m in ("genmodels-flow", D.ZUKO)}
            procs = [subprocess.Popen([sys.executable, __file__, "--budget", str(args.budget), "--worker", m, ds,
                                       str(o)], env=env) for m, o in outs.items()]
            codes = [pr.wait() for pr in procs]
            if any(codes):
                rows.append({"dataset": ds, "error": f"worker exit codes {codes}"})
                continue
            r = {m: np.load(o) for m, o in outs.items()}
            f, z = r["genmodels-flow"], r[D.ZUKO]
            d = f["lp"] - z["lp"]
            ok = np.all(np.isfinite(d))
            diff = float(d.mean()) if ok else None
            se = float(d.std(ddof=1) / math.sqrt(len(d))) if ok else None
            row = {"dataset": ds, "flow_ll": float(f["lp"].mean()), "zuko_ll": float(z["lp"].mean()),
                   "flow_minus_zuko": diff, "se": se,
                   "target_met": bool(diff is not None and (diff >= 0 or diff >= -2 * se)),
                   "flow_fit_seconds": float(f["fit_seconds"]), "zuko_fit_seconds": float(z["fit_seconds"]),
                   "flow_cpu_seconds": float(f["cpu_seconds"]), "zuko_cpu_seconds": float(z["cpu_seconds"]),
                   "flow_notes": str(f["notes"]), "zuko_notes": str(z["notes"]),
                   "loadavg_1min": float(f["loadavg"])}
            rows.append(row)
            print(f"{ds:<14} flow {row['flow_ll']:9.3f} ({row['flow_fit_seconds']:.1f} s, {row['flow_cpu_seconds']:.1f} "
                  f"CPU s)  zuko {row['zuko_ll']:9.3f} ({row['zuko_fit_seconds']:.1f} s, {row['zuko_cpu_seconds']:.1f} "
                  f"CPU s)  diff {diff:+.3f} ± {se:.3f}  {'met' if row['target_met'] else 'MISSED'}  "
                  f"load {row['loadavg_1min']:.1f}", flush=True)
    import torch
    torch.set_num_threads(1)   # as in the workers, so the recorded machine info says 1 thread
    meta = {"command": "python " + " ".join([os.path.relpath(__file__, D.REPO)] + sys.argv[1:]),
            "budget_seconds": args.budget, "threads_per_model": 1, "machine": D.machine(),
            "genmodels_source_sha256": D.source_digest()}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    lines = ["| data set | genmodels flow | zuko NSF | flow - zuko | target (flow >= zuko) | flow fit s / CPU s "
             "| zuko fit s / CPU s | flow training | zuko training |", "|---|---:|---:|---:|---|---:|---:|---|---|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['dataset']} | failed: {r['error']} |||||||")
            continue
        dz = "n/a" if r["flow_minus_zuko"] is None else f"{r['flow_minus_zuko']:+.3f} ± {r['se']:.3f}"
        lines.append(f"| {r['dataset']} | {r['flow_ll']:.3f} | {r['zuko_ll']:.3f} | {dz} | "
                     f"{'**met**' if r['target_met'] else '**MISSED**'} | {r['flow_fit_seconds']:.1f} / "
                     f"{r['flow_cpu_seconds']:.1f} | {r['zuko_fit_seconds']:.1f} / {r['zuko_cpu_seconds']:.1f} | "
                     f"{r['flow_notes']} | {r['zuko_notes']} |")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"wrote {out}, {out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
