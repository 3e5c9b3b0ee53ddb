"""The browser harness and the vendored libraries, under the web UI's strict CSP.

A small Starlette app (the real `static/` directory, a test script from a temp dir, one
htmx fragment) runs under uvicorn in a thread on 127.0.0.1; headless Chromium loads it.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.responses import HTMLResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

import lightsoc.web
from tests.web.browser import (  # noqa: F401 (fixtures)
    WatchedPage,
    browser_fixture,
    csp_violations,
    page_errors_fixture,
)

STATIC = Path(lightsoc.web.__file__).parent / "static"
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
)
HTMX_CONFIG = (
    '<meta name="htmx-config" content=\'{"includeIndicatorStyles": false, '
    '"allowEval": false, "allowScriptTags": false}\'>'
)
LINE_RGB = (220, 38, 38)  # the chart's line colour, looked for in the canvas pixels

# Drawn from a file, never inline. A linear x axis of epoch milliseconds with our own tick
# labels: no date adapter needed. animation off, so the pixels are there once it returns.
CHART_JS = """
const t0 = Date.UTC(2024, 0, 1);
const points = [3, 7, 4, 9, 6, 12, 8, 10].map((y, i) => ({x: t0 + i * 3600e3, y}));
new Chart(document.getElementById("events-chart"), {
  type: "line",
  data: {datasets: [{label: "events", data: points, borderColor: "rgb(220, 38, 38)",
                     borderWidth: 4, pointRadius: 0}]},
  options: {
    animation: false, responsive: false,
    scales: {x: {type: "linear", min: t0, max: t0 + 7 * 3600e3,
                 ticks: {stepSize: 3600e3,
                         callback: (v) => new Date(v).toISOString().slice(11, 16)}}},
  },
});
document.body.dataset.chartReady = "1";
"""


def html_page(body: str, script: str = "") -> str:
    """A full HTML page that loads the vendored libraries (and our test script).

    The empty data: icon stops Chromium's /favicon.ico request, whose 404 is a console error.
    """
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>harness</title>{HTMX_CONFIG}
<link rel="icon" href="data:,">
<script src="/static/vendor/htmx.min.js"></script>
<script src="/static/vendor/chart.umd.min.js"></script>{script}
</head><body>{body}</body></html>"""


CLEAN_PAGE = html_page(
    '<canvas id="events-chart" width="600" height="300"></canvas>'
    '<button id="load" hx-get="/fragment" hx-target="#slot" hx-swap="innerHTML">load</button>'
    '<div id="slot">empty</div>',
    '\n<script src="/t/chart-test.js" defer></script>',
)
# The fragment carries a script: with allowScriptTags false htmx must not run it (it would
# also be a CSP violation if htmx re-created it as a live <script>).
FRAGMENT = '<p id="swapped">swapped in</p><script>alert("from fragment")</script>'
INLINE_PAGE = html_page("<p>inline</p><script>alert(1)</script>")


class SecurityHeaders:
    """Pure ASGI middleware: the web UI's CSP (and nosniff) on every response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                message["headers"] += [
                    (b"content-security-policy", CSP.encode()),
                    (b"x-content-type-options", b"nosniff"),
                ]
            await send(message)

        await self.app(scope, receive, send_with_headers)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The test site's base URL; uvicorn serves it from a thread until the module ends."""
    scripts = tmp_path_factory.mktemp("scripts")
    (scripts / "chart-test.js").write_text(CHART_JS)
    app = Starlette(
        routes=[
            Route("/", lambda _req: HTMLResponse(CLEAN_PAGE)),
            Route("/inline", lambda _req: HTMLResponse(INLINE_PAGE)),
            Route("/fragment", lambda _req: HTMLResponse(FRAGMENT)),
            Mount("/static", StaticFiles(directory=STATIC), name="static"),
            Mount("/t", StaticFiles(directory=scripts), name="t"),
        ]
    )
    port = free_port()
    config = uvicorn.Config(
        SecurityHeaders(app), host="127.0.0.1", port=port, log_level="warning", lifespan="off"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def test_vendored_files_served_as_javascript_with_csp(site: str) -> None:
    for name in ("htmx.min.js", "chart.umd.min.js"):
        resp = httpx.get(f"{site}/static/vendor/{name}")
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("text/javascript"), resp.headers
        assert resp.headers["content-security-policy"] == CSP
        assert resp.content == (STATIC / "vendor" / name).read_bytes()


def test_chart_and_htmx_work_under_strict_csp(
    site: str, page_errors: WatchedPage, tmp_path: Path
) -> None:
    page, errors = page_errors
    page.goto(site + "/")
    page.wait_for_selector("body[data-chart-ready='1']", timeout=10_000)
    assert page.evaluate("Chart.version") == "4.6.1"
    assert page.evaluate("htmx.version") == "2.0.11"
    # The <meta> config was read: no eval, no scripts from fragments, no injected styles.
    assert page.evaluate(
        "[htmx.config.allowEval, htmx.config.allowScriptTags, htmx.config.includeIndicatorStyles]"
    ) == [False, False, False]

    painted, line = page.evaluate(
        """([r, g, b]) => {
            const c = document.getElementById("events-chart");
            const px = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
            let painted = 0, line = 0;
            for (let i = 0; i < px.length; i += 4) {
                if (px[i + 3] === 0) continue;
                painted++;
                if (Math.abs(px[i] - r) < 30 && Math.abs(px[i + 1] - g) < 30
                    && Math.abs(px[i + 2] - b) < 30) line++;
            }
            return [painted, line];
        }""",
        list(LINE_RGB),
    )
    assert painted > 1000, painted  # axes, labels and the line
    assert line > 300, line  # the line itself, in its own colour

    assert page.locator("#slot").inner_text() == "empty"
    page.click("#load")
    page.wait_for_selector("#swapped", timeout=10_000)
    assert page.locator("#slot #swapped").inner_text() == "swapped in"

    shot = tmp_path / "harness.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert shot.stat().st_size > 1024
    # No CSP violation, console error, page error, nor dialog (the fragment's alert).
    assert errors == []


def test_inline_script_is_blocked_and_reported(site: str, page_errors: WatchedPage) -> None:
    page, errors = page_errors
    page.goto(site + "/inline")
    page.wait_for_function("typeof htmx === 'object' && typeof Chart === 'function'")
    # Both reports of the violation arrive asynchronously; wait for them, bounded.
    deadline = time.monotonic() + 5
    while not (
        any(e.startswith("csp:") for e in errors)
        and any(e.startswith("csp-event:") for e in errors)
    ):
        assert time.monotonic() < deadline, errors
        page.wait_for_timeout(50)
    assert not [e for e in errors if e.startswith("dialog:")], errors
    violations = csp_violations(errors)
    assert any("inline script" in v and "script-src" in v for v in violations), violations
    assert any(v.startswith("csp-event: script-src") for v in violations), violations
    assert errors == violations, errors  # nothing else went wrong
