"""NCSA access logs (nginx and apache `common`, `combined`, vhost combined).

One compiled regex per format runs over the whole batch with
`str.extract_groups`; the request line (`"%r"`) is split by a second,
one-pass regex, and only the rare requests it rejects (spaces in the
target, HTTP/0.9, no version) go through a lenient regex on that subset.

Field conventions:

- `url.original`, `url.path` and `url.query` keep the request target **raw,
  as sent** (percent-encoding is not decoded); `url.path` is the text before
  the first `?`, `url.query` the text after it (null when there is no `?`).
- The log-format escapes `\\"` and `\\\\` (apache) are undone in the request,
  referrer and user agent; `\\xHH` escapes (nginx, apache for control bytes)
  are kept as text, so a TLS handshake sent to a plain-HTTP port reads
  `\\x16\\x03\\x01...`.
- `-` for authuser, referrer, user agent and body bytes becomes null.
- A request line that is not `METHOD TARGET [HTTP/x.y]` (`"-"`, binary
  garbage from scanners) is still a valid record: `_ok` is true and the
  method/url fields are null. `_ok` is false only when the line as a whole
  does not match the format or its timestamp is invalid.
- Combined formats ignore trailing extra fields after the user agent (nginx's
  `main` format appends `"$http_x_forwarded_for"`); common formats do not
  allow any.
- The vhost variants take `%v:%p` (apache `vhost_combined`) or nginx `$host`
  before the client address: the host goes to `url.domain`, the port (if
  any) to `destination.port`.
"""

from __future__ import annotations

from typing import ClassVar

import polars as pl

from lightsoc.parsers.base import OK, Parser
from lightsoc.registry import register
from lightsoc.schema import polars_type

#: an HTTP method token (RFC 9110 tchar)
TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_Q = r'(?:[^"\\]|\\.)*'  # body of a quoted field, backslash escapes allowed
_TS = r"[0-9]{2}/[A-Za-z]{3}/[0-9]{4}:[0-9]{2}:[0-9]{2}:[0-9]{2} [+-][0-9]{4}"
#: `%d/%b/%Y:%H:%M:%S %z`, nginx `$time_local` and apache `%t`
TIME_LOCAL_FORMAT = "%d/%b/%Y:%H:%M:%S %z"

_CORE = (
    rf'(?P<ip>[^ ]+) [^ ]+ (?P<user>[^ ]+) \[(?P<ts>{_TS})\] "(?P<req>{_Q})" '
    r"(?P<status>[0-9]{3}) (?P<bytes>[0-9]+|-)"
)
_AGENT = rf' "(?P<ref>{_Q})" "(?P<ua>{_Q})"'
RX_COMMON = rf"^{_CORE}[ \t\r]*$"
RX_COMBINED = rf"^{_CORE}{_AGENT}"
RX_VHOST_COMBINED = rf"^(?P<vhost>[^ ]+) {_CORE}{_AGENT}"
# Cheap detection: the line head, and a tail that ends right after the byte count.
_DETECT_HEAD = rf'^[^ ]+ [^ ]+ [^ ]+ \[{_TS}\] "'
_DETECT_VHOST_HEAD = rf'^[^ ]+ [^ ]+ [^ ]+ [^ ]+ \[{_TS}\] "'
_DETECT_COMMON_TAIL = r'" [0-9]{3} (?:[0-9]+|-)[ \t\r]*$'

# Strict request line: one-pass, fast; path and query come out directly.
_RX_REQUEST = (
    rf"^(?P<method>{TOKEN}) (?P<target>(?P<path>[^ ?]*)(?:\?(?P<query>[^ ]*))?) "
    r"HTTP/(?P<version>[0-9]+(?:\.[0-9]+)?)$"
)
#: lenient request line, for the rows the strict one rejects (and nginx `$request` in JSON)
RX_REQUEST_LOOSE = (
    rf"(?s)^(?P<method>{TOKEN}) (?P<target>.+?)(?: HTTP/(?P<version>[0-9]+(?:\.[0-9]+)?))?$"
)
_RX_VHOST = r"^(?P<domain>\[[^\]]*\]|[^:]*)(?::(?P<port>[0-9]+))?$"
_RX_UNESCAPE = r'\\(["\\])'

#: output columns of every web access parser, in order
COLUMNS = (
    "@timestamp",
    "source.ip",
    "user.name",
    "http.request.method",
    "url.original",
    "url.path",
    "url.query",
    "http.version",
    "http.response.status_code",
    "http.response.body.bytes",
    "http.request.referrer",
    "user_agent.original",
    "url.domain",
    "destination.port",
    "event.kind",
    "event.category",
    "event.type",
    "event.outcome",
    "event.dataset",
    "event.module",
)


def as_text(raw: pl.Series) -> pl.Series:
    """Raw records as a String series (Binary as UTF-8, invalid bytes replaced)."""
    if raw.dtype == pl.String:
        return raw
    try:
        return raw.cast(pl.String, strict=False)
    except pl.exceptions.PolarsError:  # invalid UTF-8 somewhere (rare): decode one by one
        values = [None if b is None else bytes(b).decode("utf-8", "replace") for b in raw]
        return pl.Series(raw.name, values, dtype=pl.String)


def split_url_exprs(target: pl.Expr) -> list[pl.Expr]:
    """`url.path` and `url.query` from a raw request target (no decoding).

    Path is the text before the first `?`, query the text after it (null
    without a `?`, empty for a trailing `?`).
    """
    parts = target.str.splitn("?", 2)
    return [
        parts.struct.field("field_0").alias("url.path"),
        parts.struct.field("field_1").alias("url.query"),
    ]


def dash_null(expr: pl.Expr) -> pl.Expr:
    """Null for the NCSA placeholder `-` (and the empty string)."""
    return pl.when((expr != "-") & (expr != "")).then(expr)


def unescape(expr: pl.Expr) -> pl.Expr:
    """Undo apache's `\\"` and `\\\\` escapes (leaves `\\xHH` as text)."""
    return expr.str.replace_all(_RX_UNESCAPE, "${1}")


def outcome_expr(status: pl.Expr) -> pl.Expr:
    """ECS `event.outcome` from an HTTP status code."""
    return pl.when(status < 400).then(pl.lit("success")).when(status >= 400).then(pl.lit("failure"))


def parse_request(lf: pl.LazyFrame, req: str) -> pl.LazyFrame:
    """Add method/target/path/query/version columns from the request line column `req`."""
    parts = pl.col(req).str.extract_groups(_RX_REQUEST)
    return lf.with_columns(
        parts.struct.field(name).alias(f"_{name}")
        for name in ("method", "target", "path", "query", "version")
    )


def fix_loose_requests(df: pl.DataFrame, req: str) -> pl.DataFrame:
    """Re-parse, on the few rows the strict request regex rejected, with the lenient one."""
    mask = df["_method"].is_null() & df[req].is_not_null() & (df[req] != "") & (df[req] != "-")
    idx = mask.arg_true()
    if idx.len() == 0:
        return df
    sub = df[req].gather(idx).to_frame("r")
    got = sub.select(pl.col("r").str.extract_groups(RX_REQUEST_LOOSE).alias("g")).unnest("g")
    got = got.with_columns(split_url_exprs(pl.col("target"))).rename(
        {"url.path": "path", "url.query": "query"}
    )
    cols = {}
    for name in ("method", "target", "path", "query", "version"):
        cols[f"_{name}"] = df[f"_{name}"].scatter(idx, got[name])
    return df.with_columns(**cols)


def split_combined(text: pl.Series) -> tuple[pl.DataFrame, pl.Series]:
    """Combined-format fields by splitting on quotes and spaces, about twice as
    fast as the format regex, and the rows where that is exactly right.

    Only lines without a backslash (no escapes) and of exactly the regex's
    shape qualify; every other row must go through `RX_COMBINED`.
    """
    names = ["ip", "user", "ts", "req", "status", "bytes", "ref", "ua"]
    q = text.str.splitn('"', 7).struct.rename_fields([f"q{i}" for i in range(7)]).struct.unnest()
    head = (
        q["q0"]
        .str.splitn(" ", 6)
        .struct.rename_fields(["ip", "ident", "user", "t1", "t2", "rest"])
        .struct.unnest()
    )
    mid = q["q2"].str.splitn(" ", 4).struct.rename_fields(["a", "status", "bytes", "b"])
    mid = mid.struct.unnest()
    df = pl.DataFrame(
        [
            head["ip"],
            head["user"],
            (head["t1"].str.slice(1) + " " + head["t2"].str.slice(0, 5)).alias("ts"),
            q["q1"].alias("req"),
            mid["status"],
            mid["bytes"],
            q["q3"].alias("ref"),
            q["q5"].alias("ua"),
        ]
    )
    ok = (
        ~text.str.contains("\\", literal=True)
        & (head["rest"] == "")
        & (head["ip"] != "")
        & (head["ident"] != "")
        & (head["user"] != "")
        & (head["t1"].str.len_bytes() == 21)
        & head["t1"].str.starts_with("[")
        & (head["t2"].str.len_bytes() == 6)
        & head["t2"].str.ends_with("]")
        & (mid["a"] == "")
        & (mid["b"] == "")
        & mid["status"].str.contains(r"^[0-9]{3}$")
        & mid["bytes"].str.contains(r"^(?:[0-9]+|-)$")
        & (q["q4"] == " ")
        & q["q6"].is_not_null()
    ).fill_null(False)
    return df.select(names), ok


class NcsaParser(Parser):
    """Shared implementation of the NCSA access-log parsers."""

    regex: ClassVar[str] = RX_COMBINED
    has_agent: ClassVar[bool] = True
    has_vhost: ClassVar[bool] = False
    dataset = "nginx.access"
    module = "nginx"

    def matches(self, raw: pl.Series) -> pl.Series:
        """Line head (client, ident, user, time) and whether it ends after the byte count.

        Two short regex scans instead of the full format; a line that looks
        right but is truncated is matched here and fails in `parse`.
        """
        text = as_text(raw)
        head = text.str.contains(_DETECT_VHOST_HEAD if self.has_vhost else _DETECT_HEAD)
        common = text.str.contains(_DETECT_COMMON_TAIL)
        return (head & (common if not self.has_agent else ~common)).fill_null(False)

    def _fields(self, text: pl.Series) -> pl.DataFrame:
        """The format's raw fields (ip, user, ts, req, status, bytes[, ref, ua][, vhost])."""
        if not self.has_agent or self.has_vhost:
            return (
                text.to_frame("raw")
                .select(pl.col("raw").str.extract_groups(self.regex).alias("m"))
                .unnest("m")
            )
        fast, ok = split_combined(text)
        slow = (~ok).arg_true()
        if slow.len() == 0:
            return fast
        got = (
            text.gather(slow)
            .to_frame("raw")
            .select(pl.col("raw").str.extract_groups(self.regex).alias("m"))
            .unnest("m")
        )
        return fast.with_columns(fast[c].scatter(slow, got[c]) for c in fast.columns)

    def _extract(self, text: pl.Series) -> pl.DataFrame:
        """The raw fields, then the typed columns (a lazy plan polars runs in parallel)."""
        lf = self._fields(text).lazy()
        if text.str.contains("\\", literal=True).any():
            quoted = ["req", "ref", "ua"] if self.has_agent else ["req"]
            lf = lf.with_columns(unescape(pl.col(c)) for c in quoted)
        lf = parse_request(lf, "req")
        out = [
            pl.col("ts")
            .str.strptime(pl.Datetime("us", "UTC"), TIME_LOCAL_FORMAT, strict=False)
            .alias("@timestamp"),
            pl.col("status").cast(pl.Int32, strict=False).alias("http.response.status_code"),
            pl.col("bytes").cast(pl.Int64, strict=False).alias("http.response.body.bytes"),
        ]
        if self.has_vhost:
            host = pl.col("vhost").str.extract_groups(_RX_VHOST)
            out.append(host.struct.field("domain").alias("url.domain"))
            out.append(host.struct.field("port").alias("_port"))
        return fix_loose_requests(lf.with_columns(out).collect(), "req")

    def parse(self, raw: pl.Series) -> pl.DataFrame:
        df = self._extract(as_text(raw))
        ok = pl.col("ip").is_not_null() & pl.col("@timestamp").is_not_null()
        status = pl.col("http.response.status_code")
        null = pl.lit(None, dtype=pl.String)

        cols: dict[str, pl.Expr] = {
            "@timestamp": pl.col("@timestamp"),
            "source.ip": pl.col("ip"),
            "user.name": dash_null(pl.col("user")),
            "http.request.method": pl.col("_method"),
            "url.original": pl.col("_target"),
            "url.path": pl.col("_path"),
            "url.query": pl.col("_query"),
            "http.version": pl.col("_version"),
            "http.response.status_code": status,
            "http.response.body.bytes": pl.col("http.response.body.bytes"),
            "http.request.referrer": dash_null(pl.col("ref")) if self.has_agent else null,
            "user_agent.original": dash_null(pl.col("ua")) if self.has_agent else null,
            "url.domain": pl.col("url.domain") if self.has_vhost else null,
            "destination.port": pl.col("_port") if self.has_vhost else null,
            "event.kind": pl.lit("event"),
            "event.category": pl.lit("web"),
            "event.type": pl.lit("access"),
            "event.outcome": outcome_expr(status),
            "event.dataset": pl.lit(self.dataset),
            "event.module": pl.lit(self.module),
        }
        df = df.with_columns(ok.alias(OK))
        if not df[OK].all():  # failed rows carry no half-parsed fields
            keep = {"event.dataset", "event.module"}
            cols = {k: v if k in keep else pl.when(pl.col(OK)).then(v) for k, v in cols.items()}
        return df.select(
            *(cols[name].cast(polars_type(name), strict=False).alias(name) for name in COLUMNS),
            pl.col(OK),
        )


@register("parsers", "apache_vhost_combined")
class ApacheVhostCombinedParser(NcsaParser):
    """Apache `vhost_combined` (`%v:%p %h %l %u %t "%r" %>s %O "%{Referer}i" "%{User-Agent}i"`)."""

    regex = RX_VHOST_COMBINED
    has_vhost = True
    dataset = "apache.access"
    module = "apache"
    auto_priority = 10


@register("parsers", "nginx_vhost_combined")
class NginxVhostCombinedParser(NcsaParser):
    """nginx combined with `$host` (optionally `$host:$server_port`) in front."""

    regex = RX_VHOST_COMBINED
    has_vhost = True
    auto_priority = 11


@register("parsers", "nginx_combined")
class NginxCombinedParser(NcsaParser):
    """nginx `combined` (and `main`, whose extra trailing field is ignored)."""

    auto_priority = 20


@register("parsers", "apache_combined")
class ApacheCombinedParser(NcsaParser):
    """Apache `combined`; same format as nginx, reported as `apache.access`."""

    dataset = "apache.access"
    module = "apache"
    auto_priority = 21


@register("parsers", "nginx_common")
class NginxCommonParser(NcsaParser):
    """NCSA common log format as written by nginx (no referrer, no user agent)."""

    regex = RX_COMMON
    has_agent = False
    auto_priority = 30


@register("parsers", "apache_common")
class ApacheCommonParser(NcsaParser):
    """Apache `common` (`%h %l %u %t "%r" %>s %b`)."""

    regex = RX_COMMON
    has_agent = False
    dataset = "apache.access"
    module = "apache"
    auto_priority = 31
