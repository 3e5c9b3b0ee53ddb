"""The built-in DNS rules: tunnelling names, NULL queries, NXDOMAIN bursts, TXT volume.

Real captures are decoded in place by `lightsoc ingest` (iodine and dnscat2
tunnels, normal lookups from Zeek's and Chris Sanders' traces); the benign
and DGA domains of the labelled corpus in /work/shared/data/dns become Zeek
dns.log lines as Zeek writes them, for the false-positive count and the
NXDOMAIN burst of a DGA client.
"""

from __future__ import annotations

import csv
import json
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from lightsoc.ingest import ingest
from tests.rules.helpers import T0, RuleEnv

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
IODINE = DATA / "dns" / "tunnel" / "iodine_elastic.pcap"
DNSCAT2 = DATA / "dns" / "tunnel" / "dnscat2.pcap"
CORPUS = DATA / "dns" / "dga_labeled.csv"
NORMAL = [
    DATA / "pcap" / "zeek" / "dns53.pcap",
    DATA / "pcap" / "zeek" / "dns_long-connection.pcap",
    DATA / "pcap" / "zeek" / "dns-txt-multiple.pcap",
    DATA / "pcap" / "chrissanders" / "dns.pcap",
    DATA / "pcap" / "chrissanders" / "dns_tcp.pcapng",
    DATA / "pcap" / "chrissanders" / "dns_axfr.pcapng",
    DATA / "pcap" / "chrissanders" / "dns_isp_hijack.pcapng",
]

SUBDOMAIN = "DNS Query With Long or Encoded Subdomain"
NULL_QUERY = "DNS NULL Record Query"
SUBDOMAIN_ID = "14ee6b45-5742-4bf0-bf7d-9944c58809e3"
NULL_ID = "59b01631-f7b7-41d2-a025-760d5a8dffc8"
NXDOMAIN = "bf2bde17-be4f-43a7-bc38-74f37a393c27"
TXT_VOLUME = "18d87ec8-659b-43f1-b748-7c3e2a695050"
TXT_NAMES = "5da9bc05-a240-4957-815b-5e0ee2efb631"
OURS = (SUBDOMAIN_ID, NULL_ID, NXDOMAIN, TXT_VOLUME, TXT_NAMES)
QTYPES = {"A": 1, "NS": 2, "MX": 15, "TXT": 16, "AAAA": 28}


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def dns(
    t: datetime, client: str, name: str, qtype: str = "A", rcode: str = "NOERROR", tid: int = 1
) -> str:
    """A Zeek dns.log JSON line (as `LogAscii::use_json=T` writes it)."""
    answered = rcode == "NOERROR"
    return json.dumps(
        {
            "ts": t.timestamp(),
            "uid": f"D{tid:012d}",
            "id.orig_h": client,
            "id.orig_p": 50000 + tid % 10000,
            "id.resp_h": "10.0.0.53",
            "id.resp_p": 53,
            "proto": "udp",
            "trans_id": tid % 65536,
            "rtt": 0.012,
            "query": name,
            "qclass": 1,
            "qclass_name": "C_INTERNET",
            "qtype": QTYPES[qtype],
            "qtype_name": qtype,
            "rcode": 0 if answered else 3,
            "rcode_name": rcode,
            "AA": False,
            "TC": False,
            "RD": True,
            "RA": True,
            "Z": 0,
            "answers": ["192.0.2.44"] if answered and qtype == "A" else None,
            "TTLs": [300.0] if answered and qtype == "A" else None,
            "rejected": False,
        }
    )


def corpus(label: str) -> list[str]:
    """Domains of the labelled corpus: `benign` (OpenDNS top/random) or `dga`."""
    with CORPUS.open(newline="") as f:
        return [row["domain"] for row in csv.DictReader(f) if row["label"] == label]


def ours(env: RuleEnv) -> list[tuple[str, str]]:
    """(rule name, entity) of every alert raised by the DNS rules."""
    return sorted((a.rule_name, a.entity_value) for a in env.alerts() if a.rule_id in OURS)


def test_iodine_tunnel_capture(rule_env: RuleEnv) -> None:
    """iodine over NULL records: every query is a NULL query; the data-carrying ones are long."""
    summary = ingest(rule_env.config, rule_env.stores, [IODINE]).as_dict()
    assert summary["by_dataset"] == {"dns": 222}
    assert len(rule_env.flagged(NULL_QUERY)) == 222
    # 42 of 222 names carry data in long or binary labels; the rest are short polls
    assert len(rule_env.flagged(SUBDOMAIN)) == 42
    assert ours(rule_env) == [
        ("DNS NULL Record Query", "10.0.2.30"),
        ("DNS Query With Long or Encoded Subdomain", "10.0.2.30"),
        ("DNS TXT Queries For Many Names Under One Domain", "10.0.2.30"),
        ("High Volume of DNS TXT Queries From One Client", "10.0.2.30"),
    ]
    names = rule_env.alerts(TXT_NAMES)[0].description
    assert "dns.question.registered_domain=pirate.sea" in names


def test_dnscat2_tunnel_capture(rule_env: RuleEnv) -> None:
    """dnscat2: a fresh 34-character hex label per message, over TXT, MX and CNAME."""
    ingest(rule_env.config, rule_env.stores, [DNSCAT2])
    flagged = rule_env.flagged(SUBDOMAIN)
    assert len(flagged) == 12
    assert ours(rule_env) == [
        ("DNS Query With Long or Encoded Subdomain", "192.168.1.17"),
        ("DNS TXT Queries For Many Names Under One Domain", "192.168.1.17"),
    ]
    assert "dns.question.registered_domain=biillpi.com" in rule_env.alerts(TXT_NAMES)[0].description


def test_normal_captures_raise_nothing(rule_env: RuleEnv) -> None:
    """Browsing, MX/LOC/PTR/ANY lookups, a DKIM TXT lookup, AXFR, one NXDOMAIN: all quiet."""
    summary = ingest(rule_env.config, rule_env.stores, NORMAL).as_dict()
    assert summary["by_dataset"]["dns"] == 25
    assert rule_env.flagged(SUBDOMAIN) == []
    assert rule_env.flagged(NULL_QUERY) == []
    assert ours(rule_env) == []


def test_benign_domain_corpus_false_positives(rule_env: RuleEnv) -> None:
    """14,858 benign OpenDNS domains, bare and with `www.`: none looks like a tunnel name."""
    benign = corpus("benign")
    assert len(benign) == 14858
    lines = [
        dns(at(i * 0.05), "10.0.0.20", d if i % 2 else f"www.{d}", tid=i)
        for i, d in enumerate(benign)
    ]
    rule_env.ingest(lines)
    assert rule_env.flagged(SUBDOMAIN) == []
    assert ours(rule_env) == []


@pytest.mark.parametrize(
    "name",
    [
        # dns2tcp / DNSExfiltrator style: base32/base64 payload in a 52-character label
        "mzxw6ytboi2dkmzvgq4tenbrgiztgmzsgq2dknzsgiztgmzsgq2d.x.tun.example.net",
        # hex-encoded exfiltration chunk under a registered domain
        "4a6f686e446f653a70617373776f72643132333435363738.exfil.example.org",
    ],
)
def test_encoded_subdomains_in_zeek_log(rule_env: RuleEnv, name: str) -> None:
    rule_env.ingest([dns(at(1), "10.0.0.21", name, "TXT")])
    assert rule_env.flagged(SUBDOMAIN) != []
    assert [a.entity_value for a in rule_env.alerts(SUBDOMAIN_ID)] == ["10.0.0.21"]


def test_long_but_ordinary_names_not_flagged(rule_env: RuleEnv) -> None:
    """Long names made of short labels, GUID-like labels with dashes, long hex registered domains."""
    names = [
        "ec2-54-210-123-45.compute-1.amazonaws.com",
        "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa",
        "3f2504e0-4f89-11d3-9a0c-0305e82c3301.clients.example.com",
        "selector1-contoso-com._domainkey.contoso.onmicrosoft.com",
        "dfdd4c0913aa193a3dd3d20b7645e2a46a3e4.com",
        "www.thisisaverylongbutperfectlyordinarydomainname.com",
    ]
    rule_env.ingest([dns(at(i), "10.0.0.22", n, tid=i) for i, n in enumerate(names)])
    assert rule_env.flagged(SUBDOMAIN) == []


def test_nxdomain_burst_of_a_dga_client(rule_env: RuleEnv) -> None:
    """A client resolving 30 real DGA domains (none registered) within two minutes."""
    dga = corpus("dga")[:30]
    lines = [dns(at(i * 4), "10.0.0.66", d, rcode="NXDOMAIN", tid=i) for i, d in enumerate(dga)]
    lines += [dns(at(i * 4 + 1), "10.0.0.67", "www.example.com", tid=100 + i) for i in range(30)]
    rule_env.ingest(lines)
    alerts = rule_env.alerts(NXDOMAIN)
    assert [a.entity_value for a in alerts] == ["10.0.0.66"]
    assert "value_count 30 " in alerts[0].description


def test_nxdomain_negatives(rule_env: RuleEnv) -> None:
    """Retries of a few dead names, search-suffix misses and a browser's random probes."""
    dead = ["printer.corp.example", "wpad.corp.example", "old-share.corp.example"]
    lines = [dns(at(i * 2), "10.0.0.30", dead[i % 3], rcode="NXDOMAIN", tid=i) for i in range(60)]
    probes = ["qwhdlsjrk", "zmbvnaeoq", "ptyxhzwuw"]  # Chrome's interception probes
    lines += [
        dns(at(200 + i), "10.0.0.31", f"{p}.corp.example", rcode="NXDOMAIN", tid=200 + i)
        for i, p in enumerate(probes)
    ]
    lines += [
        dns(at(210 + i), "10.0.0.31", f"host{i}.example.com.corp.example", rcode="NXDOMAIN")
        for i in range(10)
    ]
    rule_env.ingest(lines)
    assert ours(rule_env) == []


def test_txt_polling_volume(rule_env: RuleEnv) -> None:
    """A TXT-based C2 polling one name every three seconds for four minutes."""
    lines = [dns(at(i * 3), "10.0.0.70", "cmd.update-check.net", "TXT", tid=i) for i in range(80)]
    rule_env.ingest(lines)
    assert ours(rule_env) == [("High Volume of DNS TXT Queries From One Client", "10.0.0.70")]


def test_txt_negatives(rule_env: RuleEnv) -> None:
    """A mail server's SPF, DKIM and DMARC lookups for a few sender domains."""
    names = []
    for d in ["gmail.com", "outlook.com", "example.org"]:
        names += [d, f"_dmarc.{d}", f"selector1._domainkey.{d}", f"selector2._domainkey.{d}"]
    lines = [dns(at(i * 5), "10.0.0.25", names[i % 12], "TXT", tid=i) for i in range(36)]
    lines += [
        dns(at(i * 5 + 1), "10.0.0.25", "_spf.google.com", "TXT", tid=100 + i) for i in range(5)
    ]
    rule_env.ingest(lines)
    assert ours(rule_env) == []


def eve_txt(t: datetime, client: str, name: str, flow: int, answer: bool) -> str:
    """A Suricata eve.json dns query or answer record (eve dns v2) for a TXT lookup."""
    dns_part: dict = {"type": "query", "id": flow % 65536, "rrname": name, "rrtype": "TXT"}
    if answer:
        dns_part = {
            "version": 2,
            "type": "answer",
            "id": flow % 65536,
            "flags": "8180",
            "qr": True,
            "rd": True,
            "ra": True,
            "rrname": name,
            "rrtype": "TXT",
            "rcode": "NOERROR",
            "answers": [{"rrname": name, "rrtype": "TXT", "ttl": 60, "rdata": "v=spf1 -all"}],
        }
    return json.dumps(
        {
            "timestamp": t.strftime("%Y-%m-%dT%H:%M:%S.%f+0000"),
            "flow_id": 1_000_000 + flow,
            "event_type": "dns",
            "src_ip": client,
            "src_port": 40000 + flow % 20000,
            "dest_ip": "10.0.0.53",
            "dest_port": 53,
            "proto": "UDP",
            "dns": dns_part,
            "host": "sensor1",
        }
    )


def test_txt_volume_counts_suricata_query_and_answer_once(rule_env: RuleEnv) -> None:
    """Suricata logs each lookup twice (query, answer): 50 lookups stay below 60, 65 do not."""
    lines = []
    for client, n in (("10.0.0.80", 50), ("10.0.0.81", 65)):
        for i in range(n):
            t = at(i * 4)
            flow = int(client.rsplit(".", 1)[1]) * 1000 + i
            lines += [eve_txt(t, client, "cmd.update-check.net", flow, answer=False)]
            lines += [
                eve_txt(t + timedelta(milliseconds=20), client, "cmd.update-check.net", flow, True)
            ]
    summary = rule_env.ingest(lines)
    assert summary["by_dataset"] == {"suricata.dns": 230}
    assert ours(rule_env) == [("High Volume of DNS TXT Queries From One Client", "10.0.0.81")]
