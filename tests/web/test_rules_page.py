"""The /rules page and /api/v1/rules on the shared demo server (real `lightsoc run`).

Tests change only rules they create (a fresh id per run), so other modules'
alert counts are untouched.
"""

from __future__ import annotations

import uuid
from pathlib import Path

from playwright.sync_api import expect

from lightsoc.auth.audit import AuditLog
from lightsoc.config import parse_config
from lightsoc.detect.build import build_ruleset
from lightsoc.store.state import StateStore
from tests.helpers import cli_ndjson
from tests.web.browser import WatchedPage, browser_fixture, page_errors_fixture  # noqa: F401
from tests.web.ui_server import UiServer, browser_login, screenshot

SQLI_ID = "6b1d5e2a-4c1f-4f0e-9a51-0b7f0c7e5a01"
SQLI_FILE = Path(__file__).resolve().parents[2] / "rules" / "web" / "web_sqli_keywords.yml"


def new_rule(title: str, needle: str = "union") -> tuple[str, str]:
    """A small Sigma rule with a fresh id (so tests never touch each other's rules)."""
    rid = str(uuid.uuid4())
    text = f"""title: {title}
id: {rid}
name: test_{rid.replace("-", "_")}
status: experimental
logsource:
    category: webserver
detection:
    selection:
        cs-uri-query|contains: '{needle}'
    condition: selection
level: medium
"""
    return rid, text


def rules_by_id(ui: UiServer, **params: str) -> dict[str, dict]:
    resp = ui.login("vic").get("/api/v1/rules", params=params)
    assert resp.status_code == 200, resp.text
    return {r["id"]: r for r in resp.json()["rules"]}


def test_list_has_every_kind_with_hit_counts_matching_the_alerts_api(ui_server: UiServer) -> None:
    rules = rules_by_id(ui_server, since="7d")
    kinds = {r["kind"] for r in rules.values()}
    assert {"stream", "correlation"} <= kinds
    sqli = rules[SQLI_ID]
    assert (sqli["kind"], sqli["level"], sqli["enabled"]) == ("stream", "high", True)
    assert sqli["origin"] == "builtin:web/web_sqli_keywords.yml"
    admin = ui_server.token_client()
    with_alerts = [r for r in rules.values() if r["alerts"]]
    assert with_alerts, "the demo raises alerts"
    assert sqli in with_alerts
    for r in with_alerts[:6] + [sqli]:
        got = admin.get("/api/v1/alerts", params={"rule": r["id"], "since": "7d", "limit": 1})
        assert got.status_code == 200, got.text
        assert got.json()["total"] == r["alerts"], r["id"]
        assert r["hits"] >= r["alerts"]
    ml = [r for r in rules.values() if r["kind"] == "ml"]
    assert all(r["id"].startswith("ml-") and r["alerts"] for r in ml)
    bad = ui_server.login("vic").get("/api/v1/rules", params={"since": "soon"})
    assert bad.status_code == 400


def test_testing_the_real_sqli_rule_finds_the_demo_attacks(ui_server: UiServer) -> None:
    ana = ui_server.login("ana")
    resp = ana.post("/api/v1/rules/test", json={"yaml": SQLI_FILE.read_text(), "since": "24h"})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["events_scanned"] > 1000
    assert body["matches"] > 0
    assert body["per_rule"][0]["id"] == SQLI_ID
    assert 0 < len(body["events"]) <= 20
    for ev in body["events"]:
        assert ev["event.dataset"].startswith("nginx")
        assert "url.query" in ev


def test_validation_errors_are_400_with_the_message(ui_server: UiServer) -> None:
    ana = ui_server.login("ana")
    broken = ana.post("/api/v1/rules/test", json={"yaml": "title: [unclosed\n  - x: {"})
    assert broken.status_code == 400
    assert broken.headers["content-type"] == "application/problem+json"
    assert "not a Sigma rule" in broken.json()["detail"]
    _, text = new_rule("No Such Field")
    text = text.replace("cs-uri-query|contains", "cs-uri-query|nosuchmodifier")
    bad = ana.post("/api/v1/rules/test", json={"yaml": text})
    assert bad.status_code == 400
    assert "nosuchmodifier" in bad.json()["detail"]
    # validation answers 200 with the problems, so the editor shows them inline
    checked = ana.post("/api/v1/rules/validate", json={"yaml": text})
    assert checked.status_code == 200
    assert checked.json()["valid"] is False
    assert any("nosuchmodifier" in e for e in checked.json()["errors"])
    ok = ana.post("/api/v1/rules/validate", json={"yaml": new_rule("Fine")[1]})
    assert ok.status_code == 200 and ok.json()["valid"] is True
    assert ok.json()["rules"][0]["title"] == "Fine"
    assert ana.post("/api/v1/rules", json={"yaml": text}).status_code == 403


def test_roles_and_csrf(ui_server: UiServer) -> None:
    _, text = new_rule("Role Check")
    vic = ui_server.login("vic")
    assert vic.post("/api/v1/rules", json={"yaml": text}).status_code == 403
    assert vic.post("/api/v1/rules/test", json={"yaml": text}).status_code == 403
    assert vic.post(f"/api/v1/rules/{SQLI_ID}/disable").status_code == 403
    ana = ui_server.login("ana")
    assert ana.post("/api/v1/rules", json={"yaml": text}).status_code == 403
    adm = ui_server.login("adm")
    del adm.headers["X-CSRF-Token"]
    assert adm.post("/api/v1/rules", json={"yaml": text}).status_code == 403
    assert adm.post(f"/api/v1/rules/{SQLI_ID}/disable").status_code == 403
    assert rules_by_id(ui_server)[SQLI_ID]["enabled"] is True


def test_save_then_disable_leaves_the_rule_out_of_the_rule_set(ui_server: UiServer) -> None:
    rid, text = new_rule("Saved From The UI <b>")
    adm = ui_server.login("adm")
    saved = adm.post("/api/v1/rules", json={"yaml": text})
    assert saved.status_code == 201, saved.text
    file = ui_server.data_dir / "rules" / "ui" / saved.json()["file"]
    assert file.read_text() == text
    again = adm.post("/api/v1/rules", json={"yaml": text})
    assert again.status_code == 409
    listed = rules_by_id(ui_server)[rid]
    assert (listed["kind"], listed["enabled"], listed["title"]) == (
        "stream",
        True,
        "Saved From The UI <b>",
    )
    assert listed["origin"].startswith("imported:ui/")
    off = adm.post(f"/api/v1/rules/{rid}/disable")
    assert off.status_code == 200, off.text
    assert rules_by_id(ui_server)[rid]["enabled"] is False
    # what the pipeline builds from config + data dir + state store leaves it out
    config = parse_config("", base_dir=ui_server.data_dir)
    config.data_dir = ui_server.data_dir
    state = StateStore.for_data_dir(ui_server.data_dir)
    try:
        ids = {r.id for r in build_ruleset(config, ui_server.data_dir, state).rules}
        assert rid not in ids and SQLI_ID in ids
        audit = AuditLog(state)
        assert audit.count(actor="adm", action="rule_save") >= 1
        assert audit.count(actor="adm", action="rule_disable") >= 1
    finally:
        state.close()
    # and so does the CLI (`lightsoc rules list`), another process over the same store
    listed_cli = cli_ndjson("rules", "list", "--json", "--data-dir", ui_server.data_dir)
    cli_ids = {r["id"] for r in listed_cli}
    assert rid not in cli_ids and SQLI_ID in cli_ids
    assert adm.post(f"/api/v1/rules/{rid}/enable").status_code == 200
    assert rules_by_id(ui_server)[rid]["enabled"] is True
    assert adm.post("/api/v1/rules/no-such-rule/disable").status_code == 404


def test_simple_rules_add_switch_delete(ui_server: UiServer) -> None:
    name = f"simple-{uuid.uuid4().hex[:8]}"
    body = {
        "name": name,
        "field": "url.query",
        "kind": "regex",
        "pattern": "(?i)wp-admin",
        "severity": "low",
    }
    assert ui_server.login("ana").post("/api/v1/rules/simple", json=body).status_code == 403
    adm = ui_server.login("adm")
    bad = adm.post("/api/v1/rules/simple", json={**body, "pattern": "(unclosed"})
    assert bad.status_code == 400
    nofield = adm.post("/api/v1/rules/simple", json={**body, "field": "no.such"})
    assert nofield.status_code == 400
    made = adm.post("/api/v1/rules/simple", json=body)
    assert made.status_code == 201, made.text
    sid = made.json()["id"]
    assert adm.post("/api/v1/rules/simple", json=body).status_code == 409
    listed = rules_by_id(ui_server)[f"db:{sid}"]
    assert (listed["kind"], listed["level"], listed["enabled"]) == ("simple", "low", True)
    assert adm.post(f"/api/v1/rules/simple/{sid}/disable").status_code == 200
    simple = adm.get("/api/v1/rules/simple").json()["rules"]
    assert next(r for r in simple if r["id"] == sid)["enabled"] is False
    assert adm.delete(f"/api/v1/rules/simple/{sid}").status_code == 200
    assert f"db:{sid}" not in rules_by_id(ui_server)


def test_rules_page_editor_validate_and_test(ui_server: UiServer, page_errors: WatchedPage) -> None:
    page, errors = page_errors
    browser_login(page, ui_server, "adm", "/rules")
    expect(page.locator("#rule-list")).to_contain_text("SQL Injection Keywords In Request")
    _, text = new_rule("<img src=x onerror=alert(1)> UNION probe")
    page.fill("#rule-yaml", text)
    page.click("#rule-validate")
    expect(page.locator("#rule-message")).to_have_class("rule-message ok")
    page.click("#rule-test")
    expect(page.locator("#rule-results")).to_be_visible()
    expect(page.locator("#rule-matches tbody tr").first).to_be_visible()
    rows = page.locator("#rule-matches tbody tr").count()
    assert 0 < rows <= 20
    expect(page.locator("#rule-summary")).to_contain_text("matching events")
    # a broken rule: the compiler's message is shown as text
    page.fill("#rule-yaml", text.replace("condition: selection", "condition: nothere"))
    page.click("#rule-validate")
    expect(page.locator("#rule-message")).to_have_class("rule-message error")
    assert "nothere" in page.locator("#rule-message").inner_text()
    page.fill("#rule-yaml", text)
    page.click("#rule-test")
    expect(page.locator("#rule-message")).to_have_class("rule-message ok")
    screenshot(page, "rules")
    assert errors == []


def test_rule_flags_table_and_build_ruleset(tmp_path: Path) -> None:
    """No server: a disabled id is left out of the rule set; the version counts changes."""
    from lightsoc.store.state_rule_flags import RuleFlags

    rid, text = new_rule("Flag Me")
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "flag.yml").write_text(text)
    config = parse_config("", base_dir=tmp_path)
    config.data_dir = tmp_path
    state = StateStore.for_data_dir(tmp_path)
    try:
        flags = RuleFlags(state)
        assert flags.version() == 0 and flags.disabled() == set()
        assert rid in {r.id for r in build_ruleset(config, tmp_path, state).rules}
        flags.set_enabled(rid, False, "tester")
        assert flags.disabled() == {rid} and flags.version() == 1
        ids = {r.id for r in build_ruleset(config, tmp_path, state).rules}
        assert rid not in ids and SQLI_ID in ids
        # without a state store (an ingest without one) every rule runs
        assert rid in {r.id for r in build_ruleset(config, tmp_path, None).rules}
        flags.set_enabled(rid, True, "tester")
        assert flags.disabled() == set() and flags.version() == 2
    finally:
        state.close()
