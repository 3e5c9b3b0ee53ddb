"""sshd app parser: Loghub OpenSSH_2k against its event templates, fail2ban test lines, shapes."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest

from lightsoc.parsers._apps import IP_RE
from lightsoc.parsers.sshd import parse_sshd
from lightsoc.parsers.syslog import SyslogParser

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
LOGHUB = DATA / "auth" / "loghub"
NOW = datetime(2024, 6, 1, tzinfo=UTC)

# A pre-auth close that names no user ends a connection: after an addressed failure of the
# same process it is that failure's end (ssh_disconnect), else a pre-auth drop.
_CLOSE = {("ssh_disconnect_preauth", "failure"), ("ssh_disconnect", "failure")}
# pam_unix's line repeats sshd's own verdict; the one whose "Failed password" is past the
# end of the sample is the attempt's only record (ssh_login).
_PAM_LAST = {("ssh_pam_failure", "failure"), ("ssh_login", "failure")}

# Loghub OpenSSH template id -> expected (event.action, event.outcome), or the set of
# outcomes the line's process context chooses from; None: no action.
TEMPLATE_ACTIONS: dict[str, tuple[str, str] | set[tuple[str, str]] | None] = {
    "E1": ("ssh_login", "success"),
    "E2": _CLOSE,
    "E3": ("ssh_no_identification", "failure"),
    "E4": ("ssh_too_many_failures", "failure"),
    "E5": ("ssh_too_many_failures", "failure"),
    "E6": _CLOSE,
    "E7": _CLOSE,
    "E8": ("ssh_login", "failure"),
    "E9": ("ssh_login", "failure"),
    "E10": ("ssh_login", "failure"),
    "E11": _CLOSE,  # fatal: Write failed: ... [preauth]
    "E12": None,  # input_userauth_request: invalid user X [preauth] (dup of E13)
    "E13": ("ssh_invalid_user", "failure"),
    "E14": ("ssh_login", "failure"),  # message repeated N times: [ Failed password ...]
    "E15": ("ssh_pam_failure", "failure"),
    "E16": ("ssh_pam_failure", "failure"),
    "E17": ("ssh_pam_failure", "failure"),
    "E18": None,  # PAM service(sshd) ignoring max retries
    "E19": ("ssh_pam_failure", "failure"),
    "E20": _PAM_LAST,
    "E21": None,  # pam_unix(sshd:auth): check pass; user unknown
    "E22": ("ssh_session_end", "success"),
    "E23": ("ssh_session_start", "success"),
    "E24": _CLOSE,
    "E25": _CLOSE,
    "E26": ("ssh_disconnect", "success"),
    "E27": ("ssh_reverse_mapping_failed", "unknown"),
}


def parse(lines: list[str]) -> pl.DataFrame:
    return SyslogParser().parse(pl.Series(lines, dtype=pl.String), now=NOW)


def one(message: str) -> dict:
    return parse([f"Jan  5 10:00:00 host sshd[42]: {message}"]).row(0, named=True)


def _labels(value: str | None) -> dict:
    return json.loads(value) if value else {}


@pytest.fixture(scope="module")
def openssh() -> pl.DataFrame:
    path = LOGHUB / "OpenSSH_2k.log"
    if not path.exists():
        pytest.fail(f"missing test data (expected ../shared/data beside the checkout) {path}")
    ref = pl.read_csv(LOGHUB / "OpenSSH_2k.log_structured.csv", infer_schema_length=0)
    df = parse(path.read_text().splitlines())
    assert df.height == ref.height
    return pl.concat([df, ref.select("EventId", "EventTemplate", "Content")], how="horizontal")


def test_every_template_maps_to_its_action(openssh: pl.DataFrame) -> None:
    assert set(openssh["EventId"].unique()) == set(TEMPLATE_ACTIONS)
    for tid, expected in TEMPLATE_ACTIONS.items():
        rows = openssh.filter(pl.col("EventId") == tid)
        got = set(rows.select("event.action", "event.outcome").unique().rows())
        if isinstance(expected, set):
            assert got <= expected, tid
        else:
            assert got == {expected or (None, None)}, tid
    assert (openssh["event.dataset"] == "sshd").all()
    assert (openssh["service.name"] == "sshd").all()
    assert (openssh["event.module"] == "system").all()
    recognised = openssh.filter(pl.col("event.action").is_not_null())
    assert (recognised["event.category"] == "authentication").all()


def test_failed_password_counts_equal_template_counts(openssh: pl.DataFrame) -> None:
    def count(tid: str) -> int:
        return openssh.filter(pl.col("EventId") == tid).height

    labels = [_labels(v) for v in openssh["labels"].to_list()]
    parsed = openssh.with_columns(
        pl.Series("method", [lb.get("ssh.method") for lb in labels]),
        pl.Series("invalid", [bool(lb.get("ssh.invalid_user")) for lb in labels]),
    )
    fails = parsed.filter(
        (pl.col("event.action") == "ssh_login") & (pl.col("event.outcome") == "failure")
    )
    repeated = pl.col("message").str.starts_with("message repeated ")
    password = pl.col("method") == "password"
    # "Failed password for <*> from <*> port <*> ssh2"
    assert fails.filter(password & ~pl.col("invalid") & ~repeated).height == count("E9") == 383
    # "Failed password for invalid user <*> from <*> port <*> ssh2"
    assert fails.filter(password & pl.col("invalid")).height == count("E10") == 135
    # "Failed none for invalid user <*> ..."
    assert fails.filter((pl.col("method") == "none") & pl.col("invalid")).height == count("E8")
    assert fails.filter(repeated).height == count("E14")
    assert parsed.filter(pl.col("event.action") == "ssh_invalid_user").height == count("E13")
    # plus the one pam_unix line whose "Failed password" lies past the end of the sample
    pam_alone = fails.filter(pl.col("EventId").is_in(["E15", "E16", "E17", "E19", "E20"])).height
    assert pam_alone == 1
    assert fails.height == count("E8") + count("E9") + count("E10") + count("E14") + pam_alone


def test_user_ip_port_against_the_message_text(openssh: pl.DataFrame) -> None:
    """Where a message says "for|user USER from IP port N", the fields say the same."""
    pat = re.compile(r"(?:for|user) (?:invalid user )?(\S+) from (\S+) port (\d+)")
    checked = 0
    for row in openssh.rows(named=True):
        m = pat.search(row["Content"])
        if m and row["event.action"] is not None:
            assert (row["user.name"], row["source.ip"], row["source.port"]) == (
                m.group(1),
                m.group(2),
                int(m.group(3)),
            ), row["Content"]
            checked += 1
    assert checked > 500


def test_specific_lines(openssh: pl.DataFrame) -> None:
    rows = openssh.rows(named=True)
    r = rows[955]  # Accepted password for fztu from 119.137.62.142 port 49116 ssh2
    assert (r["event.action"], r["event.outcome"], r["event.type"]) == (
        "ssh_login",
        "success",
        "start",
    )
    assert (r["user.name"], r["source.ip"], r["source.port"]) == ("fztu", "119.137.62.142", 49116)
    assert _labels(r["labels"]) == {"ssh.method": "password"}
    r = rows[1]  # Invalid user webmaster from 173.234.31.186
    assert (r["user.name"], r["source.ip"], r["source.port"]) == (
        "webmaster",
        "173.234.31.186",
        None,
    )
    r = rows[0]  # reverse mapping checking getaddrinfo for ns.marryaldkfaczcz.com [173.234.31.186]
    assert (r["source.ip"], r["source.domain"]) == ("173.234.31.186", "ns.marryaldkfaczcz.com")
    r = rows[4]  # pam_unix(sshd:auth): authentication failure; ... rhost=173.234.31.186
    assert (r["event.action"], r["source.ip"], r["user.name"]) == (
        "ssh_pam_failure",
        "173.234.31.186",
        None,
    )
    r = rows[28]  # Failed password for root from 5.36.59.76 port 42393 ssh2
    assert (r["user.name"], r["source.ip"], r["source.port"]) == ("root", "5.36.59.76", 42393)


def _fail2ban_cases() -> list[tuple[dict, str]]:
    path = DATA / "auth" / "fail2ban" / "sshd"
    if not path.exists():
        pytest.fail(f"missing test data (expected ../shared/data beside the checkout) {path}")
    cases, note = [], None
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith("# failJSON:"):
            note = json.loads(line.split(":", 1)[1])
        elif line.startswith("#") or not line.strip():
            continue
        elif note is not None:
            cases.append((note, line))
            note = None
    return cases


def test_fail2ban_sshd_source_ip() -> None:
    """fail2ban's annotated sshd lines: the parsed source.ip is fail2ban's host.

    Measured: 87 of the 98 matching lines whose host is an IP. The other 11
    never name the address (fail2ban ties them to an earlier line by pid,
    e.g. "fatal: Read from socket failed"); of the lines that contain the
    address, all give it.
    """
    cases = [
        (n, x)
        for n, x in _fail2ban_cases()
        if n.get("match") and re.match(IP_RE, n.get("host", ""))
    ]
    df = parse([x for _, x in cases])
    got = df["source.ip"].to_list()
    hits = [g == n["host"] for g, (n, _) in zip(got, cases, strict=True)]
    share = sum(hits) / len(cases)
    print(f"fail2ban sshd: {sum(hits)}/{len(cases)} = {share:.1%} source.ip == host")
    assert len(cases) >= 90
    assert share >= 0.88
    named = [
        h for h, (n, x) in zip(hits, cases, strict=True) if n["host"].split("::ffff:")[-1] in x
    ]
    assert all(named)
    assert df["_ok"].all()


def test_fail2ban_sshd_every_line_parses_as_syslog() -> None:
    lines = [x for _, x in _fail2ban_cases()]
    df = parse(lines)
    assert df["_ok"].mean() >= 0.98


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        (
            "Accepted publickey for alice from 2001:db8::1 port 2222 ssh2: RSA SHA256:abc",
            ("ssh_login", "success", "alice", "2001:db8::1", 2222),
        ),
        (
            "Accepted keyboard-interactive/pam for bob from 10.0.0.2 port 50000 ssh2",
            ("ssh_login", "success", "bob", "10.0.0.2", 50000),
        ),
        (
            "Failed password for invalid user admin from ::ffff:198.51.100.7 port 4444 ssh2",
            ("ssh_login", "failure", "admin", "198.51.100.7", 4444),
        ),
        (
            "Failed password for invalid user from 10.10.1.1 from 127.0.0.1 port 58946 ssh2",
            ("ssh_login", "failure", "from 10.10.1.1", "127.0.0.1", 58946),
        ),
        (
            "Invalid user oracle from fe80::1%eth0 port 22",
            ("ssh_invalid_user", "failure", "oracle", "fe80::1%eth0", 22),
        ),
        (
            "Disconnected from invalid user guest 203.0.113.9 port 61000 [preauth]",
            ("ssh_disconnect_preauth", "failure", "guest", "203.0.113.9", 61000),
        ),
        (
            "Disconnected from authenticating user root 203.0.113.9 port 61000 [preauth]",
            ("ssh_disconnect_preauth", "failure", "root", "203.0.113.9", 61000),
        ),
        (
            "Disconnected from user carol 192.0.2.8 port 40000",
            ("ssh_disconnect", "success", "carol", "192.0.2.8", 40000),
        ),
        (
            "Connection closed by invalid user test 2001:db8::5 port 1234 [preauth]",
            ("ssh_disconnect_preauth", "failure", "test", "2001:db8::5", 1234),
        ),
        (
            "Connection closed by 192.0.2.1 port 1234 [preauth]",
            ("ssh_disconnect_preauth", "failure", None, "192.0.2.1", 1234),
        ),
        (
            "error: maximum authentication attempts exceeded for invalid user ftp from 192.0.2.3 port 3 ssh2 [preauth]",
            ("ssh_too_many_failures", "failure", "ftp", "192.0.2.3", 3),
        ),
        (
            "Disconnecting: Too many authentication failures for root [preauth]",
            ("ssh_too_many_failures", "failure", "root", None, None),
        ),
        (
            "Disconnecting authenticating user root 192.0.2.4 port 22: Too many authentication failures [preauth]",
            ("ssh_too_many_failures", "failure", "root", "192.0.2.4", 22),
        ),
        (
            "PAM 2 more authentication failures; logname= uid=0 euid=0 tty=ssh ruser= rhost=192.0.2.5  user=root",
            ("ssh_login", "failure", "root", "192.0.2.5", None),  # alone: the only record
        ),
        (
            "pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh ruser= rhost=2001:db8::9  user=dave",
            ("ssh_login", "failure", "dave", "2001:db8::9", None),  # alone: the only record
        ),
        (
            "error: PAM: Authentication failure for erin from 192.0.2.6",
            ("ssh_pam_error", "failure", "erin", "192.0.2.6", None),
        ),
        (
            "(pam_unix) authentication failure; logname= uid=0 euid=0 tty=ssh ruser= rhost=192.0.2.8  user=root",
            ("ssh_login", "failure", "root", "192.0.2.8", None),  # alone: the only record
        ),
        (
            "pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh ruser=rda rhost=192.0.2.113 [preauth]",
            ("ssh_login", "failure", None, "192.0.2.113", None),  # alone: the only record
        ),
        (
            "Received disconnect from 192.168.2.92 port 1684:14: No supported authentication methods available",
            ("ssh_disconnect_preauth", "failure", None, "192.168.2.92", 1684),
        ),
        (
            "Received disconnect from 89.24.13.192: 3: com.jcraft.jsch.JSchException: Auth fail",
            ("ssh_disconnect_preauth", "failure", None, "89.24.13.192", None),
        ),
        (
            "Received disconnect from 192.0.2.9 port 50123:11: disconnected by user",
            ("ssh_disconnect", "success", None, "192.0.2.9", 50123),
        ),
        (
            'Connection from 192.0.2.3 port 39678 on 192.168.1.9 port 22 rdomain ""',
            ("ssh_connection", "unknown", None, "192.0.2.3", 39678),
        ),
        (
            "SSH: Server;Ltype: Version;Remote: 127.0.0.1-1780;Protocol: 2.0;Client: libssh2_1.4.3",
            ("ssh_audit", "unknown", None, "127.0.0.1", 1780),
        ),
        (
            "fatal: Read from socket failed: Connection reset by peer [preauth]",
            ("ssh_disconnect_preauth", "failure", None, None, None),
        ),
        (
            "error: kex_exchange_identification: Connection closed by remote host",
            ("ssh_bad_protocol", "failure", None, None, None),
        ),
        (
            "fatal: Unable to negotiate a key exchange method [preauth]",
            ("ssh_negotiation_failed", "failure", None, None, None),
        ),
        (
            "fatal: no matching mac found: client hmac-md5 server hmac-sha2-256 [preauth]",
            ("ssh_negotiation_failed", "failure", None, None, None),
        ),
        (
            "Received disconnect from 198.51.100.76 port 58846:11: Bye Bye [preauth]",
            ("ssh_disconnect_preauth", "failure", None, "198.51.100.76", 58846),
        ),
        (
            "Received disconnect from 2001:db8::7: 11: Bye Bye [preauth]",
            ("ssh_disconnect_preauth", "failure", None, "2001:db8::7", None),
        ),
        (
            "reverse mapping checking getaddrinfo for x.example [192.0.2.7] failed - POSSIBLE BREAK-IN ATTEMPT!",
            ("ssh_reverse_mapping_failed", "unknown", None, "192.0.2.7", None),
        ),
        (
            "[ID 800047 auth.info] Failed keyboard-interactive for james from 205.186.180.30 port 54520 ssh2",
            ("ssh_login", "failure", "james", "205.186.180.30", 54520),
        ),
        ("Server listening on 0.0.0.0 port 22.", (None, None, None, None, None)),
    ],
)
def test_message_shapes(message: str, expected: tuple) -> None:
    r = one(message)
    assert r["_ok"]
    got = (r["event.action"], r["event.outcome"], r["user.name"], r["source.ip"], r["source.port"])
    assert got == expected


def test_lines_without_address_take_their_process_address() -> None:
    """One sshd process per connection: later address-less lines inherit the client.

    Only from an earlier line of the same host and pid, at most 10 minutes before.
    """
    lines = [
        "Feb 12 04:09:18 web1 sshd[26713]: Connection from 115.249.163.77 port 51353",
        "Feb 12 04:09:21 web1 sshd[26713]: Disconnecting: Too many authentication failures"
        " for root [preauth]",
        "Feb 12 04:09:21 web2 sshd[26713]: Disconnecting: Too many authentication failures"
        " [preauth]",  # another host: same pid, other process
        "Feb 12 04:09:22 web1 sshd[26714]: fatal: Unable to negotiate a key exchange method"
        " [preauth]",  # another pid, nothing before it
        "Feb 12 04:30:00 web1 sshd[26713]: error: kex_exchange_identification: Connection"
        " closed by remote host",  # 20 minutes later: the pid may have been reused
    ]
    df = parse(lines)
    assert df["source.ip"].to_list() == ["115.249.163.77", "115.249.163.77", None, None, None]
    assert df["event.action"].to_list()[1] == "ssh_too_many_failures"


def test_one_attempt_counts_once_per_process() -> None:
    """PAM's line beside sshd's own verdict, and the close after a failure, are no new attempts."""
    lines = [
        # a PAM line, then sshd's own verdict on the same attempt
        "Dec 10 11:04:43 h sshd[100]: pam_unix(sshd:auth): authentication failure; logname="
        " uid=0 euid=0 tty=ssh ruser= rhost=203.0.113.5  user=root",
        "Dec 10 11:04:45 h sshd[100]: Failed password for root from 203.0.113.5 port 1 ssh2",
        "Dec 10 11:04:45 h sshd[100]: Received disconnect from 203.0.113.5: 11: Bye Bye [preauth]",
        # a PAM line that a later success answers (two auth methods, gh-2070 of fail2ban)
        "Dec 10 11:05:00 h sshd[101]: pam_unix(sshd:auth): authentication failure; logname="
        " uid=0 euid=0 tty=ssh ruser= rhost=203.0.113.6  user=rda",
        "Dec 10 11:05:01 h sshd[101]: Accepted password for rda from 203.0.113.6 port 2 ssh2",
        # a PAM line alone in its process: the attempt's only record
        "Dec 10 11:06:00 h sshd[102]: pam_unix(sshd:auth): authentication failure; logname="
        " uid=0 euid=0 tty=ssh ruser= rhost=203.0.113.7  user=admin",
        # a client that leaves before authenticating: a pre-auth drop
        "Dec 10 11:07:00 h sshd[103]: Connection closed by 203.0.113.8 port 9 [preauth]",
        # the same on another host with pid 100: another process, nothing before it
        "Dec 10 11:07:01 other sshd[100]: Connection closed by 203.0.113.5 port 3 [preauth]",
        # a close naming its user is an attempt of its own (a password prompt abandoned)
        "Dec 10 11:07:02 h sshd[104]: Failed password for bob from 203.0.113.9 port 4 ssh2",
        "Dec 10 11:07:03 h sshd[104]: Connection closed by authenticating user bob"
        " 203.0.113.9 port 4 [preauth]",
    ]
    df = parse(lines)
    assert df.select("event.action", "event.outcome").rows() == [
        ("ssh_pam_failure", "failure"),
        ("ssh_login", "failure"),
        ("ssh_disconnect", "failure"),
        ("ssh_pam_failure", "failure"),
        ("ssh_login", "success"),
        ("ssh_login", "failure"),
        ("ssh_disconnect_preauth", "failure"),
        ("ssh_disconnect_preauth", "failure"),
        ("ssh_login", "failure"),
        ("ssh_disconnect_preauth", "failure"),
    ]
    assert df["source.ip"].to_list()[5] == "203.0.113.7"


def test_host_names_go_to_source_domain() -> None:
    r = one("error: PAM: Authentication failure for erin from client.example.com")
    assert (r["source.ip"], r["source.domain"], r["user.name"]) == (
        None,
        "client.example.com",
        "erin",
    )


def test_linux_2k_sshd_pam_lines() -> None:
    path = LOGHUB / "Linux_2k.log"
    if not path.exists():
        pytest.fail(f"missing test data (expected ../shared/data beside the checkout) {path}")
    lines = [x for x in path.read_text(errors="replace").splitlines() if " sshd(pam_unix)[" in x]
    df = parse(lines)
    assert (df["event.dataset"] == "sshd").all()
    fails = df.filter(pl.col("message").str.starts_with("authentication failure;"))
    assert fails.height > 400
    # this host's sshd logged only through PAM: each line is its attempt's only record
    assert (fails["event.action"] == "ssh_login").all()
    assert (fails["event.outcome"] == "failure").all()
    assert (fails["source.ip"].is_not_null() | fails["source.domain"].is_not_null()).all()
    r = fails.filter(pl.col("user.name").is_not_null()).row(0, named=True)
    assert (r["source.domain"], r["user.name"]) == ("220-135-151-1.hinet-ip.hinet.net", "root")


def test_app_function_standalone() -> None:
    frame = pl.DataFrame(
        {"message": ["Invalid user x from 1.2.3.4", "hello", None], "_app": ["sshd"] * 3}
    )
    out = parse_sshd(frame)
    assert out.height == 3
    assert out["event.action"].to_list() == ["ssh_invalid_user", None, None]
    assert out["source.ip"].to_list() == ["1.2.3.4", None, None]
