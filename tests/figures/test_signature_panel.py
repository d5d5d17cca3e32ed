"""The signature panel: its numbers are the report's own functions called on the filtered
cohort, and agree with the fit's stored evaluation and with ``stats`` called directly. On a
SYNTHETIC demo project with a real fitted and applied signature."""

from __future__ import annotations

import shutil

import pytest

from pathomics_desktop.analytics.cohort_filter import AnalysisSource, CohortFilter
from pathomics_desktop.errors import UserError
from pathomics_desktop.figures.signature import build_signature_panel, signature_frame
from pathomics_desktop.signature import report
from pathomics_desktop.signature.fit import load_signature
from pathomics_desktop.stats.data import clean_json
from tests.signature.fitted import NAME, fitted_project

BOOT = 20


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    return fitted_project(tmp_path_factory, tmp_path_factory.mktemp("panel") / "p")


def test_panel_equals_the_report_functions_on_the_filtered_cohort(project):
    source = AnalysisSource.open(project)
    frame = source.frame(CohortFilter())
    panel = build_signature_panel(source, frame, {"project": str(project.root), "n_boot": BOOT})
    merged, without, _ = signature_frame(project, NAME, frame)
    assert (panel.name, panel.endpoint, panel.n_scored, panel.n_without_score) == (NAME, "os", len(merged), without)
    time, event = report.ENDPOINT_COLUMNS["os"]
    ca_cut = report.ca19_9_rfs_cut(merged)
    assert panel.ca19_9_rfs_cut == ca_cut
    for s in report.SETS:
        part = merged[merged["split"] == s].reset_index(drop=True)
        shown = panel.set_panel(s)
        disc = report.marker_discrimination(part, time, event, "signature", "score", report.AUC_TIMES["os"],
                                            n_boot=BOOT, seed=0)
        assert clean_json(shown.discrimination.to_dict()) == clean_json(disc.to_dict())
        km = report.risk_group_survival(part, time, event, figure=report.FIG4_KM["os"][s], at=report.AUC_TIMES["os"])
        assert shown.survival.table_row() == km.table_row() and shown.survival.hr == km.hr
        chemo = report.chemotherapy_benefit(part, landmark=None, ca19_9_cut=ca_cut["value"],
                                            family=f"{report.FAMILIES['chemotherapy']} ({NAME}, RFS, {s})", alpha=0.05)
        assert clean_json(shown.chemotherapy.to_dict()) == clean_json(chemo.to_dict())
        ca_levels = next(v.levels for v in report.clinical_variables() if v.column == "ca19_9_group")
        ca = report.interaction(part, time, event, exposure="ca19_9_group", reference=ca_levels[0],
                                modifier=report.RISK, modifier_levels=report.RISK_LEVELS, figure="Figure 5",
                                panels={lvl: report.FIG5[("os", lvl)] for lvl in report.RISK_LEVELS})
        assert shown.ca19_9.p_interaction == ca.p_interaction
        assert [r["logrank_p"] for r in shown.ca19_9.within()] == [r["logrank_p"] for r in ca.within()]
    assert clean_json(panel.centers.to_dict()) == clean_json(report.center_heterogeneity(merged, time, event).to_dict())


def test_panel_agrees_with_the_fit_and_with_stats(project):
    from pathomics_desktop.stats.concordance import harrell_c
    from pathomics_desktop.stats.cox import fit_cox_arrays

    source = AnalysisSource.open(project)
    frame = source.frame(CohortFilter())
    panel = build_signature_panel(source, frame, {"project": str(project.root), "n_boot": BOOT})
    stored = load_signature(project, NAME)["sets"]
    for s in report.SETS:
        part = frame[(frame["split"] == s) & frame["pathomics_os_score"].notna()]
        t, e, x = part["os_months"].to_numpy(float), part["os_event"].to_numpy(int), part["pathomics_os_score"].to_numpy()
        shown = panel.set_panel(s)
        assert shown.discrimination.c_index.c == pytest.approx(harrell_c(t, e, x).c, rel=1e-12)
        assert shown.discrimination.c_index.c == pytest.approx(stored[s]["c_index"]["c"], rel=1e-12)
        cut = panel.cut
        hr = fit_cox_arrays(t, e, (x > cut).astype(float), names=["high"]).table()[0]["hr"]
        assert shown.survival.hr["hr"] == pytest.approx(hr, rel=1e-8)
        assert shown.survival.hr["hr"] == pytest.approx(stored[s]["hr_high_vs_low"]["hr"], rel=1e-8)
        groups = {g["group"]: g for g in shown.survival.to_dict()["groups"]}
        assert groups["high"]["n"] == int((x > cut).sum()) and groups["low"]["events"] == int(e[x <= cut].sum())


def test_a_filter_changes_the_panel(project):
    source = AnalysisSource.open(project)
    flt = CohortFilter(datasets=("external",), centers=("B",))
    panel = build_signature_panel(source, source.frame(flt), {"project": str(project.root), "n_boot": BOOT})
    assert [s.set for s in panel.sets] == ["external"]
    assert [c["center"] for c in panel.centers.to_dict()["centers"]] == ["B"]
    expected = int(((source.frame(flt)["pathomics_os_score"]).notna()).sum())
    assert panel.n_scored == expected == panel.set_panel("external").survival.n


def test_without_a_signature_the_error_says_how_to_fit_one(project, tmp_path):
    root = tmp_path / "copy"
    shutil.copytree(project.root, root)
    shutil.rmtree(root / "signature")
    source = AnalysisSource.open(project)
    with pytest.raises(UserError, match=r"pathomics signature fit .*pathomics signature apply NAME --all"):
        build_signature_panel(source, source.frame(CohortFilter()), {"project": str(root)})
