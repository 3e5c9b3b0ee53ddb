"""`lightsoc alerts`: list and triage alerts.

    lightsoc alerts [--since 24h] [--status open] [--severity high] [--format table|json]
    lightsoc alerts show ID
    lightsoc alerts ack|close|fp|reopen ID... [--note TEXT]
    lightsoc alerts assign ID... --to NAME      (--to '' unassigns)
    lightsoc alerts entities [--top 10] [--half-life 24h]

Alerts live in the state store (SQLite in WAL mode, or PostgreSQL), which,
unlike the DuckDB event store, many processes may read and write at once.
So this command opens the state store directly, whether or not `lightsoc run`
holds the data directory: the answers are the server's own (same database),
it works with no server, and triage needs no admin token (the server leaves
CLI commands only a read token; access to the data directory is the
authority here, as for `lightsoc user token`).
"""

from __future__ import annotations

import argparse
import getpass
import sys
from collections.abc import Callable
from typing import Any

NAME = "alerts"
HELP = "list alerts; acknowledge, close, mark false positive, assign"

ACTIONS = ("list", "show", "ack", "close", "fp", "reopen", "assign", "entities")
STATUS_OF = {"ack": "acknowledged", "close": "closed", "fp": "false_positive", "reopen": "open"}


def add_arguments(parser: argparse.ArgumentParser, common: Callable[..., None]) -> None:
    from lightsoc.cli import _duration, _positive_int

    parser.add_argument(
        "action",
        nargs="?",
        default="list",
        metavar="ACTION",
        help=f"one of {', '.join(ACTIONS)} (default list)",
    )
    parser.add_argument("ids", nargs="*", metavar="ID", help="alert ids (ack, close, ...)")
    parser.add_argument("--since", type=_duration, default="24h", help="last hit within")
    parser.add_argument(
        "--status", default=None, help="open, acknowledged, closed, false_positive (a,b)"
    )
    parser.add_argument(
        "--severity",
        choices=["informational", "low", "medium", "high", "critical"],
        default=None,
        help="minimum severity",
    )
    parser.add_argument("--entity", default=None, help="only alerts about this entity value")
    parser.add_argument("--rule", default=None, help="only alerts of this rule id")
    parser.add_argument("--limit", type=_positive_int, default=100)
    parser.add_argument("--top", type=_positive_int, default=10, help="entities: how many")
    parser.add_argument("--half-life", type=_duration, default="24h", help="entities: decay")
    parser.add_argument("--to", default=None, help="assign: the assignee ('' unassigns)")
    parser.add_argument("--note", default=None, help="a note kept in the alert's history")
    parser.add_argument("--format", choices=["table", "json"], default="table")
    common(parser)


def run(args: argparse.Namespace) -> int:
    from lightsoc.cli import UsageError

    if args.action not in ACTIONS:
        raise UsageError(f"alerts: unknown action {args.action!r}; use one of {', '.join(ACTIONS)}")
    ids = _ids(args)
    store, close = _open(args)
    try:
        if args.action == "list":
            return _list(store, args)
        if args.action == "entities":
            return _entities(store, args)
        if args.action == "show":
            return _show(store, ids, args.format)
        return _change(store, ids, args)
    finally:
        close()


def _ids(args: argparse.Namespace) -> list[int]:
    from lightsoc.cli import UsageError

    if args.action in ("list", "entities"):
        if args.ids:
            raise UsageError(f"alerts {args.action}: takes no alert ids ({args.ids[0]!r})")
        return []
    if not args.ids:
        raise UsageError(f"alerts {args.action}: give at least one alert id")
    if args.action == "assign" and args.to is None:
        raise UsageError("alerts assign: give the assignee with --to NAME ('' unassigns)")
    try:
        ids = [int(i) for i in args.ids]
    except ValueError:
        bad = next(i for i in args.ids if not i.lstrip("-").isdigit())
        raise UsageError(f"alerts {args.action}: not an alert id: {bad!r}") from None
    return ids


def _open(args: argparse.Namespace) -> tuple[Any, Callable[[], None]]:
    from lightsoc.alerts.store import AlertStore
    from lightsoc.cli import _config
    from lightsoc.client import ReaderError
    from lightsoc.store.state import StateStore

    config = _config(args)
    if config.store.state == "sqlite" and not config.data_dir.is_dir():
        raise ReaderError(
            f"no lightsoc data in {config.data_dir} (run `lightsoc ingest` or `lightsoc run` "
            "with this --data-dir first)"
        )
    state = StateStore.for_data_dir(config.data_dir, config.store.state)
    return AlertStore.for_config(state, config), state.close


def _who() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no passwd entry (containers)
        return "cli"


def _write_json(obj: dict[str, Any]) -> None:
    import orjson

    sys.stdout.write(orjson.dumps(obj).decode() + "\n")


def _list(store: Any, args: argparse.Namespace) -> int:
    from lightsoc.cli import UsageError
    from lightsoc.timeutil import since_range

    statuses = [s.strip() for s in args.status.split(",") if s.strip()] if args.status else None
    try:
        alerts = store.find(
            since=since_range(args.since).start,
            statuses=statuses,
            min_severity=args.severity,
            entity=args.entity,
            rule_id=args.rule,
            limit=args.limit,
        )
    except ValueError as exc:  # an unknown status
        raise UsageError(f"--status: {exc}") from None
    if args.format == "json":
        for alert in alerts:
            _write_json(alert.as_dict())
        return 0
    _table(alerts)
    return 0


def _table(alerts: list[Any]) -> None:
    from rich.table import Table

    from lightsoc.cli import out, safe

    table = Table()
    for col in ("id", "severity", "score", "status", "rule", "entity", "count", "last seen"):
        table.add_column(col, overflow="fold")
    for a in alerts:
        table.add_row(
            str(a.id),
            a.severity,
            f"{a.score:.0f}",
            safe(a.status + (f" ({a.assignee})" if a.assignee else "")),
            safe(a.rule_name),
            safe(f"{a.entity_type}:{a.entity_value}"),
            f"{a.count:,}",
            a.last_seen.strftime("%Y-%m-%d %H:%M:%S"),
        )
    out.print(table)
    out.print(f"{len(alerts)} alert(s)", markup=False)


def _show(store: Any, ids: list[int], fmt: str) -> int:
    from lightsoc.alerts.store import AlertNotFoundError
    from lightsoc.cli import out, safe

    for alert_id in ids:
        try:
            alert = store.get(alert_id)
        except AlertNotFoundError as exc:  # exit 1 with the message, like a failed change
            raise RuntimeError(str(exc)) from None
        history = [h.as_dict() for h in store.history(alert_id)]
        if fmt == "json":
            _write_json({**alert.as_dict(), "history": history})
            continue
        for key, value in alert.as_dict().items():
            shown = ", ".join(map(str, value)) if isinstance(value, list) else value
            out.print(safe(f"{key:>13}: {'' if shown is None else shown}"))
        for h in history:
            out.print(
                safe(
                    f"{'history':>13}: {h['at']} {h['who']} {h['action']}"
                    + (f" -> {h['to_status']}" if h["action"] != "assign" else "")
                    + (f" assignee={h['assignee']}" if h["assignee"] else "")
                    + (f" ({h['note']})" if h["note"] else "")
                )
            )
    return 0


def _change(store: Any, ids: list[int], args: argparse.Namespace) -> int:
    """Apply the action to every id; report each. Exit 1 if any failed."""
    from lightsoc.alerts.store import AlertNotFoundError, TransitionError
    from lightsoc.cli import err, out, safe

    who = _who()
    failed = 0
    for alert_id in ids:
        try:
            if args.action == "assign":
                alert = store.assign(alert_id, args.to, who, args.note)
            else:
                alert = store.set_status(alert_id, STATUS_OF[args.action], who, args.note)
        except (AlertNotFoundError, TransitionError) as exc:
            failed += 1
            err.print(safe(f"lightsoc: {exc}"))
            continue
        if args.format == "json":
            _write_json(alert.as_dict())
        else:
            assignee = f", assignee {alert.assignee}" if alert.assignee else ""
            out.print(safe(f"alert {alert.id}: {alert.status}{assignee}"))
    return 1 if failed else 0


def _entities(store: Any, args: argparse.Namespace) -> int:
    from rich.table import Table

    from lightsoc.cli import out, safe
    from lightsoc.timeutil import parse_duration

    scores = store.entity_scores(args.top, half_life=parse_duration(args.half_life))
    if args.format == "json":
        for e in scores:
            _write_json(e.as_dict())
        return 0
    table = Table()
    for col in ("entity", "score", "alerts", "max severity", "last seen"):
        table.add_column(col, overflow="fold")
    for e in scores:
        table.add_row(
            safe(f"{e.entity_type}:{e.entity_value}"),
            f"{e.score:.1f}",
            str(e.alerts),
            e.max_severity,
            e.last_seen.strftime("%Y-%m-%d %H:%M:%S"),
        )
    out.print(table)
    return 0
