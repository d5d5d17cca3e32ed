"""Alembic environment: batch mode on SQLite (ALTER TABLE by copy), typed ORM metadata."""

from __future__ import annotations

import os

from alembic import context
from sqlalchemy import engine_from_config, pool

from pathomics_desktop.registry.models import Base

config = context.config
target_metadata = Base.metadata


def _url() -> str:
    return (config.attributes.get("url") or config.get_main_option("sqlalchemy.url")
            or os.environ.get("PATHOMICS_DATABASE_URL", ""))


def run_migrations_offline() -> None:
    url = _url()
    context.configure(url=url, target_metadata=target_metadata, literal_binds=True,
                      render_as_batch=url.startswith("sqlite"))
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = engine_from_config({"sqlalchemy.url": _url()}, prefix="sqlalchemy.",
                                poolclass=pool.NullPool)
    with engine.connect() as conn:
        _run(conn)


def _run(connection) -> None:
    context.configure(connection=connection, target_metadata=target_metadata,
                      render_as_batch=connection.dialect.name == "sqlite",
                      compare_type=True)
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
