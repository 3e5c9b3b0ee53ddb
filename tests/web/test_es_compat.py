"""The Elasticsearch-compatible surface of a real `lightsoc run`, driven by the
official `elasticsearch` client and by raw HTTP (what Beats send)."""

from __future__ import annotations

import base64
import gzip
import json
from typing import Any

import httpx
import pytest
from elasticsearch import AuthenticationException, AuthorizationException, Elasticsearch, helpers

from tests.web.conftest import IngestServer

PRODUCT = "x-elastic-product"


def client(s: IngestServer, auth: str, token: str | None = None) -> Elasticsearch:
    token = token or s.ingest
    kw: dict[str, Any] = {
        "bearer": {"bearer_auth": token},
        "apikey": {"api_key": token},
        "apikey-id": {"api_key": ("beats-id", token)},
        "basic": {"basic_auth": ("elastic", token)},
    }[auth]
    return Elasticsearch(s.url, request_timeout=60, **kw)


def raw(
    s: IngestServer,
    method: str,
    path: str,
    body: bytes | None = None,
    token: str | None = "ingest",
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    h = dict(headers or {})
    if token is not None:
        h["Authorization"] = f"Bearer {s.ingest if token == 'ingest' else token}"
    return httpx.request(method, f"{s.url}{path}", content=body, headers=h, timeout=60)


def bulk_body(*lines: Any) -> bytes:
    return b"".join((x if isinstance(x, bytes) else json.dumps(x).encode()) + b"\n" for x in lines)


# -- the official client ------------------------------------------------------
@pytest.mark.parametrize("auth", ["bearer", "apikey", "apikey-id", "basic"])
def test_helpers_bulk_stores_exactly_the_docs(ingest_server: IngestServer, auth: str) -> None:
    s = ingest_server
    index = f"bulk-{auth}"
    es = client(s, auth)
    assert es.ping()
    info = es.info()
    assert info["version"]["number"].startswith("8.")
    assert info["tagline"] == "You Know, for Search"
    docs = [
        {
            "_index": index,
            "@timestamp": f"2026-02-03T04:05:{i:02d}.123Z",
            "message": f"{auth} doc {i}",
            "source": {"ip": f"192.0.2.{i}"},
            "http": {"response": {"status_code": 200 + i}},
            "service": {"name": "checkout"},
        }
        for i in range(25)
    ]
    ok, errors = helpers.bulk(es, docs)
    assert (ok, errors) == (25, [])
    events = s.events(f"event.dataset:{index}")
    assert len(events) == 25
    for i, e in enumerate(events):
        assert e["@timestamp"] == f"2026-02-03T04:05:{i:02d}.123000Z"
        assert e["message"] == f"{auth} doc {i}"
        assert e["source.ip"] == f"192.0.2.{i}"
        assert e["http.response.status_code"] == 200 + i
        assert e["service.name"] == "checkout"
        original = json.loads(e["event.original"])
        assert original == {k: v for k, v in docs[i].items() if k != "_index"}


def test_streaming_bulk_reports_each_item(ingest_server: IngestServer) -> None:
    s = ingest_server
    es = client(s, "bearer")
    actions = [
        {"_index": "stream", "_id": "s-1", "message": "first"},
        {"_op_type": "create", "_index": "stream", "_id": "s-2", "message": "second"},
        {"_op_type": "delete", "_index": "stream", "_id": "s-1"},
        {"_op_type": "update", "_index": "stream", "_id": "s-2", "doc": {"message": "x"}},
        {"_index": "stream", "message": "third"},
    ]
    results = list(helpers.streaming_bulk(es, actions, raise_on_error=False, chunk_size=2))
    assert [ok for ok, _ in results] == [True, True, False, False, True]
    ops = [next(iter(item)) for _, item in results]
    assert ops == ["index", "create", "delete", "update", "index"]
    statuses = [item[op]["status"] for (_, item), op in zip(results, ops, strict=True)]
    assert statuses == [201, 201, 400, 400, 201]
    assert results[0][1]["index"]["_id"] == "s-1"
    events = s.events("event.dataset:stream")
    assert [e["message"] for e in events] == ["first", "second", "third"]
    assert [e["event.id"] for e in events][:2] == ["s-1", "s-2"]
    assert events[2]["event.id"] == results[4][1]["index"]["_id"]
    with pytest.raises(helpers.BulkIndexError) as exc:
        helpers.bulk(es, [{"_op_type": "delete", "_index": "stream", "_id": "s-1"}])
    assert exc.value.errors[0]["delete"]["status"] == 400


def test_single_document_apis(ingest_server: IngestServer) -> None:
    s = ingest_server
    es = client(s, "apikey")
    r = es.index(index="single", document={"message": "one", "@timestamp": "2026-01-01T00:00:00Z"})
    assert r["result"] == "created" and r["_index"] == "single"
    r = es.index(index="single", id="fixed-id", document={"message": "two"})
    assert r["_id"] == "fixed-id"
    assert es.create(index="single", id="c-1", document={"message": "three"})["_id"] == "c-1"
    events = s.events("event.dataset:single")
    assert sorted(e["message"] for e in events) == ["one", "three", "two"]
    [one] = [e for e in events if e["message"] == "one"]
    assert one["@timestamp"] == "2026-01-01T00:00:00Z"


def test_client_auth_errors(ingest_server: IngestServer) -> None:
    s = ingest_server
    with pytest.raises(AuthenticationException):
        client(s, "bearer", "lsoc_" + "x" * 43).info()
    with pytest.raises(AuthorizationException):
        client(s, "basic", s.read).info()
    with pytest.raises(AuthorizationException):
        helpers.bulk(client(s, "apikey", s.read), [{"_index": "denied", "message": "no"}])
    assert s.search("event.dataset:denied")["total"] == 0


# -- what Beats send -----------------------------------------------------------
FILEBEAT_DOC = {
    "@timestamp": "2026-04-05T06:07:08.901Z",
    "@metadata": {"beat": "filebeat", "type": "_doc", "version": "8.19.0"},
    "message": '10.1.2.3 - - "GET /admin HTTP/1.1" 404',
    "log": {"offset": 1234, "file": {"path": "/var/log/nginx/access.log"}},
    "input": {"type": "filestream"},
    "host": {"name": "web-01"},
    "agent": {"type": "filebeat", "version": "8.19.0", "name": "web-01"},
    "ecs": {"version": "8.0.0"},
}


def test_filebeat_startup_calls(ingest_server: IngestServer) -> None:
    s = ingest_server
    calls = [
        ("GET", "/"),
        ("HEAD", "/"),
        ("GET", "/_license?human=false"),
        ("GET", "/_xpack"),
        ("GET", "/_nodes"),
        ("GET", "/_nodes/_local/ingest"),
        ("GET", "/_cluster/health"),
        ("HEAD", "/_ilm/policy/filebeat"),
        ("GET", "/_ilm/policy/filebeat"),
        ("PUT", "/_ilm/policy/filebeat"),
        ("HEAD", "/_index_template/filebeat-8.19.0"),
        ("GET", "/_index_template/filebeat-8.19.0"),
        ("PUT", "/_index_template/filebeat-8.19.0"),
        ("PUT", "/_component_template/filebeat-settings"),
        ("GET", "/_ingest/pipeline/filebeat-8.19.0-nginx-access-pipeline"),
        ("PUT", "/_ingest/pipeline/filebeat-8.19.0-nginx-access-pipeline"),
        ("GET", "/_data_stream/filebeat-8.19.0"),
        ("PUT", "/_data_stream/filebeat-8.19.0"),
        ("PUT", "/_template/filebeat"),
    ]
    for method, path in calls:
        body = b'{"policy": {"phases": {}}}' if method == "PUT" else None
        resp = raw(s, method, path, body, headers={"Content-Type": "application/json"})
        assert resp.status_code == 200, (method, path, resp.text)
        assert resp.headers[PRODUCT] == "Elasticsearch", (method, path)
        if method == "PUT":
            assert resp.json() == {"acknowledged": True}
        elif method == "GET":
            assert isinstance(resp.json(), dict)
    assert raw(s, "GET", "/_license").json()["license"]["status"] == "active"


def test_gzip_bulk_as_filebeat_sends_it(ingest_server: IngestServer) -> None:
    s = ingest_server
    docs = [{**FILEBEAT_DOC, "message": f"fb line {i}"} for i in range(100)]
    lines: list[Any] = []
    for d in docs:
        lines += [{"create": {"_index": "filebeat-8.19.0"}}, d]
    resp = raw(
        s,
        "POST",
        "/_bulk?filter_path=errors,items.*.error,items.*.status",
        gzip.compress(bulk_body(*lines)),
        headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
    )
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["errors"] is False and len(body["items"]) == 100
    assert {i["create"]["status"] for i in body["items"]} == {201}
    events = s.events("event.dataset:filebeat-8.19.0")
    assert sorted(e["message"] for e in events) == sorted(d["message"] for d in docs)
    e = events[0]
    assert e["@timestamp"] == "2026-04-05T06:07:08.901000Z"
    assert (e["host.name"], e["log.file.path"], e["log.offset"]) == (
        "web-01",
        "/var/log/nginx/access.log",
        1234,
    )
    labels = json.loads(e["labels"])
    assert labels["agent.type"] == "filebeat" and labels["input.type"] == "filestream"


def test_index_in_path_and_the_documents_own_dataset(ingest_server: IngestServer) -> None:
    s = ingest_server
    body = bulk_body(
        {"index": {}},
        {"message": "path index"},
        {"index": {"_index": "other-index"}},
        {"message": "meta index wins"},
        {"index": {}},
        {"message": "own dataset", "event": {"dataset": "nginx.error"}},
        {"index": {}},
        {"message": "data stream", "data_stream": {"dataset": "app.audit", "type": "logs"}},
    )
    resp = raw(
        s, "POST", "/logs-path/_bulk", body, headers={"Content-Type": "application/x-ndjson"}
    )
    assert resp.status_code == 200 and resp.json()["errors"] is False
    assert [i["index"]["_index"] for i in resp.json()["items"]][:2] == ["logs-path", "other-index"]
    assert [e["message"] for e in s.events("event.dataset:logs-path")] == ["path index"]
    assert [e["message"] for e in s.events("event.dataset:other-index")] == ["meta index wins"]
    assert [e["message"] for e in s.events('event.dataset:"nginx.error"')] == ["own dataset"]
    assert [e["message"] for e in s.events('event.dataset:"app.audit"')] == ["data stream"]


def test_bad_lines_are_per_item_errors_never_500(ingest_server: IngestServer) -> None:
    s = ingest_server
    body = bulk_body(
        {"index": {"_index": "mixed"}},
        {"message": "good 1"},
        b"{this is not json",
        {"message": "its document, skipped with it"},
        {"index": {"_index": "mixed"}},
        b'["not", "an", "object"]',
        {"index": {}},
        {"message": "no index anywhere"},
        {"frobnicate": {"_index": "mixed"}},
        {"index": {"_index": "mixed"}},
        b'"just a string"',
        b"\xff\xfe not utf-8",
        {"create": {"_index": "mixed", "_id": "m-2"}},
        {"message": "good 2"},
        {"index": {"_index": "mixed"}},
    )
    resp = raw(s, "POST", "/_bulk", body, headers={"Content-Type": "application/x-ndjson"})
    assert resp.status_code == 200, resp.text
    out = resp.json()
    assert out["errors"] is True
    items = [
        (op, r["status"], r.get("error", {}).get("type"))
        for i in out["items"]
        for op, r in i.items()
    ]
    assert items == [
        ("index", 201, None),
        ("index", 400, "parse_exception"),
        ("index", 400, "document_parsing_exception"),
        ("index", 400, "action_request_validation_exception"),
        ("index", 400, "parse_exception"),
        ("index", 400, "document_parsing_exception"),
        ("index", 400, "parse_exception"),
        ("create", 201, None),
        ("index", 400, "action_request_validation_exception"),
    ]
    assert sorted(e["message"] for e in s.events("event.dataset:mixed")) == ["good 1", "good 2"]
    # bodies that are not bulk bodies at all
    assert raw(s, "POST", "/_bulk", b"").status_code == 400
    assert raw(s, "POST", "/_bulk", b"\x00\x01\x02garbage").status_code == 200
    bad_gzip = raw(s, "POST", "/_bulk", b"nope", headers={"Content-Encoding": "gzip"})
    assert bad_gzip.status_code == 400 and bad_gzip.json()["error"]["type"]


def test_oversize_bulk_is_413(ingest_server: IngestServer) -> None:
    s = ingest_server
    bomb = gzip.compress(b"\n" * ((32 << 20) + 1))
    resp = raw(s, "POST", "/_bulk", bomb, headers={"Content-Encoding": "gzip"})
    assert resp.status_code == 413 and resp.headers[PRODUCT] == "Elasticsearch"


ES_PATHS = [
    ("GET", "/"),
    ("HEAD", "/"),
    ("GET", "/_license"),
    ("GET", "/_xpack"),
    ("GET", "/_nodes"),
    ("GET", "/_cluster/health"),
    ("GET", "/_index_template/t"),
    ("PUT", "/_index_template/t"),
    ("HEAD", "/_ilm/policy/p"),
    ("PUT", "/_ilm/policy/p"),
    ("POST", "/_bulk"),
    ("PUT", "/_bulk"),
    ("POST", "/idx/_bulk"),
    ("POST", "/idx/_doc"),
    ("PUT", "/idx/_doc/1"),
    ("PUT", "/idx/_create/1"),
]


@pytest.mark.parametrize(("method", "path"), ES_PATHS, ids=[f"{m} {p}" for m, p in ES_PATHS])
def test_every_es_path_needs_an_ingest_token(
    ingest_server: IngestServer, method: str, path: str
) -> None:
    s = ingest_server
    body = bulk_body({"index": {"_index": "authz"}}, {"message": "must not be stored"})
    if "_doc" in path or "_create" in path:
        body = b'{"message": "must not be stored"}'
    basic_read = "Basic " + base64.b64encode(f"u:{s.read}".encode()).decode()
    if (method, path) == ("GET", "/"):
        # no credentials at all: a browser, which gets the UI's login page, not ES
        resp = raw(s, method, path, body, token=None)
        assert resp.status_code == 303 and resp.headers["location"].startswith("/login")
    for token, status in (
        *([(None, 401)] if (method, path) != ("GET", "/") else []),
        ("lsoc_" + "x" * 43, 401),
        ("not-a-token", 401),
        (s.read, 403),
    ):
        resp = raw(s, method, path, body, token=token)
        assert resp.status_code == status, (token, resp.text)
        assert resp.headers[PRODUCT] == "Elasticsearch"
        if status == 401:
            assert "Basic" in resp.headers["www-authenticate"]
            assert "ApiKey" in resp.headers["www-authenticate"]
        if method != "HEAD":
            assert resp.json()["error"]["type"] == "security_exception"
    resp = httpx.request(
        method, f"{s.url}{path}", content=body, headers={"Authorization": basic_read}
    )
    assert resp.status_code == 403
    assert s.search("event.dataset:authz")["total"] == 0
    assert s.search('message:"must not be stored"')["total"] == 0


def test_attacker_documents_are_stored_verbatim(ingest_server: IngestServer) -> None:
    s = ingest_server
    nasty = [
        "<img src=x onerror=alert(1)>",
        "'); DELETE FROM events; --",
        '{"index":{"_index":"evil"}}',
        "\x1b]0;pwned\x07 \u202e",
        "\\u0000 ${jndi:ldap://x/y}",
    ]
    es = client(s, "bearer")
    docs = [{"_index": "attack-es", "message": m, "user": {"name": m}, m: m} for m in nasty]
    assert helpers.bulk(es, docs) == (len(nasty), [])
    events = s.events("event.dataset:attack-es")
    assert sorted(e["message"] for e in events) == sorted(nasty)
    for e in events:
        original = json.loads(e["event.original"])
        assert original["message"] == e["message"] == e["user.name"]
        assert json.loads(e["labels"]) == {e["message"]: e["message"]}
    assert s.search("event.dataset:evil")["total"] == 0


def test_api_v1_is_not_shadowed(ingest_server: IngestServer) -> None:
    s = ingest_server
    resp = httpx.get(f"{s.url}/api/v1/health")
    assert resp.status_code == 200 and PRODUCT not in resp.headers
    assert httpx.get(f"{s.url}/api/v1/nope").status_code == 404
