"""``pathomics users add|list|disable|enable|grant``: accounts of a PostgreSQL registry.

They connect with the project's database URL, or ``--admin-url`` (an admin login's URL);
see :mod:`pathomics_desktop.registry.users`.
"""

from __future__ import annotations

import argparse
import json
import sys
from contextlib import contextmanager


def _add_common(parser: argparse.ArgumentParser) -> None:
    from pathomics_desktop.registry.cli import add_project_option

    parser.add_argument("--admin-url", metavar="URL", default=None,
                        help="connect as this admin (postgresql://admin:password@host/db) instead of "
                             "the project's database URL")
    add_project_option(parser)


def register(sub) -> None:
    from pathomics_desktop.cli import command_group
    from pathomics_desktop.registry.users import ROLES

    group = command_group(sub, "users", help="accounts and roles of a PostgreSQL registry (admins)")
    p = group.add_parser("add", help="create a login with a role (and centers, for coordinators)")
    p.add_argument("name")
    p.add_argument("--role", required=True, choices=ROLES)
    p.add_argument("--center", action="append", default=[], metavar="C",
                   help="center code (coordinators; repeat for several)")
    p.add_argument("--password", default=None,
                   help="the login's password ('-' reads it from standard input)")
    _add_common(p)
    p.set_defaults(func=cmd_add)

    p = group.add_parser("list", help="logins of this registry with role, centers and status")
    p.add_argument("--json", action="store_true")
    _add_common(p)
    p.set_defaults(func=cmd_list)

    for verb, helptext in (("disable", "the login can no longer connect"),
                           ("enable", "the login may connect again")):
        p = group.add_parser(verb, help=helptext)
        p.add_argument("name")
        _add_common(p)
        p.set_defaults(func=cmd_disable if verb == "disable" else cmd_enable)

    p = group.add_parser("grant", help="add centers to a coordinator")
    p.add_argument("name")
    p.add_argument("--center", action="append", default=[], metavar="C", required=True)
    _add_common(p)
    p.set_defaults(func=cmd_grant)


@contextmanager
def _registry(args):
    from pathomics_desktop.project import open_project
    from pathomics_desktop.registry.database import open_registry

    url = args.admin_url or open_project(args.project).database_url
    registry = open_registry(url)
    try:
        yield registry
    finally:
        registry.dispose()


def _centers(values: list[str]) -> list[str]:
    """``--center A --center B`` or ``--center A,B``."""
    return [c.strip() for v in values for c in v.split(",") if c.strip()]


def cmd_add(args) -> int:
    from pathomics_desktop.registry.users import add_user

    password = args.password
    if password == "-":
        password = sys.stdin.readline().rstrip("\n")
    with _registry(args) as registry:
        user = add_user(registry, args.name, args.role, password=password, centers=_centers(args.center))
    centers = f" for center {', '.join(user.centers)}" if user.centers else ""
    print(f"added {user.login} as {user.role}{centers}")
    if user.role == "coordinator" and not user.centers:
        print(f"note: {user.login} sees no patients until `pathomics users grant {user.login} --center C`")
    return 0


def cmd_list(args) -> int:
    from pathomics_desktop.registry.users import list_users

    with _registry(args) as registry:
        users = list_users(registry)
    if args.json:
        print(json.dumps([u.__dict__ for u in users], indent=2))
        return 0
    print(f"{'login':<24} {'role':<12} {'status':<9} centers")
    for u in users:
        print(f"{u.login:<24} {u.role:<12} {'disabled' if u.disabled else 'active':<9} "
              f"{', '.join(u.centers) or ('(none)' if u.role == 'coordinator' else '(all)')}")
    return 0


def cmd_disable(args) -> int:
    from pathomics_desktop.registry.users import disable_user

    with _registry(args) as registry:
        disable_user(registry, args.name)
    print(f"disabled {args.name}: the login can no longer connect")
    return 0


def cmd_enable(args) -> int:
    from pathomics_desktop.registry.users import enable_user

    with _registry(args) as registry:
        enable_user(registry, args.name)
    print(f"enabled {args.name}")
    return 0


def cmd_grant(args) -> int:
    from pathomics_desktop.registry.users import grant_centers

    with _registry(args) as registry:
        user = grant_centers(registry, args.name, _centers(args.center))
    print(f"{user.login} now coordinates {', '.join(user.centers)}")
    return 0
