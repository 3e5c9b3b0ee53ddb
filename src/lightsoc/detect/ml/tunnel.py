"""DNS tunnelling: per (client, registered domain, window) features and a rule score.

A tunnel carries data in the names it queries (and the answers it gets), so
over a window one client asks one domain for many distinct, long, random
subdomains, often with record types that carry payload (TXT, NULL, CNAME,
MX). `score_window` groups DNS events by (`source.ip`, registered domain,
tumbling window) with one polars `group_by` and computes:

- `queries`, `distinct_subdomains`, `unique_ratio` (distinct / queries),
- `mean_sub_len` (characters left of the registered domain), `max_label_len`,
  `mean_entropy` (Shannon entropy of each subdomain's characters, averaged),
- `payload_type_share` (TXT, NULL, CNAME, MX or an unnamed TYPEnnn),
- `bytes_out` (query-name bytes) and `bytes_in` (answer text bytes; DNS
  events carry no packet sizes, so this is the decoded answers' length),
- `nxdomain_share`, `rate_per_min` (queries per minute of activity, at least 1).

Why per client: a tunnel is one host's conversation; per domain alone would
add up the many clients of a CDN or a mail provider into volume none of them
has. A resolver that forwards for everyone shows up as one client, which the
rule still handles because it scores the *shape* of the names, not the count.

Why a rule and not a trained model: two public captures are not a training
set, and an analyst must be able to read why a domain was flagged. The rule
is Spot/Akamai-style: a volume gate times a weighted content score,

    gate    = ramp(distinct_subdomains, 2 -> 10)
    content = 0.30 ramp(mean_sub_len, 12 -> 30) + 0.25 ramp(mean_entropy, 3.0 -> 3.8)
            + 0.15 ramp(max_label_len, 20 -> 50) + 0.20 payload_type_share
            + 0.10 ramp(unique_ratio, 0.5 -> 0.9)
    score   = gate * content                        (in [0, 1], THRESHOLD = 0.5)

where ramp(x, a -> b) is 0 below a, 1 above b, linear between. The content
weights favour length and randomness because bandwidth forces tunnels into
long encoded labels while CDN names (`e1234.dscb.akamaiedge.net`,
`d3kbx6ekzl2v0r.cloudfront.net`) are short. Known benign look-alikes (DNSBL
and anti-virus reputation look-ups encode hashes in names too) belong on the
allow list (`detect.allow`).
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from lightsoc.detect.ml.dga_features import name_buffers
from lightsoc.detect.ml.modelfile import ModelError

DESCRIPTION = "DNS tunnelling: per client/domain/window features and a transparent rule score"
THRESHOLD = 0.5
WINDOW = timedelta(hours=1)
PAYLOAD_TYPES = ("TXT", "NULL", "CNAME", "MX")
#: (feature, low, high): ramp ends of the rule (see the module docstring)
GATE = ("distinct_subdomains", 2.0, 10.0)
CONTENT: tuple[tuple[str, float, float, float], ...] = (
    # feature, weight, low, high
    ("mean_sub_len", 0.30, 12.0, 30.0),
    ("mean_entropy", 0.25, 3.0, 3.8),
    ("max_label_len", 0.15, 20.0, 50.0),
    ("payload_type_share", 0.20, 0.0, 1.0),
    ("unique_ratio", 0.10, 0.5, 0.9),
)
DATA = Path(__file__).resolve().parents[5] / "shared" / "data"
TUNNEL_CAPTURES = {
    "dns/tunnel/iodine_elastic.pcap": "pirate.sea",
    "dns/tunnel/dnscat2.pcap": "biillpi.com",
}
NORMAL_CAPTURES = (
    "pcap/chrissanders/dns.pcap",
    "pcap/chrissanders/dns_axfr.pcapng",
    "pcap/chrissanders/dns_isp_hijack.pcapng",
    "pcap/chrissanders/dns_tcp.pcapng",
    "pcap/zeek/dns-txt-multiple.pcap",
    "pcap/zeek/dns53.pcap",
    "pcap/zeek/dns_long-connection.pcap",
)
FEATURES = (
    "queries",
    "distinct_subdomains",
    "unique_ratio",
    "mean_sub_len",
    "max_label_len",
    "mean_entropy",
    "payload_type_share",
    "nxdomain_share",
    "bytes_out",
    "bytes_in",
    "rate_per_min",
)


def char_entropy(values: pl.Series, chunk: int = 8192) -> np.ndarray:
    """Shannon entropy (bits per character) of each string's bytes; 0 for empty/null.
    Counted per (row, byte) with `np.bincount` over `chunk` rows at a time, so the
    count table stays small (chunk x 256)."""
    out = np.zeros(len(values))
    for i in range(0, len(values), chunk):
        data, start, end = name_buffers(values.slice(i, chunk))
        n = start.size
        lengths = end - start
        if data.size == 0:
            continue
        row = np.repeat(np.arange(n), lengths)
        counts = np.bincount(row * 256 + data, minlength=n * 256)
        nz = np.flatnonzero(counts)
        c = counts[nz].astype(np.float64)
        xlogx = np.bincount(nz // 256, weights=c * np.log2(c), minlength=n)
        L = np.maximum(lengths, 1).astype(np.float64)
        out[i : i + n] = np.where(lengths > 0, np.log2(L) - xlogx / L, 0.0)
    return out


def _ramp(x: pl.Expr, low: float, high: float) -> pl.Expr:
    return ((x - low) / (high - low)).clip(0.0, 1.0)


def _prepare(events: pl.DataFrame) -> pl.DataFrame:
    """Per-event columns: the grouping domain, the subdomain and the per-name figures."""
    cols = events.columns
    for need in ("@timestamp", "dns.question.name"):
        if need not in cols:
            raise ModelError(f"tunnel: events need a {need!r} column")
    name = pl.col("dns.question.name").cast(pl.Utf8).str.to_lowercase().str.strip_suffix(".")
    # the enricher's registered domain; names it rejects (escaped binary bytes, as
    # iodine sends) still belong to a domain: their last two labels
    last_two = name.str.extract(r"([^.]+\.[^.]+)$")
    reg = (
        pl.coalesce(pl.col("dns.question.registered_domain").cast(pl.Utf8), last_two)
        if "dns.question.registered_domain" in cols
        else last_two
    )
    df = events.select(
        pl.col("@timestamp"),
        (pl.col("source.ip").cast(pl.Utf8) if "source.ip" in cols else pl.lit(None, pl.Utf8))
        .fill_null("-")
        .alias("source.ip"),
        name.alias("_name"),
        reg.alias("domain"),
        (pl.col("dns.question.type").cast(pl.Utf8) if "dns.question.type" in cols else pl.lit(""))
        .fill_null("")
        .alias("_qtype"),
        (pl.col("dns.response_code").cast(pl.Utf8) if "dns.response_code" in cols else pl.lit(""))
        .fill_null("")
        .alias("_rcode"),
        (
            pl.col("dns.answers").list.eval(pl.element().str.len_bytes()).list.sum()
            if "dns.answers" in cols and isinstance(events.schema["dns.answers"], pl.List)
            else pl.lit(0)
        )
        .fill_null(0)
        .cast(pl.Int64)
        .alias("_ans_bytes"),
    ).filter(pl.col("_name").is_not_null() & pl.col("domain").is_not_null())
    dom_len = pl.col("domain").str.len_chars()
    sub = (
        pl.when(pl.col("_name").str.len_chars() > dom_len + 1)
        .then(pl.col("_name").str.slice(0, pl.col("_name").str.len_chars() - dom_len - 1))
        .otherwise(None)
    )
    df = df.with_columns(sub.alias("_sub"))
    return df.with_columns(
        pl.Series("_entropy", char_entropy(df["_sub"])),
        pl.col("_sub").str.len_chars().fill_null(0).alias("_sub_len"),
        pl.col("_sub")
        .str.split(".")
        .list.eval(pl.element().str.len_chars())
        .list.max()
        .fill_null(0)
        .alias("_label_len"),
        (
            pl.col("_qtype").is_in(list(PAYLOAD_TYPES)) | pl.col("_qtype").str.starts_with("TYPE")
        ).alias("_payload"),
        (pl.col("_rcode") == "NXDOMAIN").alias("_nx"),
        pl.col("_name").str.len_bytes().alias("_out_bytes"),
    )


def score_window(
    events: pl.DataFrame, window: timedelta = WINDOW, threshold: float = THRESHOLD
) -> pl.DataFrame:
    """One row per (source.ip, registered domain, window start) with `FEATURES`, `score`
    in [0, 1] and `is_tunnel` (score >= threshold), highest score first."""
    schema = {
        "source.ip": pl.Utf8,
        "domain": pl.Utf8,
        "window_start": pl.Datetime("us", "UTC"),
        **{f: pl.Float64 for f in FEATURES},
        "score": pl.Float64,
        "is_tunnel": pl.Boolean,
    }
    if events.height == 0 or "dns.question.name" not in events.columns:
        return pl.DataFrame(schema=schema)
    df = _prepare(events)
    if df.height == 0:
        return pl.DataFrame(schema=schema)
    every = f"{int(window.total_seconds() * 1_000_000)}us"
    ts = pl.col("@timestamp")
    has_sub = pl.col("_sub_len") > 0
    out = (
        df.with_columns(ts.dt.truncate(every).alias("window_start"))
        .group_by("source.ip", "domain", "window_start")
        .agg(
            pl.len().alias("queries"),
            pl.col("_sub").drop_nulls().n_unique().alias("distinct_subdomains"),
            pl.col("_sub_len").filter(has_sub).mean().fill_null(0).alias("mean_sub_len"),
            pl.col("_label_len").max().alias("max_label_len"),
            pl.col("_entropy").filter(has_sub).mean().fill_null(0).alias("mean_entropy"),
            pl.col("_payload").mean().alias("payload_type_share"),
            pl.col("_nx").mean().alias("nxdomain_share"),
            pl.col("_out_bytes").sum().alias("bytes_out"),
            pl.col("_ans_bytes").sum().alias("bytes_in"),
            ((ts.max() - ts.min()).dt.total_seconds() / 60.0).alias("_minutes"),
        )
        .with_columns(
            (pl.col("distinct_subdomains") / pl.col("queries")).alias("unique_ratio"),
            (pl.col("queries") / pl.col("_minutes").clip(1.0, None)).alias("rate_per_min"),
        )
    )
    gate = _ramp(pl.col(GATE[0]), GATE[1], GATE[2])
    content = pl.sum_horizontal([w * _ramp(pl.col(f), lo, hi) for f, w, lo, hi in CONTENT])
    score = (gate * content).clip(0.0, 1.0)
    return (
        out.with_columns(score.alias("score"))
        .with_columns((pl.col("score") >= threshold).alias("is_tunnel"))
        .select([pl.col(k).cast(t) for k, t in schema.items()])
        .sort(["score", "queries", "domain"], descending=[True, True, False])
    )


def read_capture(path: Path) -> pl.DataFrame:
    """The DNS events of a capture file, with registered domains, as `lightsoc ingest`
    parses and enriches them (`sources.dns_decode`, `enrich.domains`)."""
    from lightsoc.enrich.domains import DomainsEnricher
    from lightsoc.sources.dns_decode import DnsDecoder
    from lightsoc.sources.pcap_file import CaptureFile

    decoder = DnsDecoder()
    try:
        for batch in CaptureFile(path).batches(65536):
            decoder.decode(batch.linktype, batch.packets, batch.positions)
    except OSError as e:
        raise ModelError(f"{path}: {e.strerror or e}") from None
    decoder.flush()
    df = decoder.take()
    if df.height == 0 or "dns.question.name" not in df.columns:
        return pl.DataFrame()
    return DomainsEnricher().enrich(df)


def busy_resolver_events(
    benign_names: list[str], queries: int = 20000, clients: int = 30, seed: int = 7
) -> pl.DataFrame:
    """A realistic busy hour of benign DNS: `clients` hosts resolving real site names
    (`benign_names`, e.g. the benign part of dga_labeled.csv) and the CDN names behind
    them: `www.<site>.edgekey.net`, `e<n>.<shard>.akamaiedge.net`,
    `d<13 random>.cloudfront.net`, `<site>.cdn.cloudflare.net`,
    `r<n>---sn-<8 random>.googlevideo.com`, plus `_dmarc`/DKIM TXT and MX look-ups."""
    rng = np.random.default_rng(seed)
    sites = [n.lower() for n in benign_names if n]
    alnum = np.array(list("abcdefghijklmnopqrstuvwxyz0123456789"))

    def rand(k: int) -> str:
        return "".join(rng.choice(alnum, size=k))

    shards = ["a", "b", "dscb", "dscd", "dsce", "dscx", "g", "dsca"]
    names, types = [], []
    for _ in range(queries):
        site = sites[int(rng.integers(len(sites)))]
        kind = int(rng.integers(8))
        if kind == 0:
            names.append(f"www.{site}.edgekey.net"), types.append("A")
        elif kind == 1:
            shard = shards[int(rng.integers(len(shards)))]
            names.append(f"e{int(rng.integers(1, 99999))}.{shard}.akamaiedge.net")
            types.append("A" if rng.random() < 0.7 else "AAAA")
        elif kind == 2:
            names.append(f"d{rand(13)}.cloudfront.net"), types.append("A")
        elif kind == 3:
            names.append(f"{site}.cdn.cloudflare.net"), types.append("A")
        elif kind == 4:
            names.append(f"r{int(rng.integers(1, 9))}---sn-{rand(8)}.googlevideo.com")
            types.append("A")
        elif kind == 5:
            names.append(f"_dmarc.{site}" if rng.random() < 0.5 else f"s1._domainkey.{site}")
            types.append("TXT")
        elif kind == 6:
            names.append(site), types.append("MX")
        else:
            names.append(f"www.{site}"), types.append("A" if rng.random() < 0.6 else "AAAA")
    start = np.datetime64("2026-01-05T09:00:00", "us")
    offsets = np.sort(rng.integers(0, 3_600_000_000, size=queries))
    ips = [f"10.0.{i // 250}.{i % 250 + 1}" for i in range(clients)]
    frame = pl.DataFrame(
        {
            "@timestamp": pl.Series(start + offsets.astype("timedelta64[us]")).dt.replace_time_zone(
                "UTC"
            ),
            "source.ip": [ips[int(i)] for i in rng.integers(0, clients, size=queries)],
            "dns.question.name": names,
            "dns.question.type": types,
            "dns.response_code": ["NOERROR"] * queries,
        }
    )
    from lightsoc.enrich.domains import DomainsEnricher

    return DomainsEnricher().enrich(frame)


def _rows(scored: pl.DataFrame, top: int) -> list[dict[str, Any]]:
    keep = ["source.ip", "domain", "score", "is_tunnel", "queries", "distinct_subdomains"]
    keep += ["mean_sub_len", "mean_entropy", "payload_type_share"]
    rows = scored.head(top).select(keep).to_dicts()
    for r in rows:
        for k, v in r.items():
            if isinstance(v, float):
                r[k] = round(v, 3)
    return rows


def evaluate(inputs: list[Path], data_dir: Path | None = None, top: int = 5) -> dict[str, Any]:
    """Per capture: the top (client, domain) windows with scores, what was flagged, and
    whether the known tunnel domain is flagged and nothing else is. Without inputs: the
    tunnelling captures and the normal DNS captures of ../shared/data."""
    known = {Path(k).name: v for k, v in TUNNEL_CAPTURES.items()}
    paths = [Path(p) for p in inputs] or [
        DATA / p for p in (*TUNNEL_CAPTURES, *NORMAL_CAPTURES) if (DATA / p).is_file()
    ]
    captures = []
    for p in paths:
        scored = score_window(read_capture(p))
        flagged = sorted(set(scored.filter(pl.col("is_tunnel"))["domain"].to_list()))
        tunnel = known.get(p.name)
        captures.append(
            {
                "capture": p.name,
                "kind": "tunnel" if tunnel else "normal",
                "tunnel_domain": tunnel,
                "windows": scored.height,
                "flagged": flagged,
                "tunnel_flagged": (tunnel in flagged) if tunnel else None,
                "false_positives": [d for d in flagged if d != tunnel],
                "top": _rows(scored, top),
            }
        )
    tunnels = [c for c in captures if c["kind"] == "tunnel"]
    return {
        "threshold": THRESHOLD,
        "window_s": int(WINDOW.total_seconds()),
        "tunnels_flagged": sum(bool(c["tunnel_flagged"]) for c in tunnels),
        "tunnel_captures": len(tunnels),
        "false_positive_windows": sum(len(c["false_positives"]) for c in captures),
        "captures": captures,
    }
