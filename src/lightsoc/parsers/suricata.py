"""Suricata `eve.json`: one JSON object per line, typed by `event_type`.

Common fields: `timestamp` (ISO 8601 with offset) -> `@timestamp`,
`src_ip`/`src_port`/`dest_ip`/`dest_port`, `proto` -> `network.transport`
(lower-cased), `app_proto` -> `network.protocol` (`failed` is null),
`community_id`, `host` (the sensor) -> `observer.name`; `flow_id` goes to
`labels` as `suricata.flow_id`. `event.dataset` is `suricata.<event_type>`.

Nested objects are mapped wherever they occur (an `alert` carries `flow`
and sometimes `http`):

- `flow`: bytes/pkts toserver/toclient -> source/destination bytes/packets
  (and `network.*` totals), `start`/`end` -> `event.start`/`event.end` and
  `event.duration`.
- `dns` (eve v1 and v2): `id`, `type`, `rrname`, `rrtype`, `rcode`, answers
  from `answers[].rdata` (v2) or `rdata` (v1) -> `dns.answers`, the ones
  that are IP addresses -> `dns.resolved_ip`.
- `http`: `hostname`, `url` (+ path/query), `http_method`, `status`,
  `http_user_agent`, `http_refer`, `protocol`, `length`.
- `alert`: `signature` -> `message`, `severity` -> `event.severity`,
  `signature_id`/`category`/`severity` (and `gid`, `rev`) -> labels,
  `action` -> `event.action`; `event.kind` is "alert".
- `fileinfo` (a file seen in HTTP, SMTP, FTP, SMB ... traffic): `filename`
  -> `file.path` (for HTTP the URL path) and its last segment -> `file.name`,
  `size` -> `file.size`, `md5`/`sha1`/`sha256` -> `file.hash.*` (the threat
  intel matcher looks these up); `magic` (libmagic's description, not a MIME
  type) and `state` -> labels.

A record is `_ok` when it is a JSON object with an `event_type` and a
readable `timestamp`. Decoding is line-bounded (`nginx_json.decode_objects`);
nested objects come back as JSON text and are decoded the same way.
"""

from __future__ import annotations

import polars as pl

from lightsoc.parsers._record_exprs import RX_IP, labels_expr, total
from lightsoc.parsers.base import OK, Parser
from lightsoc.parsers.nginx_json import decode_objects, parse_time
from lightsoc.parsers.web_access import as_text, outcome_expr, split_url_exprs
from lightsoc.registry import register
from lightsoc.schema import POLARS_SCHEMA

_TOP = [
    "timestamp",
    "event_type",
    "flow_id",
    "src_ip",
    "src_port",
    "dest_ip",
    "dest_port",
    "proto",
    "app_proto",
    "community_id",
    "host",
    "flow",
    "dns",
    "http",
    "alert",
    "fileinfo",
]
_NESTED = {
    "flow": ["pkts_toserver", "pkts_toclient", "bytes_toserver", "bytes_toclient", "start", "end"],
    "dns": ["type", "id", "rrname", "rrtype", "rcode", "rdata", "answers"],
    "http": [
        "hostname",
        "url",
        "http_method",
        "status",
        "http_user_agent",
        "http_refer",
        "protocol",
        "length",
    ],
    "alert": ["action", "gid", "signature_id", "rev", "signature", "category", "severity"],
    "fileinfo": ["filename", "size", "md5", "sha1", "sha256", "magic", "state"],
}
_CATEGORY = {
    "flow": ("network", "connection"),
    "netflow": ("network", "connection"),
    "dns": ("network", "protocol"),
    "http": ("web", "access"),
    "alert": ("intrusion_detection", "info"),
    "fileinfo": ("file", "info"),
}


def _blank(expr: pl.Expr) -> pl.Expr:
    return pl.when(expr != "").then(expr)


@register("parsers", "suricata_eve")
class SuricataEveParser(Parser):
    """Suricata eve.json lines (flow, dns, http, alert and the common fields of the rest)."""

    dataset = "suricata"
    module = "suricata"
    auto_priority = 74

    def matches(self, raw: pl.Series) -> pl.Series:
        text = as_text(raw)
        return (
            text.str.contains(r'^\s*\{.*"event_type"\s*:')
            & text.str.contains(r'"timestamp"\s*:')
            & text.str.contains(r'"(?:src_ip|flow_id)"\s*:')
        ).fill_null(False)

    def parse(self, raw: pl.Series) -> pl.DataFrame:
        text = as_text(raw)
        top = decode_objects(text, _TOP)
        frames = [top]
        for name, keys in _NESTED.items():
            sub = decode_objects(top[name], keys).rename({k: f"{name}.{k}" for k in keys})
            frames.append(sub)
        df = pl.concat(frames, how="horizontal")
        ts = parse_time(df["timestamp"])
        start = parse_time(df["flow.start"])
        end = parse_time(df["flow.end"])
        etype = df["event_type"]
        ok = (etype.is_not_null() & (etype != "") & ts.is_not_null()).fill_null(False)
        df = df.with_columns(ts.alias("_ts"), start.alias("_start"), end.alias("_end"))

        c = pl.col
        et = c("event_type")
        ob, rb = (
            c("flow.bytes_toserver").cast(pl.Int64, strict=False),
            c("flow.bytes_toclient").cast(pl.Int64, strict=False),
        )
        op, rp = (
            c("flow.pkts_toserver").cast(pl.Int64, strict=False),
            c("flow.pkts_toclient").cast(pl.Int64, strict=False),
        )
        rdata = (
            c("dns.answers")
            .str.extract_all(r'"rdata"\s*:\s*"(?:[^"\\]|\\.)*"')
            .list.eval(pl.element().str.replace(r'^"rdata"\s*:\s*"', "").str.strip_suffix('"'))
        )
        answers = (
            pl.when(c("dns.answers").is_not_null())
            .then(rdata)
            .when(c("dns.rdata").is_not_null())
            .then(pl.concat_list(c("dns.rdata")))
        )
        category = pl.lit("network")
        etype_kind = pl.lit("info")
        for name, (cat, typ) in _CATEGORY.items():
            category = pl.when(et == name).then(pl.lit(cat)).otherwise(category)
            etype_kind = pl.when(et == name).then(pl.lit(typ)).otherwise(etype_kind)
        is_alert = et == "alert"
        action = c("alert.action")
        status = c("http.status").cast(pl.Int32, strict=False)
        app = c("app_proto").str.to_lowercase()
        fname = c("fileinfo.filename")
        body = df.select(
            c("_ts").alias("@timestamp"),
            _blank(c("src_ip")).alias("source.ip"),
            c("src_port").alias("source.port"),
            _blank(c("dest_ip")).alias("destination.ip"),
            c("dest_port").alias("destination.port"),
            c("proto").str.to_lowercase().alias("network.transport"),
            pl.when(~app.is_in(["failed", ""])).then(app).alias("network.protocol"),
            c("community_id").alias("network.community_id"),
            c("host").alias("observer.name"),
            ob.alias("source.bytes"),
            rb.alias("destination.bytes"),
            op.alias("source.packets"),
            rp.alias("destination.packets"),
            total(ob, rb).alias("network.bytes"),
            total(op, rp).alias("network.packets"),
            c("_start").alias("event.start"),
            c("_end").alias("event.end"),
            (c("_end") - c("_start")).dt.total_nanoseconds().alias("event.duration"),
            c("dns.id").alias("dns.id"),
            c("dns.type").alias("dns.type"),
            c("dns.rrname").alias("dns.question.name"),
            c("dns.rrtype").alias("dns.question.type"),
            c("dns.rcode").alias("dns.response_code"),
            answers.alias("dns.answers"),
            answers.list.eval(pl.element().filter(pl.element().str.contains(RX_IP))).alias(
                "dns.resolved_ip"
            ),
            _blank(c("http.hostname")).alias("url.domain"),
            c("http.url").alias("url.original"),
            *split_url_exprs(c("http.url")),
            c("http.http_method").alias("http.request.method"),
            status.alias("http.response.status_code"),
            c("http.http_user_agent").alias("user_agent.original"),
            c("http.http_refer").alias("http.request.referrer"),
            c("http.protocol").str.strip_prefix("HTTP/").alias("http.version"),
            c("http.length").alias("http.response.body.bytes"),
            _blank(fname).alias("file.path"),
            _blank(fname.str.replace(r"^.*[/\\]", "")).alias("file.name"),
            c("fileinfo.size").alias("file.size"),
            _blank(c("fileinfo.md5")).alias("file.hash.md5"),
            _blank(c("fileinfo.sha1")).alias("file.hash.sha1"),
            _blank(c("fileinfo.sha256")).alias("file.hash.sha256"),
            pl.when(is_alert).then(outcome_expr(status)).alias("event.outcome"),
            c("alert.signature").alias("message"),
            c("alert.severity").alias("event.severity"),
            action.alias("event.action"),
            category.alias("event.category"),
            pl.when(is_alert & action.is_in(["blocked", "drop", "dropped"]))
            .then(pl.lit("denied"))
            .when(is_alert & action.is_not_null())
            .then(pl.lit("allowed"))
            .otherwise(etype_kind)
            .alias("event.type"),
            pl.when(is_alert).then(pl.lit("alert")).otherwise(pl.lit("event")).alias("event.kind"),
            labels_expr(
                {
                    "suricata.flow_id": c("flow_id"),
                    "suricata.signature_id": c("alert.signature_id"),
                    "suricata.signature_gid": c("alert.gid"),
                    "suricata.signature_rev": c("alert.rev"),
                    "suricata.category": c("alert.category"),
                    "suricata.severity": c("alert.severity"),
                    "suricata.file_magic": c("fileinfo.magic"),
                    "suricata.file_state": c("fileinfo.state"),
                }
            ).alias("labels"),
            pl.concat_str(pl.lit("suricata."), et).alias("event.dataset"),
        )
        out = body.select(
            pl.when(ok).then(c(col)).cast(POLARS_SCHEMA[col], strict=False).alias(col)
            for col in body.columns
        )
        return out.with_columns(
            pl.when(ok).then(c("event.dataset")).otherwise(pl.lit(self.dataset)),
            pl.lit(self.module).alias("event.module"),
            ok.alias(OK),
        )
