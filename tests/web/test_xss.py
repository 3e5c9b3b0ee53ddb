"""Attacker-controlled log content shown in every page: never markup, never script.

Payloads from ../shared/data/web/payloads (PayloadsAllTheThings / payloadbox)
are ingested as URLs, user agents, user names and DNS names into a fresh
server, then every page that shows them is opened in headless Chromium. A
payload that became markup would raise a dialog, run, trip the CSP (which
blocks inline script, so an injected one shows up as a violation), add an
`on*` attribute or an inline script element, or stretch the layout.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from urllib.parse import quote

import httpx
import pytest
from playwright.sync_api import Browser, Page

from tests.helpers import DATA, LightsocServer, cli, write_config
from tests.web.browser import browser_fixture, watch  # noqa: F401
from tests.web.ui_server import subprocess_input

PAYLOADS = DATA / "web" / "payloads"
PASSWORD = "xss-admin-password"
VIEWPORT = 1280


def payloads(n: int = 60) -> list[str]:
    """`n` markup-bearing payloads spread over the XSS list, plus SQLi and traversal ones."""
    xss = [
        p
        for p in (PAYLOADS / "XSS_Injection.txt").read_text(errors="replace").splitlines()
        if any(c in p for c in "<>\"'") and len(p) < 400
    ]
    step = max(1, len(xss) // n)
    picked = xss[::step][:n]
    for name in ("SQL_Injection.txt", "Command_Injection.txt"):
        lines = [p for p in (PAYLOADS / name).read_text(errors="replace").splitlines() if p]
        picked += lines[:: max(1, len(lines) // 10)][:10]
    picked += ['"><img src=x onerror=alert(document.domain)>', "</script><script>alert(1)</script>"]
    return picked


def documents(items: list[str]) -> list[dict]:
    docs = []
    for i, p in enumerate(items):
        ip = f"203.0.113.{i % 200 + 1}"
        ts = f"2026-11-29T{10 + i % 10:02d}:{i % 60:02d}:00Z"
        docs += [
            {
                "@timestamp": ts,
                "message": p,
                "event": {"dataset": "xss.web"},
                "source": {"ip": ip},
                "url": {"original": "/search?q=" + p, "path": "/" + p[:80]},
                "user_agent": {"original": p},
                "http": {"request": {"method": "GET"}, "response": {"status_code": 200}},
            },
            {
                "@timestamp": ts,
                "message": f"Failed password for {p} from {ip}",
                "event": {"dataset": "xss.auth", "action": "ssh_login", "outcome": "failure"},
                "source": {"ip": ip},
                "user": {"name": p},
            },
            {
                "@timestamp": ts,
                "event": {"dataset": "xss.dns"},
                "source": {"ip": ip},
                "dns": {"question": {"name": p[:200] + ".example.com"}},
            },
        ]
    return docs


class XssServer:
    def __init__(self, server: LightsocServer, items: list[str]) -> None:
        self.server = server
        self.url = server.url
        self.items = items


@pytest.fixture(scope="module")
def xss_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[XssServer]:
    root = tmp_path_factory.mktemp("xss")
    data_dir = root / "data"
    add = subprocess_input(
        ["user", "add", "adm", "--role", "admin", "--data-dir", str(data_dir)], PASSWORD
    )
    assert add.returncode == 0, add.stderr
    token = cli("user", "token", "--scope", "ingest", "--data-dir", data_dir).stdout.strip()
    config = write_config(root / "lightsoc.yml", {}, data_dir=data_dir)
    server = LightsocServer(["--config", config], cwd=root, data_dir=data_dir)
    items = payloads()
    try:
        server.start()
        body = b"".join(json.dumps(d).encode() + b"\n" for d in documents(items))
        resp = httpx.post(
            f"{server.url}/api/v1/ingest",
            content=body,
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/x-ndjson"},
            timeout=120,
        )
        assert resp.status_code == 200, resp.text
        assert resp.json()["events"] == 3 * len(items)
        yield XssServer(server, items)
    finally:
        server.ensure_stopped()


def login(page: Page, url: str) -> None:
    page.goto(f"{url}/login")
    page.fill("input[name=username]", "adm")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{url}/")


def injected(page: Page) -> list[str]:
    """Markup that only an injection could have made, and a layout it broke."""
    return page.evaluate(
        """(viewport) => {
        const found = [];
        for (const s of document.querySelectorAll('script')) {
            if (!s.src) found.push('inline script: ' + s.textContent.slice(0, 80));
        }
        for (const el of document.querySelectorAll('*')) {
            for (const a of el.attributes) {
                if (a.name.startsWith('on')) found.push('attribute ' + a.name + ' on ' + el.tagName);
                if (/^\\s*javascript:/i.test(a.value) && ['href', 'src', 'action', 'formaction'].includes(a.name))
                    found.push('javascript: URL in ' + el.tagName);
            }
        }
        for (const tag of ['iframe', 'object', 'embed', 'svg script', 'base', 'meta[http-equiv]'])
            if (document.querySelector(tag)) found.push('element ' + tag);
        if (document.documentElement.scrollWidth > viewport * 1.25)
            found.push('layout: page is ' + document.documentElement.scrollWidth + 'px wide');
        if (!document.querySelector('nav.side') || !document.querySelector('header.top'))
            found.push('layout: navigation or header missing');
        return found;
    }""",
        VIEWPORT,
    )


def visit(page: Page, url: str) -> list[str]:
    resp = page.goto(url)
    assert resp is not None and resp.status < 400, (url, resp and resp.status)
    page.wait_for_load_state("networkidle")
    return injected(page)


def test_payloads_stay_text_on_every_page(xss_server: XssServer, browser: Browser) -> None:
    context = browser.new_context(viewport={"width": VIEWPORT, "height": 900})
    page = context.new_page()
    errors = watch(page)
    url = xss_server.url
    login(page, url)
    cols = (
        "@timestamp,source.ip,url.original,user_agent.original,user.name,dns.question.name,message"
    )
    pages = [
        "/",
        f"/search?q=event.dataset:xss.*&since=all&fields={quote(cols)}",
        "/alerts?since=all",
        "/entity/203.0.113.1?since=all",
        "/cases",
        "/rules",
        "/intel",
        "/connects",
        "/sources",
        "/settings",
    ]
    # a payload typed into the search box, an entity page of a payload user name
    for p in xss_server.items[:: max(1, len(xss_server.items) // 6)]:
        pages.append(f"/search?q={quote(p)}&since=all")
        pages.append(f"/entity/{quote(p, safe='')}?since=all")
    alerts = page.request.get(f"{url}/api/v1/alerts?since=all&limit=5").json()["alerts"]
    pages += [f"/alerts/{a['id']}" for a in alerts]
    problems = {}
    for path in pages:
        found = visit(page, url + path)
        if found:
            problems[path] = found
    # the rows really show the payload text, as text
    page.goto(f"{url}/search?q=event.dataset:xss.auth&since=all&fields=user.name")
    page.wait_for_load_state("networkidle")
    shown = page.inner_text("main")
    assert sum(p.strip()[:30] in shown for p in xss_server.items) >= len(xss_server.items) // 3
    context.close()
    assert problems == {}
    assert [e for e in errors if e.startswith(("dialog:", "pageerror:", "csp"))] == []


def test_login_next_parameter_is_not_a_way_in(xss_server: XssServer, browser: Browser) -> None:
    context = browser.new_context()
    page = context.new_page()
    errors = watch(page)
    for nxt in ['"><script>alert(1)</script>', "javascript:alert(1)", "//evil.example/"]:
        page.goto(f"{xss_server.url}/login?next={quote(nxt, safe='')}")
        assert page.locator('form[action="/login"] input[name=next]').input_value() == "/"
        assert injected(page) == ["layout: navigation or header missing"]  # the login page has none
    context.close()
    assert errors == []
