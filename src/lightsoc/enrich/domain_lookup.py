"""Domain-check HTTP API lookups (the reference pipeline's "is this domain malicious?").

For each batch: the distinct registered domains (`dns.question.registered_domain`,
`url.registered_domain`; rows marked `_allowed` excluded) that are neither in
the in-memory cache nor in the state store's TTL cache (`intel_lookups`) are
sent to the service, `concurrency` at a time, at most `rate` requests per
second. The batch waits at most `max_wait` seconds for the answers; lookups
still running then finish in the background and apply to later batches, so
a slow or hanging service never holds the pipeline for longer than that.

After `breaker_failures` consecutive failures (timeouts, connection errors,
HTTP >= 400, unreadable JSON) the circuit breaker opens: no requests for
`breaker_cooldown` seconds (the skipped domains are counted), then one
batch's worth of lookups tries again.

Options (config `enrich.domain_lookup`): `url` (template with `{domain}`),
`verdict_path` (dotted JSON path, list indices allowed: `data.0.malicious`),
`malicious` (values meaning malicious, default true/"malicious"/"bad"/1) or
`threshold` (a numeric verdict >= threshold is malicious), `ttl`,
`concurrency`, `rate`, `timeout`, `max_wait`, `max_pending`,
`breaker_failures`, `breaker_cooldown`, `name` (the `intel:<name>` tag,
default `domain-check`), `confidence`; `state` (a `StateStore`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Any
from urllib.parse import quote

import httpx
import polars as pl

from lightsoc.detect.flags import append_flags
from lightsoc.enrich.base import EnrichConfigError, Enricher, ecs_types, merge
from lightsoc.enrich.intel import SCORES, THREAT_FIELDS
from lightsoc.registry import register
from lightsoc.store.state_intel import CONFIDENCES, IntelStore

log = logging.getLogger(__name__)

FIELDS = ("dns.question.registered_domain", "url.registered_domain")
ALLOWED = "_allowed"
_MISSING = object()


def json_path(doc: Any, path: str) -> Any:  # noqa: ANN401 - any JSON value
    """The value at a dotted path (`a.b.0.c`); `_MISSING` when absent."""
    cur = doc
    for part in path.split(".") if path else []:
        if isinstance(cur, dict) and part in cur:
            cur = cur[part]
        elif (
            isinstance(cur, list)
            and part.lstrip("-").isdigit()
            and -len(cur) <= int(part) < len(cur)
        ):
            cur = cur[int(part)]
        else:
            return _MISSING
    return cur


class RateLimiter:
    """At most `rate` acquisitions per second across threads (evenly spaced)."""

    def __init__(
        self,
        rate: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.interval = 1.0 / rate if rate > 0 else 0.0
        self._next = 0.0
        self._lock = threading.Lock()
        self._clock = clock
        self._sleep = sleep

    def acquire(self) -> None:
        with self._lock:
            now = self._clock()
            slot = max(now, self._next)
            self._next = slot + self.interval
        if slot > now:
            self._sleep(slot - now)


class CircuitBreaker:
    """Open after `failures` consecutive failures; closed again after `cooldown` seconds."""

    def __init__(self, failures: int, cooldown: float) -> None:
        self.failures = failures
        self.cooldown = cooldown
        self.consecutive = 0
        self.open_until = 0.0
        self.trips = 0
        self._lock = threading.Lock()

    def allow(self) -> bool:
        return time.monotonic() >= self.open_until

    def record(self, ok: bool) -> None:
        with self._lock:
            if ok:
                self.consecutive = 0
                return
            self.consecutive += 1
            if self.consecutive >= self.failures and self.allow():
                self.open_until = time.monotonic() + self.cooldown
                self.trips += 1
                log.warning(
                    "domain lookup: service failing, pausing lookups for %.0f s", self.cooldown
                )


def _number(options: dict[str, Any], key: str, default: float, minimum: float = 0.0) -> float:
    try:
        value = float(options.get(key, default))
    except (TypeError, ValueError):
        raise EnrichConfigError(f"domain_lookup.{key}: expected a number") from None
    if value < minimum:
        raise EnrichConfigError(f"domain_lookup.{key}: must be >= {minimum}")
    return value


@register("enrichers", "domain_lookup")
class DomainLookupEnricher(Enricher):
    """Ask an HTTP domain-check service about each new registered domain."""

    outputs = (*THREAT_FIELDS, "rule.name", "rule.id", "event.risk_score")

    def __init__(self, options: dict[str, Any] | None = None) -> None:
        super().__init__(options)
        o = self.options
        self.url = str(o.get("url") or "")
        if "{domain}" not in self.url:
            raise EnrichConfigError("domain_lookup.url: a URL template with {domain} is required")
        self.verdict_path = str(o.get("verdict_path") or "")
        self.malicious_values = list(o.get("malicious") or [True, "malicious", "bad", 1])
        self.threshold = None if o.get("threshold") is None else _number(o, "threshold", 0, -1e18)
        self.ttl = _number(o, "ttl", 86400)
        self.rate = _number(o, "rate", 10)
        self.timeout = _number(o, "timeout", 3, 0.001)
        self.max_wait = _number(o, "max_wait", 0.5)
        self.max_pending = int(_number(o, "max_pending", 1000, 1))
        concurrency = int(_number(o, "concurrency", 4, 1))
        self.name = str(o.get("name") or "domain-check")
        self.confidence = str(o.get("confidence") or "Medium")
        if self.confidence not in CONFIDENCES:
            raise EnrichConfigError(f"domain_lookup.confidence: one of {', '.join(CONFIDENCES)}")
        state = o.get("state")
        self.store = (
            None
            if state is None
            else (state if isinstance(state, IntelStore) else IntelStore(state))
        )
        self.limiter = RateLimiter(self.rate)
        self.breaker = CircuitBreaker(
            int(_number(o, "breaker_failures", 5, 1)), _number(o, "breaker_cooldown", 60)
        )
        self._client = httpx.Client(timeout=self.timeout, follow_redirects=False)
        self._pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="domain-lookup")
        #: domain -> (malicious, verdict, expiry on the monotonic clock)
        self.known: dict[str, tuple[bool, str | None, float]] = {}
        self._pending: dict[str, Future[tuple[bool, str | None] | None]] = {}
        self._unsaved: dict[str, tuple[bool, str | None]] = {}
        self._mem_lock = threading.Lock()
        self.stats = dict.fromkeys(
            (
                "requests",
                "failures",
                "cache_hits",
                "store_hits",
                "skipped_breaker",
                "skipped_busy",
                "late",
            ),
            0,
        )

    # -- the service ---------------------------------------------------------------
    def _ask(self, domain: str) -> tuple[bool, str | None] | None:
        """One request (worker thread); None on failure."""
        self.limiter.acquire()
        if not self.breaker.allow():
            self.stats["skipped_breaker"] += 1
            return None
        self.stats["requests"] += 1
        try:
            resp = self._client.get(self.url.replace("{domain}", quote(domain, safe="")))
            resp.raise_for_status()
            value = json_path(resp.json(), self.verdict_path)
        except (httpx.HTTPError, ValueError) as exc:
            self.stats["failures"] += 1
            self.breaker.record(False)
            log.debug("domain lookup %s failed: %s", domain, exc)
            return None
        self.breaker.record(True)
        if value is _MISSING:
            return (False, None)
        return (self._is_malicious(value), str(value))

    def _is_malicious(self, value: Any) -> bool:  # noqa: ANN401 - any JSON value
        if self.threshold is not None:
            try:
                return float(value) >= self.threshold
            except (TypeError, ValueError):
                return False
        if isinstance(value, str):
            return value.lower() in {str(v).lower() for v in self.malicious_values}
        return any(value == v and type(value) is type(v) for v in self.malicious_values)

    def _done(self, domain: str, fut: Future[tuple[bool, str | None] | None]) -> None:
        """Completion callback (any thread): keep the answer for this and later batches."""
        with self._mem_lock:
            self._pending.pop(domain, None)
            answer = None if fut.cancelled() or fut.exception() else fut.result()
            if answer is not None:
                self.known[domain] = (answer[0], answer[1], time.monotonic() + self.ttl)
                self._unsaved[domain] = answer

    # -- per batch -----------------------------------------------------------------
    def resolve(self, domains: list[str]) -> dict[str, tuple[bool, str | None]]:
        """Answers for `domains` known now, after waiting at most `max_wait` for new ones."""
        now = time.monotonic()
        with self._mem_lock:
            fresh = {d: v for d in domains if (v := self.known.get(d)) and v[2] > now}
            missing = [d for d in domains if d not in fresh and d not in self._pending]
        self.stats["cache_hits"] += len(fresh)
        if missing and self.store is not None:
            stored = self.store.cached_lookups(missing)
            self.stats["store_hits"] += len(stored)
            with self._mem_lock:
                for d, (mal, verdict) in stored.items():
                    # the store's TTL already applied; keep it in memory for one more TTL at most
                    self.known[d] = (mal, verdict, now + self.ttl)
                    fresh[d] = self.known[d]
            missing = [d for d in missing if d not in stored]
        started: list[Future[Any]] = []
        for d in missing:
            if not self.breaker.allow():
                self.stats["skipped_breaker"] += 1
                continue
            with self._mem_lock:
                if len(self._pending) >= self.max_pending:
                    self.stats["skipped_busy"] += 1
                    continue
                fut = self._pool.submit(self._ask, d)
                self._pending[d] = fut
            fut.add_done_callback(lambda f, d=d: self._done(d, f))
            started.append(fut)
        if started and self.max_wait > 0:
            _, not_done = wait(started, timeout=self.max_wait)
            self.stats["late"] += len(not_done)
        self._save()
        with self._mem_lock:
            return {d: (v[0], v[1]) for d in domains if (v := self.known.get(d))}

    def _save(self) -> None:
        with self._mem_lock:
            todo, self._unsaved = self._unsaved, {}
        if todo and self.store is not None:
            try:
                self.store.store_lookups(todo, self.ttl)
            except Exception:  # a busy database must not stop the pipeline; memory still has them
                log.exception("domain lookup: could not save %d answers", len(todo))

    def enrich(self, df: pl.DataFrame) -> pl.DataFrame:
        field = next((f for f in FIELDS if f in df.columns), None)
        if field is None or df.height == 0:
            return df
        keys = df.get_column(field).cast(pl.String, strict=False)
        if ALLOWED in df.columns:
            keys = keys.zip_with(
                ~df.get_column(ALLOWED).fill_null(False),
                pl.Series([None] * df.height, dtype=pl.String),
            )
        domains = [d for d in keys.drop_nulls().unique().to_list() if d]
        if not domains:
            return df
        bad = {d: verdict for d, (mal, verdict) in self.resolve(domains).items() if mal}
        if not bad:
            return df
        hit = keys.is_in(list(bad)).fill_null(False)
        if "threat.indicator.name" in df.columns:  # an intel match already explains the row
            hit = hit & df.get_column("threat.indicator.name").is_null()
        if not hit.any():
            return df
        none = pl.lit(None, pl.String)
        new = df.select(
            pl.when(pl.lit(hit))
            .then(pl.lit("domain-name"))
            .otherwise(none)
            .alias("threat.indicator.type"),
            pl.when(pl.lit(hit)).then(pl.lit(keys)).otherwise(none).alias("threat.indicator.name"),
            pl.when(pl.lit(hit))
            .then(pl.lit(self.name))
            .otherwise(none)
            .alias("threat.indicator.provider"),
            pl.when(pl.lit(hit))
            .then(pl.lit(self.confidence))
            .otherwise(none)
            .alias("threat.indicator.confidence"),
            pl.when(pl.lit(hit)).then(pl.lit(self.name)).otherwise(none).alias("threat.feed.name"),
            pl.when(pl.lit(hit))
            .then(pl.lit(field))
            .otherwise(none)
            .alias("threat.enrichments.matched.field"),
            pl.when(pl.lit(hit))
            .then(pl.lit(keys))
            .otherwise(none)
            .alias("threat.enrichments.matched.atomic"),
        )
        df = merge(df, new, ecs_types(THREAT_FIELDS))
        score = df.select(
            pl.when(pl.lit(hit))
            .then(pl.lit(SCORES[self.confidence]))
            .otherwise(pl.lit(None, pl.Float64))
        ).to_series()
        tag = pl.lit("intel:") + pl.lit(new.get_column("threat.indicator.provider"))
        return append_flags(df, tag, tag, score)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._client.close()
