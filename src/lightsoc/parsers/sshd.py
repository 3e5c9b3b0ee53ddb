"""OpenSSH sshd messages as ECS authentication events (a syslog app parser).

Each message shape is one `Rule`; rows are dispatched by literal prefix so a
regex only runs on rows that can match it. Extras without an ECS field go to
``labels``: ``ssh.method`` (password, publickey, ...) and
``ssh.invalid_user`` (the user name does not exist on the host).
"""

from __future__ import annotations

import polars as pl

from lightsoc.parsers._apps import IP_RE, Rule, app_parser, apply_rules, nullif_empty, split_host

_H = r"(?P<host>[^ ]+)"
_P = r" port (?P<port>[0-9]+)"
_M = r"(?P<method>[A-Za-z0-9/_-]+)"
_U = r"(?P<user>.*?)"
_INV = r"(?:(?P<invalid>invalid|illegal) |authenticating )?user "
_PRE = r" \[preauth\]"
# Unanchored: dispatch has checked the prefix, and a short match keeps the capture pass cheap.
_PAM_TAIL = r" rhost=(?P<host>[^ ]*)(?: +user=(?P<user>[^ ]*))? *$"


def _c(action: str, outcome: str, etype: str) -> dict[str, str]:
    return {"event.action": action, "event.outcome": outcome, "event.type": etype}


LOGIN_OK = _c("ssh_login", "success", "start")
LOGIN_FAIL = _c("ssh_login", "failure", "info")
PREAUTH = _c("ssh_disconnect_preauth", "failure", "end")
DISCONNECT = _c("ssh_disconnect", "success", "end")
TOO_MANY = _c("ssh_too_many_failures", "failure", "info")
PAM_FAIL = _c("ssh_pam_failure", "failure", "info")

RULES: tuple[Rule, ...] = (
    Rule(
        ("Accepted ",),
        rf"^Accepted {_M} for {_U} from {_H}{_P}(?: ssh[12])?(?:: .*)?$",
        LOGIN_OK,
    ),
    Rule(
        ("Failed ",),
        rf"^Failed {_M} for (?:(?P<invalid>invalid|illegal) user )?{_U} from {_H}(?:{_P})?"
        r"(?: ssh[12])?(?::.*)?$",
        LOGIN_FAIL,
    ),
    Rule(
        ("Invalid user ", "Illegal user "),
        rf"^(?:Invalid|Illegal) user {_U} from {_H}(?:{_P})?$",
        _c("ssh_invalid_user", "failure", "info"),
    ),
    Rule(
        ("Disconnected from ",),
        rf"^Disconnected from (?:{_INV}{_U} )?{_H}{_P}{_PRE}$",
        PREAUTH,
    ),
    Rule(("Disconnected from ",), rf"^Disconnected from (?:user {_U} )?{_H}{_P}$", DISCONNECT),
    Rule(
        ("Connection closed by ", "Connection reset by "),
        rf"^Connection (?:closed|reset) by (?:{_INV}{_U} )?{_H}(?:{_P})?{_PRE}$",
        PREAUTH,
    ),
    Rule(
        ("Connection closed by ", "Connection reset by "),
        rf"^Connection (?:closed|reset) by (?:user {_U} )?{_H}(?:{_P})?$",
        DISCONNECT,
    ),
    Rule(
        ("error: maximum authentication attempts exceeded for ",),
        rf"^error: maximum authentication attempts exceeded for "
        rf"(?:(?P<invalid>invalid) user )?{_U} from {_H}{_P}(?: ssh[12])?(?:{_PRE})?$",
        TOO_MANY,
    ),
    Rule(
        ("Disconnecting: Too many authentication failures",),
        r"^Disconnecting: Too many authentication failures"
        rf"(?: for (?:(?P<invalid>invalid) user )?{_U})?(?:{_PRE})?$",
        TOO_MANY,
    ),
    Rule(
        ("Disconnecting ",),
        rf"^Disconnecting {_INV}{_U} {_H}{_P}: Too many authentication failures(?:{_PRE})?$",
        TOO_MANY,
    ),
    Rule(("Disconnecting ",), rf"^Disconnecting {_INV}{_U} {_H}{_P}: .*$", PREAUTH),
    Rule(
        ("PAM ",),
        _PAM_TAIL,
        PAM_FAIL,
    ),
    Rule(
        ("pam_unix(sshd:auth): authentication failure;", "authentication failure;"),
        _PAM_TAIL,
        PAM_FAIL,
    ),
    Rule(
        ("error: PAM: ",),
        r"^error: PAM: (?:[Aa]uthentication (?:failure|error)|User not known to the underlying "
        rf"authentication module) for (?:(?P<invalid>illegal) user )?{_U} from {_H}"
        r"(?: via [^ ]+)? *$",
        PAM_FAIL,
    ),
    Rule(
        ("Received disconnect from ", "error: Received disconnect from "),
        rf"^(?:error: )?Received disconnect from {_H}(?:{_P})?: ?[0-9]+: .*{_PRE}$",
        PREAUTH,
    ),
    Rule(
        ("Received disconnect from ", "error: Received disconnect from "),
        rf"^(?:error: )?Received disconnect from {_H}(?:{_P})?: ?[0-9]+: .*$",
        DISCONNECT,
    ),
    Rule(
        ("reverse mapping checking getaddrinfo for ",),
        r"^reverse mapping checking getaddrinfo for (?P<domain>[^ ]+) \[(?P<host>[^\]]+)\] "
        r"failed - POSSIBLE BREAK-IN ATTEMPT!?$",
        _c("ssh_reverse_mapping_failed", "unknown", "info"),
    ),
    Rule(
        ("Address ",),
        rf"^Address {_H} maps to (?P<domain>[^ ,]+), but this does not map back to the address",
        _c("ssh_reverse_mapping_failed", "unknown", "info"),
    ),
    Rule(
        ("ROOT LOGIN REFUSED FROM ",),
        rf"^ROOT LOGIN REFUSED FROM {_H}(?:{_P})?(?:{_PRE})?$",
        _c("ssh_root_login_refused", "failure", "info") | {"user": "root"},
    ),
    Rule(
        ("User ",),
        rf"^User {_U} from {_H} not allowed because ",
        _c("ssh_user_not_allowed", "failure", "info"),
    ),
    Rule(
        ("Did not receive identification string from ",),
        rf"^Did not receive identification string from {_H}(?:{_P})?$",
        _c("ssh_no_identification", "failure", "info"),
    ),
    Rule(
        ("Bad protocol version identification ", "banner exchange: Connection from "),
        rf"^(?:Bad protocol version identification '.*' from|banner exchange: Connection from) "
        rf"{_H}(?:{_P})?(?::.*)?$",
        _c("ssh_bad_protocol", "failure", "info"),
    ),
    Rule(
        ("Unable to negotiate with ", "fatal: Unable to negotiate with "),
        rf"^(?:fatal: )?Unable to negotiate with {_H}(?:{_P})?: .*$",
        _c("ssh_negotiation_failed", "failure", "info"),
    ),
    Rule(
        ("refused connect from ",),
        r"^refused connect from [^ ]+ \((?P<host>[^)]+)\)$",
        _c("ssh_refused_connect", "failure", "info"),
    ),
    Rule(
        ("pam_unix(sshd:session): session opened", "session opened"),
        r"^(?:pam_unix\(sshd:session\): )?session opened for user (?P<user>[^ (]+)",
        _c("ssh_session_start", "success", "start"),
    ),
    Rule(
        ("pam_unix(sshd:session): session closed", "session closed"),
        r"^(?:pam_unix\(sshd:session\): )?session closed for user (?P<user>[^ (]+)",
        _c("ssh_session_end", "success", "end"),
    ),
)


@app_parser("sshd")
def parse_sshd(frame: pl.DataFrame) -> pl.DataFrame:
    """sshd messages -> authentication fields (null where the shape is unknown)."""
    text = frame["message"]
    if text.str.contains(r"^\[ID [0-9]+ ").any():  # Solaris message-id prefix
        text = text.str.replace(r"^\[ID [0-9]+ [^\]]*\] ", "")
    m = apply_rules(text, RULES)
    m = m.with_columns(pl.col("host").str.contains(IP_RE).alias("_is_ip"))
    ip, domain = split_host(pl.col("host"), pl.col("_is_ip"))
    recognised = pl.col("event.action").is_not_null()
    labels = pl.when(pl.col("method").is_not_null() | pl.col("invalid").is_not_null()).then(
        pl.concat_str(
            pl.lit("{"),
            pl.concat_str(
                pl.when(pl.col("method").is_not_null()).then(
                    pl.lit('"ssh.method":"') + pl.col("method") + '"'
                ),
                pl.when(pl.col("invalid").is_not_null()).then(pl.lit('"ssh.invalid_user":true')),
                separator=",",
                ignore_nulls=True,
            ),
            pl.lit("}"),
        )
    )
    return m.select(
        pl.when(recognised).then(pl.lit("authentication")).alias("event.category"),
        "event.type",
        "event.action",
        "event.outcome",
        nullif_empty(pl.col("user")).alias("user.name"),
        ip.alias("source.ip"),
        pl.col("port").cast(pl.Int32, strict=False).alias("source.port"),
        pl.coalesce("domain", domain).alias("source.domain"),
        labels.alias("labels"),
        pl.lit("sshd").alias("service.name"),
        pl.lit("sshd").alias("event.dataset"),
        pl.lit("system").alias("event.module"),
    )
