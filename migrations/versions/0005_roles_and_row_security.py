"""Accounts, roles and center scoping, enforced by PostgreSQL (row-level security).

PostgreSQL only; on SQLite (a single-user file) this migration does nothing.

* Four group roles (NOLOGIN) **per database** — roles are cluster-wide, so each registry
  gets its own: ``pathomics_<database>_admin``, ``..._coordinator``, ``..._analyst``,
  ``..._clinician`` (a 10-hex-digit hash of the database name replaces it when the name
  would be longer than PostgreSQL's 63 bytes). The names are kept in ``app_roles``. Created
  if missing, so re-running on the same database, or several registries on one cluster,
  never collide. A login is a member of one group role of the registry
  (``pathomics users add``); ``app_users(login, role, disabled)`` and
  ``user_centers(login, center_id)`` map logins to roles and centers.
* GRANTs per table and role (never TRUNCATE, which would bypass row security and triggers;
  nobody gets UPDATE or DELETE on ``audit_events``), and ROW LEVEL SECURITY, FORCEd so that
  it applies to the table owner too (the migrating login is added to the admin group so it
  keeps seeing everything; superusers bypass row security as always):

  ==================  ========================  ======================  ================
  table               coordinator (own centers) analyst                 clinician
  ==================  ========================  ======================  ================
  patients, clinical  S I U D, own centers      S                       S
  patient_identifiers S I U D, own centers      S: no row ever          S: no row ever
  variable_values     S I U D, own centers      S (not identifiers)     S (not identif.)
  slides              S I U D, own patients     S, U of QC columns      S
  centers, codebook   S                         S                       S
  jobs                S I U                     S I U                   S
  audit_events        S (own centers) I         S (no identifiers) I    S (no identif.) I
  app_users etc.      S own row                 S own row               S own row
  ==================  ========================  ======================  ================

  Analysts' jobs (tiling) may also UPDATE a slide's ``qc_status``, ``qc_reason`` and
  ``stain_vectors`` (not on a slide a curator excluded, and never to ``excluded``), and a
  patient's ``updated_at`` and ``version`` (the audit hook touches the patient row when one
  of its rows changes); no other column.

  Admins: S I U D everywhere except audit_events (S I) and alembic_version (S, as every
  role). A coordinator's centers are ``center_id IN (SELECT center_id FROM user_centers
  WHERE login = current_user)``; the child tables follow their patient; its audit rows are
  those of its patients and of no patient. A table added by a later migration gets no
  privilege here: that migration grants its own (and enables row security if needed).
* A BEFORE INSERT trigger stamps ``audit_events.user`` with the login (``session_user``)
  when the writer is an application login (listed in ``app_users``), so the audit trail
  names who really connected.

Downgrade drops the policies, the grants, the mapping tables, the trigger and this
database's four group roles (they belong to this database only). Login roles are left:
they are cluster-wide and may belong to other registries on the same server; drop them with
``DROP ROLE`` when no longer needed.

Revision ID: 0005
Revises: 0004
"""
from __future__ import annotations

import hashlib

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

ROLES = ("admin", "coordinator", "analyst", "clinician")

#: tables whose rows belong to a patient through ``patient_id``
CHILD_TABLES = ("surgeries", "pathology", "lab_results", "comorbidities", "treatments",
                "followup_visits", "variable_values", "slides", "patient_identifiers")
CURATED_SHARED = ("centers", "codebook_variables")

MY_CENTERS = "(SELECT uc.center_id FROM user_centers uc WHERE uc.login = current_user)"
MY_PATIENTS = f"(SELECT p.id FROM patients p WHERE p.center_id IN {MY_CENTERS})"
NOT_IDENTIFIER_VARIABLE = "(SELECT v.id FROM codebook_variables v WHERE NOT v.identifier)"

_STAMP_FUNCTION = """
CREATE OR REPLACE FUNCTION audit_events_stamp_login() RETURNS trigger AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM app_users u WHERE u.login = session_user) THEN
        NEW."user" := session_user;
    END IF;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql
"""


def group_role_name(database: str, role: str) -> str:
    """``pathomics_<database>_<role>``, or with a hash of the name when over 63 bytes."""
    name = f"pathomics_{database}_{role}"
    if len(name.encode("utf-8")) > 63:
        name = f"pathomics_{hashlib.sha256(database.encode()).hexdigest()[:10]}_{role}"
    return name


def _q(name: str) -> str:
    return op.get_bind().dialect.identifier_preparer.quote_identifier(name)


def _tables(bind) -> set[str]:
    return set(sa.inspect(bind).get_table_names())


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    database = bind.execute(sa.text("SELECT current_database()")).scalar_one()
    superuser = bind.execute(sa.text("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")).scalar_one()
    groups = {role: group_role_name(database, role) for role in ROLES}
    g = {role: _q(name) for role, name in groups.items()}
    for name in groups.values():
        exists = bind.execute(sa.text("SELECT 1 FROM pg_roles WHERE rolname = :n"), {"n": name}).first()
        if not exists:
            op.execute(f"CREATE ROLE {_q(name)} NOLOGIN")
    if not superuser:  # the owner is subject to FORCEd row security: let it see everything
        op.execute(f"GRANT {g['admin']} TO CURRENT_USER")

    op.create_table(
        "app_roles",
        sa.Column("role", sa.String(16), primary_key=True),
        sa.Column("pg_role", sa.String(63), nullable=False, unique=True),
    )
    op.bulk_insert(sa.table("app_roles", sa.column("role"), sa.column("pg_role")),
                   [{"role": r, "pg_role": n} for r, n in groups.items()])
    op.create_table(
        "app_users",
        sa.Column("login", sa.String(63), primary_key=True),
        sa.Column("role", sa.String(16), sa.ForeignKey("app_roles.role"), nullable=False),
        sa.Column("disabled", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("created_at", sa.DateTime(), nullable=False, server_default=sa.func.now()),
    )
    op.create_table(
        "user_centers",
        sa.Column("login", sa.String(63), sa.ForeignKey("app_users.login", ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("center_id", sa.Integer(), sa.ForeignKey("centers.id", ondelete="CASCADE"),
                  primary_key=True),
    )

    everyone = ", ".join(g.values())
    op.execute(f"GRANT USAGE ON SCHEMA {_q(_schema())} TO {everyone}")
    op.execute(f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {_q(_schema())} TO {everyone}")
    op.execute(f"GRANT SELECT ON alembic_version, app_roles TO {everyone}")

    present = _tables(bind)
    # admins: everything but TRUNCATE (which bypasses row security and the audit triggers)
    for table in sorted(present - {"alembic_version", "audit_events", "app_roles"}):
        op.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON {_q(table)} TO {g['admin']}")
    op.execute(f"GRANT SELECT, INSERT ON audit_events TO {everyone}")

    def policy(table: str, name: str, command: str, role: str, using: str | None = "true",
               check: str | None = None) -> None:
        clause = f"CREATE POLICY {_q(name)} ON {_q(table)} FOR {command} TO {g[role]}"
        if using is not None:
            clause += f" USING ({using})"
        if check is not None:
            clause += f" WITH CHECK ({check})"
        op.execute(clause)

    def secure(table: str) -> None:
        op.execute(f"ALTER TABLE {_q(table)} ENABLE ROW LEVEL SECURITY")
        op.execute(f"ALTER TABLE {_q(table)} FORCE ROW LEVEL SECURITY")
        policy(table, f"{table}_admin", "ALL", "admin", "true", "true")

    # patients: coordinators their centers; analysts and clinicians read
    secure("patients")
    op.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON patients TO {g['coordinator']}")
    op.execute(f"GRANT SELECT ON patients TO {g['analyst']}, {g['clinician']}")
    own = f"center_id IN {MY_CENTERS}"
    policy("patients", "patients_coordinator", "ALL", "coordinator", own, own)
    policy("patients", "patients_analyst", "SELECT", "analyst")
    policy("patients", "patients_clinician", "SELECT", "clinician")

    for table in CHILD_TABLES:
        if table not in present:
            continue
        secure(table)
        op.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON {_q(table)} TO {g['coordinator']}")
        own = f"patient_id IN {MY_PATIENTS}"
        policy(table, f"{table}_coordinator", "ALL", "coordinator", own, own)
        op.execute(f"GRANT SELECT ON {_q(table)} TO {g['analyst']}, {g['clinician']}")
        if table == "patient_identifiers":
            # analysts and clinicians: no policy, so no row, ever (row security denies by
            # default); the SELECT privilege only lets the shared patient query (which loads
            # the relation) run and find nothing, instead of failing
            continue
        readable = f"variable_id IN {NOT_IDENTIFIER_VARIABLE}" if table == "variable_values" else "true"
        for role in ("analyst", "clinician"):
            policy(table, f"{table}_{role}", "SELECT", role, readable)

    # jobs run by analysts (tiling) record a slide's automatic QC and stain vectors, never
    # on a slide a curator excluded; the audit hook then touches the patient row
    # (updated_at, version: optimistic locking), which carries no data
    op.execute(f"GRANT UPDATE (qc_status, qc_reason, stain_vectors) ON slides TO {g['analyst']}")
    not_excluded = "qc_status <> 'excluded'"
    policy("slides", "slides_analyst_qc", "UPDATE", "analyst", not_excluded, not_excluded)
    op.execute(f"GRANT UPDATE (updated_at, version) ON patients TO {g['analyst']}")
    policy("patients", "patients_analyst_touch", "UPDATE", "analyst", "true", "true")

    for table in CURATED_SHARED:
        op.execute(f"GRANT SELECT ON {_q(table)} TO {g['coordinator']}, {g['analyst']}, {g['clinician']}")

    op.execute(f"GRANT SELECT, INSERT, UPDATE ON jobs TO {g['coordinator']}, {g['analyst']}")
    op.execute(f"GRANT SELECT ON jobs TO {g['clinician']}")

    # the audit trail: INSERT and SELECT only (the 0002 trigger refuses UPDATE/DELETE as well)
    secure("audit_events")
    for role in ("coordinator", "analyst", "clinician"):
        policy("audit_events", f"audit_events_insert_{role}", "INSERT", role, None, "true")
    policy("audit_events", "audit_events_coordinator", "SELECT", "coordinator",
           f"patient_id IS NULL OR patient_id IN {MY_PATIENTS}")
    no_identifiers = "table_name NOT IN ('patient_identifiers', 'variable_values')"
    policy("audit_events", "audit_events_analyst", "SELECT", "analyst", no_identifiers)
    policy("audit_events", "audit_events_clinician", "SELECT", "clinician", no_identifiers)
    op.execute(_STAMP_FUNCTION)
    op.execute("CREATE TRIGGER audit_events_stamp_login BEFORE INSERT ON audit_events "
               "FOR EACH ROW EXECUTE FUNCTION audit_events_stamp_login()")

    # the mapping: admins manage it, every other login reads its own rows
    for table in ("app_users", "user_centers"):
        secure(table)
        op.execute(f"GRANT SELECT ON {_q(table)} TO {g['coordinator']}, {g['analyst']}, {g['clinician']}")
        for role in ("coordinator", "analyst", "clinician"):
            policy(table, f"{table}_{role}", "SELECT", role, "login = current_user")


def _schema() -> str:
    return op.get_bind().execute(sa.text("SELECT current_schema()")).scalar_one()


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    groups = [row[0] for row in bind.execute(sa.text("SELECT pg_role FROM app_roles"))]
    op.execute("DROP TRIGGER IF EXISTS audit_events_stamp_login ON audit_events")
    op.execute("DROP FUNCTION IF EXISTS audit_events_stamp_login()")
    policies = bind.execute(sa.text(
        "SELECT tablename, policyname FROM pg_policies WHERE schemaname = current_schema()")).all()
    for table, name in policies:
        op.execute(f"DROP POLICY IF EXISTS {_q(name)} ON {_q(table)}")
    for table in sorted(_tables(bind) - {"app_users", "user_centers", "app_roles"}):
        op.execute(f"ALTER TABLE {_q(table)} NO FORCE ROW LEVEL SECURITY")
        op.execute(f"ALTER TABLE {_q(table)} DISABLE ROW LEVEL SECURITY")
    op.drop_table("user_centers")
    op.drop_table("app_users")
    op.drop_table("app_roles")
    schema = _q(_schema())
    for name in groups:
        # this database's grants to the group, then the group (members keep their logins);
        # explicit REVOKEs rather than DROP OWNED, which a non-superuser owner may not run
        for objects in (f"ALL TABLES IN SCHEMA {schema}", f"ALL SEQUENCES IN SCHEMA {schema}",
                        f"SCHEMA {schema}"):
            op.execute(f"REVOKE ALL ON {objects} FROM {_q(name)}")
        op.execute(f"DROP ROLE IF EXISTS {_q(name)}")
