"""Collector and processor as OS processes over Kafka (librdkafka's mock cluster).

The mock cluster lives in this test process (3 brokers on 127.0.0.1); the
`lightsoc run --role collect` and `--role process` processes reach it through
its bootstrap servers with real clients. The stored count is exact, no event
is stored twice, and the group's committed offsets reach the end of every
partition only once everything is stored. (A processor killed mid-stream is
covered at the bus level in tests/bus/test_kafka_bus.py: its group session
timeout would make this test wait 45 s.)
"""

from __future__ import annotations

from pathlib import Path

from tests.helpers import free_port, wait_until
from tests.kafka_cluster import Cluster
from tests.roles.procs import RoleProcess
from tests.roles.test_split_redis import (
    FILE_LINES,
    SYSLOG_MESSAGES,
    _config,
    _handed_over,
    _input,
    _new_db,
    _send_syslog,
    _stored,
    _syslog_lines,
)

TOPIC = "lightsoc.raw.test"
GROUP = "lightsoc-processors"


def test_collector_and_processor_over_kafka_store_exactly(tmp_path: Path, pg_cluster) -> None:
    cluster = Cluster()
    cluster.create_topic(TOPIC)
    state = pg_cluster.url(_new_db(pg_cluster))
    syslog_port = free_port()
    cfg = _config(
        tmp_path / "split.yml",
        tmp_path / "d",
        _input(tmp_path),
        syslog_port,
        state=state,
        bus=f"kafka://{cluster.bootstrap}?topic={TOPIC}&group={GROUP}",
    )
    collector = RoleProcess("collect", cfg, "--data-dir", tmp_path / "collector")
    processor = RoleProcess("process", cfg, "--data-dir", tmp_path / "processor")
    total = FILE_LINES + SYSLOG_MESSAGES
    try:
        processor.start().wait_for("processing batches")
        collector.start().wait_for("collecting 2 source(s)")
        _send_syslog(syslog_port, _syslog_lines())
        wait_until(lambda: _handed_over(cfg) >= total, 120, "every record handed to Kafka")
        ends = cluster.end_offsets(TOPIC)
        assert sum(ends.values()) >= FILE_LINES // 50  # a batch per file at least
        wait_until(
            lambda: cluster.committed(TOPIC, GROUP) == {p: n for p, n in ends.items() if n},
            120,
            "the processor to commit every partition to its end",
        )
        assert processor.stop() == 0, processor.output()
        assert collector.stop() == 0, collector.output()
    finally:
        collector.ensure_stopped()
        processor.ensure_stopped()
    n, distinct, by_source = _stored(tmp_path / "processor")
    assert by_source == {"auth": FILE_LINES, "net": SYSLOG_MESSAGES}
    assert n == distinct == total
