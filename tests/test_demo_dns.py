"""The demo's dns.pcap: every packet decodes in tshark, and names/rcodes are the ground truth."""

from __future__ import annotations

import random
import shutil
import subprocess
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest

from lightsoc.demo_dns import (
    FALLBACK_BAD,
    RESOLVER,
    DnsTruth,
    default_bad_domain_file,
    dga_domains,
    dns_pcap,
    pick_bad_domain,
)

END = datetime(2024, 5, 14, 12, tzinfo=UTC).timestamp()
START = END - 86_400
FIELDS = (
    "frame.number",
    "ip.src",
    "ip.dst",
    "udp.srcport",
    "udp.dstport",
    "dns.id",
    "dns.flags.response",
    "dns.qry.name",
    "dns.qry.type",
    "dns.flags.rcode",
    "dns.count.answers",
    "udp.checksum.status",
    "ip.checksum.status",
    "_ws.malformed",
    "_ws.expert",
)
QTYPES = {"1": "A", "5": "CNAME", "10": "NULL", "16": "TXT", "28": "AAAA"}


@pytest.fixture(scope="module")
def capture(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, DnsTruth]:
    data, truth = dns_pcap(random.Random(4), START, END, default_bad_domain_file())
    path = tmp_path_factory.mktemp("dns") / "dns.pcap"
    path.write_bytes(data)
    return path, truth


@pytest.fixture(scope="module")
def packets(capture: tuple[Path, DnsTruth]) -> list[dict[str, str]]:
    tshark = shutil.which("tshark")
    assert tshark, "tshark is not installed (apt-get install tshark)"
    cmd = [tshark, "-n", "-r", str(capture[0]), "-o", "udp.check_checksum:TRUE"]
    cmd += ["-o", "ip.check_checksum:TRUE", "-T", "fields", "-E", "occurrence=f"]
    for f in FIELDS:
        cmd += ["-e", f]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return [dict(zip(FIELDS, line.split("\t"), strict=True)) for line in out.splitlines()]


def test_every_packet_decodes_cleanly(capture: tuple, packets: list[dict[str, str]]) -> None:
    path, truth = capture
    assert len(packets) == 2 * len(truth.queries)
    assert path.read_bytes()[:4] == bytes.fromhex("d4c3b2a1")  # classic pcap, little-endian
    for p in packets:
        assert p["dns.qry.name"] and p["dns.id"], p
        assert p["udp.checksum.status"] == p["ip.checksum.status"] == "1", p  # 1 = good
        assert not p["_ws.malformed"] and not p["_ws.expert"], p
        assert RESOLVER in (p["ip.src"], p["ip.dst"])
        assert "53" in (p["udp.srcport"], p["udp.dstport"])


def test_names_and_rcodes_equal_ground_truth(capture: tuple, packets: list[dict]) -> None:
    truth: DnsTruth = capture[1]
    queries = [p for p in packets if p["dns.flags.response"] in ("0", "False")]
    answers = [p for p in packets if p["dns.flags.response"] in ("1", "True")]
    expected = Counter((q.client, q.name, q.qtype, q.rcode) for q in truth.queries)
    got = Counter(
        (p["ip.dst"], p["dns.qry.name"], QTYPES[p["dns.qry.type"]], int(p["dns.flags.rcode"]))
        for p in answers
    )
    assert got == expected
    asked = Counter((p["ip.src"], p["dns.qry.name"]) for p in queries)
    assert asked == Counter((q.client, q.name) for q in truth.queries)
    # every query is followed by its answer (same id and client port)
    first: dict[tuple[str, str, str], int] = {}
    for p in queries:
        first[(p["ip.src"], p["udp.srcport"], p["dns.id"])] = int(p["frame.number"])
    for p in answers:
        assert first[(p["ip.dst"], p["udp.dstport"], p["dns.id"])] < int(p["frame.number"])
    nx = [p for p in answers if p["dns.flags.rcode"] == "3"]
    assert all(p["dns.count.answers"] == "0" for p in nx)


def test_dga_host(capture: tuple) -> None:
    truth: DnsTruth = capture[1]
    mine = [q for q in truth.queries if q.client == truth.dga_host]
    assert {q.name for q in mine} == set(truth.dga_domains) and len(truth.dga_domains) >= 300
    nx = sum(q.rcode == 3 for q in mine)
    assert nx >= 0.95 * len(mine)
    assert {q.name for q in mine if q.rcode == 0} == set(truth.dga_resolved)
    for name in truth.dga_domains:
        label, tld = name.split(".")
        assert (
            10 <= len(label) <= 18
            and label.isalpha()
            and tld in ("com", "net", "org", "info", "biz", "ru")
        )
    others = [q for q in truth.queries if q.client != truth.dga_host]
    assert sum(q.rcode == 3 for q in others) == 0  # the DGA host owns the NXDOMAINs
    day = datetime.fromtimestamp(START, UTC)
    assert dga_domains(day, 5) == dga_domains(day, 5) != dga_domains(datetime(2024, 1, 1), 5)


def test_dns_tunnel(capture: tuple) -> None:
    truth: DnsTruth = capture[1]
    tun = [q for q in truth.queries if q.name.endswith("." + truth.tunnel_domain)]
    assert len(tun) == truth.tunnel_queries >= 1_000
    assert {q.client for q in tun} == {truth.tunnel_host}
    assert {q.qtype for q in tun} == {"TXT", "NULL", "CNAME"}
    assert Counter(q.qtype for q in tun).most_common(1)[0][0] == "TXT"
    for q in tun:
        labels = q.name.removesuffix("." + truth.tunnel_domain).split(".")
        assert len(q.name) > 100 and max(len(x) for x in labels) == 63 and len(q.name) <= 253
        assert set("".join(labels)) <= set("abcdefghijklmnopqrstuvwxyz234567")
    assert all(len(q.name) < 60 for q in truth.queries if q.client != truth.tunnel_host)


def test_known_bad_domain(capture: tuple) -> None:
    truth: DnsTruth = capture[1]
    hits = [q for q in truth.queries if q.name == truth.bad_domain]
    assert len(hits) == truth.bad_lookups >= 3
    assert {q.client for q in hits} == {truth.bad_host} and {q.rcode for q in hits} == {0}
    intel = default_bad_domain_file()
    if intel is not None:
        listed = set(intel.read_text(errors="replace").split())
        assert truth.bad_domain in listed and truth.bad_domain_source == intel.name
    else:
        assert (truth.bad_domain, truth.bad_domain_source) == (FALLBACK_BAD, "builtin")


def test_bad_domain_choice(tmp_path: Path) -> None:
    feed = tmp_path / "domains.txt"
    feed.write_text("# comment\n1.2.3.4\nevil-updates.xyz\nsub.deep.example.com\n")
    assert pick_bad_domain(random.Random(1), feed) == ("evil-updates.xyz", "domains.txt")
    assert pick_bad_domain(random.Random(1), tmp_path / "missing") == (FALLBACK_BAD, "builtin")
    data, truth = dns_pcap(random.Random(2), END - 3600, END, tmp_path / "missing")
    assert truth.bad_domain == FALLBACK_BAD and truth.bad_lookups >= 3
    assert len(data) > 24 and truth.tunnel_queries > 100


def test_deterministic(capture: tuple) -> None:
    path, truth = capture
    data, again = dns_pcap(random.Random(4), START, END, default_bad_domain_file())
    assert data == path.read_bytes() and again == truth
