"""Study set-up view: its numbers are the cohort services' numbers, counted again here by
brute force; the codebook editor adds variables through the audited service."""

from __future__ import annotations

from PySide6.QtCore import Qt

from pathomics_desktop.cohort.flow import CenterFlow, Flow, patient_flow
from pathomics_desktop.cohort.study_overview import flow_diagram
from pathomics_desktop.cohort.table import EXCLUSION_REASONS, build_rows
from pathomics_desktop.registry.codebook import Codebook
from tests.ui.helpers import shown_view

TIMEOUT_MS = 120000


def loaded_view(qtbot, ctx):
    from pathomics_desktop.ui.views.study import StudySetupView

    view = shown_view(qtbot, StudySetupView(), ctx, (1200, 800))
    qtbot.waitUntil(lambda: view.overview is not None and not view.busy(), timeout=TIMEOUT_MS)
    return view


def cell(table, row_label: str, column_label: str) -> str:
    columns = [table.horizontalHeaderItem(c).text() for c in range(table.columnCount())]
    rows = [table.item(r, 0).text() for r in range(table.rowCount())]
    return table.item(rows.index(row_label), columns.index(column_label)).text()


def test_study_view_shows_the_flow_and_data_sets_of_the_services(qtbot, demo_context):
    view = loaded_view(qtbot, demo_context)
    view.prepare_screenshot()
    qtbot.waitUntil(lambda: not view.busy(), timeout=TIMEOUT_MS)
    snap = view.snapshot()
    with demo_context.registry.session() as session:
        flow = patient_flow(session)
        rows, _ = build_rows(session)
    assert snap["flow"] == flow.to_dict()
    assert snap["tab"] == "flow"
    # the demo cohort's recorded design: 440/331/102 enrolled, 255/110/302 in the data sets
    assert [(c["center"], c["enrolled"]) for c in snap["flow"]["centers"]] == [("A", 440), ("B", 331), ("C", 102)]

    # brute force from the analysis rows: every count of the diagram and of the tables
    boxes = {b["key"]: b for b in snap["diagram"]}
    for center in ("A", "B", "C"):
        mine = [r for r in rows if r["center"] == center]
        excluded = [r for r in mine if not r["included"]]
        assert boxes[f"enrolled:{center}"]["count"] == len(mine)
        assert boxes[f"excluded:{center}"]["count"] == len(excluded)
        assert boxes[f"included:{center}"]["count"] == len(mine) - len(excluded)
        for reason in EXCLUSION_REASONS:
            n = sum(1 for r in excluded if r["exclusion_reason"] == reason)
            if n:
                assert f"{reason}: {n}" in boxes[f"excluded:{center}"]["text"]
        assert cell(view.center_table, center, "Enrolled") == str(len(mine))
    for name, label in (("training", "Training set"), ("internal", "Internal validation set"),
                        ("external", "External validation set")):
        members = [r for r in rows if r["included"] and r["split"] == name]
        deaths = sum(1 for r in members if r["os_event"] == 1)
        events = sum(1 for r in members if r["rfs_event"] == 1)
        assert boxes[f"set:{name}"]["count"] == len(members)
        assert snap["splits"]["sets"][name]["patients"] == len(members)
        assert snap["splits"]["sets"][name]["os_events"] == deaths
        assert snap["splits"]["sets"][name]["rfs_events"] == events
        assert cell(view.events_table, label, "OS events (deaths)") == f"{deaths} ({100 * deaths / len(members):.1f}%)"
    assert cell(view.center_table, "All", "Included") == str(sum(1 for r in rows if r["included"]))
    assert set(view.flow_view.rects) == set(boxes)


def test_codebook_editor_adds_a_category_variable_with_coded_labels(qtbot, demo_context):
    view = loaded_view(qtbot, demo_context)
    changed = []
    demo_context.data_changed.connect(changed.append)
    view.var_name.setText("albumin_grade")
    view.var_label.setText("Albumin grade")
    view.var_type.setCurrentText("category")
    assert view.codes_box.isEnabled() and not view.var_min.isEnabled()
    view.codes_table.item(0, 0).setText("low")
    view.codes_table.item(0, 1).setText("1, Low, L")
    view.add_code_row("high", "2, High")
    qtbot.mouseClick(view.add_button, Qt.LeftButton)
    qtbot.waitUntil(lambda: "added" in view.add_message.text() and not view.busy(), timeout=TIMEOUT_MS)
    qtbot.waitUntil(lambda: "albumin_grade" in [r["name"] for r in view.codebook_model.rows], timeout=TIMEOUT_MS)
    with demo_context.registry.session() as session:
        var = Codebook.for_session(session)["albumin_grade"]
    assert (var.label, var.type, var.codes) == ("Albumin grade", "category",
                                                {"low": ("1", "Low", "L"), "high": ("2", "High")})
    assert var.parse("L") == ("low", None) and var.parse("2") == ("high", None)
    assert changed == ["variables"]
    assert view.snapshot()["variables"]["user_defined"] == ["albumin_grade"]


def test_codebook_editor_shows_a_refused_variable_inline(qtbot, demo_context):
    view = loaded_view(qtbot, demo_context)
    before = len(view.codebook_model.rows)
    view.var_name.setText("Serum Albumin")
    view.var_type.setCurrentText("number")
    view.var_min.setText("0")
    view.var_soft_max.setText("sixty")
    qtbot.mouseClick(view.add_button, Qt.LeftButton)
    qtbot.waitUntil(lambda: view.add_message.text().startswith("Not added"), timeout=TIMEOUT_MS)
    assert view.add_message.text() == ("Not added: Variable name 'Serum Albumin': use lower-case letters, digits "
                                       "and _ (starting with a letter). Correct the form and try again.")
    view.var_name.setText("serum_albumin")
    qtbot.mouseClick(view.add_button, Qt.LeftButton)
    qtbot.waitUntil(lambda: view.add_message.text().startswith("Not added: Variable 'serum_albumin'"),
                    timeout=TIMEOUT_MS)
    assert "soft_max 'sixty' is not a valid limit" in view.add_message.text()
    with demo_context.registry.session() as session:
        assert len(list(Codebook.for_session(session))) == before


def test_flow_diagram_layout_follows_figure_1():
    """Qt-free layout: one development and two external centers, and an unassigned patient."""
    a = CenterFlow(center="A", role="development", enrolled=10, included=7, training=4, internal=2, unassigned=1)
    a.excluded["neoadjuvant therapy"] = 3
    b = CenterFlow(center="B", role="external", enrolled=5, included=5, external=5)
    c = CenterFlow(center="C", role="external", enrolled=2, included=1, external=1)
    c.excluded["insufficient tissue"] = 1
    diagram = flow_diagram(Flow(centers=[a, b, c]))
    where = {box.key: (box.x, box.y, box.count) for box in diagram.boxes}
    assert where == {
        "enrolled:A": (0, 0, 10), "excluded:A": (1, 1, 3), "included:A": (0, 2, 7),
        "enrolled:B": (2, 0, 5), "excluded:B": (3, 1, 0), "included:B": (2, 2, 5),
        "enrolled:C": (4, 0, 2), "excluded:C": (5, 1, 1), "included:C": (4, 2, 1),
        "set:training": (0, 3, 4), "set:internal": (1, 3, 2), "set:external": (3.5, 3, 6),
        "set:unassigned": (6, 3, 1)}
    arrows = {(arrow.source, arrow.target, arrow.kind) for arrow in diagram.arrows}
    assert ("included:B", "set:external", "down") in arrows and ("included:C", "set:external", "down") in arrows
    assert ("enrolled:A", "excluded:A", "side") in arrows
    assert diagram.box("excluded:A").lines == ["Excluded: n = 3", "neoadjuvant therapy: 3"]
    assert diagram.box("set:external").lines == ["External validation set: n = 6", "center B: 5", "center C: 1"]
