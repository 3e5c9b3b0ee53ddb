"""The REST API of a real `lightsoc run` subprocess, over HTTP with httpx.

One server for the module (started on a free port, tailing copies of the
sample logs); the admin token is the one it printed on its first start.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from lightsoc.web.api import TOTAL_CAP
from tests.helpers import SSH_LOG, WEB_LOG, LightsocServer, cli, wait_until, write_config

API = "/api/v1"
TOTAL = 1999 + 10000  # tailing: OpenSSH_2k.log's last line has no newline yet
BUSY_IP = "183.62.140.253"  # 867 lines of OpenSSH_2k.log name it; 868 events
BUSY_EVENTS = 868  # checked against sshd_events_of() below
WEB_IP = "83.149.9.216"  # 23 lines of apache_logs_benign.log


class Api:
    """The module's server plus an authenticated client for it."""

    def __init__(self, server: LightsocServer, token: str) -> None:
        self.server = server
        self.token = token

    def get(self, path: str, token: str | None = None, **params: Any) -> httpx.Response:
        return self.server.get(path, self.token if token is None else token, **params)

    def ok(self, path: str, **params: Any) -> dict[str, Any]:
        resp = self.get(path, **params)
        assert resp.status_code == 200, resp.text
        return resp.json()


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    root = tmp_path_factory.mktemp("api")
    shutil.copy(SSH_LOG, root / "auth.log")
    shutil.copy(WEB_LOG, root / "access.log")
    config = write_config(
        root / "lightsoc.yml",
        {
            "auth": {"type": "file", "paths": ["auth.log"], "format": "syslog"},
            "web": {"type": "file", "paths": ["access.log"], "format": "auto"},
        },
        data_dir=root / "data",
    )
    server = LightsocServer(["--config", config], cwd=root, data_dir=root / "data")
    try:
        server.start()
        assert server.admin_token, server.output
        api = Api(server, server.admin_token)
        wait_until(lambda: api.ok(f"{API}/stats")["events_total"] == TOTAL, 60, "all events")
        yield api
    finally:
        server.ensure_stopped()


def operations(spec: dict[str, Any]) -> list[tuple[str, str]]:
    """(method, concrete path) of every operation in the OpenAPI document."""
    ops = []
    for path, item in spec["paths"].items():
        concrete = re.sub(r"\{[^}]+\}", "10.0.0.1", path)
        ops.extend((method.upper(), concrete) for method in item if method != "parameters")
    return ops


# -- open endpoints ----------------------------------------------------------
def test_health_needs_no_token(api: Api) -> None:
    resp = httpx.get(f"{api.server.url}{API}/health")
    assert resp.status_code == 200
    assert resp.json()["status"] == "ok"


def test_openapi_is_served_with_a_token_only(api: Api) -> None:
    assert httpx.get(f"{api.server.url}{API}/openapi.json").status_code == 401
    assert httpx.get(f"{api.server.url}{API}/docs").status_code == 404  # no CDN-loaded UI
    resp = httpx.get(
        f"{api.server.url}{API}/openapi.json", headers={"Authorization": f"Bearer {api.token}"}
    )
    assert resp.status_code == 200
    spec = resp.json()
    assert spec["openapi"].startswith("3.")
    for path in (
        "/health",
        "/search",
        "/stats",
        "/timeline/{entity}",
        "/aggregate/top",
        "/aggregate/histogram",
    ):
        assert f"{API}{path}" in spec["paths"], path


# -- authentication ----------------------------------------------------------
BAD_AUTH = {
    "no header": {},
    "wrong token": {"Authorization": "Bearer lsoc_thisIsNotAValidTokenAtAll0000000000000"},
    "not a lightsoc token": {"Authorization": "Bearer hunter2"},
    "empty bearer": {"Authorization": "Bearer"},
    "basic auth": {"Authorization": "Basic YWRtaW46YWRtaW4="},
    "token without scheme": {"Authorization": "lsoc_x"},
}


@pytest.mark.parametrize("headers", BAD_AUTH.values(), ids=BAD_AUTH.keys())
def test_every_endpoint_but_health_needs_a_valid_token(api: Api, headers: dict) -> None:
    spec = api.ok(f"{API}/openapi.json")
    ops = operations(spec) + [("GET", f"{API}/openapi.json")]
    assert len(ops) >= 6
    for method, path in ops:
        resp = httpx.request(method, f"{api.server.url}{path}", headers=headers)
        if path == f"{API}/health":
            assert resp.status_code == 200
            continue
        assert resp.status_code == 401, (method, path, resp.status_code, resp.text)
        assert resp.headers["www-authenticate"] == "Bearer"
        assert "events" not in resp.text


def test_the_valid_token_opens_every_endpoint(api: Api) -> None:
    spec = api.ok(f"{API}/openapi.json")
    for method, path in operations(spec):
        params = {"field": "source.ip"} if path.endswith("/aggregate/top") else {}
        resp = httpx.request(
            method,
            f"{api.server.url}{path}",
            params=params,
            headers={"Authorization": f"Bearer {api.token}"},
        )
        # past authentication: an id that does not exist (alert 10.0.0.1) or a
        # missing body is the endpoint's own answer (4xx), not a refusal or a crash
        assert resp.status_code not in (401, 403), (method, path, resp.text)
        assert resp.status_code < 500, (method, path, resp.text)
        if method == "GET" and "10.0.0.1" not in path and "export" not in path:
            assert resp.status_code == 200, (method, path, resp.text)


def test_cli_read_token_reads_and_ingest_token_cannot(api: Api) -> None:
    assert api.get(f"{API}/stats", api.server.read_token()).status_code == 200
    res = cli(
        "user", "token", "--scope", "ingest", "--name", "shipper", "--data-dir", api.server.data_dir
    )
    assert res.returncode == 0, res.stderr
    resp = api.get(f"{API}/search", res.stdout.strip(), since="all")
    assert resp.status_code == 403


# -- reads -------------------------------------------------------------------
def test_stats(api: Api) -> None:
    stats = api.ok(f"{API}/stats")
    assert stats["events_total"] == TOTAL
    assert stats["parse_failures_total"] == 1
    assert stats["by_dataset"] == {"nginx.access": 9999, "sshd": 1999, "unknown": 1}
    by_id = {s["id"]: s for s in stats["sources"]}
    assert set(by_id) == {"auth", "web"}
    for sid, n, failures in (("auth", 1999, 0), ("web", 10000, 1)):
        s = by_id[sid]
        assert (s["type"], s["received"], s["events"], s["parse_failures"], s["dropped"]) == (
            "file",
            n,
            n,
            failures,
            0,
        )
        assert datetime.fromisoformat(s["last_seen"]).tzinfo is not None
    assert stats["pipeline"]["events_stored"] == TOTAL


def test_search(api: Api) -> None:
    body = api.ok(f"{API}/search", q=f"source.ip:{BUSY_IP}", since="all", limit=10)
    assert body["total"] == BUSY_EVENTS
    assert len(body["events"]) == 10
    stamps = [e["@timestamp"] for e in body["events"]]
    assert stamps == sorted(stamps, reverse=True)
    for e in body["events"]:
        assert e["source.ip"] == BUSY_IP and e["event.dataset"] == "sshd"

    oldest = api.ok(
        f"{API}/search",
        q=f"source.ip:{WEB_IP}",
        since="all",
        order="asc",
        fields="@timestamp,source.ip,url.original",
        limit=1000,
    )
    assert oldest["total"] == len(oldest["events"]) == 23
    assert set(oldest["events"][0]) <= {"@timestamp", "source.ip", "url.original"}
    assert [e["@timestamp"] for e in oldest["events"]] == sorted(
        e["@timestamp"] for e in oldest["events"]
    )

    assert api.ok(f"{API}/search", q=f"source.ip:{BUSY_IP}", since="15m")["total"] == 0
    # the total is exact up to TOTAL_CAP (10,000) events, then capped and flagged
    everything = api.ok(f"{API}/search", q="", since="all", limit=1)
    assert TOTAL > TOTAL_CAP
    assert (everything["total"], everything["total_capped"]) == (TOTAL_CAP, True)
    assert body["total_capped"] is False and oldest["total_capped"] is False
    deep = api.ok(f"{API}/search", q="", since="all", limit=10, offset=TOTAL_CAP, fields="event.id")
    assert (deep["total"], deep["total_capped"]) == (TOTAL_CAP + 10, True)
    # a short page tells the exact total, past the cap too
    last = api.ok(f"{API}/search", q="", since="all", limit=100, offset=TOTAL - 9)
    assert (last["total"], last["total_capped"], len(last["events"])) == (TOTAL, False, 9)
    past = api.ok(f"{API}/search", q=f"source.ip:{BUSY_IP}", since="all", offset=BUSY_EVENTS)
    assert (past["total"], past["events"]) == (BUSY_EVENTS, [])


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"q": "source.ip:("}, "position"),
        ({"q": "nope.field:1"}, "unknown field"),
        ({"since": "5x"}, "invalid duration"),
        ({"fields": "event.id,nope"}, "unknown field"),
    ],
)
def test_bad_search_is_400_with_the_reason(api: Api, params: dict, message: str) -> None:
    resp = api.get(f"{API}/search", **{"since": "all", **params})
    assert resp.status_code == 400
    assert message in resp.json()["detail"]


def test_timeline(api: Api) -> None:
    body = api.ok(f"{API}/timeline/{WEB_IP}", since="all")
    assert body["entity"] == WEB_IP
    events = body["events"]
    assert len(events) == 23
    stamps = [datetime.fromisoformat(e["@timestamp"]) for e in events]
    assert stamps == sorted(stamps) and stamps[0] < stamps[-1]
    assert api.ok(f"{API}/timeline/{WEB_IP}")["events"] == []  # default: the last 7 days
    # odd entities are values, not paths or SQL
    for entity in ("a/b", "x' OR '1'='1", "%2e%2e"):
        assert api.ok(f"{API}/timeline/{entity}", since="all")["events"] == []


def test_aggregates(api: Api) -> None:
    top = api.ok(
        f"{API}/aggregate/top", field="source.ip", q="event.dataset:sshd", since="all", n=3
    )
    assert top["buckets"][0] == {"value": BUSY_IP, "count": BUSY_EVENTS}
    assert len(top["buckets"]) == 3
    counts = [b["count"] for b in top["buckets"]]
    assert counts == sorted(counts, reverse=True)

    hist = api.ok(f"{API}/aggregate/histogram", interval=86400, since="all")
    assert sum(b["count"] for b in hist["buckets"]) == TOTAL
    times = [b["time"] for b in hist["buckets"]]
    assert times == sorted(times)
    assert api.get(f"{API}/aggregate/top", field="no.such", since="all").status_code == 400


# -- injection ---------------------------------------------------------------
INJECTIONS = [
    {"q": "'; DROP TABLE events; --"},
    {"q": "source.ip:\"1' OR '1'='1\""},
    {"q": "user.name:x') OR 1=1; DELETE FROM events; --"},
    {"q": '") UNION SELECT * FROM lightsoc_checkpoints --'},
    {"q": "source.ip:x OR 1=1"},
    {"q": "\"event.id\" = 'x' OR 1=1"},
    {"q": "*", "fields": "event.id FROM events; DROP TABLE events; --"},
    {"q": "*", "since": "1d'); DROP TABLE events; --"},
    {"q": "*", "order": "asc; DROP TABLE events"},
]


@pytest.mark.parametrize("params", INJECTIONS, ids=[str(i) for i in range(len(INJECTIONS))])
def test_sql_injection_is_refused_or_finds_nothing(api: Api, params: dict) -> None:
    resp = api.get(f"{API}/search", **{"since": "all", **params})
    assert resp.status_code in (200, 400, 422), resp.text
    if resp.status_code == 200:
        assert resp.json()["total"] == 0, params
    top = api.get(f"{API}/aggregate/top", field="source.ip') FROM events; --", since="all")
    assert top.status_code == 400
    assert api.ok(f"{API}/stats")["events_total"] == TOTAL  # the table survived


# -- first start -------------------------------------------------------------
def test_admin_token_is_printed_only_on_the_first_start(api: Api) -> None:
    """Restart the module's server: no new admin token, the first one still works."""
    old_url = api.server.url
    assert api.server.stop() == 0
    assert "Admin API token" not in "\n".join(api.server.lines[2:])
    server = api.server.start()
    assert server.admin_token is None
    assert "Admin API token" not in server.output
    assert server.url == old_url
    assert api.ok(f"{API}/stats")["events_total"] == TOTAL  # nothing read twice
    assert api.get(f"{API}/stats", "lsoc_" + "x" * 43).status_code == 401


def test_token_is_not_in_the_process_list(api: Api) -> None:
    ps = subprocess.run(
        ["ps", "-o", "args=", "-p", str(api.server.pid)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert api.token not in ps.stdout
    assert not (Path(api.server.data_dir) / "state.sqlite").read_bytes().count(api.token.encode())
