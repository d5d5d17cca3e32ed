"""The analysis-view frame: the shared cohort filter, background computing, inline messages,
copy and export. A minimal view counting patients per data set stands in for the real views
(its numbers are checked against pandas on the snapshot file)."""

from __future__ import annotations

import pandas as pd
from PySide6.QtWidgets import QLabel

from pathomics_desktop.analytics.cohort_filter import CohortFilter
from pathomics_desktop.analytics.snapshot import refresh_snapshot
from pathomics_desktop.ui.views.analysis.base import AnalysisView
from tests.ui.helpers import shown_view


class CountsView(AnalysisView):
    view_id = "counts"
    title = "Counts"

    def build_content(self):
        return QLabel()

    @staticmethod
    def compute(source, frame, params):
        return {split: int(n) for split, n in frame.groupby("split").size().items()}

    def render(self, model):
        self.content.setText(", ".join(f"{k}: {v}" for k, v in model.items()))

    def table_data(self, model):
        return ["data set", "n"], [[k, v] for k, v in model.items()]

    def snapshot_data(self, model):
        return {"counts": model}


def expected_counts(project, flt):
    frame = pd.read_parquet(refresh_snapshot(project))
    keep = frame["included"] if flt.included_only else pd.Series(True, index=frame.index)
    if flt.datasets:
        keep &= frame["split"].isin(flt.datasets)
    for col, levels in flt.categories:
        keep &= frame[col].isin(levels)
    return {k: int(v) for k, v in frame[keep].groupby("split").size().items()}


def test_view_follows_the_shared_filter(qtbot, demo_context):
    view = shown_view(qtbot, CountsView(), demo_context, (900, 600))
    other = shown_view(qtbot, CountsView(), demo_context, (900, 600))
    qtbot.waitUntil(lambda: view.computed is not None and other.computed is not None, timeout=30000)
    assert view.computed.model == expected_counts(demo_context.project, CohortFilter())
    # the panel of one view changes the filter of every view
    qtbot.waitUntil(lambda: view.filter_panel.datasets is not None, timeout=30000)
    view.filter_panel.datasets.boxes["external"].setChecked(False)
    view.filter_panel.apply()
    wanted = CohortFilter(datasets=("training", "internal"))
    assert demo_context.cohort_filter == wanted
    qtbot.waitUntil(lambda: other.computed.cohort_filter == wanted, timeout=30000)
    assert other.computed.model == expected_counts(demo_context.project, wanted)
    assert "external" not in other.computed.model
    # the other panel shows the change
    assert not other.filter_panel.datasets.boxes["external"].isChecked()
    assert "data set: training, internal" in other.footnote.text()


def test_variable_filter_added_from_the_panel(qtbot, demo_context):
    view = shown_view(qtbot, CountsView(), demo_context, (900, 600))
    qtbot.waitUntil(lambda: view.filter_panel.options is not None and view.computed is not None, timeout=30000)
    combo = view.filter_panel.add_combo
    combo.activated.emit(combo.findData("sex"))
    row = view.filter_panel.rows["sex"]
    row.ticks.boxes["male"].setChecked(False)
    view.filter_panel.apply()
    wanted = CohortFilter().with_categories("sex", ["female"])
    qtbot.waitUntil(lambda: view.computed.cohort_filter == wanted, timeout=30000)
    assert view.computed.model == expected_counts(demo_context.project, wanted)
    view.filter_panel.reset()
    assert demo_context.cohort_filter == CohortFilter() and "sex" not in view.filter_panel.rows


def test_empty_selection_is_a_message_not_a_crash(qtbot, demo_context):
    view = shown_view(qtbot, CountsView(), demo_context, (900, 600))
    qtbot.waitUntil(lambda: view.computed is not None, timeout=30000)
    demo_context.set_cohort_filter(CohortFilter(datasets=("(none ticked)",)))
    qtbot.waitUntil(lambda: view.error is not None, timeout=30000)
    assert view.error.startswith("No patients match the cohort filter")
    assert view.stack.currentWidget() is view.message
    assert not view.export_button.isEnabled()


def test_hidden_view_waits_until_shown(qtbot, demo_context):
    view = CountsView()
    qtbot.addWidget(view)
    view.set_context(demo_context)
    qtbot.wait(300)
    assert view.computed is None and view._stale
    view.show()
    qtbot.waitUntil(lambda: view.computed is not None, timeout=30000)


def test_copy_and_export(qtbot, demo_context, tmp_path):
    view = shown_view(qtbot, CountsView(), demo_context, (900, 600))
    qtbot.waitUntil(lambda: view.computed is not None, timeout=30000)
    counts = view.computed.model
    lines = view.tsv().splitlines()
    assert lines[0] == "data set\tn"
    assert lines[1:-1] == [f"{k}\t{v}" for k, v in counts.items()]
    assert lines[-1].startswith("Cohort: included patients; n = ") and view.computed.snapshot_id in lines[-1]
    png = view.export_to(tmp_path / "counts.png")
    from PySide6.QtGui import QImage

    image = QImage(str(png))
    assert image.width() == 2 * view.content.width()
    svg = view.export_to(tmp_path / "counts.svg").read_text()
    assert "<svg" in svg and view.computed.snapshot_id in svg
    snap = view.snapshot()
    assert snap["counts"] == counts and snap["n"] == sum(counts.values())


def test_new_options_rebuild_the_panel_without_duplicates(qtbot, scored_context):
    view = shown_view(qtbot, CountsView(), scored_context, (900, 600))
    qtbot.waitUntil(lambda: view.filter_panel.options is not None, timeout=30000)
    panel = view.filter_panel
    for _ in range(3):  # every registry change re-sends the options
        panel.set_options(panel.options)
    qtbot.wait(50)  # deleteLater runs
    labels = [w.text() for w in panel.risk_box.findChildren(QLabel) if w.isVisibleTo(panel)]
    assert sorted(labels) == ["OS", "RFS"]
    assert sorted(panel.risk_lists) == ["pathomics_os_group", "pathomics_rfs_group"]
    assert list(panel.risk_lists["pathomics_os_group"].boxes) == ["high", "low"]
