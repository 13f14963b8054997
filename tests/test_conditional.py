"""Conditional sampling through ``Model`` and the CLI, on a table whose conditional marginals are
known (``known_table``): p(size, shape, count | colour) exactly, p(colour | size) by Bayes' rule."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

import genmodels as gm
from genmodels.cli import main
from genmodels.errors import ConfigError, DataError
from known_table import LAM, MU, SHAPE, SHAPES, bayes_colour, freqs, table

torch.set_num_threads(1)

@pytest.fixture(scope="module")
def data() -> pd.DataFrame:
    return table(3000)


@pytest.fixture(scope="module")
def models(data, tmp_path_factory) -> dict:
    out = {f: gm.Model(f, seed=0, device="cpu").fit(data, verbose=False) for f in ("gmm", "kde")}
    out["gmm_dir"] = out["gmm"].save(tmp_path_factory.mktemp("cond") / "gmm")
    return out


# family -> tolerances: (size mean, size std, shape frequency, Bayes colour frequency).
# The KDE's conditional is its own, smoothed one (its bandwidth widens size), hence looser.
TOL = {"gmm": (0.12, 0.08, 0.05, 0.05), "kde": (0.15, 0.25, 0.06, 0.1)}


@pytest.mark.parametrize("family", ["gmm", "kde"])
def test_condition_on_a_category(models, family):
    s = models[family].sample(4000, seed=1, condition={"colour": "green"})
    t_mean, t_std, t_shape, _ = TOL[family]
    assert len(s) == 4000 and (s["colour"] == "green").all()
    assert s["size"].mean() == pytest.approx(MU["green"], abs=t_mean)
    assert s["size"].std() == pytest.approx(1.0, abs=t_std)
    np.testing.assert_allclose(freqs(s["shape"], SHAPES), SHAPE["green"], atol=t_shape)
    assert s["count"].mean() == pytest.approx(LAM["green"], abs=0.4)
    assert s["count"].dtype == np.int64


@pytest.mark.parametrize("family", ["gmm", "kde"])
def test_condition_on_a_number_follows_bayes(models, family):
    s = models[family].sample(4000, seed=2, condition={"size": 1.5})
    assert (s["size"] == 1.5).all()
    truth = bayes_colour(1.5)                 # green 0.82, blue 0.18, red ~0
    np.testing.assert_allclose(freqs(s["colour"], list(truth)), list(truth.values()), atol=TOL[family][3])


@pytest.mark.parametrize("family", ["gmm", "kde"])
def test_condition_on_a_category_and_an_integer(models, family):
    s = models[family].sample(4000, seed=3, condition={"colour": "blue", "count": 9})
    assert (s["colour"] == "blue").all() and (s["count"] == 9).all() and s["count"].dtype == np.int64
    # count is independent of size and shape given colour: they keep p(. | blue)
    assert s["size"].mean() == pytest.approx(MU["blue"], abs=TOL[family][0])
    np.testing.assert_allclose(freqs(s["shape"], SHAPES), SHAPE["blue"], atol=TOL[family][2])


def test_conditional_samples_repeat_and_survive_save_load(models):
    m, cond = models["gmm"], {"colour": "red", "size": -3.5}
    a, b = m.sample(200, seed=7, condition=cond), m.sample(200, seed=7, condition=cond)
    pd.testing.assert_frame_equal(a, b)
    pd.testing.assert_frame_equal(gm.load(models["gmm_dir"], device="cpu").sample(200, seed=7, condition=cond), a)
    assert not a.equals(m.sample(200, seed=8, condition=cond))


@pytest.mark.parametrize("family", ["gmm", "kde"])
@pytest.mark.parametrize("condition, match", [
    ({"colour": "purple"}, "never seen in training"),
    ({"weight": 3.0}, "unknown columns"),
    ({"colur": "red"}, "unknown columns.*did you mean 'colour'"),
    ({"size": 100.0}, "outside the training range"),
    ({"count": 2.5}, "whole numbers"),
])
def test_bad_conditions_raise(models, family, condition, match):
    with pytest.raises(DataError, match=match):
        models[family].sample(10, condition=condition)


def test_empty_condition_and_families_that_cannot_condition(models, data):
    with pytest.raises(ConfigError, match="non-empty dict"):
        models["gmm"].sample(10, condition={})
    flow = gm.Model("flow", seed=0, device="cpu", transforms=1, hidden=[8]).fit(
        data.head(200), max_steps=1, validation=0, verbose=False)
    with pytest.raises(ConfigError, match="'flow' family cannot sample conditionally") as err:
        flow.sample(10, condition={"colour": "green"})
    able = str(err.value).split("families that can:")[1]
    assert "gmm" in able and "kde" in able and "flow" not in able and "vae" not in able


def bivariate(n: int = 2000) -> np.ndarray:
    return np.random.default_rng(0).multivariate_normal([0, 0], [[1, 0.9], [0.9, 1]], n)


def test_gaussian_conditional_through_model():
    m = gm.Model("gmm", seed=0, device="cpu", n_components=1).fit(pd.DataFrame(bivariate(), columns=["a", "b"]),
                                                                 verbose=False)
    s = m.sample(3000, seed=1, condition={"a": 1.0})
    assert (s["a"] == 1.0).all()
    assert s["b"].mean() == pytest.approx(0.9, abs=0.08)                   # E[b | a = 1] = rho
    assert s["b"].std() == pytest.approx(math.sqrt(1 - 0.81), abs=0.05)    # sqrt(1 - rho^2)


def test_ndarray_model_conditions():
    m = gm.Model("gmm", seed=0, device="cpu", n_components=1).fit(bivariate(), verbose=False)
    s = m.sample(100, seed=1, condition={"x0": 1.0})
    assert isinstance(s, np.ndarray) and (s[:, 0] == 1.0).all() and s.flags.writeable


def test_cli_condition_values_keep_the_column_type(tmp_path):
    # a code column of digit strings: "--condition zip=01234" must mean the string, not the number 1234
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"zip": rng.choice(["01234", "98765"], 300), "v": rng.normal(size=300), "ok": rng.random(300) < .5})
    df.to_csv(tmp_path / "z.csv", index=False)
    m = gm.Model("gmm", seed=0).fit(pd.read_csv(tmp_path / "z.csv", dtype={"zip": "str"}), verbose=False)
    m.save(tmp_path / "m")
    out = tmp_path / "s.csv"
    assert main(["sample", str(tmp_path / "m"), "-n", "20", "-o", str(out), "--condition", "zip=01234",
                 "--condition", "ok=true", "--condition", "v=0.5"]) == 0
    s = pd.read_csv(out, dtype={"zip": "str"})
    assert (s["zip"] == "01234").all() and s["ok"].all() and (s["v"] == 0.5).all()


def test_cli_condition(models, tmp_path, capsys):
    out = tmp_path / "green.csv"
    assert main(["sample", str(models["gmm_dir"]), "-n", "50", "-o", str(out), "--condition", "colour=green",
                 "--seed", "1"]) == 0
    s = pd.read_csv(out)
    assert len(s) == 50 and (s["colour"] == "green").all() and list(s.columns) == ["colour", "size", "shape", "count"]
    out2 = tmp_path / "two.csv"
    assert main(["sample", str(models["gmm_dir"]), "-n", "50", "-o", str(out2),
                 "--condition", "colour=blue", "--condition", "count=9"]) == 0
    s = pd.read_csv(out2)
    assert (s["colour"] == "blue").all() and (s["count"] == 9).all()
    capsys.readouterr()
    for bad in ("colour=purple", "size=100", "weight=1", "colour"):
        assert main(["sample", str(models["gmm_dir"]), "-n", "5", "-o", str(tmp_path / "bad.csv"),
                     "--condition", bad]) == 2
        err = capsys.readouterr().err
        assert err.startswith("genmodels sample: error:") and err.count("\n") == 1, err
    assert not (tmp_path / "bad.csv").exists()
