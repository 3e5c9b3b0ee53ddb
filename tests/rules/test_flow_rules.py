"""Flow-based service brute force (rules/flows/net_service_bruteforce.yml).

Flows are nfdump `-o csv` lines as nfdump 1.7 prints what softflowd exported
(a client record and the server's reply record per TCP connection), and Zeek
conn.log JSON lines; the real parsers read them, the correlation pass counts
connections per client and server.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta

from tests.rules.helpers import T0, RuleEnv

SSH_BRUTE = "402f3eb9-9d14-4174-a403-0ce374d0d22c"
FTP_BRUTE = "1d75722e-37f3-4f20-b37f-ebafe9b91939"
_TAIL = (
    "0,0,0,0,0,0,0,0,0.0.0.0,0.0.0.0,0,0,00:00:00:00:00:00,00:00:00:00:00:00,"
    "00:00:00:00:00:00,00:00:00:00:00:00,0-0-0,0-0-0,0-0-0,0-0-0,0-0-0,0-0-0,0-0-0,0-0-0,"
    "0-0-0,0-0-0,    0.000,    0.000,    0.000,127.0.0.1,0/0,1,2026-11-29 16:49:18.364"
)


def _t(ts: datetime) -> str:
    return ts.strftime("%Y-%m-%d %H:%M:%S")


def nfdump_conn(ts: datetime, client: str, cport: int, server: str, sport: int) -> list[str]:
    """The two unidirectional records of one short TCP connection (client, then reply)."""
    end = ts + timedelta(seconds=4)
    return [
        f"{_t(ts)},{_t(end)},4.072,{client},{server},{cport},{sport},TCP,...AP.SF,0,0,22,3737,{_TAIL}",
        f"{_t(ts)},{_t(end)},4.072,{server},{client},{sport},{cport},TCP,...AP.SF,0,0,15,3124,{_TAIL}",
    ]


def zeek_conn(ts: datetime, client: str, cport: int, server: str, sport: int) -> str:
    return json.dumps(
        {
            "ts": ts.timestamp(),
            "uid": f"C{cport}x{sport}",
            "id.orig_h": client,
            "id.orig_p": cport,
            "id.resp_h": server,
            "id.resp_p": sport,
            "proto": "tcp",
            "service": "ssh" if sport == 22 else "ftp",
            "duration": 3.9,
            "orig_bytes": 1290,
            "resp_bytes": 2270,
            "conn_state": "SF",
            "history": "ShAdDaFf",
            "orig_pkts": 22,
            "resp_pkts": 15,
        }
    )


def burst(n: int, port: int, client: str = "203.0.113.7", server: str = "10.0.0.5") -> list[str]:
    """`n` connections, 5 s apart, like hydra against one service."""
    lines: list[str] = []
    for i in range(n):
        lines += nfdump_conn(T0 + timedelta(seconds=5 * i), client, 40000 + i, server, port)
    return lines


def test_ssh_connection_burst_raises_one_alert_naming_the_client(rule_env: RuleEnv) -> None:
    rule_env.ingest(burst(12, 22), suffix=".csv")
    alerts = rule_env.alerts(SSH_BRUTE)
    assert [(a.entity_type, a.entity_value, a.count) for a in alerts] == [("ip", "203.0.113.7", 12)]
    assert "destination.ip=10.0.0.5" in alerts[0].description
    # single flows only feed the correlation: no flags, no per-flow alerts
    assert rule_env.flagged("Connection To SSH Service") == []
    assert [a.rule_id for a in rule_env.alerts()] == [SSH_BRUTE]


def test_ssh_burst_in_zeek_conn_log(rule_env: RuleEnv) -> None:
    lines = [
        zeek_conn(T0 + timedelta(seconds=20 * i), "198.51.100.23", 50000 + i, "10.0.0.9", 22)
        for i in range(10)
    ]
    rule_env.ingest(lines)
    assert [a.entity_value for a in rule_env.alerts(SSH_BRUTE)] == ["198.51.100.23"]


def test_ftp_connection_burst_raises_alert(rule_env: RuleEnv) -> None:
    rule_env.ingest(burst(25, 21, client="192.0.2.44"), suffix=".csv")
    assert [a.entity_value for a in rule_env.alerts(FTP_BRUTE)] == ["192.0.2.44"]
    assert rule_env.alerts(SSH_BRUTE) == []


def test_few_ssh_sessions_and_server_replies_do_not_alert(rule_env: RuleEnv) -> None:
    """Nine logins of an admin, plus the server's replies (source port 22) to many ports."""
    lines = burst(9, 22, client="10.1.1.10")
    # one server answering 30 clients' sessions: reply records have source port 22
    for i in range(30):
        lines += nfdump_conn(
            T0 + timedelta(seconds=i), f"10.2.0.{i + 1}", 41000 + i, "10.0.0.5", 22
        )
    summary = rule_env.ingest(lines, suffix=".csv")
    assert summary["events"] == len(lines) and summary["parse_failures"] == 0
    assert rule_env.alerts(SSH_BRUTE) == []


def test_other_ports_and_spread_out_sessions_do_not_alert(rule_env: RuleEnv) -> None:
    lines = burst(15, 2222) + burst(15, 20) + burst(40, 443)
    # 12 ssh sessions of one client, but one every 10 minutes: at most 3 per 30 min window
    for i in range(12):
        lines += nfdump_conn(T0 + timedelta(minutes=10 * i), "10.1.1.11", 42000 + i, "10.0.0.6", 22)
    # 19 FTP control connections: below the FTP threshold of 20
    lines += burst(19, 21, client="10.1.1.12")
    summary = rule_env.ingest(lines, suffix=".csv")
    assert summary["events"] == len(lines) and summary["parse_failures"] == 0
    assert rule_env.alerts(SSH_BRUTE) == []
    assert rule_env.alerts(FTP_BRUTE) == []
