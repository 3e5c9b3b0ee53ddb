"""/settings and its API: profile, password, users, tokens, audit log, outputs, retention.

The shared `ui_server` serves the user and token tests (each touches only users
and tokens it made); alert outputs, the last-admin rule and retention run on a
server of their own whose config has a webhook output pointing at a real
receiver on 127.0.0.1.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from lightsoc import schema
from lightsoc.runtime import open_stores
from lightsoc.server import _maintenance_loop
from tests.alerts.receivers import HttpReceiver, Reply
from tests.helpers import LightsocServer, wait_until, write_config
from tests.store.test_events_duckdb import events
from tests.web.browser import WatchedPage, browser_fixture, page_errors_fixture  # noqa: F401
from tests.web.ui_server import UiServer, browser_login, screenshot

PASSWORD = "settings-pass-0123"


def unique(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(3)}"


def add_user(ui: UiServer, role: str, password: str = PASSWORD) -> str:
    name = unique(f"set-{role}")
    adm = ui.login("adm")
    resp = adm.post("/api/v1/users", json={"name": name, "role": role, "password": password})
    assert resp.status_code == 201, resp.text
    assert resp.json()["role"] == role and "password" not in resp.text
    return name


def bearer(ui: UiServer, token: str) -> httpx.Client:
    return ui.token_client(token)


# -- users -------------------------------------------------------------------
def test_admin_creates_an_analyst_who_can_log_in(ui_server: UiServer) -> None:
    name = add_user(ui_server, "analyst")
    me = ui_server.login(name, PASSWORD).get("/api/v1/me").json()
    assert (me["name"], me["role"], me["via"]) == (name, "analyst", "session")
    adm = ui_server.login("adm")
    listed = {u["name"]: u for u in adm.get("/api/v1/users").json()["users"]}
    assert listed[name]["role"] == "analyst" and listed[name]["disabled"] is False
    assert "password_hash" not in str(listed)
    again = adm.post("/api/v1/users", json={"name": name, "role": "viewer", "password": PASSWORD})
    assert again.status_code == 409
    weak = adm.post("/api/v1/users", json={"name": unique("w"), "role": "viewer", "password": "x"})
    assert weak.status_code == 400 and "at least" in weak.json()["detail"]


def test_admin_changes_role_disables_and_resets_password(ui_server: UiServer) -> None:
    name = add_user(ui_server, "viewer")
    user = ui_server.login(name, PASSWORD)
    adm = ui_server.login("adm")
    resp = adm.patch(f"/api/v1/users/{name}", json={"role": "analyst"})
    assert resp.status_code == 200 and resp.json()["role"] == "analyst"
    assert user.get("/api/v1/me").status_code == 401  # a role change ends their sessions
    assert adm.patch(f"/api/v1/users/{name}", json={"disabled": True}).json()["disabled"] is True
    assert (
        UiServer.post_login(httpx.Client(base_url=ui_server.url), name, PASSWORD).status_code == 401
    )
    assert adm.patch(f"/api/v1/users/{name}", json={"disabled": False}).status_code == 200
    reset = "reset-pass-0123456"
    assert adm.patch(f"/api/v1/users/{name}", json={"password": reset}).status_code == 200
    assert ui_server.login(name, reset).get("/api/v1/me").json()["role"] == "analyst"
    assert adm.patch("/api/v1/users/nobody-here", json={"role": "viewer"}).status_code == 404
    assert adm.patch(f"/api/v1/users/{name}", json={"role": "root"}).status_code == 422


def test_viewer_and_analyst_cannot_manage_users_or_read_the_audit_log(
    ui_server: UiServer,
) -> None:
    for who in ("vic", "ana"):
        client = ui_server.login(who)
        assert client.get("/api/v1/users").status_code == 403
        new = {"name": unique("x"), "role": "admin", "password": PASSWORD}
        assert client.post("/api/v1/users", json=new).status_code == 403
        assert client.patch("/api/v1/users/adm", json={"role": "viewer"}).status_code == 403
        assert client.get("/api/v1/audit").status_code == 403
        assert client.get("/api/v1/outputs").status_code == 403
        assert client.post("/api/v1/outputs/any/test").status_code == 403
        assert client.put("/api/v1/settings/retention", json={"days": 1}).status_code == 403
        assert client.get("/api/v1/tokens", params={"all": "true"}).status_code == 403


def test_session_change_without_csrf_token_is_refused(ui_server: UiServer) -> None:
    client = ui_server.login("ana")
    del client.headers["X-CSRF-Token"]
    assert client.patch("/api/v1/me", json={"locale": "zh-CN"}).status_code == 403
    resp = client.post("/api/v1/tokens", json={"name": "no-csrf", "scope": "read"})
    assert resp.status_code == 403 and "CSRF" in resp.json()["detail"]
    client.headers["X-CSRF-Token"] = "wrong"
    assert client.patch("/api/v1/me", json={"locale": "zh-CN"}).status_code == 403
    assert client.get("/api/v1/me").json()["locale"] == "en"


# -- own profile and password -------------------------------------------------
def test_user_changes_own_language_and_password(ui_server: UiServer) -> None:
    name = add_user(ui_server, "viewer")
    client = ui_server.login(name, PASSWORD)
    assert client.patch("/api/v1/me", json={"locale": "zh-CN"}).json()["locale"] == "zh-CN"
    assert "个人资料" in client.get("/settings").text
    wrong = client.patch(
        "/api/v1/me", json={"current_password": "not-it-0123", "new_password": "new-pass-012345"}
    )
    assert wrong.status_code == 400
    short = client.patch("/api/v1/me", json={"current_password": PASSWORD, "new_password": "x"})
    assert short.status_code == 400
    new = "new-pass-0123456789"
    ok = client.patch("/api/v1/me", json={"current_password": PASSWORD, "new_password": new})
    assert ok.status_code == 200 and ok.json()["sessions_ended"] is True
    assert client.get("/api/v1/me").status_code == 401  # logged out everywhere
    assert ui_server.login(name, new).get("/api/v1/me").json()["locale"] == "zh-CN"
    log = ui_server.login("adm").get("/api/v1/audit", params={"actor": name}).json()
    actions = [e["action"] for e in log["entries"] if e["action"] != "login"]
    assert actions[:3] == ["password_change", "password_change_failed", "locale_change"]
    assert new not in str(log) and PASSWORD not in str(log) and "not-it" not in str(log)


# -- tokens ------------------------------------------------------------------
def test_tokens_act_with_their_owners_role_capped_by_scope_and_revoke(
    ui_server: UiServer,
) -> None:
    vic = ui_server.login("vic")
    made = vic.post("/api/v1/tokens", json={"name": unique("vic-full"), "scope": "admin"})
    assert made.status_code == 201, made.text
    token = made.json()["token"]
    assert token.startswith("lsoc_")
    as_vic = bearer(ui_server, token)
    assert as_vic.get("/api/v1/me").json()["role"] == "viewer"
    assert as_vic.get("/api/v1/users").status_code == 403
    assert as_vic.get("/api/v1/search", params={"q": "", "limit": 1}).status_code == 200
    assert vic.post("/api/v1/tokens", json={"name": "x", "scope": "ingest"}).status_code == 403
    mine = vic.get("/api/v1/tokens").json()["tokens"]
    assert made.json()["id"] in [t["id"] for t in mine] and "token" not in mine[0]
    assert all(t["owner"] == "vic" for t in mine)
    # someone else's token cannot be revoked by a viewer
    adm = ui_server.login("adm")
    other = adm.post("/api/v1/tokens", json={"name": unique("adm-read"), "scope": "read"}).json()
    assert vic.delete(f"/api/v1/tokens/{other['id']}").status_code == 404
    # a read token of an admin reads, and cannot mint a token that acts as the admin
    as_adm_read = bearer(ui_server, other["token"])
    assert as_adm_read.get("/api/v1/me").json()["role"] == "viewer"
    escalate = as_adm_read.post("/api/v1/tokens", json={"name": "up", "scope": "admin"})
    assert escalate.status_code == 403
    assert as_adm_read.get("/api/v1/audit").status_code == 403
    # revoking
    assert vic.delete(f"/api/v1/tokens/{made.json()['id']}").status_code == 204
    assert as_vic.get("/api/v1/me").status_code == 401
    assert vic.delete(f"/api/v1/tokens/{made.json()['id']}").status_code == 404
    everything = adm.get("/api/v1/tokens", params={"all": "true"}).json()["tokens"]
    assert other["id"] in [t["id"] for t in everything]
    assert adm.delete(f"/api/v1/tokens/{other['id']}").status_code == 204
    assert as_adm_read.get("/api/v1/me").status_code == 401
    # the audit log names the tokens but never holds their values
    log = adm.get("/api/v1/audit", params={"action": "token_", "limit": 1000}).json()
    assert {"token_create", "token_revoke"} <= {e["action"] for e in log["entries"]}
    assert token not in str(log) and other["token"] not in str(log)


# -- audit log ---------------------------------------------------------------
def test_audit_log_filters_pages_newest_first_and_holds_no_secrets(ui_server: UiServer) -> None:
    name = add_user(ui_server, "analyst")
    adm = ui_server.login("adm")
    adm.patch(f"/api/v1/users/{name}", json={"password": "another-pass-0123"})
    body = adm.get("/api/v1/audit", params={"actor": "adm", "action": "user_"}).json()
    assert body["total"] >= 2 and body["entries"][0]["actor"] == "adm"
    assert (body["entries"][0]["action"], body["entries"][0]["target"]) == ("user_password", name)
    assert (body["entries"][1]["action"], body["entries"][1]["target"]) == ("user_add", name)
    assert body["entries"][1]["detail"] == {"role": "analyst"}
    assert PASSWORD not in str(body) and "another-pass" not in str(body)
    page1 = adm.get("/api/v1/audit", params={"limit": 2}).json()
    page2 = adm.get("/api/v1/audit", params={"limit": 2, "offset": 2}).json()
    ids = [e["id"] for e in page1["entries"] + page2["entries"]]
    assert ids == sorted(ids, reverse=True) and len(set(ids)) == 4
    assert page1["total"] == page2["total"] >= 4
    logins = ui_server.token_client().get("/api/v1/audit", params={"action": "login"}).json()
    assert all(e["action"].startswith("login") for e in logins["entries"])
    assert adm.get("/api/v1/audit", params={"limit": 5000}).status_code == 422


def test_settings_page_by_role(ui_server: UiServer) -> None:
    viewer = ui_server.login("vic").get("/settings")
    assert viewer.status_code == 200
    assert 'id="profile"' in viewer.text and 'id="my-tokens"' in viewer.text
    assert 'id="users"' not in viewer.text and 'id="audit"' not in viewer.text
    admin = ui_server.login("adm").get("/settings", params={"action": "login"})
    for section in ("users", "all-tokens", "audit", "outputs", "retention", "networks"):
        assert f'id="{section}"' in admin.text
    assert httpx.get(f"{ui_server.url}/settings").status_code in (303, 307)


# -- a server of its own: outputs, last admin, retention ---------------------
class OwnServer:
    def __init__(self, server: LightsocServer, receiver: HttpReceiver) -> None:
        self.server = server
        self.receiver = receiver
        assert server.admin_token, server.output
        self.admin = httpx.Client(
            base_url=server.url,
            timeout=30,
            headers={"Authorization": f"Bearer {server.admin_token}"},
        )


@pytest.fixture(scope="module")
def own_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OwnServer]:
    root = tmp_path_factory.mktemp("settings")
    receiver = HttpReceiver(Reply(200, {"accepted": True}))
    config = write_config(
        root / "lightsoc.yml",
        {},
        data_dir=root / "data",
        alerts={
            "outputs": {
                "hook": {"type": "webhook", "url": f"{receiver.url}/hook?key=hook-secret-42"},
                "deadhook": {"type": "webhook", "url": "http://127.0.0.1:9/down", "timeout": 2},
            }
        },
        enrich={"networks": {"office": ["10.1.0.0/16", "192.168.7.0/24"]}},
        store={"retention_days": 30},
    )
    server = LightsocServer(["--config", config], cwd=root, data_dir=root / "data")
    try:
        server.start()
        yield OwnServer(server, receiver)
    finally:
        server.ensure_stopped()
        receiver.close()


def test_outputs_are_listed_without_secrets_and_send_a_real_test_message(
    own_server: OwnServer,
) -> None:
    api = own_server.admin
    outputs = {o["name"]: o for o in api.get("/api/v1/outputs").json()["outputs"]}
    assert set(outputs) == {"hook", "deadhook"} and outputs["hook"]["type"] == "webhook"
    assert "hook-secret-42" not in str(outputs) and "/hook" in outputs["hook"]["target"]

    resp = api.post("/api/v1/outputs/hook/test")
    assert resp.status_code == 200 and resp.json()["ok"] is True, resp.text
    request = own_server.receiver.wait(1)[0]
    assert request.path == "/hook" and request.query["key"] == "hook-secret-42"
    sent = request.json()
    assert sent["output"] == "hook" and sent["count"] == 1
    assert sent["alerts"][0]["rule.name"] == "lightsoc test message"
    assert "token:admin" in sent["alerts"][0]["description"]

    failed = api.post("/api/v1/outputs/deadhook/test").json()
    assert failed["ok"] is False and failed["message"]
    assert api.post("/api/v1/outputs/nope/test").status_code == 404

    log = api.get("/api/v1/audit", params={"action": "output_test"}).json()["entries"]
    assert [(e["target"], e["detail"]["ok"]) for e in log[:2]] == [
        ("deadhook", False),
        ("hook", True),
    ]
    assert "hook-secret-42" not in str(log)

    page = api.get("/settings")  # the system token has no profile, but is an admin
    assert page.status_code == 200 and 'id="outputs"' in page.text
    assert "deadhook" in page.text and "hook-secret-42" not in page.text
    assert "10.1.0.0/16" in page.text and "192.168.7.0/24" in page.text


def test_the_last_enabled_admin_cannot_be_demoted_or_disabled(own_server: OwnServer) -> None:
    api = own_server.admin
    admins = [u for u in api.get("/api/v1/users").json()["users"] if u["role"] == "admin"]
    assert [u["name"] for u in admins] == ["admin"]  # the first-start admin, alone
    demote = api.patch("/api/v1/users/admin", json={"role": "analyst"})
    assert demote.status_code == 409 and "last enabled admin" in demote.json()["detail"]
    assert api.patch("/api/v1/users/admin", json={"disabled": True}).status_code == 409
    new = {"name": "boss", "role": "admin", "password": PASSWORD}
    assert api.post("/api/v1/users", json=new).status_code == 201
    assert api.patch("/api/v1/users/admin", json={"role": "analyst"}).status_code == 200
    assert api.patch("/api/v1/users/boss", json={"disabled": True}).status_code == 409
    assert api.patch("/api/v1/users/admin", json={"role": "admin"}).status_code == 200
    assert api.patch("/api/v1/users/boss", json={"disabled": True}).status_code == 200
    users = {u["name"]: u for u in api.get("/api/v1/users").json()["users"]}
    assert users["admin"]["role"] == "admin" and users["boss"]["disabled"] is True


def test_retention_override_and_networks(own_server: OwnServer) -> None:
    api = own_server.admin
    assert api.get("/api/v1/settings/retention").json() == {
        "configured": 30,
        "override": None,
        "effective": 30,
    }
    set7 = api.put("/api/v1/settings/retention", json={"days": 7}).json()
    assert (set7["override"], set7["effective"]) == (7, 7)
    assert api.put("/api/v1/settings/retention", json={"days": 0}).status_code == 422
    cleared = api.put("/api/v1/settings/retention", json={"days": None}).json()
    assert (cleared["override"], cleared["effective"]) == (None, 30)
    log = api.get("/api/v1/audit", params={"action": "retention_set"}).json()["entries"]
    assert [e["detail"]["days"] for e in log[:2]] == [None, 7]


def test_maintenance_loop_applies_the_retention_override(tmp_path: Path) -> None:
    stores = open_stores(tmp_path)
    try:
        now = datetime.now(UTC)
        stores.events.append(schema.to_arrow(events(3, start=now - timedelta(days=20))))
        stores.events.append(schema.to_arrow(events(2, start=now - timedelta(days=1))))
        stores.state.set_setting("retention_days", 10)
        stop = threading.Event()
        loop = threading.Thread(target=_maintenance_loop, args=(stores, 30, stop), daemon=True)
        loop.start()
        try:
            # 30 days in the config keeps all five; the override of 10 days deletes three
            wait_until(lambda: stores.events.count() == 2, 30, "retention to apply the override")
        finally:
            stop.set()
            loop.join(30)
    finally:
        stores.close()


# -- the page in a browser ---------------------------------------------------
def test_settings_page_in_a_browser(ui_server: UiServer, page_errors: WatchedPage) -> None:
    page, errors = page_errors
    browser_login(page, ui_server, "adm", "/settings")
    name = unique("set-ui")
    form = page.locator("#add-user")
    form.locator("input[name=name]").fill(name)
    form.locator("select[name=role]").select_option("analyst")
    form.locator("input[name=password]").fill(PASSWORD)
    form.locator("button[type=submit]").click()
    row = page.locator(f'#users tr[data-user="{name}"]')
    row.wait_for()
    assert row.locator("select[name=role]").input_value() == "analyst"
    audit_rows = page.locator("#audit table.audit tbody tr")
    assert audit_rows.count() > 0
    assert page.locator("#audit table.audit tbody tr").first.locator("td").nth(2).inner_text() == (
        "user_add"
    )
    # a token is shown once, in the page, as text
    tokens = page.locator("#my-tokens form").first
    tokens.locator("input[name=name]").fill(unique("ui-token"))
    tokens.locator("button[type=submit]").click()
    value = page.locator("#my-tokens .token-value")
    value.wait_for()
    assert value.inner_text().startswith("lsoc_")
    # the two new passwords must match before anything is sent
    pw = page.locator("#password form")
    pw.locator("input[name=current_password]").fill(PASSWORD)
    pw.locator("input[name=new_password]").fill("abcdefghijk1")
    pw.locator("input[name=new_password2]").fill("abcdefghijk2")
    pw.locator("button[type=submit]").click()
    mismatch = pw.locator("output.msg.error")
    assert mismatch.inner_text().strip()
    screenshot(page, "settings")
    assert errors == []
