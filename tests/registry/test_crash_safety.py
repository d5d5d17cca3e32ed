"""SQLite crash safety: WAL journal, integrity check on open, owner-only file, online backup
and restore, and an import killed with SIGKILL that leaves all or nothing."""

from __future__ import annotations

import os
import signal
import sqlite3
import stat
import subprocess
import sys
import time

import pytest
from sqlalchemy import text

from pathomics_desktop.errors import UserError
from pathomics_desktop.registry import database
from pathomics_desktop.registry.importer import import_file
from pathomics_desktop.registry.service import init_project, open_project_registry
from tests.registry.helpers import patient, table_counts, write_csv


@pytest.fixture
def sqlite_project(tmp_path):
    return init_project(tmp_path / "study", development_center="A")


def test_wal_journal_and_full_sync(sqlite_project):
    registry = open_project_registry(sqlite_project)
    try:
        with registry.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    finally:
        registry.dispose()


def test_registry_file_is_owner_only(sqlite_project):
    path = sqlite_project.root / "registry.sqlite"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    os.chmod(path, 0o644)
    open_project_registry(sqlite_project).dispose()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_damaged_file_is_refused_with_the_way_back(sqlite_project, tmp_path):
    registry = open_project_registry(sqlite_project)
    import_file(registry, write_csv(tmp_path / "p.csv", [patient(f"P{i:03d}") for i in range(300)]))
    registry.dispose()
    path = sqlite_project.root / "registry.sqlite"
    con = sqlite3.connect(path)
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    page_size = con.execute("PRAGMA page_size").fetchone()[0]
    pages = con.execute("PRAGMA page_count").fetchone()[0]
    con.close()
    # overwrite the middle pages (table b-tree pages) with garbage, keeping the header page
    with open(path, "r+b") as fh:
        for page in range(pages // 3, pages // 3 + 3):
            fh.seek(page * page_size)
            fh.write(b"\xde\xad\xbe\xef" * (page_size // 4))
    with pytest.raises(UserError) as caught:
        open_project_registry(sqlite_project)
    message = str(caught.value)
    assert str(path) in message and "pathomics db restore" in message


def test_backup_then_restore_brings_the_old_values_back(sqlite_project, tmp_path, capsys):
    from pathomics_desktop.cli import main

    registry = open_project_registry(sqlite_project)
    import_file(registry, write_csv(tmp_path / "a.csv", [patient("P1", age=60)]))
    registry.dispose()
    assert main(["db", "backup", "--project", str(sqlite_project.root), "--json"]) == 0
    import json

    saved = json.loads(capsys.readouterr().out)["backup"]
    assert stat.S_IMODE(os.stat(saved).st_mode) == 0o600
    registry = open_project_registry(sqlite_project)
    import_file(registry, write_csv(tmp_path / "b.csv", [patient("P1", age=61), patient("P2")]))
    registry.dispose()
    assert main(["db", "restore", saved, "--project", str(sqlite_project.root), "--json"]) == 0
    previous = json.loads(capsys.readouterr().out)["previous_saved_as"]
    registry = open_project_registry(sqlite_project)
    try:
        with registry.engine.connect() as conn:
            ids = [r[0] for r in conn.execute(text("SELECT study_id FROM patients ORDER BY study_id"))]
            ages = [r[0] for r in conn.execute(text("SELECT age FROM patients"))]
    finally:
        registry.dispose()
    assert ids == ["P1"] and ages == [60]
    # the registry replaced by the restore was kept: it has both patients
    con = sqlite3.connect(previous)
    assert con.execute("SELECT COUNT(*) FROM patients").fetchone()[0] == 2
    con.close()


def test_restore_refuses_what_is_not_a_registry_backup(sqlite_project, tmp_path):
    other = tmp_path / "other.sqlite"
    con = sqlite3.connect(other)
    con.execute("CREATE TABLE invoices (id INTEGER)")
    con.commit()
    con.close()
    url = sqlite_project.database_url
    with pytest.raises(UserError, match="not a Pathomics registry backup"):
        database.restore(url, other, tmp_path / "b")
    text_file = tmp_path / "notes.sqlite"
    text_file.write_text("hello")
    with pytest.raises(UserError, match="not a Pathomics registry"):
        database.restore(url, text_file, tmp_path / "b")
    with pytest.raises(UserError, match="not found"):
        database.restore(url, tmp_path / "missing.sqlite", tmp_path / "b")


KILLED_IMPORT = """
import sys
from pathomics_desktop.project import Project
from pathomics_desktop.registry.importer import import_file
from pathomics_desktop.registry.service import open_project_registry
registry = open_project_registry(Project.load(sys.argv[1]))
print("started", flush=True)
import_file(registry, sys.argv[2], development_center="A")
print("finished", flush=True)
"""


@pytest.mark.parametrize("kill_after_s", [0.4, 1.5, 2.6])
def test_import_killed_midway_leaves_all_or_nothing_and_reruns_to_the_same_result(sqlite_project, tmp_path,
                                                                                   kill_after_s):
    rows = [patient(f"K{i:04d}", age=40 + i % 40) for i in range(1500)]
    csv_path = write_csv(tmp_path / "big.csv", rows)
    registry = open_project_registry(sqlite_project)
    try:
        empty = table_counts(registry)
    finally:
        registry.dispose()
    proc = subprocess.Popen([sys.executable, "-c", KILLED_IMPORT, str(sqlite_project.root), str(csv_path)],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "started"
    time.sleep(kill_after_s)  # inside the import (~3 s here: parsing, validating or writing)
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
    proc.wait()
    registry = open_project_registry(sqlite_project)  # passes the integrity check
    try:
        counts = table_counts(registry)
        # all or nothing: a kill before the commit leaves no patient, one after it (the child
        # may still be closing) leaves all of them; never a part
        assert counts["patients"] in (0, 1500)
        if counts["patients"] == 0:
            assert counts == empty  # not one row of any table
        report = import_file(registry, csv_path, development_center="A")
        assert not report.errors
        after = table_counts(registry)
    finally:
        registry.dispose()
    # an uninterrupted import into a fresh project gives the same rows
    fresh = init_project(tmp_path / "fresh", development_center="A")
    reference = open_project_registry(fresh)
    try:
        import_file(reference, csv_path, development_center="A")
        expected = table_counts(reference)
    finally:
        reference.dispose()
    assert after["patients"] == expected["patients"] == 1500
    assert after["variable_values"] == expected["variable_values"]
