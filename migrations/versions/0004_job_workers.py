"""Workers on several machines: who runs a job, its heartbeat and how often it was requeued.

* ``jobs.worker``: the worker running the job, ``host:pid:uuid`` (empty when queued);
* ``jobs.heartbeat_at``: the last heartbeat of that worker (UTC); a running job whose
  heartbeat is older than the lease is requeued by any other worker;
* ``jobs.attempts``: how many times the job was requeued after its worker stopped sending
  heartbeats (a job requeued more than the limit fails).

Revision ID: 0004
Revises: 0003
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch_op:
        batch_op.add_column(sa.Column("worker", sa.String(length=128), nullable=True))
        batch_op.add_column(sa.Column("heartbeat_at", sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"))
        batch_op.create_index("ix_jobs_status_heartbeat", ["status", "heartbeat_at"])


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch_op:
        batch_op.drop_index("ix_jobs_status_heartbeat")
        batch_op.drop_column("attempts")
        batch_op.drop_column("heartbeat_at")
        batch_op.drop_column("worker")
