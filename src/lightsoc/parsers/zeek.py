"""Zeek `conn`, `dns`, `http` and `files` logs, TSV (the default writer) and JSON.

TSV: a record is one tab-separated line; `-` (unset) and `(empty)` (empty
set or string) and the empty string become null, sets are comma-separated.
Zeek's `\\xHH` escapes are kept as text. The column order comes from the
`#fields` header line; a header seen earlier in the same batch is used for
the lines after it. Lines before any header in the batch (a tailed file, or
`format: auto`, which hands header lines to whichever Zeek parser it tries
first) use `options["fields"]` (a list of names, or the tab-separated text
of a `#fields` line) or else Zeek's default field order:

- conn (21): `ts uid id.orig_h id.orig_p id.resp_h id.resp_p proto service
  duration orig_bytes resp_bytes conn_state local_orig local_resp
  missed_bytes history orig_pkts orig_ip_bytes resp_pkts resp_ip_bytes
  tunnel_parents`
- dns (24): `ts uid id.orig_h id.orig_p id.resp_h id.resp_p proto trans_id
  rtt query qclass qclass_name qtype qtype_name rcode rcode_name AA TC RD RA
  Z answers TTLs rejected`
- http (30): `ts uid id.orig_h id.orig_p id.resp_h id.resp_p trans_depth
  method host uri referrer version user_agent origin request_body_len
  response_body_len status_code status_msg info_code info_msg tags username
  password proxied orig_fuids orig_filenames orig_mime_types resp_fuids
  resp_filenames resp_mime_types`
- files (27, Zeek 5.1 and later): `ts fuid uid id.orig_h id.orig_p id.resp_h
  id.resp_p source depth analyzers mime_type filename duration local_orig
  is_orig seen_bytes total_bytes missing_bytes overflow_bytes timedout
  parent_fuid md5 sha1 sha256 extracted extracted_cutoff extracted_size`;
  the older 25-column layout (`tx_hosts rx_hosts conn_uids` instead of `uid`
  and the `id.*` columns) is recognised too, with or without its header.

Without a header a line is taken as a log type when it has that type's
column count (up to 4 extra trailing columns, which local policy scripts
such as community-id or L2 addresses append) and a few columns look right
(`proto`, `conn_state`, `trans_id`, `qtype`, `trans_depth`, the `F...`
file id, ...).

JSON: one object per line with Zeek's own key names (`id.orig_h`, ...); the
type comes from `_path` when present, else from the key set (`conn_state`;
`trans_id` with `query`/`qtype`/`rcode`; `trans_depth` with
`method`/`status_code` and no `call_id`; `fuid` with `seen_bytes`/`analyzers`/
`mime_type`, with or without `id.orig_h`). `ts` may be epoch seconds or ISO
8601. Decoding uses `nginx_json.decode_objects` (line-bounded NDJSON).

Header lines (`#separator`, `#set_separator`, `#empty_field`,
`#unset_field`, `#path`, `#open`, `#close`, `#fields`, `#types`) are not
parse failures: they are `_ok` events (`event.kind` "event") with
`event.dataset` "zeek.header" and the line as `message`.

`uid` goes to `labels` as `zeek.uid` (`event.id` is the pipeline's); conn
also keeps `zeek.conn_state` and `zeek.history` there. A TCP conn's
`conn_state` also gives `event.outcome` (was the connection answered; port-scan
rules count the failures): `failure` for S0 (SYN, no reply), REJ (refused),
RSTOS0 and SH (SYN then RST/FIN, no SYN-ACK); `success` for SF, S1-S3, RSTO and
RSTR (the handshake completed); null for the rest and for UDP/ICMP, where no
reply is often normal. conn byte counts
are IP-level (`orig_ip_bytes` / `resp_ip_bytes`, as NetFlow and Suricata
count them; payload `orig_bytes` / `resp_bytes` when the IP-level ones are
missing).

files: `md5`/`sha1`/`sha256` -> `file.hash.*` (the threat-intel matcher looks
them up), `filename` -> `file.name` (its last path segment; `file.path` when
it has a directory), `mime_type` -> `file.mime_type`, `total_bytes` (else
`seen_bytes`) -> `file.size`, `source` (HTTP, FTP_DATA, SMTP, SMB ...) ->
`network.protocol`. The endpoints are the connection's (`id.orig_h` is
`source.ip`, as in the other logs); in the older layout they come from
`tx_hosts`/`rx_hosts` (the first of each set) by `is_orig`: the sender is the
source when the originator sent the file, else the receiver is. `fuid`,
`uid`/`conn_uids` and `source` go to `labels`.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

import polars as pl

from lightsoc.parsers._record_exprs import (
    epoch_or_iso,
    ip_only,
    labels_expr,
    null_unset,
    seconds_ns,
    set_list,
    total,
)
from lightsoc.parsers.base import OK, Parser
from lightsoc.parsers.nginx_json import decode_objects
from lightsoc.parsers.web_access import as_text, outcome_expr, split_url_exprs
from lightsoc.registry import register
from lightsoc.schema import POLARS_SCHEMA

DEFAULT_FIELDS: dict[str, list[str]] = {
    "conn": (
        "ts uid id.orig_h id.orig_p id.resp_h id.resp_p proto service duration orig_bytes "
        "resp_bytes conn_state local_orig local_resp missed_bytes history orig_pkts "
        "orig_ip_bytes resp_pkts resp_ip_bytes tunnel_parents"
    ).split(),
    "dns": (
        "ts uid id.orig_h id.orig_p id.resp_h id.resp_p proto trans_id rtt query qclass "
        "qclass_name qtype qtype_name rcode rcode_name AA TC RD RA Z answers TTLs rejected"
    ).split(),
    "http": (
        "ts uid id.orig_h id.orig_p id.resp_h id.resp_p trans_depth method host uri referrer "
        "version user_agent origin request_body_len response_body_len status_code status_msg "
        "info_code info_msg tags username password proxied orig_fuids orig_filenames "
        "orig_mime_types resp_fuids resp_filenames resp_mime_types"
    ).split(),
    "files": (
        "ts fuid uid id.orig_h id.orig_p id.resp_h id.resp_p source depth analyzers mime_type "
        "filename duration local_orig is_orig seen_bytes total_bytes missing_bytes "
        "overflow_bytes timedout parent_fuid md5 sha1 sha256 extracted extracted_cutoff "
        "extracted_size"
    ).split(),
}
#: files.log before Zeek 5.1: the file's hosts and connections as sets, no `id.*`
LEGACY_FILES_FIELDS = (
    "ts fuid tx_hosts rx_hosts conn_uids source depth analyzers mime_type filename duration "
    "local_orig is_orig seen_bytes total_bytes missing_bytes overflow_bytes timedout "
    "parent_fuid md5 sha1 sha256 extracted extracted_cutoff extracted_size"
).split()
_EXTRA_COLUMNS = 4
_RX_HEADER = r"^#(?:separator|set_separator|empty_field|unset_field|path|open|close|fields|types)\b"
_RX_NUM = r"^[0-9]+(?:\.[0-9]+)?$"
_RX_INT_OR_UNSET = r"^(?:[0-9]+|-)$"
_RX_FUID = r"^F[0-9A-Za-z]{5,}$"
_RX_FILE_SOURCE = r"^(?:[A-Za-z0-9_]+|-)$"
_CONN_STATES = "S0|S1|S2|S3|SF|REJ|RSTO|RSTR|RSTOS0|RSTRH|SH|SHR|OTH"
#: conn_state of a TCP connection -> event.outcome (see the module docstring)
TCP_FAILED_STATES = ["S0", "REJ", "RSTOS0", "SH"]
TCP_ANSWERED_STATES = ["SF", "S1", "S2", "S3", "RSTO", "RSTR"]
#: per type, `{column index: regex}` a header-less TSV line must satisfy
_TSV_CHECKS: dict[str, dict[int, str]] = {
    "conn": {6: r"^(?:tcp|udp|icmp|unknown_transport)$", 11: rf"^(?:{_CONN_STATES}|-)$"},
    "dns": {6: r"^(?:tcp|udp|-)$", 7: _RX_INT_OR_UNSET, 10: _RX_INT_OR_UNSET},
    "http": {6: r"^[0-9]+$", 14: _RX_INT_OR_UNSET, 15: _RX_INT_OR_UNSET},
    "files": {1: _RX_FUID, 7: _RX_FILE_SOURCE, 8: r"^[0-9]+$", 15: _RX_INT_OR_UNSET},
}
_LEGACY_FILES_CHECKS = {1: _RX_FUID, 5: _RX_FILE_SOURCE, 6: r"^[0-9]+$", 13: _RX_INT_OR_UNSET}
#: per type, JSON detection: every group needs one of its keys (`!k`: must be absent)
_JSON_KEYS: dict[str, list[list[str]]] = {
    "conn": [["conn_state"]],
    "dns": [["trans_id"], ["query", "qtype", "qtype_name", "rcode", "rcode_name"]],
    "http": [["trans_depth"], ["method", "status_code"], ["!call_id"]],
    "files": [["fuid"], ["seen_bytes", "analyzers", "mime_type"]],
}


def _path_kind(names: list[str]) -> str | None:
    if "conn_state" in names:
        return "conn"
    if "trans_id" in names and ("query" in names or "qtype_name" in names):
        return "dns"
    if "trans_depth" in names and "method" in names and "call_id" not in names:
        return "http"
    if "fuid" in names and ("seen_bytes" in names or "analyzers" in names):
        return "files"
    return None


class _ZeekParser(Parser):
    """Shared TSV/JSON handling; subclasses set `kind` and map fields."""

    module = "zeek"
    kind: ClassVar[str] = ""
    #: a record of this type has this field (and a `ts`)
    key_field: ClassVar[str] = "id.orig_h"
    #: other header-less column orders of this type, with their `{index: regex}` checks
    alt_layouts: ClassVar[list[tuple[list[str], dict[int, str]]]] = []

    def __init__(self, options: dict[str, Any] | None = None) -> None:
        super().__init__(options)
        fields = self.options.get("fields")
        if isinstance(fields, str):
            fields = fields.removeprefix("#fields").split()
        self.default_fields: list[str] = list(fields or DEFAULT_FIELDS[self.kind])

    def _json_mask(self, text: pl.Series) -> pl.Series:
        path = text.str.contains(rf'"_path"\s*:\s*"{self.kind}"')
        anchor = rf'"{re.escape(self.key_field)}"\s*:'
        by_keys = text.str.contains(anchor) & ~text.str.contains(r'"_path"\s*:')
        for group in _JSON_KEYS[self.kind]:
            if group[0].startswith("!"):
                by_keys = by_keys & ~text.str.contains(rf'"{group[0][1:]}"\s*:')
            else:
                by_keys = by_keys & text.str.contains("|".join(rf'"{k}"\s*:' for k in group))
        return text.str.contains(r"^\s*\{") & (path | by_keys)

    def _tsv_default_mask(self, text: pl.Series, parts: pl.Series) -> pl.Series:
        want = len(self.default_fields)
        ncols = parts.list.len()
        ok = (ncols >= want) & (ncols <= want + _EXTRA_COLUMNS)
        ts_at = self.default_fields.index("ts") if "ts" in self.default_fields else 0
        ok = ok & parts.list.get(ts_at, null_on_oob=True).str.contains(_RX_NUM)
        if self.default_fields == DEFAULT_FIELDS[self.kind]:
            for idx, rx in _TSV_CHECKS[self.kind].items():
                ok = ok & parts.list.get(idx, null_on_oob=True).str.contains(rx)
        return ok.fill_null(False) & ~text.str.starts_with("#")

    def _alt_masks(self, text: pl.Series, parts: pl.Series) -> list[tuple[str, pl.Series]]:
        """Per alternative layout: its `#fields` text and the header-less lines that fit it."""
        out = []
        ncols = parts.list.len()
        for fields, checks in self.alt_layouts:
            ok = (ncols == len(fields)) & ~text.str.starts_with("#")
            for idx, rx in checks.items():
                ok = ok & parts.list.get(idx, null_on_oob=True).str.contains(rx)
            out.append(("#fields\t" + "\t".join(fields), ok.fill_null(False)))
        return out

    def matches(self, raw: pl.Series) -> pl.Series:
        text = as_text(raw)
        parts = text.str.split("\t")
        out = text.str.contains(_RX_HEADER) | self._json_mask(text)
        out = out | self._tsv_default_mask(text, parts)
        for _, alt in self._alt_masks(text, parts):
            out = out | alt
        return out.fill_null(False)

    def _frame(self, text: pl.Series) -> tuple[pl.DataFrame, pl.Series, pl.Series]:
        """Zeek-named String columns for this type, plus `mine` and `header` masks."""
        alt_names = [n for fields, _ in self.alt_layouts for n in fields]
        names = list(dict.fromkeys(DEFAULT_FIELDS[self.kind] + self.default_fields + alt_names))
        header = text.str.contains(_RX_HEADER).fill_null(False)
        parts = text.str.split("\t")
        hdr = pl.select(
            pl.when(text.str.starts_with("#fields\t")).then(text).forward_fill()
        ).to_series()
        default = self._tsv_default_mask(text, parts)
        for fields_line, alt in self._alt_masks(text, parts):
            # a header-less line in another known order reads as if that header preceded it
            hdr = pl.select(
                pl.when(alt & ~default & hdr.is_null()).then(pl.lit(fields_line)).otherwise(hdr)
            ).to_series()
        known = hdr.unique(maintain_order=True).drop_nulls().to_list()
        mine = default & hdr.is_null()
        cols: dict[str, pl.Expr] = {}
        conds: list[tuple[pl.Expr, list[str]]] = []
        for h in known:
            fields = h.split("\t")[1:]
            if _path_kind(fields) == self.kind:
                conds.append((pl.col("h") == h, fields))
                ncols = parts.list.len()
                mine = mine | ((hdr == h) & (ncols == len(fields)) & ~text.str.starts_with("#"))
        frame = pl.DataFrame({"p": parts, "h": hdr})
        for name in names:
            expr: Any = pl.when(pl.col("h").is_null())
            if name in self.default_fields:
                val = pl.col("p").list.get(self.default_fields.index(name), null_on_oob=True)
            else:
                val = pl.lit(None, dtype=pl.String)
            expr = expr.then(val)
            for cond, fields in conds:
                if name in fields:
                    val = pl.col("p").list.get(fields.index(name), null_on_oob=True)
                else:
                    val = pl.lit(None, dtype=pl.String)
                expr = expr.when(cond).then(val)
            cols[name] = expr
        tsv = frame.select(null_unset(e).alias(k) for k, e in cols.items())
        mine = mine.fill_null(False)
        is_json = self._json_mask(text).fill_null(False)
        if is_json.any():
            sub = pl.select(pl.when(is_json).then(text)).to_series()
            js = decode_objects(sub.fill_null(""), names)
            tsv = tsv.with_columns(
                pl.when(is_json).then(null_unset(js[k])).otherwise(pl.col(k)).alias(k)
                for k in names
            )
            mine = mine | is_json
        return tsv, mine, header

    def parse(self, raw: pl.Series) -> pl.DataFrame:
        text = as_text(raw)
        z, mine, header = self._frame(text)
        ts = epoch_or_iso(z["ts"])
        ok = (mine & ts.is_not_null() & z[self.key_field].is_not_null()).fill_null(False)
        body = z.with_columns(ts.alias("@timestamp")).select(
            pl.col("@timestamp"),
            *self._endpoints(),
            *self._exprs(),
        )
        out = body.select(
            pl.when(ok).then(pl.col(c)).cast(POLARS_SCHEMA[c], strict=False).alias(c)
            for c in body.columns
        )
        is_hdr = header & ~ok
        return out.with_columns(
            # ECS has no "metadata" kind: the dataset says it is a header line
            pl.when(ok | is_hdr).then(pl.lit("event")).alias("event.kind"),
            pl.when(is_hdr).then(text).alias("message"),
            pl.when(is_hdr)
            .then(pl.lit("zeek.header"))
            .otherwise(pl.lit(self.dataset))
            .alias("event.dataset"),
            pl.lit(self.module).alias("event.module"),
            (ok | is_hdr).alias(OK),
        )

    def _endpoints(self) -> list[pl.Expr]:
        """source/destination ip and port (the connection's 4-tuple)."""
        return [
            pl.col("id.orig_h").alias("source.ip"),
            pl.col("id.orig_p").alias("source.port"),
            pl.col("id.resp_h").alias("destination.ip"),
            pl.col("id.resp_p").alias("destination.port"),
        ]

    def _exprs(self) -> list[pl.Expr]:
        raise NotImplementedError


@register("parsers", "zeek_conn")
class ZeekConnParser(_ZeekParser):
    """Zeek conn.log (TSV or JSON) -> network connection events."""

    kind = "conn"
    dataset = "zeek.conn"
    auto_priority = 70

    def _exprs(self) -> list[pl.Expr]:
        ob = pl.col("orig_ip_bytes").fill_null(pl.col("orig_bytes")).cast(pl.Int64, strict=False)
        rb = pl.col("resp_ip_bytes").fill_null(pl.col("resp_bytes")).cast(pl.Int64, strict=False)
        op = pl.col("orig_pkts").cast(pl.Int64, strict=False)
        rp = pl.col("resp_pkts").cast(pl.Int64, strict=False)
        state = pl.col("conn_state")
        outcome = (
            pl.when(state.is_in(TCP_ANSWERED_STATES))
            .then(pl.lit("success"))
            .when(state.is_in(TCP_FAILED_STATES))
            .then(pl.lit("failure"))
        )
        return [
            pl.col("proto").str.to_lowercase().alias("network.transport"),
            pl.col("service").alias("network.protocol"),
            seconds_ns(pl.col("duration")).alias("event.duration"),
            ob.alias("source.bytes"),
            rb.alias("destination.bytes"),
            op.alias("source.packets"),
            rp.alias("destination.packets"),
            total(ob, rb).alias("network.bytes"),
            total(op, rp).alias("network.packets"),
            pl.when(pl.col("proto").str.to_lowercase() == "tcp")
            .then(outcome)
            .alias("event.outcome"),
            pl.lit("network").alias("event.category"),
            pl.lit("connection").alias("event.type"),
            labels_expr(
                {
                    "zeek.uid": pl.col("uid"),
                    "zeek.conn_state": pl.col("conn_state"),
                    "zeek.history": pl.col("history"),
                }
            ).alias("labels"),
        ]


@register("parsers", "zeek_dns")
class ZeekDnsParser(_ZeekParser):
    """Zeek dns.log (TSV or JSON) -> DNS events."""

    kind = "dns"
    dataset = "zeek.dns"
    auto_priority = 71

    def _exprs(self) -> list[pl.Expr]:
        answers = set_list(pl.col("answers"))
        return [
            pl.col("proto").str.to_lowercase().alias("network.transport"),
            pl.lit("dns").alias("network.protocol"),
            pl.col("trans_id").alias("dns.id"),
            pl.col("query").alias("dns.question.name"),
            pl.col("qtype_name").alias("dns.question.type"),
            pl.col("rcode_name").alias("dns.response_code"),
            pl.when(pl.col("rcode").is_not_null() | pl.col("rcode_name").is_not_null())
            .then(pl.lit("answer"))
            .otherwise(pl.lit("query"))
            .alias("dns.type"),
            answers.alias("dns.answers"),
            ip_only(answers).alias("dns.resolved_ip"),
            pl.lit("network").alias("event.category"),
            pl.lit("protocol").alias("event.type"),
            labels_expr({"zeek.uid": pl.col("uid")}).alias("labels"),
        ]


@register("parsers", "zeek_http")
class ZeekHttpParser(_ZeekParser):
    """Zeek http.log (TSV or JSON) -> web access events."""

    kind = "http"
    dataset = "zeek.http"
    auto_priority = 72

    def _exprs(self) -> list[pl.Expr]:
        status = pl.col("status_code").cast(pl.Int32, strict=False)
        return [
            pl.lit("http").alias("network.protocol"),
            pl.col("method").alias("http.request.method"),
            pl.col("host").alias("url.domain"),
            pl.col("uri").alias("url.original"),
            *split_url_exprs(pl.col("uri")),
            status.alias("http.response.status_code"),
            outcome_expr(status).alias("event.outcome"),
            pl.col("response_body_len").alias("http.response.body.bytes"),
            pl.col("version").alias("http.version"),
            pl.col("user_agent").alias("user_agent.original"),
            pl.col("referrer").alias("http.request.referrer"),
            pl.col("username").alias("user.name"),
            pl.lit("web").alias("event.category"),
            pl.lit("access").alias("event.type"),
            labels_expr({"zeek.uid": pl.col("uid")}).alias("labels"),
        ]


@register("parsers", "zeek_files")
class ZeekFilesParser(_ZeekParser):
    """Zeek files.log (TSV or JSON, both column layouts) -> file events with hashes."""

    kind = "files"
    dataset = "zeek.files"
    auto_priority = 73
    key_field = "fuid"
    alt_layouts: ClassVar[list[tuple[list[str], dict[int, str]]]] = [
        (LEGACY_FILES_FIELDS, _LEGACY_FILES_CHECKS)
    ]

    def _endpoints(self) -> list[pl.Expr]:
        tx = set_list(pl.col("tx_hosts")).list.first()
        rx = set_list(pl.col("rx_hosts")).list.first()
        # older layout: the sender is the source when the connection's originator sent it
        by_resp = pl.col("is_orig").str.to_lowercase().is_in(["f", "false"])
        return [
            pl.coalesce(pl.col("id.orig_h"), pl.when(by_resp).then(rx).otherwise(tx)).alias(
                "source.ip"
            ),
            pl.col("id.orig_p").alias("source.port"),
            pl.coalesce(pl.col("id.resp_h"), pl.when(by_resp).then(tx).otherwise(rx)).alias(
                "destination.ip"
            ),
            pl.col("id.resp_p").alias("destination.port"),
        ]

    def _exprs(self) -> list[pl.Expr]:
        name = pl.col("filename")
        size = pl.col("total_bytes").fill_null(pl.col("seen_bytes")).cast(pl.Int64, strict=False)
        source = pl.col("source").str.to_lowercase()
        return [
            pl.when(source == "ftp_data")
            .then(pl.lit("ftp"))
            .otherwise(source)
            .alias("network.protocol"),
            seconds_ns(pl.col("duration")).alias("event.duration"),
            name.str.replace(r"^.*[/\\]", "").alias("file.name"),
            pl.when(name.str.contains(r"[/\\]")).then(name).alias("file.path"),
            size.alias("file.size"),
            pl.col("mime_type").alias("file.mime_type"),
            pl.col("md5").alias("file.hash.md5"),
            pl.col("sha1").alias("file.hash.sha1"),
            pl.col("sha256").alias("file.hash.sha256"),
            pl.lit("file").alias("event.category"),
            pl.lit("info").alias("event.type"),
            labels_expr(
                {
                    "zeek.fuid": pl.col("fuid"),
                    "zeek.uid": pl.col("uid"),
                    "zeek.conn_uids": pl.col("conn_uids"),
                    "zeek.file_source": pl.col("source"),
                }
            ).alias("labels"),
        ]
