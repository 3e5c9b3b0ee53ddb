"""The built-in network rules: vertical/horizontal port scans and floods per destination.

Positive cases replay real Zeek conn logs of nmap scans (Stratosphere) in
place from /work/shared/data, and iptables/UFW or Zeek conn lines as the
kernel and Zeek write them where no capture exists (a SYN flood). Negative
cases are ordinary traffic that looks similar: a client using a few ports
of a server many times, a server's replies to ephemeral ports, a browser
reaching tens of web servers, a busy but normal web server.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

from lightsoc.ingest import ingest
from tests.rules.helpers import T0, RuleEnv

DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "flows" / "stratosphere"
#: nmap from 192.168.1.9 against scanme.nmap.org (45.33.32.156), Zeek JSON conn.log
VERTICAL_LOG = DATA / "port-scans" / "vertical" / "conn.log"
#: 172.16.1.11 running nmap host discovery and port scans over three networks (README)
SCENARIO_LOG = DATA / "002-zeek-scenario-port-scanning" / "conn.log"

BASE_SCAN = "Connection Attempt Counted For Port Scans"
BASE_FLOOD = "Flow Counted For Flood Detection"
VERTICAL = "2afbf954-4b84-4b1c-a4c0-bbc70f01840d"
HORIZONTAL = "6cc521d1-3ae9-4294-a986-dae0107bf25b"
FLOOD = "ae6687ba-347c-4b2c-849a-233b00334af4"
DISTRIBUTED = "37b12cad-12cb-440e-a3f4-cda2b1b0785b"
CLOSED_PORTS = "d7c7746f-7d7c-4d6a-9918-ae9cf23cb440"
BASE_FAILED = "Unanswered Or Refused Connection Counted For Port Scans"
OURS = (VERTICAL, HORIZONTAL, FLOOD, DISTRIBUTED, CLOSED_PORTS)
#: Argus flows: 10.8.0.69 probing ports 999..980 of 14.1.11.113 in 20 s, then an ICMP sweep
ARGUS_SCAN = DATA / "test11-portscan.binetflow"
#: 41 Zeek conns of one infected host, mostly completed HTTP requests to 25 web servers
BOT_HTTP_LOG = DATA / "port-scans" / "horizontal" / "conn.log"
#: NjRAT-infected host and background traffic (Stratosphere CTU-Malware-Capture-Botnet-230-1)
MALWARE_LOG = DATA / "001-zeek-scenario-malicious" / "conn.log"


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def conn(
    t: datetime,
    src: str,
    dst: str,
    dport: int,
    sport: int = 40000,
    proto: str = "tcp",
    state: str = "S0",
) -> str:
    """A Zeek conn.log JSON line (as `LogAscii::use_json=T` writes it)."""
    established = state == "SF"
    return json.dumps(
        {
            "ts": t.timestamp(),
            "uid": f"C{t:%H%M%S%f}{sport}{dport}",
            "id.orig_h": src,
            "id.orig_p": sport,
            "id.resp_h": dst,
            "id.resp_p": dport,
            "proto": proto,
            "duration": 0.2 if established else None,
            "orig_bytes": 420 if established else 0,
            "resp_bytes": 5120 if established else 0,
            "conn_state": state,
            "local_orig": True,
            "local_resp": False,
            "missed_bytes": 0,
            "history": "ShADadFf" if established else "S",
            "orig_pkts": 8 if established else 1,
            "orig_ip_bytes": 840 if established else 60,
            "resp_pkts": 7 if established else 0,
            "resp_ip_bytes": 5500 if established else 0,
        }
    )


def ufw(t: datetime, src: str, spt: int, dst: str, dpt: int, prefix: str = "[UFW BLOCK]") -> str:
    """A kernel netfilter LOG line (UFW) as rsyslog writes it with an ISO timestamp."""
    return (
        f"{t.strftime('%Y-%m-%dT%H:%M:%S.%f+00:00')} fw1 kernel: [123456.789012] {prefix} "
        "IN=eth0 OUT= MAC=52:54:00:12:34:56:52:54:00:65:43:21:08:00 "
        f"SRC={src} DST={dst} LEN=60 TOS=0x00 PREC=0x00 TTL=52 ID=54321 DF "
        f"PROTO=TCP SPT={spt} DPT={dpt} WINDOW=29200 RES=0x00 SYN URGP=0"
    )


def ours(env: RuleEnv) -> list[tuple[str, str]]:
    """(rule name, entity) of every alert raised by the network rules."""
    return sorted((a.rule_name, a.entity_value) for a in env.alerts() if a.rule_id in OURS)


def test_base_rules_flag_no_single_flow(rule_env: RuleEnv) -> None:
    """The counting rules only feed correlations: stored flows carry no rule.name."""
    rule_env.ingest([conn(at(i), "10.0.0.5", "10.0.0.9", 443, 40000 + i) for i in range(30)])
    assert rule_env.flagged(BASE_SCAN) == []
    assert rule_env.flagged(BASE_FLOOD) == []


def test_vertical_scan_real_nmap_conn_log(rule_env: RuleEnv) -> None:
    summary = ingest(rule_env.config, rule_env.stores, [VERTICAL_LOG]).as_dict()
    assert summary["by_dataset"] == {"zeek.conn": 50}
    alerts = rule_env.alerts(VERTICAL)
    assert [a.entity_value for a in alerts] == ["192.168.1.9"]
    # 37 distinct ports below 32768 to scanme.nmap.org in one minute
    assert "destination.ip=45.33.32.156" in alerts[0].description
    assert "value_count 37 " in alerts[0].description
    assert rule_env.alerts(HORIZONTAL) == []
    assert rule_env.flagged(BASE_SCAN) == []


def test_scan_scenario_names_only_the_scanner(rule_env: RuleEnv) -> None:
    """4,504 Zeek flows of nmap sweeps and port scans: both scans, nothing else, one scanner."""
    ingest(rule_env.config, rule_env.stores, [SCENARIO_LOG])
    assert ours(rule_env) == [
        ("Horizontal Port Scan", "172.16.1.11"),
        ("Vertical Port Scan", "172.16.1.11"),
        ("Vertical Port Scan Of Closed Or Filtered Ports", "172.16.1.11"),
    ]
    assert all("source.ip=172.16.1.11" in a.description for a in rule_env.alerts(HORIZONTAL))


def test_vertical_scan_from_firewall_log(rule_env: RuleEnv) -> None:
    """A SYN scan of 25 ports blocked by UFW, one probe every second."""
    ports = [21, 22, 23, 25, 53, 80, 110, 111, 135, 139, 143, 443, 445, 993, 995]
    ports += [1433, 1723, 3306, 3389, 5432, 5900, 6379, 8080, 8443, 9200]
    lines = [ufw(at(i), "203.0.113.66", 61000, "192.0.2.10", p) for i, p in enumerate(ports)]
    summary = rule_env.ingest(lines)
    assert summary["by_dataset"] == {"iptables": 25}
    alerts = rule_env.alerts(VERTICAL)
    assert [a.entity_value for a in alerts] == ["203.0.113.66"]
    assert "destination.ip=192.0.2.10" in alerts[0].description


def test_vertical_scan_negatives(rule_env: RuleEnv) -> None:
    """A client using three services often, and a server's replies to many client ports."""
    lines = [
        conn(at(i * 0.25), "10.0.0.5", "10.0.0.9", port, 41000 + i, state="SF")
        for i, port in enumerate([443, 22, 8080] * 60)
    ]
    # unidirectional log of the server's side: its replies to the client's ephemeral ports
    lines += [ufw(at(i), "10.0.0.9", 443, "10.0.0.5", 41000 + i, "[ACCEPT OUT]") for i in range(50)]
    # the same replies towards a client whose ephemeral ports start at 1025 (old BSD/Windows)
    lines += [ufw(at(i), "10.0.0.9", 22, "10.0.0.6", 1025 + i, "[ACCEPT OUT]") for i in range(50)]
    rule_env.ingest(lines)
    assert ours(rule_env) == []


def test_horizontal_scan_synthetic(rule_env: RuleEnv) -> None:
    """A worm-like SMB sweep: 60 hosts of a /24 on 445, unanswered, in 30 seconds."""
    lines = [conn(at(i * 0.5), "10.0.0.66", f"10.0.1.{i + 1}", 445, 50000 + i) for i in range(60)]
    rule_env.ingest(lines)
    alerts = rule_env.alerts(HORIZONTAL)
    assert [a.entity_value for a in alerts] == ["10.0.0.66"]
    assert "destination.port=445" in alerts[0].description
    assert rule_env.alerts(VERTICAL) == []


def test_horizontal_scan_negatives(rule_env: RuleEnv) -> None:
    """A browser reaching 40 web servers and a client using 10 DNS servers in one minute."""
    lines = [
        conn(at(i), "10.0.0.7", f"93.184.{i}.34", 443, 42000 + i, state="SF") for i in range(40)
    ]
    lines += [
        conn(at(i), "10.0.0.7", f"198.51.100.{i}", 53, 43000 + i, proto="udp", state="SF")
        for i in range(10)
    ]
    rule_env.ingest(lines)
    assert ours(rule_env) == []


def test_syn_flood_towards_one_server(rule_env: RuleEnv) -> None:
    """3,200 SYNs from 400 (spoofed) sources to one web server within a minute."""
    lines = [
        ufw(at(i * 0.018), f"198.18.{i % 400 // 200}.{i % 200 + 1}", 1024 + i, "192.0.2.80", 80)
        for i in range(3200)
    ]
    rule_env.ingest(lines)
    assert ours(rule_env) == [
        ("Connection Flood Towards One Destination", "192.0.2.80"),
        ("Distributed Flood Towards One Destination", "192.0.2.80"),
    ]
    assert "destination.ip=192.0.2.80" in rule_env.alerts(FLOOD)[0].description


def test_busy_server_is_no_flood(rule_env: RuleEnv) -> None:
    """150 clients opening ten connections each to a web server within one minute."""
    lines = [
        conn(
            at(i * 0.04),
            f"10.2.{i % 150 // 100}.{i % 100 + 1}",
            "10.0.0.80",
            443,
            40000 + i,
            "tcp",
            "SF",
        )
        for i in range(1500)
    ]
    rule_env.ingest(lines)
    assert ours(rule_env) == []


def test_closed_port_scan_split_by_the_window_real_argus(rule_env: RuleEnv) -> None:
    """20 ports in 20 s across a minute boundary (13 + 7): only the closed-port rule sees it."""
    summary = ingest(rule_env.config, rule_env.stores, [ARGUS_SCAN]).as_dict()
    assert summary["parse_failures"] == 0
    alerts = rule_env.alerts(CLOSED_PORTS)
    assert [a.entity_value for a in alerts] == ["10.8.0.69"]
    assert "destination.ip=14.1.11.113" in alerts[0].description
    assert "value_count 13 " in alerts[0].description
    assert rule_env.alerts(VERTICAL) == [] and rule_env.flagged(BASE_FAILED) == []


def test_closed_port_scan_from_zeek_and_firewall(rule_env: RuleEnv) -> None:
    """12 refused ports in Zeek, 11 UFW-blocked ports: below the 20 of Vertical Port Scan."""
    lines = [
        conn(at(i * 2), "10.0.0.66", "10.0.0.9", port, 50000 + i, state="REJ")
        for i, port in enumerate([21, 23, 25, 110, 135, 139, 445, 1433, 3306, 3389, 5900, 8080])
    ]
    ports = [22, 23, 80, 111, 443, 445, 2049, 3306, 5432, 6379, 9200]
    lines += [ufw(at(i), "203.0.113.66", 61000, "192.0.2.10", p) for i, p in enumerate(ports)]
    rule_env.ingest(lines)
    assert ours(rule_env) == [
        ("Vertical Port Scan Of Closed Or Filtered Ports", "10.0.0.66"),
        ("Vertical Port Scan Of Closed Or Filtered Ports", "203.0.113.66"),
    ]


def test_closed_port_scan_negatives(rule_env: RuleEnv) -> None:
    """Retries of one dead port, 9 failed ports, 15 answered ports, unanswered UDP to 15 ports."""
    lines = [conn(at(i), "10.0.0.5", "10.0.0.9", 8443, 40000 + i) for i in range(40)]
    lines += [conn(at(i), "10.0.0.6", "10.0.0.9", 1000 + i, 41000 + i) for i in range(9)]
    lines += [
        conn(at(i), "10.0.0.7", "10.0.0.9", 2000 + i, 42000 + i, state="SF") for i in range(15)
    ]
    lines += [
        conn(at(i), "10.0.0.8", "10.0.0.9", 3000 + i, 43000 + i, proto="udp") for i in range(15)
    ]
    rule_env.ingest(lines)
    assert ours(rule_env) == []


def test_real_malware_and_bot_http_traffic_is_no_scan(rule_env: RuleEnv) -> None:
    """NjRAT's C2 retries (237 S0 to one port) and a bot's HTTP requests to 25 web servers.

    The "horizontal" sample reaches 25 hosts on port 80 in 32 s, but 15 of them answered
    full HTTP exchanges (200-850 byte requests, up to 50 KB back); only 10 hosts never
    answered: it is a bot's web traffic, not a sweep, and no scan rule should fire.
    """
    ingest(rule_env.config, rule_env.stores, [MALWARE_LOG, BOT_HTTP_LOG])
    assert ours(rule_env) == []
