"""The subgroup forest description: every row's n, events, HR, CI and p, and every
interaction p, equal ``stats.subgroups`` called directly; the overall HR equals ``stats.cox``;
events are counted again with pandas; the flag rule (< 10 events or HR not estimable) marks
exactly the rows it says. The cohort is a small SYNTHETIC snapshot read through DuckDB."""

from __future__ import annotations

import json
import math

import pytest

from pathomics_desktop.analytics.cohort_filter import AnalysisSource, CohortFilter
from pathomics_desktop.errors import UserError
from pathomics_desktop.figures.forest import build_forest, table_rows
from pathomics_desktop.signature.report import subgroup_variables
from pathomics_desktop.stats.cox import fit_cox
from pathomics_desktop.stats.subgroups import subgroup_analysis
from tests.figures.cohort_data import clinical_snapshot

TIME, EVENT, EXPOSURE = "os_months", "os_event", "pathomics_os_group"


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    path = tmp_path_factory.mktemp("forest") / "cohort.parquet"
    clinical_snapshot().to_parquet(path, index=False)
    return AnalysisSource(path)


@pytest.fixture(scope="module")
def frame(source):
    return source.frame(CohortFilter())


def test_rows_and_interaction_p_equal_stats_subgroups(source, frame):
    figure = build_forest(source, frame, {"endpoint": "os"})
    assert figure.exposure == EXPOSURE and (figure.exposure_level, figure.reference_level) == ("high", "low")
    variables = [v.column for v in subgroup_variables()]
    order = {v.column: [lvl for lvl in v.levels if lvl in set(frame[v.column].dropna())] for v in subgroup_variables()}
    direct = subgroup_analysis(frame, TIME, EVENT, EXPOSURE, variables, reference="low", subgroup_order=order)
    drawn = [r for r in figure.rows if r.kind != "header"]
    assert [(r.variable if r.kind == "level" else "Overall", r.level or "all") for r in drawn] == \
        [(r.variable, r.level) for r in direct.rows]
    for got, expected in zip(drawn, direct.rows):
        assert (got.n, got.events) == (expected.n, expected.events)
        for key in ("hr", "hr_lower", "hr_upper", "p"):
            if getattr(expected, key) is None:
                assert getattr(got, key) is None
            else:
                assert getattr(got, key) == pytest.approx(getattr(expected, key), rel=1e-12)
    expected_int = {r.variable: r.p_interaction for r in direct.rows if r.variable != "Overall" and r.level ==
                    order[r.variable][0]}
    assert figure.interaction_p() == pytest.approx(expected_int, rel=1e-12)
    # one header row per variable, in the study's order, carrying the interaction p
    assert [r.variable for r in figure.rows if r.kind == "header"] == variables


def test_overall_row_and_counts_by_pandas(source, frame):
    figure = build_forest(source, frame, {"endpoint": "os"})
    overall = figure.rows[0]
    fit = fit_cox(frame, TIME, EVENT, [EXPOSURE], categorical=[EXPOSURE], reference={EXPOSURE: "low"})
    assert overall.kind == "overall" and overall.hr == pytest.approx(fit.table()[0]["hr"], rel=1e-9)
    assert (overall.n, overall.events) == (len(frame), int(frame[EVENT].sum()))
    for row in figure.rows:
        if row.kind == "level":
            sub = frame[frame[row.variable] == row.level]
            assert (row.n, row.events) == (len(sub), int(sub[EVENT].sum()))


@pytest.mark.parametrize("min_events", [10, 60])
def test_flag_rule(source, frame, min_events):
    figure = build_forest(source, frame, {"endpoint": "os", "min_events": min_events})
    for row in figure.rows:
        if row.kind == "header":
            assert not row.flagged
            continue
        finite = row.hr is not None and all(math.isfinite(v) for v in (row.hr, row.hr_lower, row.hr_upper))
        assert row.flagged == (row.events < min_events or not finite)
        assert row.texts()["subgroup"].endswith("\u2020") == row.flagged
    rare = next(r for r in figure.rows if r.variable == "surgery_type" and r.level == "TP")
    assert rare.flagged and rare.events < 10  # the SYNTHETIC cohort's rare surgery type
    assert f"fewer than {min_events} events" in figure.flag_rule


def test_km_request_other_exposure_and_errors(source, frame):
    figure = build_forest(source, frame, {"endpoint": "os", "exposure": "adjuvant_chemotherapy",
                                          "subgroups": ["sex", "stage_2"]})
    assert (figure.exposure_level, figure.reference_level) == ("yes", "no")
    level = next(r for r in figure.rows if r.kind == "level" and r.variable == "stage_2")
    assert figure.km_request(level) == {"endpoint": "os", "group": "adjuvant_chemotherapy",
                                        "subgroup": ("stage_2", "I-II")}
    assert figure.km_request(figure.rows[0]) == {"endpoint": "os", "group": "adjuvant_chemotherapy"}
    header, rows = table_rows(figure)
    assert header[:4] == ["subgroup", "level", "n", "events"] and len(rows) == len(figure.rows)
    json.dumps(figure.to_dict())
    with pytest.raises(UserError, match="apply a signature first"):
        build_forest(source, frame, {"endpoint": "rfs"})  # no RFS risk group in this snapshot
    with pytest.raises(UserError, match="needs exactly two levels"):
        build_forest(source, frame, {"exposure": "n_stage"})
