"""Model: raw-unit likelihoods against closed forms, budgets, resume after a kill, errors."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats

import genmodels as gm
from genmodels import registry
from genmodels.core import GenerativeModule
from genmodels.errors import CheckpointError, ConfigError, NoLikelihoodError


def test_log_prob_is_in_raw_units():
    # a Gaussian far from N(0, 1): the codec's scaling Jacobian must be in the number
    rng = np.random.default_rng(0)
    train = pd.DataFrame({"a": rng.normal(1000.0, 50.0, 4000)})
    test = pd.DataFrame({"a": rng.normal(1000.0, 50.0, 2000)})
    m = gm.Model("gmm", n_components=1, seed=0).fit(train, verbose=False)
    truth = stats.norm(1000.0, 50.0).logpdf(test["a"]).mean()
    assert m.likelihood == "exact"
    assert abs(m.score(test) - truth) < 0.03


def test_integer_columns_give_a_bound_on_the_mass():
    # Poisson counts: the dequantized density integrates to a lower bound of log P(k)
    rng = np.random.default_rng(1)
    train = pd.DataFrame({"k": rng.poisson(20, 5000)})
    test = pd.DataFrame({"k": rng.poisson(20, 2000)})
    m = gm.Model("gmm", n_components=2, seed=0).fit(train, verbose=False)
    truth = stats.poisson(20).logpmf(test["k"]).mean()
    assert m.likelihood == "bound"
    assert truth - 0.1 < m.score(test) <= truth + 0.02      # close, and not above the truth


def test_budgets_and_history():
    x = np.random.default_rng(0).normal(size=(300, 2))
    m = gm.Model("flow", transforms=1, hidden=[16], seed=0).fit(x, max_steps=7, verbose=False)
    assert m.fit_info_["steps"] == 7 and m.fit_info_["stopped"] == "max_steps"
    m = gm.Model("flow", transforms=1, hidden=[16], seed=0).fit(x, max_epochs=2, verbose=False)
    assert m.fit_info_["epochs"] == 2 and m.history_[-1]["epoch"] == 2
    t = time.monotonic()
    m = gm.Model("flow", transforms=1, hidden=[16], seed=0).fit(x, max_time=1.5, verbose=False)
    assert time.monotonic() - t < 8 and m.fit_info_["stopped"] in ("max_time", "early_stopping")
    with pytest.raises(ConfigError, match="max_steps"):
        gm.Model("flow").fit(x, max_steps=-1, verbose=False)
    with pytest.raises(ConfigError, match="validation"):
        gm.Model("flow").fit(x, validation=1.5, verbose=False)
    with pytest.raises(ConfigError, match='bucket=True batches rows by their "length"'):
        gm.Model("flow", bucket=True).fit(x, max_steps=2, verbose=False)       # a table has no lengths
    with pytest.raises(ConfigError, match="bucket must be True or False"):
        gm.Model("flow", bucket="yes").fit(x, max_steps=2, verbose=False)


def test_early_stopping_restores_best_weights():
    x = np.random.default_rng(0).normal(size=(200, 2))
    m = gm.Model("flow", transforms=1, hidden=[16], patience_steps=5, lr=0.05, seed=0).fit(x, max_epochs=200, verbose=False)
    vals = [h["val"] for h in m.history_]
    assert m.fit_info_["stopped"] == "early_stopping" and len(vals) < 200
    assert m.fit_info_["best_val_loss"] == pytest.approx(min(vals))


def test_resume_continues_the_run(tmp_path):
    x = np.random.default_rng(0).normal(size=(256, 2))
    kw = dict(transforms=1, hidden=[16], batch_size=64, seed=0)
    m = gm.Model("flow", **kw).fit(x, max_steps=12, verbose=False, checkpoint_dir=tmp_path / "run")
    assert m.fit_info_["steps"] == 12
    again = gm.Model("flow", **kw).fit(x, max_steps=20, verbose=False, checkpoint_dir=tmp_path / "run", resume=True)
    assert again.fit_info_["steps"] == 20
    steps = [h["step"] for h in again.history_]
    assert steps[:len(m.history_)] == [h["step"] for h in m.history_] and steps[-1] == 20   # one history, continued
    with pytest.raises(CheckpointError, match="no checkpoint"):
        gm.Model("flow").fit(x, resume=True, checkpoint_dir=tmp_path / "nothing", verbose=False)


def test_kill_leaves_a_loadable_checkpoint_and_resume_finishes(tmp_path):
    csv = tmp_path / "d.csv"
    pd.DataFrame(np.random.default_rng(0).normal(size=(2000, 3)), columns=list("abc")).to_csv(csv, index=False)
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "genmodels", "fit", str(csv), "--model", "flow", "--out", str(out), "--quiet",
           "--set", "checkpoint_every=0.2", "--set", "transforms=1", "--set", "hidden=[16]", "--set", "patience_steps=100000000"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd + ["--max-steps", "100000"], env=env, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(list(out.glob("resume-*.safetensors"))) == 0:
        time.sleep(0.2)
    time.sleep(1.0)                                   # several more checkpoints, one perhaps half-written
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    m = gm.load(out)                                  # the last good checkpoint loads
    assert "steps" not in m.fit_info_                 # it never finished
    step = json.loads((out / "config.json").read_text())["resume"]["__dict__"][0][1]["__dict__"][0][1]
    assert step > 0
    r = subprocess.run(cmd + ["--max-steps", str(step + 50), "--resume"], env=env, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert gm.load(out).fit_info_["steps"] == step + 50


class _NoLikelihood(GenerativeModule):
    likelihood = "none"
    closed_form = True

    def __init__(self, spec):
        super().__init__(spec)
        self.register_buffer("mu", torch.zeros(spec.n_continuous))

    def fit_closed_form(self, train, val=None, *, generator=None):
        self.mu.copy_(train["x"].mean(0))
        return {}

    def sample(self, n, *, condition=None, generator=None):
        return {"x": self.mu.expand(n, -1).clone(), "c": torch.zeros(n, 0, dtype=torch.long)}


def test_family_without_likelihood_refuses_log_prob(monkeypatch):
    monkeypatch.setitem(registry.FAMILIES, "dummy", {"tabular": f"{__name__}:_NoLikelihood"})
    m = gm.Model("dummy").fit(np.ones((10, 2)), verbose=False)
    assert m.likelihood == "none" and m.sample(3).shape == (3, 2)
    with pytest.raises(NoLikelihoodError, match="no likelihood; use one of"):
        m.log_prob(np.ones((2, 2)))


def test_threads_setting_is_restored():
    before = torch.get_num_threads()
    gm.Model("gmm", num_threads=1, n_components=1).fit(np.random.default_rng(0).normal(size=(50, 2)), verbose=False)
    assert torch.get_num_threads() == before
    with pytest.raises(ConfigError, match="num_threads"):
        gm.Model("gmm", num_threads=0)


def test_device_errors():
    with pytest.raises(ConfigError, match="not a device"):
        gm.Model("gmm", device="gpu9").fit(np.ones((5, 1)), verbose=False)
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="no CUDA"):
            gm.Model("gmm", device="cuda").fit(np.ones((5, 1)), verbose=False)


def test_max_time_bounds_the_whole_fit_including_prepare(monkeypatch):
    # a family's data-dependent set-up (GAN mode fitting, say) counts against the budget
    from genmodels.families.flow import Flow
    monkeypatch.setattr(Flow, "prepare", lambda self, train: time.sleep(2.0))
    x = np.random.default_rng(0).normal(size=(300, 2))
    t = time.monotonic()
    m = gm.Model("flow", transforms=1, hidden=[16], seed=0).fit(x, max_time=2.0, verbose=False)
    assert m.fit_info_["steps"] >= 1 and m.fit_info_["fit_seconds"] >= 2.0
    assert time.monotonic() - t < 3.5          # not 2 s of set-up plus 2 s of training
