"""`pathomics analyze km|cox|subgroups|table1` and the shared table loader.

The CLI is called in-process through ``pathomics_desktop.cli.main``; JSON outputs must have
exactly the documented keys and no NaN.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm

from pathomics_desktop.cli import main
from pathomics_desktop.errors import UserError
from pathomics_desktop.stats.data import clean_json, load_analysis_table
from tests.stats.cli_helpers import run_json

HERE = Path(__file__).parent
LUNG = str(HERE / "data" / "lung.csv")
REF = json.loads((HERE / "reference" / "km_cox.json").read_text())
REF_T1_SG = json.loads((HERE / "reference" / "table1_subgroups.json").read_text())


def test_km_json_keys_and_values(capsys):
    res = run_json(capsys, "km", LUNG, "--time", "time", "--event", "status", "--event-value", "2",
                   "--group", "sex", "--at", "180,365")
    assert set(res) == {"groups", "logrank"}
    assert set(res["logrank"]) == {"chisq", "df", "p"}
    assert res["logrank"]["chisq"] == pytest.approx(REF["logrank_lung_sex"]["chisq"], rel=1e-9)
    assert [g["group"] for g in res["groups"]] == ["1", "2"]
    for g in res["groups"]:
        assert set(g) == {"group", "n", "events", "median", "median_lower", "median_upper", "at"}
        for row in g["at"]:
            assert set(row) == {"time", "survival", "lower", "upper", "at_risk"}
    assert [g["median"] for g in res["groups"]] == REF["km_lung_sex"]["median"]


def test_km_without_group_and_unreached_median(capsys, tmp_path):
    path = tmp_path / "few.csv"
    pd.DataFrame({"t": [1, 2, 3, 4], "e": [1, 0, 0, 0]}).to_csv(path, index=False)
    res = run_json(capsys, "km", str(path), "--time", "t", "--event", "e")
    assert res["logrank"] is None
    assert res["groups"][0]["group"] == "all" and res["groups"][0]["median"] is None


def test_cox_json_keys_categorical_and_ph_test(capsys, tmp_path):
    res = run_json(capsys, "cox", LUNG, "--time", "time", "--event", "status", "--event-value", "2",
                   "--covariates", "age,sex,ph.ecog", "--categorical", "ph.ecog",
                   "--reference", "ph.ecog=1")
    assert set(res) == {"n", "events", "terms", "loglik", "concordance", "frailty", "ph_test"}
    assert res["frailty"] is None
    assert [t["term"] for t in res["terms"]] == ["age", "sex", "ph.ecog=0", "ph.ecog=2", "ph.ecog=3"]
    for t in res["terms"]:
        assert set(t) == {"term", "coef", "se", "hr", "hr_lower", "hr_upper", "z", "p"}
    assert set(res["ph_test"]) == {"age", "sex", "ph.ecog", "GLOBAL"}
    assert set(res["ph_test"]["GLOBAL"]) == {"chisq", "df", "p"}
    assert res["n"] == 227 and res["events"] == 164
    # the values, against R coxph(Surv(time, status) ~ age + sex + relevel(factor(ph.ecog), ref = "1")
    # + wt.loss) and cox.zph on the complete rows
    cols = ["time", "status", "age", "sex", "ph.ecog", "ph.karno", "wt.loss", "inst"]
    subset = tmp_path / "lung_complete.csv"
    pd.read_csv(LUNG)[cols].dropna().to_csv(subset, index=False)
    res = run_json(capsys, "cox", str(subset), "--time", "time", "--event", "status", "--event-value", "2",
                   "--covariates", "age,sex,ph.ecog,wt.loss", "--categorical", "ph.ecog",
                   "--reference", "ph.ecog=1")
    ref = REF["cox_lung_cat"]
    assert (res["n"], res["events"]) == (ref["n"], ref["nevent"])
    np.testing.assert_allclose([t["coef"] for t in res["terms"]], ref["coef"], rtol=1e-6)
    np.testing.assert_allclose([t["se"] for t in res["terms"]], ref["se"], rtol=1e-6)
    for t in res["terms"]:
        assert t["hr"] == pytest.approx(math.exp(t["coef"]), rel=1e-12)
        assert t["p"] == pytest.approx(2 * norm.sf(abs(t["coef"] / t["se"])), rel=1e-9)
    assert res["loglik"] == pytest.approx(ref["loglik"][1], rel=1e-9)
    assert res["concordance"] == pytest.approx(ref["concordance"], rel=1e-12)
    np.testing.assert_allclose([v["chisq"] for v in res["ph_test"].values()], ref["zph"]["chisq"], rtol=1e-4)
    assert [v["df"] for v in res["ph_test"].values()] == ref["zph"]["df"]


def test_cox_cluster_and_frailty(capsys, tmp_path):
    cols = ["time", "status", "age", "sex", "ph.ecog", "ph.karno", "wt.loss", "inst"]
    subset = tmp_path / "lung_complete.csv"
    pd.read_csv(LUNG)[cols].dropna().to_csv(subset, index=False)  # the rows R used
    clustered = run_json(capsys, "cox", str(subset), "--time", "time", "--event", "status",
                         "--event-value", "2", "--covariates", "age,sex,ph.karno",
                         "--cluster", "inst")
    ref = REF["cox_lung_cluster"]
    np.testing.assert_allclose([t["se"] for t in clustered["terms"]], ref["se"], rtol=1e-6)
    np.testing.assert_allclose([t["coef"] for t in clustered["terms"]], ref["coef"], rtol=1e-6)
    assert clustered["concordance"] == pytest.approx(ref["concordance"], rel=1e-12)
    frail = run_json(capsys, "cox", str(HERE / "data" / "frailty_sim.csv"), "--time", "time",
                     "--event", "status", "--covariates", "risk,score", "--frailty", "center")
    assert set(frail["frailty"]) == {"variance"}
    fref = json.loads((HERE / "reference" / "frailty.json").read_text())["sim_default"]  # R print(fit)
    assert frail["frailty"]["variance"] == pytest.approx(fref["theta"], rel=1e-6)
    assert frail["concordance"] == pytest.approx(fref["concordance"], rel=1e-9)  # lp + center
    assert frail["ph_test"] is None


def test_subgroups_json_keys_and_values(capsys):
    res = run_json(capsys, "subgroups", str(HERE / "data" / "lung_subgroups.csv"), "--time", "time",
                   "--event", "status", "--exposure", "X", "--subgroups", "sex,age65,ph.ecog")
    assert set(res) == {"rows"}
    for row in res["rows"]:
        assert set(row) == {"variable", "level", "n", "events", "hr", "hr_lower", "hr_upper", "p",
                            "p_interaction"}
    ref = REF_T1_SG["sg_lung"]  # R coxph within levels; anova(x + S, x * S)
    rows = [r for r in res["rows"] if r["variable"] != "Overall"]
    expected_levels = sorted((v, lvl) for v in ref for lvl in ref[v]["levels"])
    assert sorted((r["variable"], r["level"]) for r in rows) == expected_levels
    for row in rows:
        lv = ref[row["variable"]]["levels"][row["level"]]
        assert (row["n"], row["events"]) == (lv["n"], lv["events"])
        if lv["hr"] == {}:  # R: NA (one patient)
            assert row["hr"] is None
            continue
        assert [row["hr"], row["hr_lower"], row["hr_upper"]] == pytest.approx([lv["hr"], lv["lower"], lv["upper"]],
                                                                            rel=1e-6)
        assert row["p"] == pytest.approx(lv["p"], rel=1e-5)
    firsts = {v: next(r for r in rows if r["variable"] == v) for v in ref}
    for v, first in firsts.items():
        assert first["p_interaction"] == pytest.approx(ref[v]["p_interaction"], rel=1e-6)


def test_table1_json_keys_and_text(capsys):
    pbc = str(HERE / "data" / "pbc.csv")
    res = run_json(capsys, "table1", pbc, "--by", "trt", "--columns", "age,chol,sex,stage",
                   "--categorical", "stage")
    assert set(res) == {"groups", "rows"} and res["groups"] == ["1", "2"]
    for row in res["rows"]:
        assert set(row) == {"variable", "level", "summary", "p", "test"}
    ref = REF_T1_SG["t1_pbc"]  # R: shapiro.test per group, then wilcox.test / chisq.test(correct = FALSE)
    first = {}
    for row in res["rows"]:
        first.setdefault(row["variable"], row)
    for var in ("age", "chol"):  # neither normal in both groups (Shapiro-Wilk p <= 0.05)
        assert first[var]["test"] == "Mann-Whitney U"
        assert first[var]["p"] == pytest.approx(ref[var]["wilcox"], rel=1e-9)
    for var in ("sex", "stage"):
        assert first[var]["test"] == "Pearson chi-square"
        assert first[var]["p"] == pytest.approx(ref[var]["chisq"], rel=1e-9)
    sex_counts = [int(r["summary"][g].split()[0]) for r in res["rows"] if r["variable"] == "sex" for g in ("1", "2")]
    assert sex_counts == [n for row in ref["sex"]["table"] for n in row]
    missing = next(r for r in res["rows"] if r["variable"] == "chol" and r["level"] == "missing")
    pbc_frame = pd.read_csv(pbc).dropna(subset=["trt"])
    counts = {g: int(pbc_frame.chol[pbc_frame.trt == int(g)].isna().sum()) for g in ("1", "2")}
    assert missing["summary"] == {g: str(c) for g, c in counts.items()} | {"Overall": str(sum(counts.values()))}
    code = main(["analyze", "table1", pbc, "--by", "trt", "--columns", "age,sex"])
    text = capsys.readouterr().out
    assert code == 0 and "age" in text and ("Welch" in text or "Mann-Whitney" in text)
    assert "left out" in text  # rows without a treatment value are reported


def test_cli_errors_name_column_and_file(capsys):
    code = main(["analyze", "km", LUNG, "--time", "time", "--event", "status", "--group", "nope"])
    err = capsys.readouterr().err
    assert code != 0 and "nope" in err and "lung.csv" in err
    code = main(["analyze", "km", LUNG, "--time", "time", "--event", "status"])
    err = capsys.readouterr().err
    assert code != 0 and "status" in err and "0/1" in err  # 1/2 coding needs --event-value
    code = main(["analyze", "cox", LUNG, "--time", "time", "--event", "status", "--event-value", "2",
                 "--covariates", "age", "--categorical", "age", "--reference", "age=999"])
    assert code != 0 and "999" in capsys.readouterr().err


def test_loader_formats_dropping_and_event_codes(tmp_path):
    df = pd.DataFrame({"t": [5.0, 6.0, np.nan, 8.0], "e": ["dead", "alive", "dead", "dead"],
                       "g": ["a", "b", "a", None], "other": [1, 2, 3, 4]})
    for name, write in [("x.csv", lambda p: df.to_csv(p, index=False)),
                        ("x.xlsx", lambda p: df.to_excel(p, index=False)),
                        ("x.parquet", lambda p: df.to_parquet(p))]:
        path = tmp_path / name
        write(path)
        frame, dropped = load_analysis_table(str(path), ["t", "e", "g"], event_columns=["e"],
                                             event_value="dead")
        assert list(frame.columns) == ["t", "e", "g"] and dropped == 2
        assert frame["e"].tolist() == [1, 0]
    frame, dropped = load_analysis_table(str(tmp_path / "x.csv"), ["t", "g"], required=["t"])
    assert dropped == 1 and len(frame) == 3


def test_loader_errors(tmp_path):
    path = tmp_path / "bad.csv"
    pd.DataFrame({"t": ["1", "two", "3"], "e": [1, 0, 2]}).to_csv(path, index=False)
    with pytest.raises(UserError, match=r"'t'.*row 3"):
        load_analysis_table(str(path), ["t", "e"], time_columns=["t"])
    with pytest.raises(UserError, match=r"'zz'.*not found"):
        load_analysis_table(str(path), ["zz"])
    good = tmp_path / "good.csv"
    pd.DataFrame({"t": [1, 2, 3], "e": [1, 0, 2]}).to_csv(good, index=False)
    with pytest.raises(UserError, match=r"'e'.*row 4"):
        load_analysis_table(str(good), ["t", "e"], event_columns=["e"])
    with pytest.raises(UserError, match="does not exist"):
        load_analysis_table(str(tmp_path / "missing.csv"), ["t"])
    with pytest.raises(UserError, match="unsupported"):
        load_analysis_table(str(path.with_suffix(".json").write_text("{}") and path.with_suffix(".json")), ["t"])
    with pytest.raises(UserError):
        load_analysis_table("registry:", ["t"])


def test_clean_json_replaces_nan():
    assert clean_json({"a": float("nan"), "b": [np.float64(1.5), np.inf], "c": np.int64(3)}) == {
        "a": None, "b": [1.5, None], "c": 3}
    assert not math.isnan(clean_json(np.float32(2.0)))
