"""Headless Chromium for UI tests: Debian's /usr/bin/chromium driven by Playwright's sync API.

No browser is downloaded (`playwright install` is never run); `scripts/setup.sh` installs
Debian's `chromium`. A test module pulls the fixtures in by importing them:

    from tests.web.browser import WatchedPage, browser_fixture, page_errors_fixture  # noqa: F401

    def test_page(page_errors: WatchedPage) -> None:
        page, errors = page_errors
        page.goto(url)
        assert errors == []

The fixtures are named `browser` and `page_errors` (pytest's `name=`) while their functions
are not, so a test's `browser`/`page_errors` argument does not shadow an import (ruff F811).
`errors` collects console errors, uncaught page errors, dialogs (dismissed at once, so an
XSS test asserts there is no "dialog:" entry) and CSP violations. Chromium reports a CSP
violation as a console error containing "Content Security Policy" (kept as "csp: ...");
the page's `securitypolicyviolation` event is recorded too ("csp-event: ..."), through a
Playwright init script that Chromium runs outside the page's CSP, so nothing inline is
added to the page itself.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Dialog, Page, Playwright, sync_playwright

CHROMIUM = Path("/usr/bin/chromium")
# Quiet, offline-friendly Chromium: no sandbox (we run as root), no GPU, and none of the
# background traffic (updates, sync, QUIC probes) a fresh profile would otherwise start.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
CSP_MARKER = "Content Security Policy"
_CSP_BINDING = "__lightsocCspViolation"
# Runs before any page script in every frame; reports each violation to the test process.
_CSP_LISTENER = (
    "document.addEventListener('securitypolicyviolation', (e) => {"
    f"  window.{_CSP_BINDING}(e.violatedDirective + ' ' + (e.blockedURI || '') +"
    "    ' ' + (e.sourceFile || '') + ':' + e.lineNumber);"
    "});"
)


class WatchedPage(NamedTuple):
    """A fresh page and the list of problems `watch` records for it."""

    page: Page
    errors: list[str]


def launch_browser(playwright: Playwright) -> Browser:
    """Debian's headless Chromium, launched the way every UI test needs it."""
    if not CHROMIUM.exists():
        raise RuntimeError(f"{CHROMIUM} is missing: run scripts/setup.sh (installs `chromium`)")
    return playwright.chromium.launch(
        executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
    )


def watch(page: Page) -> list[str]:
    """Record console errors, page errors, dialogs and CSP violations of `page`.

    Each entry is prefixed: "console:", "pageerror:", "dialog:", "csp:" or "csp-event:".
    Call it before `page.goto` so that nothing from the first load is missed.
    """
    errors: list[str] = []

    def on_console(msg: ConsoleMessage) -> None:
        if CSP_MARKER in msg.text:
            errors.append(f"csp: {msg.text}")
        elif msg.type == "error":
            # "Failed to load resource" names no URL in its text; its location does.
            where = msg.location.get("url", "")
            errors.append(f"console: {msg.text}" + (f" ({where})" if where else ""))

    def on_dialog(dialog: Dialog) -> None:
        errors.append(f"dialog: {dialog.type} {dialog.message}")
        dialog.dismiss()

    page.on("console", on_console)
    page.on("pageerror", lambda exc: errors.append(f"pageerror: {exc}"))
    page.on("dialog", on_dialog)
    page.expose_function(_CSP_BINDING, lambda text: errors.append(f"csp-event: {text}"))
    page.add_init_script(_CSP_LISTENER)
    return errors


def csp_violations(errors: list[str]) -> list[str]:
    """The CSP entries among `watch`'s records (console reports and events)."""
    return [e for e in errors if e.startswith(("csp:", "csp-event:"))]


@pytest.fixture(scope="module", name="browser")
def browser_fixture() -> Iterator[Browser]:
    """One headless Chromium per test module (launching takes about a second)."""
    with sync_playwright() as playwright:
        launched = launch_browser(playwright)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture(name="page_errors")
def page_errors_fixture(browser: Browser) -> Iterator[WatchedPage]:
    """A page in its own context (no shared cookies or storage), already watched."""
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    try:
        page = context.new_page()
        yield WatchedPage(page, watch(page))
    finally:
        context.close()
