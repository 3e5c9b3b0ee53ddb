"""The alerts API of a real `lightsoc run` subprocess, over HTTP.

Alerts are written into the data directory's state store by this process
(the detection engine is another module's work); the server reads and
changes them in the same SQLite database.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from lightsoc.alerts import ALERT_KEYS, AlertCandidate, AlertStore
from lightsoc.store.state import StateStore
from tests.helpers import LightsocServer, cli, write_config

API = "/api/v1"
NOW = datetime.now(UTC).replace(microsecond=0)
HOSTILE = "<script>alert(1)</script>' OR '1'='1'; DROP TABLE alerts; --"


class AlertsApi:
    """The server, its tokens (admin, read, ingest) and the alert ids by rule."""

    def __init__(self, server: LightsocServer) -> None:
        self.server = server
        assert server.admin_token, server.output
        self.admin = server.admin_token
        self.read = server.read_token()
        res = cli(
            "user", "token", "--scope", "ingest", "--name", "shipper", "--data-dir", server.data_dir
        )
        assert res.returncode == 0, res.stderr
        self.ingest = res.stdout.strip()
        self.ids: dict[str, int] = {}

    def request(self, method: str, path: str, token: str | None, **kw: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.request(
            method, f"{self.server.url}{API}{path}", headers=headers, timeout=30, **kw
        )

    def ok(self, path: str, **params: Any) -> dict[str, Any]:
        resp = self.request("GET", path, self.read, params=params)
        assert resp.status_code == 200, resp.text
        assert resp.headers["content-type"] == "application/json"
        return resp.json()


def seed(data_dir: Path) -> dict[str, int]:
    state = StateStore.for_data_dir(data_dir)
    try:
        changed = AlertStore(state).raise_alerts(
            [
                AlertCandidate(
                    "ssh_brute",
                    "SSH brute force",
                    "high",
                    "ip",
                    "203.0.113.7",
                    NOW - timedelta(hours=2),
                    last_seen=NOW - timedelta(hours=1),
                    count=40,
                    event_ids=["ev1", "ev2"],
                ),
                AlertCandidate(
                    "web_sqli",
                    "SQL injection <b>",
                    "critical",
                    "host",
                    HOSTILE,
                    NOW,
                    score=97,
                    description="payload: <img src=x onerror=alert(1)>",
                ),
                AlertCandidate(
                    "dns_nx", "NXDOMAIN burst", "low", "ip", "10.0.0.9", NOW - timedelta(days=3)
                ),
                AlertCandidate("spray", "Password spraying", "medium", "user", "root", NOW),
            ]
        )
    finally:
        state.close()
    return {c.alert.rule_id: c.alert.id for c in changed}


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AlertsApi]:
    root = tmp_path_factory.mktemp("alerts-api")
    config = write_config(root / "lightsoc.yml", {}, data_dir=root / "data")
    server = LightsocServer(["--config", config], cwd=root, data_dir=root / "data")
    try:
        server.start()
        api = AlertsApi(server)
        api.ids = seed(server.data_dir)
        yield api
    finally:
        server.ensure_stopped()


ROUTES = [
    ("GET", "/alerts"),
    ("GET", "/alerts/1"),
    ("POST", "/alerts/1/status"),
    ("GET", "/entities/scores"),
]


# -- authentication and scopes ------------------------------------------------------
@pytest.mark.parametrize(("method", "path"), ROUTES)
@pytest.mark.parametrize("token", [None, "lsoc_notAValidTokenAtAll000000000000000000", "hunter2"])
def test_every_alerts_route_needs_a_valid_token(
    api: AlertsApi, method: str, path: str, token: str | None
) -> None:
    resp = api.request(method, path, token, json={"status": "closed"})
    assert resp.status_code == 401, resp.text
    assert resp.headers["www-authenticate"] == "Bearer"
    assert "entity" not in resp.text


@pytest.mark.parametrize(("method", "path"), ROUTES)
def test_an_ingest_token_cannot_read_alerts(api: AlertsApi, method: str, path: str) -> None:
    resp = api.request(method, path, api.ingest, json={"status": "closed"})
    assert resp.status_code == 403, resp.text
    assert "ingest" in resp.json()["detail"]


def test_a_read_token_reads_but_cannot_change(api: AlertsApi) -> None:
    aid = api.ids["spray"]
    assert api.request("GET", f"/alerts/{aid}", api.read).status_code == 200
    resp = api.request("POST", f"/alerts/{aid}/status", api.read, json={"status": "closed"})
    assert resp.status_code == 403
    assert resp.json()["detail"] == "this needs the analyst role"
    assert api.ok(f"/alerts/{aid}")["status"] == "open"


def test_documented_in_openapi(api: AlertsApi) -> None:
    resp = api.request("GET", "/openapi.json", api.admin)
    paths = resp.json()["paths"]
    assert f"{API}/alerts" in paths and f"{API}/entities/scores" in paths


# -- listing --------------------------------------------------------------------------
def test_list_shape_and_order(api: AlertsApi) -> None:
    body = api.ok("/alerts")
    assert body["total"] == 3  # dns_nx is 3 days old: outside the default 24 h
    rules = [a["rule.id"] for a in body["alerts"]]
    assert rules[-1] == "ssh_brute" and set(rules) == {"web_sqli", "spray", "ssh_brute"}
    brute = body["alerts"][-1]
    assert tuple(brute) == ALERT_KEYS
    assert brute["id"] == api.ids["ssh_brute"]
    assert (brute["entity.type"], brute["entity.value"], brute["count"]) == (
        "ip",
        "203.0.113.7",
        40,
    )
    assert brute["event_ids"] == ["ev1", "ev2"] and brute["last_seen"].endswith("Z")


@pytest.mark.parametrize(
    ("params", "rules"),
    [
        ({"since": "7d"}, {"web_sqli", "spray", "ssh_brute", "dns_nx"}),
        ({"since": "all", "severity": "high"}, {"web_sqli", "ssh_brute"}),
        ({"entity": "203.0.113.7"}, {"ssh_brute"}),
        ({"entity": HOSTILE}, {"web_sqli"}),
        ({"entity": "' OR '1'='1"}, set()),
        ({"rule": "spray"}, {"spray"}),
        ({"since": "all", "status": "open,acknowledged,closed,false_positive"}, None),
    ],
)
def test_list_filters(api: AlertsApi, params: dict, rules: set | None) -> None:
    body = api.ok("/alerts", **params)
    got = {a["rule.id"] for a in body["alerts"]}
    assert got == (rules if rules is not None else set(api.ids))
    assert body["total"] == len(got)


def test_list_limit_and_offset(api: AlertsApi) -> None:
    everything = api.ok("/alerts", since="all")["alerts"]
    page = api.ok("/alerts", since="all", limit=2, offset=1)
    assert page["total"] == len(everything)
    assert [a["id"] for a in page["alerts"]] == [a["id"] for a in everything[1:3]]


@pytest.mark.parametrize(
    ("params", "status", "message"),
    [
        ({"status": "done"}, 400, "unknown status 'done'"),
        ({"severity": "urgent"}, 400, "unknown severity 'urgent'"),
        ({"since": "yesterday"}, 400, "since: invalid duration"),
        ({"limit": 0}, 422, None),
    ],
)
def test_bad_filters(api: AlertsApi, params: dict, status: int, message: str | None) -> None:
    resp = api.request("GET", "/alerts", api.read, params=params)
    assert resp.status_code == status, resp.text
    if message:
        assert message in resp.json()["detail"]


def test_hostile_strings_come_back_as_json_data(api: AlertsApi) -> None:
    resp = api.request("GET", f"/alerts/{api.ids['web_sqli']}", api.read)
    assert resp.headers["content-type"] == "application/json"
    body = resp.json()
    assert body["entity.value"] == HOSTILE
    assert body["rule.name"] == "SQL injection <b>"
    assert body["description"] == "payload: <img src=x onerror=alert(1)>"


# -- one alert and triage -------------------------------------------------------------
def test_get_unknown_and_malformed_ids(api: AlertsApi) -> None:
    resp = api.request("GET", "/alerts/999999", api.read)
    assert resp.status_code == 404 and resp.json()["detail"] == "no alert 999999"
    assert api.request("GET", "/alerts/1%20OR%201=1", api.read).status_code == 422
    resp = api.request("POST", "/alerts/999999/status", api.admin, json={"status": "closed"})
    assert resp.status_code == 404


def test_status_change_and_assignment_with_history(api: AlertsApi) -> None:
    aid = api.ids["ssh_brute"]
    post = lambda body: api.request("POST", f"/alerts/{aid}/status", api.admin, json=body)  # noqa: E731
    resp = post({"status": "acknowledged", "assignee": "alice", "note": "looking"})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert (body["status"], body["assignee"]) == ("acknowledged", "alice")
    resp = post({"status": "closed", "note": "blocked"})
    assert resp.status_code == 200 and resp.json()["status"] == "closed"
    resp = post({"status": "acknowledged"})
    assert resp.status_code == 409
    assert resp.json()["detail"] == f"alert {aid} is closed; it cannot become acknowledged"
    assert post({"status": "resolved"}).status_code == 422
    assert post({}).status_code == 400
    assert post({"unassign": True}).status_code == 200
    body = api.ok(f"/alerts/{aid}")
    assert (body["status"], body["assignee"]) == ("closed", None)
    history = [(h["who"], h["action"], h["to_status"], h["note"]) for h in body["history"]]
    assert history == [
        ("token:admin", "acknowledge", "acknowledged", "looking"),
        ("token:admin", "assign", "acknowledged", "looking"),
        ("token:admin", "close", "closed", "blocked"),
        ("token:admin", "unassign", "closed", None),
    ]
    assert all(h["at"].endswith("Z") for h in body["history"])
    listed = api.ok("/alerts", status="closed")["alerts"]
    assert [a["id"] for a in listed] == [aid]


def test_false_positive_drops_out_of_entity_scores(api: AlertsApi) -> None:
    before = api.ok("/entities/scores", top=10)["entities"]
    assert before[0]["entity.value"] == HOSTILE  # critical, score 97 when the module started
    # NOW is taken at import: on a busy machine the score has decayed since (half-life 24 h)
    age_h = (datetime.now(UTC) - NOW).total_seconds() / 3600
    assert before[0]["score"] == pytest.approx(97 * 0.5 ** (age_h / 24), abs=0.5)
    assert {"entity.type", "entity.value", "score", "alerts", "max_severity", "last_seen"} <= set(
        before[0]
    )
    aid = api.ids["web_sqli"]
    resp = api.request(
        "POST", f"/alerts/{aid}/status", api.admin, json={"status": "false_positive"}
    )
    assert resp.status_code == 200
    after = api.ok("/entities/scores", top=10)["entities"]
    assert HOSTILE not in [e["entity.value"] for e in after]
    users = api.ok("/entities/scores", type="user")["entities"]
    assert [e["entity.value"] for e in users] == ["root"]
    assert len(api.ok("/entities/scores", top=1)["entities"]) == 1


@pytest.mark.parametrize(
    ("params", "status"),
    [({"half_life": "soon"}, 400), ({"half_life": "all"}, 400), ({"type": "mac"}, 422)],
)
def test_bad_entity_score_params(api: AlertsApi, params: dict, status: int) -> None:
    assert api.request("GET", "/entities/scores", api.read, params=params).status_code == status
