"""The Cox view on the SYNTHETIC scored demo project: the study-rule button's HR table equals
``stats.cox`` on the same filtered snapshot, a filter change updates it, the PH-flagged rows
are the ones whose ``cox_zph`` p < 0.05 and are shaded, and ticking a variable in the list
refits."""

from __future__ import annotations

import pytest
from PySide6.QtCore import Qt

from pathomics_desktop.analytics.cohort_filter import AnalysisSource, CohortFilter
from pathomics_desktop.signature.report import clinical_variables
from pathomics_desktop.stats.cox import cox_zph, fit_cox, multivariable_from_screen
from pathomics_desktop.ui.views.analysis.cox import CoxView
from tests.ui.helpers import shown_view

TIME, EVENT, GROUP = "os_months", "os_event", "pathomics_os_group"


def ready_view(qtbot, ctx) -> CoxView:
    view = shown_view(qtbot, CoxView(), ctx, (1400, 900))
    qtbot.waitUntil(lambda: bool(view.picker.specs) and view.computed is not None, timeout=90000)
    return view


def study_screen(project, flt):
    frame = AnalysisSource.open(project).frame(flt)
    columns = [v.column for v in clinical_variables()] + [GROUP]
    candidates = [c for c in columns if c != "tnm_group"]
    # reference: each variable's first level in codebook order present in the rows; risk group low
    refs = {v.column: next(lvl for lvl in v.levels if lvl in set(frame[v.column].dropna()))
            for v in clinical_variables()} | {GROUP: "low"}
    return frame, multivariable_from_screen(frame, TIME, EVENT, candidates, categorical=columns, reference=refs)


def table_rows(view):
    """The rows the HR table model shows (dicts with the numbers and the text cells)."""
    return view.table_model.rows


def test_study_rule_table_equals_stats_and_follows_the_filter(qtbot, scored_context):
    view = ready_view(qtbot, scored_context)
    view.study_button.click()
    qtbot.waitUntil(lambda: view.computed is not None and view.computed.model.mode == "screen", timeout=90000)
    frame, direct = study_screen(scored_context.project, CohortFilter())
    table = view.computed.model
    assert table.selected == direct["selected"] and GROUP in table.selected
    assert view.picker.ticked() == [v.column for v in clinical_variables()] + [GROUP]
    multi = {r["term"]: r for r in direct["multivariable"].table()}
    shown = {r["term"]: r for r in table_rows(view) if r["term"]}
    for term, expected in multi.items():
        assert shown[term]["multi_hr"] == pytest.approx(expected["hr"], rel=1e-9)
        assert shown[term]["multi_text"] == f"{expected['hr']:.2f} ({expected['hr_lower']:.2f}-{expected['hr_upper']:.2f})"
    uni = {r["term"]: r for r in direct["univariate"]}
    for term, expected in uni.items():
        assert shown[term]["uni_hr"] == pytest.approx(expected["hr"], rel=1e-9)
    fit = direct["multivariable"]
    assert view.model_line.text().startswith(f"Multivariable model: n = {fit.n}, events = {fit.events}, "
                                             f"C-index = {fit.concordance:.3f}")
    # a filter change refits on the training set
    wanted = CohortFilter(datasets=("training",))
    scored_context.set_cohort_filter(wanted)
    qtbot.waitUntil(lambda: view.computed.cohort_filter == wanted, timeout=90000)
    frame, direct = study_screen(scored_context.project, wanted)
    assert view.computed.model.selected == direct["selected"]
    assert view.computed.model.multivariable.n == direct["multivariable"].n == len(frame)
    shown = {r["term"]: r for r in table_rows(view) if r["term"]}
    for row in direct["multivariable"].table():
        assert shown[row["term"]]["multi_hr"] == pytest.approx(row["hr"], rel=1e-9)
    tsv = view.tsv().splitlines()
    assert tsv[0].split("\t")[:4] == ["Variable", "Level", "Univariate HR (95% CI)", "p"]
    assert "data set: training" in tsv[-1]


def test_ph_flags_are_the_zph_tests_below_005_and_ticking_refits(qtbot, scored_context):
    view = ready_view(qtbot, scored_context)
    view.set_state(mode="univariate", variables=["sex", "n_stage", GROUP])
    qtbot.waitUntil(lambda: view.computed is not None and view.computed.model.variables == ["sex", "n_stage", GROUP],
                    timeout=90000)
    frame = AnalysisSource.open(scored_context.project).frame(CohortFilter())
    flagged_expected = set()
    for var, ref in (("sex", "female"), ("n_stage", "N0"), (GROUP, "low")):
        fit = fit_cox(frame.dropna(subset=[var]), TIME, EVENT, [var], categorical=[var], reference={var: ref})
        if cox_zph(fit)[var]["p"] < 0.05:
            flagged_expected.add(var)
        shown = [r for r in table_rows(view) if r["variable"] == var and not r["reference"]]
        for row in shown:
            assert row["ph_p"] == pytest.approx(cox_zph(fit)[var]["p"], rel=1e-9)
    assert flagged_expected  # the SYNTHETIC risk group's HR changes with time
    model = view.table_model
    for i, row in enumerate(model.rows):
        shaded = model.data(model.index(i, 2), Qt.BackgroundRole) is not None
        assert shaded == (row["variable"] in flagged_expected and not row["reference"])
        assert row["ph_text"].endswith("!") == shaded
    # ticking age in the list adds its model (HR per 10 years once the step is set)
    view.picker.set_choice("age", 10)
    age_row = next(r for r in range(view.picker.rowCount()) if view.picker.item(r, 0).data(Qt.UserRole) == "age")
    view.picker.item(age_row, 0).setCheckState(Qt.Checked)
    qtbot.waitUntil(lambda: "age" in view.computed.model.variables, timeout=90000)
    fit = fit_cox(frame, TIME, EVENT, ["age"])
    age = next(r for r in table_rows(view) if r["variable"] == "age")
    assert age["level"] == "per 10 years"
    assert age["uni_hr"] == pytest.approx(float(fit.table()[0]["hr"]) ** 10, rel=1e-8)


def test_screenshot_state_is_the_study_rule(qtbot, scored_context):
    view = shown_view(qtbot, CoxView(), scored_context, (1400, 900))
    view.prepare_screenshot()  # before the variables are listed: applied once they are
    qtbot.waitUntil(lambda: view.computed is not None and view.computed.model.mode == "screen", timeout=90000)
    snap = view.snapshot()
    assert snap["cox"]["mode"] == "screen" and snap["cox"]["threshold"] == 0.05
    assert GROUP in snap["cox"]["variables"] and snap["n"] == view.computed.n
