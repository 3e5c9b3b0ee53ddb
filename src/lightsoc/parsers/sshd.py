"""OpenSSH sshd messages as ECS authentication events (a syslog app parser).

Each message shape is one `Rule`; rows are dispatched by literal prefix so a
regex only runs on rows that can match it. Extras without an ECS field go to
``labels``: ``ssh.method`` (password, publickey, ...) and
``ssh.invalid_user`` (the user name does not exist on the host).

sshd runs one process per connection and some of its verdicts name no client
("Disconnecting: Too many authentication failures", "fatal: Unable to negotiate a
key exchange method"): such lines take the address the same host and pid logged
shortly before ("Connection from ...", "Failed password ..."), see `_stitch`.

The same process context keeps one attempt from counting twice (`_dedupe`):
- pam_unix's "authentication failure" line repeats an attempt sshd logs itself
  ("Failed password ..."), or precedes the "Accepted ..." of a second auth method:
  it stays ``ssh_pam_failure``, which no failure rule counts. When the process logs
  no verdict of its own (old sshd, hosts that only log through PAM) the PAM line is
  the attempt's only record and becomes ``ssh_login``/failure.
- a pre-auth close that names no user ("Connection closed by H [preauth]",
  "Disconnected from H port P [preauth]") after the process already logged an
  addressed failure is the end of that failed connection, not another attempt:
  ``ssh_disconnect``/failure. On its own it stays ``ssh_disconnect_preauth``
  (a client that left before authenticating: probes, scanners).
``ssh_pam_error`` is sshd's own "error: PAM: Authentication failure for X from H"
(keyboard-interactive and macOS logins).
"""

from __future__ import annotations

from datetime import timedelta

import polars as pl

from lightsoc.parsers._apps import IP_RE, Rule, app_parser, apply_rules, nullif_empty, split_host

_H = r"(?P<host>[^ ]+)"
_P = r" port (?P<port>[0-9]+)"
_M = r"(?P<method>[A-Za-z0-9/_-]+)"
_U = r"(?P<user>.*?)"
_INV = r"(?:(?P<invalid>invalid|illegal) |authenticating )?user "
_PRE = r" \[preauth\]"
# Unanchored: dispatch has checked the prefix, and a short match keeps the capture pass cheap.
_PAM_TAIL = r" rhost=(?P<host>[^ ]*)(?: +user=(?P<user>[^ ]*))? *(?: \[preauth\])?$"


#: how long after its last addressed line an sshd process's lines inherit its address
STITCH_WINDOW = timedelta(minutes=10)


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
        (
            "pam_unix(sshd:auth): authentication failure;",
            "(pam_unix) authentication failure;",
            "authentication failure;",
        ),
        _PAM_TAIL,
        PAM_FAIL,
    ),
    Rule(
        ("error: PAM: ",),
        r"^error: PAM: (?:[Aa]uthentication (?:failure|error)|User not known to the underlying "
        rf"authentication module) for (?:(?P<invalid>illegal) user )?{_U} from {_H}"
        r"(?: via [^ ]+)? *$",
        _c("ssh_pam_error", "failure", "info"),
    ),
    Rule(
        ("Received disconnect from ", "error: Received disconnect from "),
        rf"^(?:error: )?Received disconnect from {_H}(?:{_P})?: ?[0-9]+: .*{_PRE}$",
        PREAUTH,
    ),
    # 14 = SSH2_DISCONNECT_NO_MORE_AUTH_METHODS_AVAILABLE; "Auth fail" is JSch giving up
    Rule(
        ("Received disconnect from ", "error: Received disconnect from "),
        rf"^(?:error: )?Received disconnect from {_H}(?:{_P})?: ?(?:14: .*|[0-9]+: .*Auth fail)$",
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
    # The lines below name no client: the address comes from the process's earlier lines.
    Rule(
        (
            "fatal: Read from socket failed: ",
            "fatal: Write failed: ",
            "fatal: Timeout before authentication",
        ),
        r"^fatal: (?:(?:Read from socket|Write) failed: .*|Timeout before authentication.*)"
        r" \[preauth\]$",
        PREAUTH,
    ),
    Rule(
        ("error: kex_exchange_identification: ",),
        r"^error: kex_exchange_identification: ",
        _c("ssh_bad_protocol", "failure", "info"),
    ),
    Rule(
        ("fatal: Unable to negotiate ", "fatal: no matching "),
        rf"^fatal: (?:Unable to negotiate a [a-z ]*[a-z](?:{_PRE})?"
        r"|no matching [A-Za-z ]+ found: .*)$",
        _c("ssh_negotiation_failed", "failure", "info"),
    ),
    Rule(
        ("Connection from ",),
        rf"^Connection from {_H}{_P}(?: on [^ ]+ port [0-9]+.*)?$",
        _c("ssh_connection", "unknown", "start") | {"_category": "network"},
    ),
    # Audit trail of some distribution builds: "SSH: Server;Ltype: Version;Remote: ip-port;..."
    Rule(
        ("SSH: Server;",),
        r";Remote: (?P<host>[^;]+)-(?P<port>[0-9]+);",
        _c("ssh_audit", "unknown", "info") | {"_category": "network"},
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
    m = m.with_columns(ip.alias("_ip"), pl.coalesce("domain", domain).alias("_domain"))
    if {"_host", "_pid", "_ts"} <= set(frame.columns):
        m = _stitch(m, frame)
        m = _dedupe(m, frame)
    ip, domain = pl.col("_ip"), pl.col("_domain")
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
        pl.when(recognised)
        .then(pl.coalesce("_category", pl.lit("authentication")))
        .alias("event.category"),
        "event.type",
        "event.action",
        "event.outcome",
        nullif_empty(pl.col("user")).alias("user.name"),
        ip.alias("source.ip"),
        pl.col("port").cast(pl.Int32, strict=False).alias("source.port"),
        domain.alias("source.domain"),
        labels.alias("labels"),
        pl.lit("sshd").alias("service.name"),
        pl.lit("sshd").alias("event.dataset"),
        pl.lit("system").alias("event.module"),
    )


def _stitch(m: pl.DataFrame, frame: pl.DataFrame) -> pl.DataFrame:
    """Give address-less lines the client address their sshd process logged before.

    sshd forks one process per connection, so on one host a pid names one client until
    the process exits. Lines such as "Disconnecting: Too many authentication failures"
    or "fatal: Unable to negotiate a key exchange method" name no client; they take the
    address of the latest earlier line of the same host and pid, if that line is at most
    `STITCH_WINDOW` older (pids are reused, and LoginGraceTime ends pre-auth connections
    after 2 minutes by default). Only within one batch: lines of a later batch stay as logged.
    """
    keys = ["_host", "_pid"]
    g = pl.DataFrame(
        {
            "_host": frame["_host"].fill_null(""),
            "_pid": frame["_pid"],
            "_ts": frame["_ts"],
            "_ip": m["_ip"],
        }
    ).select(
        pl.col("_ip").forward_fill().over(keys).alias("_fip"),
        pl.when(pl.col("_ip").is_not_null())
        .then(pl.col("_ts"))
        .forward_fill()
        .over(keys)
        .alias("_fts"),
        (pl.col("_pid").is_not_null() & pl.col("_ts").is_not_null()).alias("_keyed"),
        pl.col("_ts"),
    )
    use = (
        g["_keyed"]
        & m["_ip"].is_null()
        & m["_domain"].is_null()
        & m["event.action"].is_not_null()
        & ((g["_ts"] - g["_fts"]) <= STITCH_WINDOW).fill_null(False)
    )
    return m.with_columns(pl.when(use).then(g["_fip"]).otherwise(m["_ip"]).alias("_ip"))


#: sshd's own verdicts on an attempt (a PAM line beside one of these repeats it)
_VERDICTS = ("ssh_login", "ssh_invalid_user", "ssh_too_many_failures", "ssh_pam_error")


def _dedupe(m: pl.DataFrame, frame: pl.DataFrame) -> pl.DataFrame:
    """Re-label lines that repeat an attempt their process already logged (module doc).

    Same scope as `_stitch`: one host and pid, lines at most `STITCH_WINDOW` apart,
    within one batch.
    """
    keys = ["_host", "_pid"]
    action, outcome = pl.col("event.action"), pl.col("event.outcome")
    addressed = pl.col("_ip").is_not_null() | pl.col("_domain").is_not_null()
    verdict_ts = pl.when(action.is_in(_VERDICTS)).then(pl.col("_ts"))
    failed_ts = pl.when((outcome == "failure") & addressed).then(pl.col("_ts"))
    g = pl.DataFrame(
        {
            "_host": frame["_host"].fill_null(""),
            "_pid": frame["_pid"],
            "_ts": frame["_ts"],
            "event.action": m["event.action"],
            "event.outcome": m["event.outcome"],
            "_ip": m["_ip"],
            "_domain": m["_domain"],
        }
    ).select(
        (pl.col("_pid").is_not_null() & pl.col("_ts").is_not_null()).alias("_keyed"),
        (pl.col("_ts") - verdict_ts.forward_fill().over(keys)).alias("_since_verdict"),
        (verdict_ts.backward_fill().over(keys) - pl.col("_ts")).alias("_until_verdict"),
        (pl.col("_ts") - failed_ts.shift(1).forward_fill().over(keys)).alias("_since_fail"),
    )
    near = lambda c: (g[c] <= STITCH_WINDOW).fill_null(False)  # noqa: E731
    keyed = g["_keyed"]
    pam_alone = (
        keyed
        & (m["event.action"] == "ssh_pam_failure").fill_null(False)
        & ~near("_since_verdict")
        & ~near("_until_verdict")
    )
    close_after_fail = (
        keyed
        & (m["event.action"] == "ssh_disconnect_preauth").fill_null(False)
        & m["user"].is_null()
        & near("_since_fail")
    )
    return m.with_columns(
        pl.when(pam_alone)
        .then(pl.lit("ssh_login"))
        .when(close_after_fail)
        .then(pl.lit("ssh_disconnect"))
        .otherwise(pl.col("event.action"))
        .alias("event.action")
    )
