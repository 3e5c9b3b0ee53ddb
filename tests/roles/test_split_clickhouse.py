"""The whole split deployment as OS processes: 1 collector + 2 processors +
scheduler + web over Redis, ClickHouse (Debian's clickhouse-server) and PostgreSQL.

The collector tails 40 files and receives a syslog stream; the two processors
share the Redis consumer group and write into one ClickHouse; the scheduler
runs the correlation rules on ClickHouse; the web server answers the API from
it. The stored count is exact with no event twice, both processors took part,
the web API counts the same, and the alerts are those of one `lightsoc run`
(DuckDB) on the same input: the same hits for every stream rule, the same
(rule, entity) pairs for the correlation rules (their windows depend on when
the scheduler runs).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from clickhouse_driver import Client

from lightsoc.config import load_config
from lightsoc.roles import consumer_name
from tests.clickhouse_server import running_clickhouse
from tests.detect.test_correlation import CORR
from tests.helpers import LightsocServer, cli_json, free_port, wait_until
from tests.redis_server import RedisServer
from tests.roles.procs import RoleProcess
from tests.roles.test_split_redis import (
    FILE_LINES,
    LINUX_RULES,
    STREAM,
    SYSLOG_MESSAGES,
    _alert_hits,
    _config,
    _drained,
    _group,
    _input,
    _new_db,
    _send_syslog,
    _single_run_alerts,
    _syslog_lines,
    wait_for_correlation,
)

RULES = (LINUX_RULES, CORR)


def _is_correlation(rule_id: str) -> bool:
    return any(rule_id in p.read_text() for p in CORR.glob("*.yml"))


def _wait_drained(r: Any, cfg: Path, total: int) -> None:
    """Until every record is handed over to the bus and every bus entry acknowledged."""
    wait_until(lambda: _drained(r, cfg, total), 180, "every record handed over and acknowledged")


def test_collector_two_processors_scheduler_and_web_over_clickhouse(
    tmp_path: Path, pg_cluster
) -> None:
    total = FILE_LINES + SYSLOG_MESSAGES
    redis_server = RedisServer(tmp_path / "redis", appendonly=True, appendfsync="always").start()
    state = pg_cluster.url(_new_db(pg_cluster))
    with running_clickhouse() as ch_port:
        events = f"clickhouse://127.0.0.1:{ch_port}/lightsoc"
        syslog_port = free_port()
        cfg = _config(
            tmp_path / "split.yml",
            tmp_path / "d",
            _input(tmp_path),
            syslog_port,
            state=state,
            bus=f"{redis_server.url}?stream={STREAM}",
            events=events,
            rules=RULES,
        )
        procs = [
            RoleProcess("process", cfg, "--data-dir", tmp_path / "p1"),
            RoleProcess("process", cfg, "--data-dir", tmp_path / "p2"),
            RoleProcess("schedule", cfg, "--data-dir", tmp_path / "s"),
            RoleProcess("collect", cfg, "--data-dir", tmp_path / "c"),
        ]
        web = LightsocServer(
            ["--role", "web", "--config", cfg, "--data-dir", tmp_path / "w"],
            cwd=tmp_path,
            data_dir=tmp_path / "w",
        )
        r = redis_server.client()
        try:
            for p in procs[:2]:
                p.start().wait_for("processing batches")
            procs[2].start().wait_for(": active")
            procs[3].start().wait_for("collecting 2 source(s)")
            web.start()
            _send_syslog(syslog_port, _syslog_lines())

            _wait_drained(r, cfg, total)
            all_stored = datetime.now(UTC)
            wait_until(
                lambda: web.stats()["events_total"] == total, 60, "the web API to count them all"
            )
            # both processors took a share (their heartbeats count what each stored)
            wait_until(
                lambda: (
                    sorted(
                        r["events"] > 0
                        for r in cli_json("status", "--config", cfg, "--format", "json")
                        if r["role"] == "process"
                    )
                    == [True, True]
                ),
                30,
                "both processors' heartbeats to show stored events",
            )
            wait_for_correlation(state, all_stored)
            for p in procs:
                assert p.stop() == 0, p.output()
        finally:
            web.ensure_stopped()
            for p in procs:
                p.ensure_stopped()
            redis_server.kill()
        client = Client("127.0.0.1", port=ch_port)
        try:
            [(n, distinct)] = client.execute(
                "SELECT count(), uniqExact(`event.id`) FROM lightsoc.events FINAL"
            )
            [(raw,)] = client.execute("SELECT count() FROM lightsoc.events")
        finally:
            client.disconnect()
    assert n == distinct == total
    assert raw == total  # not even an unmerged duplicate part

    split = _alert_hits(state)
    single = _single_run_alerts(tmp_path, pg_cluster.url(_new_db(pg_cluster)), RULES)
    stream = {k: v for k, v in split.items() if not _is_correlation(k[0])}
    assert stream and stream == {k: v for k, v in single.items() if not _is_correlation(k[0])}
    corr = {k for k in split if _is_correlation(k[0])}
    assert corr and corr == {k for k in single if _is_correlation(k[0])}


def test_the_batches_of_a_killed_processor_are_taken_over_by_the_other(
    tmp_path: Path, pg_cluster
) -> None:
    """Two processors; one is killed with SIGKILL while it holds a batch and is not
    restarted: the other claims its pending batches (`claim_idle=2`), and the store
    ends with every event once."""
    total = FILE_LINES + SYSLOG_MESSAGES
    redis_server = RedisServer(tmp_path / "redis", appendonly=True, appendfsync="always").start()
    state = pg_cluster.url(_new_db(pg_cluster))
    with running_clickhouse() as ch_port:
        syslog_port = free_port()
        cfg = _config(
            tmp_path / "split.yml",
            tmp_path / "d",
            _input(tmp_path),
            syslog_port,
            state=state,
            bus=f"{redis_server.url}?stream={STREAM}&maxlen=20&claim_idle=2",
            events=f"clickhouse://127.0.0.1:{ch_port}/lightsoc",
        )
        victim = RoleProcess("process", cfg, "--data-dir", tmp_path / "p1")
        survivor = RoleProcess("process", cfg, "--data-dir", tmp_path / "p2")
        collector = RoleProcess("collect", cfg, "--data-dir", tmp_path / "c")
        victim_name = consumer_name(load_config(cfg, data_dir_override=tmp_path / "p1"))
        r = redis_server.client()

        def victim_pending() -> int:
            if not r.exists(STREAM):
                return 0
            return sum(
                c["pending"]
                for c in r.xinfo_consumers(STREAM, "lightsoc-processors")
                if c["name"] in (victim_name, victim_name.encode())
            )

        try:
            victim.start().wait_for("processing batches")
            survivor.start().wait_for("processing batches")
            collector.start().wait_for("collecting 2 source(s)")
            wait_until(lambda: victim_pending() > 0, 60, "the victim to hold a batch", 0.01)
            victim.kill()
            _send_syslog(syslog_port, _syslog_lines())

            _wait_drained(r, cfg, total)
            assert victim_pending() == 0  # claimed by the survivor
            assert survivor.stop() == 0, survivor.output()
            assert collector.stop() == 0, collector.output()
            bus_state = _bus_state(r)
            # its stop line counts the take-over: "bus: consumed N, acked N, reclaimed N, ..."
            assert re.search(r"bus: .*reclaimed [1-9]", survivor.output()), survivor.output()
        finally:
            for p in (victim, survivor, collector):
                p.ensure_stopped()
            redis_server.kill()
        client = Client("127.0.0.1", port=ch_port)
        try:
            [(n, distinct)] = client.execute(
                "SELECT count(), uniqExact(`event.id`) FROM lightsoc.events FINAL"
            )
            stored = _store_state(client)
        finally:
            client.disconnect()
    # (FINAL: a batch the victim was killed inserting is inserted again by the survivor;
    # the replacing engine keeps one of each event, and every read says FINAL)
    assert n == distinct == total, (
        f"{bus_state}\n{stored}\nsurvivor:\n{survivor.output()}\ncollector:\n{collector.output()}"
    )


def _bus_state(r: Any) -> str:
    """What the bus holds once drained: the stream, the group, its consumers, dead letters
    (named in the failure message of a count that falls short)."""
    dead = f"{STREAM}:dead"
    consumers = r.xinfo_consumers(STREAM, "lightsoc-processors") if r.exists(STREAM) else []
    return (
        f"stream: {r.xinfo_stream(STREAM) if r.exists(STREAM) else None}\n"
        f"group: {_group(r)}\nconsumers: {consumers}\n"
        f"dead letters: {r.xrange(dead) if r.exists(dead) else []}"
    )


def _store_state(client: Client) -> str:
    """Rows (and distinct ids) without FINAL, in all and per source and file, and the
    batch ids stored: where events are missing when the FINAL count falls short."""
    per_file = client.execute(
        "SELECT `lightsoc.source`, `log.file.path`, count(), uniqExact(`event.id`) "
        "FROM lightsoc.events GROUP BY `lightsoc.source`, `log.file.path` "
        "ORDER BY `lightsoc.source`, `log.file.path`"
    )
    [(raw, raw_distinct)] = client.execute(
        "SELECT count(), uniqExact(`event.id`) FROM lightsoc.events"
    )
    [(batches,)] = client.execute("SELECT count() FROM lightsoc.lightsoc_batches")
    return (
        f"rows without FINAL: {raw} ({raw_distinct} distinct ids); batch ids: {batches}\n"
        f"per source and file: {per_file}"
    )
