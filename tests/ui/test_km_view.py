"""The Kaplan-Meier view on the SYNTHETIC scored demo project: its medians, log-rank p,
HRs and number-at-risk table equal ``stats`` called directly on the same filtered snapshot
(and counts done by brute force); a filter change updates it; clicks on a legend row, a curve
and a censor mark list exactly those patients; the at-risk plot shares the curves' x axis."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import QPointF, Qt

from pathomics_desktop.analytics.cohort_filter import AnalysisSource, CohortFilter
from pathomics_desktop.stats.cox import fit_cox
from pathomics_desktop.stats.km import km_comparison, logrank_trend
from pathomics_desktop.ui.views.analysis.km import KaplanMeierView
from tests.ui.helpers import shown_view

SIZE = (1400, 900)


def filtered(ctx, flt):
    return AnalysisSource.open(ctx.project).frame(flt)


def ready_view(qtbot, ctx):
    view = shown_view(qtbot, KaplanMeierView(), ctx, SIZE)
    qtbot.waitUntil(lambda: view.computed is not None and not ctx.busy(), timeout=60000)
    return view


def assert_matches_stats(model, frame, endpoint: str, column: str):
    """The figure's numbers against stats.km / stats.cox and brute-force at-risk counts."""
    time, event = f"{endpoint}_months", f"{endpoint}_event"
    direct = km_comparison(frame[time], frame[event], frame[column].tolist())
    assert model.n == len(frame)
    assert model.logrank["p"] == pytest.approx(direct.logrank.p, rel=1e-12)
    fit = fit_cox(frame, time, event, [column], categorical=[column], reference={column: "low"})
    assert model.group_by_label("high").hr["hr"] == pytest.approx(fit.table()[0]["hr"], rel=1e-10)
    for group in model.groups:
        part = frame[frame[column] == group.label]
        assert (group.median, group.median_lower, group.median_upper) == direct.curves[group.label].median()
        t, e = part[time].to_numpy(), part[event].to_numpy().astype(bool)
        assert group.at_risk == [int((t >= b).sum()) for b in model.breaks]
        assert group.events_by == [int((e & (t < b)).sum()) for b in model.breaks]
        assert group.censored_by == [int((~e & (t < b)).sum()) for b in model.breaks]


def test_numbers_equal_stats_and_a_filter_change_updates_them(qtbot, scored_context):
    view = ready_view(qtbot, scored_context)
    model = view.computed.model
    assert model.group == "pathomics_os_group" and model.levels == ["low", "high"] and model.reference == "low"
    assert_matches_stats(model, filtered(scored_context, CohortFilter()), "os", "pathomics_os_group")
    # what is shown: the legend table, the test line, the at-risk numbers and the JSON snapshot
    low = model.group_by_label("low")
    assert view.legend_table.item(0, 3).text() == f"{low.median:.1f} ({low.median_lower:.1f}-{low.median_upper:.1f})"
    assert view.legend_table.item(1, 0).text() == "high" and view.legend_table.item(0, 4).text() == "1 (reference)"
    assert "Log-rank p" in view.tests_label.text()
    texts = sorted(item.toPlainText() for item in view.risk_plot.getPlotItem().items if hasattr(item, "toPlainText"))
    expected = sorted(str(v) for g in model.groups for key in ("at_risk", "events_by", "censored_by")
                      for v in getattr(g, key))
    assert texts == expected
    snap = view.snapshot()
    assert snap["groups"][1]["at_risk"] == model.group_by_label("high").at_risk
    assert snap["logrank"]["p"] == model.logrank["p"] and "SYN-" not in str(snap["groups"])
    assert view.tsv().splitlines()[0].startswith("group\tn\tevents")

    wanted = CohortFilter(datasets=("external",))
    scored_context.set_cohort_filter(wanted)
    qtbot.waitUntil(lambda: view.computed.cohort_filter == wanted, timeout=60000)
    frame = filtered(scored_context, wanted)
    assert view.computed.model.n == len(frame) < model.n
    assert_matches_stats(view.computed.model, frame, "os", "pathomics_os_group")


def test_at_risk_plot_shares_the_time_axis(qtbot, scored_context):
    view = ready_view(qtbot, scored_context)
    curve_box = view.curve_plot.getPlotItem().getViewBox()
    risk_box = view.risk_plot.getPlotItem().getViewBox()
    assert risk_box.viewRange()[0] == curve_box.viewRange()[0]
    view.curve_plot.getPlotItem().setXRange(10.0, 50.0, padding=0)  # the user zooms the curves
    qtbot.waitUntil(lambda: risk_box.viewRange()[0] == pytest.approx([10.0, 50.0]), timeout=5000)
    for t in (12.0, 24.0, 48.0):  # a break lies at the same screen x in both plots
        on_curve = view.curve_plot.mapToGlobal(view.curve_plot.mapFromScene(curve_box.mapViewToScene(QPointF(t, 0.5))))
        on_risk = view.risk_plot.mapToGlobal(view.risk_plot.mapFromScene(risk_box.mapViewToScene(QPointF(t, 1.0))))
        assert abs(on_curve.x() - on_risk.x()) <= 1


def _click(qtbot, view, t: float, s: float):
    box = view.curve_plot.getPlotItem().getViewBox()
    point = view.curve_plot.mapFromScene(box.mapViewToScene(QPointF(t, s)))
    qtbot.mouseClick(view.curve_plot.viewport(), Qt.LeftButton, pos=point)


def _pixels(view):
    return view.curve_plot.getPlotItem().getViewBox().viewPixelSize()


def test_clicks_list_exactly_those_patients(qtbot, scored_context):
    view = ready_view(qtbot, scored_context)
    model = view.computed.model
    frame = filtered(scored_context, CohortFilter())
    # a legend row
    table = view.legend_table
    qtbot.mouseClick(table.viewport(), Qt.LeftButton, pos=table.visualRect(table.model().index(1, 0)).center())
    assert view.last_patient_list is not None
    high_ids = frame.loc[frame["pathomics_os_group"] == "high", "study_id"]
    assert sorted(view.last_patient_list.study_ids()) == sorted(high_ids)
    # a point on the low curve far from the other curve and from every censor mark
    px, py = _pixels(view)
    low, high = model.group_by_label("low"), model.group_by_label("high")
    marks = np.concatenate([np.c_[g.censor_time, g.censor_survival] for g in model.groups])

    def clear_of_marks(t, s, pixels):
        return np.hypot((marks[:, 0] - t) / px, (marks[:, 1] - s) / py).min() > pixels

    t = next(t for t in np.arange(6.0, 60.0, 0.25)
             if abs(low.survival_at(t)[0] - high.survival_at(t)[0]) / py > 30
             and clear_of_marks(t, low.survival_at(t)[0], 15))
    view.last_patient_list = None
    _click(qtbot, view, t, low.survival_at(t)[0])
    assert view.last_patient_list is not None
    assert sorted(view.last_patient_list.study_ids()) == sorted(frame.loc[frame["pathomics_os_group"] == "low", "study_id"])
    # a censor mark of the high group, isolated from the others
    index = next(i for i in range(high.censor_time.size)
                 if np.sort(np.hypot((marks[:, 0] - high.censor_time[i]) / px,
                                     (marks[:, 1] - high.censor_survival[i]) / py))[1] > 12)
    t_mark = float(high.censor_time[index])
    _click(qtbot, view, t_mark, float(high.censor_survival[index]))
    censored = frame[(frame["pathomics_os_group"] == "high") & (frame["os_event"] == 0)
                     & np.isclose(frame["os_months"], t_mark)]
    assert len(censored) >= 1
    assert sorted(view.last_patient_list.study_ids()) == sorted(censored["study_id"])
    # a patient of the list opens the patient form
    with qtbot.waitSignal(scored_context.request_patient, timeout=5000) as opened:
        view.last_patient_list.open_patient(0)
    assert opened.args == [view.last_patient_list.study_ids()[0]]


def test_hover_shows_each_curve_at_the_cursor(qtbot, scored_context):
    view = ready_view(qtbot, scored_context)
    box = view.curve_plot.getPlotItem().getViewBox()
    view._mouse_moved(box.mapViewToScene(QPointF(24.0, 0.9)))
    assert set(view.hover_values) == {"low", "high"}
    frame = filtered(scored_context, CohortFilter())
    direct = km_comparison(frame["os_months"], frame["os_event"], frame["pathomics_os_group"].tolist())
    t = box.mapSceneToView(box.mapViewToScene(QPointF(24.0, 0.9))).x()
    for label, (s, lo, hi) in view.hover_values.items():
        at = direct.curves[label].at([t])[0]
        assert (s, lo, hi) == pytest.approx((at["survival"], at["lower"], at["upper"]))
        assert f"{s:.2f}" in view.hover_label.text()


def test_grouping_controls_and_apply_request(qtbot, scored_context):
    view = ready_view(qtbot, scored_context)
    qtbot.waitUntil(lambda: view.group_combo.findData("tnm_group") >= 0, timeout=30000)
    view.group_combo.setCurrentIndex(view.group_combo.findData("tnm_group"))
    qtbot.waitUntil(lambda: view.computed.model.group == "tnm_group", timeout=60000)
    model = view.computed.model
    frame = filtered(scored_context, CohortFilter())
    trend = logrank_trend(frame["os_months"], frame["os_event"], frame["tnm_group"].tolist(), order=model.levels)
    assert model.levels == ["I", "II", "III", "IV"] and model.trend["p"] == pytest.approx(trend["p"], rel=1e-12)
    assert "trend" in view.tests_label.text()
    # CA19-9 with a chosen cut
    view.group_combo.setCurrentIndex(view.group_combo.findData("ca19_9"))
    assert view.cut_edit.isEnabled()
    view.cut_edit.setText("500")
    view.cut_edit.editingFinished.emit()
    qtbot.waitUntil(lambda: view.computed.model.cut == 500.0, timeout=60000)
    upper = view.computed.model.group_by_label(">=500")
    assert sorted(upper.study_ids) == sorted(frame.loc[frame["ca19_9"] >= 500, "study_id"])
    # the forest view's click-through: RFS by the risk group within men
    view.apply_request({"endpoint": "rfs", "group": "pathomics_rfs_group", "subgroup": ("sex", "male")})
    wanted = CohortFilter().with_categories("sex", ["male"])
    assert scored_context.cohort_filter == wanted
    qtbot.waitUntil(lambda: view.computed.cohort_filter == wanted
                    and view.computed.model.group == "pathomics_rfs_group", timeout=60000)
    assert view.endpoint_combo.currentData() == "rfs"
    assert_matches_stats(view.computed.model, filtered(scored_context, wanted), "rfs", "pathomics_rfs_group")
