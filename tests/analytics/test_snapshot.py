"""DuckDB cohort snapshot: refresh on registry change, parameterised filters, KM + log-rank."""

from __future__ import annotations

import numpy as np
import pytest

from pathomics_desktop.analytics.snapshot import CohortQuery, Filter, cohort_frame, refresh_snapshot
from pathomics_desktop.errors import UserError
from pathomics_desktop.registry.importer import import_file
from pathomics_desktop.registry.service import edit_value
from tests.registry.helpers import patient, write_csv


@pytest.fixture
def filled(project, registry, tmp_path):
    rows = [patient(f"P{i}", center="A" if i % 2 else "B", age=str(40 + i),
                    **({} if i % 3 else dict(recurrence="no", recurrence_date="", vital_status="alive",
                                             death_date="", last_followup_date="2021-06-01")))
            for i in range(12)]
    assert import_file(registry, write_csv(tmp_path / "p.csv", rows)).committed
    return project


def test_snapshot_refreshes_only_when_the_registry_changes(filled, registry):
    path = refresh_snapshot(filled)
    stamp = path.stat().st_mtime_ns
    assert refresh_snapshot(filled).stat().st_mtime_ns == stamp  # unchanged registry: reused
    edit_value(registry, "P1", "age", "77")
    frame = cohort_frame(filled.root)
    assert frame.loc[frame.study_id == "P1", "age"].item() == 77
    assert not {"name", "mrn", "birth_date"} & set(frame.columns)


def test_filters_are_parameters_never_sql(filled):
    query = CohortQuery.for_project(filled)
    try:
        clause, params = query.where([Filter("center", "=", "A' OR '1'='1"), Filter("age", "between", (40, 45))])
        assert "OR '1'='1" not in clause and params[0] == "A' OR '1'='1"
        assert len(query.frame([Filter("center", "=", "A' OR '1'='1")])) == 0
        assert len(query.frame([Filter("center", "=", "A")])) == 6
        assert len(query.frame([Filter("center", "in", ["A", "B"]), Filter("age", ">=", 46)])) == 6
        with pytest.raises(UserError, match="unknown column"):
            query.frame([Filter('age" OR 1=1 --', "=", 1)])
        with pytest.raises(UserError, match="operator"):
            query.frame([Filter("age", "; DROP TABLE cohort", 1)])
    finally:
        query.close()


def test_interactive_km_matches_direct_computation(filled):
    from pathomics_desktop.stats.km import kaplan_meier, logrank_test

    query = CohortQuery.for_project(filled)
    try:
        result = query.survival("os_months", "os_event", "center", [Filter("included", "=", True)])
        frame = query.frame([Filter("included", "=", True)])
    finally:
        query.close()
    direct = logrank_test(frame.os_months, frame.os_event, frame.center)
    assert result.logrank.chisq == pytest.approx(direct.chisq)
    assert result.groups == ["A", "B"] and result.n == len(frame)
    a = frame[frame.center == "A"]
    np.testing.assert_allclose(result.curves["A"].survival, kaplan_meier(a.os_months, a.os_event).survival)
    with pytest.raises(UserError, match="no patients"):
        CohortQuery.for_project(filled).survival("os_months", "os_event", None, [Filter("age", ">", 500)])


def test_bench_analytics_runs_and_agrees(capsys):
    from pathomics_desktop.analytics.bench import main

    assert main(["--patients", "2000", "--repeat", "2"]) == 0
    out = capsys.readouterr().out
    assert "log-rank agrees: True" in out and "ratio" in out


def test_parquet_outputs_are_joined_in_place(filled, tmp_path):
    import pandas as pd

    scores = tmp_path / "scores.parquet"
    pd.DataFrame({"study_id": ["P1", "P2", "P3"], "pathomics_score": [3.1, 2.0, 4.4],
                  "risk_group": ["low", "high", "low"]}).to_parquet(scores)
    query = CohortQuery.for_project(filled)
    try:
        added = query.attach("scores", scores)
        assert added == ["pathomics_score", "risk_group"]
        frame = query.frame([Filter("risk_group", "=", "low")], columns=["study_id", "pathomics_score", "age"])
        assert sorted(frame.study_id) == ["P1", "P3"] and len(query.frame()) == 12
        result = query.survival("os_months", "os_event", "risk_group")
        assert set(result.curves) == {"low", "high"}
        assert {g: c.n for g, c in result.curves.items()} == {"low": 2, "high": 1}  # P1, P3 / P2
        with pytest.raises(UserError, match="no column"):
            query.attach("bad", scores, on="age")
    finally:
        query.close()


def test_analyze_reads_the_registry_snapshot(filled, capsys):
    import json

    from pathomics_desktop.cli import main

    code = main(["analyze", "km", "registry:", "--time", "os_months", "--event", "os_event", "--group", "center",
                 "--at", "12,24", "--json", "--project", str(filled.root)])
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert {g["group"] for g in out["groups"]} == {"A", "B"} and sum(g["n"] for g in out["groups"]) == 12
    assert set(out["logrank"]) == {"chisq", "df", "p"}


def test_registry_data_is_the_included_cohort_unless_all(filled, registry, capsys):
    import json

    from pathomics_desktop.cli import main
    from pathomics_desktop.registry.service import edit_value

    edit_value(registry, "P1", "neoadjuvant_therapy", "yes")  # now excluded
    counts = {}
    for data in ("registry:", "registry:all"):
        assert main(["analyze", "km", data, "--time", "os_months", "--event", "os_event", "--json",
                     "--project", str(filled.root)]) == 0
        counts[data] = json.loads(capsys.readouterr().out)["groups"][0]["n"]
    assert counts == {"registry:": 11, "registry:all": 12}


def test_scores_written_to_the_registry_are_snapshot_columns_and_refresh_it(filled, registry):
    """The pathomics score columns: present (empty) before any signature is applied, equal to
    the written scores after, on both backends; an unchanged rewrite keeps the snapshot."""
    import json

    import pandas as pd

    from pathomics_desktop.analytics.snapshot import snapshot_paths
    from pathomics_desktop.registry.service import audit_history
    from pathomics_desktop.signature.apply import write_scores

    before = cohort_frame(filled.root)
    assert before["pathomics_os_score"].isna().all() and before["pathomics_os_score"].dtype == float
    assert before["pathomics_rfs_group"].isna().all()
    ids = sorted(before["study_id"])
    scores = pd.DataFrame({"study_id": ids[:5], "score": [0.1, -2.5, 1 / 3, 7e-12, 0.30000000000000004],
                           "risk_group": ["low", "low", "high", "low", "high"]})
    counts = write_scores(registry, scores, set(ids), "os", reason="signature s v1 applied")
    assert counts == {"scored": 5, "cleared": 0, "changed": 5}
    meta = snapshot_paths(filled)[1]
    old_version = json.loads(meta.read_text())["version"]
    frame = cohort_frame(filled.root).set_index("study_id")
    assert json.loads(meta.read_text())["version"] != old_version  # the scores' audit rows refreshed it
    assert frame.loc[ids[:5], "pathomics_os_score"].tolist() == scores["score"].tolist()  # exact floats
    assert frame.loc[ids[:5], "pathomics_os_group"].tolist() == scores["risk_group"].tolist()
    assert frame.loc[ids[5:], "pathomics_os_score"].isna().all()
    rows = audit_history(registry, ids[1])
    assert any(r.reason == "signature s v1 applied" and r.new_value and "-2.5" in r.new_value for r in rows)
    query = CohortQuery.for_project(filled)
    try:
        assert sorted(query.frame([Filter("pathomics_os_group", "=", "high")])["study_id"]) == [ids[2], ids[4]]
    finally:
        query.close()
    # the same scores again: nothing written, the snapshot is kept
    stamp = meta.read_text()
    assert write_scores(registry, scores, set(ids), "os", reason="again")["changed"] == 0
    cohort_frame(filled.root)
    assert meta.read_text() == stamp
    # a later application without patient ids[0] clears its old score
    counts = write_scores(registry, scores.iloc[1:], set(ids), "os", reason="signature s v2 applied")
    assert counts == {"scored": 4, "cleared": 1, "changed": 1}
    assert pd.isna(cohort_frame(filled.root).set_index("study_id").loc[ids[0], "pathomics_os_score"])
