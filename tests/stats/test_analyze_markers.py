"""``pathomics analyze`` marker sub-commands end to end (real parser, real files)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pathomics_desktop.cli import main
from pathomics_desktop.stats.concordance import harrell_c
from pathomics_desktop.stats.meta import meta_analysis
from tests.stats.cli_helpers import run_json

DATA = Path(__file__).parent / "data"
LUNG = str(DATA / "lung.csv")
SURV = ["--time", "time", "--event", "status", "--event-value", "2"]




def test_cindex(capsys):
    out = run_json(capsys, "cindex", LUNG, *SURV, "--marker", "age")
    assert set(out) == {"c", "ci_lower", "ci_upper", "n"}
    d = pd.read_csv(LUNG)
    assert out["c"] == pytest.approx(harrell_c(d.time, d.status == 2, d.age).c)
    assert out["n"] == 228 and out["ci_lower"] < out["c"] < out["ci_upper"]
    boot = run_json(capsys, "cindex", LUNG, *SURV, "--marker", "age", "--bootstrap", "50", "--seed", "3")
    assert set(boot) == {"c", "ci_lower", "ci_upper", "n"} and boot["c"] == out["c"]
    assert boot == run_json(capsys, "cindex", LUNG, *SURV, "--marker", "age", "--bootstrap", "50", "--seed", "3")
    uno = run_json(capsys, "cindex", LUNG, *SURV, "--marker", "age", "--uno", "--tau", "700")
    assert set(uno) == {"c", "ci_lower", "ci_upper", "n"} and uno["ci_lower"] is None
    assert uno["c"] == pytest.approx(0.5504166313810526, abs=1e-10)  # sksurv concordance_index_ipcw


def test_tdauc(capsys):
    out = run_json(capsys, "tdauc", LUNG, *SURV, "--marker", "age", "--at", "180,365")
    assert set(out) == {"times", "auc", "ci_lower", "ci_upper"}
    assert out["times"] == [180.0, 365.0] and out["ci_lower"] is None
    np.testing.assert_allclose(out["auc"], [0.5666018755147845, 0.5394942049163295], atol=1e-10)
    boot = run_json(capsys, "tdauc", LUNG, *SURV, "--marker", "age", "--at", "365", "--bootstrap", "20")
    assert len(boot["ci_lower"]) == 1


def test_cutpoint(capsys):
    out = run_json(capsys, "cutpoint", LUNG, *SURV, "--marker", "age")
    assert set(out) == {"method", "cutpoint", "statistic", "p_raw", "p_adjusted"}
    assert out["method"] == "maxstat" and out["cutpoint"] == 70.0
    xt = run_json(capsys, "cutpoint", LUNG, *SURV, "--marker", "age", "--method", "xtile", "--permutations", "20")
    assert set(xt) == {"method", "cutpoint", "statistic", "p_raw", "p_adjusted"} and xt["method"] == "xtile"


def test_lasso_cox(capsys):
    feats = "age,sex,ph.ecog,ph.karno"
    out = run_json(capsys, "lasso-cox", LUNG, *SURV, "--features", feats, "--folds", "4", "--seed", "1")
    assert set(out) == {"lambda", "coef", "selected"}
    assert list(out["coef"]) == feats.split(",")
    fixed = run_json(capsys, "lasso-cox", LUNG, *SURV, "--features", feats, "--lambda", "0.05", "--no-standardize")
    assert fixed["lambda"] == 0.05 and set(fixed["selected"]) <= set(feats.split(","))


def test_meta(capsys, tmp_path):
    out = run_json(capsys, "meta", str(DATA / "bcg.csv"), "--estimate", "yi", "--se", "sei", "--method", "dl")
    assert set(out) == {"estimate", "ci_lower", "ci_upper", "tau2", "i2", "q", "q_p", "pi_lower", "pi_upper"}
    d = pd.read_csv(DATA / "bcg.csv")
    assert out["tau2"] == pytest.approx(meta_analysis(d.yi, d.sei, method="dl").tau2)


def test_roc(capsys):
    pbc = str(DATA / "pbc.csv")
    out = run_json(capsys, "roc", pbc, "--label", "status", "--event-value", "2", "--score", "bili", "--vs", "albumin")
    assert set(out) == {"auc", "ci_lower", "ci_upper", "sensitivity", "specificity", "ppv", "npv", "cut", "delong_p"}
    assert out["delong_p"] < 1e-10
    single = run_json(capsys, "roc", pbc, "--label", "status", "--event-value", "2", "--score", "bili")
    assert single["delong_p"] is None and single["auc"] == out["auc"]


def test_text_output_and_user_errors(capsys, tmp_path):
    assert main(["analyze", "cindex", LUNG, *SURV, "--marker", "age"]) == 0
    assert "c" in capsys.readouterr().out
    bad = tmp_path / "bad.csv"
    pd.DataFrame({"t": [1, 2, 3], "e": [0, 0, 0], "m": [1, 2, 3]}).to_csv(bad, index=False)
    assert main(["analyze", "cindex", str(bad), "--time", "t", "--event", "e", "--marker", "m", "--json"]) == 2
    assert "no events" in capsys.readouterr().err
    pd.DataFrame({"t": [1, 2, 3], "e": [1, 0, 1], "m": [5, 5, 5]}).to_csv(bad, index=False)
    assert main(["analyze", "cutpoint", str(bad), "--time", "t", "--event", "e", "--marker", "m"]) == 2
    assert "single value" in capsys.readouterr().err
    pd.DataFrame({"y": [1, 1, 1], "s": [1, 2, 3]}).to_csv(bad, index=False)
    assert main(["analyze", "roc", str(bad), "--label", "y", "--score", "s"]) == 2
    assert "single class" in capsys.readouterr().err
    assert main(["analyze", "cindex", str(DATA / "veteran.csv"), "--time", "time", "--event", "status", "--marker", "celltype"]) == 2
    assert "not numeric" in capsys.readouterr().err
    assert main(["analyze", "tdauc", LUNG, *SURV, "--marker", "age", "--at", "abc"]) == 2
    assert "--at" in capsys.readouterr().err
