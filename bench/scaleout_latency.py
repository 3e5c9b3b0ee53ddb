"""Syslog message -> stored event -> alert, over the split roles (bench/scaleout.py).

One collector (a syslog TCP listener) publishes to Redis; one processor parses,
runs the stream rules of rules/linux, stores into ClickHouse and raises alerts
into PostgreSQL. The bench sends sshd "Failed password for invalid user" lines
over one TCP connection, paced at each of `rates` per second, each with its own
user name and its own source IP (alerts group by entity, so one alert each);
two threads poll ClickHouse (by `source.ip`) and the alerts table (by entity)
every `poll` seconds and note when each marker first shows. Send and seen times
are this process's wall clock; the processor's own stamps (`event.ingested`
when it takes the batch, the alert's `created`) split the path into parts.

The addresses are text in log lines (198.18.0.0/15, the benchmarking range):
nothing is sent to them. A few warm-up messages go first (the processor opens
the alert store on its first flagged batch); they are not counted.
"""

from __future__ import annotations

import math
import socket
import statistics
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import polars as pl
import sqlalchemy as sa
from clickhouse_driver import Client

HERE = Path(__file__).resolve().parent
LINUX_RULES = HERE.parent / "rules" / "linux"
#: a phase sends for at most this long (a slow rate gets fewer messages)
MAX_SEND_S = 30.0
#: after the last send, how long the events and alerts may take to show
SEEN_TIMEOUT_S = 180.0
PHASE_BLOCKS = 50  # /24 blocks of 198.18.x.y per phase: 12,500 distinct addresses


#: the servers module (bench/scaleout_servers.py), set by bench/scaleout.py, which loads
#: both by path (bench modules are not a package)
S: Any = None


def _ip(phase: int, i: int) -> str:
    return f"198.18.{phase * PHASE_BLOCKS + i // 250}.{i % 250 + 1}"


def _sshd_line(user: str, ip: str, i: int) -> bytes:
    stamp = time.strftime("%b %e %H:%M:%S", time.localtime())
    return (
        f"<38>{stamp} bench sshd[{10000 + i % 50000}]: Failed password for invalid user {user} "
        f"from {ip} port {20000 + i % 40000} ssh2\n"
    ).encode()


class Poller(threading.Thread):
    """Polls a store for markers; when each was first seen (wall clock) and its extra."""

    def __init__(self, query: Any, every: float, close: Any) -> None:  # noqa: ANN401
        super().__init__(daemon=True)
        self.query = query  # () -> [(marker, extra)]
        self.close = close
        self.every = every
        self.seen: dict[str, tuple[float, Any]] = {}
        self.cycles = 0
        self.busy = 0.0
        self.errors = 0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            t0 = time.perf_counter()
            try:
                rows = self.query()
            except Exception:  # noqa: BLE001 - counted; a busy server is asked again
                self.errors += 1
                rows = []
            now = time.time()
            for marker, extra in rows:
                self.seen.setdefault(marker, (now, extra))
            self.cycles += 1
            self.busy += time.perf_counter() - t0
            self.stop.wait(self.every)
        self.close()

    def cycle_ms(self) -> float:
        """Mean time between two looks at the store: the resolution of `seen`."""
        return round((self.busy / max(1, self.cycles) + self.every) * 1000, 1)


def _event_poller(port: int, db: str, every: float) -> Poller:
    client = Client("127.0.0.1", port=port)
    sql = (
        f"SELECT `source.ip`, `event.ingested` FROM `{db}`.events "  # noqa: S608
        "WHERE `source.ip` LIKE '198.1%'"
    )
    return Poller(lambda: client.execute(sql), every, client.disconnect)


def _alert_poller(state_url: str, every: float) -> Poller:
    engine = sa.create_engine(state_url)
    sql = sa.text("SELECT entity_value, created FROM alerts WHERE entity_value LIKE '198.1%'")

    def query() -> list[tuple[str, Any]]:
        with engine.connect() as conn:
            return [(r[0], r[1]) for r in conn.execute(sql)]

    return Poller(query, every, engine.dispose)


def _pct(values: list[float], q: float) -> float:
    """Nearest-rank percentile."""
    s = sorted(values)
    return round(s[min(len(s) - 1, max(0, math.ceil(len(s) * q / 100) - 1))], 1)


def _dist(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    return {
        "p50_ms": _pct(values, 50),
        "p99_ms": _pct(values, 99),
        "max_ms": round(max(values), 1),
        "min_ms": round(min(values), 1),
    }


def _send_paced(conn: socket.socket, lines: list[tuple[str, bytes]], rate: float) -> dict:
    """Send each line at its time (i / rate after the first); the wall clock of each."""
    sent: dict[str, float] = {}
    start = time.perf_counter()
    for i, (ip, line) in enumerate(lines):
        if (pause := start + i / rate - time.perf_counter()) > 0:
            time.sleep(pause)
        sent[ip] = time.time()
        conn.sendall(line)
    return sent


def _connect(port: int, timeout: float = 30.0) -> socket.socket:
    """A TCP connection to the collector's syslog listener, once it is bound."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return socket.create_connection(("127.0.0.1", port), timeout=5)
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def append_ms(ch_port: int, runs: int = 5) -> float:
    """Median ms of one `ClickHouseEventStore.append` of a 5-event batch (a bus batch:
    the batch-id check, the events, the counters, the batch id), from this process."""
    from lightsoc import schema
    from lightsoc.store.base import SourceCounters
    from lightsoc.store.events_clickhouse import ClickHouseEventStore

    db = f"bench_probe_{uuid.uuid4().hex[:6]}"
    store = ClickHouseEventStore(f"clickhouse://127.0.0.1:{ch_port}/{db}")
    times = []
    try:
        for i in range(runs + 1):
            events = schema.conform(
                pl.DataFrame({"event.id": [f"p{i}-{j}" for j in range(5)], "message": ["x"] * 5})
            )
            counters = [SourceCounters("net", "syslog", received=5, events=5)]
            t0 = time.perf_counter()
            store.append(events, [], counters, batch_id=uuid.uuid4().hex)
            times.append((time.perf_counter() - t0) * 1000)
        store.engine.execute(f"DROP DATABASE IF EXISTS `{db}`")
    finally:
        store.close()
    return round(statistics.median(times[1:]), 1)  # the first one creates the tables


def _phase(
    conn: socket.socket,
    pollers: list[Any],
    r: Any,  # noqa: ANN401
    stream: str,
    phase: int,
    rate: float,
    messages: int,
) -> dict[str, Any]:
    n = max(1, min(messages, int(rate * MAX_SEND_S), PHASE_BLOCKS * 250))
    lines = [(ip := _ip(phase, i), _sshd_line(f"lsb{phase}x{i}", ip, i)) for i in range(n)]
    added0 = r.xinfo_stream(stream)["entries-added"]
    sent = _send_paced(conn, lines, rate)
    ev, al = pollers
    try:
        S.wait(
            lambda: set(sent) <= ev.seen.keys() and set(sent) <= al.seen.keys(),
            SEEN_TIMEOUT_S,
            f"the events and alerts of {n} messages at {rate}/s",
            0.05,
        )
    except RuntimeError:
        pass  # reported as fewer seen than sent
    batches = r.xinfo_stream(stream)["entries-added"] - added0

    def ms(seen: dict[str, tuple[float, Any]], ip: str, t: float) -> float | None:
        return round((seen[ip][0] - t) * 1000, 1) if ip in seen else None

    series = [
        [
            round((ev.seen[ip][1] / 1e6 - t) * 1000, 1) if ip in ev.seen else None,
            ms(ev.seen, ip, t),
            round((al.seen[ip][1].timestamp() - t) * 1000, 1) if ip in al.seen else None,
            ms(al.seen, ip, t),
        ]
        for ip, t in sent.items()
    ]
    cols = list(zip(*series, strict=True))
    to_event = [v for v in cols[1] if v is not None]
    quarter = max(1, len(to_event) // 4)
    return {
        "rate_per_s": rate,
        "messages": n,
        "bus_batches": batches,
        "events_seen": len(to_event),
        "alerts_seen": sum(v is not None for v in cols[3]),
        "to_event": _dist(to_event),
        "to_alert": _dist([v for v in cols[3] if v is not None]),
        "to_processor_taking_batch": _dist([v for v in cols[0] if v is not None]),
        "to_alert_committed": _dist([v for v in cols[2] if v is not None]),
        # a backlog shows as latency growing through the phase
        "to_event_p50_first_quarter_ms": _pct(to_event[:quarter], 50) if to_event else None,
        "to_event_p50_last_quarter_ms": _pct(to_event[-quarter:], 50) if to_event else None,
        # per message in send order: ms to the processor taking its batch, to its event
        # visible, to its alert committed, to its alert visible
        "series": series,
    }


def run_latency(
    srv: Any,  # noqa: ANN401 - scaleout_servers.Servers
    work: Path,
    messages: int,
    rates: tuple[float, ...],
    poll: float,
    warmup: int,
) -> dict[str, Any]:
    """1 collector (syslog TCP) + 1 processor: send -> event stored, send -> alert, per rate."""
    port = S.free_port()
    db = f"bench_lat_{uuid.uuid4().hex[:6]}"
    stream = f"lightsoc:bench:latency:{uuid.uuid4().hex[:6]}"
    state = srv.new_state_db()
    cfg = S.write_config(
        work / "latency.yml",
        bus=f"{srv.redis.url}?stream={stream}",
        events=f"clickhouse://127.0.0.1:{srv.ch_port}/{db}",
        state=state,
        sources={
            "net": {"type": "syslog", "listen": [f"tcp://127.0.0.1:{port}"], "format": "syslog"}
        },
        detect={"rules": [str(LINUX_RULES)]},
    )
    procs = [
        S.RoleProcess("process", cfg, "--data-dir", work / "lat-p"),
        S.RoleProcess("collect", cfg, "--data-dir", work / "lat-c"),
    ]
    pollers = [_event_poller(srv.ch_port, db, poll), _alert_poller(state, poll)]
    r = srv.redis.client()
    phases = []
    try:
        procs[0].start().wait_for("processing batches", timeout=120)
        procs[1].start().wait_for("collecting 1 source(s)", timeout=120)
        for p in pollers:
            p.start()
        conn = _connect(port)
        try:
            warm = [
                (ip := f"198.19.0.{i + 1}", _sshd_line(f"warm{i}", ip, i)) for i in range(warmup)
            ]
            sent = _send_paced(conn, warm, 10.0)
            S.wait(
                lambda: all(set(sent) <= p.seen.keys() for p in pollers),
                120,
                "the warm-up messages' events and alerts",
                0.05,
            )
            cpu0 = [S.cpu(p.pid) for p in procs]
            for phase, rate in enumerate(rates):
                phases.append(_phase(conn, pollers, r, stream, phase, rate, messages))
            cpu = [round(S.cpu(p.pid) - c, 2) for p, c in zip(procs, cpu0, strict=True)]
        finally:
            conn.close()
    finally:
        for p in pollers:
            p.stop.set()
        S.stop_all(procs)
        for p in pollers:
            if p.is_alive():
                p.join(30)
    return {
        "warmup_messages": warmup,
        "poll_resolution_ms": {"events": pollers[0].cycle_ms(), "alerts": pollers[1].cycle_ms()},
        "poll_errors": pollers[0].errors + pollers[1].errors,
        "cpu_seconds": {"processor": cpu[0], "collector": cpu[1]},
        "clickhouse_append_ms": append_ms(srv.ch_port),
        "runs": phases,
    }
