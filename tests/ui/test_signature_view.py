"""The signature view: its tables show the report's numbers on the same filtered patients, a
filter change updates them. SYNTHETIC demo project with a real fitted signature."""

from __future__ import annotations


from pathomics_desktop.analytics.cohort_filter import AnalysisSource, CohortFilter
from pathomics_desktop.figures.signature import signature_frame
from pathomics_desktop.figures.style import format_estimate_ci, format_p
from pathomics_desktop.signature import report
from pathomics_desktop.ui.views.analysis.signature import SignatureView
from tests.signature.fitted import NAME
from tests.ui.helpers import shown_view


def test_tables_equal_the_report_on_the_filter(qtbot, fitted_context):
    ctx = fitted_context
    view = shown_view(qtbot, SignatureView(), ctx, (1400, 900))
    view.boot_spin.setValue(20)
    qtbot.waitUntil(lambda: view.computed is not None, timeout=90000)
    view.recompute()
    qtbot.waitUntil(lambda: view.computed is not None and view.computed.model.n_boot == 20, timeout=90000)
    merged, _, _ = signature_frame(ctx.project, NAME, AnalysisSource.open(ctx.project).frame(CohortFilter()))
    time, event = report.ENDPOINT_COLUMNS["os"]
    shown = {r["set"]: r for r in view.km_model.rows}
    for s in report.SETS:
        part = merged[merged["split"] == s].reset_index(drop=True)
        disc = report.marker_discrimination(part, time, event, "signature", "score", report.AUC_TIMES["os"],
                                            n_boot=20, seed=0)
        row = next(r for r in view.disc_model.rows if r["set"] == s)
        c = disc.c_index
        assert row["c"] == format_estimate_ci(c.c, c.ci_lower, c.ci_upper, 3)
        km = report.risk_group_survival(part, time, event, figure="x", at=report.AUC_TIMES["os"])
        assert shown[s]["hr"] == format_estimate_ci(km.hr["hr"], km.hr["hr_lower"], km.hr["hr_upper"], 3)
        assert shown[s]["p"] == format_p(km.km.logrank.p)
    centers = report.center_heterogeneity(merged, time, event).to_dict()
    assert [r["center"] for r in view.center_model.rows] == [c["center"] for c in centers["centers"]]
    assert f"I\u00b2 = {centers['meta']['i2']:.1f}%" in view.meta_label.text()
    snap = view.snapshot()
    assert snap["tables"]["risk_groups"] == view.km_model.rows and snap["signature"]["name"] == NAME
    # a filter change updates every table
    wanted = CohortFilter(datasets=("external",))
    ctx.set_cohort_filter(wanted)
    qtbot.waitUntil(lambda: view.computed is not None and view.computed.cohort_filter == wanted, timeout=90000)
    assert [r["set"] for r in view.disc_model.rows] == ["external"] == list(view.km_plots)
    assert {r["set"] for r in view.ca_model.rows} == {"external"}
