"""Derived codebook variables: analysts' jobs write them, nobody else's curated data.

* ``codebook_variables.derived`` (boolean, NOT NULL, default false): the variable's values are
  computed by a job (``pathomics signature apply`` writes ``pathomics_os_score``,
  ``pathomics_os_group``, ``pathomics_rfs_score`` and ``pathomics_rfs_group``), not curated.
  The four score variables already in a registry are marked derived here. Both backends.

PostgreSQL only (on SQLite, one user, the rest does nothing), on top of migration 0005:

* ``codebook_variables`` gets ROW LEVEL SECURITY (enabled and FORCEd) with policies that keep
  every role's rights of 0005 (admin: S I U D; coordinator, analyst, clinician: S) and add one:
  an **analyst** may INSERT a variable only ``WITH CHECK (derived AND NOT identifier AND NOT
  required)`` (a new derived variable never holds identifiers, and never makes the curated
  records incomplete). Analysts still cannot UPDATE or DELETE a codebook row, so they cannot
  mark a curated variable derived.
* ``variable_values``: an **analyst** may INSERT, UPDATE and DELETE the values of derived,
  non-identifier variables only (``variable_id IN (SELECT id FROM codebook_variables WHERE
  derived AND NOT identifier)``), for every patient; every other value stays read-only to
  them, and an attempt on one is REFUSED (SQLSTATE 42501), never silently skipped (a skipped
  row would leave the application's audit row of a change that did not happen): INSERT and
  UPDATE by the policies' WITH CHECK (UPDATE is granted on the ``value`` column only, so a
  value cannot be moved to another variable or patient), DELETE by a BEFORE DELETE trigger
  (a DELETE policy can only hide rows). Their audit rows go through the INSERT policy of 0005
  (stamped with the login), and the audit hook's touch of the patient row (``updated_at``,
  ``version``) is the one already granted to analysts' jobs.
* Who may set ``derived``: only admins (INSERT/UPDATE of any codebook row, as before) and
  analysts on the new rows they insert. Coordinators keep SELECT only on the codebook (0005),
  so they can neither add a derived variable nor flip ``derived`` on a curated one to open it
  to analysts; their rights on ``variable_values`` (their centers', any variable) are unchanged.
  An admin who marks a curated variable derived deliberately opens it to analysts' jobs.

Downgrade drops these policies, grants and the trigger, switches row security on
``codebook_variables`` off again, and drops the column.

Revision ID: 0006
Revises: 0005
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

#: the variables of ``pathomics signature apply`` (:mod:`pathomics_desktop.signature.apply`)
SCORE_VARIABLES = ("pathomics_os_score", "pathomics_os_group", "pathomics_rfs_score", "pathomics_rfs_group")
DERIVED_VARIABLE = "(SELECT v.id FROM codebook_variables v WHERE v.derived AND NOT v.identifier)"
#: policy name -> (table, command, role, USING, WITH CHECK)
POLICIES = {
    "codebook_variables_admin": ("codebook_variables", "ALL", "admin", "true", "true"),
    "codebook_variables_coordinator": ("codebook_variables", "SELECT", "coordinator", "true", None),
    "codebook_variables_analyst": ("codebook_variables", "SELECT", "analyst", "true", None),
    "codebook_variables_clinician": ("codebook_variables", "SELECT", "clinician", "true", None),
    "codebook_variables_analyst_derived": ("codebook_variables", "INSERT", "analyst", None,
                                           "derived AND NOT identifier AND NOT required"),
    "variable_values_analyst_derived_insert": ("variable_values", "INSERT", "analyst", None,
                                               f"variable_id IN {DERIVED_VARIABLE}"),
    "variable_values_analyst_derived_update": ("variable_values", "UPDATE", "analyst", "true",
                                               f"variable_id IN {DERIVED_VARIABLE}"),
    # every row may be targeted: the trigger below refuses the ones that are not derived
    "variable_values_analyst_derived_delete": ("variable_values", "DELETE", "analyst", "true", None),
}
#: table -> privileges added to the analyst group
ANALYST_GRANTS = {"codebook_variables": "INSERT", "variable_values": "INSERT, UPDATE (value), DELETE"}

_DELETE_GUARD = f"""
CREATE OR REPLACE FUNCTION variable_values_analysts_derived_only() RETURNS trigger AS $$
BEGIN
    IF pg_has_role(current_user, (SELECT r.pg_role FROM app_roles r WHERE r.role = 'analyst'), 'MEMBER')
       AND NOT pg_has_role(current_user, (SELECT r.pg_role FROM app_roles r WHERE r.role = 'admin'), 'MEMBER')
       AND OLD.variable_id NOT IN {DERIVED_VARIABLE} THEN
        RAISE EXCEPTION 'permission denied: analysts delete values of derived variables only (row %)',
            OLD.id USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN OLD;
END;
$$ LANGUAGE plpgsql
"""


def _q(name: str) -> str:
    return op.get_bind().dialect.identifier_preparer.quote_identifier(name)


def _groups(bind) -> dict[str, str]:
    """This registry's group roles of migration 0005 (``app_roles``), quoted."""
    return {role: _q(pg_role) for role, pg_role in bind.execute(sa.text("SELECT role, pg_role FROM app_roles"))}


def upgrade() -> None:
    with op.batch_alter_table("codebook_variables") as batch_op:
        batch_op.add_column(sa.Column("derived", sa.Boolean(), nullable=False, server_default=sa.false()))
    variables = sa.table("codebook_variables", sa.column("name", sa.String), sa.column("derived", sa.Boolean))
    op.execute(variables.update().where(variables.c.name.in_(SCORE_VARIABLES)).values(derived=True))

    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    g = _groups(bind)
    op.execute("ALTER TABLE codebook_variables ENABLE ROW LEVEL SECURITY")
    op.execute("ALTER TABLE codebook_variables FORCE ROW LEVEL SECURITY")
    for name, (table, command, role, using, check) in POLICIES.items():
        clause = f"CREATE POLICY {_q(name)} ON {_q(table)} FOR {command} TO {g[role]}"
        if using is not None:
            clause += f" USING ({using})"
        if check is not None:
            clause += f" WITH CHECK ({check})"
        op.execute(clause)
    for table, privileges in ANALYST_GRANTS.items():
        op.execute(f"GRANT {privileges} ON {_q(table)} TO {g['analyst']}")
    op.execute(_DELETE_GUARD)
    op.execute("CREATE TRIGGER variable_values_analysts_derived_only BEFORE DELETE ON variable_values "
               "FOR EACH ROW EXECUTE FUNCTION variable_values_analysts_derived_only()")


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        g = _groups(bind)
        op.execute("DROP TRIGGER IF EXISTS variable_values_analysts_derived_only ON variable_values")
        op.execute("DROP FUNCTION IF EXISTS variable_values_analysts_derived_only()")
        for table, privileges in ANALYST_GRANTS.items():
            op.execute(f"REVOKE {privileges} ON {_q(table)} FROM {g['analyst']}")
        for name, (table, *_rest) in POLICIES.items():
            op.execute(f"DROP POLICY IF EXISTS {_q(name)} ON {_q(table)}")
        op.execute("ALTER TABLE codebook_variables NO FORCE ROW LEVEL SECURITY")
        op.execute("ALTER TABLE codebook_variables DISABLE ROW LEVEL SECURITY")
    with op.batch_alter_table("codebook_variables") as batch_op:
        batch_op.drop_column("derived")
