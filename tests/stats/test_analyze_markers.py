"""``pathomics analyze`` marker sub-commands end to end (real parser, real files)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm

from pathomics_desktop.cli import main
from pathomics_desktop.stats import cutpoint, lasso_cox, roc, tdroc
from pathomics_desktop.stats.concordance import harrell_c
from pathomics_desktop.stats.data import clean_json
from pathomics_desktop.stats.meta import meta_analysis
from tests.stats.cli_helpers import run_json

DATA = Path(__file__).parent / "data"
LUNG = str(DATA / "lung.csv")
SURV = ["--time", "time", "--event", "status", "--event-value", "2"]
REF = json.loads((DATA.parent / "reference" / "markers_reference.json").read_text())


def lung(*columns):
    """Time, event (status 2 = death) and the columns of the complete lung rows."""
    d = pd.read_csv(LUNG).dropna(subset=["time", "status", *columns])
    return (d.time.to_numpy(float), (d.status == 2).to_numpy(int), *(d[c].to_numpy(float) for c in columns))


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
    t, e, age = lung("age")
    assert boot == clean_json(tdroc.bootstrap_td_auc(t, e, age, [365.0], n_boot=20, seed=0).to_dict())
    assert boot["ci_lower"][0] < boot["auc"][0] < boot["ci_upper"][0]


def test_cutpoint(capsys):
    out = run_json(capsys, "cutpoint", LUNG, *SURV, "--marker", "age")
    ref = next(c for c in REF["maxstat"] if (c["dataset"], c["marker"]) == ("lung", "age"))  # R maxstat.test
    assert out["method"] == "maxstat" and out["cutpoint"] == ref["cutpoint"] == 70.0
    assert out["statistic"] == pytest.approx(ref["statistic"], rel=1e-10)
    assert out["p_adjusted"] == pytest.approx(ref["p"], rel=1e-6)
    assert out["p_raw"] == pytest.approx(2 * norm.sf(ref["statistic"]), rel=1e-9)
    xt = run_json(capsys, "cutpoint", LUNG, *SURV, "--marker", "age", "--method", "xtile", "--permutations", "20")
    t, e, age = lung("age")
    direct = cutpoint.xtile(t, e, age, minprop=0.1, n_perm=20, seed=0)
    assert xt == {"method": "xtile", "cutpoint": direct.cutpoint, "statistic": direct.statistic,
                  "p_raw": direct.p_raw, "p_adjusted": direct.p_adjusted}
    # the chi-square of the chosen cut is the log-rank test of that split
    assert xt["statistic"] == pytest.approx(cutpoint.logrank_groups(t, e, age <= xt["cutpoint"])[0], rel=1e-9)


def test_lasso_cox(capsys):
    feats = "age,sex,ph.ecog,ph.karno"
    out = run_json(capsys, "lasso-cox", LUNG, *SURV, "--features", feats, "--folds", "4", "--seed", "1")
    t, e, *cols = lung(*feats.split(","))
    x = np.column_stack(cols)
    names = feats.split(",")
    cv = lasso_cox.lasso_cox_cv(t, e, x, names=names, folds=4, seed=1).coef_at("min")
    fixed = run_json(capsys, "lasso-cox", LUNG, *SURV, "--features", feats, "--lambda", "0.05", "--no-standardize")
    at_005 = lasso_cox.lasso_cox_fit(t, e, x, 0.05, names=names, standardize=False)
    for printed, direct in ((out, cv), (fixed, at_005)):
        assert printed["lambda"] == pytest.approx(direct["lambda"], rel=1e-12)
        assert printed["coef"] == pytest.approx(direct["coef"], rel=1e-9, abs=1e-12)
        assert printed["selected"] == direct["selected"] == [f for f in direct["coef"] if direct["coef"][f] != 0]


def test_meta(capsys, tmp_path):
    out = run_json(capsys, "meta", str(DATA / "bcg.csv"), "--estimate", "yi", "--se", "sei", "--method", "dl")
    d = pd.read_csv(DATA / "bcg.csv")
    assert out == meta_analysis(d.yi, d.sei, method="dl").to_dict()
    ref = next(c for c in REF["meta"] if c["file"] == "bcg.csv")["fits"]["DL"]  # R metafor rma(method = "DL")
    for key in out:
        assert out[key] == pytest.approx(ref[key], rel=1e-8, abs=1e-10), key


def test_roc(capsys):
    pbc = str(DATA / "pbc.csv")
    out = run_json(capsys, "roc", pbc, "--label", "status", "--event-value", "2", "--score", "bili", "--vs", "albumin")
    ref = next(c for c in REF["roc"] if c["dataset"] == "pbc")  # R pROC (DeLong), Youden cut
    for key in ("auc", "ci_lower", "ci_upper", "sensitivity", "specificity", "ppv", "npv", "delong_p"):
        assert out[key] == pytest.approx(ref[key], rel=1e-6), key
    d = pd.read_csv(pbc)
    direct = roc.roc_analysis((d.status == 2).to_numpy(int), d.bili.to_numpy(float), vs=d.albumin.to_numpy(float))
    assert out == direct.to_dict()
    single = run_json(capsys, "roc", pbc, "--label", "status", "--event-value", "2", "--score", "bili")
    assert single == out | {"delong_p": None}


def test_text_output_and_user_errors(capsys, tmp_path):
    assert main(["analyze", "cindex", LUNG, *SURV, "--marker", "age"]) == 0
    t, e, age = lung("age")
    assert capsys.readouterr().out == harrell_c(t, e, age).summary() + "\n"
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
