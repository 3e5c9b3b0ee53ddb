"""A split deployment as OS processes: collector -> Redis -> processor, state in PostgreSQL.

The collector tails a known file and receives a syslog stream (util-linux
`logger` over TCP); the processor stores into its embedded store. Mid-stream
the processor is killed with SIGKILL and restarted, and Redis (append-only
file, fsync always) is killed and restarted. Afterwards the stored count is
exact and no event is stored twice. Without faults, the alerts are those of
one process (`lightsoc run`) on the same input. (With a processor killed,
the stream alerts of the batches it had stored but not yet alerted on are
lost: the redelivered batch is recognised as stored and skipped.)
"""

from __future__ import annotations

import subprocess
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pytest

from lightsoc.alerts.store import AlertStore
from lightsoc.store.state import StateStore
from lightsoc.store.state_detect import WatermarkStore
from tests.helpers import (
    SSH_LOG,
    LightsocServer,
    cli_json,
    free_port,
    wait_until,
    write_config,
)
from tests.pg import PgCluster
from tests.redis_server import RedisServer
from tests.roles.procs import RoleProcess

LINUX_RULES = Path(__file__).resolve().parents[2] / "rules" / "linux"
STREAM = "lightsoc:test"
SYSLOG_MESSAGES = 600
PG_OUTAGE_SECONDS = 10
FILE_LINES = 2000  # OpenSSH_2k.log, its last line completed


def _syslog_lines() -> str:
    return "".join(
        f"Failed password for invalid user u{i % 40} from 198.51.100.{i % 7} port {4000 + i} ssh2\n"
        for i in range(SYSLOG_MESSAGES)
    )


def _send_syslog(port: int, text: str) -> None:
    subprocess.run(
        ["/usr/bin/logger", "-n", "127.0.0.1", "-P", str(port), "-T", "--rfc3164", "-t", "sshd"],
        input=text,
        text=True,
        check=True,
        timeout=60,
    )


def _config(
    path: Path,
    data_dir: Path,
    auth: Path,
    syslog_port: int,
    *,
    state: str,
    bus: str,
    events: str = "duckdb",
    rules: tuple[Path, ...] = (LINUX_RULES,),
) -> Path:
    return write_config(
        path,
        {
            "auth": {"type": "file", "paths": [str(auth / "*.log")], "format": "syslog"},
            "net": {
                "type": "syslog",
                "listen": [f"tcp://127.0.0.1:{syslog_port}"],
                "format": "syslog",
            },
        },
        data_dir=data_dir,
        bus=bus,
        # by default stream rules only: correlation needs a scheduler, and a scheduler
        # of its own needs an event store several processes share (ClickHouse)
        detect={"rules": [str(p) for p in rules], "interval": "2s"},
        pipeline={"batch_max_rows": 50, "batch_max_ms": 100},
        **{"store": {"retention_days": None, "state": state, "events": events}},
    )


def _group(r) -> dict:  # noqa: ANN001
    groups = r.xinfo_groups(STREAM) if r.exists(STREAM) else []
    return next(
        (g for g in groups if g["name"] in (b"lightsoc-processors", "lightsoc-processors")), {}
    )


def _stored(data_dir: Path) -> tuple[int, int, Counter]:
    """(events, distinct event ids, events per source) of the committed segments."""
    catalog = duckdb.connect(str(data_dir / "events.duckdb"), read_only=True)
    try:
        files = [
            str(data_dir / "events" / r[0])
            for r in catalog.sql("SELECT file FROM lightsoc_segments").fetchall()
        ]
    finally:
        catalog.close()
    con = duckdb.connect()
    try:
        rows = con.sql(
            'SELECT "lightsoc.source", "event.id" FROM read_parquet(?, union_by_name=true)',
            params=[files],
        ).fetchall()
    finally:
        con.close()
    return len(rows), len({r[1] for r in rows}), Counter(r[0] for r in rows)


def _alert_hits(state_url: str) -> dict[tuple[str, str], int]:
    state = StateStore(state_url)
    try:
        hits: Counter = Counter()
        for a in AlertStore(state).find(limit=1000):
            hits[(a.rule_id, a.entity_value)] += a.count
        return dict(hits)
    finally:
        state.close()


@pytest.fixture
def redis_server(tmp_path: Path):
    server = RedisServer(tmp_path / "redis", appendonly=True, appendfsync="always").start()
    yield server
    server.kill()


def _input(tmp_path: Path) -> Path:
    """40 files of 50 sshd lines: one batch per file."""
    auth = tmp_path / "auth"
    auth.mkdir(exist_ok=True)
    lines = SSH_LOG.read_bytes().rstrip(b"\n").split(b"\n")
    for i in range(0, FILE_LINES, 50):
        (auth / f"auth-{i:04d}.log").write_bytes(b"\n".join(lines[i : i + 50]) + b"\n")
    return auth


def _split_run(
    tmp_path: Path,
    redis_server: RedisServer,
    state: str,
    *,
    faults: bool = False,
    pg_outage: PgCluster | None = None,
) -> tuple[int, int, Counter]:
    """Collector + processor on the input; with `faults`, the processor is killed
    mid-stream and Redis killed and restarted; with `pg_outage`, the state store's
    server is stopped for 10 s while syslog arrives. Returns what was stored."""
    auth = _input(tmp_path)
    syslog_port = free_port()
    bus = f"{redis_server.url}?stream={STREAM}&maxlen=20"
    cfg = _config(tmp_path / "split.yml", tmp_path / "d", auth, syslog_port, state=state, bus=bus)
    collector = RoleProcess("collect", cfg, "--data-dir", tmp_path / "collector")
    processor = RoleProcess("process", cfg, "--data-dir", tmp_path / "processor")
    r = redis_server.client()
    try:
        collector.start().wait_for("collecting 2 source(s)")
        # maxlen 20 batches: the collector is held back until a processor drains the stream
        wait_until(lambda: r.exists(STREAM) and r.xlen(STREAM) >= 20, 60, "a full stream")
        processor.start().wait_for("processing batches")
        if faults:
            wait_until(lambda: (_group(r).get("entries-read") or 0) >= 10, 60, "10 batches read")
            before = _group(r)
            processor.kill()  # mid-stream: some stored, some pending, the files half read
            assert before["lag"] > 0, before  # work was left (the collector is held back)
        if pg_outage is not None:
            pg_outage.stop()
            _send_syslog(syslog_port, _syslog_lines())
            time.sleep(PG_OUTAGE_SECONDS)
            pg_outage.start()
        else:
            _send_syslog(syslog_port, _syslog_lines())
        if faults:
            redis_server.kill()  # the collector and its TCP sender carry on; batches wait
            redis_server.start()
            processor.start().wait_for("processing batches")
        total = FILE_LINES + SYSLOG_MESSAGES

        wait_until(
            lambda: _drained(r, cfg, total), 120, "every record handed over and acknowledged"
        )
        assert processor.stop() == 0, processor.output()
        assert collector.stop() == 0, collector.output()
    finally:
        collector.ensure_stopped()
        processor.ensure_stopped()
    return _stored(tmp_path / "processor")


def test_split_roles_store_exactly_and_alert_as_one_process(
    tmp_path: Path, redis_server: RedisServer, pg_cluster
) -> None:
    total = FILE_LINES + SYSLOG_MESSAGES
    split_state = pg_cluster.url(_new_db(pg_cluster))
    n, distinct, by_source = _split_run(tmp_path, redis_server, split_state, faults=False)
    assert by_source == {"auth": FILE_LINES, "net": SYSLOG_MESSAGES}
    assert n == distinct == total

    split_alerts = _alert_hits(split_state)
    assert split_alerts and split_alerts == _single_run_alerts(
        tmp_path, pg_cluster.url(_new_db(pg_cluster))
    )


def test_a_killed_processor_and_a_restarted_redis_lose_and_duplicate_nothing(
    tmp_path: Path, redis_server: RedisServer, pg_cluster
) -> None:
    state = pg_cluster.url(_new_db(pg_cluster))
    n, distinct, by_source = _split_run(tmp_path, redis_server, state, faults=True)
    assert by_source == {"auth": FILE_LINES, "net": SYSLOG_MESSAGES}
    assert n == distinct == FILE_LINES + SYSLOG_MESSAGES


def _single_run_alerts(
    tmp_path: Path, state: str, rules: tuple[Path, ...] = (LINUX_RULES,)
) -> dict[tuple[str, str], int]:
    """The alerts `lightsoc run` (one process) raises on the same input."""
    total = FILE_LINES + SYSLOG_MESSAGES
    port = free_port()
    one = _config(
        tmp_path / "one.yml",
        tmp_path / "one",
        _input(tmp_path),
        port,
        state=state,
        bus="memory",
        rules=rules,
    )
    server = LightsocServer(["--config", one], cwd=tmp_path, data_dir=tmp_path / "one")
    try:
        server.start()
        _send_syslog(port, _syslog_lines())
        wait_until(lambda: server.stats()["events_total"] == total, 120, f"{total} events")
        if len(rules) > 1:  # correlation: until the scheduler has run past the last event
            wait_for_correlation(state, datetime.now(UTC))
    finally:
        server.ensure_stopped()
    return _alert_hits(state)


def wait_for_correlation(state_url: str, after: datetime) -> None:
    """Until every correlation rule's watermark is past `after` (they run every 2 s;
    the ML jobs' marks, `ml:<job>`, follow windows of their own)."""
    state = StateStore(state_url)

    def marks() -> list[datetime]:
        return [t for rule, t in WatermarkStore(state).get_all().items() if ":" not in rule]

    try:
        wait_until(
            lambda: (m := marks()) and min(m) > after + timedelta(seconds=2),
            90,
            "the correlation rules to run over everything stored",
            interval=0.5,
        )
    finally:
        state.close()


def _drained(r, cfg: Path, total: int) -> bool:  # noqa: ANN001
    """Every record of the run is stored: the collector has handed `total` over, and the
    stream has nothing undelivered or unacknowledged.

    The count is read first: each record it counts was on the stream before the group
    is looked at. (Read the other way round, a batch published between the two reads
    counts as handed over without having been looked for, and a processor stopped
    then leaves it on the bus.) "Undelivered" compares the group's last delivered id
    with the stream's last id: exact, unlike `lag`, which Redis 7.0 estimates after
    trims.
    """
    if _handed_over(cfg) < total:
        return False
    g = _group(r)
    if not g or g["pending"] != 0:
        return False
    return bool(g["last-delivered-id"] == r.xinfo_stream(STREAM)["last-generated-id"])


def _handed_over(cfg: Path) -> int:
    """Records the collector has handed to the bus (its heartbeat, every 5 s)."""
    rows = cli_json("status", "--config", cfg, "--format", "json")
    return sum(r["events"] for r in rows if r["role"] == "collect" and r["state"] == "up")


def _new_db(pg_cluster) -> str:  # noqa: ANN001
    import uuid

    import sqlalchemy as sa

    name = "t_" + uuid.uuid4().hex[:16]
    admin = sa.create_engine(pg_cluster.url(), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}" TEMPLATE template0'))
    finally:
        admin.dispose()
    return name


def test_a_state_store_outage_delays_alerts_and_loses_nothing(
    tmp_path: Path, redis_server: RedisServer, own_pg_cluster: PgCluster
) -> None:
    """PostgreSQL (alerts, heartbeats) stopped for 10 s mid-stream: events are stored
    meanwhile, alerts are raised once it is back, as one process would raise them."""
    total = FILE_LINES + SYSLOG_MESSAGES
    split_state = own_pg_cluster.url(_new_db(own_pg_cluster))
    n, distinct, by_source = _split_run(
        tmp_path, redis_server, split_state, pg_outage=own_pg_cluster
    )
    assert n == distinct == total
    single_state = own_pg_cluster.url(_new_db(own_pg_cluster))
    assert _alert_hits(split_state) == _single_run_alerts(tmp_path, single_state)


def test_a_processor_installs_the_models_the_scheduler_shared(
    tmp_path: Path, redis_server: RedisServer, pg_cluster
) -> None:
    """A model published to the state store (by retraining or `ml train`) reaches a
    running processor's data directory, where its ML detector reloads it."""
    from lightsoc.detect.ml.modelfile import SHIPPED_DIR, files, models_dir
    from lightsoc.store.state_models import SharedModels

    state_url = pg_cluster.url(_new_db(pg_cluster))
    cfg = _config(
        tmp_path / "p.yml",
        tmp_path / "d",
        _input(tmp_path),
        free_port(),
        state=state_url,
        bus=f"{redis_server.url}?stream={STREAM}",
    )
    processor = RoleProcess("process", cfg, "--data-dir", tmp_path / "processor")
    state = StateStore(state_url)
    try:
        SharedModels(state).publish("dga", SHIPPED_DIR / "dga")
        processor.start().wait_for("processing batches")
        target = models_dir(tmp_path / "processor") / "dga"
        wait_until(lambda: (target / "meta.json").exists(), 45, "the shared model installed")
        assert files(target) == files(SHIPPED_DIR / "dga")
        assert processor.stop() == 0, processor.output()
    finally:
        processor.ensure_stopped()
        state.close()
