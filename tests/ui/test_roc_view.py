"""The ROC view on the SYNTHETIC scored demo project: AUC(t), the drawn ROC curves and the
bootstrap CIs equal ``stats.tdroc`` on the same filtered patients; a filter change updates the
view; the patch-model comparison says in words when there are no predictions, and with
(SYNTHETIC) predictions shows the DeLong numbers of ``stats.roc``."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pathomics_desktop.analytics.cohort_filter import AnalysisSource, CohortFilter
from pathomics_desktop.figures.roc import BOOTSTRAP_SEED, VIEW_BOOTSTRAP
from pathomics_desktop.stats.roc import roc_analysis
from pathomics_desktop.stats.tdroc import bootstrap_td_auc, cumulative_dynamic_auc
from pathomics_desktop.ui.views.analysis.roc import RocView
from tests.figures.test_roc_figure import complete, expected_tiles, write_synthetic_predictions
from tests.ui.helpers import shown_view

MARKERS = ["pathomics_os_score", "tnm_ordinal", "ca19_9"]


def frame_of(ctx, flt):
    return AnalysisSource.open(ctx.project).frame(flt)


def assert_auc_equals_stats(model, frame, endpoint="os"):
    for marker in model.markers:
        t, e, x = complete(frame, [f"{endpoint}_months", f"{endpoint}_event", marker.column])
        assert np.allclose(marker.auc, cumulative_dynamic_auc(t, e, x, model.times).auc, atol=1e-12)


def drawn_curves(plot):
    """(x, y) of each drawn curve except the chance diagonal."""
    return [(item.xData, item.yData) for item in plot.getPlotItem().listDataItems()
            if item.name() is not None]


def test_td_roc_equals_stats_and_follows_the_filter(qtbot, scored_context):
    view = shown_view(qtbot, RocView(), scored_context, (1300, 850))
    qtbot.waitUntil(lambda: view.computed is not None, timeout=60000)
    model = view.computed.model
    assert [m.column for m in model.markers] == MARKERS and model.times == [12.0, 36.0, 60.0]
    assert_auc_equals_stats(model, frame_of(scored_context, CohortFilter()))
    # the table shows the numbers, the plot the curves at the chosen time
    assert view.td_model.rows[0]["3"] == f"{model.markers[0].auc[0]:.3f}"
    curves = drawn_curves(view.roc_plot)
    assert len(curves) == 3 and np.allclose(curves[0][0], model.markers[0].curves[12.0]["fpr"])
    view.time_combo.setCurrentIndex(view.time_combo.findData(36.0))
    curves = drawn_curves(view.roc_plot)
    assert np.allclose(curves[2][1], model.markers[2].curves[36.0]["tpr"])
    assert view.snapshot()["roc_time"] == 36.0
    # the filter of every view changes: the view recomputes on the external set only
    wanted = CohortFilter(datasets=("external",))
    scored_context.set_cohort_filter(wanted)
    qtbot.waitUntil(lambda: view.computed.cohort_filter == wanted, timeout=60000)
    assert_auc_equals_stats(view.computed.model, frame_of(scored_context, wanted))
    assert view.computed.n == len(frame_of(scored_context, wanted))
    snap = view.snapshot()
    json.dumps(snap)
    assert snap["roc"]["markers"][1]["td_auc"][0]["auc"] == view.computed.model.markers[1].auc[0]


def test_bootstrap_cis_on_request(qtbot, scored_context):
    view = shown_view(qtbot, RocView(), scored_context, (1300, 850))
    qtbot.waitUntil(lambda: view.computed is not None, timeout=60000)
    assert view.computed.model.bootstrap == 0 and view.computed.model.markers[0].ci_lower == [None] * 3
    view.marker_button.set_checked("tnm_ordinal", False)
    qtbot.waitUntil(lambda: len(view.computed.model.markers) == 2, timeout=60000)
    view.ci_button.click()
    qtbot.waitUntil(lambda: view.computed.model.bootstrap == VIEW_BOOTSTRAP, timeout=120000)
    model = view.computed.model
    frame = frame_of(scored_context, CohortFilter())
    t, e, x = complete(frame, ["os_months", "os_event", "ca19_9"])
    want = bootstrap_td_auc(t, e, x, model.times, n_boot=VIEW_BOOTSTRAP, seed=BOOTSTRAP_SEED)
    assert np.allclose(model.markers[1].ci_lower, want.ci_lower)
    assert np.allclose(model.markers[1].ci_upper, want.ci_upper)
    assert view.td_model.rows[1]["3"] == f"{want.auc[0]:.3f} ({want.ci_lower[0]:.3f}-{want.ci_upper[0]:.3f})"
    # another choice drops the bootstrap (interactive again): RFS at its own default times
    view.endpoint_combo.setCurrentIndex(view.endpoint_combo.findData("rfs"))
    qtbot.waitUntil(lambda: view.computed.model.endpoint == "rfs", timeout=60000)
    assert view.computed.model.bootstrap == 0 and view.times() == [12.0, 24.0, 36.0]
    assert_auc_equals_stats(view.computed.model, frame, "rfs")


def test_models_without_predictions_say_so(qtbot, scored_context):
    view = shown_view(qtbot, RocView(), scored_context, (1300, 850))
    qtbot.waitUntil(lambda: view.computed is not None, timeout=60000)
    view.mode_combo.setCurrentIndex(1)
    qtbot.waitUntil(lambda: view.error is not None, timeout=60000)
    assert "no patch-model predictions" in view.error and view.stack.currentWidget() is view.message
    view.mode_combo.setCurrentIndex(0)
    qtbot.waitUntil(lambda: view.computed is not None, timeout=60000)
    assert view.computed.model.to_dict()["mode"] == "td"


def test_models_with_predictions_show_delong(qtbot, scored_context):
    from pathomics_desktop.registry.slides import list_slides, set_slide_qc

    project = scored_context.project
    frame = frame_of(scored_context, CohortFilter())
    slides = list_slides(scored_context.registry)
    for slide in slides:
        set_slide_qc(scored_context.registry, slide["id"], "ok", user="tester")
    labels = {"SYN-A-0002": 1, "SYN-A-0004": 0}  # the labelled patients with demo slides
    assert {s["study_id"] for s in slides} >= set(labels)
    write_synthetic_predictions(project.root, {s["id"]: labels.get(s["study_id"], 0) for s in slides})
    view = shown_view(qtbot, RocView(), scored_context, (1300, 850))
    view.mode_combo.setCurrentIndex(1)
    qtbot.waitUntil(lambda: view.computed is not None and view.computed.model.to_dict()["mode"] == "models",
                    timeout=60000)
    model = view.computed.model
    assert model.n_slides == 2 and model.n_patients == 2  # unlabelled patients' slides stay out
    for run in model.runs:
        tiles = expected_tiles(project, frame, run)
        want = roc_analysis(tiles["label"].to_numpy(), tiles["prob"].to_numpy())
        got = model.roc(run, "patch")
        assert (got.auc, got.ci_lower, got.ci_upper) == pytest.approx((want.auc, want.ci_lower, want.ci_upper))
    row = view.model_model.rows[0]
    assert row["4"] == model.roc("run_a", "patch").auc_text()
    assert view.test_model.rows[0]["7"] == model.test_rows()[0][7] and not view.test_table.isHidden()
    assert len(drawn_curves(view.level_plots["patch"])) == 2
    lines = view.tsv().splitlines()
    assert lines[0].split("\t")[:3] == ["Model", "Level", "n"]
