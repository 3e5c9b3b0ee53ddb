"""The event schema: ECS field names with their Arrow types.

This is the one place event field types live. Batches, stores, the search
language and the API all refer to `FIELDS`. Field names are ECS's, dotted.
A few lightsoc extensions (`source.zone`, `destination.zone`) are marked.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl
import pyarrow as pa

TS = pa.timestamp("us", tz="UTC")
STR = pa.string()
I64 = pa.int64()
I32 = pa.int32()
F64 = pa.float64()
STR_LIST = pa.list_(pa.string())


@dataclass(frozen=True)
class Field:
    name: str
    type: pa.DataType
    doc: str = ""


def _endpoint(side: str) -> list[Field]:
    return [
        Field(f"{side}.ip", STR, f"{side} IP address (v4 or v6, text)"),
        Field(f"{side}.port", I32),
        Field(f"{side}.bytes", I64),
        Field(f"{side}.packets", I64),
        Field(f"{side}.domain", STR),
        Field(f"{side}.registered_domain", STR),
        Field(f"{side}.geo.country_iso_code", STR),
        Field(f"{side}.geo.city_name", STR),
        Field(f"{side}.as.number", I64),
        Field(f"{side}.as.organization.name", STR),
        Field(f"{side}.zone", STR, "lightsoc extension: internal network zone name from config"),
    ]


FIELDS: list[Field] = [
    # base
    Field("@timestamp", TS, "when the event happened (UTC)"),
    Field("event.id", STR, "deterministic id: source, stream identity and offset"),
    Field("event.ingested", TS),
    Field("event.kind", STR),
    Field("event.category", STR),
    Field("event.type", STR),
    Field("event.action", STR),
    Field("event.outcome", STR),
    Field("event.dataset", STR),
    Field("event.module", STR),
    Field("event.original", STR, "the raw record, always kept"),
    Field("event.severity", I32),
    Field("event.start", TS),
    Field("event.end", TS),
    Field("event.duration", I64, "nanoseconds"),
    Field("message", STR),
    Field("tags", STR_LIST),
    Field("labels", STR, "JSON object of keys that have no ECS field"),
    Field("log.file.path", STR),
    Field("log.offset", I64),
    Field("log.source.address", STR, "sender of a network record (ip:port)"),
    Field("observer.name", STR),
    Field("host.name", STR),
    Field("lightsoc.source", STR, "lightsoc extension: configured source id"),
    # network
    *_endpoint("source"),
    *_endpoint("destination"),
    Field("network.transport", STR),
    Field("network.protocol", STR),
    Field("network.direction", STR),
    Field("network.bytes", I64),
    Field("network.packets", I64),
    Field("network.community_id", STR),
    # web
    Field("url.original", STR, "request target as sent (raw, percent-encoded)"),
    Field("url.path", STR, "path part, raw as sent"),
    Field("url.query", STR, "query part without '?', raw as sent"),
    Field("url.domain", STR),
    Field("url.registered_domain", STR),
    Field("url.subdomain", STR),
    Field("http.request.method", STR),
    Field("http.request.referrer", STR),
    Field("http.response.status_code", I32),
    Field("http.response.body.bytes", I64),
    Field("http.version", STR),
    Field("user_agent.original", STR),
    # dns
    Field("dns.type", STR),
    Field("dns.id", I32),
    Field("dns.question.name", STR),
    Field("dns.question.type", STR),
    Field("dns.question.registered_domain", STR),
    Field("dns.question.subdomain", STR),
    Field("dns.response_code", STR),
    Field("dns.answers", STR_LIST),
    Field("dns.resolved_ip", STR_LIST),
    # auth / syslog / process
    Field("user.name", STR),
    Field("user.target.name", STR),
    Field("service.name", STR),
    Field("process.name", STR),
    Field("process.pid", I64),
    Field("process.command_line", STR),
    Field("log.syslog.facility.code", I32),
    Field("log.syslog.severity.code", I32),
    Field("log.syslog.hostname", STR),
    Field("log.syslog.appname", STR),
    Field("log.syslog.procid", STR),
    Field("log.syslog.msgid", STR),
    Field("log.syslog.structured_data", STR, "RFC 5424 structured data as JSON"),
    # file (transferred over the network: Suricata fileinfo, Zeek files.log)
    Field("file.name", STR, "file name without the directory"),
    Field("file.path", STR, "full path or URL path of the file, as logged"),
    Field("file.size", I64, "bytes"),
    Field("file.mime_type", STR),
    Field("file.hash.md5", STR),
    Field("file.hash.sha1", STR),
    Field("file.hash.sha256", STR),
    # detection: what flagged the event in the stream (rules, intel, models)
    Field("rule.name", STR_LIST, "names of the stream rules / intel / models that flagged it"),
    Field("rule.id", STR_LIST, "their ids, in the same order"),
    Field("event.risk_score", F64, "0-100: the highest score of what flagged it"),
    Field("threat.indicator.type", STR, "ipv4-addr, domain-name, url, file ..."),
    Field("threat.indicator.name", STR, "the indicator that matched (IP, CIDR, domain, URL, hash)"),
    Field("threat.indicator.provider", STR, "the intel source (list) it came from"),
    Field("threat.indicator.confidence", STR, "Low, Medium, High (ECS)"),
    Field("threat.feed.name", STR),
    Field("threat.enrichments.matched.field", STR, "the event field that matched"),
    Field("threat.enrichments.matched.atomic", STR, "the event value that matched"),
]

BY_NAME: dict[str, Field] = {f.name: f for f in FIELDS}
NAMES: list[str] = [f.name for f in FIELDS]
ARROW_SCHEMA = pa.schema([pa.field(f.name, f.type) for f in FIELDS])
# `Table.from_batches`, not `empty_table()` / `pa.table()`: those import pandas
# when it is installed (~0.4 s of every process start).
POLARS_SCHEMA: dict[str, pl.DataType] = dict(
    pl.from_arrow(pa.Table.from_batches([], ARROW_SCHEMA)).schema  # type: ignore[union-attr]
)
_SCHEMA_ITEMS = list(POLARS_SCHEMA.items())

# The search page's default columns (the embedded store keeps a copy of them
# per large segment, `store/page_copies.py`, so pages of rare matches are fast).
SEARCH_PAGE_FIELDS = (
    "@timestamp",
    "event.dataset",
    "source.ip",
    "destination.ip",
    "user.name",
    "url.original",
    "dns.question.name",
    "message",
)

# Fields an entity (IP, user, host) can appear in, for timelines.
ENTITY_FIELDS = [
    "source.ip",
    "destination.ip",
    "user.name",
    "user.target.name",
    "host.name",
    "source.domain",
    "destination.domain",
    "url.domain",
    "dns.question.name",
    "dns.question.registered_domain",
]

PARSE_FAILURE = "parse_failure"


def polars_type(name: str) -> pl.DataType:
    """The polars dtype of an ECS field (KeyError if unknown)."""
    return POLARS_SCHEMA[name]


def conform(df: pl.DataFrame) -> pl.DataFrame:
    """Cast known columns to their schema type, add missing ones as nulls, drop unknown ones.

    Returns columns in schema order, ready for any event store; a batch that
    already is in that shape comes back as it is (the writer conforms again).
    """
    have = df.schema  # one call: `df.schema` builds a new mapping each time
    if list(have.items()) == _SCHEMA_ITEMS:
        return df
    exprs = []
    for name in NAMES:
        dtype = POLARS_SCHEMA[name]
        got = have.get(name)
        if got is None:
            exprs.append(pl.lit(None, dtype=dtype).alias(name))
        else:
            col = pl.col(name)
            exprs.append(col if got == dtype else col.cast(dtype, strict=False))
    return df.select(exprs)


def to_arrow(df: pl.DataFrame) -> pa.Table:
    """A batch as an Arrow table with exactly `ARROW_SCHEMA` (absent fields all null).

    Only the columns a batch has are converted; absent ones are cheap null
    arrays, so a web batch does not pay for the DNS and syslog fields.
    """
    present = [n for n in NAMES if n in df.columns]
    have = conform_present(df, present).to_arrow()
    n = df.height
    arrays = []
    for f in FIELDS:
        if f.name in present:
            col = have.column(f.name)
            arrays.append(col if col.type == f.type else col.cast(f.type))
        else:
            arrays.append(pa.nulls(n, f.type))
    return pa.Table.from_arrays(arrays, schema=ARROW_SCHEMA)


def to_arrow_present(df: pl.DataFrame) -> pa.Table:
    """Only the schema columns a batch has, typed, for stores that insert by name.

    Strings stay Arrow string views (no copy out of polars); the store casts.
    """
    present = [n for n in NAMES if n in df.columns]
    return conform_present(df, present).to_arrow(compat_level=pl.CompatLevel.newest())


def conform_present(df: pl.DataFrame, present: list[str]) -> pl.DataFrame:
    """The schema columns a batch has, cast to their polars type."""
    have = df.schema
    return df.select(
        pl.col(n) if have[n] == POLARS_SCHEMA[n] else pl.col(n).cast(POLARS_SCHEMA[n], strict=False)
        for n in present
    )
