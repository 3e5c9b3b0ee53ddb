"""`lightsoc user`: web UI users and API tokens.

    lightsoc user add NAME --role viewer|analyst|admin   (password from stdin when piped)
    lightsoc user list
    lightsoc user passwd NAME                            (password from stdin when piped)
    lightsoc user set NAME [--role R] [--locale L] [--disable | --enable]
    lightsoc user token [--scope read|ingest|admin] [--name N] [--user NAME]

Like `lightsoc alerts`, this opens the state store directly: access to the
data directory is the authority. Passwords never appear on the command line
(they would be in the process list and shell history): a terminal is asked
twice, a pipe gives one line. Changes are written to the audit log.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from collections.abc import Callable

NAME = "user"
HELP = "web UI users (add, list, passwd, set) and API tokens"
ACTIONS = ("add", "list", "passwd", "set", "token")


def add_arguments(parser: argparse.ArgumentParser, common: Callable[..., None]) -> None:
    from lightsoc.auth import LOCALES, ROLES

    parser.add_argument("action", choices=ACTIONS, metavar="ACTION", help=", ".join(ACTIONS))
    parser.add_argument("name", nargs="?", default=None, metavar="NAME", help="the user")
    parser.add_argument("--role", choices=ROLES, default=None)
    parser.add_argument("--locale", choices=LOCALES, default=None)
    state = parser.add_mutually_exclusive_group()
    state.add_argument("--disable", action="store_true", help="set: the user cannot log in")
    state.add_argument("--enable", action="store_true", help="set: the user can log in again")
    parser.add_argument("--scope", choices=["admin", "read", "ingest"], default="read")
    parser.add_argument("--name", dest="token_name", default="cli", help="token: its name")
    parser.add_argument("--user", default=None, help="token: the user it acts as")
    common(parser)


def read_password() -> str:
    if not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\r\n")
    first = getpass.getpass("Password: ")
    if getpass.getpass("Again: ") != first:
        from lightsoc.cli import UsageError

        raise UsageError("the passwords differ")
    return first


def run(args: argparse.Namespace) -> int:
    from lightsoc.auth.audit import AuditLog
    from lightsoc.auth.users import UserError, UserStore
    from lightsoc.cli import UsageError, _config, out
    from lightsoc.store.state import StateStore

    if args.action in ("add", "passwd", "set") and not args.name:
        raise UsageError(f"user {args.action}: give the user NAME")
    if args.action == "add" and not args.role:
        raise UsageError("user add: give --role viewer|analyst|admin")
    config = _config(args)
    config.data_dir.mkdir(parents=True, exist_ok=True)
    state = StateStore.for_data_dir(config.data_dir, config.store.state)
    users, audit = UserStore(state), AuditLog(state)
    actor = f"cli:{getpass.getuser()}"
    try:
        if args.action == "token":
            if args.user and users.get(args.user) is None:
                raise UsageError(f"no user {args.user!r}")
            token = state.create_token(args.token_name, args.scope, owner=args.user)
            audit.record(actor, "token_create", args.token_name, scope=args.scope, user=args.user)
            out.print(token, markup=False)
        elif args.action == "list":
            for u in users.list():
                flags = " disabled" if u.disabled else ""
                out.print(f"{u.name}\t{u.role}\t{u.locale}{flags}", markup=False)
        elif args.action == "add":
            users.add(args.name, args.role, read_password(), args.locale or "en")
            audit.record(actor, "user_add", args.name, role=args.role)
            out.print(f"user {args.name} added ({args.role})", markup=False)
        elif args.action == "passwd":
            users.update(args.name, password=read_password())
            audit.record(actor, "user_password", args.name)
            out.print(f"password of {args.name} changed; their sessions ended", markup=False)
        else:
            disabled = True if args.disable else False if args.enable else None
            users.update(args.name, role=args.role, locale=args.locale, disabled=disabled)
            audit.record(actor, "user_change", args.name, role=args.role, disabled=disabled)
            out.print(f"user {args.name} changed", markup=False)
    except UserError as exc:
        raise UsageError(str(exc)) from None
    finally:
        state.close()
    return 0
