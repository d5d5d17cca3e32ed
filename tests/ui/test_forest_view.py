"""The subgroup forest view on the SYNTHETIC scored demo project: its rows and interaction p
equal ``stats.subgroups`` on the same filtered snapshot, a filter change updates it, the text
columns sit on the plot rows, and clicking a row asks for that subgroup's KM."""

from __future__ import annotations

import pytest
from PySide6.QtCore import Qt

from pathomics_desktop.analytics.cohort_filter import AnalysisSource, CohortFilter
from pathomics_desktop.signature.report import subgroup_variables
from pathomics_desktop.stats.subgroups import subgroup_analysis
from pathomics_desktop.ui.views.analysis.forest import ForestView
from tests.ui.helpers import shown_view

TIME, EVENT = "os_months", "os_event"


def direct_subgroups(project, flt, endpoint="os"):
    frame = AnalysisSource.open(project).frame(flt)
    time, event, exposure = f"{endpoint}_months", f"{endpoint}_event", f"pathomics_{endpoint}_group"
    frame = frame.dropna(subset=[time, event, exposure])
    order = {v.column: [lvl for lvl in v.levels if lvl in set(frame[v.column].dropna())] for v in subgroup_variables()}
    return subgroup_analysis(frame, time, event, exposure, list(order), reference="low", subgroup_order=order)


def interaction(result) -> dict:
    seen = {}
    for row in result.rows:
        if row.variable != "Overall" and row.variable not in seen:
            seen[row.variable] = row.p_interaction
    return seen


def ready_view(qtbot, ctx) -> ForestView:
    view = shown_view(qtbot, ForestView(), ctx, (1400, 900))
    qtbot.waitUntil(lambda: view.computed is not None, timeout=90000)
    return view


def test_forest_equals_stats_subgroups_and_follows_the_filter(qtbot, scored_context):
    view = ready_view(qtbot, scored_context)
    figure = view.computed.model
    direct = direct_subgroups(scored_context.project, CohortFilter())
    assert figure.interaction_p() == pytest.approx(interaction(direct), rel=1e-12)
    drawn = [r for r in figure.rows if r.kind != "header"]
    assert [(r.n, r.events) for r in drawn] == [(r.n, r.events) for r in direct.rows]
    assert [r.hr for r in drawn] == pytest.approx([r.hr for r in direct.rows], rel=1e-12)
    # the text drawn on each row is that row's numbers
    for y, (row, items) in enumerate(zip(figure.rows, view.texts)):
        texts = [item.textItem.toPlainText() for item in items]
        assert texts[1:] == [row.texts()[k] for k in ("n", "events", "hr", "p", "p_interaction")]
        assert all(item.pos().y() == y for item in items)  # same y as the marker of the row
    header = next(r for r in figure.rows if r.kind == "header" and r.variable == "n_stage")
    shown_p = view.texts[figure.rows.index(header)][5].textItem.toPlainText()
    expected_p = interaction(direct)["n_stage"]
    assert shown_p == (f"{expected_p:.3f}" if expected_p >= 0.001 else "< 0.001")
    # RFS on the external set
    wanted = CohortFilter(datasets=("external",))
    view.endpoint.setCurrentIndex(view.endpoint.findData("rfs"))
    scored_context.set_cohort_filter(wanted)
    qtbot.waitUntil(lambda: view.computed.cohort_filter == wanted and view.computed.model.endpoint == "rfs",
                    timeout=90000)
    direct = direct_subgroups(scored_context.project, wanted, "rfs")
    assert view.computed.model.interaction_p() == pytest.approx(interaction(direct), rel=1e-12)
    assert view.computed.model.rows[0].n == direct.rows[0].n == view.computed.n
    snap = view.snapshot()
    assert snap["forest"]["exposure"] == "pathomics_rfs_group" and "data set: external" in snap["footnote"]


def click_row(qtbot, view, index, column="forest"):
    point = view.graphics.mapFromScene(view.row_scene_pos(index, column))
    qtbot.mouseClick(view.graphics.viewport(), Qt.LeftButton, pos=point)


def test_clicking_a_row_requests_its_km(qtbot, scored_context):
    view = ready_view(qtbot, scored_context)
    figure = view.computed.model
    index = next(i for i, r in enumerate(figure.rows) if r.kind == "level" and r.variable == "sex" and r.level == "male")
    with qtbot.waitSignal(scored_context.request_analysis, timeout=5000) as blocker:
        click_row(qtbot, view, index, "left")  # on the subgroup's name
    assert blocker.args == ["km", {"endpoint": "os", "group": "pathomics_os_group", "subgroup": ("sex", "male")}]
    with qtbot.waitSignal(scored_context.request_analysis, timeout=5000) as blocker:
        click_row(qtbot, view, 0)  # the overall row: the whole filtered cohort
    assert blocker.args == ["km", {"endpoint": "os", "group": "pathomics_os_group"}]
    header = next(i for i, r in enumerate(figure.rows) if r.kind == "header")
    with qtbot.assertNotEmitted(scored_context.request_analysis, wait=300):
        click_row(qtbot, view, header, "right")  # a variable's header row opens nothing
