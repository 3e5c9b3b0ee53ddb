"""`lightsoc detect`: rerun the stream and correlation rules over stored events.

    lightsoc detect [--since 24h] [--until 2026-11-29T12:00:00Z] [--rules DIR...] [--format table|json]

Windows are epoch-aligned and the alert store makes re-raising a window
idempotent, so running this twice, or over a range the scheduler has already
covered, never duplicates an alert: it adds only events not counted before.
Stream rules raise only hits the stream did not record (a rule added or
changed since the events were stored; see `detect.rerun`).
The event store is opened read-only; while `lightsoc run` holds it, its own
scheduler is running the same rules.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

NAME = "detect"
HELP = "rerun the stream and correlation rules over stored events (no duplicate alerts)"


def add_arguments(parser: argparse.ArgumentParser, common: Callable[..., None]) -> None:
    from lightsoc.cli import _duration

    parser.add_argument(
        "--since", type=_duration, default="24h", help="from this long ago (or all)"
    )
    parser.add_argument(
        "--until", default=None, help="up to this time (ISO 8601, UTC if no zone; default now)"
    )
    parser.add_argument(
        "--rules",
        nargs="+",
        type=Path,
        default=None,
        metavar="PATH",
        help="rule files/directories instead of detect.rules and <data_dir>/rules",
    )
    parser.add_argument(
        "--no-outputs",
        action="store_true",
        help="do not send the new and escalated alerts to alerts.outputs",
    )
    parser.add_argument("--format", choices=["table", "json"], default="table")
    common(parser)


def _parse_time(text: str) -> datetime:
    from lightsoc.cli import UsageError

    try:
        t = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(f"--until: not an ISO 8601 time: {text!r}") from None
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


def run(args: argparse.Namespace) -> int:
    import orjson

    from lightsoc.alerts.outputs.dispatcher import send_once
    from lightsoc.alerts.store import AlertStore
    from lightsoc.cli import UsageError, _config, out, safe
    from lightsoc.client import EVENTS_FILE, ReaderError
    from lightsoc.detect.build import build_ruleset
    from lightsoc.detect.correlation import load_correlations, load_for_config
    from lightsoc.detect.correlation_eval import AllowFilter, run_range
    from lightsoc.detect.rerun import rerun_stream_rules
    from lightsoc.detect.ruleset import RuleSet
    from lightsoc.store.state import StateStore
    from lightsoc.timeutil import parse_duration

    config = _config(args)
    until = _parse_time(args.until) if args.until else datetime.now(UTC)
    span = parse_duration(args.since)
    if args.rules:
        missing = [str(p) for p in args.rules if not p.exists()]
        if missing:
            raise UsageError(f"--rules: no such file or directory: {', '.join(missing)}")
        loaded = load_correlations(args.rules)
        stream_rules = RuleSet.load(args.rules)
    else:
        loaded = load_for_config(config.detect.rules, config.data_dir)
        stream_rules = None
    path = config.data_dir / EVENTS_FILE
    if config.store.events != "duckdb":  # a shared store: no lock, read it directly
        from lightsoc.store.events_clickhouse import ClickHouseEventStore

        events: Any = ClickHouseEventStore(config.store.events)
    elif not path.exists():
        raise ReaderError(
            f"no lightsoc data in {config.data_dir} (run `lightsoc ingest` or `lightsoc run` "
            "with this --data-dir first)"
        )
    else:
        events = _open_embedded(path, config)
    state = StateStore.for_data_dir(config.data_dir, config.store.state)
    try:
        if span is None:  # `all`: from the oldest stored event
            first = events.search("", None, ["@timestamp"], 1, "asc")
            since = first.column("@timestamp")[0].as_py() if first.num_rows else until
        else:
            since = until - span
        allow = AllowFilter.for_config(config, state)
        alerts = AlertStore.for_config(state, config)
        if stream_rules is None:
            stream_rules = build_ruleset(config, config.data_dir, state)
        stream = rerun_stream_rules(events, alerts, stream_rules, since, until, allow=allow)
        result = run_range(events, alerts, loaded.rules, since, until, allow=allow)
    finally:
        events.close()
        state.close()
    sent = {} if args.no_outputs else send_once(config.alerts, stream.changed + result.changed)
    summary = {
        "since": since.isoformat(),
        "until": until.isoformat(),
        **result.as_dict(),
        "rules_failed": [str(f) for f in loaded.failures],
        "stream": stream.as_dict(),
        "outputs": {k: {"sent": v["sent"], "failed": v["failed"]} for k, v in sent.items()},
    }
    if args.format == "json":
        sys.stdout.write(orjson.dumps(summary).decode() + "\n")
    else:
        out.print(
            safe(
                f"stream: {stream.rules} rule(s) over {stream.events:,} stored event(s): "
                f"{stream.hits} hit(s) not alerted before, {stream.new} new alert(s), "
                f"{stream.updated} updated"
            )
        )
        out.print(
            safe(
                f"correlation: {result.rules} rule(s) over {since:%Y-%m-%d %H:%M:%S}.."
                f"{until:%Y-%m-%d %H:%M:%S} UTC: {result.windows} window(s) matched, "
                f"{result.new} new alert(s), {result.updated} updated"
            )
        )
        for oid, v in sent.items():
            out.print(safe(f"output {oid}: {v['sent']} alert(s) sent, {v['failed']} failed"))
        for f in loaded.failures:
            out.print(safe(f"not loaded: {f}"))
        for e in result.errors:
            out.print(safe(f"failed: {e}"))
    return 1 if result.errors else 0


def _open_embedded(path: Path, config: Any) -> Any:  # noqa: ANN401
    from lightsoc.client import read_server_file
    from lightsoc.store.base import StoreLockedError
    from lightsoc.store.events_duckdb import DuckDBEventStore

    try:
        return DuckDBEventStore(path, read_only=True)
    except StoreLockedError:
        server = read_server_file(config.data_dir)
        where = f"the lightsoc server at {server['url']}" if server else "another process"
        raise RuntimeError(
            f"{config.data_dir} is in use by {where}; a running server schedules the "
            "correlation rules itself (stop it to rerun them over history)"
        ) from None
