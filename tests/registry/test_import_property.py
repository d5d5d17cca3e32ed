"""Property-based: malformed spreadsheets never commit partially (all-or-nothing)."""

from __future__ import annotations

import string

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from pathomics_desktop.registry import records
from pathomics_desktop.registry.importer import import_file
from pathomics_desktop.registry.models import AuditEvent, Patient
from tests.registry.helpers import CANONICAL, patient, table_counts, write_csv

JUNK = st.one_of(st.text(alphabet=string.printable, max_size=12), st.sampled_from(
    ["", "NA", "2020-02-30", "1e999", "-1", "yes", "T9", "N3", "dead", "2099-01-01", "0", "x,y", '"']))


@st.composite
def spreadsheets(draw):
    n = draw(st.integers(min_value=1, max_value=6))
    rows = []
    for i in range(n):
        sid = draw(st.sampled_from(["E1", "E2", f"N{i}", f"N{i}"]))
        row = patient(sid, center=draw(st.sampled_from(["A", "B"])), age=str(50 + i))
        for _ in range(draw(st.integers(min_value=0, max_value=3))):
            row[draw(st.sampled_from(CANONICAL))] = draw(JUNK)
        rows.append(row)
    columns = list(CANONICAL)
    if draw(st.booleans()):
        columns = draw(st.permutations(columns))[: draw(st.integers(min_value=1, max_value=len(columns)))]
    if draw(st.integers(0, 5)) == 0:
        columns = columns + [draw(st.sampled_from(["colour", "study_id", "Age "]))]
    return rows, columns


def _snapshot(registry):
    with registry.session() as s:
        patients = {p.study_id: (p.age, p.center_id) for p in s.scalars(select(Patient))}
        audits = s.scalar(select(AuditEvent.id).order_by(AuditEvent.id.desc()).limit(1))
    return table_counts(registry), patients, audits


@pytest.fixture
def seeded_registry(registry, tmp_path):
    report = import_file(registry, write_csv(tmp_path / "seed.csv", [patient("E1"), patient("E2", center="B")]))
    assert report.committed
    return registry


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sheet=spreadsheets())
def test_malformed_spreadsheets_never_commit_partially(seeded_registry, tmp_path, sheet):
    rows, columns = sheet
    path = write_csv(tmp_path / "fuzz.csv", rows, columns)
    before = _snapshot(seeded_registry)
    report = import_file(seeded_registry, path)
    after = _snapshot(seeded_registry)
    if report.errors:
        assert not report.committed
        assert after == before
    else:
        assert report.committed
        ids = {r["study_id"] for r in rows}
        assert ids <= set(after[1])


@pytest.mark.parametrize("where", ["update", "bulk-insert"])
def test_a_crash_half_way_leaves_nothing_written(seeded_registry, tmp_path, monkeypatch, where):
    from pathomics_desktop.registry import audit

    rows = [patient(f"C{i}") for i in range(10)] + [patient("E1", age="77", t_stage="T3")]
    calls = {"n": 0}
    if where == "update":
        original = records.set_value
        target = "pathomics_desktop.registry.importer.set_value"
        fail_at = 2
    else:  # after the patients table and two child tables were written
        original = audit.write_bulk_inserts
        target = "pathomics_desktop.registry.audit.write_bulk_inserts"
        fail_at = 3

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == fail_at:
            raise RuntimeError("disk on fire")
        return original(*args, **kwargs)

    monkeypatch.setattr(target, flaky)
    before = _snapshot(seeded_registry)
    with pytest.raises(RuntimeError, match="disk on fire"):
        import_file(seeded_registry, write_csv(tmp_path / "crash.csv", rows))
    assert calls["n"] == fail_at
    assert _snapshot(seeded_registry) == before
