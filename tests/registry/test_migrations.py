"""Schema migrations on a populated database, schema version checks, bad database files."""

from __future__ import annotations

import sqlite3

import pytest
from sqlalchemy import select, text

from pathomics_desktop.errors import UserError
from pathomics_desktop.registry import database
from pathomics_desktop.registry.importer import import_file
from pathomics_desktop.registry.models import Patient
from tests.registry.helpers import patient, table_counts, write_csv


def _state(url):
    engine = database.make_engine(url)
    try:
        return database.schema_state(engine)
    finally:
        engine.dispose()


def test_upgrade_downgrade_upgrade_keeps_the_data(project, registry, tmp_path):
    url = project.database_url
    import_file(registry, write_csv(tmp_path / "p.csv", [patient("P1"), patient("P2", center="B")]))
    with registry.session(reason="note") as s:
        p = s.scalars(select(Patient).where(Patient.study_id == "P1")).one()
        p.notes = "checked against the chart"
    before = table_counts(registry)
    registry.dispose()
    assert _state(url).current == database.head_revision()

    database.downgrade(url, revision="0001", backup_dir=tmp_path / "bk")
    assert _state(url).state == "outdated"
    with pytest.raises(database.SchemaOutdated, match="pathomics db upgrade"):
        database.open_registry(url)

    saved = database.upgrade(url, backup_dir=tmp_path / "bk")
    assert saved is not None and saved.exists() and saved.stat().st_size > 0
    reg = database.open_registry(url)
    try:
        assert table_counts(reg) == before
        with reg.session() as s:
            p = s.scalars(select(Patient).where(Patient.study_id == "P1")).one()
            # children survive the batch-mode table copy of `patients` (foreign keys intact)
            assert p.surgery is not None and p.pathology.t_stage == "T2" and len(p.labs) == 1
            assert p.notes is None  # the column was dropped by the downgrade and re-added
            assert p.version == 1  # 0003 re-adds the record version at 1
    finally:
        reg.dispose()


def test_derived_column_down_and_up_again(project, registry, tmp_path):
    """Migration 0006 down and up: the ``derived`` column goes (custom variables and their
    values stay) and comes back, false for every variable but the four score variables of
    ``signature apply``, which are marked derived also when they were added before 0006. On
    PostgreSQL its policies, trigger and row security on the codebook go and come back with it."""
    import sqlalchemy as sa

    from pathomics_desktop.registry.service import add_variable, edit_value

    url = project.database_url
    import_file(registry, write_csv(tmp_path / "p.csv", [patient("P1")]))
    add_variable(registry, name="ecog", type="integer")
    add_variable(registry, name="risk", type="number", derived=True)
    edit_value(registry, "P1", "ecog", "2")
    edit_value(registry, "P1", "risk", "0.5")
    registry.dispose()

    def inspect_schema():
        engine = database.make_engine(url)
        try:
            with engine.connect() as conn:
                columns = {c["name"] for c in sa.inspect(conn).get_columns("codebook_variables")}
                values = set(conn.execute(text(
                    "SELECT v.name, vv.value FROM variable_values vv JOIN codebook_variables v ON v.id = vv.variable_id")))
                policies = set() if conn.dialect.name == "sqlite" else {r[0] for r in conn.execute(text(
                    "SELECT policyname FROM pg_policies WHERE policyname LIKE '%derived%' UNION ALL "
                    "SELECT tgname FROM pg_trigger WHERE tgname LIKE '%derived%' UNION ALL "
                    "SELECT 'row security' FROM pg_class WHERE relname = 'codebook_variables' AND relrowsecurity"))}
                derived = (dict(conn.execute(text("SELECT name, derived FROM codebook_variables")).all())
                           if "derived" in columns else None)
            return columns, values, policies, derived
        finally:
            engine.dispose()

    pg_objects = set() if registry.dialect == "sqlite" else {
        "codebook_variables_analyst_derived", "variable_values_analyst_derived_insert",
        "variable_values_analyst_derived_update", "variable_values_analyst_derived_delete",
        "variable_values_analysts_derived_only", "row security"}
    columns, values, policies, derived = inspect_schema()
    assert "derived" in columns and policies == pg_objects
    assert derived == {"ecog": False, "risk": True}
    database.downgrade(url, revision="0005")
    columns, values, policies, _ = inspect_schema()
    assert "derived" not in columns and policies == set()
    assert values == {("ecog", "2"), ("risk", "0.5")}
    engine = database.make_engine(url)
    try:  # a score variable written by `signature apply` before 0006
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO codebook_variables (name, label, type, unit, required, identifier) "
                              "VALUES ('pathomics_os_score', 'score', 'number', '', :no, :no)"), {"no": False})
    finally:
        engine.dispose()
    database.upgrade(url)
    columns, values, policies, derived = inspect_schema()
    assert "derived" in columns and policies == pg_objects
    assert derived == {"ecog": False, "risk": False, "pathomics_os_score": True}  # "risk" was only a flag
    assert values == {("ecog", "2"), ("risk", "0.5")}


def test_newer_schema_is_refused(project, registry):
    with registry.engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999_future'"))
    registry.dispose()
    with pytest.raises(database.SchemaTooNew, match="newer than this version"):
        database.open_registry(project.database_url)


def test_audit_trail_is_append_only_in_the_database(registry, tmp_path):
    import_file(registry, write_csv(tmp_path / "p.csv", [patient("P1")]))
    with pytest.raises(Exception, match="append-only"):
        with registry.engine.begin() as conn:
            conn.execute(text("UPDATE audit_events SET user = 'mallory'"
                              if registry.dialect == "sqlite" else 'UPDATE audit_events SET "user" = \'mallory\''))
    with pytest.raises(Exception, match="append-only"):
        with registry.engine.begin() as conn:
            conn.execute(text("DELETE FROM audit_events"))


def test_corrupt_and_foreign_sqlite_files(tmp_path):
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"PK\x03\x04 this is a zip, not a database" * 20)
    with pytest.raises(UserError, match="not an SQLite database"):
        database.open_registry(f"sqlite:///{junk}")
    foreign = tmp_path / "other.sqlite"
    con = sqlite3.connect(foreign)
    con.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY, amount REAL)")
    con.commit()
    con.close()
    with pytest.raises(UserError, match="not a Pathomics registry"):
        database.open_registry(f"sqlite:///{foreign}")
    truncated = tmp_path / "trunc.sqlite"
    good = tmp_path / "good.sqlite"
    database.open_registry(f"sqlite:///{good}", create=True).dispose()
    truncated.write_bytes(good.read_bytes()[:1500])
    with pytest.raises(UserError):
        database.open_registry(f"sqlite:///{truncated}")
    with pytest.raises(UserError, match="not found"):
        database.open_registry(f"sqlite:///{tmp_path / 'missing.sqlite'}")


def test_cli_reports_bad_database_without_traceback(tmp_path, capsys):
    from pathomics_desktop.cli import main
    from pathomics_desktop.registry.service import init_project

    project = init_project(tmp_path / "p")
    (project.root / "registry.sqlite").write_bytes(b"garbage" * 100)
    code = main(["flow", "--project", str(project.root)])
    err = capsys.readouterr().err
    assert code == 2 and "not an SQLite database" in err and "Traceback" not in err


def test_unreachable_postgres_is_a_clear_error():
    with pytest.raises(UserError, match="cannot"):
        database.open_registry("postgresql://nobody@127.0.0.1:1/none")
