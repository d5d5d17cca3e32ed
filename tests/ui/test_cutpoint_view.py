"""The cutpoint view: its optimum equals ``stats.cutpoint.maxstat_cutpoint`` on the same
filtered patients, a filter change updates it, the bootstrap button runs, and "Lock this cut"
is an undoable, audited command. SYNTHETIC demo project with a real fitted signature."""

from __future__ import annotations

import numpy as np

from pathomics_desktop.analytics.cohort_filter import AnalysisSource, CohortFilter
from pathomics_desktop.signature.fit import load_signature
from pathomics_desktop.signature.versions import versions
from pathomics_desktop.stats.cutpoint import maxstat_cutpoint
from pathomics_desktop.ui.views.analysis.cutpoint import CutpointView
from tests.signature.fitted import NAME
from tests.ui.helpers import shown_view


def _expected(project, flt):
    frame = AnalysisSource.open(project).frame(flt)
    part = frame[frame["split"] == "training"].dropna(subset=["os_months", "os_event", "pathomics_os_score"])
    return maxstat_cutpoint(part["os_months"], part["os_event"], part["pathomics_os_score"]), part


def test_view_shows_the_maxstat_optimum_and_follows_the_filter(qtbot, fitted_context):
    view = shown_view(qtbot, CutpointView(), fitted_context, (1400, 900))
    qtbot.waitUntil(lambda: view.computed is not None, timeout=60000)
    direct, part = _expected(fitted_context.project, CohortFilter())
    model = view.computed.model
    assert (model.cutpoint, model.statistic, model.p_lau94, model.n) == (
        direct.cutpoint, direct.statistic, direct.p_adjusted, len(part))
    snap = view.snapshot()
    assert snap["cutpoint"]["maxstat"]["cutpoint"] == direct.cutpoint
    assert snap["cutpoint"]["reference_cut"] == load_signature(fitted_context.project, NAME)["cut"]["value"]
    wanted = CohortFilter(centers=("A",))
    fitted_context.set_cohort_filter(wanted)
    qtbot.waitUntil(lambda: view.computed is not None and view.computed.cohort_filter == wanted, timeout=60000)
    direct_a, part_a = _expected(fitted_context.project, wanted)
    assert view.computed.model.cutpoint == direct_a.cutpoint and view.computed.model.n == len(part_a)
    # bootstrap on demand
    view.bootstrap_spin.setValue(20)
    view.bootstrap_button.click()
    qtbot.waitUntil(lambda: view.computed is not None and view.computed.model.bootstrap is not None, timeout=60000)
    assert view.computed.model.bootstrap.reps == 20 and len(view.computed.model.bootstrap.cuts) == 20
    # a click on the curve chooses the nearest admissible cut
    cuts = np.asarray(view.computed.model.cuts)
    view.choose_cut_near(cuts[3] + 1e-9)
    qtbot.waitUntil(lambda: view.computed is not None and view.computed.model.chosen_cut == cuts[3], timeout=60000)


def test_lock_this_cut_is_undoable_and_regroups_the_registry(qtbot, fitted_context):
    from pathomics_desktop.analytics.snapshot import cohort_frame

    ctx = fitted_context
    view = shown_view(qtbot, CutpointView(), ctx, (1400, 900))
    qtbot.waitUntil(lambda: view.computed is not None, timeout=60000)
    assert view.lock_button.isEnabled()
    original = load_signature(ctx.project, NAME)["cut"]
    cut = float(np.quantile(view.computed.model.cuts, 0.75))
    view.cut_edit.setText(repr(cut))
    view.recompute()
    qtbot.waitUntil(lambda: view.computed is not None and view.computed.model.chosen_cut == cut, timeout=60000)
    view.open_lock_dialog()
    dialog = view.lock_dialog
    from PySide6.QtWidgets import QDialogButtonBox

    assert not dialog.buttons.button(QDialogButtonBox.Ok).isEnabled()  # a reason is required
    dialog.reason_edit.setText("SYNTHETIC: clinically chosen quartile")
    dialog.accept()
    assert view.last_command is not None and versions(ctx.project, NAME) == [1, 2]
    locked = load_signature(ctx.project, NAME)["cut"]
    assert locked["value"] == cut and locked["reason"] == "SYNTHETIC: clinically chosen quartile"
    snap = cohort_frame(ctx.project.root).dropna(subset=["pathomics_os_score"])
    assert (snap["pathomics_os_group"] == np.where(snap["pathomics_os_score"] > cut, "high", "low")).all()
    ctx.undo_stack.undo()
    assert load_signature(ctx.project, NAME)["cut"] == original and versions(ctx.project, NAME) == [1, 2, 3]
    snap = cohort_frame(ctx.project.root).dropna(subset=["pathomics_os_score"])
    assert (snap["pathomics_os_group"] == np.where(snap["pathomics_os_score"] > original["value"], "high", "low")).all()
    ctx.undo_stack.redo()
    assert load_signature(ctx.project, NAME)["cut"]["value"] == cut
