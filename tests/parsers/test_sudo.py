"""sudo / su app parsers: synthetic shapes and the su lines of Loghub Linux_2k."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest

from lightsoc.parsers.sudo import parse_su, parse_sudo
from lightsoc.parsers.syslog import SyslogParser

LOGHUB = Path(__file__).resolve().parents[3] / "shared" / "data" / "auth" / "loghub"
FIELDS = (
    "event.dataset",
    "event.action",
    "event.category",
    "event.outcome",
    "user.name",
    "user.target.name",
    "process.command_line",
)


def parse(lines: list[str]) -> pl.DataFrame:
    return SyslogParser().parse(pl.Series(lines), now=datetime(2024, 6, 1, tzinfo=UTC))


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (
            "sudo:    alice : TTY=pts/0 ; PWD=/home/alice ; USER=root ; COMMAND=/bin/ls -la /root",
            ("sudo", "sudo_command", "process", "success", "alice", "root", "/bin/ls -la /root"),
        ),
        (
            "sudo[99]: alice : TTY=pts/0 ; PWD=/srv ; USER=www-data ; GROUP=www ; ENV=A=b ; "
            'COMMAND=/usr/bin/env "x ; y"',
            (
                "sudo",
                "sudo_command",
                "process",
                "success",
                "alice",
                "www-data",
                '/usr/bin/env "x ; y"',
            ),
        ),
        (
            "sudo: alice : 3 incorrect password attempts ; TTY=pts/0 ; PWD=/home/alice ; "
            "USER=root ; COMMAND=/usr/bin/id",
            (
                "sudo",
                "sudo_auth_failure",
                "authentication",
                "failure",
                "alice",
                "root",
                "/usr/bin/id",
            ),
        ),
        (
            "sudo: bob : user NOT in sudoers ; TTY=pts/1 ; PWD=/tmp ; USER=root ; COMMAND=/bin/sh",
            ("sudo", "sudo_command", "process", "failure", "bob", "root", "/bin/sh"),
        ),
        (
            "sudo: pam_unix(sudo:auth): authentication failure; logname=alice uid=1000 euid=0 "
            "tty=/dev/pts/0 ruser=alice rhost=  user=alice",
            ("sudo", "sudo_auth_failure", "authentication", "failure", "alice", None, None),
        ),
        (
            "sudo: pam_unix(sudo:auth): auth could not identify password for [carol]",
            ("sudo", "sudo_auth_failure", "authentication", "failure", "carol", None, None),
        ),
        (
            "sudo: pam_unix(sudo:session): session opened for user root(uid=0) by alice(uid=1000)",
            ("sudo", "sudo_session", "session", "success", "alice", "root", None),
        ),
        (
            "su: (to root) alice on pts/0",
            ("su", "su_session", "authentication", "success", "alice", "root", None),
        ),
        (
            "su[123]: pam_unix(su:session): session opened for user root by alice(uid=1000)",
            ("su", "su_session", "session", "success", "alice", "root", None),
        ),
        (
            "su[123]: pam_unix(su-l:session): session opened for user postgres(uid=110) by alice(uid=0)",
            ("su", "su_session", "session", "success", "alice", "postgres", None),
        ),
        (
            "su[123]: FAILED SU (to root) alice on pts/0",
            ("su", "su_failure", "authentication", "failure", "alice", "root", None),
        ),
        (
            "su[123]: pam_authenticate: Authentication failure",
            ("su", "su_failure", "authentication", "failure", None, None, None),
        ),
        (
            "su[123]: pam_unix(su:auth): authentication failure; logname=alice uid=1000 euid=0 "
            "tty=/dev/pts/0 ruser=alice rhost=  user=root",
            ("su", "su_failure", "authentication", "failure", "alice", "root", None),
        ),
        (
            "su(pam_unix)[123]: authentication failure; logname= uid=500 euid=0 tty= ruser=rorik rhost=  user=root",
            ("su", "su_failure", "authentication", "failure", "rorik", "root", None),
        ),
        ("sudo: something else entirely", ("sudo", None, None, None, None, None, None)),
    ],
)
def test_shapes(line: str, expected: tuple) -> None:
    r = parse([f"Jan  5 10:00:00 web {line}"]).row(0, named=True)
    assert r["_ok"]
    assert tuple(r[f] for f in FIELDS) == expected
    assert r["event.module"] == "system"


def test_sudo_labels_keep_tty_and_pwd() -> None:
    r = parse(
        [
            'Jan  5 10:00:00 web sudo: alice : TTY=pts/0 ; PWD=/home/"a" ; USER=root ; COMMAND=/bin/true'
        ]
    ).row(0, named=True)
    assert json.loads(r["labels"]) == {"sudo.tty": "pts/0", "sudo.pwd": '/home/"a"'}


def test_linux_2k_su_sessions() -> None:
    path = LOGHUB / "Linux_2k.log"
    if not path.exists():
        pytest.fail(f"missing test data (expected ../shared/data beside the checkout) {path}")
    lines = [x for x in path.read_text(errors="replace").splitlines() if " su(pam_unix)[" in x]
    df = parse(lines)
    assert df.height == 172
    assert (df["event.dataset"] == "su").all()
    assert (df["event.action"] == "su_session").all()
    assert df["event.type"].value_counts().sort("event.type").rows() == [("end", 86), ("start", 86)]
    assert set(df["user.target.name"]) == {"cyrus", "news"}
    assert df["user.name"].is_null().all()  # "by (uid=0)": no name logged


def test_app_functions_standalone() -> None:
    frame = pl.DataFrame(
        {"message": ["FAILED SU (to root) eve on pts/3", "x", None], "_app": ["su"] * 3}
    )
    out = parse_su(frame)
    assert out["event.action"].to_list() == ["su_failure", None, None]
    out = parse_sudo(frame.with_columns(pl.lit("sudo").alias("_app")))
    assert out["event.action"].to_list() == [None, None, None]
    assert out.height == 3
