"""The EventStore contract on every backend: DuckDB (Parquet segments) and ClickHouse (chdb).

Both stores get the same mixed batch (web access, sshd, dns, flows over several
days, with IPs, users, hosts, domains, intel hits, labels and list fields) and
must answer every read the same. Where an order is not determined (ties of
equal counts in one histogram bucket), rows are compared as sets. The
backend-parametrised tests pin the write-side contract (replays, checkpoints,
counters, retention) on each backend with exact expectations.

chdb runs one embedded server per process: a test holds at most one chdb store.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pyarrow as pa
import pytest

from lightsoc import schema
from lightsoc.store.base import Checkpoint, EventStore, SourceCounters, TimeRange
from lightsoc.store.events_clickhouse import ClickHouseEventStore
from lightsoc.store.events_duckdb import DuckDBEventStore

T0 = datetime(2026, 1, 1, 0, 0, tzinfo=UTC)
DAYS = 5
BACKENDS = ["duckdb", "chdb"]


def _open(backend: str, root: Path) -> EventStore:
    if backend == "duckdb":
        return DuckDBEventStore(root / "events.duckdb")
    return ClickHouseEventStore(f"chdb://{root / 'chdb'}")


def mixed_events(n: int = 600, start: datetime = T0, prefix: str = "e") -> pl.DataFrame:
    """A realistic mix over `DAYS` days: nginx access, sshd, dns, netflow, unknown."""
    rows = []
    span = DAYS * 86_400
    for i in range(n):
        kind = i % 5
        # mostly distinct times; every 50th event shares the previous one's time
        ts = start + timedelta(seconds=(i - (i % 50 == 1)) * span // n)
        row: dict[str, object] = {
            "@timestamp": ts,
            "event.id": f"{prefix}{i:04d}",
            "log.offset": i * 100,
            "host.name": ["web1", "bastion", "dns1", "fw1", "misc"][kind],
            "event.ingested": ts + timedelta(seconds=2),
        }
        client = [f"10.0.{i % 3}.{i % 7 + 1}", f"192.168.1.{i % 200}", f"203.0.113.{i % 11}"][i % 3]
        if kind == 0:  # web access
            status = [200, 200, 404, 500, 302, 403][i % 6]
            path = ["/", "/admin/login", "/index.html", "/api/v1/items", "/wp-login.php"][
                i // 5 % 5
            ]
            row |= {
                "event.dataset": "nginx.access",
                "event.category": "web",
                "source.ip": client,
                "url.path": path,
                "url.original": f"{path}?q={i}",
                "http.request.method": "POST" if i % 4 == 0 else "GET",
                "http.response.status_code": status,
                "http.response.body.bytes": 100 + i,
                "user_agent.original": "curl/8.0" if i % 3 else "Mozilla/5.0",
                "message": f'{client} "GET {path}" {status}',
                "event.original": f'{client} - - "GET {path} HTTP/1.1" {status} {100 + i}',
                "tags": ["parse_failure"] if i % 97 == 0 else [],
                "labels": json.dumps({"env": "prod" if i % 2 else "dev", "team": "web"}),
            }
        elif kind == 1:  # sshd
            ok = i % 4 == 1
            user = ["root", "admin", "alice", 'o"dd\\name'][i % 4]
            row |= {
                "event.dataset": "sshd",
                "event.category": "authentication",
                "event.outcome": "success" if ok else "failure",
                "source.ip": client,
                "user.name": user,
                "process.name": "sshd",
                "process.pid": 1000 + i,
                "message": f"{'Accepted' if ok else 'Failed'} password for {user} from {client}",
                "event.original": f"sshd[{1000 + i}]: {'Accepted' if ok else 'Failed'} password",
            }
        elif kind == 2:  # dns
            name = ["www.example.com", "mail.example.org", "evil.test", "cdn.example.com"][i % 4]
            row |= {
                "event.dataset": "dns",
                "source.ip": client,
                "dns.question.name": name,
                "dns.question.registered_domain": ".".join(name.split(".")[-2:]),
                "dns.question.type": "A" if i % 2 else "AAAA",
                "dns.answers": [name, f"alias{i % 3}.{name}"],
                "dns.resolved_ip": [f"10.9.{i % 4}.1"] if i % 3 else [],
                "message": f"query {name}",
            }
        elif kind == 3:  # flows
            dst = f"198.51.100.{i % 9}"
            row |= {
                "event.dataset": "netflow",
                "source.ip": client,
                "source.port": 1024 + i % 60000,
                "destination.ip": dst,
                "destination.port": [443, 80, 22, 53][i % 4],
                "network.transport": "udp" if i % 4 == 3 else "tcp",
                "network.bytes": 1000 * (i % 13),
                "destination.geo.country_iso_code": "NL" if i % 9 < 5 else "US",
                "destination.as.number": 64500 + i % 9,
                "destination.as.organization.name": f"AS org {i % 9}",
            }
            if i % 9 == 4:  # an intel hit on the destination
                row |= {
                    "threat.indicator.name": dst,
                    "threat.indicator.type": "ipv4-addr",
                    "threat.indicator.provider": "feodo",
                    "threat.feed.name": "abuse.ch",
                    "threat.enrichments.matched.field": "destination.ip",
                    "rule.name": ["intel match"],
                    "rule.id": ["intel-1"],
                    "event.risk_score": 70.0,
                }
        else:  # no dataset: a raw syslog line
            row |= {"message": f"kernel: eth0 link up {i}", "source.ip": None}
        rows.append(row)
    overrides = {name: schema.polars_type(name) for row in rows for name in row}
    return pl.DataFrame(rows, schema_overrides=overrides, infer_schema_length=None)


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[tuple[EventStore, EventStore]]:
    """Both backends with the same events, in two batches (one a day later)."""
    data = mixed_events()
    stores = (_open("duckdb", tmp_path), _open("chdb", tmp_path))
    for s in stores:
        s.append(data.slice(0, 350))
        s.append(schema.to_arrow(data.slice(350)))
    yield stores
    for s in stores:
        s.close()


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[EventStore]:
    s = _open(request.param, tmp_path)
    yield s
    s.close()


def _key(row: tuple) -> tuple:
    """A sort key of histogram_by rows (ties in a bucket have no set order)."""
    return row[0], repr(row[1]), row[2]


def _rows(t: pa.Table) -> list[dict]:
    return t.to_pylist()


QUERIES = [
    "",
    "Failed",
    "fail*",
    '"GET /admin"',
    "source.ip:10.0.0.0/8",
    "source.ip:192.168.1.0/25",
    "source.ip:203.0.113.7",
    "source.ip:[10.0.0.1 TO 10.0.1.200]",
    "NOT http.response.status_code:200",
    "http.response.status_code:[400 TO 499]",
    "http.response.status_code:>=500",
    "url.path:/admin* OR url.path:*.php",
    "user.name:root OR user.name:admin",
    "event.dataset:dns AND dns.question.registered_domain:example.com",
    "tags:parse_failure",
    "dns.resolved_ip:10.9.0.0/16",
    "dns.answers:alias1*",
    "_exists_:threat.indicator.name",
    "labels.env:prod",
    "@timestamp:[2026-01-02 TO 2026-01-03]",
    "@timestamp:2026-01-04",
    "source.port:>1024 AND network.transport:tcp",
    "event.risk_score:>50",
    "NOT _exists_:event.dataset",
    "host.name:bastion AND NOT event.outcome:success",
    "message:*password*",
    "http.response.status_code:4*",
    'user.name:o\\"dd\\\\name',  # the value o"dd\name: quotes and backslashes as parameters
    'message:"\'); DROP TABLE events; --"',
]
TR = TimeRange(T0 + timedelta(days=1, hours=3), T0 + timedelta(days=3, hours=17))


@pytest.mark.parametrize("q", QUERIES)
def test_search_and_count_agree(pair, q):
    duck, ch = pair
    n = duck.count(q)
    assert n > 0 or "DROP" in q
    assert ch.count(q) == n
    assert ch.count(q, TR) == duck.count(q, TR)
    assert ch.count(q, limit=3) == duck.count(q, limit=3) == min(n, 3)
    for order in ("desc", "asc"):
        for kw in ({"limit": 25}, {"limit": 10, "offset": 7}, {"limit": 500, "time_range": TR}):
            expect = duck.search(q, order=order, **kw)
            got = ch.search(q, order=order, **kw)
            assert got.schema == expect.schema
            assert _rows(got) == _rows(expect), (q, order, kw)
    fields = ["event.id", "@timestamp", "tags", "source.ip"]
    assert _rows(ch.search(q, fields=fields, limit=50)) == _rows(
        duck.search(q, fields=fields, limit=50)
    )


def test_search_returns_the_schema_types(pair):
    duck, ch = pair
    got = ch.search("", limit=5)
    assert got.schema == schema.ARROW_SCHEMA
    assert got.num_rows == 5
    assert _rows(duck.search("", limit=600)) == _rows(ch.search("", limit=600))


@pytest.mark.parametrize("q", ["", "source.ip:10.0.0.0/8", "NOT event.dataset:sshd"])
def test_aggregations_agree(pair, q):
    duck, ch = pair
    for field in ("source.ip", "event.dataset", "user.name", "http.response.status_code"):
        for tr in (None, TR):
            assert ch.top(field, q, tr, n=5) == duck.top(field, q, tr, n=5)
    fields = ["source.ip", "destination.ip", "event.dataset", "host.name"]
    assert ch.top_many(fields, q, n=4) == duck.top_many(fields, q, n=4)
    assert ch.top_many(fields, q, TR, n=3) == duck.top_many(fields, q, TR, n=3)
    for interval in (3600, 6 * 3600, 86400, 7 * 86400):
        assert ch.histogram(interval, q) == duck.histogram(interval, q)
        assert ch.histogram(interval, q, TR) == duck.histogram(interval, q, TR)
    for interval, field, limit in ((86400, "event.dataset", 2), (6 * 3600, "source.ip", 3)):
        for tr in (None, TR):
            got = ch.histogram_by(interval, field, q, tr, limit)
            expect = duck.histogram_by(interval, field, q, tr, limit)
            assert sorted(got, key=_key) == sorted(expect, key=_key)
            assert None in {v for _, v, _ in expect}


def test_top_many_empty_and_unknown(pair):
    duck, ch = pair
    assert ch.top_many([]) == duck.top_many([]) == {}
    for s in pair:
        with pytest.raises(ValueError):
            s.top("no.such.field")
        with pytest.raises(ValueError):
            s.top_many(["source.ip", "no.such.field"])


@pytest.mark.parametrize("entity", ["10.0.0.1", "root", "bastion", "example.com", "198.51.100.4"])
def test_timeline_agrees(pair, entity):
    duck, ch = pair
    for order in ("asc", "desc"):
        for kw in (
            {},
            {"limit": 7},
            {"time_range": TR, "limit": 30},
            {"datasets": ["sshd", "unknown"]},
            {"datasets": []},
            {"fields": ["event.id", "message", "@timestamp"]},
        ):
            expect = duck.timeline(entity, order=order, **kw)
            got = ch.timeline(entity, order=order, **kw)
            assert _rows(got) == _rows(expect), (entity, order, kw)
    assert duck.timeline(entity).num_rows > 0


def test_events_by_id_and_entity_summary_agree(pair):
    duck, ch = pair
    ids = ["e0003", "e0450", "e0001", "nope", "e0599"]
    expect = duck.events_by_id(ids)
    assert expect.num_rows == 4
    assert _rows(ch.events_by_id(ids)) == _rows(expect)
    # the time range only narrows what is read (an alert's sample lies inside its range)
    around = TimeRange(T0, T0 + timedelta(days=DAYS))
    assert _rows(ch.events_by_id(ids, around, ["event.id"])) == _rows(
        duck.events_by_id(ids, around, ["event.id"])
    )
    assert _rows(ch.events_by_id([])) == _rows(duck.events_by_id([])) == []
    for entity in ("198.51.100.4", "10.0.0.1", "root", "www.example.com", "nobody"):
        for tr in (None, TR):
            a, b = duck.entity_summary(entity, tr), ch.entity_summary(entity, tr)
            key = repr
            assert (b.total, b.first_seen, b.last_seen, b.datasets, b.roles, b.geo) == (
                a.total,
                a.first_seen,
                a.last_seen,
                a.datasets,
                a.roles,
                a.geo,
            )
            assert sorted(b.intel, key=key) == sorted(a.intel, key=key)
    assert duck.entity_summary("198.51.100.4").intel


def test_stats_agree(pair):
    duck, ch = pair
    a, b = duck.stats(), ch.stats()
    for key in ("events_total", "parse_failures_total", "by_dataset", "sources"):
        assert b[key] == a[key]
    assert a["events_total"] == 600


def test_append_with_a_batch_id_is_idempotent(store):
    data = mixed_events(50)
    counters = [SourceCounters("web", "file", received=50, events=50, bytes=999, last_seen=T0)]
    cp = [Checkpoint("web", "1:2", "/var/log/a", "fp", 10, 0, 1234)]
    assert store.append(data, cp, counters, batch_id="b-1") is True
    assert store.append(data, cp, counters, batch_id="b-1") is False
    assert store.append(mixed_events(5, prefix="f"), batch_id="b-2") is True
    assert store.append(mixed_events(5, prefix="f"), batch_id="b-2") is False
    assert store.count() == 55
    assert store.search("", limit=100).num_rows == 55
    (src,) = store.source_counters()
    assert src["received"] == 50 and src["bytes"] == 999


def test_checkpoints_and_counters_round_trip(store):
    data = mixed_events(20)
    store.append(
        data.slice(0, 10),
        [Checkpoint("web", "1:2", "/var/log/a", "fp", 10, 0, 1234)],
        [
            SourceCounters(
                "web", "file", received=10, events=10, parse_failures=1, bytes=99, last_seen=T0
            ),
            SourceCounters("dns", "udp", received=3, events=2, dropped=1, last_seen=None),
        ],
    )
    store.append(
        data.slice(10, 10),
        [
            Checkpoint("web", "1:2", "/var/log/a", "fp", 10, 0, 2000),
            Checkpoint("web", "3:4", "/var/log/b", "fp2", 12, 1, 77, done=True),
        ],
        [
            SourceCounters(
                "web", "file", received=3, events=2, bytes=50, last_seen=T0 + timedelta(days=1)
            )
        ],
    )
    cps = store.checkpoints("web")
    assert cps == {
        "1:2": Checkpoint("web", "1:2", "/var/log/a", "fp", 10, 0, 2000),
        "3:4": Checkpoint("web", "3:4", "/var/log/b", "fp2", 12, 1, 77, done=True),
    }
    assert store.checkpoints("nope") == {}
    assert store.source_counters() == [
        {
            "id": "dns",
            "type": "udp",
            "received": 3,
            "events": 2,
            "parse_failures": 0,
            "dropped": 1,
            "bytes": 0,
            "last_seen": None,
        },
        {
            "id": "web",
            "type": "file",
            "received": 13,
            "events": 12,
            "parse_failures": 1,
            "dropped": 0,
            "bytes": 149,
            "last_seen": (T0 + timedelta(days=1)).isoformat(),
        },
    ]
    assert store.stats()["sources"] == store.source_counters()


def test_retention_drops_old_days_and_the_boundary_rows(store):
    now = T0 + timedelta(days=DAYS, hours=6)
    data = mixed_events()
    store.append(data)
    cutoff = now - timedelta(days=2)  # mid-day: whole days go, and part of one
    older = data.filter(pl.col("@timestamp") < cutoff).height
    assert 0 < older < data.height
    assert store.retention(2, now=now) == older
    assert store.count() == data.height - older
    assert store.count("", TimeRange(None, cutoff)) == 0
    kept = store.search("", limit=1, order="asc").column("@timestamp")[0].as_py()
    assert kept >= cutoff
    assert store.retention(2, now=now) == 0


def test_list_fields_keep_null_and_empty_apart(store):
    rows = mixed_events(10)
    store.append(rows)
    got = store.search("", fields=["event.id", "tags", "dns.answers"], order="asc", limit=10)
    tags = dict(
        zip(got.column("event.id").to_pylist(), got.column("tags").to_pylist(), strict=True)
    )
    assert tags["e0000"] == ["parse_failure"] and tags["e0005"] == [] and tags["e0001"] is None


REPO_CORRELATIONS = Path(__file__).resolve().parents[2] / "rules" / "correlation"


def test_builtin_correlation_rules_fire_the_same(pair):
    """Every built-in correlation rule over the same stored events: the same alerts."""
    from lightsoc.detect.correlation import load_correlations
    from lightsoc.detect.correlation_eval import evaluate, fetch

    loaded = load_correlations([REPO_CORRELATIONS])
    assert loaded.rules and not loaded.failures
    burst = [  # a password guessing burst that ends in a success: brute force + success
        {
            "@timestamp": T0 + timedelta(days=1, seconds=10 * i),
            "event.id": f"b{i:02d}",
            "event.dataset": "sshd",
            "event.category": "authentication",
            "event.action": "ssh_login",
            "event.outcome": "failure" if i < 14 else "success",
            "source.ip": "203.0.113.66",
            "user.name": f"u{i % 5}",
            "host.name": "bastion",
            "process.name": "sshd",
            "message": f"{'Failed' if i < 14 else 'Accepted'} password for u{i % 5} from 203.0.113.66",
        }
        for i in range(15)
    ]
    frame = pl.DataFrame(burst, schema_overrides={"@timestamp": schema.polars_type("@timestamp")})
    start, end = T0, T0 + timedelta(days=DAYS + 1)
    fired = []
    for s in pair:
        s.append(frame)
        out = []
        for rule in loaded.rules:
            events = fetch(s, [rule], start, end)  # type: ignore[arg-type]
            out += sorted(
                (rule.id, c.entity_value, c.window, c.count)
                for c in evaluate(rule, events, start, end)
            )
        fired.append(out)
    assert fired[0] == fired[1]
    assert {ip for _, ip, _, _ in fired[0]} == {"203.0.113.66"} and len(fired[0]) >= 2
    tr = TimeRange(T0 + timedelta(days=1), T0 + timedelta(days=2))
    fields = ["@timestamp", "event.id", "source.ip", "tags", "message"]
    duck, ch = pair
    assert _rows(ch.read_range(tr, fields, "event.dataset:sshd")) == _rows(
        duck.read_range(tr, fields, "event.dataset:sshd")
    )
