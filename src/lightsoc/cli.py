"""Command line: parse arguments, call the library, print. Exit codes:
0 ok, 1 runtime error, 2 usage or configuration error (one line naming the place).
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from lightsoc import __version__, commands
from lightsoc.arrow_startup import keep_pandas_out
from lightsoc.config import Config, ConfigError, load_config
from lightsoc.store.base import StoreLockedError
from lightsoc.timeutil import parse_duration

# Not imported here (start-up time: every command pays for what this module imports):
# `lightsoc.client` (reads of a store or of a running server's API) and
# `lightsoc.store.query` (the query language); `main` maps their errors lazily.

out = Console(highlight=False, soft_wrap=True, emoji=False)
err = Console(stderr=True, highlight=False, soft_wrap=True, emoji=False)  # errors: one line
# Control characters (ESC starts terminal escape sequences) in log content are shown, not sent.
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f]")
# A store held by a short-lived reader (another CLI command) is retried this long.
LOCK_WAIT_SECONDS = 5.0


class UsageError(Exception):
    """Exit 2 with this message."""


def _duration(text: str) -> str:
    try:
        parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid number {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="lightsoc", description="Lightweight security operations.")
    p.add_argument("--version", action="version", version=f"lightsoc {__version__}")
    p.add_argument("-v", "--verbose", action="store_true", help="log more")
    sub = p.add_subparsers(dest="command", required=True)

    def common(sp: argparse.ArgumentParser, config: bool = True) -> None:
        if config:
            sp.add_argument("--config", type=Path, help="config file (default ./lightsoc.yml)")
        sp.add_argument("--data-dir", type=Path, help="data directory (default ./lightsoc-data)")

    run = sub.add_parser("run", help="collect, process, store and serve the API")
    common(run)
    run.add_argument(
        "--role", choices=["all", "collect", "process", "schedule", "web"], default="all"
    )

    demo = sub.add_parser("demo", help="generate a realistic day of traffic, ingest and serve it")
    demo.add_argument(
        "--data-dir", type=Path, default=None, help="data directory (default ./lightsoc-demo)"
    )
    demo.add_argument("--hours", type=int, default=24)
    demo.add_argument("--no-serve", action="store_true", help="exit after printing the summary")
    demo.add_argument("--listen", default=None, help="API address (default 127.0.0.1:8000)")

    ing = sub.add_parser("ingest", help="import files once (progress bar, summary)")
    ing.add_argument("paths", nargs="+", type=Path)
    ing.add_argument("--format", default="auto", help="parser name or auto")
    ing.add_argument("--dataset", default=None, help="override event.dataset")
    ing.add_argument("--no-progress", action="store_true")
    ing.add_argument("--json", action="store_true", help="print the summary as JSON")
    common(ing)

    s = sub.add_parser("search", help="search events with the query language")
    s.add_argument("query", nargs="?", default="")
    s.add_argument("--since", type=_duration, default="24h")
    s.add_argument("--limit", type=_positive_int, default=50)
    s.add_argument("--fields", default=None, help="comma-separated fields to show")
    s.add_argument("--format", choices=["table", "json"], default="table")
    common(s)

    t = sub.add_parser("timeline", help="everything an entity (IP, user, host, domain) did")
    t.add_argument("entity")
    t.add_argument("--since", type=_duration, default="7d")
    t.add_argument("--limit", type=_positive_int, default=1000)
    t.add_argument("--format", choices=["table", "json"], default="table")
    common(t)

    st = sub.add_parser("stats", help="counts per dataset, parse failures, sources")
    st.add_argument("--format", choices=["table", "json"], default="table")
    st.add_argument(
        "--top",
        type=_positive_int,
        default=None,
        metavar="N",
        help="also the N noisiest clients and domains (candidates for allow lists)",
    )
    st.add_argument("--since", type=_duration, default="24h", help="--top: over this period")
    common(st)

    for mod in commands.load():
        mod.add_arguments(sub.add_parser(mod.NAME, help=mod.HELP), common)
    return p


def _module_command(name: str) -> Any:  # noqa: ANN401 - a module's `run`
    return next(mod.run for mod in commands.load() if mod.NAME == name)


def _config(args: argparse.Namespace) -> Config:
    return load_config(getattr(args, "config", None), data_dir_override=args.data_dir)


def main(argv: Sequence[str] | None = None) -> int:
    keep_pandas_out()
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    handler = COMMANDS.get(args.command) or _module_command(args.command)
    try:
        return handler(args) or 0
    except (ConfigError, UsageError) as exc:
        err.print(f"lightsoc: {exc}", markup=False)
        return 2
    except (StoreLockedError, OSError, RuntimeError, ValueError) as exc:
        # ReaderError is a RuntimeError, QueryError a ValueError
        err.print(f"lightsoc: {exc}", markup=False)
        return 2 if _is_usage_error(exc) else 1
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # a bug: say what failed; the traceback with --verbose
        logging.getLogger("lightsoc").debug("unexpected error", exc_info=True)
        err.print(
            f"lightsoc: unexpected error: {type(exc).__name__}: {exc}"
            f"{'' if args.verbose else ' (--verbose shows the traceback)'}",
            markup=False,
        )
        if args.verbose:
            err.print_exception()
        return 1


def _is_usage_error(exc: Exception) -> bool:
    """A bad query, or a request a running server rejected: exit 2, not 1.

    Imported here, on the error path, to keep them out of every start-up.
    """
    from lightsoc.client import ReaderRequestError
    from lightsoc.store.query import QueryError

    return isinstance(exc, QueryError | ReaderRequestError)


# -- commands ----------------------------------------------------------------
def cmd_run(args: argparse.Namespace) -> int:
    from lightsoc.runtime import build_pipeline, build_sources, check_sources
    from lightsoc.server import serve

    config = _config(args)
    if args.role != "all":
        return _run_role(args.role, config)
    if config.bus != "memory":
        # one process keeps its offsets with its events: the shared bus is for split roles
        out.print(
            "note: --role all runs every stage in this process over an in-process queue; "
            "`bus:` is used by split roles (--role collect|process|schedule|web)",
            markup=False,
        )
    check_sources(config)
    stores = _open_for_write(config.data_dir, config)
    try:
        sources = build_sources(config, stores)
        serve(
            config,
            config.data_dir,
            stores,
            build_pipeline(config, stores, sources),
            say=lambda m: out.print(m, markup=False),
        )
    finally:
        stores.close()
    return 0


def _run_role(role: str, config: Config) -> int:
    """One role of a split deployment, until SIGINT/SIGTERM."""
    import signal

    from lightsoc import roles
    from lightsoc.runtime import check_sources

    if config.bus == "memory" and role in ("collect", "process", "web"):
        raise config.error(
            ("bus",),
            f"--role {role} needs a shared bus: set bus: redis://host:6379/0 or kafka://host:9092",
        )
    check_sources(config)
    if role == "web":  # the web server handles SIGINT/SIGTERM itself
        roles.run_web(config, lambda m: out.print(m, markup=False))
        return 0
    stop = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        stop.set()

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        run = {"collect": roles.run_collect, "process": roles.run_process}.get(
            role, roles.run_schedule
        )
        run(config, stop, lambda m: out.print(m, markup=False))
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)
    return 0


def _open_for_write(data_dir: Path, config: Config | None) -> Any:
    """The stores, waiting a little for a reader; a clear error if a server holds them."""
    from lightsoc.client import read_server_file
    from lightsoc.runtime import open_stores

    deadline = time.monotonic() + LOCK_WAIT_SECONDS
    while True:
        try:
            return open_stores(data_dir, config)
        except StoreLockedError:
            server = read_server_file(data_dir)
            if server is not None:
                raise RuntimeError(
                    f"{data_dir} is in use by the lightsoc server at {server['url']} "
                    f"(pid {server['pid']}); stop it first, or let it collect the files "
                    "(a `file` source in its config)"
                ) from None
            if time.monotonic() > deadline:
                raise RuntimeError(f"{data_dir} is in use by another lightsoc process") from None
        time.sleep(0.2)


def cmd_ingest(args: argparse.Namespace) -> int:
    from lightsoc.ingest import ingest
    from lightsoc.runtime import check_format, check_sources

    config = _config(args)
    check_sources(config)
    problem = check_format(args.format)
    if problem:
        raise UsageError(f"--format: {problem}")
    not_files = [str(p) for p in args.paths if not p.is_file()]
    if not_files:
        raise FileNotFoundError(f"not a readable file: {', '.join(not_files)}")
    stores = _open_for_write(config.data_dir, config)
    try:
        # progress counts bytes read, which for gzip are not the bytes on disk
        gz = any(p.suffix == ".gz" for p in args.paths)
        total = None if gz else sum(p.stat().st_size for p in {p.resolve() for p in args.paths})
        show = not args.no_progress and not args.json and err.is_terminal
        with Progress(
            TextColumn("ingest"),
            BarColumn(),
            DownloadColumn(),
            TimeRemainingColumn(),
            console=err,
            disable=not show,
        ) as bar:
            task = bar.add_task("ingest", total=total)
            summary = ingest(
                config,
                stores,
                args.paths,
                fmt=args.format,
                dataset=args.dataset,
                on_progress=lambda n: bar.advance(task, n),
            )
    finally:
        stores.close()
    if args.json:
        out.print(orjson.dumps(summary.as_dict()).decode(), markup=False)
        return 0
    table = Table(title=safe(f"ingested {summary.files} file(s) into {config.data_dir}"))
    table.add_column("dataset")
    table.add_column("events", justify="right")
    for ds, n in summary.by_dataset.items():
        table.add_row(safe(ds), f"{n:,}")
    out.print(table)
    out.print(
        f"{summary.received:,} records, {summary.events:,} events, "
        f"{summary.parse_failures:,} parse failures, {summary.skipped_empty:,} empty lines "
        f"skipped; {summary.seconds:.2f} s, {summary.lines_per_s:,.0f} lines/s, "
        f"peak RSS {summary.peak_rss_mb:.0f} MB",
        markup=False,
    )
    if summary.pcap:  # packet captures: what the DNS decoder saw
        p = summary.pcap
        out.print(
            f"{p.get('packets', 0):,} packets, {p.get('dns_messages', 0):,} DNS messages "
            f"({p.get('answered', 0):,} answered, {p.get('unanswered', 0):,} unanswered, "
            f"{p.get('orphan_responses', 0):,} responses without query), "
            f"{p.get('malformed', 0):,} malformed, {p.get('non_dns', 0):,} not DNS",
            markup=False,
        )
    return 0


def _reader(args: argparse.Namespace) -> Any:
    from lightsoc.client import open_reader

    config = _config(args)
    return open_reader(config.data_dir, config.store.events)


def safe(value: str) -> Text:
    """Text shown as is: no rich markup or emoji codes, control characters made visible.

    Log content is attacker-controlled: `[/x]` must not break the table, ESC must
    not reach the terminal.
    """
    return Text(_CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", value))


def _print_events(events: list[dict], fmt: str, fields: list[str] | None = None) -> None:
    if fmt == "json":
        for e in events:
            sys.stdout.write(orjson.dumps(e).decode() + "\n")
        return
    cols = fields or ["@timestamp", "event.dataset", "source.ip", "user.name", "message"]
    table = Table(show_lines=False)
    for c in cols:
        table.add_column(safe(c), overflow="fold")
    for e in events:
        row = []
        for c in cols:
            v = e.get(c)
            if v is None and c == "message":
                v = e.get("event.original")
            row.append(safe("" if v is None else str(v)))
        table.add_row(*row)
    out.print(table)
    out.print(f"{len(events)} event(s)", markup=False)


def cmd_search(args: argparse.Namespace) -> int:
    fields = [f.strip() for f in args.fields.split(",")] if args.fields else None
    reader = _reader(args)
    try:
        events = reader.search(args.query, args.since, args.limit, fields)
    finally:
        reader.close()
    _print_events(events, args.format, fields)
    return 0


def cmd_timeline(args: argparse.Namespace) -> int:
    reader = _reader(args)
    try:
        events = reader.timeline(args.entity, args.since, args.limit)
    finally:
        reader.close()
    _print_events(
        events,
        args.format,
        ["@timestamp", "event.dataset", "event.action", "source.ip", "user.name", "url.original"],
    )
    return 0


#: what `stats --top` ranks: who sends the most, and the busiest domains
TOP_FIELDS = ("source.ip", "dns.question.registered_domain", "url.domain")


def cmd_stats(args: argparse.Namespace) -> int:
    reader = _reader(args)
    try:
        stats = reader.stats()
        if args.top:
            stats["top"] = {f: reader.top(f, args.since, args.top) for f in TOP_FIELDS}
    finally:
        reader.close()
    if args.format == "json":
        sys.stdout.write(orjson.dumps(stats).decode() + "\n")
        return 0
    out.print(
        f"events: {stats['events_total']:,}   parse failures: {stats['parse_failures_total']:,}",
        markup=False,
    )
    t = Table(title="by dataset")
    t.add_column("dataset")
    t.add_column("events", justify="right")
    for k, v in stats["by_dataset"].items():
        t.add_row(safe(k), f"{v:,}")
    out.print(t)
    s = Table(title="sources")
    for c in ("id", "type", "received", "events", "parse_failures", "dropped", "last_seen"):
        s.add_column(c)
    for src in stats["sources"]:
        s.add_row(
            *(
                safe(str(src.get(c, "")))
                for c in (
                    "id",
                    "type",
                    "received",
                    "events",
                    "parse_failures",
                    "dropped",
                    "last_seen",
                )
            )
        )
    out.print(s)
    for field, rows in stats.get("top", {}).items():
        tt = Table(title=f"top {field} (last {args.since})")
        tt.add_column(field)
        tt.add_column("events", justify="right")
        for value, count in rows:
            tt.add_row(safe(str(value)), f"{count:,}")
        out.print(tt)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from lightsoc.demo import run_demo

    return run_demo(args, out)


COMMANDS = {
    "run": cmd_run,
    "demo": cmd_demo,
    "ingest": cmd_ingest,
    "search": cmd_search,
    "timeline": cmd_timeline,
    "stats": cmd_stats,
}

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
