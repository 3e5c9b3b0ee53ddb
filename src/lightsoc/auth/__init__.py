"""People and what they may do: users, roles, sessions, tokens, the audit log."""

from __future__ import annotations

#: Least to most privileged: a role may do everything the roles before it may.
ROLES = ("viewer", "analyst", "admin")
LOCALES = ("en", "zh-CN")


def role_rank(role: str) -> int:
    return ROLES.index(role)


def token_role(scope: str, owner_role: str | None) -> str | None:
    """What a token may do: a `read` token reads, an `admin` token acts with its
    owner's role (a system token without owner as admin), `ingest` only ingests."""
    if scope == "read":
        return "viewer"
    if scope == "admin":
        return owner_role or "admin"
    return None


def may_create_token(scope: str, owner_role: str, caller_role: str) -> bool:
    """May a caller acting as `caller_role` create a `scope` token for its owner?

    A token never does more than its creator may right now: a `read` token of
    an admin cannot mint an `admin` one, which would act as the admin. `admin`
    scope is open to every role because it acts with the owner's role; `ingest`
    writes events that raise alerts, which is configuring the system: admins only.
    """
    if caller_role not in ROLES:
        return False
    if scope == "ingest":
        return caller_role == "admin" and owner_role == "admin"
    wanted = token_role(scope, owner_role)
    return wanted is not None and role_rank(wanted) <= role_rank(caller_role)
