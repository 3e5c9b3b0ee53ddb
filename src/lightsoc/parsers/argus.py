"""Argus flow records as comma-separated text (`ra -c ,`, Stratosphere's `.binetflow`).

Columns are named by Argus's header line (`StartTime,Dur,Proto,SrcAddr,Sport,
Dir,DstAddr,Dport,State,...`); a header seen earlier in the same batch is used
for the lines after it. Lines before any header use `options["fields"]` (a
list of names, or the text of a header line) or else, by column count,
Stratosphere's `.binetflow` order: `StartTime Dur Proto SrcAddr Sport Dir
DstAddr Dport State sTos dTos TotPkts TotBytes SrcBytes SrcPkts Label` (16)
or the CTU-13 one without `SrcPkts` (15). The header line itself is an `_ok`
event (`event.kind` "event") with `event.dataset` "argus.header" and the line
as `message`, as for Zeek and nfdump headers.

Times (`YYYY/mm/dd HH:MM:SS[.ffffff]`, as Argus prints with a date) are read
as UTC unless `options["timezone"]` names an IANA zone. `StartTime` ->
`@timestamp` and `event.start`, `LastTime` (or start + `Dur`) ->
`event.end`, `Dur` (seconds) -> `event.duration`, `Proto` lower-cased ->
`network.transport` (`icmp6` as ECS's `ipv6-icmp`), `TotPkts`/`TotBytes` ->
`network.packets`/`network.bytes`, `SrcPkts`/`SrcBytes` -> source counts and
`DstPkts`/`DstBytes` (else total minus source) -> destination counts.

Ports: decimal `Sport`/`Dport` -> `source.port`/`destination.port`. For ICMP
Argus prints the type/code and id in hex (`0x0008`, `0x7208`): they are not
ports, so the ports stay null and the raw values go to `labels`
(`argus.sport`, `argus.dport`), as does any other non-decimal port.

`Dir` (`->`, `<-`, `<->`, `<?>`, `?>`, ...) says which way Argus saw packets
flow, not whether the flow entered or left the network (`network.direction`,
which the networks enricher fills from the addresses): it is kept in
`labels` as `argus.dir`. `State`, `sTos`, `dTos` and `Flgs` are kept in
`labels` too (`argus.state`, `argus.stos`, `argus.dtos`, `argus.flags`).
For TCP, `State` also gives `event.outcome` (whether the connection was
answered), which port-scan rules count:

- `failure`: nothing or a reset came back. Argus's `REQ`/`INT`, flag pairs
  `<src>_<dst>` whose source side has a SYN and whose destination side is
  empty or has a RST without a SYN (`S_`, `S_RA`, `FS_R`), and the Zeek
  states Stratosphere's converted files use (`S0`, `REJ`, `RSTOS0`, `SH`);
- `success`: the destination answered the SYN (a flag pair whose destination
  side has `S`, e.g. `FSPA_FSPA`, `SR_SA`), Argus's `CON`/`EST`/`FIN`/`CLO`,
  Zeek's `SF`, `S1`-`S3`, `RSTO`, `RSTR`;
- null otherwise (mid-stream `PA_PA`, `RST`, and every non-TCP flow: a UDP or
  ICMP request without reply is often normal).

The `Label` column of Stratosphere's files is their ground truth (Botnet,
Background, ...), not something the sensor logged: it is not mapped to any
field (the raw line stays in `event.original`).
"""

from __future__ import annotations

from typing import Any

import polars as pl

from lightsoc.parsers._record_exprs import labels_expr, seconds_ns
from lightsoc.parsers.base import OK, Parser
from lightsoc.parsers.web_access import as_text
from lightsoc.parsers.zeek import TCP_ANSWERED_STATES, TCP_FAILED_STATES
from lightsoc.registry import register
from lightsoc.schema import POLARS_SCHEMA

BINETFLOW = (
    "StartTime Dur Proto SrcAddr Sport Dir DstAddr Dport State sTos dTos TotPkts TotBytes "
    "SrcBytes SrcPkts Label"
).split()
CTU13 = [f for f in BINETFLOW if f != "SrcPkts"]
#: Argus column names this parser reads (others in a header are ignored)
KNOWN = sorted(
    {*BINETFLOW, "LastTime", "DstBytes", "DstPkts", "Flgs"},
)
_RX_TIME = r"[0-9]{4}/[0-9]{2}/[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]+)?"
_RX_FLOW = rf"^{_RX_TIME},"
_RX_HEADER = r"^StartTime,(?:.*,)?SrcAddr,(?:.*,)?DstAddr(?:,|$)"
_RX_DEC = r"^[0-9]{1,5}$"
# Argus's own state words, then the Zeek states some converted files carry
_TCP_FAIL_WORDS = ["REQ", "INT", *TCP_FAILED_STATES]
_TCP_OK_WORDS = ["CON", "EST", "FIN", "CLO", *TCP_ANSWERED_STATES]


def _fields_option(value: Any) -> list[str] | None:
    if isinstance(value, str):
        return [f.strip() for f in value.split(",")]
    return [str(f) for f in value] if value else None


def _count(expr: pl.Expr) -> pl.Expr:
    """A packet or byte count (text) as Int64, null when it is not a number."""
    return expr.cast(pl.Int64, strict=False)


def _outcome(state: pl.Expr, transport: pl.Expr) -> pl.Expr:
    """ECS `event.outcome` of a TCP flow from its Argus (or Zeek-style) state."""
    src = state.str.extract(r"^([A-Z]*)_", 1)
    dst = state.str.extract(r"_([A-Z]*)$", 1)
    pair = state.str.contains(r"^[A-Z]*_[A-Z]*$")
    answered = pair & dst.str.contains("S")
    refused = (
        pair
        & src.str.contains("S")
        & ~dst.str.contains("S")
        & ((dst == "") | dst.str.contains("R"))
    )
    out = (
        pl.when(answered | state.is_in(_TCP_OK_WORDS))
        .then(pl.lit("success"))
        .when(refused | state.is_in(_TCP_FAIL_WORDS))
        .then(pl.lit("failure"))
    )
    return pl.when(transport == "tcp").then(out)


@register("parsers", "argus_csv")
class ArgusCsvParser(Parser):
    """Argus `ra -c ,` / Stratosphere `.binetflow` flow records (`event.dataset` argus)."""

    dataset = "argus"
    module = "argus"
    auto_priority = 77

    def __init__(self, options: dict[str, Any] | None = None) -> None:
        super().__init__(options)
        self.timezone: str = str(self.options.get("timezone") or "UTC")
        self.fields: list[str] | None = _fields_option(self.options.get("fields"))

    def matches(self, raw: pl.Series) -> pl.Series:
        text = as_text(raw).str.strip_chars_end("\r")
        return (text.str.contains(_RX_FLOW) | text.str.contains(_RX_HEADER)).fill_null(False)

    def _time(self, expr: pl.Expr) -> pl.Expr:
        naive = expr.str.strptime(pl.Datetime("us"), "%Y/%m/%d %H:%M:%S%.f", strict=False)
        local = naive.dt.replace_time_zone(self.timezone, ambiguous="earliest", non_existent="null")
        return local.dt.convert_time_zone("UTC")

    def _columns(self, text: pl.Series, parts: pl.Series) -> tuple[pl.DataFrame, pl.Series]:
        """Argus-named String columns, and whether each line has its header's column count."""
        header = text.str.contains(_RX_HEADER).fill_null(False)
        hdr = pl.select(pl.when(header).then(text).forward_fill()).to_series()
        ncols = parts.list.len()
        layouts: list[tuple[pl.Series, list[str]]] = []
        for h in hdr.unique(maintain_order=True).drop_nulls().to_list():
            layouts.append((hdr == h, h.split(",")))
        if self.fields:
            layouts.append((hdr.is_null(), self.fields))
        else:
            layouts.append((hdr.is_null() & (ncols == len(BINETFLOW)), BINETFLOW))
            layouts.append((hdr.is_null() & (ncols == len(CTU13)), CTU13))
        frame = pl.DataFrame({"p": parts})
        fits = pl.Series([False] * len(text), dtype=pl.Boolean)
        cols: dict[str, Any] = {name: pl.lit(None, dtype=pl.String) for name in KNOWN}
        for mask, names in reversed(layouts):  # first layout wins: build the chain inside out
            fits = fits | (mask & (ncols == len(names))).fill_null(False)
            for name in KNOWN:
                val = (
                    pl.col("p").list.get(names.index(name), null_on_oob=True)
                    if name in names
                    else pl.lit(None, dtype=pl.String)
                )
                cols[name] = pl.when(pl.lit(mask)).then(val).otherwise(cols[name])
        values = frame.select(
            pl.when(e.str.strip_chars() != "").then(e.str.strip_chars()).alias(k)
            for k, e in cols.items()
        )
        return values, fits

    def parse(self, raw: pl.Series) -> pl.DataFrame:
        text = as_text(raw).str.strip_chars_end("\r")
        parts = text.str.split(",")
        header = text.str.contains(_RX_HEADER).fill_null(False)
        z, fits = self._columns(text, parts)
        c = pl.col
        flow = (text.str.contains(_RX_FLOW) & fits).fill_null(False)
        proto = c("Proto").str.to_lowercase().replace("icmp6", "ipv6-icmp")
        icmp = proto.is_in(["icmp", "ipv6-icmp"])
        sport = pl.when(~icmp & c("Sport").str.contains(_RX_DEC)).then(c("Sport"))
        dport = pl.when(~icmp & c("Dport").str.contains(_RX_DEC)).then(c("Dport"))
        start = self._time(c("StartTime"))
        dur = seconds_ns(c("Dur"))
        tot_p, tot_b = _count(c("TotPkts")), _count(c("TotBytes"))
        src_p, src_b = _count(c("SrcPkts")), _count(c("SrcBytes"))
        dst_p = _count(c("DstPkts")).fill_null(tot_p - src_p)
        dst_b = _count(c("DstBytes")).fill_null(tot_b - src_b)
        end = self._time(c("LastTime")).fill_null(start + pl.duration(nanoseconds=dur))
        body = z.select(
            start.alias("@timestamp"),
            start.alias("event.start"),
            end.alias("event.end"),
            dur.alias("event.duration"),
            c("SrcAddr").alias("source.ip"),
            sport.cast(pl.Int32, strict=False).alias("source.port"),
            c("DstAddr").alias("destination.ip"),
            dport.cast(pl.Int32, strict=False).alias("destination.port"),
            proto.alias("network.transport"),
            src_p.alias("source.packets"),
            src_b.alias("source.bytes"),
            dst_p.alias("destination.packets"),
            dst_b.alias("destination.bytes"),
            tot_p.alias("network.packets"),
            tot_b.alias("network.bytes"),
            _outcome(c("State"), proto).alias("event.outcome"),
            pl.lit("network").alias("event.category"),
            pl.lit("connection").alias("event.type"),
            labels_expr(
                {
                    "argus.dir": c("Dir"),
                    "argus.state": c("State"),
                    "argus.flags": c("Flgs"),
                    "argus.stos": c("sTos"),
                    "argus.dtos": c("dTos"),
                    "argus.sport": pl.when(sport.is_null()).then(c("Sport")),
                    "argus.dport": pl.when(dport.is_null()).then(c("Dport")),
                }
            ).alias("labels"),
        )
        ok = (
            flow
            & body["@timestamp"].is_not_null()
            & body["source.ip"].is_not_null()
            & body["destination.ip"].is_not_null()
        )
        out = body.select(
            pl.when(ok).then(c(col)).cast(POLARS_SCHEMA[col], strict=False).alias(col)
            for col in body.columns
        )
        meta = header & ~ok
        return out.with_columns(
            # ECS has no "metadata" kind: the dataset says it is a header line
            pl.when(ok | meta).then(pl.lit("event")).alias("event.kind"),
            pl.when(meta).then(text).alias("message"),
            pl.when(meta)
            .then(pl.lit("argus.header"))
            .otherwise(pl.lit(self.dataset))
            .alias("event.dataset"),
            pl.lit(self.module).alias("event.module"),
            (ok | meta).alias(OK),
        )
