"""The Table 1 view on the SYNTHETIC scored demo project: p and test per variable equal
``stats.table1.baseline_table`` on the same filtered patients, a filter change updates it,
the grouping and variable pickers work, and clicking a count lists exactly those patients."""

from __future__ import annotations

import json

import pandas as pd
from PySide6.QtCore import Qt

from pathomics_desktop.analytics.cohort_filter import AnalysisSource, CohortFilter
from pathomics_desktop.analytics.snapshot import refresh_snapshot
from pathomics_desktop.figures.table1 import OVERALL
from pathomics_desktop.stats.table1 import baseline_table
from pathomics_desktop.ui.views.analysis.table1 import TEST_ABBREVIATIONS, BaselineTableView
from tests.ui.helpers import shown_view


def first_rows(frame, by, variables, groups):
    categorical = [v for v in variables if v not in ("age", "ca19_9")]
    out = {}
    for row in baseline_table(frame, by, variables, categorical=categorical, group_order=groups).rows:
        out.setdefault(row.variable, row)
    return out


def shown_cells(view):
    """What the table shows: {(row label, column header): text}."""
    model = view.model
    headers = [model.headerData(c, Qt.Horizontal) for c in range(model.columnCount())]
    return {(model.data(model.index(r, 0)), headers[c]): model.data(model.index(r, c))
            for r in range(model.rowCount()) for c in range(model.columnCount())}


def test_table1_equals_stats_and_follows_the_filter(qtbot, scored_context):
    view = shown_view(qtbot, BaselineTableView(), scored_context, (1300, 850))
    qtbot.waitUntil(lambda: view.computed is not None, timeout=120000)
    table = view.computed.model
    assert table.by == "split" and table.groups == ["training", "internal", "external"]
    frame = AnalysisSource.open(scored_context.project).frame(CohortFilter())
    variables = view.params()["variables"]
    direct = first_rows(frame, "split", variables, table.groups)
    for row in table.rows:
        if row.kind in ("header", "continuous"):
            assert (row.p, row.test) == (direct[row.variable].p, direct[row.variable].test)
    cells = shown_cells(view)
    n = frame["split"].value_counts()
    assert cells[("Patients, n", f"Training\n(n = {n['training']})")] == str(n["training"])
    sex = next(r for r in table.rows if r.variable == "sex" and r.kind == "header")
    # the table names the test by its journal abbreviation, and the notes spell it out
    assert cells[(sex.label, "p")] == sex.p_text and cells[(sex.label, "Test")] == TEST_ABBREVIATIONS[sex.test]
    assert f"{TEST_ABBREVIATIONS[sex.test]}, {sex.test}" in view.notes.text()
    for test in {r.test for r in view.computed.model.rows if r.test}:  # every test used is spelled out
        assert f"{TEST_ABBREVIATIONS.get(test, test)}, {test}" in view.notes.text()
    # the filter changes: women only
    wanted = CohortFilter().with_categories("sex", ["female"])
    scored_context.set_cohort_filter(wanted)
    qtbot.waitUntil(lambda: view.computed.cohort_filter == wanted, timeout=120000)
    women = frame[frame["sex"] == "female"]
    table = view.computed.model
    assert table.rows[0].counts == {OVERALL: len(women), **women["split"].value_counts().to_dict()}
    direct = first_rows(women, "split", variables, table.groups)
    age = next(r for r in table.rows if r.variable == "age")
    assert age.cells == direct["age"].cells and age.p == direct["age"].p
    snap = view.snapshot()
    json.dumps(snap)
    assert snap["table1"]["rows"][0]["counts"][OVERALL] == len(women)


def test_clicking_a_count_lists_those_patients(qtbot, scored_context):
    view = shown_view(qtbot, BaselineTableView(), scored_context, (1300, 850))
    qtbot.waitUntil(lambda: view.computed is not None, timeout=120000)
    table = view.computed.model
    r = next(i for i, row in enumerate(table.rows) if row.variable == "t_group" and row.level == "T3-4")
    c = 1 + table.columns.index("internal")
    index = view.model.index(r, c)
    view.table.scrollTo(index)
    qtbot.mouseClick(view.table.viewport(), Qt.LeftButton, pos=view.table.visualRect(index).center())
    qtbot.waitUntil(lambda: view.last_patient_list is not None, timeout=5000)
    snap = pd.read_parquet(refresh_snapshot(scored_context.project))
    want = snap.loc[snap["included"] & (snap["split"] == "internal") & snap["t_stage"].isin(["T3", "T4"]), "study_id"]
    assert sorted(view.last_patient_list.study_ids()) == sorted(want)
    assert int(view.model.data(index).split()[0]) == len(want)
    assert view.last_patient_list.windowTitle() == "T stage: T3-4 (Internal validation)"
    assert {r["split"] for r in view.last_patient_list.rows} == {"internal"}
    # every enrolled patient by center: the "Missing" row of CA19-9 lists those without a value
    everyone = CohortFilter(included_only=False)
    view.group_combo.setCurrentIndex(view.group_combo.findData("center"))
    scored_context.set_cohort_filter(everyone)
    qtbot.waitUntil(lambda: view.computed.cohort_filter == everyone and view.computed.model.by == "center",
                    timeout=120000)
    table = view.computed.model
    r = next(i for i, row in enumerate(table.rows) if row.variable == "ca19_9" and row.kind == "missing")
    view.cell_clicked(view.model.index(r, 1))
    want = snap.loc[snap["ca19_9"].isna(), "study_id"]
    assert len(want) > 0 and sorted(view.last_patient_list.study_ids()) == sorted(want)
    assert view.model.data(view.model.index(r, 1)) == str(len(want))


def test_grouping_and_variable_pickers(qtbot, scored_context):
    view = shown_view(qtbot, BaselineTableView(), scored_context, (1300, 850))
    qtbot.waitUntil(lambda: view.computed is not None and view.group_combo.findData("sex") >= 0, timeout=120000)
    view.variable_button.set_checked("perineural_invasion", False)
    qtbot.waitUntil(lambda: all(r.variable != "perineural_invasion" for r in view.computed.model.rows),
                    timeout=120000)
    view.group_combo.setCurrentIndex(view.group_combo.findData("pathomics_os_group"))
    qtbot.waitUntil(lambda: view.computed.model.by == "pathomics_os_group", timeout=120000)
    table = view.computed.model
    frame = AnalysisSource.open(scored_context.project).frame(CohortFilter())
    assert table.groups == sorted(frame["pathomics_os_group"].unique())
    assert table.rows[0].counts == {OVERALL: len(frame), **frame["pathomics_os_group"].value_counts().to_dict()}
    direct = first_rows(frame, "pathomics_os_group", ["tnm_group"], table.groups)
    assert next(r for r in table.rows if r.variable == "tnm_group" and r.kind == "header").p == direct["tnm_group"].p
    lines = view.tsv().splitlines()
    assert lines[0].startswith("Characteristic\tOverall (n = ")
