"""OpenVPN server messages as ECS authentication / session events (a syslog app parser).

OpenVPN prefixes client messages with the peer, ``1.2.3.4:51234`` before
authentication and ``bob/1.2.3.4:51234`` (common name / address) after;
that gives ``source.ip``, ``source.port`` and ``user.name``. Claims the apps
``openvpn`` and ``ovpn-server`` (Debian's ``openvpn@server`` unit logs as
``ovpn-server``).
"""

from __future__ import annotations

import polars as pl

from lightsoc.parsers._apps import IP_RE, Rule, app_parser, apply_rules, event_fields, nullif_empty

_PEER = (
    r"^(?:(?P<cn>[^ /]+)/)?(?:\[AF_INET6?\])?(?P<ip>[0-9A-Fa-f.:]+?)(?::(?P<port>[0-9]+))? "
    r"(?P<rest>.*)$"
)


_c = event_fields


AUTH_FAIL = _c("openvpn_auth_failure", "authentication", "info", "failure")

RULES: tuple[Rule, ...] = (
    Rule(("TLS Auth Error",), r"^TLS Auth Error", AUTH_FAIL),
    Rule(
        ("PLUGIN_CALL: ",),
        r"^PLUGIN_CALL: (?:.* failed|POST .*status=[1-9])",
        AUTH_FAIL,
    ),
    Rule(("SENT CONTROL ",), r"^SENT CONTROL \[(?P<user>[^\]]*)\]: 'AUTH_FAILED", AUTH_FAIL),
    Rule(
        ("WARNING: Failed running command (--auth-user-pass-verify)",),
        r"^WARNING: Failed running command",
        AUTH_FAIL,
    ),
    Rule(
        ("",),
        r"(?:^|: )user '(?P<user>[^']*)' (?:AUTH FAILED|failed to authenticate)",
        AUTH_FAIL,
    ),
    Rule(("",), r"AUTH_FAILED", AUTH_FAIL),
    Rule(
        ("VERIFY ERROR: ",),
        r"^VERIFY ERROR: ",
        _c("openvpn_cert_verify_failure", "authentication", "info", "failure"),
    ),
    Rule(
        ("TLS Error: ",),
        r"^TLS Error: ",
        _c("openvpn_tls_error", "network", "info", "failure"),
    ),
    Rule(
        ("[",),
        r"^\[(?P<user>[^\]]*)\] Peer Connection Initiated with ",
        _c("openvpn_login", "authentication", "start", "success"),
    ),
    Rule(
        ("MULTI_sva: pool returned ",),
        r"^MULTI_sva: pool returned IPv4=(?P<vip>[0-9.]+)",
        _c("openvpn_session_start", "session", "start", "success"),
    ),
    Rule(
        ("SIGTERM[soft,", "SIGUSR1[soft,", "Connection reset, restarting"),
        r"^(?:SIG[A-Z0-9]+\[soft,[^\]]*\] received, client-instance (?:restarting|exiting)"
        r"|Connection reset, restarting)",
        _c("openvpn_session_end", "session", "end", "success"),
    ),
)


@app_parser("openvpn", "ovpn-server")
def parse_openvpn(frame: pl.DataFrame) -> pl.DataFrame:
    """OpenVPN server messages -> authentication/session fields."""
    g = frame.select(pl.col("message").str.extract_groups(_PEER).alias("g")).unnest("g")
    g = g.with_columns(pl.col("ip").str.contains(IP_RE).fill_null(False).alias("_is_ip"))
    peer = g["_is_ip"]
    text = pl.select(
        pl.when(pl.lit(peer)).then(pl.lit(g["rest"])).otherwise(pl.lit(frame["message"]))
    ).to_series()
    m = apply_rules(text.fill_null(""), RULES)
    m = m.with_columns(
        pl.Series("_cn", g["cn"]).alias("_cn"),
        pl.Series("_ip", g["ip"]),
        pl.Series("_port", g["port"]),
        peer.alias("_peer"),
    )
    ok = pl.col("event.action").is_not_null()
    on_peer = ok & pl.col("_peer")
    user = pl.coalesce(nullif_empty(pl.col("user")), pl.when(on_peer).then(pl.col("_cn")))
    vip = pl.when(pl.col("vip").is_not_null()).then('{"openvpn.pool_ip":"' + pl.col("vip") + '"}')
    return m.select(
        "event.category",
        "event.type",
        "event.action",
        "event.outcome",
        pl.when(ok).then(user.replace("UNDEF", None)).alias("user.name"),
        pl.when(on_peer).then(pl.col("_ip")).alias("source.ip"),
        pl.when(on_peer).then(pl.col("_port").cast(pl.Int32, strict=False)).alias("source.port"),
        vip.alias("labels"),
        pl.when(ok).then(pl.lit("openvpn")).alias("service.name"),
        pl.lit("openvpn").alias("event.dataset"),
        pl.lit("openvpn").alias("event.module"),
    )
