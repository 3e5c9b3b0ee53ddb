"""``mail.log`` for ``lightsoc demo``: RFC 3164 syslog of a postfix + dovecot host.

Office users read mail over IMAP (and a few over POP3) through the day and
send through submission; mail arrives from the internet and is delivered
locally; spam bots try SMTP AUTH now and then. One external IP runs an IMAP
password-guessing campaign against several mailboxes (never succeeding).
Lines look like what postfix 3.x and dovecot 2.3 send to syslog.
"""

from __future__ import annotations

import random
import string
from dataclasses import dataclass
from datetime import UTC, datetime

from lightsoc.demo_web import ip_from_prefix

HOST = "mail1"
MAIL_IP = "10.20.0.25"
DOMAIN = "example.com"
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
USERS = (
    "alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy",
    "mallory", "niaj", "olivia", "peggy", "rupert", "sybil", "trent", "victor", "walter", "wendy",
)  # fmt: skip
POP3_USERS = frozenset({"frank", "walter"})  # old clients that still use POP3
# mailbox names guessers try: some exist, most do not
GUESSED = ("admin", "info", "alice", "bob", "sales", "support", "office", "carol")
REMOTE = ((73, 160, 170), (86, 128, 160), (92, 40, 60))  # users reading mail from home
SPAMBOT = ((45, 155, 155), (141, 98, 98), (80, 94, 94), (193, 56, 56))
SENDERS = (
    ("mail-wr1-f54.google.com", "209.85.221.54", "gmail.com"),
    ("mail-ej1-f43.google.com", "209.85.218.43", "gmail.com"),
    ("mail-dm6nam10on2071.outbound.protection.outlook.com", "40.107.93.71", "outlook.com"),
    ("mta-72-153.sparkpostmail.com", "192.174.86.153", "news.vendor.example"),
    ("a48-112.smtp-out.amazonses.com", "54.240.48.112", "billing.saas.example"),
)
RELAYS = (
    ("gmail-smtp-in.l.google.com", "142.250.102.27", "gmail.com"),
    ("example-org.mail.protection.outlook.com", "52.101.68.3", "partner.example.org"),
    ("mx1.mail.ovh.net", "188.165.36.237", "supplier.example.fr"),
)
_SESS = string.ascii_letters + string.digits + "+/"
_QID = "0123456789ABCDEF"


@dataclass(frozen=True)
class MailTruth:
    """The IMAP guessing run and what the log holds about it."""

    guesser_ip: str
    mailboxes: tuple[str, ...]
    attempts: int  # failed passwords (auth-worker lines)
    connections: int  # imap-login "Disconnected (auth failed ...)" lines
    first: float
    last: float
    users: tuple[str, ...]

    @property
    def failures(self) -> int:
        """Dovecot failure events from the guesser: one per attempt and per connection."""
        return self.attempts + self.connections


def syslog_line(ts: float, tag: str, msg: str) -> bytes:
    """``Mmm dd hh:mm:ss mail1 tag: msg`` in UTC."""
    d = datetime.fromtimestamp(int(ts), UTC)
    return (
        f"{MONTHS[d.month - 1]} {d.day:>2} {d.hour:02d}:{d.minute:02d}:{d.second:02d} "
        f"{HOST} {tag}: {msg}\n"
    ).encode()


class MailLog:
    """Collects ``(ts, line)`` records for mail.log."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.records: list[tuple[float, bytes]] = []
        self.office = {u: f"10.20.{rng.randint(1, 9)}.{rng.randint(10, 250)}" for u in USERS}

    def log(self, ts: float, tag: str, msg: str) -> None:
        self.records.append((ts, syslog_line(ts, tag, msg)))

    def pid(self) -> int:
        return self.rng.randint(2_000, 65_000)

    def session(self) -> str:
        return "".join(self.rng.choice(_SESS) for _ in range(16))

    def qid(self) -> str:
        return "".join(self.rng.choice(_QID) for _ in range(11))

    # -- dovecot -------------------------------------------------------------
    def mail_login(self, t: float, user: str, ip: str) -> None:
        """A successful IMAP/POP3 login and, minutes later, its logout."""
        rng, proto = self.rng, "pop3" if user in POP3_USERS else "imap"
        sess, mpid = self.session(), self.pid()
        self.log(
            t,
            "dovecot",
            f"{proto}-login: Login: user=<{user}>, method=PLAIN, rip={ip}, lip={MAIL_IP}, "
            f"mpid={mpid}, TLS, session=<{sess}>",
        )
        if proto == "pop3":
            n = rng.randint(0, 6)
            self.log(
                t + rng.uniform(0.3, 4),
                "dovecot",
                f"pop3({user})<{mpid}><{sess}>: Disconnected: Logged out top=0/0, retr={n}/"
                f"{n * rng.randint(3_000, 40_000)}, del={n}/{n}, size={rng.randint(10**5, 10**7)}",
            )
        else:
            self.log(
                t + rng.uniform(30, 1800),
                "dovecot",
                f"imap({user})<{mpid}><{sess}>: Logged out in={rng.randint(200, 9_000)} "
                f"out={rng.randint(1_000, 900_000)} deleted=0 expunged=0 trashed=0 "
                f"hdr_count={rng.randint(0, 80)} hdr_bytes={rng.randint(0, 90_000)} "
                f"body_count={rng.randint(0, 20)} body_bytes={rng.randint(0, 400_000)}",
            )

    def imap_failure(
        self, t: float, user: str, ip: str, attempts: int, known: bool, rip_proto: str = "imap"
    ) -> float:
        """One connection with ``attempts`` failed logins; returns its end time."""
        rng, sess = self.rng, self.session()
        worker = rng.randint(3_000, 9_000)
        start = t
        for _ in range(attempts):
            t += rng.uniform(1.5, 4.5)
            why = (
                "pam_authenticate() failed: Authentication failure (Password mismatch?)"
                if known
                else "unknown user"
            )
            self.log(t, "dovecot", f"auth-worker({worker}): pam({user},{ip},<{sess}>): {why}")
        secs = max(1, int(t - start))
        s = "s" if attempts > 1 else ""
        self.log(
            t + 0.3,
            "dovecot",
            f"{rip_proto}-login: Disconnected (auth failed, {attempts} attempt{s} in {secs} secs): "
            f"user=<{user}>, method=PLAIN, rip={ip}, lip={MAIL_IP}, TLS, session=<{sess}>",
        )
        return t + 0.3

    # -- postfix -------------------------------------------------------------
    def inbound(self, t: float) -> None:
        """A message from the internet delivered to a local mailbox."""
        rng = self.rng
        name, ip, dom = rng.choice(SENDERS)
        pid, qid, rcpt = self.pid(), self.qid(), rng.choice(USERS)
        size = rng.randint(3_000, 400_000)
        self.log(t, f"postfix/smtpd[{pid}]", f"connect from {name}[{ip}]")
        self.log(t + 0.4, f"postfix/smtpd[{pid}]", f"{qid}: client={name}[{ip}]")
        self.log(
            t + 0.5,
            f"postfix/cleanup[{self.pid()}]",
            f"{qid}: message-id=<{self.session().replace('/', '_')}@{dom}>",
        )
        self.log(
            t + 0.6,
            "postfix/qmgr[1187]",
            f"{qid}: from=<{rng.choice(('noreply', 'info', 'j.smith', 'billing'))}@{dom}>, "
            f"size={size}, nrcpt=1 (queue active)",
        )
        self.log(
            t + 0.7,
            f"postfix/smtpd[{pid}]",
            f"disconnect from {name}[{ip}] ehlo=2 starttls=1 mail=1 rcpt=1 data=1 quit=1 "
            "commands=7",
        )
        self.log(
            t + 0.8,
            f"postfix/local[{self.pid()}]",
            f"{qid}: to=<{rcpt}@{DOMAIN}>, relay=local, delay=0.8, delays=0.6/0.01/0/0.19, "
            "dsn=2.0.0, status=sent (delivered to mailbox)",
        )
        self.log(t + 0.8, "postfix/qmgr[1187]", f"{qid}: removed")

    def outbound(self, t: float, user: str) -> None:
        """A user sends through submission (SASL) and postfix relays it out."""
        rng, ip = self.rng, self.office[user]
        pid, qid = self.pid(), self.qid()
        mx, mx_ip, dom = rng.choice(RELAYS)
        tag = f"postfix/submission/smtpd[{pid}]"
        self.log(t, tag, f"connect from unknown[{ip}]")
        self.log(
            t + 0.3, tag, f"{qid}: client=unknown[{ip}], sasl_method=PLAIN, sasl_username={user}"
        )
        self.log(
            t + 0.4,
            "postfix/qmgr[1187]",
            f"{qid}: from=<{user}@{DOMAIN}>, size={rng.randint(2_000, 2_000_000)}, nrcpt=1 "
            "(queue active)",
        )
        self.log(
            t + 0.5,
            tag,
            f"disconnect from unknown[{ip}] ehlo=2 starttls=1 auth=1 mail=1 rcpt=1 data=1 quit=1 "
            "commands=8",
        )
        d = rng.uniform(0.8, 3.5)
        self.log(
            t + d,
            f"postfix/smtp[{self.pid()}]",
            f"{qid}: to=<{rng.choice(('sam', 'info', 'orders', 'kim'))}@{dom}>, "
            f"relay={mx}[{mx_ip}]:25, delay={d:.1f}, delays=0.4/0.01/0.2/{d - 0.61:.1f}, "
            "dsn=2.0.0, status=sent (250 2.0.0 OK)",
        )
        self.log(t + d, "postfix/qmgr[1187]", f"{qid}: removed")

    def smtp_auth_bot(self, t: float, ip: str) -> None:
        """A spam bot trying SMTP AUTH once on port 25."""
        tag = f"postfix/smtpd[{self.pid()}]"
        self.log(t, tag, f"connect from unknown[{ip}]")
        self.log(
            t + 2.1,
            tag,
            f"warning: unknown[{ip}]: SASL LOGIN authentication failed: UGFzc3dvcmQ6",
        )
        self.log(t + 2.2, tag, f"lost connection after AUTH from unknown[{ip}]")
        self.log(t + 2.2, tag, f"disconnect from unknown[{ip}] ehlo=1 auth=0/1 commands=1/2")


def _office_hours(t: float) -> bool:
    return 9 <= int((t // 3600 + 8) % 24) < 19  # the office is on UTC+8


def _users(m: MailLog, start: float, end: float) -> None:
    """Mail clients logging in all day, more in office hours; sends and receives."""
    rng = m.rng
    for user in USERS:
        home = ip_from_prefix(rng, *rng.choice(REMOTE))
        t = start + rng.uniform(0, 1800)
        while t < end:
            ip = m.office[user] if _office_hours(t) else home
            m.mail_login(t, user, ip)
            t += rng.uniform(600, 1500) if _office_hours(t) else rng.uniform(3600, 3 * 3600)
        if rng.random() < 0.3:  # a typo on a phone, then the right password
            t = start + rng.uniform(0, end - start - 120)
            t = m.imap_failure(t, user, home, 1, True)
            m.mail_login(t + rng.uniform(5, 20), user, home)
    t = start + rng.uniform(0, 300)
    while t < end:
        m.inbound(t)
        t += rng.uniform(40, 200) if _office_hours(t) else rng.uniform(200, 900)
    t = start + rng.uniform(0, 600)
    while t < end:
        if _office_hours(t):
            m.outbound(t, rng.choice(USERS))
        t += rng.uniform(120, 500)
    for _ in range(max(2, round(30 * (end - start) / 86_400))):
        m.smtp_auth_bot(
            start + rng.uniform(0, end - start - 10), ip_from_prefix(rng, *rng.choice(SPAMBOT))
        )


def _guessing(m: MailLog, start: float, end: float) -> MailTruth:
    """~35 minutes of IMAP password guessing from one IP, several mailboxes in turn."""
    rng = m.rng
    ip = f"185.191.{rng.randint(32, 63)}.{rng.randint(2, 250)}"
    boxes = tuple(rng.sample(GUESSED, 6))
    room = max(0.0, end - start - 2400)
    t = first = start + room * 0.35
    attempts = connections = 0
    for _ in range(rng.randint(70, 80)):
        user = rng.choice(boxes)
        n = rng.randint(1, 3)
        t = m.imap_failure(t, user, ip, n, user in USERS)
        attempts += n
        connections += 1
        t += rng.uniform(8, 25)
    return MailTruth(ip, boxes, attempts, connections, first, t, USERS)


def mail_log(rng: random.Random, start: float, end: float) -> tuple[list[bytes], MailTruth]:
    """The sorted lines of mail.log in ``[start, end)`` and the ground truth."""
    m = MailLog(rng)
    _users(m, start, end)
    truth = _guessing(m, start, end)
    records = sorted((r for r in m.records if start <= r[0] < end), key=lambda r: r[0])
    return [r[1] for r in records], truth
