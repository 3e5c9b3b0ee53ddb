"""The demo traffic generator: deterministic, realistic, and its ground truth is right."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from lightsoc.demo_traffic import DemoFiles, generate

END = datetime(2024, 5, 14, 12, tzinfo=UTC)
WEB = ("web1/access.log", "web2/access.log", "web3/access.log")
WEB_TS = re.compile(rb"\[(\d{2}/\w{3}/\d{4}:\d{2}:\d{2}:\d{2} [+-]\d{4})\]")
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> DemoFiles:
    return generate(tmp_path_factory.mktemp("demo"), end=END)


def _lines(demo: DemoFiles, rel: str) -> list[bytes]:
    return (demo.root / rel).read_bytes().splitlines()


def test_same_seed_and_end_give_identical_bytes(demo: DemoFiles, tmp_path: Path) -> None:
    again = generate(tmp_path / "again", end=END)
    for rel in demo.formats:
        assert (demo.root / rel).read_bytes() == (again.root / rel).read_bytes(), rel
    assert again.attacks == demo.attacks
    assert (again.mail, again.flows, again.dns) == (demo.mail, demo.flows, demo.dns)
    other = generate(tmp_path / "other", end=END, seed=8, hours=2)
    assert (other.root / WEB[0]).read_bytes() != (demo.root / WEB[0]).read_bytes()


def test_files_formats_and_line_counts(demo: DemoFiles) -> None:
    assert sorted(demo.lines) == ["auth.log", "flows.csv", "mail.log", *WEB]
    assert [p.relative_to(demo.root).as_posix() for p in demo.files] == [
        *WEB,
        "auth.log",
        "mail.log",
        "flows.csv",
        "dns.pcap",
    ]
    assert demo.formats["web3/access.log"] == "apache_combined"
    assert demo.formats["mail.log"] == "syslog"
    assert demo.formats["flows.csv"] == "nfdump_csv"
    assert demo.formats["dns.pcap"] == "auto"
    for rel, n in demo.lines.items():
        assert (demo.root / rel).read_bytes().count(b"\n") == n, rel
    web = sum(demo.lines[r] for r in WEB)
    assert 40_000 <= web <= 60_000
    assert demo.lines["auth.log"] > 500
    assert demo.lines["mail.log"] > 3_000
    assert demo.lines["flows.csv"] == demo.flows.flows + 4  # header and 3 summary lines
    assert len(demo.dns.queries) > 5_000


def test_summary_names_every_injected_pattern(demo: DemoFiles) -> None:
    text = demo.summary()
    assert f"dns.pcap           {2 * len(demo.dns.queries)} packets (auto)" in text
    for needle in (
        demo.mail.guesser_ip,
        demo.flows.scanner,
        demo.flows.beacon_host,
        demo.flows.beacon_ip,
        demo.flows.ddos_target,
        demo.dns.dga_host,
        demo.dns.tunnel_domain,
        demo.dns.bad_domain,
        demo.dns.bad_host,
    ):
        assert needle in text, needle


def test_attack_ground_truth_matches_files(demo: DemoFiles) -> None:
    assert set(demo.attacks) == {
        "sqli",
        "xss",
        "path_traversal",
        "scanner",
        "sensitive_file",
        "webshell",
        "ssh_brute_force",
    }
    by_ip: dict[str, int] = {}
    for rel in WEB:
        for line in _lines(demo, rel):
            ip = line.split(b" ", 1)[0].decode()
            by_ip[ip] = by_ip.get(ip, 0) + 1
    for kind, inj in demo.attacks.items():
        assert 1 <= len(inj.ips) <= 3, kind
        assert not set(inj.ips) & set(demo.benign_ips), kind
        if kind in ("xss", "path_traversal", "scanner", "sensitive_file", "webshell"):
            # these attackers send nothing else, so their line count is the attack count
            assert sum(by_ip[ip] for ip in inj.ips) == inj.lines, kind
    assert demo.attacks["scanner"].lines >= 400
    sqli = demo.attacks["sqli"]
    assert sqli.lines <= sum(by_ip[ip] for ip in sqli.ips) <= sqli.lines + 5


def test_attack_signatures_present(demo: DemoFiles) -> None:
    web = b"".join((demo.root / rel).read_bytes() for rel in WEB)
    assert web.count(b'"sqlmap/1.8.4#stable (https://sqlmap.org)"') > 100
    assert b"../" in web and b"..%2f" in web.lower()
    assert b'"GET /.env HTTP/1.1"' in web and b"/.git/config" in web
    assert b"%3Cscript" in web or b"%3Csvg" in web or b"%3Cimg" in web
    assert b"Nikto" in web and b"gobuster" in web
    assert b"/shell.php?cmd=id" in web or b"c99.php" in web
    for rel in WEB:  # benign clients never send attack strings
        for line in _lines(demo, rel):
            if line.split(b" ", 1)[0].decode() in demo.benign_ips:
                assert b"../" not in line and b"/.env" not in line and b"sqlmap" not in line


def test_brute_force_ends_in_login_then_sudo(demo: DemoFiles) -> None:
    bf = demo.brute_force
    lines = [x.decode() for x in _lines(demo, "auth.log")]
    failed = [i for i, x in enumerate(lines) if "Failed password" in x and f"from {bf.ip} " in x]
    invalid = [
        x
        for x in lines
        if x.split(": ", 1)[1].startswith("Invalid user ") and f"from {bf.ip} " in x
    ]
    accepted = [
        i for i, x in enumerate(lines) if f"Accepted password for {bf.user} from {bf.ip} " in x
    ]
    sudo = [i for i, x in enumerate(lines) if " sudo: " in x and f" {bf.user} : " in x]
    assert len(failed) == bf.failures >= 200
    assert invalid and any("Failed password for root" in lines[i] for i in failed)
    assert any("[preauth]" in x and bf.ip in x and "Disconnect" in x for x in lines)
    assert len(accepted) == 1 and accepted[0] > failed[-1]
    assert sudo and min(sudo) > accepted[0]
    assert timedelta(minutes=12) <= bf.success - bf.first_failure <= timedelta(minutes=30)
    assert bf.ip in demo.attacks["ssh_brute_force"].ips
    assert not any(f"Accepted password for {bf.user}" in x for x in lines[: failed[0]])
    assert bf.ip not in demo.ssh_noise_ips


def test_timestamps_inside_window_and_sorted(demo: DemoFiles) -> None:
    for rel in WEB:
        prev = demo.start
        for line in _lines(demo, rel):
            ts = datetime.strptime(WEB_TS.search(line).group(1).decode(), "%d/%b/%Y:%H:%M:%S %z")
            assert demo.start <= ts < demo.end, (rel, line[:80])
            assert ts >= prev
            prev = ts
    prev = demo.start
    for line in _lines(demo, "auth.log"):
        mon, day, hms = line.decode().split()[:3]
        h, m, s = map(int, hms.split(":"))
        ts = datetime(demo.end.year, MONTHS.index(mon) + 1, int(day), h, m, s, tzinfo=UTC)
        assert demo.start <= ts < demo.end and ts >= prev
        prev = ts


def test_messy_lines_are_where_ground_truth_says(demo: DemoFiles) -> None:
    kinds = {m.kind: m for m in demo.messy}
    assert set(kinds) == {"invalid_utf8", "long_url", "crlf", "tls_garbage"}

    def line(kind: str) -> bytes:
        m = kinds[kind]
        return (demo.root / m.file).read_bytes().split(b"\n")[m.line - 1]

    with pytest.raises(UnicodeDecodeError):
        line("invalid_utf8").decode("utf-8")
    assert len(line("long_url")) > 8_000
    assert line("crlf").endswith(b"\r")
    assert sum((demo.root / rel).read_bytes().count(b"\r\n") for rel in demo.lines) == 1
    assert b'"\\x16\\x03\\x01' in line("tls_garbage")


def test_short_window_with_builtin_payloads(tmp_path: Path) -> None:
    d = generate(tmp_path, hours=1, end=END, payload_dir=tmp_path / "missing")
    assert d.payload_source == "builtin"
    assert d.end - d.start == timedelta(hours=1)
    assert set(d.attacks) >= {
        "sqli",
        "xss",
        "path_traversal",
        "scanner",
        "sensitive_file",
        "webshell",
        "ssh_brute_force",
    }
    assert d.brute_force.failures > 100
    web = b"".join((tmp_path / rel).read_bytes() for rel in WEB)
    assert b"sqlmap" in web and b"etc/passwd" in web


def test_end_defaults_to_current_hour(tmp_path: Path) -> None:
    d = generate(tmp_path, hours=1)
    now = datetime.now(UTC)
    assert d.end.minute == d.end.second == 0 and d.end <= now < d.end + timedelta(
        hours=1, minutes=1
    )
