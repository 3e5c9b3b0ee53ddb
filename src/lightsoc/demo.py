"""`lightsoc demo`: a fresh data directory, a realistic day of traffic, ingested
through the real pipeline, a summary of what was stored, then the API."""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from rich.console import Console
from rich.table import Table

from lightsoc import registry
from lightsoc.config import Config, parse_config
from lightsoc.demo_traffic import DemoFiles, generate
from lightsoc.ingest import ingest
from lightsoc.runtime import build_pipeline, open_stores
from lightsoc.store.base import TimeRange

DEFAULT_DIR = Path("lightsoc-demo")
SYN_ONLY = 'labels.netflow.tcp_flags:"......S."'
# What an analyst would ask first; each line is (title, query[, field whose top value to show]).
QUESTIONS: list[tuple[str, ...]] = [
    (
        "SQL injection attempts",
        "url.query:*union* OR url.query:*select* OR user_agent.original:*sqlmap*",
    ),
    ("path traversal", "url.original:*..%2f* OR url.original:*../* OR url.original:*%2e%2e*"),
    ("sensitive file probes", "url.path:\\/.env OR url.path:\\/.git* OR url.path:*wp-config*"),
    ("failed ssh logins", "event.dataset:sshd AND event.outcome:failure"),
    ("successful ssh logins", "event.dataset:sshd AND event.outcome:success"),
    ("failed imap/pop3 logins", "event.dataset:dovecot AND event.outcome:failure"),
    ("failed smtp auth", "event.dataset:postfix AND event.outcome:failure"),
    (
        "port scan: 1-packet SYN flows",
        f"event.dataset:netflow AND network.packets:1 AND {SYN_ONLY}",
    ),
    (
        "syn flood: big SYN-only flows",
        f"event.dataset:netflow AND network.packets:>=20 AND {SYN_ONLY}",
        "destination.ip",
    ),
    ("NXDOMAIN answers by host", "event.dataset:dns AND dns.response_code:NXDOMAIN"),
    ("TXT/NULL queries (tunnel?)", "event.dataset:dns AND dns.question.type:(TXT OR NULL)"),
]


def run_demo(args: argparse.Namespace, out: Console) -> int:
    data_dir: Path = args.data_dir or DEFAULT_DIR
    if args.data_dir is None:
        out.print(
            f"lightsoc demo: using data directory ./{DEFAULT_DIR} (--data-dir to change)",
            markup=False,
        )
    if data_dir.exists():
        shutil.rmtree(data_dir)  # a demo always starts fresh
    listen = args.listen or "127.0.0.1:8000"
    config = parse_config(
        f"data_dir: {str(data_dir.resolve())!r}\nstore: {{retention_days: 30}}\n"
        f"web: {{listen: {listen!r}}}\n"
        "enrich:\n  networks: {office: ['10.20.0.0/16']}\n"
    )
    demo = generate(data_dir / "logs", hours=args.hours)
    out.print(demo.summary(), markup=False)
    stores = open_stores(data_dir, config)
    try:
        _ingest_all(config, stores, demo, out)
        _report(stores, demo, out)
        if args.no_serve:
            return 0
        from lightsoc.server import serve

        serve(
            config,
            data_dir,
            stores,
            build_pipeline(config, stores, []),
            say=lambda m: out.print(m, markup=False),
        )
    finally:
        stores.close()
    return 0


def _ingest_all(config: Config, stores, demo: DemoFiles, out: Console) -> None:  # noqa: ANN001
    total = 0.0
    pcap = "pcap" in registry.names("sources")
    for rel, fmt in demo.formats.items():
        path = demo.root / rel
        source_id = Path(rel.split("/")[0]).stem
        if rel.endswith(".pcap") and not pcap:
            out.print(
                f"skipped  {rel:<16} (no pcap source in this build: DNS not ingested)", markup=False
            )
            continue
        summary = ingest(config, stores, [path], fmt=fmt, source_id=source_id)
        total += summary.seconds
        out.print(
            f"ingested {rel:<16} {summary.events:>7,} events "
            f"({summary.parse_failures} parse failures) in {summary.seconds:.2f} s",
            markup=False,
        )


def _report(stores, demo: DemoFiles, out: Console) -> None:  # noqa: ANN001
    ev = stores.events
    stats = ev.stats()
    tr = TimeRange(demo.start, None)
    t = Table(
        title=f"stored {stats['events_total']:,} events "
        f"({stats['parse_failures_total']} parse failures)"
    )
    t.add_column("dataset")
    t.add_column("events", justify="right")
    for k, v in stats["by_dataset"].items():
        t.add_row(k, f"{v:,}")
    out.print(t)
    talkers = Table(title="top talkers")
    for c in ("source.ip", "country", "events"):
        talkers.add_column(c)
    for ip, n in ev.top("source.ip", time_range=tr, n=8):
        country = ev.top("source.geo.country_iso_code", query=f'source.ip:"{ip}"', n=1)
        talkers.add_row(ip, country[0][0] if country else "-", f"{n:,}")
    out.print(talkers)
    q = Table(title="what an analyst would search first")
    for c in ("question", "query", "events", "top source"):
        q.add_column(c, overflow="fold")
    for title, query, *field in [*QUESTIONS, *_hunts(demo)]:
        n = ev.count(query)
        top = ev.top(field[0] if field else "source.ip", query=query, n=1)
        value = f"{top[0][0]}{f' ({field[0]})' if field else ''}" if top else "-"
        q.add_row(title, query, f"{n:,}", value)
    out.print(q)
    _alerts(stores, out)
    bf, d = demo.brute_force, demo.root.parent
    out.print(f"try: lightsoc timeline {bf.ip} --since all --data-dir {d}", markup=False)
    out.print(
        f"try: lightsoc search 'destination.ip:{demo.flows.beacon_ip}' --since all --data-dir {d}"
        "   # a beacon every ~300 s",
        markup=False,
    )


def _alerts(stores, out: Console) -> None:  # noqa: ANN001
    """What the built-in rules raised while the demo data was ingested."""
    if not (stores.data_dir / "state.sqlite").exists():
        out.print("alerts: none raised", markup=False)
        return
    from lightsoc.alerts.store import AlertStore

    raised = AlertStore(stores.state).find(limit=1000)
    t = Table(title=f"alerts raised by the built-in rules ({len(raised)}; `lightsoc alerts`)")
    for c in ("severity", "rule", "entity", "count"):
        t.add_column(c, overflow="fold")
    for a in sorted(raised, key=lambda a: (-a.score, -a.count))[:12]:
        t.add_row(a.severity, a.rule_name, f"{a.entity_type} {a.entity_value}", f"{a.count:,}")
    out.print(t)


def _hunts(demo: DemoFiles) -> list[tuple[str, ...]]:
    """Follow-ups that need a name from the intel feed: the known-bad domain."""
    return [("lookups of a known-bad domain", f'dns.question.name:"{demo.dns.bad_domain}"')]
