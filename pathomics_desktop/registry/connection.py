"""Checking a registry database URL before a project is created on it (the start page's
"Test connection" button; Qt-free).

:func:`check_database_url` connects once (5 s timeout), reads the schema state and answers
in words a coordinator can act on; every failure is a
:class:`~pathomics_desktop.errors.UserError` whose message says what to check. Passwords
never appear in messages (:func:`describe_url`).
"""

from __future__ import annotations

from dataclasses import dataclass

from pathomics_desktop.errors import UserError

CONNECT_TIMEOUT_S = 5

#: (fragment of the driver's message, what to tell the user)
_HINTS = (
    ("password authentication failed", "the server refused the user name or password; check them"),
    ("no password supplied", "the server asks for a password; add it to the URL (user:password@host)"),
    ("does not exist", "the server is reachable but the database (or role) does not exist; "
                       "ask the database administrator to create it"),
    ("could not translate host name", "the host name is unknown; check its spelling and the network"),
    ("name or service not known", "the host name is unknown; check its spelling and the network"),
    ("connection refused", "nothing answers at that host and port; check that the PostgreSQL "
                           "server is running and accepts connections from this computer"),
    ("timeout expired", f"the server did not answer within {CONNECT_TIMEOUT_S} seconds; check the host, "
                        "the port and any firewall or VPN"),
    ("timed out", f"the server did not answer within {CONNECT_TIMEOUT_S} seconds; check the host, "
                  "the port and any firewall or VPN"),
    ("no pg_hba.conf entry", "the server does not accept connections from this computer or user; "
                             "ask the database administrator to allow it (pg_hba.conf)"),
)


@dataclass
class ConnectionReport:
    """A successful check: where, which server, and what the database holds."""

    url: str          # without password
    server: str       # e.g. "PostgreSQL 15.4"
    state: str        # schema_state(): empty, current, outdated, too_new, foreign
    message: str      # one sentence for the user


def describe_url(url: str) -> str:
    """``postgresql://user@host:5432/db`` (no password); SQLite: the file path."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except ArgumentError:
        return "(not a database URL)"
    if parsed.drivername.startswith("sqlite"):
        return parsed.database or ":memory:"
    host = parsed.host or "localhost"
    port = f":{parsed.port}" if parsed.port else ""
    user = f"{parsed.username}@" if parsed.username else ""
    return f"{parsed.drivername.split('+')[0]}://{user}{host}{port}/{parsed.database or ''}"


def _hint(detail: str) -> str:
    low = detail.lower()
    for fragment, hint in _HINTS:
        if fragment in low:
            return hint
    first = detail.strip().splitlines()[0] if detail.strip() else "unknown error"
    return f"the server answered: {first}"


def check_database_url(url: str) -> ConnectionReport:
    """Connect to ``url`` once and report what it holds (raises UserError on any failure)."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.exc import ArgumentError, SQLAlchemyError

    from pathomics_desktop.registry.database import normalise_url, schema_state

    url = (url or "").strip()
    if not url:
        raise UserError("enter a PostgreSQL URL, e.g. postgresql://user:password@host:5432/database")
    if not (url.startswith("postgresql://") or url.startswith("postgres://")
            or url.startswith("postgresql+psycopg://")):
        raise UserError(f"{url.split('://')[0]!r} is not a PostgreSQL URL; it must start with "
                        "postgresql:// (e.g. postgresql://user:password@host:5432/database)")
    shown = describe_url(url)
    try:
        engine = create_engine(normalise_url(url), connect_args={"connect_timeout": CONNECT_TIMEOUT_S})
    except (ArgumentError, ValueError) as exc:
        raise UserError(f"{shown}: not a valid database URL ({exc})") from None
    try:
        try:
            with engine.connect() as conn:
                version = conn.execute(text("SHOW server_version")).scalar_one()
            state = schema_state(engine)
        except SQLAlchemyError as exc:
            detail = str(getattr(exc, "orig", None) or exc)
            raise UserError(f"cannot connect to {shown}: {_hint(detail)}") from None
        except UserError as exc:
            raise UserError(f"cannot connect to {shown}: {_hint(str(exc))}") from None
    finally:
        engine.dispose()
    messages = {
        "empty": "connected; the database is empty, so a new registry will be created in it",
        "current": "connected; the database already holds a Pathomics registry (current schema), "
                   "which the new project will share",
        "outdated": "connected; the database holds an older Pathomics registry: it will be "
                    "offered an upgrade (with a backup) when the project opens",
        "too_new": "connected, but the database holds a registry of a newer Pathomics Desktop; "
                   "install the newer version",
        "foreign": "connected, but the database holds tables of another program; use an empty "
                   "database for the registry",
    }
    return ConnectionReport(url=shown, server=f"PostgreSQL {version}", state=state.state,
                            message=messages[state.state])
