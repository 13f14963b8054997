"""Image families side by side on the 5,000-image MNIST subset, each with the same wall-clock budget.

For each family (and pythae's VAE, when pythae imports in this environment): fit on the 4,000
training images for ``--budget`` seconds on one torch thread, then on the 1,000 test images

- bits/dim: -log p(x | y) - log pi_y in bits per pixel, an upper bound on the marginal bits/dim
  (log p(x) >= log pi_y + log p(x | y); at most log2(10) / 784 = 0.004 bits/dim looser), and for
  the families where it is cheap (``--marginal``) the marginal itself, logsumexp over the classes;
  a bound where the family's likelihood is a bound (uniform dequantization, ELBO/IWAE, diffusion VLB);
  (diffusion: on the first 200 test images by default, ``--score-limit``);
- Fréchet distance, precision, recall, density, coverage, C2ST and memorization of 1,000 samples
  in the feature space of genmodels' MNIST classifier, with the real-vs-real floor (test vs train);
- the time to sample 1,000 images; a PNG grid of 64 samples.

Each family runs in its own process (``--jobs`` at a time; two 1-thread jobs on two cores).

    .venv/bin/python benchmarks/images.py --budget 600 --jobs 2 --out benchmarks/results/images
    .venv-bench/bin/python benchmarks/images.py --one pythae-vae --budget 600 --out benchmarks/results/images
"""
from __future__ import annotations

import argparse
import importlib.metadata
import json
import math
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
_load_before = os.getloadavg()[0]

import numpy as np  # noqa: E402
import torch  # noqa: E402

FAMILIES = ("autoregressive", "flow", "vae", "diffusion", "gan")
PUBLISHED = "published full-MNIST bits/dim (60k images, GPU, days): RealNVP 1.06, Glow 1.05 (Kingma & Dhariwal 2018)"
METRICS = ("frechet_distance", "precision", "recall", "density", "coverage", "c2st_auroc", "memorization")


def _load():
    import genmodels as gm
    return gm.datasets.load("mnist", seed=0)


def _sample_metrics(samples: np.ndarray, d, seed: int = 0) -> dict:
    """The sample metrics of ``samples`` through evaluate_images with a stand-in model."""
    from genmodels.metrics.image import evaluate_images

    class Given:                                            # evaluate_images only needs these two
        likelihood = "none"

        def sample(self, n, seed=None):
            return samples[:n]
    return evaluate_images(Given(), d.test, train=d.train, n_samples=len(samples), seed=seed)


def run_genmodels(name: str, budget: float, out: Path, marginal: bool, score_limit: int | None,
                  variants: dict[str, tuple[str, dict]]) -> dict:
    import genmodels as gm
    from genmodels.codecs.image import save_grid
    d = _load()
    torch.set_num_threads(1)
    family, hyper = variants.get(name, (name, {}))
    m = gm.Model(family, seed=0, num_threads=1, **hyper)
    t0 = time.monotonic()
    m.fit(d.train, max_time=budget, verbose=False)
    res = {"family": name, "fit_seconds": round(time.monotonic() - t0, 1), "likelihood": m.likelihood,
           "hyperparameters": hyper, "load_before_fit": _load_before,
           "fit_info": {k: v for k, v in m.fit_info_.items() if isinstance(v, (int, float, str))}}
    m.save(out / f"model-{name}")
    t0 = time.monotonic()
    samples = m.sample(1000, seed=0)
    res["sample_seconds_1000"] = round(time.monotonic() - t0, 2)
    save_grid(samples[:64], out / f"grid-{name}.png", ncol=8)
    D = 784
    if m.likelihood != "none":
        t0 = time.monotonic()
        test = d.test if not score_limit else d.test[:score_limit]   # the test split is already shuffled
        res["scored_images"] = len(test)
        lp_y = m.log_prob(test)                                       # log p(x | y), the true label
        prior = np.bincount(d.train.labels, minlength=10) / len(d.train)
        bpd = -(lp_y + np.log(prior[test.labels])) / (D * math.log(2))
        res["bpd_label_bound"] = float(np.mean(bpd))
        res["bpd_label_bound_stderr"] = float(np.std(bpd, ddof=1) / math.sqrt(len(bpd)))
        res["bpd_given_label"] = float(np.mean(-lp_y / (D * math.log(2))))
        if marginal:
            lp = m.log_prob(test.images)                              # logsumexp over the 10 classes
            res["bpd_marginal"] = float(np.mean(-lp / (D * math.log(2))))
        res["score_seconds"] = round(time.monotonic() - t0, 1)
    res.update(_sample_metrics(samples, d))
    return res


def run_pythae(budget: float, out: Path) -> dict:
    """pythae's VAE (its default MLP encoder/decoder, Bernoulli-style BCE on [0, 1] intensities) trained
    with its own loss and Adam (lr 1e-3, batch 64) in a loop that stops at the budget."""
    from pythae.models import VAE, VAEConfig
    from pythae.samplers import NormalSampler

    from genmodels.codecs.image import save_grid
    d = _load()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    x = torch.from_numpy(d.train.images).float().div(255.0).unsqueeze(1)
    model = VAE(VAEConfig(input_dim=(1, 28, 28), latent_dim=16, reconstruction_loss="bce"))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    t0, epochs = time.monotonic(), 0
    g = torch.Generator().manual_seed(0)
    while time.monotonic() - t0 < budget:
        perm = torch.randperm(len(x), generator=g)
        for i in range(0, len(x), 64):
            loss = model({"data": x[perm[i:i + 64]]}, epoch=epochs).loss
            opt.zero_grad()
            loss.backward()
            opt.step()
            if time.monotonic() - t0 >= budget:
                break
        epochs += 1
    res = {"family": "pythae-vae", "fit_seconds": round(time.monotonic() - t0, 1), "likelihood": "n/a (BCE on intensities)",
           "fit_info": {"epochs": epochs, "pythae": importlib.metadata.version("pythae")}}
    model.eval()
    t0 = time.monotonic()
    with torch.no_grad():
        gen = NormalSampler(model=model).sample(num_samples=1000, batch_size=500)
    res["sample_seconds_1000"] = round(time.monotonic() - t0, 2)
    samples = (gen.clamp(0, 1).reshape(-1, 28, 28).numpy() * 255).round().astype(np.uint8)
    save_grid(samples[:64], out / "grid-pythae-vae.png", ncol=8)
    res.update(_sample_metrics(samples, d))
    return res


def _one(args: argparse.Namespace) -> None:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.one == "pythae-vae":
        res = run_pythae(args.budget, out)
    else:
        limits = dict((k, int(v)) for k, v in (kv.split("=") for kv in args.score_limit.split(",") if kv))
        variants = _variants(args.variant)
        family = variants.get(args.one, (args.one, {}))[0]
        res = run_genmodels(args.one, args.budget, out, family in args.marginal.split(","), limits.get(family),
                            variants)
    res["load_after"] = os.getloadavg()[0]
    (out / f"result-{args.one}.json").write_text(json.dumps(res, indent=2))


def _variants(items: list[str]) -> dict[str, tuple[str, dict]]:
    """``NAME=FAMILY:JSON`` entries (``--variant``) as {name: (family, hyper-parameters)}."""
    out = {}
    for item in items:
        name, _, rest = item.partition("=")
        family, _, hyper = rest.partition(":")
        if not name or family not in FAMILIES:
            raise SystemExit(f"--variant {item!r}: expected NAME=FAMILY:JSON with FAMILY one of {FAMILIES}")
        out[name] = (family, json.loads(hyper or "{}"))
    return out


def _fmt(v, digits=3) -> str:
    return "—" if v is None else f"{v:.{digits}f}" if isinstance(v, float) else str(v)


def report(out: Path, budget: float) -> str:
    rows = [json.loads(p.read_text()) for p in sorted(out.glob("result-*.json"))]
    if not rows:
        return "no results"
    lines = [f"Budget {budget:.0f} s per model, one torch thread, MNIST-5k (4,000 train / 1,000 test); "
             f"{platform.platform()}, {os.cpu_count()} cores. {PUBLISHED}.", "",
             "| model | likelihood | bits/dim (marginal) | bits/dim (upper bound via label) | FD | precision | recall | "
             "density | coverage | C2ST | memorization | sample 1,000 (s) | fit (s) |",
             "|---" * 13 + "|"]
    floor = rows[0]
    for r in rows:
        lines.append(f"| {r['family']} | {r['likelihood']} | {_fmt(r.get('bpd_marginal'))} | "
                     f"{_fmt(r.get('bpd_label_bound'))} | " + " | ".join(_fmt(r.get(k)) for k in METRICS) +
                     f" | {_fmt(r['sample_seconds_1000'], 1)} | {_fmt(r['fit_seconds'], 0)} |")
    lines.append("| real test vs train (floor) | | | | " + " | ".join(_fmt(floor.get(k + "_floor")) for k in METRICS)
                 + " | | |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--budget", type=float, default=600.0, help="seconds of training per model")
    p.add_argument("--families", default=",".join(FAMILIES))
    p.add_argument("--pythae", action="store_true", help="also pythae's VAE (run with a python that has pythae)")
    p.add_argument("--pythae-python", default=".venv-bench/bin/python")
    p.add_argument("--marginal", default="autoregressive,flow,vae", help="families scored by the marginal too")
    p.add_argument("--score-limit", default="diffusion=200",
                   help="FAMILY=N: score only the first N test images (the diffusion bound costs ~100 passes per image)")
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--out", default="benchmarks/results/images")
    p.add_argument("--variant", action="append", default=[], metavar="NAME=FAMILY:JSON",
                   help='a family with other hyper-parameters, run as NAME (list NAME in --families), '
                        'e.g. diffusion-ema=diffusion:\'{"ema": 0.999}\'')
    p.add_argument("--one", default=None, help=argparse.SUPPRESS)
    p.add_argument("--report-only", action="store_true")
    args = p.parse_args()
    known = set(FAMILIES) | set(_variants(args.variant)) | {"pythae-vae"}
    if any(f not in known for f in args.families.split(",") if f):
        p.error(f"--families: each must be one of {sorted(known)}")
    if args.one:
        _one(args)
        return
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if not args.report_only:
        _load()                                           # fetch once before the jobs start
        jobs = [[sys.executable, __file__, "--one", f] for f in args.families.split(",") if f]
        if args.pythae:
            jobs.append([args.pythae_python, __file__, "--one", "pythae-vae"])
        common = ["--budget", str(args.budget), "--out", str(out), "--marginal", args.marginal,
                  "--score-limit", args.score_limit, *(f"--variant={v}" for v in args.variant)]
        running: list[tuple[subprocess.Popen, str]] = []
        started = time.strftime("%Y-%m-%dT%H:%M:%S")
        while jobs or running:
            while jobs and len(running) < args.jobs:
                cmd = jobs.pop(0) + common
                log = open(out / f"log-{cmd[3]}.txt", "w")
                running.append((subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT), cmd[3]))
            time.sleep(5)
            for proc, name in list(running):
                if proc.poll() is not None:
                    running.remove((proc, name))
                    print(f"{name}: exit {proc.returncode} at {time.strftime('%H:%M:%S')}", flush=True)
        print(f"started {started}, ended {time.strftime('%Y-%m-%dT%H:%M:%S')}")
    text = report(out, args.budget)
    (out / "report.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
