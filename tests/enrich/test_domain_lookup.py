"""Domain-check lookups against a real HTTP service on 127.0.0.1 that counts requests."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import wait
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import polars as pl
import pytest

from lightsoc.config import load_config
from lightsoc.enrich.domain_lookup import DomainLookupEnricher, RateLimiter, json_path
from lightsoc.ingest import ingest
from lightsoc.runtime import open_stores
from lightsoc.store.state import StateStore
from lightsoc.store.state_intel import IntelStore
from lightsoc.timeutil import since_range


class Service:
    """The domain-check service: `mode` ok / fail (HTTP 500) / hang (until `release`)."""

    def __init__(self) -> None:
        self.mode = "ok"
        self.bad = {"evil.example", "malware.test"}
        self.asked: Counter[str] = Counter()
        self.release = threading.Event()
        self.lock = threading.Lock()
        svc = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server API
                domain = parse_qs(urlsplit(self.path).query).get("domain", [""])[0]
                with svc.lock:
                    svc.asked[domain] += 1
                if svc.mode == "hang":
                    svc.release.wait(30)
                if svc.mode == "fail":
                    self.send_response(500)
                    self.end_headers()
                    return
                body = json.dumps(
                    {"data": {"domain": domain, "malicious": domain in svc.bad, "score": 90}}
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/check?domain={{domain}}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def requests(self) -> int:
        with self.lock:
            return sum(self.asked.values())

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def service() -> Iterator[Service]:
    svc = Service()
    yield svc
    svc.close()


@pytest.fixture
def state(state_url: str) -> Iterator[StateStore]:
    s = StateStore(state_url)
    yield s
    s.close()


def make(service: Service, state: StateStore | None, **kw: object) -> DomainLookupEnricher:
    opts = {
        "url": service.url,
        "verdict_path": "data.malicious",
        "max_wait": 10,
        "timeout": 5,
        "state": state,
        **kw,
    }
    return DomainLookupEnricher(opts)


def batch(*names: str, allowed: list[bool] | None = None) -> pl.DataFrame:
    df = pl.DataFrame({"dns.question.registered_domain": list(names)})
    if allowed is not None:
        df = df.with_columns(pl.Series("_allowed", allowed))
    return df


def settle(e: DomainLookupEnricher) -> None:
    """Wait for lookups still running in the background."""
    wait(list(e._pending.values()), timeout=60)


def test_unique_only_cache_and_ttl(service: Service, state: StateStore) -> None:
    e = make(service, state)
    df = batch(
        "evil.example",
        "good.example",
        "evil.example",
        "good.example",
        "trusted.example",
        None,
        allowed=[False, False, False, False, True, False],
    )
    out = e.enrich(df)
    assert service.asked == Counter({"evil.example": 1, "good.example": 1})  # unique, not allowed
    assert out["threat.indicator.name"].to_list() == [
        "evil.example",
        None,
        "evil.example",
        None,
        None,
        None,
    ]
    assert out["rule.name"].to_list()[0] == ["intel:domain-check"]
    assert out["event.risk_score"].to_list()[:2] == [50.0, None]
    assert out["threat.enrichments.matched.field"][0] == "dns.question.registered_domain"
    # memory cache: nothing asked again
    e.enrich(df)
    assert service.requests == 2 and e.stats["cache_hits"] == 2
    # the state store's TTL cache serves a new process
    e2 = make(service, state)
    out = e2.enrich(df)
    assert service.requests == 2 and e2.stats["store_hits"] == 2
    assert out["threat.indicator.name"][0] == "evil.example"
    store = IntelStore(state)
    assert store.cached_lookups(["evil.example"]) == {"evil.example": (True, "True")}
    assert store.cached_lookups(["evil.example"], now=time.time() + 86400 + 1) == {}
    # ttl 0: every batch asks again
    e3 = make(service, None, ttl=0)
    e3.enrich(batch("evil.example"))
    e3.enrich(batch("evil.example"))
    assert service.asked["evil.example"] == 3
    e.close(), e2.close(), e3.close()


def test_threshold_and_json_path(service: Service) -> None:
    assert json_path({"a": [{"b": 1}]}, "a.0.b") == 1
    e = make(service, None, verdict_path="data.score", threshold=80)
    out = e.enrich(batch("anything.example"))
    assert out["threat.indicator.name"].to_list() == ["anything.example"]
    e.close()


def test_rate_limit_spaces_requests(service: Service) -> None:
    # a frozen clock: each acquisition must wait one interval more than the previous
    waits: list[float] = []
    limiter = RateLimiter(20, clock=lambda: 100.0, sleep=waits.append)
    for _ in range(5):
        limiter.acquire()
    assert waits == pytest.approx([0.05, 0.10, 0.15, 0.20])
    # the enricher's limiter is shared by its workers: 6 requests take 6 slots
    e = make(service, None, rate=20, concurrency=4)
    e.enrich(batch(*(f"d{i}.example" for i in range(6))))
    assert service.requests == 6
    assert e.limiter._next > 0 and e.limiter.interval == pytest.approx(0.05)
    e.close()


def test_failing_service_trips_the_breaker(service: Service) -> None:
    service.mode = "fail"
    e = make(service, None, concurrency=1, breaker_failures=2, breaker_cooldown=3600)
    out = e.enrich(batch(*(f"d{i}.example" for i in range(5))))
    assert out.height == 5 and "threat.indicator.name" not in out.columns
    assert service.requests == 2  # then the breaker opened
    assert e.breaker.trips == 1 and e.stats["failures"] == 2
    out = e.enrich(batch("other.example", "evil.example"))
    assert out.height == 2 and service.requests == 2
    assert e.stats["skipped_breaker"] >= 5
    e.close()


def test_hanging_service_never_blocks_and_answers_later(service: Service) -> None:
    service.mode = "hang"
    e = make(service, None, max_wait=0.05, timeout=30, concurrency=2)
    out = e.enrich(batch("evil.example", "good.example"))
    assert "threat.indicator.name" not in out.columns  # returned before the answers
    assert e.stats["late"] == 2 and len(e._pending) == 2
    # the same domains in the next batch are not asked twice while pending
    e.enrich(batch("evil.example"))
    assert len(e._pending) == 2
    service.release.set()
    settle(e)
    out = e.enrich(batch("evil.example", "good.example"))
    assert out["threat.indicator.name"].to_list() == ["evil.example", None]
    assert service.asked == Counter({"evil.example": 1, "good.example": 1})
    e.close()


def test_hanging_service_times_out_and_trips(service: Service) -> None:
    service.mode = "hang"
    e = make(service, None, max_wait=0.05, timeout=0.2, concurrency=2, breaker_failures=2)
    e.enrich(batch("a.example", "b.example"))
    settle(e)
    assert e.stats["failures"] == 2 and e.breaker.trips == 1
    asked = service.requests
    out = e.enrich(batch("c.example"))
    assert out.height == 1 and service.requests == asked
    e.close()


def test_pipeline_with_lookup_from_config(tmp_path: Path, service: Service) -> None:
    """`enrich.domain_lookup` in lightsoc.yml, Suricata DNS events, the DuckDB store."""
    names = ["www.evil.example", "cdn.evil.example", "www.good.example", "mail.malware.test"]
    eve = tmp_path / "eve.json"
    eve.write_text(
        "".join(
            json.dumps(
                {
                    "timestamp": "2024-05-01T10:00:00.000000+0000",
                    "event_type": "dns",
                    "src_ip": "192.168.1.20",
                    "src_port": 40000 + i,
                    "dest_ip": "192.168.1.1",
                    "dest_port": 53,
                    "proto": "UDP",
                    "dns": {"type": "query", "id": i, "rrname": n, "rrtype": "A"},
                }
            )
            + "\n"
            for i, n in enumerate(names)
        )
    )
    data = tmp_path / "data"
    cfg = tmp_path / "lightsoc.yml"
    cfg.write_text(
        f"data_dir: {data}\n"
        "enrich:\n"
        "  domain_lookup:\n"
        f"    url: '{service.url}'\n"
        "    verdict_path: data.malicious\n"
        "    max_wait: 10\n"
        "    confidence: High\n"
    )
    config = load_config(cfg)
    stores = open_stores(data, config)
    try:
        stores.state  # noqa: B018 - the state store exists, so the lookup joins the chain
        ingest(config, stores, [eve])
        flagged = stores.events.search(
            "_exists_:threat.indicator.name", since_range("all"), limit=100
        ).to_pylist()
    finally:
        stores.close()
    assert sorted(ev["dns.question.name"] for ev in flagged) == sorted(
        ["www.evil.example", "cdn.evil.example", "mail.malware.test"]
    )
    assert all("intel:domain-check" in ev["rule.name"] for ev in flagged)
    assert all(ev["event.risk_score"] >= 75.0 for ev in flagged)
    assert service.asked == Counter({"evil.example": 1, "good.example": 1, "malware.test": 1})


def test_registered_as_an_enricher() -> None:
    from lightsoc import registry

    assert registry.get("enrichers", "domain_lookup") is DomainLookupEnricher
