"""The patient table on the SYNTHETIC demo registry: loaded in the background, filtered by
center, data set, inclusion and any codebook variable (counts checked against SQL and the
patient flow), identifiers kept out unless asked for, and a 10,000-row model."""

from __future__ import annotations

import datetime as dt

import pytest
from PySide6.QtCore import Qt
from sqlalchemy import func, select

from pathomics_desktop.cohort.flow import patient_flow
from pathomics_desktop.registry.models import Center, Pathology, Patient
from pathomics_desktop.ui.models.patients import RAW_ROLE, PatientTableModel
from pathomics_desktop.ui.views.patients import PatientsView
from tests.ui.helpers import shown_view


@pytest.fixture(autouse=True)
def private_settings(monkeypatch, tmp_path):
    """The chosen columns are remembered in QSettings: keep each test's to itself."""
    monkeypatch.setenv("PATHOMICS_SETTINGS_DIR", str(tmp_path / "settings"))


@pytest.fixture
def view(qtbot, demo_context):
    view = shown_view(qtbot, PatientsView(), demo_context, (1200, 700))
    qtbot.waitUntil(lambda: not view.busy() and view.model.total > 0, timeout=30000)
    return view


def count(ctx, *where):
    with ctx.registry.session() as s:
        query = select(func.count(Patient.id)).join(Center, Patient.center_id == Center.id) \
            .outerjoin(Pathology, Pathology.patient_id == Patient.id)
        return s.execute(query.where(*where)).scalar_one()


def choose(combo, text):
    index = combo.findText(text)
    assert index >= 0, text
    combo.setCurrentIndex(index)


def test_filters_give_the_counts_of_a_direct_query(view, demo_context):
    ctx = demo_context
    assert view.model.rowCount() == count(ctx) == 873
    choose(view.center, "B")
    assert view.model.rowCount() == count(ctx, Center.code == "B")
    view.set_variable_filter("t_stage", equals="T3")
    assert view.model.rowCount() == count(ctx, Center.code == "B", Pathology.t_stage == "T3") > 0
    assert {view.model.row(r)["t_stage"] for r in range(view.model.rowCount())} == {"T3"}
    view.set_variable_filter("age", low="60", high="70")
    assert view.model.rowCount() == count(ctx, Center.code == "B", Patient.age.between(60, 70)) > 0
    assert view.count.text() == f"{view.model.rowCount()} of 873 patients"
    snap = view.snapshot()
    assert snap["filters"] == {"center": "B", "variables": ["age in [60, 70]"]}
    assert snap["shown"] == view.model.rowCount() and len(snap["rows"]) == min(20, snap["shown"])

    view.clear_filters()
    with ctx.registry.session() as s:
        flow = patient_flow(s).to_dict()
    choose(view.included, "included")
    assert view.model.rowCount() == flow["total"]["included"]
    choose(view.data_set, "external")
    assert view.model.rowCount() == flow["total"]["external"]
    view.clear_filters()
    choose(view.reason, "neoadjuvant therapy")
    assert view.model.rowCount() == flow["total"]["excluded"]["neoadjuvant therapy"] > 0
    view.clear_filters()
    view.find("SYN-C-00")
    assert view.search.hasFocus()
    assert view.model.rowCount() == count(ctx, Patient.study_id.like("SYN-C-00%"))


def test_a_wrong_filter_value_says_why(view):
    view.set_variable_filter("surgery_date", low="2019-13-40")
    assert "filter on Date of surgery" in view.message.text() and "not a valid calendar date" in view.message.text()


def test_sorting_and_columns(qtbot, view, demo_context):
    col = view.visible_columns().index("os_months")
    view.table.sortByColumn(col, Qt.DescendingOrder)
    months = [view.model.index(r, col).data(RAW_ROLE) for r in range(view.model.rowCount())]
    known = [m for m in months if m is not None]
    assert known == sorted(known, reverse=True) and months[:len(known)] == known
    view.set_columns(["center", "ca19_9", "surgery_date"])
    headers = [view.model.headerData(c, Qt.Horizontal) for c in range(view.model.columnCount())]
    assert headers == ["Study ID", "Center", "CA19-9 (preoperative) (U/mL)", "Date of surgery"]
    menu = view._fill_columns_menu()
    labels = [a.text() for a in menu.actions()]
    assert "Diabetes" in labels and "Name" not in labels and "Medical record number" not in labels
    [diabetes] = [a for a in menu.actions() if a.text() == "Diabetes"]
    diabetes.setChecked(True)
    assert view.visible_columns()[-1] == "diabetes"
    # the choice is remembered (identifiers never are)
    again = PatientsView()
    qtbot.addWidget(again)
    assert again.visible_columns() == ["study_id", "center", "ca19_9", "surgery_date", "diabetes"]


def test_identifiers_only_when_asked_and_never_in_the_snapshot(qtbot, view):
    assert not {"name", "mrn", "birth_date"} & set(view.offered_columns())
    assert "name" not in view.data.rows[0]
    view.show_identifiers.setChecked(True)
    qtbot.waitUntil(lambda: not view.busy() and view.data.include_identifiers, timeout=30000)
    assert {"name", "mrn", "birth_date"} <= set(view.offered_columns())
    view.set_columns(["center", "name", "mrn"])
    first_name = view.model.row(0)["name"]
    assert first_name and view.model.index(0, 2).data() == first_name
    snap = view.snapshot()
    assert snap["columns"] == ["study_id", "center"]
    assert first_name not in str(snap)
    from pathomics_desktop.ui.views.patients import remembered_columns
    assert remembered_columns() == ["study_id", "center"]
    view.show_identifiers.setChecked(False)
    qtbot.waitUntil(lambda: not view.busy() and not view.data.include_identifiers, timeout=30000)
    assert view.visible_columns() == ["study_id", "center"] and "name" not in view.data.rows[0]


def test_double_click_opens_the_patient(qtbot, view, demo_context):
    view.table.sortByColumn(0, Qt.AscendingOrder)
    rect = view.table.visualRect(view.model.index(2, 1))
    with qtbot.waitSignal(demo_context.request_patient, timeout=5000) as signal:
        qtbot.mouseClick(view.table.viewport(), Qt.LeftButton, pos=rect.center())  # a real double click
        qtbot.mouseDClick(view.table.viewport(), Qt.LeftButton, pos=rect.center())  # starts with a press
    assert signal.args == ["SYN-A-0003"]
    assert view.open_patient(0) == "SYN-A-0001"


def test_ten_thousand_rows_model():
    """A model over plain rows: the count and the last row are right, sort and filter work on
    row indices (no timing asserted)."""
    start = dt.date(2015, 1, 1)
    rows = [{"study_id": f"SYN-X-{i:05d}", "center": "ABC"[i % 3], "split": None, "included": i % 4 != 0,
             "exclusion_reason": None if i % 4 else "neoadjuvant therapy", "tnm_stage": "IIA",
             "os_months": i / 100, "os_event": i % 2, "rfs_months": i / 200, "rfs_event": 1,
             "surgery_date": start + dt.timedelta(days=i % 1000)} for i in range(10_000)]
    model = PatientTableModel(rows)
    assert model.rowCount() == 10_000
    last = model.index(9_999, 0)
    assert last.data() == "SYN-X-09999"
    assert model.index(9_999, model.columns.index("os_months")).data() == "100.0"
    assert model.index(9_999, model.columns.index("os_event")).data() == "yes"
    model.sort(model.columns.index("os_months"), Qt.DescendingOrder)
    assert model.index(0, 0).data() == "SYN-X-09999"
    from pathomics_desktop.registry.patient_list import PatientFilter
    model.set_filter(PatientFilter(center="B", included=False))
    # i % 3 == 1 and i % 4 == 0: i = 4 (mod 12) -> 833 of 10,000
    assert model.rowCount() == len([i for i in range(10_000) if i % 3 == 1 and i % 4 == 0]) == 833
    assert model.index(0, 0).data() == "SYN-X-09988"
