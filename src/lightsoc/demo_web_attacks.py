"""Web attacks injected into the ``lightsoc demo`` traffic.

SQL injection (sqlmap and manual), XSS, path traversal, two scanner bursts,
sensitive-file probes and web-shell probes, each from one to three attacker IPs.
Payloads come from the shared payload lists when present (a fixed-seed sample),
else from a small built-in list. Every attack request carries ``Hit.kind``.
"""

from __future__ import annotations

import os
import random
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, quote_plus

from lightsoc.demo_web import DOCS_HOST, SHOP_HOST, Hit, ip_from_prefix

SQLMAP_UA = "sqlmap/1.8.4#stable (https://sqlmap.org)"
NIKTO_UA = "Mozilla/5.00 (Nikto/2.1.6) (Evasions:None) (Test:{:06d})"
GOBUSTER_UA = "gobuster/3.6"
OLD_CHROME_UA = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/81.0.4044.129 Safari/537.36"
)
FIREFOX_UA = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:125.0) Gecko/20100101 Firefox/125.0"

BUILTIN_SQLI = (
    "' OR '1'='1",
    "1' OR 1=1-- ",
    "1 UNION ALL SELECT NULL,NULL,NULL-- -",
    "1' AND SLEEP(5)-- ",
    "admin'--",
    "1; DROP TABLE users--",
    "' UNION SELECT username, password FROM users--",
    "1 AND 1=2",
)
BUILTIN_XSS = (
    "<script>alert(1)</script>",
    '"><svg onload=alert(document.domain)>',
    "<img src=x onerror=alert(1)>",
    "javascript:alert(document.cookie)",
    "<iframe src=javascript:alert(1)>",
)
BUILTIN_TRAVERSAL = (
    "../../../../etc/passwd",
    "..%2f..%2f..%2f..%2fetc%2fpasswd",
    "%2e%2e%2f%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    "....//....//....//etc/passwd",
    "..\\..\\..\\windows\\win.ini",
)
SENSITIVE_PATHS = (
    "/.env",
    "/.git/config",
    "/.git/HEAD",
    "/wp-config.php.bak",
    "/wp-config.php~",
    "/phpinfo.php",
    "/info.php",
    "/server-status",
    "/.aws/credentials",
    "/config.json",
    "/.DS_Store",
    "/backup.sql",
    "/db.sql",
    "/.htpasswd",
    "/.svn/entries",
    "/api/.env",
    "/laravel/.env",
    "/.vscode/sftp.json",
)
WEBSHELL_PATHS = (
    "/shell.php?cmd=id",
    "/wp-content/uploads/2024/05/shell.php?cmd=whoami",
    "/uploads/cmd.php",
    "/c99.php",
    "/r57.php",
    "/wso.php",
    "/alfa.php",
    "/up.php",
    "/images/1.php?cmd=uname+-a",
    "/wp-content/plugins/wp-file-manager/lib/php/connector.minimal.php",
    "/b374k.php",
    "/indoxploit.php",
    "/.well-known/shell.php",
    "/cgi-bin/test.cgi?cmd=id",
)
SCAN_WORDS = (
    "admin",
    "administrator",
    "phpmyadmin",
    "pma",
    "myadmin",
    "wp-admin",
    "wp-login",
    "manager/html",
    "console",
    "actuator",
    "jenkins",
    "cpanel",
    "webadmin",
    "adminer",
    "admin-console",
    "siteadmin",
    "controlpanel",
    "dashboard",
    "backend",
    "cms",
    "joomla/administrator",
    "user/login",
    "login",
    "portal",
    "setup",
    "install",
    "solr/admin",
    "axis2/axis2-admin",
    "jmx-console",
    "web-console",
    "invoker",
    "phpPgAdmin",
    "sqladmin",
    "mysql",
    "dbadmin",
    "webmail",
    "owa",
    "test",
    "old",
    "bak",
    "tmp",
    "cgi-bin/admin",
    "admin2",
    "moderator",
    "panel",
    "system",
    "sysadmin",
    "root",
    "_admin",
    "hudson",
    "zabbix",
    "nagios",
    "grafana/login",
)
SCAN_EXTS = ("", "/", ".php", ".asp", ".aspx", ".jsp", ".html", ".bak", ".old")
TRAVERSAL_FILES = (
    "etc/passwd",
    "etc/passwd",
    "etc/shadow",
    "etc/hosts",
    "proc/self/environ",
    "windows/win.ini",
)


@dataclass(frozen=True)
class Payloads:
    """Attack strings used by the generator and where they came from."""

    sqli: tuple[str, ...]
    xss: tuple[str, ...]
    traversal: tuple[str, ...]
    source: str  # "files:<dir>" or "builtin"


def default_payload_dir() -> Path | None:
    """``$LIGHTSOC_PAYLOADS`` or ``../shared/data/web/payloads`` next to the checkout."""
    env = os.environ.get("LIGHTSOC_PAYLOADS")
    candidates = [Path(env)] if env else []
    candidates += [
        Path(__file__).resolve().parents[3] / "shared/data/web/payloads",
        Path.cwd().parent / "shared/data/web/payloads",
    ]
    for c in candidates:
        if c.is_dir():
            return c
    return None


def _read(directory: Path, names: tuple[str, ...]) -> list[str]:
    out: list[str] = []
    for name in names:
        p = directory / name
        if p.is_file():
            text = p.read_bytes().decode("utf-8", errors="replace")
            out.extend(s.rstrip() for s in text.splitlines())
    return [
        s
        for s in out
        if 4 <= len(s.strip()) and len(s) <= 160 and all(32 <= ord(ch) < 127 for ch in s)
    ]


_SQL_RE = re.compile(r"(?i)\b(select|union|sleep|benchmark|waitfor|or|and|order\s+by|having)\b")
_XSS_RE = re.compile(r"(?i)(<[a-z]|javascript:).*(alert|prompt|confirm)")


def load_payloads(rng: random.Random, directory: Path | None) -> Payloads:
    """A fixed-seed sample of payloads from ``directory`` or the built-in lists."""
    if directory is None or not directory.is_dir():
        return Payloads(BUILTIN_SQLI, BUILTIN_XSS, BUILTIN_TRAVERSAL, "builtin")
    sqli = sorted(
        {
            s
            for s in _read(directory, ("SQL_Injection.txt",))
            if not s.startswith("#") and "<" not in s and _SQL_RE.search(s)
        }
    )
    xss = sorted(
        {
            s
            for s in _read(directory, ("xss-payloadbox.txt", "XSS_Injection.txt"))
            if _XSS_RE.search(s)
        }
    )
    trav = []
    for s in _read(directory, ("Directory_Traversal.txt",)):
        low = s.lower()
        if any(ch in s for ch in ' "#') or not ("../" in s or "..%2f" in low or "%2e%2e" in low):
            continue
        if "{FILE}" in s or "passwd" in low:
            trav.append(s)
    trav = sorted(set(trav))
    if not (sqli and xss and trav):
        return Payloads(BUILTIN_SQLI, BUILTIN_XSS, BUILTIN_TRAVERSAL, "builtin")
    pick_t = [
        s.replace("{FILE}", rng.choice(TRAVERSAL_FILES))
        for s in rng.sample(trav, min(30, len(trav)))
    ]
    return Payloads(
        tuple(rng.sample(sqli, min(60, len(sqli)))),
        tuple(rng.sample(xss, min(40, len(xss)))),
        tuple(BUILTIN_TRAVERSAL[:2]) + tuple(pick_t),
        f"files:{directory}",
    )


def _glue(value: str, payload: str) -> str:
    """Append a payload to a parameter value, with a space before bare keywords."""
    return value + (" " if payload[:1].isalnum() else "") + payload


def _enc(rng: random.Random, payload: str) -> str:
    """Percent-encode a payload as sqlmap (everything) or a browser (spaces as '+') would."""
    if rng.random() < 0.6:
        return quote(payload, safe="")
    return quote_plus(payload, safe="'()*,!")


def _sqlmap_generated(rng: random.Random) -> str:
    n, m = rng.randint(1000, 9999), rng.randint(1000, 9999)
    tag = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(4))
    return rng.choice(
        (
            f" AND {n}={n}",
            f" AND {n}={m}",
            f"' AND {n}={n} AND '{tag}'='{tag}",
            f") AND {n}={n} AND ({m}={m}",
            f"' AND SLEEP(5) AND '{tag}'='{tag}",
            f" UNION ALL SELECT NULL,NULL,CONCAT(0x71767a7171,0x{n:x},0x7178627a71)-- -",
            f" AND (SELECT {n} FROM (SELECT(SLEEP(5))){tag})",  # noqa: S608 (attack payload)
            f"' OR NOT {n}={m}-- {tag}",
            f" AND EXTRACTVALUE({n},CONCAT(0x5c,0x7178627a71,(SELECT (ELT({n}={n},1)))))",
        )
    )


class AttackWriter:
    """Places each attack at a fixed fraction of the window and records its hits."""

    def __init__(self, rng: random.Random, start: float, end: float, payloads: Payloads) -> None:
        self.rng, self.start, self.end, self.p = rng, start, end, payloads
        self.hits: list[Hit] = []

    def at(self, fraction: float, duration: float) -> float:
        """Start time of a burst of ``duration`` s placed at ``fraction`` of the window."""
        room = max(0.0, self.end - self.start - duration)
        return self.start + room * fraction + self.rng.uniform(0, min(300.0, room * 0.02))

    def add(
        self,
        kind: str | None,
        ts: float,
        server: str,
        ip: str,
        target: str,
        status: int,
        size: int,
        ua: str,
        ref: str = "-",
        method: str = "GET",
    ) -> None:
        self.hits.append(Hit(ts, server, ip, method, target, status, size, ref, ua, kind=kind))

    def sqli(self) -> None:
        """sqlmap against the product API, and a manual attempt via the search box."""
        rng = self.rng
        ip = f"185.220.101.{rng.randint(2, 60)}"  # a Tor exit
        t = self.at(0.55, 600)
        self.add(
            None,
            t - 5,
            "web1",
            ip,
            "/api/products?category=laptops&sort=price",
            200,
            4211,
            SQLMAP_UA,
        )
        for i in range(rng.randint(160, 220)):
            param = "category" if i < 110 else "sort"
            payload = rng.choice(self.p.sqli) if rng.random() < 0.4 else _sqlmap_generated(rng)
            q = (
                f"category={quote(_glue('laptops', payload), safe='')}&sort=price"
                if param == "category"
                else f"category=laptops&sort={quote(_glue('price', payload), safe='')}"
            )
            status = 500 if rng.random() < 0.2 else 200
            size = 189 if status == 500 else rng.randint(300, 4300)
            self.add("sqli", t, "web1", ip, f"/api/products?{q}", status, size, SQLMAP_UA)
            t += rng.uniform(0.5, 4.5)
        ip2 = ip_from_prefix(rng, 103, 215, 215)
        t = self.at(0.38, 1800)
        ref = f"https://{SHOP_HOST}/"
        for page in ("/", "/search?q=laptop", "/products/1007"):
            self.add(None, t, "web2", ip2, page, 200, rng.randint(12_000, 40_000), FIREFOX_UA, ref)
            t += rng.uniform(10, 40)
        for _ in range(rng.randint(12, 20)):
            payload = rng.choice(self.p.sqli)
            target = (
                f"/search?q={_enc(rng, _glue('laptop', payload))}"
                if rng.random() < 0.7
                else f"/products/1007?variant={_enc(rng, _glue('2', payload))}"
            )
            self.add(
                "sqli",
                t,
                "web2",
                ip2,
                target,
                rng.choice((200, 200, 500)),
                rng.randint(200, 30_000),
                FIREFOX_UA,
                ref,
            )
            t += rng.uniform(20, 150)

    def xss(self) -> None:
        """Reflected-XSS probing of the shop search and the docs contact form."""
        rng = self.rng
        for ip, server, frac, path in (
            (ip_from_prefix(rng, 146, 70, 70), "web1", 0.30, "/search?q="),
            (ip_from_prefix(rng, 116, 110, 110), "web3", 0.70, "/contact?name="),
        ):
            t = self.at(frac, 1200)
            host = SHOP_HOST if server == "web1" else DOCS_HOST
            for _ in range(rng.randint(18, 35)):
                target = path + _enc(rng, rng.choice(self.p.xss))
                self.add(
                    "xss",
                    t,
                    server,
                    ip,
                    target,
                    200,
                    rng.randint(9_000, 30_000),
                    OLD_CHROME_UA,
                    f"https://{host}/",
                )
                t += rng.uniform(5, 60)

    def traversal(self) -> None:
        """LFI via a download parameter, and CVE-2021-41773 style probes on apache."""
        rng = self.rng
        ip = ip_from_prefix(rng, 159, 89, 89)
        t = self.at(0.45, 900)
        for _ in range(rng.randint(25, 35)):
            param = rng.choice(("/static/download?file=", "/api/export?template="))
            status = rng.choice((400, 404, 404, 200))
            self.add(
                "path_traversal",
                t,
                "web1",
                ip,
                param + rng.choice(self.p.traversal),
                status,
                rng.randint(150, 900),
                "python-requests/2.31.0",
            )
            t += rng.uniform(2, 30)
        ip2 = f"91.240.118.{rng.randint(2, 254)}"
        t = self.at(0.82, 300)
        for target in (
            "/cgi-bin/.%2e/.%2e/.%2e/.%2e/etc/passwd",
            "/cgi-bin/.%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
            "/icons/.%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
            "/cgi-bin/%%32%65%%32%65/%%32%65%%32%65/%%32%65%%32%65/etc/passwd",
            "/docs/../../../../etc/passwd",
            "/downloads/..%2f..%2f..%2fetc%2fpasswd",
            "/cgi-bin/.%2e/.%2e/.%2e/.%2e/bin/sh",
        ):
            method = "POST" if target.endswith("/bin/sh") else "GET"
            self.add(
                "path_traversal",
                t,
                "web3",
                ip2,
                target,
                rng.choice((400, 403, 404)),
                226,
                "curl/7.88.1",
                method=method,
            )
            t += rng.uniform(1, 20)

    def scanners(self) -> None:
        """A nikto burst against web2 and a gobuster burst against web3."""
        rng = self.rng
        paths = [f"/{w}{e}" for w in SCAN_WORDS for e in SCAN_EXTS]
        for ip, server, frac, n, ua in (
            (ip_from_prefix(rng, 89, 248, 248), "web2", 0.25, rng.randint(380, 460), NIKTO_UA),
            (ip_from_prefix(rng, 178, 128, 128), "web3", 0.66, rng.randint(280, 340), GOBUSTER_UA),
        ):
            t = self.at(frac, 300)
            for i, path in enumerate(rng.sample(paths, n)):
                status = 404 if rng.random() < 0.94 else rng.choice((403, 301, 401))
                agent = ua.format(i + 1) if "{" in ua else ua
                self.add(
                    "scanner",
                    t,
                    server,
                    ip,
                    path,
                    status,
                    153 if status == 404 else 196,
                    agent,
                    method="HEAD" if "Nikto" in ua and i % 7 == 0 else "GET",
                )
                t += rng.uniform(0.05, 0.9)

    def sensitive(self) -> None:
        """Internet-wide sensitive-file sweeps; web2 leaks its ``/.git/config``."""
        rng = self.rng
        for ip, frac, ua in (
            (ip_from_prefix(rng, 167, 99, 99), 0.12, OLD_CHROME_UA),
            (ip_from_prefix(rng, 45, 227, 227), 0.48, "Go-http-client/1.1"),
            (f"212.70.149.{rng.randint(2, 254)}", 0.90, "python-requests/2.28.1"),
        ):
            t = self.at(frac, 600)
            servers = rng.sample(("web1", "web2", "web3"), rng.randint(2, 3))
            for path in rng.sample(SENSITIVE_PATHS, rng.randint(8, 14)):
                for server in servers:
                    status, size = 404, 153
                    if path == "/.git/config" and server == "web2":
                        status, size = 200, 292
                    elif path == "/server-status" and server == "web3":
                        status, size = 403, 199
                    self.add("sensitive_file", t, server, ip, path, status, size, ua)
                    t += rng.uniform(0.2, 3)

    def webshell(self) -> None:
        """Probes for left-over web shells."""
        rng = self.rng
        ip = ip_from_prefix(rng, 112, 85, 85)
        t = self.at(0.76, 600)
        for path in rng.sample(WEBSHELL_PATHS, 12):
            server = rng.choice(("web1", "web3"))
            method = "POST" if rng.random() < 0.3 else "GET"
            self.add("webshell", t, server, ip, path, 404, 153, OLD_CHROME_UA, method=method)
            t += rng.uniform(1, 25)


def attacks(rng: random.Random, start: float, end: float, payloads: Payloads) -> list[Hit]:
    """All injected web attacks (plus the attackers' few benign requests)."""
    w = AttackWriter(rng, start, end, payloads)
    w.sqli()
    w.xss()
    w.traversal()
    w.scanners()
    w.sensitive()
    w.webshell()
    return w.hits
