"""A real `lightsoc run` over demo data with a user of each role, for UI and API tests.

`ui_server` (session scope) generates two hours of demo traffic once, adds
the users `adm` (admin), `ana` (analyst) and `vic` (viewer), and starts the
server. `ui.login(name)` returns an httpx client holding that user's session
cookie, with its CSRF token in `client.csrf` (send it as `X-CSRF-Token`).
Tests that change state (triage, cases, rules) must only touch what they
made or picked, since every UI test module shares this server.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from playwright.sync_api import Page

from tests.helpers import LIGHTSOC, LightsocServer, cli, env, write_config

PASSWORDS = {"adm": "admin-pass-0123", "ana": "analyst-pass-0123", "vic": "viewer-pass-0123"}
ROLE_OF = {"adm": "admin", "ana": "analyst", "vic": "viewer"}
LOGIN_TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')


class UiServer:
    def __init__(self, server: LightsocServer, root: Path) -> None:
        self.server = server
        self.root = root
        self.url = server.url
        self.data_dir = server.data_dir
        assert server.admin_token, server.output
        self.admin_token = server.admin_token

    def login(self, name: str, password: str | None = None) -> httpx.Client:
        """A client logged in as `name` (asserts the login worked)."""
        client = httpx.Client(base_url=self.url, timeout=30)
        resp = self.post_login(client, name, password or PASSWORDS[name])
        assert resp.status_code == 303, resp.text
        me = client.get("/api/v1/me")
        assert me.status_code == 200, me.text
        client.csrf = me.json()["csrf"]  # type: ignore[attr-defined]
        client.headers["X-CSRF-Token"] = client.csrf  # type: ignore[attr-defined]
        return client

    @staticmethod
    def post_login(client: httpx.Client, name: str, password: str) -> httpx.Response:
        form = client.get("/login")
        assert form.status_code == 200, form.text
        token = LOGIN_TOKEN.search(form.text)
        assert token, form.text
        return client.post(
            "/login",
            data={"username": name, "password": password, "csrf_token": token.group(1)},
        )

    def token_client(self, token: str | None = None) -> httpx.Client:
        return httpx.Client(
            base_url=self.url,
            timeout=30,
            headers={"Authorization": f"Bearer {token or self.admin_token}"},
        )


@pytest.fixture(scope="session")
def ui_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UiServer]:
    root = tmp_path_factory.mktemp("ui")
    data_dir = root / "data"
    res = cli("demo", "--hours", "2", "--no-serve", "--data-dir", data_dir, timeout=300)
    assert res.returncode == 0, res.stderr
    for name, password in PASSWORDS.items():
        add = subprocess_input(
            ["user", "add", name, "--role", ROLE_OF[name], "--data-dir", str(data_dir)],
            password,
        )
        assert add.returncode == 0, add.stderr
    config = write_config(root / "lightsoc.yml", {}, data_dir=data_dir)
    server = LightsocServer(["--config", config], cwd=root, data_dir=data_dir)
    try:
        server.start()
        yield UiServer(server, root)
    finally:
        server.ensure_stopped()


def subprocess_input(args: list[str], stdin: str) -> subprocess.CompletedProcess[str]:
    """`lightsoc ARGS` with `stdin` piped in (a password, say)."""
    return subprocess.run(
        [str(LIGHTSOC), *args],
        input=stdin + "\n",
        env=env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"


def browser_login(page: Page, ui: UiServer, name: str, next_path: str = "/") -> None:
    """Log `page` in as `name` through the real login form, landing on `next_path`."""
    page.goto(f"{ui.url}/login?next={quote(next_path, safe='')}")
    page.fill("input[name=username]", name)
    page.fill("input[name=password]", PASSWORDS[name])
    page.click("button[type=submit]")
    page.wait_for_url(f"{ui.url}{next_path}*")


def screenshot(page: Page, name: str, full_page: bool = False) -> Path:
    """Save a screenshot of the window (or the whole page) as docs/screenshots/NAME.png
    (the README shows them)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page)
    assert path.stat().st_size > 5000
    return path
