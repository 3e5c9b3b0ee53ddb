"""/intel and its API on the shared real server: uploads, hits after a real ingest, allow list.

Every feed and allow-list entry here has a name unique to this run, so the
shared server's other modules never see them (feeds are removed at the end).
"""

from __future__ import annotations

import json
import socket
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from lightsoc.auth.audit import AuditLog
from lightsoc.store.state import StateStore
from lightsoc.web.intel_api import MAX_UPLOAD
from tests.helpers import wait_until
from tests.web.browser import WatchedPage, browser_fixture, page_errors_fixture  # noqa: F401
from tests.web.ui_server import UiServer, browser_login, screenshot

FEEDS = "/api/v1/intel/feeds"
INTEL_DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "intel"
RUN = uuid.uuid4().hex[:8]


def upload(
    client: httpx.Client,
    source: str,
    content: bytes,
    filename: str = "list.txt",
    **fields: str,
) -> httpx.Response:
    return client.post(
        FEEDS,
        data={"source": source, **fields},
        files={"file": (filename, content, "text/plain")},
    )


def audit_entries(ui: UiServer, action: str) -> list[dict[str, Any]]:
    state = StateStore.for_data_dir(ui.data_dir)
    try:
        return AuditLog(state).find(action=action, limit=500)
    finally:
        state.close()


@pytest.fixture(scope="module")
def adm(ui_server: UiServer) -> Iterator[httpx.Client]:
    client = ui_server.login("adm")
    yield client
    # the feeds this module made, whatever a failed test left behind
    for feed in client.get(FEEDS).json()["feeds"]:
        if RUN in feed["name"]:
            client.delete(f"{FEEDS}/{feed['name']}")
    client.close()


def test_uploaded_feed_is_listed_and_flags_ingested_events(
    ui_server: UiServer, adm: httpx.Client
) -> None:
    name = f"t-intel-{RUN}"
    domain = f"c2-{RUN}.badhost.example"
    ip = "203.0.113.77"
    body = f"# test list\n{domain}\n{ip}\nnot an indicator !!\n".encode()
    resp = upload(adm, name, body, confidence="High", expires="30d")
    assert resp.status_code == 201, resp.text
    got = resp.json()
    assert (got["stored"], got["format"], got["junk"]) == (2, "text", 1)
    assert got["by_kind"]["domain"] == 1 and got["by_kind"]["ip"] == 1
    [feed] = [f for f in adm.get(FEEDS).json()["feeds"] if f["name"] == name]
    assert feed["by_kind"] == {"domain": 1, "ip": 1}
    assert (feed["confidence"], feed["active"], feed["expired"]) == ("High", 2, False)
    assert feed["expires"] > time.time() + 29 * 86400
    assert feed["hits"] == {"24h": 0, "7d": 0}
    [entry] = [e for e in audit_entries(ui_server, "intel_feed_upload") if e["target"] == name]
    assert entry["actor"] == "adm" and entry["detail"]["stored"] == 2

    # the running pipeline polls the store's version counter: keep ingesting until the
    # new indicators are active and an event carrying one comes back flagged
    ingest = ui_server.token_client()
    sent = 0

    def flagged() -> dict[str, Any] | None:
        nonlocal sent
        sent += 1
        doc = {
            "@timestamp": datetime.now(UTC).isoformat(),
            "event": {"dataset": "intel.test"},
            "source": {"ip": "10.9.8.7"},
            "dns": {"question": {"name": f"www{sent}.{domain}"}},
        }
        r = ingest.post(
            "/api/v1/ingest",
            content=json.dumps(doc).encode() + b"\n",
            headers={"Content-Type": "application/x-ndjson"},
        )
        assert r.status_code == 200, r.text
        hits = adm.get("/api/v1/intel/hits", params={"since": "24h", "feed": name}).json()
        return hits if hits["total"] else None

    hits = wait_until(flagged, 90, "the intel reload to flag an ingested event", interval=2)
    [event] = hits["events"][:1]
    assert event["threat.indicator.name"] == domain
    assert event["threat.indicator.provider"] == name
    assert event["threat.indicator.confidence"] == "High"
    assert event["threat.enrichments.matched.field"] == "dns.question.name"
    assert event["threat.enrichments.matched.atomic"].endswith(domain)
    assert hits["by_feed"] == [{"feed": name, "count": hits["total"]}]
    assert hits["top_values"][0]["value"].endswith(domain)
    # flagged events raise an alert of rule intel:<source> (High -> high)
    alerts = adm.get("/api/v1/alerts", params={"rule": f"intel:{name}", "since": "1h"}).json()
    assert alerts["total"] >= 1 and alerts["alerts"][0]["severity"] == "high"
    listing = adm.get(FEEDS).json()
    [feed] = [f for f in listing["feeds"] if f["name"] == name]
    assert feed["hits"]["24h"] >= 1 and feed["hits"]["7d"] >= feed["hits"]["24h"]
    assert listing["hits_total"]["24h"] >= feed["hits"]["24h"]
    # any role reads the page: the feed, its hits, a link to the matched value's entity page
    page = ui_server.login("vic").get("/intel")
    assert page.status_code == 200
    assert name in page.text and f'href="/entity/{event["threat.enrichments.matched.atomic"]}"' in (
        page.text
    )
    assert "/search?q=threat.indicator.provider%3A%22" + name + "%22&amp;since=24h" in page.text
    assert "upload-form" not in page.text and "data-remove-feed" not in page.text

    gone = adm.delete(f"{FEEDS}/{name}")
    assert gone.status_code == 204
    assert adm.delete(f"{FEEDS}/{name}").status_code == 404
    assert all(f["name"] != name for f in adm.get(FEEDS).json()["feeds"])
    assert any(e["target"] == name for e in audit_entries(ui_server, "intel_feed_remove"))


def test_real_feeds_load_in_their_formats(adm: httpx.Client) -> None:
    cases = [
        ("maltrail/malware/tron.txt", "auto", "maltrail"),
        ("stix21/indicator-for-malicious-url.json", "auto", "stix"),
        ("acsc-2020-008-IOCs.ndjson", "ecs", "ecs"),
    ]
    for rel, fmt, want in cases:
        path = INTEL_DATA / rel
        name = f"t-real-{want}-{RUN}"
        resp = upload(adm, name, path.read_bytes(), path.name, format=fmt, confidence="Low")
        assert resp.status_code == 201, (rel, resp.text)
        assert resp.json()["format"] == want and resp.json()["stored"] >= 1, resp.json()
        [feed] = [f for f in adm.get(FEEDS).json()["feeds"] if f["name"] == name]
        assert feed["indicators"] == resp.json()["stored"]
        assert adm.delete(f"{FEEDS}/{name}").status_code == 204
    # a file that is not in the format it is loaded as is refused whole
    bad = upload(adm, f"t-bad-{RUN}", b"not json at all", "x.json", format="stix")
    assert bad.status_code == 422 and "invalid JSON" in bad.json()["detail"]


def test_upload_needs_admin_csrf_and_valid_fields(ui_server: UiServer, adm: httpx.Client) -> None:
    name = f"t-denied-{RUN}"
    vic = ui_server.login("vic")
    assert upload(vic, name, b"evil.example\n").status_code == 403
    ana = ui_server.login("ana")
    assert upload(ana, name, b"evil.example\n").status_code == 403
    anon = httpx.Client(base_url=ui_server.url)
    assert upload(anon, name, b"evil.example\n").status_code == 401
    # a session without its CSRF token, and with a wrong one
    del adm.headers["X-CSRF-Token"]
    try:
        assert upload(adm, name, b"evil.example\n").status_code == 403
        wrong = adm.post(
            FEEDS,
            data={"source": name, "csrf_token": "wrong"},
            files={"file": ("a.txt", b"evil.example\n")},
        )
        assert wrong.status_code == 403
        # the form field is accepted in place of the header
        ok = adm.post(
            FEEDS,
            data={"source": name, "csrf_token": adm.csrf},  # type: ignore[attr-defined]
            files={"file": ("a.txt", b"evil.example\n")},
        )
        assert ok.status_code == 201, ok.text
    finally:
        adm.headers["X-CSRF-Token"] = adm.csrf  # type: ignore[attr-defined]
    assert vic.delete(f"{FEEDS}/{name}").status_code == 403
    assert adm.delete(f"{FEEDS}/{name}").status_code == 204
    for fields, want in (
        ({"format": "pdf"}, "format"),
        ({"confidence": "Certain"}, "confidence"),
        ({"expires": "soon"}, "expires"),
        ({"expires": "2001-01-01"}, "past"),
    ):
        resp = upload(adm, name, b"evil.example\n", **fields)
        assert resp.status_code == 422 and want in resp.json()["detail"], resp.text
    assert upload(adm, "../etc/passwd", b"evil.example\n").status_code == 422
    assert adm.post(FEEDS, data={"source": name}).status_code == 415  # not multipart
    no_file = adm.post(FEEDS, data={"source": name}, files={"other": ("a.txt", b"x.example")})
    assert no_file.status_code == 422 and "file" in no_file.json()["detail"]
    assert all(f["name"] != name for f in adm.get(FEEDS).json()["feeds"])


def test_oversize_upload_is_413(ui_server: UiServer, adm: httpx.Client) -> None:
    name = f"t-big-{RUN}"
    # a declared length over the cap is refused before the body is read
    host, port = ui_server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        cookie = "; ".join(f"{c.name}={c.value}" for c in adm.cookies.jar)
        head = (
            f"POST {FEEDS} HTTP/1.1\r\nHost: {host}\r\nCookie: {cookie}\r\n"
            f"X-CSRF-Token: {adm.csrf}\r\n"  # type: ignore[attr-defined]
            "Content-Type: multipart/form-data; boundary=b\r\n"
            f"Content-Length: {MAX_UPLOAD + (1 << 20)}\r\nConnection: close\r\n\r\n"
        )
        sock.sendall(head.encode() + b"--b\r\n")
        chunks = []  # headers and body may come in separate packets: read to the close
        while chunk := sock.recv(65536):
            chunks.append(chunk)
        answer = b"".join(chunks).decode(errors="replace")
    assert answer.startswith("HTTP/1.1 413"), answer[:300]
    assert "larger than 50 MB" in answer
    # a file one byte over the cap, in a request the length check lets through
    big = b"a.example\n" * (MAX_UPLOAD // 10) + b"x"
    resp = upload(adm, name, big)
    assert resp.status_code == 413, resp.text[:300]
    assert resp.headers["content-type"] == "application/problem+json"
    assert all(f["name"] != name for f in adm.get(FEEDS).json()["feeds"])
    # a body without a declared length (chunked) is not spooled to disk
    chunked = adm.post(
        FEEDS,
        content=iter([b"--b\r\n"]),
        headers={"Content-Type": "multipart/form-data; boundary=b"},
    )
    assert chunked.status_code == 411


def test_allow_list_add_and_remove_are_audited(ui_server: UiServer, adm: httpx.Client) -> None:
    value = f"trusted-{RUN}.example"
    body = {"field": "dns.question.name", "value": value, "comment": "our <b>resolver</b>"}
    vic = ui_server.login("vic")
    assert vic.post("/api/v1/allowlist", json=body).status_code == 403
    added = adm.post("/api/v1/allowlist", json=body)
    assert added.status_code == 201, added.text
    entry = added.json()
    assert (entry["field"], entry["value"], entry["comment"]) == (
        "dns.question.name",
        value,
        "our <b>resolver</b>",
    )
    assert adm.post("/api/v1/allowlist", json=body).status_code == 409
    bad_ip = adm.post("/api/v1/allowlist", json={"field": "source.ip", "value": "10.0.0.0/99"})
    assert bad_ip.status_code == 422 and "CIDR" in bad_ip.json()["detail"]
    assert adm.post("/api/v1/allowlist", json={"field": "no.such", "value": "x"}).status_code == 422
    listed = vic.get("/api/v1/allowlist").json()["entries"]
    assert any(e["id"] == entry["id"] and e["value"] == value for e in listed)
    page = vic.get("/intel").text
    assert value in page and "our &lt;b&gt;resolver&lt;/b&gt;" in page
    assert any(
        e["target"] == f"dns.question.name={value}" and e["actor"] == "adm"
        for e in audit_entries(ui_server, "allowlist_add")
    )
    assert vic.delete(f"/api/v1/allowlist/{entry['id']}").status_code == 403
    assert adm.delete(f"/api/v1/allowlist/{entry['id']}").status_code == 204
    assert adm.delete(f"/api/v1/allowlist/{entry['id']}").status_code == 404
    assert all(e["id"] != entry["id"] for e in vic.get("/api/v1/allowlist").json()["entries"])
    assert any(
        e["target"] == f"dns.question.name={value}"
        for e in audit_entries(ui_server, "allowlist_remove")
    )


def test_hits_api_validates_since(adm: httpx.Client) -> None:
    resp = adm.get("/api/v1/intel/hits", params={"since": "yesterday"})
    assert resp.status_code == 400
    ok = adm.get("/api/v1/intel/hits", params={"since": "7d", "limit": 5})
    assert ok.status_code == 200
    body = ok.json()
    assert set(body) >= {"total", "by_feed", "top_values", "events"} and len(body["events"]) <= 5
    spec = adm.get("/api/v1/openapi.json").json()
    upload_op = spec["paths"]["/api/v1/intel/feeds"]["post"]
    assert "multipart/form-data" in upload_op["requestBody"]["content"]
    assert {"/api/v1/intel/hits", "/api/v1/allowlist", "/api/v1/allowlist/{entry_id}"} <= set(
        spec["paths"]
    )
    assert "/intel" not in spec["paths"]


def test_intel_page_upload_and_allow_in_the_browser(
    ui_server: UiServer, page_errors: WatchedPage
) -> None:
    page, errors = page_errors
    name = f"ui-feed-{RUN}"
    domain = f"trusted-ui-{RUN}.example"
    browser_login(page, ui_server, "adm", "/intel")
    try:
        # a real maltrail list, read in place from the shared data
        page.set_input_files(
            "#upload-form input[name=file]", str(INTEL_DATA / "maltrail/malware/tron.txt")
        )
        page.fill("#upload-form input[name=source]", name)
        page.select_option("#upload-form select[name=confidence]", "Low")
        page.click("#upload-form button[type=submit]")
        row = page.locator(f"tr[data-feed='{name}']")
        row.wait_for()
        assert row.locator(".feed-count").inner_text() == "1"
        assert "maltrail" in row.inner_text()
        assert "domain 1" in row.inner_text()

        page.fill("#allow-form input[name=value]", domain)
        page.fill("#allow-form input[name=comment]", "UI test")
        page.click("#allow-form button[type=submit]")
        page.locator("td.allow-value", has_text=domain).wait_for()
        assert page.locator("#allow-status").inner_text() == ""
        screenshot(page, "intel")

        # removal asks once more on the button itself, then goes
        allow_row = page.locator("tr[data-allow-id]", has_text=domain)
        button = allow_row.locator("button[data-remove-allow]")
        button.click()
        button.click()
        page.locator("td.allow-value", has_text=domain).wait_for(state="detached")
        feed_button = page.locator(f"tr[data-feed='{name}'] button[data-remove-feed]")
        feed_button.click()
        feed_button.click()
        page.locator(f"tr[data-feed='{name}']").wait_for(state="detached")
    finally:
        client = ui_server.token_client()
        client.delete(f"{FEEDS}/{name}")
        for e in client.get("/api/v1/allowlist").json()["entries"]:
            if e["value"] == domain:
                client.delete(f"/api/v1/allowlist/{e['id']}")
    assert errors == []
