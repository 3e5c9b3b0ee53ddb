"""`nfdump -o csv` output: one flow per line.

Columns are positional (nfdump 1.6/1.7 `csv` format): `ts,te,td,sa,da,sp,
dp,pr,flg,fwd,stos,ipkt,ibyt,opkt,obyt,in,out,sas,das,...,ra,eng,exid,tr`;
the first 15 are required, later ones are optional. `ts`/`te` (`YYYY-mm-dd
HH:MM:SS[.fff]`) are nfdump's local time: read as UTC unless
`options["timezone"]` names an IANA zone. `ts` -> `@timestamp` and
`event.start`, `te` -> `event.end`, `td` (seconds) -> `event.duration`,
`pr` lower-cased -> `network.transport`, `ipkt`/`ibyt` -> source packets/
bytes, `opkt`/`obyt` -> destination (0 for unidirectional NetFlow), and
`network.packets`/`network.bytes` are their sums (ipkt/ibyt when `o*` is 0).
TCP flags (`flg`), input/output interfaces and the exporter (`ra`) go to
`labels`.

Non-flow lines nfdump prints are not parse failures: the column header
(`ts,te,td,sa,...`) and the trailing summary (`Summary`,
`flows,bytes,packets,avg_bps,avg_pps,avg_bpp` and its value line) are `_ok`
events (`event.kind` "event") with `event.dataset` "nfdump.header" or
"nfdump.summary" and the line as `message`. The bare `Summary` and value
lines are only recognised next to the summary header in the same batch, so
that a lone number list elsewhere is not swallowed by `format: auto`.
"""

from __future__ import annotations

from typing import Any

import polars as pl

from lightsoc.parsers._record_exprs import labels_expr, seconds_ns, total
from lightsoc.parsers.base import OK, Parser
from lightsoc.parsers.web_access import as_text
from lightsoc.registry import register
from lightsoc.schema import POLARS_SCHEMA

COLUMNS = "ts te td sa da sp dp pr flg fwd stos ipkt ibyt opkt obyt in out".split()
_RA = 44  # exporter (router) address column in nfdump 1.6/1.7 `csv`
_MIN_COLUMNS = 15
_RX_TIME = r"[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]+)?"
_RX_FLOW = rf"^{_RX_TIME},{_RX_TIME},[0-9.]+,"
_RX_HEADER = r"^ts,te,td,sa,da,sp,dp,pr,"
_SUMMARY_HEADER = "flows,bytes,packets,avg_bps,avg_pps,avg_bpp"
_RX_SUMMARY_VALUES = r"^[0-9]+(?:,[0-9.]+){5}$"


def _summary_mask(text: pl.Series) -> pl.Series:
    """The three summary lines, the bare ones only next to the summary header."""
    head = text == _SUMMARY_HEADER
    title = (text == "Summary") & head.shift(-1, fill_value=False)
    values = text.str.contains(_RX_SUMMARY_VALUES) & head.shift(1, fill_value=False)
    return (head | title | values).fill_null(False)


@register("parsers", "nfdump_csv")
class NfdumpCsvParser(Parser):
    """nfdump `-o csv` flow records (`event.dataset` netflow)."""

    dataset = "netflow"
    module = "nfdump"
    auto_priority = 76

    def __init__(self, options: dict[str, Any] | None = None) -> None:
        super().__init__(options)
        self.timezone: str = str(self.options.get("timezone") or "UTC")

    def matches(self, raw: pl.Series) -> pl.Series:
        text = as_text(raw).str.strip_chars_end("\r")
        flows = text.str.contains(_RX_FLOW) | text.str.contains(_RX_HEADER)
        return (flows | _summary_mask(text)).fill_null(False)

    def _time(self, expr: pl.Expr) -> pl.Expr:
        naive = expr.str.strptime(pl.Datetime("us"), "%Y-%m-%d %H:%M:%S%.f", strict=False)
        local = naive.dt.replace_time_zone(self.timezone, ambiguous="earliest", non_existent="null")
        return local.dt.convert_time_zone("UTC")

    def parse(self, raw: pl.Series) -> pl.DataFrame:
        text = as_text(raw).str.strip_chars_end("\r")
        parts = text.str.split(",")
        header = text.str.contains(_RX_HEADER).fill_null(False)
        summary = _summary_mask(text)
        flow = (text.str.contains(_RX_FLOW) & (parts.list.len() >= _MIN_COLUMNS)).fill_null(False)
        c = pl.col
        df = pl.DataFrame({"p": parts}).select(
            *(
                c("p").list.get(i, null_on_oob=True).str.strip_chars().alias(name)
                for i, name in enumerate(COLUMNS)
            ),
            c("p").list.get(_RA, null_on_oob=True).str.strip_chars().alias("ra"),
        )
        ipkt, ibyt = c("ipkt").cast(pl.Int64, strict=False), c("ibyt").cast(pl.Int64, strict=False)
        opkt, obyt = c("opkt").cast(pl.Int64, strict=False), c("obyt").cast(pl.Int64, strict=False)
        start = self._time(c("ts"))
        body = df.select(
            start.alias("@timestamp"),
            start.alias("event.start"),
            self._time(c("te")).alias("event.end"),
            seconds_ns(c("td")).alias("event.duration"),
            c("sa").alias("source.ip"),
            c("sp")
            .cast(pl.Float64, strict=False)
            .cast(pl.Int32, strict=False)
            .alias("source.port"),
            c("da").alias("destination.ip"),
            c("dp")
            .cast(pl.Float64, strict=False)
            .cast(pl.Int32, strict=False)
            .alias("destination.port"),
            # nfdump says ICMP6; ECS (IANA keyword) is ipv6-icmp, as the netflow source
            c("pr").str.to_lowercase().replace("icmp6", "ipv6-icmp").alias("network.transport"),
            ipkt.alias("source.packets"),
            ibyt.alias("source.bytes"),
            opkt.alias("destination.packets"),
            obyt.alias("destination.bytes"),
            total(ipkt, opkt).alias("network.packets"),
            total(ibyt, obyt).alias("network.bytes"),
            pl.lit("network").alias("event.category"),
            pl.lit("connection").alias("event.type"),
            labels_expr(
                {
                    "netflow.tcp_flags": c("flg"),
                    "netflow.input_interface": c("in"),
                    "netflow.output_interface": c("out"),
                    "netflow.exporter": c("ra"),
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
        meta = (header | summary) & ~ok
        return out.with_columns(
            # ECS has no "metadata" kind: the dataset says it is a header line
            pl.when(ok | meta).then(pl.lit("event")).alias("event.kind"),
            pl.when(meta).then(text).alias("message"),
            pl.when(header & ~ok)
            .then(pl.lit("nfdump.header"))
            .when(meta)
            .then(pl.lit("nfdump.summary"))
            .otherwise(pl.lit(self.dataset))
            .alias("event.dataset"),
            pl.lit(self.module).alias("event.module"),
            (ok | meta).alias(OK),
        )
