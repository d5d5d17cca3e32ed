"""Opening the registry database: engines, schema checks, migrations and backups.

* SQLite (embedded default): foreign keys on, a busy timeout, the write-ahead log
  (``journal_mode=WAL``) with ``synchronous=FULL``, so a crash or a kill at any point leaves
  the last committed transaction on disk and never a torn one; ``PRAGMA quick_check`` when
  the file is opened (a damaged file is refused with the way back: ``pathomics db restore``);
  the file (and its ``-wal``/``-shm`` companions) readable and writable by its owner only
  (mode 0600). :func:`backup` uses SQLite's online backup API; :func:`restore` copies a
  checked backup back through the same API, after a safety backup of the current file.
* PostgreSQL (multi-user): ``postgresql://`` URLs go through psycopg 3.

The schema is versioned by Alembic (``migrations/``). :func:`open_registry` refuses a
database whose schema is newer than this program, and refuses an older one until it is
upgraded with :func:`upgrade` (which takes a backup first). A file that is not a database, or
a database of some other program, gives a :class:`~pathomics_desktop.errors.UserError`.
"""

from __future__ import annotations

import datetime as dt
import gzip
import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from sqlalchemy import Engine, create_engine, event, inspect, text
from sqlalchemy.exc import DatabaseError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from pathomics_desktop.errors import UserError

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"


class SchemaOutdated(UserError):
    """The database schema is older than this program: upgrade (with a backup) first."""


class SchemaTooNew(UserError):
    """The database was written by a newer Pathomics Desktop."""


def normalise_url(url: str) -> str:
    """``postgresql://`` -> ``postgresql+psycopg://`` (psycopg 3 driver)."""
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def _describe(url: str) -> str:
    """The URL without its password, for messages."""
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        user = creds.split(":", 1)[0]
        return f"{scheme}://{user}@{host}"
    return url


def make_engine(url: str) -> Engine:
    url = normalise_url(url)
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):  # pragma: no cover - trivial
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=FULL")
            cur.close()

        return engine
    return create_engine(url, pool_pre_ping=True)


def _alembic_config(url: str, connection=None):
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["url"] = normalise_url(url)
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(_alembic_config("")).get_current_head()


def known_revisions() -> set[str]:
    from alembic.script import ScriptDirectory

    return {s.revision for s in ScriptDirectory.from_config(_alembic_config("")).walk_revisions()}


def _sqlite_path(url: str) -> Path | None:
    url = normalise_url(url)
    if not url.startswith("sqlite"):
        return None
    path = url.split(":///", 1)[1] if ":///" in url else ""
    return Path(path) if path and path != ":memory:" else None


def _check_sqlite_file(path: Path) -> None:
    """A clear error for a file that is not an SQLite database."""
    if not path.exists():
        return
    with path.open("rb") as fh:
        header = fh.read(16)
    if path.stat().st_size and header != b"SQLite format 3\x00":
        raise UserError(f"{path}: not a Pathomics registry (the file is not an SQLite database "
                        "or it is corrupt)")
    try:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            con.execute("PRAGMA schema_version").fetchone()
            con.execute("SELECT name FROM sqlite_master LIMIT 1").fetchall()
            problems = [r[0] for r in con.execute("PRAGMA quick_check(5)").fetchall()]
        finally:
            con.close()
    except sqlite3.DatabaseError as exc:
        raise UserError(f"{path}: the registry database is corrupt ({exc}); restore a backup with "
                        "`pathomics db restore FILE` (backups are in the project's backups/ folder)") from exc
    if problems != ["ok"]:
        raise UserError(f"{path}: the registry database failed its integrity check "
                        f"({'; '.join(problems[:3])}); restore a backup with `pathomics db restore FILE` "
                        "(backups are in the project's backups/ folder)")


def owner_only(path: Path) -> None:
    """Make the registry file and its WAL companions readable by their owner only (0600)."""
    import os
    import stat

    for candidate in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        try:
            if candidate.exists() and stat.S_IMODE(candidate.stat().st_mode) != 0o600:
                os.chmod(candidate, 0o600)
        except PermissionError:  # not ours: leave it, the owner's setting stands
            pass


@dataclass
class SchemaState:
    current: str | None
    head: str
    #: ``empty`` (no tables), ``current``, ``outdated``, ``too_new``, ``foreign``
    state: str
    tables: list[str]


def schema_state(engine: Engine) -> SchemaState:
    head = head_revision()
    try:
        with engine.connect() as conn:
            tables = inspect(conn).get_table_names()
            current = None
            if "alembic_version" in tables:
                row = conn.execute(text("SELECT version_num FROM alembic_version")).first()
                current = row[0] if row else None
    except (DatabaseError, OperationalError) as exc:
        raise UserError(f"{_describe(str(engine.url))}: cannot read the registry database "
                        f"({exc.orig if hasattr(exc, 'orig') else exc})") from exc
    user_tables = [t for t in tables if t != "alembic_version"]
    if current is None:
        state = "empty" if not user_tables else "foreign"
    elif current == head:
        state = "current"
    elif current in known_revisions():
        state = "outdated"
    else:
        state = "too_new"
    return SchemaState(current=current, head=head, state=state, tables=user_tables)


class Registry:
    """An open registry: the engine and a session factory.

    ``with registry.session(user=..., reason=...) as s:`` is one transaction (one user
    action): committed on success, rolled back on any error.
    """

    def __init__(self, engine: Engine, url: str):
        self.engine = engine
        self.url = url
        self._factory = sessionmaker(engine, expire_on_commit=False)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def session(self, *, user: str = "", reason: str | None = None) -> "SessionContext":
        return SessionContext(self._factory, user=user, reason=reason)

    def dispose(self) -> None:
        self.engine.dispose()


class SessionContext:
    def __init__(self, factory, *, user: str, reason: str | None):
        self._factory = factory
        self._user = user
        self._reason = reason
        self.session: Session | None = None

    def __enter__(self) -> Session:
        from pathomics_desktop.registry.audit import current_user

        self.session = self._factory()
        self.session.info["user"] = self._user or current_user()
        self.session.info["reason"] = self._reason
        return self.session

    def __exit__(self, exc_type, exc, tb) -> None:
        assert self.session is not None
        try:
            if exc_type is None:
                try:
                    self.session.commit()
                except DatabaseError as failed:
                    _raise_refusal(failed)
                    raise
            else:
                self.session.rollback()
        finally:
            self.session.close()
        if exc is not None and isinstance(exc, DatabaseError):
            _raise_refusal(exc)


def _raise_refusal(exc: BaseException) -> None:
    """A change the PostgreSQL server refused to the login's role (SQLSTATE 42501) becomes a
    :class:`UserError` that says so, in the GUI as in the CLI, instead of a traceback."""
    from pathomics_desktop.registry.users import refused_by_server

    refusal = refused_by_server(exc)
    if refusal is not None:
        raise refusal from None


def open_registry(url: str, *, create: bool = False) -> Registry:
    """Open (or with ``create=True`` create) the registry at ``url`` and check its schema."""
    path = _sqlite_path(url)
    if path is not None:
        if not path.exists() and not create:
            raise UserError(f"{path}: registry database not found")
        _check_sqlite_file(path)
    try:
        engine = make_engine(url)
        state = schema_state(engine)
    except SQLAlchemyError as exc:
        raise UserError(f"{_describe(url)}: cannot open the registry ({exc})") from exc
    if state.state == "empty":
        if not create:
            engine.dispose()
            raise UserError(f"{_describe(url)}: the registry has no tables; run `pathomics init`")
        _run_alembic(engine, url, "upgrade", "head")
        if path is not None:
            owner_only(path)
    elif state.state == "foreign":
        engine.dispose()
        raise UserError(f"{_describe(url)}: not a Pathomics registry (it holds tables "
                        f"{', '.join(sorted(state.tables)[:5])} but no Pathomics schema version)")
    elif state.state == "too_new":
        engine.dispose()
        raise SchemaTooNew(f"{_describe(url)}: the registry schema ({state.current}) is newer than "
                           f"this version of Pathomics Desktop (knows up to {state.head}); "
                           "install the newer version to open it")
    elif state.state == "outdated":
        engine.dispose()
        raise SchemaOutdated(f"{_describe(url)}: the registry schema ({state.current}) is older than "
                             f"this program ({state.head}); run `pathomics db upgrade` "
                             "(a backup is taken first)")
    if path is not None:
        owner_only(path)
    return Registry(engine, url)


def _run_alembic(engine: Engine, url: str, verb: str, revision: str) -> None:
    from alembic import command

    with engine.connect() as conn:
        sqlite = conn.dialect.name == "sqlite"
        if sqlite:
            # Batch mode copies tables: with foreign keys on, dropping the old table would
            # cascade deletes into child tables. Switch them off for the migration (outside a
            # transaction, as SQLite requires) and check integrity afterwards.
            conn.exec_driver_sql("PRAGMA foreign_keys=OFF")
            conn.commit()
        cfg = _alembic_config(url, connection=conn)
        getattr(command, verb)(cfg, revision)
        conn.commit()
        if sqlite:
            problems = conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
            conn.exec_driver_sql("PRAGMA foreign_keys=ON")
            if problems:
                raise UserError(f"migration left broken references: {problems[:5]}")


# -- backups and migrations ----------------------------------------------------------------
def backup(url: str, backup_dir: Path, label: str = "") -> Path:
    """Copy the registry before a migration.

    SQLite: an online copy through SQLite's backup API. PostgreSQL: every table as JSON lines
    (gzip), readable without the server.
    """
    backup_dir.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    path = _sqlite_path(url)
    if path is not None:
        target = backup_dir / f"registry-{stamp}{('-' + label) if label else ''}.sqlite"
        src = sqlite3.connect(path)
        dst = sqlite3.connect(target)
        try:
            src.backup(dst)
        finally:
            dst.close()
            src.close()
        owner_only(target)
        return target
    engine = make_engine(url)
    target = backup_dir / f"registry-{stamp}{('-' + label) if label else ''}.jsonl.gz"
    try:
        with engine.connect() as conn, gzip.open(target, "wt", encoding="utf-8") as out:
            for table in inspect(conn).get_table_names():
                for row in conn.execute(text(f'SELECT * FROM "{table}"')).mappings():
                    out.write(json.dumps({"table": table, "row": dict(row)}, default=str) + "\n")
    finally:
        engine.dispose()
    return target


def restore(url: str, source: Path, backup_dir: Path) -> Path:
    """Replace the SQLite registry's content with the backup ``source``.

    The backup must be an intact Pathomics registry whose schema this program knows; the
    current file is backed up first (returned), then the backup is copied in through SQLite's
    online backup API (one locked, all-or-nothing copy)."""
    path = _sqlite_path(url)
    if path is None:
        raise UserError("`db restore` restores SQLite registries; restore a PostgreSQL server with "
                        "its own tools (pg_restore) from the site's backups")
    source = Path(source)
    if not source.exists():
        raise UserError(f"{source}: backup file not found")
    _check_sqlite_file(source)
    engine = make_engine(f"sqlite:///{source}")
    try:
        state = schema_state(engine)
    finally:
        engine.dispose()
    if state.state not in ("current", "outdated"):
        raise UserError(f"{source}: not a Pathomics registry backup this program can restore "
                        f"(schema state: {state.state})")
    saved = backup(url, backup_dir, label="before-restore")
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
    dst = sqlite3.connect(path, timeout=30)
    try:
        src.backup(dst)
    finally:
        dst.close()
        src.close()
    owner_only(path)
    return saved


def upgrade(url: str, *, revision: str = "head", backup_dir: Path | None = None) -> Path | None:
    """Upgrade the schema (taking a backup first when the database already has data)."""
    engine = make_engine(url)
    try:
        state = schema_state(engine)
        if state.state == "foreign":
            raise UserError(f"{_describe(url)}: not a Pathomics registry")
        if state.state == "too_new":
            raise SchemaTooNew(f"{_describe(url)}: schema {state.current} is newer than this program")
        saved = None
        if backup_dir is not None and state.state in ("outdated", "current"):
            saved = backup(url, backup_dir, label=f"before-{state.current}")
        _run_alembic(engine, url, "upgrade", revision)
        return saved
    finally:
        engine.dispose()


def downgrade(url: str, *, revision: str = "-1", backup_dir: Path | None = None) -> Path | None:
    engine = make_engine(url)
    try:
        state = schema_state(engine)
        if state.state not in ("current", "outdated"):
            raise UserError(f"{_describe(url)}: nothing to downgrade (schema state {state.state})")
        saved = backup(url, backup_dir, label=f"before-{state.current}") if backup_dir else None
        _run_alembic(engine, url, "downgrade", revision)
        return saved
    finally:
        engine.dispose()


def iter_revisions() -> Iterator[str]:
    from alembic.script import ScriptDirectory

    for script in ScriptDirectory.from_config(_alembic_config("")).walk_revisions():
        yield script.revision
