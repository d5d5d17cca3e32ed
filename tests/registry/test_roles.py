"""Accounts, roles and center scoping enforced by PostgreSQL itself (migration 0005).

One registry database per module on the real throwaway PostgreSQL 15 server: centers A and B
(and C, without patients), patients A1, A2, B1, B2 (A1 and B1 with a row in every clinical
table, identifiers, values of a plain, an identifier and a derived variable, a slide), jobs,
and the audit rows of all that. Logins are created with ``pathomics users add`` and then connect
with plain psycopg, as ``psql`` would: the ROLE MATRIX compares what the server lets each
login select, insert, update and delete in every table (rows of center A and of center B
separately) with the expected matrix written below as data.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from pathomics_desktop.cli import main
from pathomics_desktop.errors import UserError
from pathomics_desktop.registry import permissions, users
from pathomics_desktop.registry.database import open_registry
from pathomics_desktop.registry.models import (
    CodebookVariable, Comorbidity, FollowUpVisit, Job, LabResult, Pathology, Patient,
    PatientIdentifier, Slide, Surgery, Treatment, VariableValue, Center,
)

ROLES = ("admin", "coordinator", "analyst", "clinician")
PASSWORD = "it's; DROP ROLE postgres; --"  # quoted as a literal, never pasted into SQL

# -- the expected matrix --------------------------------------------------------------------
# select: which rows the login sees: "all", "A" (center A's), "A+unlinked" (center A's and
#   rows of no patient), "deid" (no identifier data), "own" (its own rows), "none" (no row:
#   row security has no policy for the role), "denied" (no privilege).
# insert/update/delete: outcome on (a row of center A, a row of center B) for patient
#   tables, (any row,) otherwise: "ok" (done), "none" (0 rows: invisible), "denied" (refused).
FULL = dict(select="all", insert=("ok", "ok"), update=("ok", "ok"), delete=("ok", "ok"))
SCOPED = dict(select="A", insert=("ok", "denied"), update=("ok", "none"), delete=("ok", "none"))
READ = dict(select="all", insert=("denied",) * 2, update=("denied",) * 2, delete=("denied",) * 2)
NO_ROWS = dict(select="none", insert=("denied",) * 2, update=("denied",) * 2, delete=("denied",) * 2)
READ_DEID = dict(READ, select="deid")

PATIENT_TABLES = ("patients", "surgeries", "pathology", "lab_results", "comorbidities",
                  "treatments", "followup_visits", "variable_values", "slides", "patient_identifiers")
EXPECTED_PATIENT_TABLES = {
    table: {"admin": FULL, "coordinator": SCOPED,
            "analyst": NO_ROWS if table == "patient_identifiers" else READ_DEID if table == "variable_values" else READ,
            "clinician": NO_ROWS if table == "patient_identifiers" else READ_DEID if table == "variable_values" else READ}
    for table in PATIENT_TABLES
}
# the values of derived variables (migration 0006): analysts' jobs write them for every patient
EXPECTED_PATIENT_TABLES["derived_values"] = {"admin": FULL, "coordinator": SCOPED, "analyst": FULL,
                                             "clinician": READ}
DERIVED = "(SELECT id FROM codebook_variables WHERE derived)"
#: matrix rows that are a part of a table: row -> (table, condition on its rows); the others
#: are a whole table of the same name
PARTS = {"variable_values": ("variable_values", f"variable_id NOT IN {DERIVED}"),  # curated values
         "derived_values": ("variable_values", f"variable_id IN {DERIVED}"),
         "derived_variables": ("codebook_variables", "derived")}
MATRIX_PATIENT_ROWS = (*PATIENT_TABLES, "derived_values")


def _part(row: str) -> tuple[str, str]:
    return PARTS.get(row, (row, "true"))


def _row(select, insert, update, delete):
    return dict(select=select, insert=(insert,), update=(update,), delete=(delete,))


SHARED_READ = _row("all", "denied", "denied", "denied")
EXPECTED_OTHER_TABLES = {
    "centers": {"admin": _row("all", "ok", "ok", "ok"), "coordinator": SHARED_READ,
                "analyst": SHARED_READ, "clinician": SHARED_READ},
    "codebook_variables": {"admin": _row("all", "ok", "ok", "ok"), "coordinator": SHARED_READ,
                           "analyst": SHARED_READ, "clinician": SHARED_READ},
    # insert: a new derived variable; update: mark a curated variable derived; delete: a derived one
    "derived_variables": {"admin": _row("all", "ok", "ok", "ok"), "coordinator": SHARED_READ,
                          "analyst": _row("all", "ok", "denied", "denied"), "clinician": SHARED_READ},
    "jobs": {"admin": _row("all", "ok", "ok", "ok"), "coordinator": _row("all", "ok", "ok", "denied"),
             "analyst": _row("all", "ok", "ok", "denied"), "clinician": SHARED_READ},
    "audit_events": {"admin": _row("all", "ok", "denied", "denied"),
                     "coordinator": _row("A+unlinked", "ok", "denied", "denied"),
                     "analyst": _row("deid", "ok", "denied", "denied"),
                     "clinician": _row("deid", "ok", "denied", "denied")},
    "app_users": {"admin": _row("all", "ok", "ok", "ok"), **{r: _row("own", "denied", "denied", "denied")
                                                           for r in ROLES[1:]}},
    "user_centers": {"admin": _row("all", "ok", "ok", "ok"), **{r: _row("own", "denied", "denied", "denied")
                                                              for r in ROLES[1:]}},
    "alembic_version": {r: SHARED_READ for r in ROLES},
}
EXPECTED = {**EXPECTED_PATIENT_TABLES, **EXPECTED_OTHER_TABLES}

# -- statements tried by every login (each in a transaction that is rolled back) ------------
CHILD_INSERT = {
    "surgeries": "INSERT INTO surgeries (patient_id) VALUES (%(pid)s)",
    "pathology": "INSERT INTO pathology (patient_id) VALUES (%(pid)s)",
    "comorbidities": "INSERT INTO comorbidities (patient_id) VALUES (%(pid)s)",
    "treatments": "INSERT INTO treatments (patient_id) VALUES (%(pid)s)",
    "lab_results": "INSERT INTO lab_results (patient_id, test, unit, preoperative) "
                   "VALUES (%(pid)s, 'ca19_9', 'U/mL', true)",
    "followup_visits": "INSERT INTO followup_visits (patient_id, visit_date, source) "
                       "VALUES (%(pid)s, '2021-01-01', 'manual')",
    "variable_values": "INSERT INTO variable_values (patient_id, variable_id, value) "
                       "VALUES (%(pid)s, %(plain_var)s, '3')",
    "derived_values": "INSERT INTO variable_values (patient_id, variable_id, value) "
                      "VALUES (%(pid)s, %(derived_var)s, '0.7')",
    "slides": "INSERT INTO slides (patient_id, path, qc_status, synthetic, created_at) "
              "VALUES (%(pid)s, '/slides/new.tif', 'pending', true, now())",
    "patient_identifiers": "INSERT INTO patient_identifiers (patient_id, name) VALUES (%(pid)s, 'SYNTHETIC New')",
    "patients": "INSERT INTO patients (study_id, center_id, complete, locked, synthetic, created_at, "
                "updated_at) VALUES ('SYN-NEW', %(cid)s, false, false, true, now(), now())",
}
OTHER_STATEMENTS = {  # table: (insert, update, delete)
    "centers": ("INSERT INTO centers (code, name, role) VALUES ('NEW', 'New', 'external')",
                "UPDATE centers SET name = name",
                "DELETE FROM centers WHERE code = 'C'"),
    "codebook_variables": ("INSERT INTO codebook_variables (name, label, type, unit, required, identifier) "
                           "VALUES ('new_var', '', 'text', '', false, false)",
                           "UPDATE codebook_variables SET label = label",
                           "DELETE FROM codebook_variables WHERE name = 'spare_var'"),
    "derived_variables": ("INSERT INTO codebook_variables (name, label, type, unit, required, identifier, derived) "
                          "VALUES ('new_score', '', 'number', '', false, false, true)",
                          "UPDATE codebook_variables SET derived = true WHERE name = 'spare_var'",
                          "DELETE FROM codebook_variables WHERE derived"),
    "jobs": ("INSERT INTO jobs (type, status, progress, message, log, cancel_requested, \"user\", "
             "created_at) VALUES ('tiling', 'queued', 0, '', '', false, 'x', now())",
             "UPDATE jobs SET progress = progress",
             "DELETE FROM jobs"),
    "audit_events": ("INSERT INTO audit_events (at, \"user\", action, table_name, record_id) "
                     "VALUES (now(), 'x', 'insert', 'jobs', '1')",
                     "UPDATE audit_events SET reason = 'rewritten'",
                     "DELETE FROM audit_events"),
    "app_users": ("INSERT INTO app_users (login, role) VALUES ('ghost', 'analyst')",
                  "UPDATE app_users SET role = role",
                  "DELETE FROM app_users WHERE login = %(me)s"),
    "user_centers": ("INSERT INTO user_centers (login, center_id) VALUES (%(me)s, %(center_c)s)",
                     "UPDATE user_centers SET center_id = center_id",
                     "DELETE FROM user_centers"),
    "alembic_version": ("INSERT INTO alembic_version VALUES ('x')",
                        "UPDATE alembic_version SET version_num = version_num",
                        "DELETE FROM alembic_version"),
}
ROW_KEY = {"patients": "t.id", "patient_identifiers": "t.patient_id", "app_users": "t.login",
           "user_centers": "t.login || '/' || t.center_id", "alembic_version": "t.version_num"}


@dataclass
class Site:
    url: str
    root: Path
    server: object
    logins: dict[str, str]          # role -> login
    ids: dict[str, int]             # "A1", "B2", "center_A", "plain_var", ...

    def connect(self, login: str, password: str = PASSWORD) -> psycopg.Connection:
        return psycopg.connect(host="127.0.0.1", port=self.server.port, dbname=self.url.rsplit("/", 1)[1],
                               user=login, password=password, autocommit=True)

    def superuser(self) -> psycopg.Connection:
        return psycopg.connect(self.url, autocommit=True)

    def login_url(self, login: str) -> str:
        return f"postgresql://{login}:pw@127.0.0.1:{self.server.port}/{self.url.rsplit('/', 1)[1]}"


def _populate(url: str) -> dict[str, int]:
    registry = open_registry(url)
    try:
        with registry.session(reason="SYNTHETIC role-matrix cohort") as s:
            centers = {"A": s.query(Center).filter_by(code="A").one_or_none()
                       or Center(code="A", name="A", role="development"),
                       "B": Center(code="B", name="B", role="external"),
                       "C": Center(code="C", name="C", role="external")}
            s.add_all(centers.values())
            plain = CodebookVariable(name="ecog", label="ECOG", type="integer")
            secret = CodebookVariable(name="initials", label="Initials", type="text", identifier=True)
            spare = CodebookVariable(name="spare_var", label="", type="text")
            derived = CodebookVariable(name="risk_score", label="Risk score", type="number", derived=True)
            s.add_all([plain, secret, spare, derived])
            patients = {}
            for code in ("A", "B"):
                for n in (1, 2):
                    p = Patient(study_id=f"SYN-{code}{n}", center=centers[code], synthetic=True, age=60 + n)
                    patients[f"{code}{n}"] = p
                    s.add(p)
                full = patients[f"{code}1"]
                full.identifier = PatientIdentifier(name=f"SYNTHETIC Person {code}", mrn=f"MRN-{code}",
                                                    birth_date=dt.date(1950, 1, 1 if code == "A" else 2))
                full.surgery = Surgery(surgery_type="PD")
                full.pathology = Pathology(t_stage="T2")
                full.comorbidity = Comorbidity(diabetes=True)
                full.treatment = Treatment(adjuvant_chemotherapy=True)
                full.labs = [LabResult(test="ca19_9", value=37.0, unit="U/mL", preoperative=True)]
                full.followups = [FollowUpVisit(visit_date=dt.date(2020, 6, 1), vital_status="alive",
                                                source="manual")]
                full.values = [VariableValue(variable=plain, value="1"),
                               VariableValue(variable=secret, value=f"SYNTHETIC-{code}.P."),
                               VariableValue(variable=derived, value="0.5")]
                s.add(Slide(patient=full, path=f"/slides/{code}1.tif", synthetic=True))
            s.add(Slide(patient=None, path="/slides/unassigned.tif", synthetic=True))
            s.add(Job(type="tiling", status="done", user="tester"))
            s.flush()
            ids = {k: p.id for k, p in patients.items()}
            ids.update({f"center_{k}": c.id for k, c in centers.items()}, plain_var=plain.id,
                       derived_var=derived.id)
        return ids
    finally:
        registry.dispose()


@pytest.fixture(scope="module")
def site(postgres_server, tmp_path_factory):
    url = postgres_server.create_database()
    root = tmp_path_factory.mktemp("roles") / "study"
    assert main(["init", str(root), "--database-url", url, "--development-center", "A"]) == 0
    ids = _populate(url)
    tag = uuid.uuid4().hex[:6]
    logins = {role: f"{role}_{tag}" for role in ROLES}
    for role, login in logins.items():
        centers = ["--center", "A"] if role == "coordinator" else []
        assert main(["users", "add", login, "--role", role, "--password", PASSWORD, *centers,
                     "--project", str(root)]) == 0
    yield Site(url=url, root=root, server=postgres_server, logins=logins, ids=ids)
    postgres_server.drop_database(url)


# -- observing what the server allows --------------------------------------------------------
def _attempt(conn: psycopg.Connection, statement: str, params: dict) -> str:
    try:
        with conn.transaction(force_rollback=True):
            return "ok" if conn.execute(statement, params).rowcount > 0 else "none"
    except psycopg.errors.InsufficientPrivilege:  # no GRANT, or a row-security check refused it
        return "denied"


def _visible(conn: psycopg.Connection, row: str) -> set[str] | None:
    try:
        with conn.transaction(force_rollback=True):
            key = ROW_KEY.get(row, "t.id")
            table, where = _part(row)
            return {str(r[0]) for r in conn.execute(f"SELECT {key} FROM {table} t WHERE {where}")}
    except psycopg.errors.InsufficientPrivilege:
        return None


def _row_sets(site: Site, table: str, login: str) -> dict[str, set[str]]:
    """The rows of ``table`` in each named category, worked out as the superuser with plain
    joins (not through the policies)."""
    with site.superuser() as su:
        key = ROW_KEY.get(table, "t.id")
        table, where = _part(table)
        if table == "patients":
            rows = su.execute("SELECT t.id, c.code, null, null FROM patients t JOIN centers c ON c.id = t.center_id")
        elif table in PATIENT_TABLES:
            flag = ("(SELECT v.identifier FROM codebook_variables v WHERE v.id = t.variable_id)"
                    if table == "variable_values" else "false")
            rows = su.execute(f"SELECT {key}, c.code, {flag}, null FROM {table} t "
                              "LEFT JOIN patients p ON p.id = t.patient_id LEFT JOIN centers c ON c.id = p.center_id "
                              f"WHERE {where}")
        elif table == "audit_events":
            rows = su.execute("SELECT t.id, c.code, t.table_name IN ('patient_identifiers', 'variable_values'), "
                              "t.patient_id IS NULL FROM audit_events t LEFT JOIN patients p ON p.id = t.patient_id "
                              "LEFT JOIN centers c ON c.id = p.center_id")
        elif table in ("app_users", "user_centers"):
            rows = su.execute(f"SELECT {key}, null, null, t.login = %s FROM {table} t", (login,))
        else:
            rows = su.execute(f"SELECT {key}, null, null, null FROM {table} t WHERE {where}")
        rows = [(str(k), code, bool(ident), bool(extra)) for k, code, ident, extra in rows]
    sets = {"all": {k for k, *_ in rows},
            "A": {k for k, code, _, _ in rows if code == "A"},
            "A+unlinked": {k for k, code, _, unlinked in rows if code == "A" or unlinked},
            "deid": {k for k, _, ident, _ in rows if not ident},
            "own": {k for k, _, _, own in rows if own},
            "none": set()}
    return sets


def _select_label(site: Site, table: str, login: str, visible: set[str] | None, expected: str) -> str:
    if visible is None:
        return "denied"
    sets = _row_sets(site, table, login)
    if visible == sets[expected]:
        return expected  # the expected category, row for row
    for name in ("all", "A", "A+unlinked", "deid", "own", "none"):
        if visible == sets[name]:
            return name
    return f"other rows: {sorted(visible)}"


def _observe(site: Site, role: str) -> dict[str, dict]:
    login = site.logins[role]
    ids = site.ids
    observed: dict[str, dict] = {}
    with site.connect(login) as conn:
        for table, expected in EXPECTED.items():
            row = {"select": _select_label(site, table, login, _visible(conn, table), expected[role]["select"])}
            if table in MATRIX_PATIENT_ROWS:
                real, where = _part(table)
                col = "id" if real == "patients" else "patient_id"
                touch = {"patients": "notes = notes", "variable_values": "value = value"}.get(
                    real, "patient_id = patient_id")
                row["insert"] = tuple(_attempt(conn, CHILD_INSERT[table], dict(
                    pid=ids[f"{c}2"], cid=ids[f"center_{c}"], plain_var=ids["plain_var"],
                    derived_var=ids["derived_var"])) for c in "AB")
                row["update"] = tuple(_attempt(conn, f"UPDATE {real} SET {touch} WHERE {col} = %(pid)s AND {where}",
                                               dict(pid=ids[f"{c}1"])) for c in "AB")
                row["delete"] = tuple(_attempt(conn, f"DELETE FROM {real} WHERE {col} = %(pid)s AND {where}",
                                               dict(pid=ids[f"{c}1"])) for c in "AB")
            else:
                params = dict(me=login, center_c=ids["center_C"])
                for verb, statement in zip(("insert", "update", "delete"), OTHER_STATEMENTS[table]):
                    row[verb] = (_attempt(conn, statement, params),)
            observed[table] = row
    return observed


@pytest.mark.parametrize("role", ROLES)
def test_role_matrix_is_enforced_by_the_server(site, role):
    observed = _observe(site, role)
    expected = {table: rows[role] for table, rows in EXPECTED.items()}
    assert observed == expected


@pytest.mark.parametrize("role", ROLES)
def test_identifier_columns(site, role):
    """Names, record numbers and birth dates: admins all, coordinators their center's only,
    analysts and clinicians none (not the table, not the identifier variable, not the audit)."""
    expected = {"admin": {"A", "B"}, "coordinator": {"A"}, "analyst": set(), "clinician": set()}[role]
    truth = {"name": {"A": "SYNTHETIC Person A", "B": "SYNTHETIC Person B"},
             "mrn": {"A": "MRN-A", "B": "MRN-B"},
             "birth_date": {"A": dt.date(1950, 1, 1), "B": dt.date(1950, 1, 2)}}
    with site.connect(site.logins[role]) as conn:
        for column, values in truth.items():
            seen = {r[0] for r in conn.execute(f"SELECT {column} FROM patient_identifiers")}
            assert seen == {values[c] for c in expected}, column
        initials = {r[0] for r in conn.execute(
            "SELECT value FROM variable_values WHERE variable_id = "
            "(SELECT id FROM codebook_variables WHERE name = 'initials')")}
        assert initials == {f"SYNTHETIC-{c}.P." for c in expected}
        leaked = {r[0] for r in conn.execute(
            "SELECT new_value FROM audit_events WHERE new_value LIKE %s", ("%SYNTHETIC Person%",))}
        assert {json.loads(v)["name"] for v in leaked} == {f"SYNTHETIC Person {c}" for c in expected}


def test_nobody_can_rewrite_the_audit_trail(site):
    """Every application role: UPDATE and DELETE refused by privileges; the superuser (who
    bypasses privileges) is stopped by the append-only trigger of migration 0002."""
    for role in ROLES:
        with site.connect(site.logins[role]) as conn:
            for statement in ("UPDATE audit_events SET reason = 'x'", "DELETE FROM audit_events",
                              "TRUNCATE audit_events"):
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    conn.execute(statement)
    with site.superuser() as su, pytest.raises(psycopg.errors.RaiseException, match="append-only"):
        su.execute("UPDATE audit_events SET reason = 'x'")


SECURED_OTHER_TABLES = ["audit_events", "app_users", "user_centers", "codebook_variables"]


def test_app_logins_do_not_own_tables_and_row_security_is_forced(site):
    with site.superuser() as su:
        owners = {r[0] for r in su.execute("SELECT tableowner FROM pg_tables WHERE schemaname = 'public'")}
        forced = {r[0]: (r[1], r[2]) for r in su.execute(
            "SELECT relname, relrowsecurity, relforcerowsecurity FROM pg_class WHERE relname = ANY(%s)",
            (list(PATIENT_TABLES) + SECURED_OTHER_TABLES,))}
    assert owners == {"postgres"}
    assert not owners & set(site.logins.values())
    assert forced == {t: (True, True) for t in list(PATIENT_TABLES) + SECURED_OTHER_TABLES}


def test_coordinator_through_the_application(site):
    """The same scoping through the registry services: a coordinator edits its own center's
    patient (audited under its login, stamped by the server), and center B's patient does
    not exist for it; an analyst loads a patient's record without its identifiers."""
    from pathomics_desktop.registry.service import edit_value, get_patient

    login = site.logins["coordinator"]
    registry = open_registry(site.login_url(login))
    try:
        assert users.current_role_of(registry) == (login, "coordinator", ["A"])
        assert users.user_label_text("someone-else", registry) == f"User: {login} (coordinator: A)"
        assert edit_value(registry, "SYN-A2", "age", "70", user="someone-else") == (62, 70)
        with pytest.raises(UserError, match="SYN-B2"):
            edit_value(registry, "SYN-B2", "age", "70")
    finally:
        registry.dispose()
    analyst = open_registry(site.login_url(site.logins["analyst"]))
    try:
        assert users.user_label_text("x", analyst) == f"User: {site.logins['analyst']} (analyst)"
        # the session turns the server's refusal into a UserError that says so (no traceback)
        with pytest.raises(UserError, match=r"the server refused this to your role \(permission denied for table "
                                            r"patients\)"):
            edit_value(analyst, "SYN-B2", "age", "70")
        assert users.refused_by_server(ValueError("x")) is None
        with analyst.session() as s:  # the shared patient query: clinical rows, no identifiers
            patient = get_patient(s, "SYN-B1")
            assert (patient.identifier, patient.surgery.surgery_type) == (None, "PD")
            assert {v.value for v in patient.values} == {"1", "0.5"}  # ecog and risk_score
    finally:
        analyst.dispose()
    with site.superuser() as su:
        rows = su.execute("SELECT a.\"user\", a.old_value, a.new_value FROM audit_events a "
                          "JOIN patients p ON p.id = a.patient_id WHERE p.study_id = 'SYN-A2' "
                          "AND a.field = 'age'").fetchall()
        b_age = su.execute("SELECT age FROM patients WHERE study_id = 'SYN-B2'").fetchone()[0]
    assert rows == [(login, "62", "70")]
    assert b_age == 62


@pytest.mark.parametrize("role", ["analyst", "clinician"])
def test_jobs_of_analysts_record_slide_qc_only(site, role):
    """Tiling (an analyst's job) writes a slide's automatic QC and stain vectors, and the
    audit hook touches the patient row; nothing else, never on an excluded slide. A
    clinician can do none of it."""
    allowed = role == "analyst"
    ok = "ok" if allowed else "denied"
    with site.superuser() as su:
        excluded = su.execute("INSERT INTO slides (patient_id, path, qc_status, synthetic, created_at) "
                              "VALUES (%s, '/slides/excluded.tif', 'excluded', true, now()) RETURNING id",
                              (site.ids["B1"],)).fetchone()[0]
    try:
        with site.connect(site.logins[role]) as conn:
            a1 = dict(pid=site.ids["A1"], excluded=excluded)
            attempts = {
                "qc": _attempt(conn, "UPDATE slides SET qc_status = 'failed', qc_reason = 'blurred', "
                                     "stain_vectors = '[[1, 0]]' WHERE patient_id = %(pid)s", a1),
                "exclude": _attempt(conn, "UPDATE slides SET qc_status = 'excluded' WHERE patient_id = %(pid)s", a1),
                "excluded slide": _attempt(conn, "UPDATE slides SET qc_status = 'ok' WHERE id = %(excluded)s", a1),
                "path": _attempt(conn, "UPDATE slides SET path = '/elsewhere.tif' WHERE patient_id = %(pid)s", a1),
                "touch": _attempt(conn, "UPDATE patients SET updated_at = now(), version = version + 1 "
                                        "WHERE id = %(pid)s", a1),
                "age": _attempt(conn, "UPDATE patients SET age = 1 WHERE id = %(pid)s", a1),
            }
    finally:
        with site.superuser() as su:
            su.execute("DELETE FROM slides WHERE id = %s", (excluded,))
    assert attempts == {"qc": ok, "exclude": "denied", "excluded slide": "none" if allowed else "denied",
                        "path": "denied", "touch": ok, "age": "denied"}


def _audit_since(site: Site, after: int) -> list[tuple]:
    with site.superuser() as su:
        return su.execute("SELECT \"user\", table_name, action, field, old_value, new_value, reason "
                          "FROM audit_events WHERE id > %s ORDER BY id", (after,)).fetchall()


def _last_audit_id(site: Site) -> int:
    with site.superuser() as su:
        return su.execute("SELECT coalesce(max(id), 0) FROM audit_events").fetchone()[0]


def test_analyst_writes_signature_scores_through_the_application(site):
    """``signature apply``'s registry writes (the real ``ensure_score_variables`` and
    ``write_scores``) as an analyst login: the four derived variables are added, scores are
    written, changed and cleared, and every change is audited under the analyst's login
    (stamped by the server, whatever user the application passes)."""
    from collections import Counter

    from pathomics_desktop.signature.apply import ALL_SCORE_COLUMNS, ensure_score_variables, write_scores

    login = site.logins["analyst"]
    before = _last_audit_id(site)
    registry = open_registry(site.login_url(login))
    try:
        ensure_score_variables(registry)
        ensure_score_variables(registry)  # present now: nothing added twice
        scope = {"SYN-A1", "SYN-B2"}
        first = write_scores(registry, {"study_id": ["SYN-A1", "SYN-B2"], "score": [0.25, -1.5],
                                        "risk_group": ["high", "low"]}, scope, "os",
                             reason="SYNTHETIC sig v1", user="someone-else")
        # v2: SYN-A1's score changes (its group does not), SYN-B2 has no features: cleared
        second = write_scores(registry, {"study_id": ["SYN-A1"], "score": [2.0], "risk_group": ["high"]},
                              scope, "os", reason="SYNTHETIC sig v2")
        with site.superuser() as su:
            derived = dict(su.execute("SELECT name, derived FROM codebook_variables WHERE name = ANY(%s)",
                                      (ALL_SCORE_COLUMNS,)).fetchall())
            stored = set(su.execute(
                "SELECT p.study_id, v.name, vv.value FROM variable_values vv JOIN codebook_variables v "
                "ON v.id = vv.variable_id JOIN patients p ON p.id = vv.patient_id WHERE v.name = ANY(%s)",
                (ALL_SCORE_COLUMNS,)).fetchall())
        audit = _audit_since(site, before)
    finally:
        registry.dispose()
        with site.superuser() as su:  # leave the module's registry as the fixture made it
            su.execute("DELETE FROM codebook_variables WHERE name = ANY(%s)", (ALL_SCORE_COLUMNS,))
    assert first == {"scored": 2, "cleared": 0, "changed": 2}
    assert second == {"scored": 1, "cleared": 1, "changed": 2}
    assert derived == {name: True for name in ALL_SCORE_COLUMNS}
    assert stored == {("SYN-A1", "pathomics_os_score", "2.0"), ("SYN-A1", "pathomics_os_group", "high")}
    assert {row[0] for row in audit} == {login}
    assert Counter(row[1:3] for row in audit) == {("codebook_variables", "insert"): 4,
                                                   ("variable_values", "insert"): 4,
                                                   ("variable_values", "update"): 1,
                                                   ("variable_values", "delete"): 2}
    assert [row[3:] for row in audit if row[2] == "update"] == [("value", "0.25", "2.0", "SYNTHETIC sig v2")]
    assert {row[6] for row in audit if row[1] == "variable_values"} == {"SYNTHETIC sig v1", "SYNTHETIC sig v2"}


def _flip_derived(registry, name: str) -> None:
    """Mark the codebook variable ``name`` derived through the ORM (audited session)."""
    from sqlalchemy import select

    with registry.session(reason="try to open a curated variable to analysts") as s:
        s.scalars(select(CodebookVariable).where(CodebookVariable.name == name)).one().derived = True


def test_analysts_and_coordinators_cannot_touch_curated_variables(site):
    """The analyst's connection that writes scores cannot add a curated (or a required, or an
    identifier) variable, write, change or clear a curated value, or mark a curated variable
    derived; a coordinator cannot add a derived variable or mark one. Each is a UserError
    that says the server refused it, and nothing is written, not even an audit row."""
    from pathomics_desktop.registry.service import add_variable, edit_value

    refused = r"the server refused this to your role \({}"
    row_security = refused.format(r'new row violates row-level security policy for table "{}"')
    before = _last_audit_id(site)
    analyst = open_registry(site.login_url(site.logins["analyst"]))
    try:
        for extra in ({}, {"derived": True, "required": True}, {"derived": True, "identifier": True}):
            with pytest.raises(UserError, match=row_security.format("codebook_variables")):
                add_variable(analyst, name="analyst_var", type="text", **extra)
        with pytest.raises(UserError, match=row_security.format("variable_values")):
            edit_value(analyst, "SYN-A2", "ecog", "2")  # a new curated value
        with pytest.raises(UserError, match=row_security.format("variable_values")):
            edit_value(analyst, "SYN-A1", "ecog", "3")  # a changed one
        with pytest.raises(UserError, match=refused.format("permission denied: analysts delete values of "
                                                           "derived variables only")):
            edit_value(analyst, "SYN-A1", "ecog", "")  # a cleared one
        with pytest.raises(UserError, match=refused.format("permission denied for table codebook_variables")):
            _flip_derived(analyst, "ecog")
    finally:
        analyst.dispose()
    coordinator = open_registry(site.login_url(site.logins["coordinator"]))
    try:
        with pytest.raises(UserError, match=refused.format("permission denied for table codebook_variables")):
            _flip_derived(coordinator, "spare_var")
        with pytest.raises(UserError, match=refused.format("permission denied for table codebook_variables")):
            add_variable(coordinator, name="coordinator_score", type="number", derived=True)
    finally:
        coordinator.dispose()
    with site.superuser() as su:
        variables = dict(su.execute("SELECT name, derived FROM codebook_variables").fetchall())
        ecog = set(su.execute("SELECT p.study_id, vv.value FROM variable_values vv JOIN patients p "
                              "ON p.id = vv.patient_id WHERE vv.variable_id = %s", (site.ids["plain_var"],)))
    assert variables == {"ecog": False, "initials": False, "spare_var": False, "risk_score": True}
    assert ecog == {("SYN-A1", "1"), ("SYN-B1", "1")}
    assert _audit_since(site, before) == []


def test_permissions_table_agrees_with_the_server(site):
    """``permissions.can`` (what the GUI greys out) against the observed matrix."""
    for role in ROLES:
        observed = _observe(site, role)
        server = {
            "view_identifiers": observed["patient_identifiers"]["select"] not in ("denied", "none"),
            "edit_patients": observed["patients"]["update"][0] == "ok",
            "import": observed["patients"]["insert"][0] == "ok",
            # a job (signature apply) writes derived values: whoever may run jobs may write them
            "run_jobs": observed["jobs"]["insert"][0] == "ok" and observed["derived_values"]["insert"][0] == "ok",
            "edit_codebook": observed["codebook_variables"]["insert"][0] == "ok",
            "edit_centers": observed["centers"]["insert"][0] == "ok",
            "manage_users": observed["app_users"]["insert"][0] == "ok",
            "view_data": observed["patients"]["select"] != "denied",
        }
        assert {action: permissions.can(role, action) for action in server} == server, role


def test_users_list_grant_disable(site, capsys):
    root = str(site.root)
    login = f"coordx_{uuid.uuid4().hex[:6]}"
    admin_url = site.login_url(site.logins["admin"])  # an application admin, not the owner
    assert main(["users", "add", login, "--role", "coordinator", "--center", "A", "--password", "pw",
                 "--admin-url", admin_url, "--project", root]) == 0
    assert main(["users", "grant", login, "--center", "B", "--admin-url", admin_url, "--project", root]) == 0
    capsys.readouterr()
    assert main(["users", "list", "--json", "--project", root]) == 0
    listed = {u["login"]: u for u in json.loads(capsys.readouterr().out)}
    assert listed[login] == {"login": login, "role": "coordinator", "disabled": False, "centers": ["A", "B"]}
    assert {site.logins[r]: listed[site.logins[r]]["role"] for r in ROLES} == {v: k for k, v in site.logins.items()}
    with site.connect(login, "pw") as conn:
        seen = {r[0] for r in conn.execute("SELECT study_id FROM patients")}
    assert seen == {"SYN-A1", "SYN-A2", "SYN-B1", "SYN-B2"}

    assert main(["users", "disable", login, "--project", root]) == 0
    with pytest.raises(psycopg.OperationalError, match="not permitted to log in"):
        site.connect(login, "pw")
    capsys.readouterr()
    assert main(["users", "list", "--project", root]) == 0
    line = next(ln for ln in capsys.readouterr().out.splitlines() if ln.startswith(login))
    assert line.split()[1:3] == ["coordinator", "disabled"]
    assert main(["users", "enable", login, "--project", root]) == 0
    site.connect(login, "pw").close()


def test_passwords_are_literals_and_bad_requests_are_clear(site, capsys):
    with site.superuser() as su:
        stored = su.execute("SELECT rolpassword FROM pg_authid WHERE rolname = %s",
                            (site.logins["analyst"],)).fetchone()[0]
        assert su.execute("SELECT count(*) FROM pg_roles WHERE rolname = 'postgres'").fetchone()[0] == 1
    assert stored.startswith("SCRAM-SHA-256$")  # hashed by the server, not part of the statement
    root = str(site.root)
    cases = [
        (["users", "add", "x'y", "--role", "analyst", "--password", "p"], "not a valid user name"),
        (["users", "add", "nobody1", "--role", "coordinator", "--center", "Z", "--password", "p"],
         "unknown center Z"),
        (["users", "add", "nobody2", "--role", "analyst", "--center", "A", "--password", "p"],
         "applies to coordinators"),
        (["users", "add", "postgres", "--role", "admin", "--password", "p"], "superuser"),
        (["users", "add", site.logins["analyst"], "--role", "analyst", "--password", "p"], "exists already"),
        (["users", "grant", "nobody3", "--center", "A"], "no user 'nobody3'"),
        (["users", "add", "nobody4", "--role", "analyst", "--password", "p",
          "--admin-url", site.login_url(site.logins["analyst"])], "needs an admin connection"),
    ]
    for argv, message in cases:
        capsys.readouterr()
        assert main([*argv, "--project", root]) == 2, argv
        assert message in capsys.readouterr().err, argv


def test_sqlite_projects_have_no_users(tmp_path, capsys):
    assert main(["init", str(tmp_path / "solo")]) == 0
    capsys.readouterr()
    assert main(["users", "list", "--project", str(tmp_path / "solo")]) == 2
    assert "users and roles are a PostgreSQL feature" in capsys.readouterr().err
    registry = open_registry(f"sqlite:///{tmp_path / 'solo' / 'registry.sqlite'}")
    try:
        assert users.current_role_of(registry)[1:] == ("admin", [])
        assert users.user_label_text("tester", registry) == "User: tester"
    finally:
        registry.dispose()


def test_non_superuser_owner_and_downgrade_of_one_of_two_registries(postgres_server, tmp_path):
    """A registry created by an ordinary owner login (CREATEDB CREATEROLE, not a superuser):
    row security is forced on it too, so the migration makes it an admin and it sees every
    row; it adds users. Two registries on one cluster get distinct group roles; downgrading
    one (as its owner) drops its policies, tables and roles and leaves the other's alone."""
    from pathomics_desktop.registry import database

    tag = uuid.uuid4().hex[:6]
    owner, db = f"owner_{tag}", f"t_owned_{tag}"
    with psycopg.connect(postgres_server.url(), autocommit=True) as su:
        su.execute(f'CREATE ROLE "{owner}" LOGIN CREATEDB CREATEROLE PASSWORD \'pw\'')
        su.execute(f'CREATE DATABASE "{db}" OWNER "{owner}"')
    first = f"postgresql://{owner}:pw@127.0.0.1:{postgres_server.port}/{db}"
    second = postgres_server.create_database()
    try:
        for url in (first, second):
            open_registry(url, create=True).dispose()
        ids = _populate(first)  # as the owner, through the ORM: every row written and audited
        registry = open_registry(first)
        try:
            assert users.current_role_of(registry) == (owner, "admin", [])
            users.add_user(registry, f"coord_{tag}", "coordinator", password="pw", centers=["B"])
        finally:
            registry.dispose()
        with psycopg.connect(first, autocommit=True) as conn:
            assert conn.execute("SELECT count(*) FROM patients").fetchone()[0] == 4
            groups = {r[0]: r[1] for r in conn.execute("SELECT role, pg_role FROM app_roles")}
        coordinator = first.replace(f"{owner}:pw", f"coord_{tag}:pw")
        with psycopg.connect(coordinator, autocommit=True) as conn:
            seen = {r[0] for r in conn.execute("SELECT patient_id FROM patient_identifiers")}
        assert seen == {ids["B1"]}
        with psycopg.connect(second, autocommit=True) as su:
            other = {r[0]: r[1] for r in su.execute("SELECT role, pg_role FROM app_roles")}
        assert set(groups) == set(other) == set(ROLES) and not set(groups.values()) & set(other.values())
        database.downgrade(first, revision="0004")
        with psycopg.connect(first, autocommit=True) as conn:
            left = {r[0] for r in conn.execute("SELECT rolname FROM pg_roles WHERE rolname = ANY(%s)",
                                               (list(groups.values()) + list(other.values()),))}
            policies = conn.execute("SELECT count(*) FROM pg_policies").fetchone()[0]
            tables = {r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
            logins = conn.execute("SELECT count(*) FROM pg_roles WHERE rolname = %s", (f"coord_{tag}",)).fetchone()[0]
        assert left == set(other.values()) and policies == 0 and logins == 1
        assert not {"app_users", "user_centers", "app_roles"} & tables
        database.upgrade(first)  # and back: the roles are created again
        with psycopg.connect(first, autocommit=True) as conn:
            assert {r[0] for r in conn.execute("SELECT pg_role FROM app_roles")} == set(groups.values())
    finally:
        postgres_server.drop_database(second)
        with psycopg.connect(postgres_server.url(), autocommit=True) as su:
            su.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
