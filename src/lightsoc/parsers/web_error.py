"""nginx and apache *error* logs, with HTTP authentication failures as ECS events.

nginx (`error_log`)::

    2012/04/09 11:53:29 [error] 2865#0: *66647 MESSAGE, client: IP, server: NAME,
        request: "GET / HTTP/1.1", host: "www.example.com", referrer: "..."

apache 2.2 and 2.4 (default `ErrorLogFormat`)::

    [Sat Jun 01 02:17:42 2013] [error] [client 192.168.33.1] MESSAGE
    [Sun Jun 09 07:57:47.123456 2013] [auth_basic:error] [pid 1234:tid 5678]
        [client 1.2.3.4:51234] AH01618: user foo not found: /x, referer: http://...

Both write local time without a zone: it is read in the `timezone` option
(default UTC). The level becomes `event.severity` (syslog numbering, emerg 0 to
debug 7, apache's trace1-8 are 7) and is kept as text in `labels`
(``{"log.level": ...}``, plus ``apache.module`` and ``apache.code`` (the
``AHnnnnn`` message id) for apache). The apache weekday is not checked.

Basic/digest authentication failures become `event.category: authentication`,
`event.outcome: failure` with `event.action` one of `http_auth_user_not_found`,
`http_auth_password_mismatch`, `http_auth_missing` (nginx: request without
credentials) and `http_auth_failure` (anything else), and `user.name` where the
log names one. nginx `limit_req` / `limit_conn` rejections are
`http_rate_limited` / `http_connection_limited` (`event.type: denied`). Other
lines are `event.category: web`, `event.type` `error` (level error or worse) or
`info`.

Attacker-controlled text: nginx writes the user name and the request context
unescaped, so its context (`, client: ...`) is taken from the *last*
`, client: ` of the line: a user name with a forged context (fail2ban's
injection test) does not spoof `source.ip`. A forged referrer, the last field,
still can: no regex can tell. Auth messages are matched from the start of the
message, so a path that contains `[client X] user root not found` is no login
failure. The client address goes to `source.ip` only if it is an IP address.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Any, ClassVar
from zoneinfo import ZoneInfo

import polars as pl

from lightsoc.parsers._apps import IP_RE, Rule, apply_rules, json_str, nullif_empty, split_host
from lightsoc.parsers.base import OK, Parser
from lightsoc.parsers.web_access import RX_REQUEST_LOOSE, as_text, split_url_exprs
from lightsoc.registry import register
from lightsoc.schema import polars_type

#: syslog severity numbers of the nginx and apache log levels
SEVERITY: dict[str, int] = {
    "emerg": 0,
    "alert": 1,
    "crit": 2,
    "error": 3,
    "warn": 4,
    "notice": 5,
    "info": 6,
    "debug": 7,
    **{f"trace{i}": 7 for i in range(1, 9)},
}

#: output columns of both error-log parsers, in order
COLUMNS = (
    "@timestamp",
    "event.severity",
    "labels",
    "process.pid",
    "message",
    "source.ip",
    "source.port",
    "user.name",
    "url.domain",
    "http.request.method",
    "url.original",
    "url.path",
    "url.query",
    "http.version",
    "http.request.referrer",
    "event.kind",
    "event.category",
    "event.type",
    "event.action",
    "event.outcome",
    "event.dataset",
    "event.module",
)

# --- nginx -------------------------------------------------------------------------------

_NGX_TS = r"[0-9]{4}/[0-9]{2}/[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}"
RX_NGINX = (
    rf"(?s)^(?P<ts>{_NGX_TS}) \[(?P<level>[a-z]+)\] (?P<pid>[0-9]+)#[0-9]+: "
    r"(?:\*[0-9]+ )?(?P<body>.*)$"
)
_DETECT_NGINX = rf"^{_NGX_TS} \[[a-z]+\] [0-9]+#[0-9]+: "
# Greedy message: the context is the last ", client: " (see the module docstring).
_RX_NGX_BODY = (
    r"(?s)^(?P<msg>.*), client: (?P<client>[^ ,]*)(?:, server: (?P<server>[^ ,]*))?(?P<ctx>.*)$"
)
# The context nginx appends after the server, in its order; unknown trailing keys
# (mail `login:`, a line cut at nginx's 2 KiB limit) are skipped by the last group.
_RX_NGX_CTX = (
    r'(?s)^(?:, request: "(?P<req>.*?)")?(?:, subrequest: ".*?")?(?:, upstream: ".*?")?'
    r'(?:, host: "(?P<host>.*?)")?(?:, referrer: "(?P<ref>.*?)")?(?:, [a-z_]+: .*)?$'
)


def _c(action: str, category: str = "authentication", etype: str = "info") -> dict[str, str]:
    return {
        "event.action": action,
        "event.category": category,
        "event.type": etype,
        "event.outcome": "failure",
    }


NOT_FOUND = _c("http_auth_user_not_found")
MISMATCH = _c("http_auth_password_mismatch")
AUTH_FAIL = _c("http_auth_failure")

NGINX_RULES: tuple[Rule, ...] = (
    # `":?`: fail2ban's injection sample has `"": was not found` after a forged name.
    Rule(('user "',), r'^user "(?P<user>.*)":? was not found in "[^"]*"$', NOT_FOUND),
    Rule(('user "',), r'^user "(?P<user>.*)": password mismatch$', MISMATCH),
    Rule(
        ("no user/password was provided for basic authentication",),
        r"^no user/password was provided for basic authentication$",
        _c("http_auth_missing"),
    ),
    Rule(
        ("limiting requests, excess: ",),
        r'^limiting requests, excess: [0-9.]+ by zone "[^"]*"',
        _c("http_rate_limited", "web", "denied"),
    ),
    Rule(
        ("limiting connections by zone ",),
        r'^limiting connections by zone "[^"]*"',
        _c("http_connection_limited", "web", "denied"),
    ),
)

# --- apache ------------------------------------------------------------------------------

_AP_TS = (
    r"(?:[A-Za-z]{3} )?(?P<mon>[A-Za-z]{3}) +(?P<day>[0-9]{1,2}) "
    r"(?P<time>[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]+)?) (?P<year>[0-9]{4})"
)
RX_APACHE = (
    rf"(?s)^\[{_AP_TS}\] \[(?:(?P<module>[^:\] ]*):)?(?P<level>[a-z]+[0-9]?)\] "
    r"(?:\[pid (?P<pid>[0-9]+)(?::tid [0-9]+)?\] )?"
    r"(?P<err>\(-?[0-9]+\)[^:\[]*: )?"  # 2.4 `%E: `, e.g. "(13)Permission denied: "
    r"(?:\[client (?P<client>[^\]\[]*|\[[^\]]*\](?::[0-9]+)?)\] )?"
    r"(?P<rest>.*)$"
)
_DETECT_APACHE = (
    r"^\[(?:[A-Za-z]{3} )?[A-Za-z]{3} +[0-9]{1,2} [0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]+)? "
    r"[0-9]{4}\] \[[^\] ]*\] "
)
# `[v6]:port`, `v4:port`, `v4`, or an unbracketed IPv6 address (no port: ambiguous)
_RX_AP_CLIENT = (
    r"^(?:\[(?P<ip6>[^\]]*)\](?::(?P<p6>[0-9]+))?|(?P<ip4>[^:]*)(?::(?P<p4>[0-9]+))?|(?P<ipx>.*))$"
)
_RX_AP_REFERER = r"(?s)^(?P<msg>.*?)(?:, referer: (?P<ref>.*))?$"
_RX_AP_CODE = r"(?s)^(?:(?P<code>AH[0-9]{5}): )?(?P<text>.*)$"
_DIG = "(?:Digest: )?"

APACHE_RULES: tuple[Rule, ...] = (
    Rule(
        ("user ", "Digest: user "),
        rf'^{_DIG}user (?P<user>.*?): authentication failure for "(?P<path>.*)": (?P<reason>.*)$',
        AUTH_FAIL,  # "Password Mismatch" is turned into MISMATCH afterwards
    ),
    Rule(
        ("user ", "Digest: user "),
        rf"^{_DIG}user (?P<user>.*?): password mismatch: (?P<path>.*)$",
        MISMATCH,
    ),
    Rule(
        ("user `", "Digest: user `"),
        rf"^{_DIG}user `(?P<user>.*)' in realm `.*' not found: (?P<path>.*)$",
        NOT_FOUND,
    ),
    Rule(("user ",), r"^user (?P<user>.*?) not found(?:: (?P<path>.*))?$", NOT_FOUND),
    Rule(
        ("client used wrong authentication scheme: ",),
        r"^client used wrong authentication scheme: (?P<path>.*)$",
        AUTH_FAIL,
    ),
    Rule(
        ("auth_ldap authenticate: user ",),
        r"^auth_ldap authenticate: user (?P<user>.*?) authentication failed; URI (?P<path>[^ ]*)",
        AUTH_FAIL,
    ),
    # Digest protocol failures; a nonce whose hash does not match is left out (as
    # fail2ban does): it is what a restarted server's old nonces look like.
    Rule(
        ("Digest: ", "unknown algorithm `", "invalid qop `"),
        rf"^{_DIG}(?:unknown algorithm|invalid qop) `.*' received: (?P<path>.*)$",
        AUTH_FAIL,
    ),
    Rule(
        ("Digest: ", "invalid nonce ", "realm mismatch - "),
        rf"^{_DIG}(?:invalid nonce .* received - (?:length is not|user attempted time travel)"
        r"|realm mismatch - )",
        AUTH_FAIL,
    ),
)

# --- shared ------------------------------------------------------------------------------


def local_to_utc(naive: pl.Expr, timezone: str) -> pl.Expr:
    """Zone-less datetimes read as wall-clock time in `timezone`, converted to UTC."""
    if timezone == "UTC":
        return naive.dt.replace_time_zone("UTC")
    local = naive.dt.replace_time_zone(timezone, ambiguous="earliest", non_existent="null")
    return local.dt.convert_time_zone("UTC")


def _label(key: str, value: pl.Expr) -> pl.Expr:
    """One `"key":value` JSON member, null when the value is null."""
    return pl.when(value.is_not_null()).then(pl.lit(f'"{key}":') + json_str(value))


def _labels(*members: pl.Expr) -> pl.Expr:
    return pl.concat_str(
        pl.lit("{"), pl.concat_str(*members, separator=",", ignore_nulls=True), pl.lit("}")
    )


def _client(addr: pl.Expr) -> tuple[pl.Expr, pl.Expr]:
    """(`source.ip`, `is_ip`) for a client address column (IPs only, `::ffff:` unwrapped)."""
    is_ip = addr.str.contains(IP_RE).fill_null(False)
    ip, _ = split_host(addr, is_ip)
    return ip, is_ip


class ErrorLogParser(Parser):
    """Shared parts: `timezone` option, detection regex, rules, output columns."""

    #: cheap line-head regex for `matches`
    detect: ClassVar[str]
    #: message shapes that set event category/type/action/outcome and `user`/`path`
    rules: ClassVar[tuple[Rule, ...]]

    def __init__(self, options: dict[str, Any] | None = None) -> None:
        super().__init__(options)
        self.timezone: str = str(self.options.get("timezone") or "UTC")
        ZoneInfo(self.timezone)  # fail early on a bad zone name

    def matches(self, raw: pl.Series) -> pl.Series:
        return as_text(raw).str.contains(self.detect).fill_null(False)

    def parse(self, raw: pl.Series) -> pl.DataFrame:
        df = self._extract(as_text(raw))
        auth = apply_rules(df["_text"], self.rules)
        df = pl.concat([df, auth.select(pl.all().name.prefix("_r_"))], how="horizontal")
        severity = pl.col("_level").replace_strict(SEVERITY, default=None, return_dtype=pl.Int32)
        fallback_type = pl.when(severity <= 3).then(pl.lit("error")).otherwise(pl.lit("info"))
        cols: dict[str, pl.Expr] = {
            **{c: pl.col(c) for c in COLUMNS if c in df.columns},
            "event.severity": severity,
            "user.name": nullif_empty(pl.col("_r_user")),
            "event.kind": pl.lit("event"),
            "event.category": pl.coalesce(pl.col("_r_event.category"), pl.lit("web")),
            "event.type": pl.coalesce(pl.col("_r_event.type"), fallback_type),
            "event.action": self.action(),
            "event.outcome": pl.col("_r_event.outcome"),
            "event.dataset": pl.lit(self.dataset),
            "event.module": pl.lit(self.module),
        }
        if "_r_path" in df.columns:  # apache names the path in auth messages
            cols["url.path"] = pl.col("_r_path")
        if not df[OK].all():  # failed rows carry no half-parsed fields
            keep = {"event.dataset", "event.module"}
            cols = {k: v if k in keep else pl.when(pl.col(OK)).then(v) for k, v in cols.items()}
        null = pl.lit(None)
        return df.select(
            *(
                cols.get(name, null).cast(polars_type(name), strict=False).alias(name)
                for name in COLUMNS
            ),
            pl.col(OK),
        )

    def action(self) -> pl.Expr:
        """`event.action` from the matched rule's columns (prefixed `_r_`)."""
        return pl.col("_r_event.action")

    @abstractmethod
    def _extract(self, text: pl.Series) -> pl.DataFrame:
        """Columns named as in `COLUMNS`, plus `_level`, `_text` (rule input) and `_ok`."""


def _request_columns(req: pl.Expr) -> list[pl.Expr]:
    """Method, target, path, query and version from a request line (lenient)."""
    parts = req.str.extract_groups(RX_REQUEST_LOOSE)
    target = parts.struct.field("target")
    return [
        parts.struct.field("method").alias("http.request.method"),
        target.alias("url.original"),
        *split_url_exprs(target),
        parts.struct.field("version").alias("http.version"),
    ]


@register("parsers", "nginx_error")
class NginxErrorParser(ErrorLogParser):
    """nginx `error_log` lines; basic-auth failures and rate limiting become events."""

    dataset = "nginx.error"
    module = "nginx"
    auto_priority = 50
    detect = _DETECT_NGINX
    rules = NGINX_RULES

    def _extract(self, text: pl.Series) -> pl.DataFrame:
        lf = text.rename("raw").to_frame().lazy()
        lf = lf.select(pl.col("raw").str.extract_groups(RX_NGINX).alias("m")).unnest("m")
        lf = lf.with_columns(pl.col("body").str.extract_groups(_RX_NGX_BODY).alias("b")).unnest("b")
        lf = lf.with_columns(pl.col("ctx").str.extract_groups(_RX_NGX_CTX).alias("c")).unnest("c")
        ip, _ = _client(pl.col("client"))
        host = pl.col("host").str.replace(r":[0-9]+$", "").str.to_lowercase()
        server = pl.col("server")
        server_ok = (server != "") & (server != "_") & ~server.str.contains(":", literal=True)
        ts = pl.col("ts").str.strptime(pl.Datetime("us"), "%Y/%m/%d %H:%M:%S", strict=False)
        message = pl.coalesce(pl.col("msg"), pl.col("body"))
        lf = lf.with_columns(
            local_to_utc(ts, self.timezone).alias("@timestamp"),
            pl.col("level").alias("_level"),
            _labels(_label("log.level", pl.col("level"))).alias("labels"),
            pl.col("pid").alias("process.pid"),
            message.alias("message"),
            message.alias("_text"),
            ip.alias("source.ip"),
            pl.coalesce(nullif_empty(host), pl.when(server_ok).then(server)).alias("url.domain"),
            *_request_columns(pl.col("req")),
            pl.col("ref").alias("http.request.referrer"),
        )
        ok = pl.col("ts").is_not_null() & pl.col("@timestamp").is_not_null()
        return lf.with_columns(ok.alias(OK)).collect()


@register("parsers", "apache_error")
class ApacheErrorParser(ErrorLogParser):
    """apache 2.2 / 2.4 `ErrorLog` lines; basic/digest auth failures become events."""

    dataset = "apache.error"
    module = "apache"
    auto_priority = 51
    detect = _DETECT_APACHE
    rules = APACHE_RULES

    def action(self) -> pl.Expr:
        mismatch = pl.col("_r_reason") == "Password Mismatch"
        return (
            pl.when(mismatch.fill_null(False))
            .then(pl.lit(MISMATCH["event.action"]))
            .otherwise(pl.col("_r_event.action"))
        )

    def _extract(self, text: pl.Series) -> pl.DataFrame:
        lf = text.rename("raw").to_frame().lazy()
        lf = lf.select(pl.col("raw").str.extract_groups(RX_APACHE).alias("m")).unnest("m")
        lf = lf.with_columns(
            pl.col("client").str.extract_groups(_RX_AP_CLIENT).alias("cl"),
            pl.col("rest").str.extract_groups(_RX_AP_REFERER).alias("rf"),
        ).unnest("cl", "rf")
        lf = lf.with_columns(pl.col("msg").str.extract_groups(_RX_AP_CODE).alias("cd")).unnest("cd")
        lf = lf.with_columns(pl.coalesce("ip6", "ip4", "ipx").alias("_addr"))
        ip, is_ip = _client(pl.col("_addr"))
        stamp = pl.concat_str("year", "mon", "day", "time", separator=" ")
        ts = stamp.str.strptime(pl.Datetime("us"), "%Y %b %d %H:%M:%S%.f", strict=False)
        module = nullif_empty(pl.col("module"))
        lf = lf.with_columns(
            local_to_utc(ts, self.timezone).alias("@timestamp"),
            pl.col("level").alias("_level"),
            _labels(
                _label("log.level", pl.col("level")),
                _label("apache.module", module),
                _label("apache.code", pl.col("code")),
            ).alias("labels"),
            pl.col("pid").alias("process.pid"),
            pl.concat_str("err", "msg", ignore_nulls=True).alias("message"),
            pl.col("text").alias("_text"),
            ip.alias("source.ip"),
            pl.when(is_ip).then(pl.coalesce("p6", "p4")).alias("source.port"),
            nullif_empty(pl.col("ref")).alias("http.request.referrer"),
        )
        ok = pl.col("year").is_not_null() & pl.col("@timestamp").is_not_null()
        return lf.with_columns(ok.alias(OK)).collect()
