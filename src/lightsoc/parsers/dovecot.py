"""Dovecot login and auth messages as ECS authentication events (a syslog app parser).

Dovecot logs under the app ``dovecot`` with the process in the message
(``dovecot: imap-login: Login: ...``, ``dovecot: auth-worker(304): pam(...)``)
or, with ``log_path`` to syslog per process, under the process name itself
(``imap-login``, ``pop3-login``, ``auth``, ``auth-worker(N)``). Login
processes give ``{proto}_login`` (``imap_login``, ``pop3_login``,
``submission_login``, ``managesieve_login``) with ``service.name`` the
protocol; auth-process failures (PAM, SQL, LDAP, passwd-file) give
``imap_auth_failure``. Extras go to ``labels``: ``dovecot.method`` (SASL
mechanism), ``dovecot.reason`` (the parenthesised disconnect reason) and
``dovecot.local_ip`` (``lip=``).
"""

from __future__ import annotations

import polars as pl

from lightsoc.parsers._apps import IP_RE, Rule, app_parser, apply_rules, json_str, nullif_empty

# "[dovecot: ]proc[(id)]: [Info: ]" in front of the message proper
_PROC = (
    r"^(?:dovecot: )?(?:(?P<proc>[a-z0-9]+-login|auth-worker|auth|dovecot-auth|lmtp|lda|imap|pop3"
    r"|master|config|anvil|doveadm)(?:\([^)]*\))?: )?"
    r"(?:(?:Info|Warning|Error|Fatal|Panic|Debug): )?"
)
_KV_USER = r"user=<([^>]*)>"
_KV_METHOD = r"method=([^, ]+)"
_KV_RIP = r"rip=([^, ]+)"
_KV_LIP = r"lip=([^, ]+)"
_DRIVERS = r"(?:pam|sql|ldap|passwd-file|passwd|shadow|checkpassword|bsdauth|static|vpopmail)"


def _c(action: str, outcome: str, etype: str) -> dict[str, str]:
    return {"event.action": action, "event.outcome": outcome, "event.type": etype}


RULES: tuple[Rule, ...] = (
    Rule(("Login: ",), r"^Login: ", _c("login", "success", "start")),
    Rule(
        ("",),
        r"\((?P<reason>(?:proxy dest )?auth failed(?:, [0-9]+ attempts?(?: in [0-9]+ secs?)?)?"
        r"|tried to use (?:disabled|disallowed) [a-z]+ auth)\): ",
        _c("login", "failure", "info"),
    ),
    Rule(
        ("",),
        r"\((?P<reason>no auth attempts[^)]*|disconnected before auth was ready[^)]*"
        r"|client didn't finish SASL auth[^)]*)\): ",
        _c("no_auth", "unknown", "end"),
    ),
    Rule(
        ("pam_unix(dovecot:auth): authentication failure;", "authentication failure;"),
        r" rhost=(?P<host>[^ ]*)(?: +user=(?P<user>[^ ]*))? *$",
        _c("auth_failure", "failure", "info"),
    ),
    Rule(
        ("",),
        rf"(?:^|: ){_DRIVERS}\((?P<user>[^,)]*),(?P<host>[^,)]*)(?:,[^)]*)?\): "
        r"(?P<reason>pam_authenticate\(\) failed: [^:(]*[^:( ]|unknown user|[Pp]assword mismatch"
        r"|invalid credentials|Invalid password)",
        _c("auth_failure", "failure", "info"),
    ),
)


@app_parser("dovecot", "dovecot-auth", "imap-login", "pop3-login", "auth", "auth-worker")
def parse_dovecot(frame: pl.DataFrame) -> pl.DataFrame:
    """Dovecot login-process and auth-process messages -> authentication fields."""
    head = frame.select(
        pl.col("message").str.extract_groups(f"{_PROC}(?P<body>.*)$").alias("_g"),
        pl.col("_app"),
    ).unnest("_g")
    m = apply_rules(head["body"].fill_null(""), RULES)
    body = head["body"]
    proc = pl.coalesce(
        pl.when(head["proc"].str.ends_with("-login")).then(head["proc"]),
        pl.when(head["_app"].str.ends_with("-login")).then(head["_app"]),
    )
    m = m.with_columns(
        body.str.extract(_KV_USER, 1).alias("_kuser"),
        body.str.extract(_KV_METHOD, 1).alias("_method"),
        body.str.extract(_KV_RIP, 1).alias("_rip"),
        body.str.extract(_KV_LIP, 1).alias("_lip"),
        pl.Series("_proto", head.select(proc.str.replace("-login$", "")).to_series()),
    )
    login = pl.col("event.action").is_in(["login", "no_auth"])
    proto = pl.when(login).then(pl.col("_proto").fill_null("imap")).otherwise(pl.lit("imap"))
    action = pl.when(pl.col("event.action").is_not_null()).then(
        proto + "_" + pl.col("event.action")
    )
    host = pl.when(login).then(pl.col("_rip")).otherwise(pl.col("host"))
    ip = pl.when(host.str.contains(IP_RE)).then(host)
    user = pl.when(login).then(pl.col("_kuser")).otherwise(pl.col("user"))
    pairs = [
        pl.when(login & pl.col(c).is_not_null()).then(pl.lit(f'"{k}":') + json_str(pl.col(c)))
        for k, c in (
            ("dovecot.method", "_method"),
            ("dovecot.reason", "reason"),
            ("dovecot.local_ip", "_lip"),
        )
    ]
    joined = pl.concat_str(pairs, separator=",", ignore_nulls=True)
    recognised = pl.col("event.action").is_not_null()
    return m.select(
        pl.when(recognised).then(pl.lit("authentication")).alias("event.category"),
        "event.type",
        action.alias("event.action"),
        "event.outcome",
        nullif_empty(user).alias("user.name"),
        ip.str.replace(r"^::ffff:([0-9.]+)$", "$1").alias("source.ip"),
        pl.when(joined.str.len_bytes() > 0).then("{" + joined + "}").alias("labels"),
        pl.when(recognised).then(proto).alias("service.name"),
        pl.lit("dovecot").alias("event.dataset"),
        pl.lit("dovecot").alias("event.module"),
    )
