"""`lightsoc status`: every process of a deployment, from their heartbeats.

    lightsoc status [--format table|json]

Reads the state store of the config (`store.state`; PostgreSQL for a split
deployment): role, host, pid, events stored or handed on, events/s, bus lag,
age of the last heartbeat, and which scheduler holds the lease. A process
whose heartbeat is older than three intervals is shown as `down` (killed, or
its host or the state store unreachable); a cleanly stopped one is gone.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

NAME = "status"
HELP = "every process of a deployment: role, host, events/s, lag, last heartbeat"


def add_arguments(parser: argparse.ArgumentParser, common: Callable[..., None]) -> None:
    parser.add_argument("--format", choices=["table", "json"], default="table")
    common(parser)


def rows(state: Any, now: datetime | None = None) -> list[dict[str, Any]]:  # noqa: ANN401
    """One dict per process, for both output formats."""
    from lightsoc.heartbeat import HEARTBEAT_SECONDS
    from lightsoc.roles import SCHEDULER_LEASE
    from lightsoc.store.state_cluster import Heartbeats, Leases

    now = now or datetime.now(UTC)
    holder = Leases(state).holder(SCHEDULER_LEASE, now=now)
    out = []
    for p in Heartbeats(state).processes(now=now):
        age = (now - p.heartbeat).total_seconds() if p.heartbeat else None
        up = age is not None and age <= 3 * HEARTBEAT_SECONDS
        out.append(
            {
                "role": p.role,
                "host": p.host,
                "pid": p.pid,
                "state": ("active" if p.id == holder else "standby")
                if up and p.role == "schedule"
                else ("up" if up else "down"),
                "events": p.events,
                "events_per_second": p.events_per_second,
                "lag": p.lag,
                "heartbeat_age_seconds": round(age, 1) if age is not None else None,
                "started": p.started.isoformat(),
                "id": p.id,
            }
        )
    return out


def run(args: argparse.Namespace) -> int:
    import orjson
    from rich.table import Table
    from rich.text import Text

    from lightsoc.cli import _config, out
    from lightsoc.store.state import StateStore

    config = _config(args)
    state = StateStore.for_data_dir(config.data_dir, config.store.state)
    try:
        found = rows(state)
    finally:
        state.close()
    if args.format == "json":
        out.print(orjson.dumps(found, option=orjson.OPT_INDENT_2).decode(), markup=False)
        return 0
    if not found:
        out.print("no lightsoc process has written a heartbeat to this state store", markup=False)
        return 0
    table = Table("role", "host", "pid", "state", "events", "events/s", "lag", "heartbeat")
    for r in found:
        cells = [
            r["role"],
            r["host"],
            r["pid"],
            r["state"],
            r["events"],
            r["events_per_second"],
            "" if r["lag"] is None else r["lag"],
            f"{r['heartbeat_age_seconds']} s ago",
        ]
        table.add_row(*(Text(str(c)) for c in cells))  # Text: no markup from a host name
    out.print(table)
    return 0
