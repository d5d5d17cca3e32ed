"""``pathomics signature report``: the study's analysis plan on a frozen signature.

A SYNTHETIC demo project gets fake patch predictions and one OS signature fitted through the
job runner (as tests/signature/test_signature.py); the report is made once through the CLI
(``--json --out``) and its numbers are checked against the ``stats`` functions called here on
a patient table joined by hand (cohort snapshot + the signature's scores file).
"""

from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import pandas as pd
import pytest

from pathomics_desktop.cli import main
from pathomics_desktop.signature.report import (
    FORMAT, ComparisonFamily, chemotherapy_benefit, derive_clinical_columns, landmark_frame, load_report_data)
from pathomics_desktop.stats.concordance import bootstrap_c, compare_c, harrell_c
from pathomics_desktop.stats.cox import fit_cox_arrays
from pathomics_desktop.stats.km import logrank_test
from pathomics_desktop.stats.meta import meta_analysis
from pathomics_desktop.stats.tdroc import bootstrap_td_auc
from tests.signature.synthetic import write_fake_predictions

RUN = "fake"
NAME = "sig_os"
BOOT = 20
SEED = 4


@pytest.fixture(scope="module")
def reported(tmp_path_factory):
    """Demo project + fake predictions + one fitted OS signature + the report via the CLI."""
    from pathomics_desktop.demo.cohort import create_demo_project
    from pathomics_desktop.jobs.runner import run_job, submit
    from pathomics_desktop.project import open_project
    from pathomics_desktop.registry.service import open_project_registry

    base = tmp_path_factory.mktemp("report")
    root = base / "demo"
    create_demo_project(root)
    mapping = write_fake_predictions(root, RUN)
    project = open_project(str(root))
    registry = open_project_registry(project)
    params = {"run": RUN, "endpoint": "os", "name": NAME, "folds": 3, "seed": 3, "xtile_perm": 0,
              "slide_patients": mapping}
    try:
        job = run_job(project, registry, submit(registry, "signature", params))
    finally:
        registry.dispose()
    assert job.status == "done", job.error
    out = base / "out"
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        code = main(["signature", "report", NAME, "--project", str(root), "--bootstrap", str(BOOT),
                     "--seed", str(SEED), "--json", "--out", str(out)])
    assert code == 0
    return {"root": root, "project": project, "out": out, "stdout": stdout.getvalue(),
            "report": json.loads(stdout.getvalue())}


def _patients(root) -> pd.DataFrame:
    """The included patients of the three sets joined by hand with the signature's scores."""
    from pathomics_desktop.analytics.snapshot import cohort_frame

    cohort = cohort_frame(root)
    cohort = cohort[cohort["included"] & cohort["split"].isin(["training", "internal", "external"])]
    scores = pd.read_parquet(root / "signature" / f"{NAME}_scores.parquet")[["study_id", "score", "risk_group"]]
    return cohort.merge(scores, on="study_id", how="inner")


def _set(root, name: str) -> pd.DataFrame:
    frame = _patients(root)
    return frame[frame["split"] == name].reset_index(drop=True)


def test_km_cox_c_index_and_td_auc_equal_the_stats_functions(reported):
    rep = reported["report"]["signatures"][NAME]["endpoints"]["os"]["sets"]["external"]
    ext = _set(reported["root"], "external")
    t, e = ext["os_months"].to_numpy(), ext["os_event"].to_numpy()
    high = (ext["risk_group"] == "high").to_numpy()
    assert rep["n"] == len(ext) and rep["events"] == int(e.sum())
    # Figure 4I: log-rank p and the Cox HR of high vs low
    assert rep["km"]["logrank"]["p"] == pytest.approx(logrank_test(t, e, high.astype(int)).p, rel=1e-12)
    row = fit_cox_arrays(t, e, high.astype(float)[:, None], names=["high"]).table()[0]
    assert rep["km"]["hr"]["hr"] == pytest.approx(row["hr"], rel=1e-9)
    assert rep["km"]["hr"]["hr_lower"] == pytest.approx(row["hr_lower"], rel=1e-9)
    groups = {g["group"]: g for g in rep["km"]["groups"]}
    assert groups["high"]["n"] == int(high.sum()) and groups["low"]["events"] == int(e[~high].sum())
    # Table S2: Harrell's C of the score with the seeded bootstrap CI
    boot = bootstrap_c(t, e, ext["score"], n_boot=BOOT, seed=SEED)
    c = rep["discrimination"]["markers"]["signature"]["c_index"]
    assert c["c"] == pytest.approx(harrell_c(t, e, ext["score"]).c, rel=1e-12)
    assert (c["ci_lower"], c["ci_upper"]) == pytest.approx((boot.ci_lower, boot.ci_upper), rel=1e-12)
    # Figure 4C: td-AUC at 1, 3, 5 years with the seeded bootstrap
    auc = bootstrap_td_auc(t, e, ext["score"], [12.0, 36.0, 60.0], n_boot=BOOT, seed=SEED)
    got = rep["discrimination"]["markers"]["signature"]["td_auc"]
    assert [r["time"] for r in got] == [12.0, 36.0, 60.0]
    assert [r["auc"] for r in got] == pytest.approx(list(auc.auc), rel=1e-12)
    assert [r["ci_upper"] for r in got] == pytest.approx(list(auc.ci_upper), rel=1e-12)
    # the ROC points integrate (trapezoid) to the AUC
    for roc, r in zip(rep["discrimination"]["markers"]["signature"]["roc"], got):
        assert np.trapezoid(roc["tpr"], roc["fpr"]) == pytest.approx(r["auc"], rel=1e-9)


def test_tnm_stage_is_ordinal_by_stage_order_and_missing_values_are_counted(reported):
    rep = reported["report"]["signatures"][NAME]["endpoints"]["rfs"]["sets"]["training"]["discrimination"]
    train = _set(reported["root"], "training")
    known = train["tnm_group"].notna()
    rank = train.loc[known, "tnm_group"].map({"I": 1, "II": 2, "III": 3, "IV": 4}).to_numpy(float)
    t, e = train.loc[known, "rfs_months"].to_numpy(), train.loc[known, "rfs_event"].to_numpy()
    tnm = rep["markers"]["tnm_stage"]
    assert tnm["n"] == int(known.sum()) and tnm["n_missing"] == int((~known).sum())
    assert tnm["c_index"]["c"] == pytest.approx(harrell_c(t, e, rank).c, rel=1e-12)
    # paired bootstrap difference of C (signature minus TNM stage) and its Bonferroni p (m = 2)
    paired = compare_c(t, e, train.loc[known, "score"], rank, method="bootstrap", n_boot=BOOT, seed=SEED)
    comp = next(r for r in rep["comparisons"] if r["marker"] == "tnm_stage")
    assert comp["difference"] == pytest.approx(paired.difference, rel=1e-12)
    assert comp["p"] == pytest.approx(paired.p_value, rel=1e-12)
    assert comp["p_bonferroni"] == pytest.approx(min(1.0, 2 * paired.p_value), rel=1e-12)


def test_multivariable_model_holds_the_screened_variables(reported):
    cox = reported["report"]["signatures"][NAME]["endpoints"]["os"]["sets"]["training"]["cox"]
    train = _set(reported["root"], "training")
    t, e = train["os_months"].to_numpy(), train["os_event"].to_numpy()
    # univariate N stage: dummies N1, N2 against N0 (the codebook's first code), LR p of the variable
    x = np.column_stack([(train["n_stage"] == lvl).to_numpy(float) for lvl in ("N1", "N2")])
    fit = fit_cox_arrays(t, e, x, names=["N1", "N2"])
    rows = {r["term"]: r for r in cox["univariate"]}
    assert rows["n_stage=N2"]["hr"] == pytest.approx(fit.table()[1]["hr"], rel=1e-9)
    assert rows["n_stage=N1"]["p_term_lr"] == pytest.approx(fit.lr["p"], rel=1e-9)
    assert rows["t_group=T3-4"]["n"] == len(train)  # T3 and T4 merged, T1 the reference
    expected = [v for v in dict.fromkeys(r["variable"] for r in cox["univariate"])
                if v != "tnm_group" and rows_p(cox, v) < 0.05]
    assert cox["selected"] == list(dict.fromkeys(expected + ["risk_group"]))
    terms = [r["term"] for r in cox["multivariable"]["terms"]]
    assert "risk_group=high" in terms and not any(term.startswith("tnm_group") for term in terms)


def rows_p(cox: dict, variable: str) -> float:
    return next(r["p_term_lr"] for r in cox["univariate"] if r["variable"] == variable)


def test_center_meta_analysis_and_subgroup_interactions(reported):
    het = reported["report"]["signatures"][NAME]["endpoints"]["os"]["center_heterogeneity"]
    frame = _patients(reported["root"])
    coefs, ses = [], []
    for center in ("A", "B", "C"):
        part = frame[frame["center"] == center]
        high = (part["risk_group"] == "high").to_numpy(float)[:, None]
        row = fit_cox_arrays(part["os_months"], part["os_event"], high).table()[0]
        coefs.append(row["coef"])
        ses.append(row["se"])
    assert [c["center"] for c in het["centers"]] == ["A", "B", "C"]
    assert het["centers"][0]["role"] == "development"
    assert [c["log_hr"] for c in het["centers"]] == pytest.approx(coefs, rel=1e-9)
    meta = meta_analysis(coefs, ses, method="reml")
    assert het["meta"]["i2"] == pytest.approx(meta.i2, abs=1e-9)
    assert het["meta"]["q"] == pytest.approx(meta.q, rel=1e-9)
    assert het["meta"]["hr"] == pytest.approx(np.exp(meta.estimate), rel=1e-9)
    # subgroup forest: the sex interaction LR p, computed here from its two nested models
    sub = reported["report"]["signatures"][NAME]["endpoints"]["os"]["sets"]["external"]["subgroups"]
    ext = _set(reported["root"], "external")
    t, e = ext["os_months"].to_numpy(), ext["os_event"].to_numpy()
    x = (ext["risk_group"] == "high").to_numpy(float)
    male = (ext["sex"] == "male").to_numpy(float)
    reduced = fit_cox_arrays(t, e, np.column_stack([x, male]))
    full = fit_cox_arrays(t, e, np.column_stack([x, male, x * male]))
    from scipy import stats

    p_int = stats.chi2.sf(2 * (full.loglik - reduced.loglik), 1)
    row = next(r for r in sub["rows"] if r["variable"] == "sex" and r["level"] == "female")
    assert row["p_interaction"] == pytest.approx(p_int, rel=1e-8)
    m = sum(1 for r in sub["rows"] if r["p_interaction"] is not None)
    assert row["p_interaction_bonferroni"] == pytest.approx(min(1.0, m * p_int), rel=1e-8)


def test_ca19_9_interception_within_risk_groups(reported):
    inter = reported["report"]["signatures"][NAME]["endpoints"]["rfs"]["sets"]["external"]["ca19_9_interception"]
    ext = _set(reported["root"], "external")
    rows = {r["level"]: r for r in inter["within"]}
    assert rows["low"]["figure"] == "Figure 5B" and rows["high"]["figure"] == "Figure 5D"
    for level in ("low", "high"):
        part = ext[ext["risk_group"] == level]
        hi = (part["ca19_9"] >= 200).to_numpy()
        assert rows[level]["n"] == len(part)
        assert rows[level]["logrank_p"] == pytest.approx(
            logrank_test(part["rfs_months"], part["rfs_event"], hi.astype(int)).p, rel=1e-12)
        hr = fit_cox_arrays(part["rfs_months"], part["rfs_event"], hi.astype(float)[:, None]).table()[0]["hr"]
        assert rows[level]["hr"] == pytest.approx(hr, rel=1e-9)
        assert rows[level]["logrank_p_bonferroni"] == pytest.approx(min(1.0, 2 * rows[level]["logrank_p"]))


def test_every_family_is_bonferroni_min_1_m_p(reported):
    families = reported["report"]["multiple_comparisons"]
    names = {f["family"].split(" (")[0] for f in families}
    assert names == {"Table S2: C-index of the signature vs TNM stage and CA19-9",
                     "Figures S2-S5: subgroup interaction tests",
                     "Figure 5: CA19-9 log-rank tests within the risk groups",
                     "Figure S6: chemotherapy log-rank tests within risk and CA19-9 groups"}
    for fam in families:
        assert fam["m"] == len(fam["tests"]) and fam["method"] == "bonferroni"
        for test in fam["tests"]:
            assert test["p_adjusted"] == pytest.approx(min(1.0, fam["m"] * test["p"]), rel=1e-12)
            assert test["reject"] == (fam["m"] * test["p"] <= fam["alpha"])
    made = ComparisonFamily.bonferroni("f", [("a", 0.01), ("b", None), ("c", 0.04), ("d", 0.5)])
    assert made.labels == ["a", "c", "d"] and made.p_adjusted == pytest.approx([0.03, 0.12, 1.0])
    assert made.reject == [True, False, False]


def test_landmark_rule_closed_form():
    frame = pd.DataFrame({"t": [1.0, 2.0, 3.0, 3.0, 5.0, 8.0], "e": [1, 0, 1, 0, 0, 1], "id": list("abcdef")})
    kept, ex_event, ex_cens = landmark_frame(frame, "t", "e", 3.0)
    assert kept["id"].tolist() == ["e", "f"]  # time > 3 only
    assert kept["t"].tolist() == [2.0, 5.0] and kept["e"].tolist() == [0, 1]
    assert (ex_event, ex_cens) == (2, 2)  # events at 1 and 3; censored at 2 and 3
    same, a, b = landmark_frame(frame, "t", "e", None)
    assert same is frame and (a, b) == (0, 0)


def test_chemotherapy_benefit_from_a_landmark(reported):
    data = load_report_data(reported["project"], [NAME])
    frame, _ = data.signature_frame(NAME)
    train = frame[frame["split"] == "training"].reset_index(drop=True)
    res = chemotherapy_benefit(train, landmark=6.0, ca19_9_cut=100.0, family="S6", alpha=0.05).to_dict()
    before = train["rfs_months"] <= 6.0
    assert res["n_before"] == len(train)
    assert res["excluded_event_before_landmark"] == int((before & (train["rfs_event"] == 1)).sum())
    assert res["excluded_censored_before_landmark"] == int((before & (train["rfs_event"] == 0)).sum())
    late = train[~before]
    rows = {r["level"]: r for r in res["by_risk_group"]["within"]}
    assert [r["figure"] for r in res["by_risk_group"]["within"]] == ["Figure S6A", "Figure S6B"]
    part = late[late["risk_group"] == "high"]
    chemo = (part["adjuvant_chemotherapy"] == "yes").to_numpy(float)
    hr = fit_cox_arrays(part["rfs_months"] - 6.0, part["rfs_event"], chemo[:, None]).table()[0]["hr"]
    assert rows["high"]["n"] == len(part) and rows["high"]["hr"] == pytest.approx(hr, rel=1e-9)
    ca = {r["level"]: r for r in res["by_ca19_9_cut"]["within"]}
    assert ca["high"]["n"] == int((late["ca19_9"] > 100.0).sum())


def test_derived_columns_follow_the_codebook_and_study_cuts():
    cohort = pd.DataFrame({"age": [64, 65, None], "ca19_9": [199.9, 200.0, None], "t_stage": ["T1", "T4", "T3"],
                           "tnm_group": ["IV", "I", None], "sex": ["male", "female", None],
                           **{c: ["no", "yes", None] for c in ("adjuvant_chemotherapy", "diabetes", "hypertension",
                                                              "microvascular_invasion", "perineural_invasion")},
                           "surgery_type": ["PD", "DP", "TP"], "differentiation": ["III", "I-II", None],
                           "n_stage": ["N0", "N2", None]})
    out = derive_clinical_columns(cohort)
    assert out["age_group"].tolist() == ["<65", ">=65", None]
    assert out["ca19_9_group"].tolist() == ["<200", ">=200", None]
    assert out["t_group"].tolist() == ["T1", "T3-4", "T3-4"]
    assert out["tnm_ordinal"].tolist()[:2] == [4.0, 1.0] and np.isnan(out["tnm_ordinal"].iloc[2])
    assert out["stage_2"].tolist()[:2] == ["III-IV", "I-II"]


def test_json_keys_are_stable_and_the_text_prints_the_studys_tables(reported):
    rep = reported["report"]
    assert list(rep) == ["format", "synthetic", "settings", "patients", "ca19_9_rfs_cut", "signatures",
                         "multiple_comparisons"]
    assert rep["format"] == FORMAT and rep["synthetic"] is True
    assert rep["settings"]["n_boot"] == BOOT and rep["settings"]["auc_times"] == {"os": [12.0, 36.0, 60.0],
                                                                                  "rfs": [12.0, 24.0, 36.0]}
    sig = rep["signatures"][NAME]
    assert list(sig) == ["name", "fit_endpoint", "cut", "rule", "n_scored", "n_without_score", "associations",
                         "endpoints"]
    assert list(sig["endpoints"]) == ["os", "rfs"] and list(sig["associations"]) == ["training", "internal", "external"]
    os_ep = sig["endpoints"]["os"]
    assert list(os_ep) == ["endpoint", "time_column", "event_column", "auc_times", "sets", "center_heterogeneity"]
    one = os_ep["sets"]["training"]
    assert list(one) == ["set", "n", "events", "discrimination", "km", "cox", "subgroups", "ca19_9_interception",
                         "chemotherapy_benefit"]
    assert one["chemotherapy_benefit"] is None
    assert sig["endpoints"]["rfs"]["sets"]["training"]["chemotherapy_benefit"]["figure"] == "Figure S6"
    assert list(one["discrimination"]["markers"]) == ["signature", "tnm_stage", "ca19_9"]
    assert list(one["discrimination"]["markers"]["ca19_9"]) == ["marker", "n", "n_missing", "c_index", "td_auc",
                                                                "roc", "notes"]
    assert list(one["km"]) == ["figure", "n", "n_missing", "groups", "logrank", "hr", "notes"]
    assert [one["discrimination"]["figure"], one["km"]["figure"], one["cox"]["figure"], one["subgroups"]["figure"]] == [
        "Figure 4A; Table S2", "Figure 4G", "Table 2; Table S3", "Figure S2"]
    assert list(os_ep["center_heterogeneity"]["meta"])[:4] == ["method", "k", "estimate", "ci_lower"]
    # --out wrote the same JSON and the text; the text prints what it says it shows
    assert json.loads((reported["out"] / "report.json").read_text()) == rep
    text = (reported["out"] / "report.txt").read_text()
    assert text.startswith("SYNTHETIC DATA")
    for heading in ("Table S2 / Figure 4A-C", "Table S2 / Figure 4D-F", "Figure 4G-L", "Table 2; Table S3",
                    "Table 2; Table S5", "Center heterogeneity, OS", "Figure S2", "Figure S5",
                    "Table S6", "Figure 5:", "Figure S6:", "Multiple comparisons"):
        assert heading in text
    hr = sig["endpoints"]["os"]["sets"]["external"]["km"]["hr"]
    line = next(ln for ln in text.splitlines() if ln.startswith("external  OS") and "/" in ln)
    assert f"{hr['hr']:.3f} ({hr['hr_lower']:.3f}-{hr['hr_upper']:.3f})" in line


def test_cli_errors_name_the_problem(reported, capsys):
    root = str(reported["root"])
    assert main(["signature", "report", "nope", "--project", root]) == 2
    err = capsys.readouterr().err
    assert "signature 'nope' not found" in err and NAME in err  # the known names are listed
    assert main(["signature", "report", NAME, "--project", root, "--bootstrap", "5"]) == 2
    assert "at least 10 replicates" in capsys.readouterr().err


def test_patients_without_a_score_and_empty_sets_are_reported_not_fatal(reported):
    from pathomics_desktop.signature.report import ReportData, build_report

    data = load_report_data(reported["project"], [NAME])
    train = data.frame[data.frame["split"] == "training"].reset_index(drop=True)
    scores = data.scores[NAME]
    unscored = set(train["study_id"][:7])
    partial = ReportData(train, data.signatures, {NAME: scores[~scores["study_id"].isin(unscored)]})
    built = build_report(partial, n_boot=10, seed=1)
    rep = clean_report(built)
    text = built.signatures[NAME].endpoints["os"].sets["external"].summary()
    assert text.startswith("external set, OS: 0 patients, 0 events") and "note: no patients" in text
    sig = rep["signatures"][NAME]
    assert sig["n_without_score"] == 7 and sig["n_scored"] == len(train) - 7
    assert rep["patients"] == {"training": len(train), "internal": 0, "external": 0}
    empty = sig["endpoints"]["os"]["sets"]["external"]
    assert empty["n"] == 0 and empty["km"]["hr"] is None and empty["km"]["notes"] == ["no patients"]
    assert empty["discrimination"]["markers"]["signature"]["c_index"] is None
    assert sig["endpoints"]["os"]["sets"]["training"]["n"] == len(train) - 7
    # only the development center: no meta-analysis, and the report says why
    het = sig["endpoints"]["os"]["center_heterogeneity"]
    assert het["meta"] is None and any("at least two" in note for note in het["notes"])


def clean_report(report) -> dict:
    from pathomics_desktop.stats.data import clean_json

    return json.loads(json.dumps(clean_json(report.to_dict()), allow_nan=False))


def test_a_signature_without_its_scores_file_is_a_clear_error(reported, capsys, tmp_path):
    import shutil

    root = tmp_path / "copy"
    shutil.copytree(reported["root"], root)
    (root / "signature" / f"{NAME}_scores.parquet").unlink()
    assert main(["signature", "report", NAME, "--project", str(root)]) == 2
    err = capsys.readouterr().err
    assert f"signature {NAME!r} has no scores file" in err and "scores.parquet" in err


def test_cli_default_bootstrap_is_the_report_default():
    from pathomics_desktop.signature import report, report_cli

    assert report_cli.DEFAULT_BOOT == report.DEFAULT_BOOT
