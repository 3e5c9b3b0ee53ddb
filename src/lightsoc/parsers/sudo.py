"""sudo and su messages as ECS process / authentication / session events (syslog app parsers).

``user.name`` is who ran sudo/su, ``user.target.name`` as whom. sudo's TTY
and PWD go to ``labels`` (``sudo.tty``, ``sudo.pwd``).
"""

from __future__ import annotations

import polars as pl

from lightsoc.parsers._apps import (
    Rule,
    app_parser,
    apply_rules,
    event_fields,
    json_str,
    nullif_empty,
)

_U = r"(?P<user>[^ (]*)"
_T = r"(?P<target>[^ ()]+)"
_UID = r"(?:\(uid=[0-9]+\))?"
_SUDO_TAIL = (
    r"TTY=(?P<tty>[^ ]*) ; PWD=(?P<pwd>.*?) ; USER=(?P<target>[^ ]+) ; (?:.*? ; )?"
    r"COMMAND=(?P<cmd>.*)$"
)


_c = event_fields


SUDO_AUTH_FAIL = _c("sudo_auth_failure", "authentication", "info", "failure")

SUDO_RULES: tuple[Rule, ...] = (
    Rule(
        ("",),
        rf"^ *(?P<user>[^ ]+) : {_SUDO_TAIL}",
        _c("sudo_command", "process", "start", "success"),
    ),
    Rule(("",), rf"^ *(?P<user>[^ ]+) : [^;]*password[^;]* ; {_SUDO_TAIL}", SUDO_AUTH_FAIL),
    Rule(
        ("",),
        rf"^ *(?P<user>[^ ]+) : [^;]+ ; {_SUDO_TAIL}",  # "user NOT in sudoers", "command not allowed"
        _c("sudo_command", "process", "info", "failure"),
    ),
    Rule(
        ("pam_unix(sudo",),
        r"^pam_unix\(sudo(?:-i)?:auth\): authentication failure;.*? ruser=(?P<ruser>[^ ]*) "
        rf"rhost=[^ ]*(?: +user={_U})?",
        SUDO_AUTH_FAIL,
    ),
    Rule(
        ("pam_unix(sudo",),
        r"^pam_unix\(sudo(?:-i)?:auth\): (?:conversation failed|"
        r"auth could not identify password for \[(?P<user>[^\]]*)\])",
        SUDO_AUTH_FAIL,
    ),
    Rule(
        ("pam_unix(sudo",),
        rf"^pam_unix\(sudo(?:-i)?:session\): session opened for user {_T}{_UID} by {_U}",
        _c("sudo_session", "session", "start", "success"),
    ),
    Rule(
        ("pam_unix(sudo",),
        rf"^pam_unix\(sudo(?:-i)?:session\): session closed for user {_T}",
        _c("sudo_session", "session", "end", "success"),
    ),
)

SU_OK = _c("su_session", "authentication", "start", "success")
SU_FAIL = _c("su_failure", "authentication", "info", "failure")

SU_RULES: tuple[Rule, ...] = (
    Rule(("(to ",), rf"^\(to {_T}\) {_U} on (?P<tty>[^ ]+)", SU_OK),
    Rule(("+ ",), r"^\+ (?P<tty>[^ ]+) (?P<user>[^ :]*):(?P<target>[^ ]+)$", SU_OK),  # shadow
    Rule(("- ",), r"^- (?P<tty>[^ ]+) (?P<user>[^ :]*):(?P<target>[^ ]+)$", SU_FAIL),
    Rule(("Successful su for ",), rf"^Successful su for {_T} by {_U}", SU_OK),
    Rule(("FAILED SU ",), rf"^FAILED SU \(to {_T}\) {_U} on (?P<tty>[^ ]+)", SU_FAIL),
    Rule(("FAILED su for ",), rf"^FAILED su for {_T} by {_U}", SU_FAIL),
    Rule(("pam_authenticate: ",), r"^pam_authenticate: Authentication failure", SU_FAIL),
    Rule(
        ("pam_unix(su", "authentication failure;"),
        r"^(?:pam_unix\(su(?:-l)?:auth\): )?authentication failure;.*? ruser=(?P<user>[^ ]*) "
        rf"rhost=[^ ]*(?: +user={_T})?",
        SU_FAIL,
    ),
    Rule(
        ("pam_unix(su", "session opened for user "),
        rf"^(?:pam_unix\(su(?:-l)?:session\): )?session opened for user {_T}{_UID} by {_U}",
        _c("su_session", "session", "start", "success"),
    ),
    Rule(
        ("pam_unix(su", "session closed for user "),
        rf"^(?:pam_unix\(su(?:-l)?:session\): )?session closed for user {_T}",
        _c("su_session", "session", "end", "success"),
    ),
)


def _finish(m: pl.DataFrame, dataset: str) -> pl.DataFrame:
    cols = set(m.columns)

    def col(name: str) -> pl.Expr:
        return pl.col(name) if name in cols else pl.lit(None, dtype=pl.String)

    user = nullif_empty(col("user"))
    if "ruser" in cols:
        user = pl.coalesce(user, nullif_empty(col("ruser")))
    labels = pl.lit(None, dtype=pl.String)
    if "tty" in cols and "pwd" in cols and dataset == "sudo":
        labels = pl.when(col("pwd").is_not_null()).then(
            '{"sudo.tty":' + json_str(col("tty")) + ',"sudo.pwd":' + json_str(col("pwd")) + "}"
        )
    return m.select(
        col("event.category").alias("event.category"),
        col("event.type").alias("event.type"),
        col("event.action").alias("event.action"),
        col("event.outcome").alias("event.outcome"),
        user.alias("user.name"),
        nullif_empty(col("target")).alias("user.target.name"),
        col("cmd").alias("process.command_line"),
        labels.alias("labels"),
        pl.lit(dataset).alias("event.dataset"),
        pl.lit("system").alias("event.module"),
    )


@app_parser("sudo")
def parse_sudo(frame: pl.DataFrame) -> pl.DataFrame:
    """sudo command lines and sudo PAM messages."""
    return _finish(apply_rules(frame["message"], SUDO_RULES), "sudo")


@app_parser("su")
def parse_su(frame: pl.DataFrame) -> pl.DataFrame:
    """su (util-linux / shadow) and su PAM messages."""
    return _finish(apply_rules(frame["message"], SU_RULES), "su")
