"""`lightsoc intel`: load IOC lists, list them, manage the allow list.

    lightsoc intel load FILE|DIR... --source NAME [--format auto|text|csv|stix|misp|maltrail|urlhaus|ecs]
                        [--confidence Low|Medium|High] [--expires 30d|2026-12-31] [--column C] [--json]
    lightsoc intel list [--json]
    lightsoc intel remove NAME
    lightsoc intel allow [add|remove FIELD VALUE] [--comment TEXT] [--json]

Writes `<data_dir>/state.sqlite` directly: SQLite in WAL mode takes this
write while `lightsoc run` holds the data directory, and the running
pipeline picks the change up within its reload interval (a version counter
in the state store). A reload of `--source NAME` replaces that source's
indicators in one transaction. Junk lines are counted per file, not fatal.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

NAME = "intel"
HELP = "threat intelligence: load IOC files (text, CSV, STIX, MISP, maltrail, URLhaus), list"
ACTIONS = ("load", "list", "remove", "allow")


def add_arguments(parser: argparse.ArgumentParser, common: Callable[..., None]) -> None:
    parser.add_argument("action", choices=ACTIONS, help="load, list, remove or allow")
    parser.add_argument("args", nargs="*", metavar="ARG", help="files (load), name (remove), ...")
    parser.add_argument("--source", default=None, help="load: the source name (required)")
    parser.add_argument(
        "--format",
        default="auto",
        choices=["auto", "text", "csv", "stix", "misp", "maltrail", "urlhaus", "ecs"],
    )
    parser.add_argument("--confidence", choices=["Low", "Medium", "High"], default="Medium")
    parser.add_argument("--expires", default=None, help="load: e.g. 30d, 12h, or a date 2026-12-31")
    parser.add_argument("--column", default=None, help="load, CSV: the IOC column (name or index)")
    parser.add_argument("--comment", default=None, help="allow add: why")
    parser.add_argument("--json", action="store_true", help="print JSON")
    common(parser)


def parse_expiry(text: str, now: float | None = None) -> float:
    """`30d`/`12h` from now, or an ISO date/time (UTC unless given) -> epoch seconds."""
    from lightsoc.timeutil import parse_duration

    now = time.time() if now is None else now
    try:
        span = parse_duration(text)
    except ValueError:
        span = None
    else:
        if span is None:
            raise ValueError(f"--expires {text!r}: give a duration (30d) or a date")
        return now + span.total_seconds()
    try:
        ts = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"--expires {text!r}: not a duration (30d) or a date (2026-12-31)"
        ) from None
    return (ts if ts.tzinfo else ts.replace(tzinfo=UTC)).timestamp()


def run(args: argparse.Namespace) -> int:
    from lightsoc.cli import UsageError, _config
    from lightsoc.store.state import StateStore
    from lightsoc.store.state_intel import IntelStore

    if args.action == "load":
        if not args.source:
            raise UsageError("intel load: --source NAME is required")
        if not args.args:
            raise UsageError("intel load: give at least one FILE")
    expires = None
    if args.expires:
        try:
            expires = parse_expiry(args.expires)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    config = _config(args)
    config.data_dir.mkdir(parents=True, exist_ok=True)
    state = StateStore.for_data_dir(config.data_dir, config.store.state)
    try:
        store = IntelStore(state)
        if args.action == "load":
            return _load(store, args, expires)
        if args.action == "list":
            return _list(store, args)
        if args.action == "remove":
            if len(args.args) != 1:
                raise UsageError("intel remove: give one source NAME")
            if not store.delete_source(args.args[0]):
                raise UsageError(f"intel remove: no source named {args.args[0]!r}")
            _say(f"removed {args.args[0]}")
            return 0
        return _allow(store, args)
    finally:
        state.close()


def _say(text: str) -> None:
    from lightsoc.cli import out, safe

    out.print(safe(text))


def _load(store: Any, args: argparse.Namespace, expires: float | None) -> int:  # noqa: ANN401
    from lightsoc.cli import UsageError
    from lightsoc.enrich.intel_formats import IntelFormatError, expand_paths, load_file

    paths = expand_paths(Path(p) for p in args.args)
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"not a readable file: {', '.join(missing)}")
    results = []
    for path in paths:
        try:
            results.append(load_file(path, args.format, args.column))
        except IntelFormatError as exc:
            raise UsageError(str(exc)) from None
    indicators = [i for r in results for i in r.indicators]
    formats = sorted({r.format for r in results})
    files = [r.as_dict() for r in results]
    stored = store.replace_source(
        args.source,
        ",".join(formats),
        args.confidence,
        indicators,
        expires=expires,
        files=[{k: v for k, v in f.items() if k != "junk_samples"} for f in files],
    )
    summary = {
        "source": args.source,
        "confidence": args.confidence,
        "expires": expires,
        "stored": stored,
        "loaded": sum(f["loaded"] for f in files),
        "junk": sum(f["junk"] for f in files),
        "skipped": sum(f["skipped"] for f in files),
        "files": files,
    }
    if args.json:
        import orjson

        sys.stdout.write(orjson.dumps(summary).decode() + "\n")
        return 0
    from rich.table import Table

    from lightsoc.cli import out, safe

    table = Table(title=safe(f"intel source {args.source} ({args.confidence})"))
    for col in ("file", "format", "loaded", "junk", "skipped"):
        table.add_column(col, justify="left" if col in ("file", "format") else "right")
    for f in files:
        table.add_row(
            safe(f["path"]), f["format"], f"{f['loaded']:,}", f"{f['junk']:,}", f"{f['skipped']:,}"
        )
    out.print(table)
    for f in files:
        for sample in f["junk_samples"][:3]:
            out.print(safe(f"junk in {f['path']}: {sample}"))
    _say(
        f"{stored:,} distinct indicators stored for source {args.source}"
        + (f", expiring {_when(expires)}" if expires else "")
    )
    return 0


def _when(ts: float | None) -> str:
    return "" if ts is None else datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M UTC")


def _list(store: Any, args: argparse.Namespace) -> int:  # noqa: ANN401
    sources = store.sources()
    if args.json:
        import orjson

        for s in sources:
            sys.stdout.write(orjson.dumps(s).decode() + "\n")
        return 0
    from rich.table import Table

    from lightsoc.cli import out, safe

    table = Table(title="intel sources")
    for col in (
        "source",
        "format",
        "confidence",
        "indicators",
        "active",
        "by kind",
        "expires",
        "loaded",
    ):
        table.add_column(col)
    for s in sources:
        kinds = ", ".join(f"{k} {n:,}" for k, n in sorted(s["by_kind"].items()))
        table.add_row(
            safe(s["name"]),
            safe(s["format"]),
            s["confidence"],
            f"{s['indicators']:,}",
            f"{s['active']:,}",
            kinds,
            ("expired " if s["expired"] else "") + _when(s["expires"]),
            _when(s["loaded"]),
        )
    out.print(table)
    return 0


def _allow(store: Any, args: argparse.Namespace) -> int:  # noqa: ANN401
    from lightsoc.cli import UsageError
    from lightsoc.enrich.allowlist import EnrichConfigError, _Rules

    sub, rest = (args.args[0], args.args[1:]) if args.args else ("list", [])
    if sub in ("add", "remove"):
        if len(rest) != 2:
            raise UsageError(f"intel allow {sub}: give FIELD VALUE")
        field, value = rest
        try:
            _Rules({field: [value]})  # a bad CIDR is a usage error now, not in the pipeline
        except EnrichConfigError as exc:
            raise UsageError(str(exc)) from None
        changed = (
            store.add_allow(field, value, args.comment)
            if sub == "add"
            else store.remove_allow(field, value)
        )
        _say(
            f"{'added' if sub == 'add' else 'removed'}: {field} {value}" if changed else "no change"
        )
        return 0
    if sub != "list" or rest:
        raise UsageError(
            "intel allow: use `allow`, `allow add FIELD VALUE` or `allow remove FIELD VALUE`"
        )
    entries = store.allow_entries()
    if args.json:
        import orjson

        sys.stdout.write(orjson.dumps(entries).decode() + "\n")
        return 0
    for field, values in entries.items():
        for value in values:
            _say(f"{field} {value}")
    return 0
