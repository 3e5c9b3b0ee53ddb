"""Who is asking, and may they: sessions, tokens, roles, CSRF, login rate limit.

Every page and every `/api/v1` endpoint but health takes a principal from a
`Bearer` token or the session cookie. A cookie is sent by the browser on its
own, so a state change made with one must also carry the session's CSRF token
(`X-CSRF-Token` header or `csrf_token` form field); a bearer token is never
ambient and needs none.
"""

from __future__ import annotations

import hmac
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated

import annotated_types
from fastapi import HTTPException, Request

from lightsoc.auth import role_rank, token_role
from lightsoc.auth.audit import AuditLog
from lightsoc.auth.users import UserStore
from lightsoc.store.state import StateStore

SESSION_COOKIE = "lightsoc_session"
CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf_token"
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
#: The principal name of a token that belongs to no user (the first-start admin token)
SYSTEM_TOKEN_OWNER = "token"
#: A row id of a state table (path parameter or body item): SQLite stores 64-bit integers,
#: so a larger number is a 422 up front instead of an OverflowError (a 500) in the query
RowId = Annotated[int, annotated_types.Interval(ge=0, le=2**63 - 1)]


@dataclass(frozen=True)
class Principal:
    name: str
    role: str
    via: str  # "session" or "token"
    locale: str = "en"
    csrf: str | None = None
    token_name: str | None = None

    @property
    def actor(self) -> str:
        """How the audit log and alert history name who did something."""
        if self.via == "token":
            if self.name == SYSTEM_TOKEN_OWNER:
                return f"token:{self.token_name}"
            return f"{self.name} (token {self.token_name})"
        return self.name

    def can(self, role: str) -> bool:
        return role_rank(self.role) >= role_rank(role)


class LoginRequiredError(Exception):
    """A page was asked for without a session: the app redirects to /login."""


class RateLimiter:
    """At most `limit` hits per `window` seconds per key (sliding window, in memory).

    Logins count failures only: a client that keeps guessing waits, one that
    logs in correctly is never slowed down."""

    def __init__(self, limit: int, window: float) -> None:
        self.limit = limit
        self.window = window
        self._hits: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def wait(self, key: str) -> float:
        """0 if `key` may try again now, else the seconds until it may."""
        now = time.monotonic()
        with self._lock:
            hits = self._hits.get(key)
            while hits and hits[0] <= now - self.window:
                hits.popleft()
            if hits is None or len(hits) < self.limit:
                return 0.0
            return hits[0] + self.window - now

    def hit(self, key: str) -> None:
        now = time.monotonic()
        with self._lock:
            if len(self._hits) > 10_000:  # an address sweep must not grow memory forever
                self._hits = {
                    k: v for k, v in self._hits.items() if v and v[-1] > now - self.window
                }
            self._hits.setdefault(key, deque()).append(now)


def client_ip(request: Request) -> str:
    return request.client.host if request.client else "-"


class Security:
    def __init__(
        self,
        state: StateStore,
        users: UserStore,
        audit: AuditLog,
        *,
        cookie_secure: str = "auto",
        login_limit: int = 20,
        login_window: float = 60.0,
    ) -> None:
        self.state = state
        self.users = users
        self.audit = audit
        self.cookie_secure = cookie_secure
        self.login_limiter = RateLimiter(login_limit, login_window)

    def secure_cookie(self, request: Request) -> bool:
        """`Secure` cookies when served over https (`auto`), or as configured."""
        if self.cookie_secure == "auto":
            return request.url.scheme == "https"
        return self.cookie_secure == "always"

    def principal(self, request: Request) -> Principal | None:
        """The caller, from a bearer token or a live session; None if neither."""
        cached = getattr(request.state, "principal", False)
        if cached is not False:
            return cached
        found: Principal | None = None
        auth = request.headers.get("authorization", "")
        scheme, _, value = auth.partition(" ")
        if scheme.lower() == "bearer" and value:
            found = self._token_principal(value.strip())
        elif not auth:
            cookie = request.cookies.get(SESSION_COOKIE)
            session = self.users.session(cookie) if cookie else None
            if session is not None:
                u = session.user
                found = Principal(u.name, u.role, "session", u.locale, session.csrf)
        request.state.principal = found
        return found

    def _token_principal(self, token: str) -> Principal | None:
        info = self.state.verify_token(token)
        if info is None:
            return None
        locale = "en"
        owner_role = None
        if info.owner is not None:
            owner = self.users.get(info.owner)
            if owner is None or owner.disabled:
                return None
            owner_role, locale = owner.role, owner.locale
        role = token_role(info.scope, owner_role)
        if role is None:  # an ingest token reads nothing
            return Principal(info.owner or SYSTEM_TOKEN_OWNER, "", "token", locale, None, info.name)
        return Principal(info.owner or SYSTEM_TOKEN_OWNER, role, "token", locale, None, info.name)

    async def check_csrf(self, request: Request, principal: Principal) -> None:
        if principal.via != "session" or request.method not in UNSAFE_METHODS:
            return
        sent = request.headers.get(CSRF_HEADER)
        if sent is None and request.headers.get("content-type", "").startswith(
            ("application/x-www-form-urlencoded", "multipart/form-data")
        ):
            sent = str((await request.form()).get(CSRF_FIELD) or "")
        if not sent or not principal.csrf or not hmac.compare_digest(sent, principal.csrf):
            raise HTTPException(403, "missing or wrong CSRF token")

    def require(self, role: str) -> Callable[[Request], Awaitable[Principal]]:
        """An API dependency: the caller if they have at least `role` (401/403 otherwise)."""

        async def dependency(request: Request) -> Principal:
            principal = self.principal(request)
            if principal is None:
                raise HTTPException(
                    401,
                    "log in or send a valid API token",
                    headers={"WWW-Authenticate": "Bearer"},
                )
            await self.check_csrf(request, principal)
            if not principal.role:
                raise HTTPException(403, "an ingest token only ingests")
            if not principal.can(role):
                raise HTTPException(403, f"this needs the {role} role")
            return principal

        dependency.required_role = role  # type: ignore[attr-defined] # the authz matrix test reads it
        return dependency

    def page(self, role: str = "viewer") -> Callable[[Request], Awaitable[Principal]]:
        """A page dependency: like `require`, but no session redirects to the login page."""
        api = self.require(role)

        async def dependency(request: Request) -> Principal:
            if self.principal(request) is None:
                raise LoginRequiredError
            return await api(request)

        dependency.required_role = role  # type: ignore[attr-defined]
        dependency.page = True  # type: ignore[attr-defined]
        return dependency
