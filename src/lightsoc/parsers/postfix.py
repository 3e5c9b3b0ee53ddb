"""Postfix smtpd / postscreen messages as ECS events (a syslog app parser).

Postfix logs as ``postfix/smtpd``, ``postfix/submission/smtpd``,
``postfix-incoming/smtpd``, ``postfix/postscreen`` ...; the syslog app key
drops everything up to the last ``/``, so this parser claims ``smtpd`` and
``postscreen``. The client appears as ``name[ip]`` (name ``unknown`` when
reverse DNS failed: ``source.domain`` is then null) or, from postscreen,
``[ip]:port``. Extras go to ``labels``: ``smtp.status_code`` (``554``),
``smtp.status`` (enhanced code ``5.7.1``), ``smtp.command`` (``RCPT``,
``AUTH`` ...) and ``smtp.sasl_method``.
"""

from __future__ import annotations

import polars as pl

from lightsoc.parsers._apps import IP_RE, Rule, app_parser, apply_rules, event_fields, json_str

# client "name[ip]" or "name[ip]:port" (or postscreen's "[ip]:port")
_CLIENT = r"(?P<name>[^ \[\]]*)\[(?P<ip>[^\]]*)\](?::(?P<port>[0-9]+))?"
_QID = r"(?:[0-9A-Za-z]+: )?"


_c = event_fields


RULES: tuple[Rule, ...] = (
    Rule(
        ("warning: ",),
        rf"^warning: {_CLIENT}: SASL (?P<method>[^ ]+) authentication failed:"
        r"(?:.*?sasl_username=(?P<user>[^ ,]+))?",
        _c("smtp_auth_failure", "authentication", "info", "failure"),
    ),
    Rule(
        ("",),
        rf"^{_QID}client={_CLIENT}, sasl_method=(?P<method>[^ ,]+), "
        r"sasl_username=(?P<user>[^ ,]+)",
        _c("smtp_auth_success", "authentication", "start", "success"),
    ),
    Rule(
        ("",),
        rf"^(?:NOQUEUE|[0-9A-Za-z]+): (?:milter-)?reject: (?P<command>[A-Z]+) from {_CLIENT}: "
        r"(?P<code>[0-9]{3})(?: (?P<status>[0-9]\.[0-9]{1,3}\.[0-9]{1,3}))?",
        _c("smtp_reject", "network", "denied", "failure"),
    ),
    Rule(
        ("connect from ",),
        rf"^connect from {_CLIENT}",
        _c("smtp_connect", "network", "start", "success"),
    ),
    Rule(
        ("disconnect from ",),
        rf"^disconnect from {_CLIENT}",
        _c("smtp_disconnect", "network", "end", "success"),
    ),
    Rule(
        ("lost connection after AUTH ",),
        rf"^lost connection after (?P<command>AUTH) from {_CLIENT}",
        _c("smtp_auth_aborted", "authentication", "info", "failure"),
    ),
    Rule(
        ("lost connection after ",),
        rf"^lost connection after (?P<command>[A-Z-]+) from {_CLIENT}",
        _c("smtp_lost_connection", "network", "end", "unknown"),
    ),
    Rule(
        ("improper command pipelining after ",),
        rf"^improper command pipelining after (?P<command>[A-Z-]+) from {_CLIENT}",
        _c("smtp_improper_pipelining", "network", "denied", "failure"),
    ),
    Rule(
        ("too many errors after ",),
        rf"^too many errors after (?P<command>[A-Z-]+) from {_CLIENT}",
        _c("smtp_too_many_errors", "network", "denied", "failure"),
    ),
    # postscreen
    Rule(
        ("CONNECT from ",),
        rf"^CONNECT from {_CLIENT}",
        _c("smtp_connect", "network", "start", "success"),
    ),
    Rule(
        ("PREGREET ", "HANGUP ", "COMMAND ", "BARE NEWLINE ", "NON-SMTP COMMAND "),
        r"^(?P<command>PREGREET|HANGUP|COMMAND (?:TIME|COUNT|LENGTH) LIMIT|COMMAND PIPELINING"
        rf"|BARE NEWLINE|NON-SMTP COMMAND)\b.*? from {_CLIENT}",
        _c("smtp_postscreen_violation", "network", "denied", "failure"),
    ),
    Rule(
        ("DNSBL rank ",),
        rf"^DNSBL rank [0-9]+ for {_CLIENT}",
        _c("smtp_dnsbl_listed", "network", "info", "unknown"),
    ),
)

_LABELS = (
    ("smtp.status_code", "code"),
    ("smtp.status", "status"),
    ("smtp.command", "command"),
    ("smtp.sasl_method", "method"),
)


@app_parser("smtpd", "postscreen")
def parse_postfix(frame: pl.DataFrame) -> pl.DataFrame:
    """Postfix smtpd/postscreen messages -> authentication and network fields."""
    m = apply_rules(frame["message"], RULES)
    ip = pl.col("ip").str.replace(r"^[Ii][Pp][Vv]6:", "")
    name = pl.col("name")
    domain = pl.when((name.str.len_bytes() > 0) & (name != "unknown")).then(name)
    pairs = [
        pl.when(pl.col(col).is_not_null()).then(pl.lit(f'"{key}":') + json_str(pl.col(col)))
        for key, col in _LABELS
    ]
    joined = pl.concat_str(pairs, separator=",", ignore_nulls=True)
    labels = pl.when(joined.str.len_bytes() > 0).then("{" + joined + "}")
    recognised = pl.col("event.action").is_not_null()
    return m.select(
        "event.category",
        "event.type",
        "event.action",
        "event.outcome",
        pl.col("user").alias("user.name"),
        pl.when(ip.str.contains(IP_RE)).then(ip).alias("source.ip"),
        pl.col("port").cast(pl.Int32, strict=False).alias("source.port"),
        domain.alias("source.domain"),
        labels.alias("labels"),
        pl.when(recognised).then(pl.lit("smtp")).alias("service.name"),
        pl.lit("postfix").alias("event.dataset"),
        pl.lit("postfix").alias("event.module"),
    )
