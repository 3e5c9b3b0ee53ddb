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
