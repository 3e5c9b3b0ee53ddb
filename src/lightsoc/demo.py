"""`lightsoc demo`: a fresh data directory, a realistic day of traffic, ingested
through the real pipeline, a summary of what was stored, then the API."""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from rich.console import Console
from rich.table import Table

from lightsoc.config import Config, parse_config
from lightsoc.demo_traffic import DemoFiles, generate
from lightsoc.ingest import ingest
from lightsoc.runtime import build_pipeline, open_stores
from lightsoc.store.base import TimeRange

DEFAULT_DIR = Path("lightsoc-demo")
# What an analyst would ask first; each line is (title, query).
QUESTIONS = [
    (
        "SQL injection attempts",
        "url.query:*union* OR url.query:*select* OR user_agent.original:*sqlmap*",
    ),
    ("path traversal", "url.original:*..%2f* OR url.original:*../* OR url.original:*%2e%2e*"),
    ("sensitive file probes", "url.path:\\/.env OR url.path:\\/.git* OR url.path:*wp-config*"),
    ("failed ssh logins", "event.dataset:sshd AND event.outcome:failure"),
    ("successful ssh logins", "event.dataset:sshd AND event.outcome:success"),
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
    for rel, fmt in demo.formats.items():
        path = demo.root / rel
        source_id = rel.split("/")[0].removesuffix(".log")
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
    for title, query in QUESTIONS:
        n = ev.count(query)
        top = ev.top("source.ip", query=query, n=1)
        q.add_row(title, query, f"{n:,}", top[0][0] if top else "-")
    out.print(q)
    bf = demo.brute_force
    out.print(
        f"try: lightsoc timeline {bf.ip} --since all --data-dir {demo.root.parent}", markup=False
    )
