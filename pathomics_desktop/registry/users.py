"""Accounts and roles of a multi-user registry on PostgreSQL (Qt-free; the CLI and the GUI).

Users log in with PostgreSQL credentials. Migration 0005 creates, per registry database,
four group roles (``app_roles``: admin, coordinator, analyst, clinician) with the GRANTs and
row-level-security policies that scope what each may see and change; here an admin adds
logins to them:

* :func:`add_user` — ``CREATE ROLE name LOGIN PASSWORD '…'`` (the name an identifier, the
  password a literal, both quoted by psycopg), membership of the group role, a row in
  ``app_users`` and, for coordinators, their centers in ``user_centers``;
* :func:`list_users`, :func:`disable_user` (``NOLOGIN``: the login can no longer connect;
  sessions already open run until they close), :func:`enable_user`, :func:`grant_centers`;
* :func:`current_role_of` — who the registry connection is, for the GUI's status bar and
  :mod:`pathomics_desktop.registry.permissions`.

These need an admin connection (a member of the admin group with ``CREATEROLE``, or the
login that created the registry). On SQLite (a single-user file) there are no accounts:
every call but :func:`current_role_of` raises a :class:`UserError` that says so.
"""

from __future__ import annotations

import re
import weakref
from dataclasses import dataclass, field
from typing import Iterable

from sqlalchemy import text

from pathomics_desktop.errors import UserError
from pathomics_desktop.registry.database import Registry

ROLES = ("admin", "coordinator", "analyst", "clinician")
#: a login name: starts with a letter or ``_``; letters, digits, ``_ . -``; at most 63 bytes
LOGIN_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]{0,62}$")

SQLITE_MESSAGE = ("users and roles are a PostgreSQL feature: this project's registry is an "
                  "embedded SQLite file (one user, the file's owner); create a multi-user project "
                  "with `pathomics init DIR --database-url postgresql://…`")


@dataclass
class UserInfo:
    """A login of the registry: its role, whether it may connect, and its centers (codes)."""

    login: str
    role: str
    disabled: bool
    centers: list[str] = field(default_factory=list)


def _require_postgres(registry: Registry) -> None:
    if registry.dialect != "postgresql":
        raise UserError(SQLITE_MESSAGE)


def _check_login(name: str) -> str:
    name = (name or "").strip()
    if not LOGIN_PATTERN.match(name) or len(name.encode("utf-8")) > 63:
        raise UserError(f"{name!r} is not a valid user name: start with a letter, then letters, "
                        "digits, '_', '.' or '-' (at most 63 characters)")
    if name.lower().startswith("pathomics_") or name.lower().startswith("pg_"):
        raise UserError(f"{name!r}: names starting with 'pathomics_' or 'pg_' are reserved")
    return name


def _check_role(role: str) -> str:
    if role not in ROLES:
        raise UserError(f"unknown role {role!r}; choose one of {', '.join(ROLES)}")
    return role


def _group_roles(conn) -> dict[str, str]:
    rows = conn.execute(text("SELECT role, pg_role FROM app_roles")).all()
    if not rows:
        raise UserError("this registry has no roles yet; upgrade it with `pathomics db upgrade`")
    return {r: g for r, g in rows}


def _center_ids(conn, codes: Iterable[str]) -> dict[str, int]:
    codes = [c.strip() for c in codes if c and c.strip()]
    found = dict(conn.execute(text("SELECT code, id FROM centers WHERE code = ANY(:codes)"),
                              {"codes": codes}).all()) if codes else {}
    missing = [c for c in codes if c not in found]
    if missing:
        known = [r[0] for r in conn.execute(text("SELECT code FROM centers ORDER BY code"))]
        raise UserError(f"unknown center {', '.join(missing)}; the registry has "
                        f"{', '.join(known) or 'no centers yet'}")
    return {c: found[c] for c in codes}


def _run(conn, statement) -> None:
    """Execute a psycopg ``sql.Composed`` statement inside the SQLAlchemy transaction."""
    with conn.connection.driver_connection.cursor() as cur:
        cur.execute(statement)


def _admin_session(registry: Registry):
    _require_postgres(registry)
    with registry.engine.connect() as conn:
        if not conn.execute(text("SELECT to_regclass('app_roles') IS NOT NULL")).scalar_one():
            raise UserError("this registry has no roles yet (schema before 0005); upgrade it with "
                            "`pathomics db upgrade`")
    return registry.engine.begin()


def _server_errors() -> tuple[type[Exception], ...]:
    import psycopg
    from sqlalchemy.exc import DBAPIError

    return (DBAPIError, psycopg.Error)


def _privilege_error(exc: Exception, what: str) -> UserError:
    detail = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
    return UserError(f"{what} needs an admin connection (a login with the admin role, or the "
                     f"login that created the registry): the server answered: {detail}")


def add_user(registry: Registry, name: str, role: str, *, password: str | None,
             centers: Iterable[str] = ()) -> UserInfo:
    """Create login ``name`` (or, when it exists already for another registry on this server,
    reuse it) in group role ``role``; coordinators get ``centers`` (center codes)."""
    from psycopg import sql

    name, role = _check_login(name), _check_role(role)
    centers = [c for c in centers if c]
    if centers and role != "coordinator":
        raise UserError(f"--center applies to coordinators; a {role} sees every center")
    try:
        with _admin_session(registry) as conn:
            groups = _group_roles(conn)
            ids = _center_ids(conn, centers)
            if conn.execute(text("SELECT 1 FROM app_users WHERE login = :n"), {"n": name}).first():
                raise UserError(f"user {name} exists already; use `pathomics users grant` to add centers")
            existing = conn.execute(text("SELECT rolsuper, rolcanlogin FROM pg_roles WHERE rolname = :n"),
                                    {"n": name}).first()
            if existing is not None and existing[0]:
                raise UserError(f"{name} is a superuser of the server, not an application login")
            owner = conn.execute(text("SELECT 1 FROM pg_tables WHERE schemaname = current_schema() "
                                      "AND tableowner = :n LIMIT 1"), {"n": name}).first()
            if owner:
                raise UserError(f"{name} owns the registry tables; application logins must not be owners")
            ident = sql.Identifier(name)
            if existing is None:
                if not password:
                    raise UserError(f"a new user needs a password (--password) for {name}")
                options = sql.SQL(" CREATEROLE") if role == "admin" else sql.SQL("")
                _run(conn, sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}{}").format(
                    ident, sql.Literal(password), options))
            elif password:
                _run(conn, sql.SQL("ALTER ROLE {} LOGIN PASSWORD {}").format(ident, sql.Literal(password)))
            _run(conn, sql.SQL("GRANT {} TO {}").format(sql.Identifier(groups[role]), ident))
            conn.execute(text("INSERT INTO app_users (login, role, disabled) VALUES (:n, :r, false)"),
                         {"n": name, "r": role})
            for center_id in ids.values():
                conn.execute(text("INSERT INTO user_centers (login, center_id) VALUES (:n, :c)"),
                             {"n": name, "c": center_id})
    except _server_errors() as exc:
        raise _privilege_error(exc, "adding a user") from None
    return UserInfo(login=name, role=role, disabled=False, centers=list(ids))


def list_users(registry: Registry) -> list[UserInfo]:
    """Every login of the registry, with its role, status and centers (sorted by login)."""
    with _admin_session(registry) as conn:
        rows = conn.execute(text(
            "SELECT u.login, u.role, u.disabled OR NOT coalesce(r.rolcanlogin, false), "
            "       coalesce(array_agg(c.code ORDER BY c.code) FILTER (WHERE c.code IS NOT NULL), '{}') "
            "FROM app_users u LEFT JOIN pg_roles r ON r.rolname = u.login "
            "LEFT JOIN user_centers uc ON uc.login = u.login LEFT JOIN centers c ON c.id = uc.center_id "
            "GROUP BY u.login, u.role, u.disabled, r.rolcanlogin ORDER BY u.login")).all()
    return [UserInfo(login=r[0], role=r[1], disabled=bool(r[2]), centers=list(r[3])) for r in rows]


def _known_user(conn, name: str) -> None:
    if not conn.execute(text("SELECT 1 FROM app_users WHERE login = :n"), {"n": name}).first():
        raise UserError(f"no user {name!r} in this registry; see `pathomics users list`")


def _set_login(registry: Registry, name: str, enabled: bool) -> None:
    from psycopg import sql

    name = _check_login(name)
    try:
        with _admin_session(registry) as conn:
            _known_user(conn, name)
            _run(conn, sql.SQL("ALTER ROLE {} " + ("LOGIN" if enabled else "NOLOGIN")).format(
                sql.Identifier(name)))
            conn.execute(text("UPDATE app_users SET disabled = :d WHERE login = :n"),
                         {"d": not enabled, "n": name})
    except _server_errors() as exc:
        raise _privilege_error(exc, "disabling a user" if not enabled else "enabling a user") from None


def disable_user(registry: Registry, name: str) -> None:
    """``ALTER ROLE name NOLOGIN``: the login can no longer connect (to any database of the
    server: a login is cluster-wide); its rows and audit history stay."""
    _set_login(registry, name, enabled=False)


def enable_user(registry: Registry, name: str) -> None:
    _set_login(registry, name, enabled=True)


def grant_centers(registry: Registry, name: str, centers: Iterable[str]) -> UserInfo:
    """Add centers (codes) to coordinator ``name``; centers it has already are kept."""
    name = _check_login(name)
    centers = [c for c in centers if c]
    if not centers:
        raise UserError("name at least one --center")
    try:
        with _admin_session(registry) as conn:
            _known_user(conn, name)
            role = conn.execute(text("SELECT role FROM app_users WHERE login = :n"), {"n": name}).scalar_one()
            if role != "coordinator":
                raise UserError(f"{name} is a {role}, who sees every center; centers scope coordinators")
            for center_id in _center_ids(conn, centers).values():
                conn.execute(text("INSERT INTO user_centers (login, center_id) VALUES (:n, :c) "
                                  "ON CONFLICT DO NOTHING"), {"n": name, "c": center_id})
    except _server_errors() as exc:
        raise _privilege_error(exc, "granting centers") from None
    return next(u for u in list_users(registry) if u.login == name)


def current_role_of(registry: Registry) -> tuple[str, str, list[str]]:
    """``(login, role, center codes)`` of the registry's connection.

    SQLite: ``(operating-system user, "admin", [])`` — the file's owner may do everything.
    PostgreSQL: the login (``session_user``) and its role from ``app_users``; a login that is
    not listed is ``admin`` when it is a superuser or a member of the admin group (the login
    that created the registry), else ``""`` (no role: nothing is allowed)."""
    from pathomics_desktop.registry.audit import current_user

    if registry.dialect != "postgresql":
        return current_user(), "admin", []
    with registry.engine.connect() as conn:
        login = conn.execute(text("SELECT session_user")).scalar_one()
        has_roles = conn.execute(text("SELECT to_regclass('app_users') IS NOT NULL")).scalar_one()
        if not has_roles:  # schema before 0005: no roles yet
            return login, "admin", []
        row = conn.execute(text("SELECT role FROM app_users WHERE login = :n"), {"n": login}).first()
        if row is not None:
            centers = [r[0] for r in conn.execute(text(
                "SELECT c.code FROM user_centers uc JOIN centers c ON c.id = uc.center_id "
                "WHERE uc.login = :n ORDER BY c.code"), {"n": login})]
            return login, row[0], centers
        admin = conn.execute(text(
            "SELECT r.rolsuper OR pg_has_role(session_user, a.pg_role, 'MEMBER') "
            "FROM pg_roles r, app_roles a WHERE r.rolname = session_user AND a.role = 'admin'")).scalar()
        return login, ("admin" if admin else ""), []


_LABEL_CACHE: "weakref.WeakKeyDictionary[Registry, str]" = weakref.WeakKeyDictionary()


def user_label_text(user: str, registry: Registry) -> str:
    """The status bar's user text: ``User: tester`` on SQLite; on PostgreSQL the login and its
    role (and a coordinator's centers), e.g. ``User: anna (coordinator: A, B)``. Asked once per
    registry; a server that cannot be asked leaves the plain user name."""
    if registry.dialect != "postgresql":
        return f"User: {user}"
    text_ = _LABEL_CACHE.get(registry)
    if text_ is None:
        try:
            login, role, centers = current_role_of(registry)
        except Exception:  # noqa: BLE001 - a status line never raises; the views report errors
            return f"User: {user}"
        detail = f"{role}: {', '.join(centers)}" if centers else (role or "no role in this registry")
        text_ = _LABEL_CACHE[registry] = f"User: {login} ({detail})"
    return text_


def refused_by_server(exc: BaseException) -> UserError | None:
    """A :class:`UserError` for a change the server refused to the login's role (privilege or
    row-security check, SQLSTATE 42501), else ``None``; for the session and the GUI to show
    instead of a traceback."""
    orig = getattr(exc, "orig", exc)
    if getattr(orig, "sqlstate", None) != "42501":
        return None
    detail = str(orig).strip().splitlines()[0] if str(orig).strip() else "permission denied"
    return UserError(f"the server refused this to your role ({detail}); ask an admin of the "
                     "registry if you need it (`pathomics users list` shows the roles)")
