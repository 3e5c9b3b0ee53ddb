"""Evaluation of suspicious connects: where do injected anomalies rank in a day of flows?

The day is `lightsoc demo`'s office network (`demo_flows`: ~160 clients, a web,
DNS, mail and file server, the internet; with a port scan, an HTTPS beacon and
a SYN flood injected), printed as nfdump CSV and parsed by lightsoc's nfdump
parser. `offices` > 1 merges that many independent offices (the extra ones
without their injected patterns) into one larger network's day. Added here: an
exfiltration host, a client that also sends three flows of ~0.7 GB to an
external IP on port 8443 in the night.

The model is trained on the day and scores it (Spot's daily job: each record
without its own connection's share, `LdaModel.without_own_connection`). Figures
per anomaly: the best rank of its records (1 = most suspicious), the rank of its
IP pair among pairs ranked by their lowest record score (the target: the top
50 distinct connections, as the job's alert candidates), and the rank of its
IPs among IPs ranked by mean log-probability of their words and by their
records' summed surprise beyond the median record (`suspicious_ips`).
"""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any

import polars as pl

from lightsoc.demo_flows import FlowTruth, Record, flow_records, format_flow
from lightsoc.detect.ml import lda_jobs
from lightsoc.detect.ml.lda import FEEDBACK_DUPLICATION

DAY = 86_400
START = 1_764_028_800.0  # 2025-11-25 00:00 UTC
TOP = 50
EXFIL_IP = "91.219.236.18"
EXFIL_PORT = 8443


def parse_flows(records: list[Record]) -> pl.DataFrame:
    """Flow records through nfdump's CSV format and lightsoc's nfdump parser."""
    from lightsoc.parsers import get_parser, parse_records

    lines = [format_flow(r) for r in records]
    ev = parse_records(pl.DataFrame({"event.original": lines}), get_parser("nfdump_csv"))
    return ev.filter(pl.col("_parse_ok").fill_null(False)) if "_parse_ok" in ev.columns else ev


def exfil_records(host: str, start: float) -> list[Record]:
    """Three ~0.7 GB uploads in the night and the receiver's ACK flows."""
    out: list[Record] = []
    for i, (hour, size) in enumerate(((2.0, 700_000_000), (2.3, 650_000_000), (3.1, 910_000_000))):
        t = round((start + hour * 3600) * 1000)
        dur = 1_800_000
        pkts = size // 1400
        sport = 51_000 + i
        out.append((t, dur, host, EXFIL_IP, sport, EXFIL_PORT, "TCP", "...AP.SF", pkts, size))
        out.append(
            (
                t + 20,
                dur,
                EXFIL_IP,
                host,
                EXFIL_PORT,
                sport,
                "TCP",
                "...A...F",
                pkts // 2,
                pkts * 20,
            )
        )
    return out


def day(
    offices: int = 1, seed: int = 7, start: float = START
) -> tuple[list[Record], FlowTruth, str]:
    """A day of flows (office 0 with its anomalies, others without) plus the exfiltration."""
    records, truth = flow_records(random.Random(seed), start, start + DAY)
    for i in range(1, offices):
        more, t = flow_records(random.Random(seed * 1000 + i), start, start + DAY)
        bad = {t.scanner, t.beacon_host, t.beacon_ip, *t.ddos_sources}
        records += [r for r in more if r[2] not in bad and r[3] not in bad]
    host = truth.clients[len(truth.clients) // 3]
    records += exfil_records(host, start)
    records.sort(key=lambda r: r[0])
    return records, truth, host


def anomalies(truth: FlowTruth, exfil_host: str) -> dict[str, dict[str, Any]]:
    """Each injected anomaly: its own IPs and which records are it."""
    ddos = list(truth.ddos_sources)
    return {
        "port_scan": {"ips": [truth.scanner], "any": [truth.scanner]},
        "exfiltration": {"ips": [exfil_host, EXFIL_IP], "pair": (exfil_host, EXFIL_IP)},
        "beacon": {
            "ips": [truth.beacon_host, truth.beacon_ip],
            "pair": (truth.beacon_host, truth.beacon_ip),
        },
        "syn_flood": {"ips": ddos, "any": ddos},
    }


def _records_of(df: pl.DataFrame, spec: dict[str, Any]) -> pl.Expr:
    src, dst = pl.col("source.ip"), pl.col("destination.ip")
    if "pair" in spec:
        a, b = spec["pair"]
        return ((src == a) & (dst == b)) | ((src == b) & (dst == a))
    return src.is_in(spec["any"]) | dst.is_in(spec["any"])


def ranks(events: pl.DataFrame, cases: dict[str, dict[str, Any]], **kw: Any) -> dict[str, Any]:
    """Train on `events`, score them, and rank each case's records, pair and IPs."""
    t0 = time.perf_counter()
    model = lda_jobs.train_events(events, "flow", **kw)
    t1 = time.perf_counter()
    ranked = lda_jobs.run_suspicious_connects(events, "flow", model, top_n=None, own_window=True)
    t2 = time.perf_counter()
    pairs = (
        ranked.group_by(
            pl.min_horizontal("source.ip", "destination.ip").alias("x"),
            pl.max_horizontal("source.ip", "destination.ip").alias("y"),
        )
        .agg(pl.col("score").min())
        .sort(["score", "x", "y"])
        .with_row_index("pair_rank", 1)
    )
    ips = lda_jobs.suspicious_ips(events, "flow", model)
    out: dict[str, Any] = {}
    for name, spec in cases.items():
        recs = ranked.filter(_records_of(ranked, spec))
        own = spec["ips"]
        pr = pairs.filter(pl.col("x").is_in(own) | pl.col("y").is_in(own))
        if "pair" in spec:
            a, b = sorted(spec["pair"])
            pr = pairs.filter((pl.col("x") == a) & (pl.col("y") == b))
        ipr = ips.filter(pl.col("ip").is_in(own))
        out[name] = {
            "records": recs.height,
            "record_rank": recs["rank"].min() if recs.height else None,
            "pair_rank": pr["pair_rank"].min() if pr.height else None,
            "ip_rank": ipr["rank"].min() if ipr.height else None,
            "ip_excess_rank": ipr["excess_rank"].min() if ipr.height else None,
        }
        out[name]["best_rank"] = min(
            (v for k, v in out[name].items() if k.endswith("rank") and v is not None),
            default=None,
        )
    top = ranked.head(TOP)
    return {
        "records": events.height,
        "pairs": pairs.height,
        "ips": ips.height,
        "model": model.meta["metrics"],
        "train_seconds": round(t1 - t0, 2),
        "score_seconds": round(t2 - t1, 2),
        "anomalies": out,
        "top": [
            {
                "rank": r["rank"],
                "source.ip": r["source.ip"],
                "destination.ip": r["destination.ip"],
                "destination.port": r["destination.port"],
                "score": r["score"],
                "word": r["lda.word_a"],
            }
            for r in top.head(10).iter_rows(named=True)
        ],
    }


def evaluate(
    inputs: list[Path] | None = None,
    data_dir: Path | None = None,
    offices: tuple[int, ...] = (1, 8),
) -> dict[str, Any]:
    """The injected-anomaly evaluation on the demo day (1 office and a merged larger network).

    With `inputs` (flow files), they are the background instead and the
    anomalies are shifted into their time span.
    """
    out: dict[str, Any] = {"top": TOP, "feedback_duplication": FEEDBACK_DUPLICATION, "runs": {}}
    if inputs:
        bg = lda_jobs.read_files(inputs)
        if bg.height == 0 or "@timestamp" not in bg.columns:
            return {**out, "error": "no flow records in the inputs"}
        t0 = bg["@timestamp"].min().timestamp()  # type: ignore[union-attr]
        recs, truth, host = day(1, start=t0)
        inj = {truth.scanner, truth.beacon_host, EXFIL_IP}
        mine = [r for r in recs if r[2] in inj or r[3] in inj]
        events = pl.concat([bg, parse_flows(mine)], how="diagonal_relaxed")
        cases = anomalies(truth, host)
        del cases["syn_flood"]
        out["runs"]["inputs"] = ranks(events, cases)
        return out
    for n in offices:
        recs, truth, host = day(n)
        out["runs"][f"{n}_office" + ("s" if n > 1 else "")] = ranks(
            parse_flows(recs), anomalies(truth, host)
        )
    return out


RCODES = {0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 5: "REFUSED"}


def dns_events(truth: Any) -> pl.DataFrame:
    """The demo resolver's queries (`demo_dns.DnsTruth.queries`) as ECS DNS events."""
    from datetime import UTC, datetime

    q = truth.queries
    return pl.DataFrame(
        {
            "@timestamp": [datetime.fromtimestamp(x.ts, UTC) for x in q],
            "source.ip": [x.client for x in q],
            "destination.ip": [truth.resolver] * len(q),
            "dns.type": ["query"] * len(q),
            "dns.question.name": [x.name for x in q],
            "dns.question.type": [x.qtype for x in q],
            "dns.response_code": [RCODES.get(x.rcode, str(x.rcode)) for x in q],
        },
        schema_overrides={"@timestamp": pl.Datetime("us", "UTC")},
    )


def capture_dns_events(pcap: bytes) -> pl.DataFrame:
    """The DNS events of a capture as `lightsoc demo`/`ingest` make them (`sources.dns_decode`).

    One event per query/response pair, source = client, destination = resolver.
    """
    import tempfile

    from lightsoc.sources.dns_decode import DnsDecoder
    from lightsoc.sources.pcap_file import CaptureFile

    decoder = DnsDecoder()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "dns.pcap"
        path.write_bytes(pcap)
        for batch in CaptureFile(path).batches(65536):
            decoder.decode(batch.linktype, batch.packets, batch.positions)
    decoder.flush()
    df = decoder.take()
    return df.drop([c for c in df.columns if c.startswith("_")])


def evaluate_dns(hours: tuple[int, ...] = (6, 24), seed: int = 3) -> dict[str, Any]:
    """The demo resolver's capture: ranks of the tunnelling, DGA and bad-domain hosts."""
    import random

    from lightsoc.demo_dns import dns_pcap

    out: dict[str, Any] = {}
    for h in hours:
        pcap, truth = dns_pcap(random.Random(seed), START, START + h * 3600, None)
        events = capture_dns_events(pcap)
        model = lda_jobs.train_events(events, "dns")
        ranked = lda_jobs.run_suspicious_connects(events, "dns", model, top_n=None)
        ips = lda_jobs.suspicious_ips(events, "dns", model)
        res: dict[str, Any] = {"records": events.height, "clients": ips.height}
        for name, host in (
            ("tunnel", truth.tunnel_host),
            ("dga", truth.dga_host),
            ("bad_domain", truth.bad_host),
        ):
            recs = ranked.filter(pl.col("source.ip") == host)
            if name == "bad_domain":
                recs = recs.filter(pl.col("dns.question.name") == truth.bad_domain)
            ipr = ips.filter(pl.col("ip") == host)["rank"]
            res[name] = {
                "record_rank": recs["rank"].min() if recs.height else None,
                "ip_rank": ipr[0] if len(ipr) else None,
            }
        out[f"{h}h"] = res
    return out
