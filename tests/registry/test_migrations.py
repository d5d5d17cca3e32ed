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
