"""The authorisation matrix: every route x (no session, expired session, each role,
wrong CSRF token) against the real server.

The routes come from the app itself, so a new endpoint is covered the day it
is added, and one without an authentication dependency fails
`test_every_route_requires_a_role`. State-changing requests are only ever sent
in ways that must be refused (no session, wrong CSRF token, too small a role),
so the matrix changes nothing on the shared server.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from fastapi.routing import APIRoute

from lightsoc.auth import ROLES, role_rank
from lightsoc.runtime import open_stores
from lightsoc.store.state_users import sessions, users
from lightsoc.web.app import create_app
from tests.web.ui_server import UiServer, subprocess_input

#: Routes anyone may call: the login form, the language switch, health, static files.
PUBLIC = {("GET", "/login"), ("POST", "/login"), ("POST", "/locale"), ("GET", "/api/v1/health")}
UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}
#: A value for each path parameter, by name (anything that parses)
PARAM_VALUES = {"entity": "10.20.1.5", "value": "10.20.1.5", "name": "nobody-here"}
EXPIRED_USER = ("authz-expired", "authz-expired-pw")


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    role: str
    page: bool

    @property
    def url(self) -> str:
        def fill(m: re.Match[str]) -> str:
            name = m.group(1).split(":")[0]
            return PARAM_VALUES.get(name, "999999")

        return re.sub(r"{([^}]+)}", fill, self.path)

    @property
    def id(self) -> str:
        return f"{self.method} {self.path}"


def _required(route: APIRoute) -> tuple[str | None, bool]:
    stack = list(route.dependant.dependencies)
    while stack:
        dep = stack.pop()
        role = getattr(dep.call, "required_role", None)
        if role is not None:
            return role, bool(getattr(dep.call, "page", False))
        stack.extend(dep.dependencies)
    return None, False


def flat_routes(app: FastAPI) -> list[tuple[str, set[str], APIRoute]]:
    """(path, methods, route) of every API route, through included routers."""
    try:  # FastAPI >= 0.16x keeps included routers as such
        from fastapi.routing import iter_route_contexts
    except ImportError:
        return [(r.path, r.methods, r) for r in app.routes if isinstance(r, APIRoute)]
    return [
        (c.path, set(c.methods or ()), c.original_route)
        for c in iter_route_contexts(app.routes)
        if isinstance(c.original_route, APIRoute)
    ]


def app_routes(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[Route], list[str]]:
    """(routes with a role, routes with none that are not public)."""
    stores = open_stores(tmp_path_factory.mktemp("authz-app"))
    try:
        app = create_app(stores.events, stores.state)
        found, unprotected = [], []
        for path, methods, r in flat_routes(app):
            role, page = _required(r)
            for method in sorted(methods - {"HEAD", "OPTIONS"}):
                if role is None:
                    if (method, path) not in PUBLIC:
                        unprotected.append(f"{method} {path}")
                    continue
                found.append(Route(method, path, role, page))
        return found, unprotected
    finally:
        stores.close()


@pytest.fixture(scope="module")
def routes(tmp_path_factory: pytest.TempPathFactory) -> list[Route]:
    found, _ = app_routes(tmp_path_factory)
    return found


def test_every_route_requires_a_role(tmp_path_factory: pytest.TempPathFactory) -> None:
    found, unprotected = app_routes(tmp_path_factory)
    assert unprotected == []
    assert len(found) >= 10


@pytest.fixture(scope="module")
def clients(ui_server: UiServer) -> Iterator[dict[str, httpx.Client]]:
    made = {
        "viewer": ui_server.login("vic"),
        "analyst": ui_server.login("ana"),
        "admin": ui_server.login("adm"),
        "none": httpx.Client(base_url=ui_server.url, timeout=30),
    }
    name, password = EXPIRED_USER
    if subprocess_input(
        ["user", "add", name, "--role", "admin", "--data-dir", str(ui_server.data_dir)], password
    ).returncode not in (0, 2):
        raise AssertionError("could not add the expired-session user")
    expired = ui_server.login(name, password)
    engine = sa.create_engine(f"sqlite:///{ui_server.data_dir / 'state.sqlite'}")
    with engine.begin() as conn:
        uid = conn.execute(sa.select(users.c.id).where(users.c.name == name)).scalar_one()
        conn.execute(
            sessions.update()
            .where(sessions.c.user_id == uid)
            .values(expires=datetime.now(UTC) - timedelta(seconds=1))
        )
    engine.dispose()
    made["expired"] = expired
    yield made
    for c in made.values():
        c.close()


def send(client: httpx.Client, route: Route, csrf: str | None) -> httpx.Response:
    headers = {"X-CSRF-Token": csrf} if csrf is not None else {}
    if "X-CSRF-Token" in client.headers and csrf is None:
        headers["X-CSRF-Token"] = ""  # replaces the client's own
    body = {"json": {}} if route.method in UNSAFE else {}
    return client.request(route.method, route.url, headers=headers, follow_redirects=False, **body)


def refused_unauthenticated(route: Route, resp: httpx.Response) -> bool:
    """An API answers 401; a page (a form post too) sends the browser to the login page."""
    if route.page:
        return resp.status_code == 303 and resp.headers["location"].startswith("/login")
    return resp.status_code == 401


def test_matrix(routes: list[Route], clients: dict[str, httpx.Client]) -> None:
    failures: list[str] = []
    for route in routes:
        # no session, and a session past its lifetime: refused
        for who in ("none", "expired"):
            resp = send(clients[who], route, None)
            if not refused_unauthenticated(route, resp):
                failures.append(f"{route.id} {who}: {resp.status_code}")
        for role in ROLES:
            client = clients[role]
            allowed = role_rank(role) >= role_rank(route.role)
            if route.method in UNSAFE:
                # a wrong CSRF token is refused whatever the role
                resp = send(client, route, "wrong-" + client.csrf)
                if resp.status_code != 403:
                    failures.append(f"{route.id} {role} wrong csrf: {resp.status_code}")
                if not allowed:  # the right token, too small a role: refused
                    resp = send(client, route, client.csrf)
                    if resp.status_code != 403:
                        failures.append(f"{route.id} {role}: {resp.status_code}, not 403")
            else:
                resp = send(client, route, client.csrf)
                ok = resp.status_code not in (401, 403) if allowed else resp.status_code == 403
                if not ok or resp.status_code >= 500:
                    failures.append(f"{route.id} {role}: {resp.status_code} {resp.text[:100]}")
    assert failures == [], "\n".join(failures)
