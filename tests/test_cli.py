"""The `genmodels` command end to end, and its answers to a user's mistakes (one line, exit 2)."""
import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from genmodels.cli import main


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"a": rng.normal(size=300), "b": rng.normal(size=300) * 3 + 1,
                       "g": rng.choice(["u", "v"], 300)})
    df.to_csv(d / "train.csv", index=False)
    df.head(50).to_csv(d / "test.csv", index=False)
    assert main(["fit", str(d / "train.csv"), "--model", "gmm", "--out", str(d / "m"), "--set", "max_components=3",
                 "--seed", "1", "--quiet"]) == 0
    return d


def test_models_and_datasets_list(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "gmm" in out and "flow" in out and "likelihood=exact" in out
    assert main(["datasets"]) == 0
    assert "moons" in capsys.readouterr().out


def test_sample_above_the_row_limit_needs_force(workdir, monkeypatch, capsys):
    import genmodels.cli
    monkeypatch.setattr(genmodels.cli, "MAX_SAMPLE_ROWS", 10)
    out = str(workdir / "big.csv")
    assert main(["sample", str(workdir / "m"), "-n", "11", "-o", out]) == 2
    assert "more than 10 rows" in capsys.readouterr().err
    assert main(["sample", str(workdir / "m"), "-n", "11", "-o", out, "--force"]) == 0
    assert len(pd.read_csv(out)) == 11


def test_sample_score_evaluate(workdir, capsys):
    assert main(["sample", str(workdir / "m"), "-n", "20", "-o", str(workdir / "s.csv"), "--seed", "3"]) == 0
    s = pd.read_csv(workdir / "s.csv")
    assert list(s.columns) == ["a", "b", "g"] and len(s) == 20
    assert main(["sample", str(workdir / "m"), "-n", "20", "-o", str(workdir / "s2.parquet"), "--seed", "3"]) == 0
    pd.testing.assert_frame_equal(pd.read_parquet(workdir / "s2.parquet"), s, check_dtype=False)
    assert main(["score", str(workdir / "m"), str(workdir / "test.csv"), "-o", str(workdir / "lp.csv")]) == 0
    lp = pd.read_csv(workdir / "lp.csv")
    assert list(lp.columns) == ["log_likelihood"] and len(lp) == 50 and np.isfinite(lp.values).all()
    capsys.readouterr()
    assert main(["evaluate", str(workdir / "m"), str(workdir / "test.csv"), "--json",
                 "--train", str(workdir / "train.csv")]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert {"log_likelihood", "c2st_auroc", "marginal_distance", "copy_rate", "dcr_median"} <= set(metrics)
    # the test rows are the first 50 training rows: copies, at distance 0
    assert metrics["dcr_holdout_median"] == 0.0 and metrics["copy_rate"] == 0.0


def test_builtin_dataset_names_work(tmp_path):
    assert main(["fit", "8gaussians", "--model", "gmm", "--out", str(tmp_path / "m"), "--quiet"]) == 0
    assert main(["score", str(tmp_path / "m"), "8gaussians", "-o", str(tmp_path / "lp.csv")]) == 0
    assert len(pd.read_csv(tmp_path / "lp.csv")) == 1000    # the test split


@pytest.mark.parametrize("argv, match", [
    (["fit", "{d}/missing.csv", "--model", "gmm", "--out", "{d}/x"], "neither a file nor a built-in"),
    (["fit", "{d}/empty.csv", "--model", "gmm", "--out", "{d}/x"], "empty"),
    (["fit", "{d}/ragged.csv", "--model", "gmm", "--out", "{d}/x"], "line"),
    (["fit", "{d}/allnan.csv", "--model", "gmm", "--out", "{d}/x"], "entirely missing"),
    (["fit", "{d}/train.csv", "--model", "nope", "--out", "{d}/x"], "known families"),
    (["fit", "{d}/train.csv", "--model", "gmmm", "--out", "{d}/x"], "did you mean 'gmm'"),
    (["sample", "{d}/m", "-n", "1000001", "-o", "{d}/s.csv"], "--force"),
    (["fit", "{d}/train.csv", "--model", "gmm", "--out", "{d}/x", "--set", "bogus=1"], "unknown hyper-parameters"),
    (["fit", "{d}/train.csv", "--model", "gmm", "--out", "{d}/x", "--set", "novalue"], "key=value"),
    (["sample", "{d}/m", "-n", "0", "-o", "{d}/s.csv"], "positive"),
    (["sample", "{d}/m", "-n", "-4", "-o", "{d}/s.csv"], "positive"),
    (["sample", "{d}/m", "-n", "5", "-o", "{d}/s.xlsx"], ".csv or .parquet"),
    (["sample", "{d}/nomodel", "-n", "5", "-o", "{d}/s.csv"], "does not exist"),
    (["score", "{d}/m", "{d}/wrongcols.csv", "-o", "{d}/lp.csv"], "missing columns"),
    (["score", "{d}/m", "{d}/strings.csv", "-o", "{d}/lp.csv"], "non-numeric"),
    (["score", "{d}/m", "{d}/unseen.csv", "-o", "{d}/lp.csv"], "never seen"),
    (["evaluate", "{d}/corrupt", "{d}/test.csv"], "corrupt"),
])
def test_user_mistakes_give_one_line_and_exit_2(workdir, capsys, argv, match):
    d = workdir
    (d / "empty.csv").write_text("")
    (d / "ragged.csv").write_text("a,b\n1,2\n3,4,5\n")
    (d / "allnan.csv").write_text("a,b\n1,\n2,\n3,\n")
    pd.DataFrame({"a": [1.0], "c": [2.0], "g": ["u"]}).to_csv(d / "wrongcols.csv", index=False)
    pd.DataFrame({"a": ["x"], "b": [2.0], "g": ["u"]}).to_csv(d / "strings.csv", index=False)
    pd.DataFrame({"a": [1.0], "b": [2.0], "g": ["w"]}).to_csv(d / "unseen.csv", index=False)
    if not (d / "corrupt").exists():
        (d / "corrupt").mkdir()
        (d / "corrupt" / "config.json").write_text('{"format": "genmodels", "ver')
    capsys.readouterr()
    code = main([a.format(d=d) for a in argv])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and "Traceback" not in err and match in err


def test_console_script_has_no_traceback_for_mistakes(tmp_path):
    r = subprocess.run([sys.executable, "-m", "genmodels", "sample", str(tmp_path / "none"), "-n", "3", "-o", "x.csv"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "Traceback" not in r.stderr and "does not exist" in r.stderr
