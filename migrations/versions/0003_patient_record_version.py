"""Optimistic locking: ``patients.version``, the record's version.

Every change to a patient's record (the patient row or any of its rows: surgery, pathology,
values, follow-up) increments it (SQLAlchemy's ``version_id_col``; the audit hook touches the
patient row when a child row changes). A save that started from an older version is refused
with a conflict instead of overwriting another user's change. Existing rows start at 1.

Revision ID: 0003
Revises: 0002
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("patients") as batch_op:
        batch_op.add_column(sa.Column("version", sa.Integer(), nullable=False, server_default="1"))


def downgrade() -> None:
    with op.batch_alter_table("patients") as batch_op:
        batch_op.drop_column("version")
