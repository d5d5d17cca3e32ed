"""The slide catalogue on the demo project (4 SYNTHETIC slides): rows as the registry has
them, MPP override and missing-MPP warnings, tile counts from the tile index, adding slides
as a background job visible in the jobs table, and the links to the viewer and the patient."""

from __future__ import annotations

import json

import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QPixmap
from PySide6.QtWidgets import QDialogButtonBox

from tests.ui.helpers import shown_view


@pytest.fixture
def slides_view(qtbot, demo_context):
    from pathomics_desktop.ui.views.slides import SlideCatalogView

    view = shown_view(qtbot, SlideCatalogView(), demo_context, (1000, 600))
    qtbot.waitUntil(lambda: len(view.model.rows) == 4, timeout=10000)
    return view


def _cell(view, slide_id, column, role=Qt.DisplayRole):
    from pathomics_desktop.ui.models.slides import SLIDE_ID_ROLE

    for i in range(view.proxy.rowCount()):
        if view.proxy.index(i, 0).data(SLIDE_ID_ROLE) == slide_id:
            return view.proxy.index(i, column).data(role)
    raise KeyError(slide_id)


def _reload(qtbot, view):
    before = view.model.rows
    view.refresh()
    qtbot.waitUntil(lambda: view.model.rows is not before and view.model.rows != [], timeout=10000)


def test_catalogue_rows_match_the_registry_and_tile_counts_the_index(qtbot, slides_view):
    import pyarrow.parquet as pq

    from pathomics_desktop.jobs.runner import run_job, submit
    from pathomics_desktop.registry.slides import list_slides
    from pathomics_desktop.slides.jobs import tile_index_path

    view, ctx = slides_view, slides_view.ctx
    registered = list_slides(ctx.registry)  # what `pathomics slides list --json` prints
    assert [r["id"] for r in registered] == [1, 2, 3, 4]
    for r in registered:
        assert _cell(view, r["id"], 1) == r["study_id"]
        assert _cell(view, r["id"], 4) == f"{r['width']} x {r['height']}" == "1024 x 1024"
        assert _cell(view, r["id"], 3) == f"{r['mpp_x']:.3f}" == "0.500"
        assert _cell(view, r["id"], 5) == r["qc_status"] == "pending"
        assert _cell(view, r["id"], 6) == "not tiled"
        thumb = _cell(view, r["id"], 0, Qt.DecorationRole)
        assert isinstance(thumb, QPixmap) and max(thumb.width(), thumb.height()) == 64
    assert view.counts_label.text() == "4 slides - 4 pending"

    run_job(ctx.project, ctx.registry, submit(ctx.registry, "tiling", {"tile_size": 128}))
    _reload(qtbot, view)
    for slide_id in (1, 2, 3, 4):
        assert _cell(view, slide_id, 6) == str(pq.read_table(tile_index_path(ctx.project, slide_id)).num_rows)
        assert _cell(view, slide_id, 5) == "ok"
    snap = view.snapshot()
    assert snap["counts"] == {"pending": 0, "ok": 4, "excluded": 0, "failed": 0}
    assert [r["patient"] for r in snap["rows"]] == ["SYN-A-0001", "SYN-A-0002", "SYN-A-0003", "SYN-A-0004"]
    text = json.dumps(snap)
    assert ".svs" not in text and str(ctx.project.root) not in text  # no file names or paths


def test_mpp_override_is_undoable_and_shows_its_warning(qtbot, slides_view):
    from pathomics_desktop.registry.slides import list_slides

    view, ctx = slides_view, slides_view.ctx

    def stored(slide_id):
        return next(r["mpp_override"] for r in list_slides(ctx.registry) if r["id"] == slide_id)

    assert _cell(view, 2, 3, Qt.DecorationRole) is None
    assert view.set_mpp_override(2, "abc") is False and "not a number" in view.last_message
    assert view.set_mpp_override(2, "99") is False and view.last_message.startswith("MPP override 99.0 is not")
    assert stored(2) is None and ctx.undo_stack.count() == 0
    assert view.set_mpp_override(2, "0.25", reason="calibration slide says 0.25")
    assert stored(2) == 0.25
    qtbot.waitUntil(lambda: _cell(view, 2, 3) == "0.250 (override)", timeout=10000)
    assert isinstance(_cell(view, 2, 3, Qt.DecorationRole), QPixmap)
    assert _cell(view, 2, 3, Qt.ToolTipRole) == "MPP overridden: 0.25 um/px is used (scanner: 0.5)"
    assert _cell(view, 1, 3, Qt.DecorationRole) is None
    ctx.undo_stack.undo()
    assert stored(2) is None
    qtbot.waitUntil(lambda: _cell(view, 2, 3) == "0.500", timeout=10000)
    ctx.undo_stack.redo()
    assert stored(2) == 0.25


def test_add_slides_runs_the_registration_job_with_a_pattern(qtbot, slides_view, tmp_path):
    from pathomics_desktop.demo.synthetic_slides import write_synthetic_slide
    from pathomics_desktop.jobs.runner import list_jobs

    view, ctx = slides_view, slides_view.ctx
    folder = tmp_path / "incoming"
    folder.mkdir()
    # a new slide for patient SYN-A-0005 whose scanner wrote no pixel size
    write_synthetic_slide(folder / "HE_SYN-A-0005_block2.tif", width=512, height=512, mpp=None, app_mag=None, seed=5)
    dialog = view.open_add_dialog([str(folder)])
    dialog.by_pattern.setChecked(True)
    qtbot.mouseClick(dialog.findChild(QDialogButtonBox).button(QDialogButtonBox.Ok), Qt.LeftButton)
    assert dialog.isVisible() and "pattern" in dialog.error.text()  # an empty pattern is refused inline
    dialog.pattern.setText(r"HE_(?P<study_id>SYN-[A-C]-\d{4})_")
    qtbot.mouseClick(dialog.findChild(QDialogButtonBox).button(QDialogButtonBox.Ok), Qt.LeftButton)
    assert not dialog.isVisible()
    assert view.progress.isVisible() and not view.add_button.isEnabled()
    qtbot.waitUntil(lambda: len(view.model.rows) == 5, timeout=30000)
    assert not view.progress.isVisible() and view.add_button.isEnabled()
    job = list_jobs(ctx.registry, limit=1)[0]
    assert (job.type, job.status) == ("slides-add", "done")
    assert job.params["pattern"] == r"HE_(?P<study_id>SYN-[A-C]-\d{4})_"
    assert job.result["counts"]["added"] == 1
    new = view.model.rows[-1]
    assert (new.study_id, new.width, new.height, new.mpp) == ("SYN-A-0005", 512, 512, None)
    assert _cell(view, new.slide_id, 3) == "missing"
    assert isinstance(_cell(view, new.slide_id, 3, Qt.DecorationRole), QPixmap)
    assert _cell(view, new.slide_id, 3, Qt.ToolTipRole).startswith("MPP ")
    assert view.report_label.text().startswith("Slides: 1 added")


def test_add_slides_with_a_bad_pattern_says_what_is_wrong(qtbot, slides_view, tmp_path):
    view = slides_view
    dialog = view.open_add_dialog([str(tmp_path)])
    dialog.by_pattern.setChecked(True)
    dialog.pattern.setText(r"(SYN-\d+)")
    qtbot.mouseClick(dialog.findChild(QDialogButtonBox).button(QDialogButtonBox.Ok), Qt.LeftButton)
    qtbot.waitUntil(lambda: view.last_message != "", timeout=20000)
    assert view.last_message.startswith("slide name pattern '(SYN-\\\\d+)' needs a named group (?P<study_id>...)")
    assert view.add_button.isEnabled() and len(view.model.rows) == 4


def test_double_click_opens_the_viewer_and_the_patient_column_the_patient(qtbot, slides_view):
    from PySide6.QtTest import QTest

    view, ctx = slides_view, slides_view.ctx
    table = view.table
    for column, signal, expected in ((1, ctx.request_patient, "SYN-A-0003"), (4, ctx.request_slide, 3)):
        row = next(i for i in range(view.proxy.rowCount()) if view.proxy.index(i, 1).data() == "SYN-A-0003")
        rect = table.visualRect(view.proxy.index(row, column))
        QTest.mouseClick(table.viewport(), Qt.LeftButton, Qt.NoModifier, rect.center())  # press sets the index
        with qtbot.waitSignal(signal, timeout=2000) as blocker:
            QTest.mouseDClick(table.viewport(), Qt.LeftButton, Qt.NoModifier, rect.center())
        assert blocker.args == [expected]


@pytest.mark.parametrize("synthetic", [False, True])
def test_an_empty_catalogue_says_how_to_add_slides(qtbot, tmp_path, synthetic):
    from pathomics_desktop.registry.service import init_project, open_project_registry
    from pathomics_desktop.ui.context import ProjectContext
    from pathomics_desktop.ui.views.slides import DEMO_SLIDES_HINT, NO_SLIDES_HINT, SlideCatalogView

    project = init_project(tmp_path / "empty", development_center="A", synthetic=synthetic)
    ctx = ProjectContext(project, open_project_registry(project), user="tester")
    try:
        view = shown_view(qtbot, SlideCatalogView(), ctx, (1000, 600))
        expected = NO_SLIDES_HINT + (DEMO_SLIDES_HINT if synthetic else "")
        qtbot.waitUntil(lambda: view.counts_label.text() == expected, timeout=10000)
        assert view.model.rowCount() == 0
    finally:
        ctx.close()
