"""vsftpd's own log (``vsftpd_log_file``) and its syslog messages, vectorised.

vsftpd writes, with ``dual_log_enable`` or ``xferlog_std_format=NO`` (the default on
Debian/Ubuntu/RHEL), one line per session event, in local time::

    Fri Jan 19 12:20:33 2007 [pid 27202] [anonymous] FAIL LOGIN: Client "64.106.46.98"
    Thu Sep  8 00:39:49 2016 [pid 15019] [guest] FAIL LOGIN: Client "::ffff:192.0.2.1", "User is not in the allow user list."
    Sun Jan 21 10:00:00 2024 [pid 2] CONNECT: Client "::ffff:192.0.2.1"
    Sun Jan 21 10:00:05 2024 [pid 3] [bob] OK DOWNLOAD: Client "192.0.2.1", "/pub/f.iso", 12345 bytes, 1024.00Kbyte/sec

With ``syslog_enable=YES`` the same messages go to syslog (``vsftpd[27202]: [bob] OK
LOGIN: Client "192.0.2.1"``); the syslog parser hands them to `parse_vsftpd`.

``LOGIN`` gives ``ftp_login`` (authentication, success/failure; ``user.name`` is the name
the client gave), ``CONNECT`` ``ftp_connect``, transfers and file operations
``ftp_<op>`` (file category). The second quoted field goes to ``labels``: ``ftp.reason`` (why a login
failed) or ``ftp.path`` (the file of a transfer). Option: ``timezone`` (the log is in local time; default UTC).
"""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo

import polars as pl

from lightsoc.parsers._apps import IP_RE, app_parser, json_str, nullif_empty, split_host
from lightsoc.parsers.base import OK, Parser
from lightsoc.registry import register
from lightsoc.schema import polars_type

#: ctime timestamp and the "[pid N]" of vsftpd's log file
_HEAD = (
    r"^(?P<ts>[A-Z][a-z]{2} [A-Z][a-z]{2} [ 0-9]?[0-9] [0-9]{2}:[0-9]{2}:[0-9]{2} [0-9]{4}) "
    r"\[pid (?P<pid>[0-9]+)\] (?P<body>.*)$"
)
_DETECT = r"^[A-Z][a-z]{2} [A-Z][a-z]{2} [ 0-9]?[0-9] [0-9]{2}:[0-9]{2}:[0-9]{2} [0-9]{4} \[pid "
_BODY = (
    r"^(?:\[(?P<user>[^\]]*)\] )?(?:(?P<status>OK|FAIL) (?P<op>[A-Z]+)|(?P<connect>CONNECT)): "
    r'Client "(?P<host>[^"]*)"(?:, "(?P<detail>[^"]*)")?'
)
_FILE_TYPES = {
    "DOWNLOAD": "access",
    "UPLOAD": "creation",
    "MKDIR": "creation",
    "DELETE": "deletion",
    "RMDIR": "deletion",
    "RENAME": "change",
    "CHMOD": "change",
}
_TS = polars_type("@timestamp")


def _fields(body: pl.Series) -> pl.DataFrame:
    """ECS columns of vsftpd message bodies (null where the shape is unknown)."""
    g = body.str.extract_groups(_BODY).struct.unnest()
    g = g.with_columns(
        pl.col("host").str.contains(IP_RE).fill_null(False).alias("_is_ip"),
        pl.coalesce(pl.col("op"), pl.col("connect")).alias("_op"),
    )
    ip, domain = split_host(pl.col("host"), pl.col("_is_ip"))
    op = pl.col("_op")
    login, connect = op == "LOGIN", op == "CONNECT"
    known = op.is_not_null()
    outcome = (
        pl.when(pl.col("status") == "OK")
        .then(pl.lit("success"))
        .when(pl.col("status") == "FAIL")
        .then(pl.lit("failure"))
        .when(connect)
        .then(pl.lit("success"))
    )
    category = (
        pl.when(login)
        .then(pl.lit("authentication"))
        .when(connect)
        .then(pl.lit("network"))
        .when(known)
        .then(pl.lit("file"))
    )
    etype = (
        pl.when(login & (pl.col("status") == "OK"))
        .then(pl.lit("start"))
        .when(login)
        .then(pl.lit("info"))
        .when(connect)
        .then(pl.lit("start"))
        .when(known)
        .then(op.replace_strict(_FILE_TYPES, default="info", return_dtype=pl.String))
    )
    # a login's second quoted field is vsftpd's reason; a transfer's is the file path
    key = pl.when(login).then(pl.lit('{"ftp.reason":')).otherwise(pl.lit('{"ftp.path":'))
    detail = pl.when(known & pl.col("detail").is_not_null()).then(
        key + json_str(pl.col("detail")) + "}"
    )
    return g.select(
        category.alias("event.category"),
        etype.alias("event.type"),
        pl.when(known).then(pl.lit("ftp_") + op.str.to_lowercase()).alias("event.action"),
        outcome.alias("event.outcome"),
        nullif_empty(pl.col("user")).alias("user.name"),
        ip.alias("source.ip"),
        domain.alias("source.domain"),
        detail.alias("labels"),
        pl.when(known).then(pl.lit("ftp")).alias("service.name"),
    )


@app_parser("vsftpd")
def parse_vsftpd(frame: pl.DataFrame) -> pl.DataFrame:
    """vsftpd syslog messages (``syslog_enable=YES``) -> FTP session fields."""
    out = _fields(frame["message"].fill_null(""))
    known = out["event.action"].is_not_null()
    return out.with_columns(
        pl.when(known).then(pl.lit("vsftpd")).alias("event.dataset"),
        pl.when(known).then(pl.lit("vsftpd")).alias("event.module"),
    )


@register("parsers", "vsftpd")
class VsftpdParser(Parser):
    """vsftpd's own log file: ctime timestamp, ``[pid N]``, ``[user] OK|FAIL OP: Client``."""

    dataset = "vsftpd"
    module = "vsftpd"
    auto_priority = 65

    def __init__(self, options: dict[str, Any] | None = None) -> None:
        super().__init__(options)
        self.timezone: str = str(self.options.get("timezone") or "UTC")
        ZoneInfo(self.timezone)  # fail early on a bad zone name

    def matches(self, raw: pl.Series) -> pl.Series:
        return raw.cast(pl.String, strict=False).str.contains(_DETECT).fill_null(False)

    def parse(self, raw: pl.Series) -> pl.DataFrame:
        text = raw.cast(pl.String, strict=False)
        h = text.str.extract_groups(_HEAD).struct.unnest()
        # "Thu Sep  8": ctime pads the day with a space
        naive = (
            h["ts"]
            .str.replace(r"^(\S+ \S+) +", "$1 ")
            .str.strptime(pl.Datetime("us"), "%a %b %d %H:%M:%S %Y", strict=False)
        )
        ts = (
            naive.dt.replace_time_zone(self.timezone, ambiguous="earliest", non_existent="null")
            .dt.convert_time_zone("UTC")
            .cast(_TS)
        )
        fields = _fields(h["body"].fill_null(""))
        ok = ts.is_not_null()
        return pl.concat(
            [
                pl.DataFrame(
                    {
                        "@timestamp": ts,
                        "process.name": pl.Series([None] * len(text), dtype=pl.String),
                        "process.pid": h["pid"].cast(pl.Int64, strict=False),
                        "message": h["body"],
                    }
                ).with_columns(
                    pl.when(ok).then(pl.lit("vsftpd")).alias("process.name"),
                    pl.lit("event").alias("event.kind"),
                    pl.lit(self.dataset).alias("event.dataset"),
                    pl.lit(self.module).alias("event.module"),
                ),
                fields,
                pl.DataFrame({OK: ok}),
            ],
            how="horizontal",
        )
