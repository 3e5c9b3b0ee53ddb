"""Flow sections: Zeek's brute-force traces and port scans, as flows.

Packet captures are turned into flows the way a network would: softflowd
reads the capture and exports IPFIX to an nfcapd collector this harness runs
on 127.0.0.1 (a free UDP port), and `nfdump -o csv` prints the flows, which
lightsoc imports with its nfdump parser (`-A milli`: flow times come from the
capture, so the correlation windows see the attack's own timing). Zeek and
Stratosphere connection logs are imported as they are.

- **zeek**: Zeek's test traces of SSH password guessing and FTP brute force,
  with the notice.log Zeek produces on them; lightsoc must raise a brute-force
  alert naming the host the notice names.
- **scans**: a SYN scan capture and Stratosphere's port-scan data; lightsoc
  must raise an alert whose rule title mentions "scan" naming the scanner.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eval.common import DATA, Env, table, target
from lightsoc.alerts.model import Alert

ZEEK = DATA / "pcap" / "zeek"
STRATO = DATA / "flows" / "stratosphere"
TIMEOUT = 60.0


class ToolMissing(RuntimeError):
    """softflowd/nfcapd/nfdump is not installed."""


def _tool(name: str) -> str:
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin:/sbin:/bin")
    if path is None:
        raise ToolMissing(f"{name} is not installed (apt-get install softflowd nfdump)")
    return path


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _bound(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def _queue_empty(port: int) -> bool:
    """No datagram waits in the receive queue of the UDP socket on `port`."""
    want = f"0100007F:{port:04X}"
    for line in Path("/proc/net/udp").read_text().splitlines()[1:]:
        f = line.split()
        if f[1] == want:
            return int(f[4].split(":")[1], 16) == 0
    return True


def _wait(cond: Any, what: str) -> None:
    end = time.monotonic() + TIMEOUT
    while not cond():
        if time.monotonic() > end:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.05)


def pcap_to_nfdump(capture: Path, work: Path) -> list[str]:
    """softflowd (IPFIX) -> nfcapd on 127.0.0.1 -> `nfdump -o csv` lines."""
    out = work / "nfcapd"
    out.mkdir(parents=True, exist_ok=True)
    port = _free_udp_port()
    cmd = [_tool("nfcapd"), "-b", "127.0.0.1", "-p", str(port), "-w", str(out), "-t", "3600"]
    proc = subprocess.Popen(
        [*cmd, "-B", str(8 << 20)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        _wait(lambda: _bound(port) or proc.poll() is not None, "nfcapd to bind")
        if proc.poll() is not None:
            raise RuntimeError(f"nfcapd exited: {proc.communicate()[0].decode(errors='replace')}")
        sf = [_tool("softflowd"), "-d", "-r", str(capture), "-c", "none"]
        sf += ["-n", f"127.0.0.1:{port}", "-v", "10", "-A", "milli"]
        res = subprocess.run(sf, capture_output=True, text=True, timeout=TIMEOUT, check=False)
        if res.returncode != 0:
            raise RuntimeError(f"softflowd failed: {res.stdout}{res.stderr}")
        # nfcapd writes what it received when it stops: let it drain its socket first
        _wait(lambda: _queue_empty(port), "nfcapd to drain its socket")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=TIMEOUT)
    res = subprocess.run(
        [_tool("nfdump"), "-R", str(out), "-o", "csv"],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=True,
        env={**os.environ, "TZ": "UTC"},  # nfdump prints local time; lightsoc reads UTC
    )
    return [line for line in res.stdout.splitlines() if line.strip()]


def names(alert: Alert, ip: str) -> bool:
    """The alert is about `ip` (its entity, or the group key of a correlation)."""
    return alert.entity_value == ip or f"={ip}," in (alert.description or "") + ","


def _alerts_summary(alerts: list[Alert]) -> list[dict[str, Any]]:
    return [
        {
            "rule": a.rule_name,
            "severity": a.severity,
            "entity": a.entity_value,
            "count": a.count,
            "description": a.description,
        }
        for a in alerts
    ]


@dataclass
class Case:
    """One dataset and who the ground truth says the attacker is."""

    name: str
    files: list[Path]
    attacker: str
    #: alerts count as a detection when their rule title contains this (lower case)
    keyword: str
    truth: str
    pcap: bool = False


def run_case(case: Case) -> dict[str, Any]:
    """Import a case through the pipeline; did an alert of the kind name the attacker?"""
    missing = [str(p) for p in case.files if not p.is_file()]
    if missing:
        return {"name": case.name, "error": f"missing data: {', '.join(missing)}"}
    with Env() as env:
        t0 = time.perf_counter()
        flows = 0
        try:
            if case.pcap:
                lines = []
                for i, f in enumerate(case.files):
                    lines += pcap_to_nfdump(f, env.root / f"flows{i}")
                flows = sum(1 for x in lines if x[:1].isdigit() and x.count(",") > 10)
                summary = env.ingest_lines(lines, suffix=".csv")
            else:
                summary = env.ingest_paths(case.files)
        except ToolMissing as exc:
            return {"name": case.name, "error": str(exc)}
        alerts = env.alerts()
        seconds = time.perf_counter() - t0
    hits = [a for a in alerts if case.keyword in a.rule_name.lower() and names(a, case.attacker)]
    return {
        "name": case.name,
        "attacker": case.attacker,
        "truth": case.truth,
        "flows": flows or None,
        "events": summary["events"],
        "parse_failures": summary["parse_failures"],
        "by_dataset": summary["by_dataset"],
        "detected": bool(hits),
        "detecting_rules": sorted({a.rule_name for a in hits}),
        "alerts": _alerts_summary(alerts),
        "seconds": round(seconds, 1),
    }


def notice_sources(path: Path) -> list[tuple[str, str]]:
    """(note, src) of each notice in a Zeek notice.log (TSV with a #fields header)."""
    fields: list[str] = []
    out = []
    for line in path.read_text().splitlines():
        if line.startswith("#fields"):
            fields = line.split("\t")[1:]
        elif line and not line.startswith("#") and fields:
            row = dict(zip(fields, line.split("\t"), strict=False))
            out.append((row.get("note", ""), row.get("src", "")))
    return out


def zeek_cases() -> list[Case]:
    """Zeek's brute-force traces; the attacker is the `src` of the notice."""
    cases = []
    for pcap, notice in (
        ("ssh_sshguess.pcap", "sshguess.notice.log"),
        ("ftp_bruteforce.pcap", "ftp_bruteforce.notice.log"),
    ):
        notices = notice_sources(ZEEK / notice)
        note, src = notices[0] if notices else ("(no notice)", "")
        cases.append(Case(pcap, [ZEEK / pcap], src, "brute", f"{note} src={src}", pcap=True))
    return cases


def scan_cases() -> list[Case]:
    """Port-scan data; where the scanner comes from is said in `truth`."""
    ps = STRATO / "port-scans"
    return [
        Case(
            "chrissanders/synscan.pcapng",
            [DATA / "pcap" / "chrissanders" / "synscan.pcapng"],
            "172.16.0.8",
            "scan",
            "the only host sending SYNs (1994 of them) in the capture",
            pcap=True,
        ),
        Case(
            "stratosphere/002-zeek-scenario-port-scanning",
            [STRATO / "002-zeek-scenario-port-scanning" / "conn.log"],
            "172.16.1.11",
            "scan",
            "its README: one client 172.16.1.11 scanning with Nmap",
            pcap=False,
        ),
        Case(
            "stratosphere/port-scans/vertical",
            [ps / "vertical" / "conn.log"],
            "192.168.1.9",
            "scan",
            "the only originator (50 connections to 45.33.32.156)",
        ),
        Case(
            "stratosphere/port-scans/horizontal",
            [ps / "horizontal" / "conn.log"],
            "10.0.2.112",
            "scan",
            "the only originator (41 connections)",
        ),
        Case(
            "stratosphere/test11-portscan.binetflow",
            [STRATO / "test11-portscan.binetflow"],
            "10.8.0.69",
            "scan",
            "the only SrcAddr (ports 999 downwards to 14.1.11.113); Argus format",
        ),
    ]


def run_zeek() -> dict[str, Any]:
    return {"cases": [run_case(c) for c in zeek_cases()]}


def run_scans() -> dict[str, Any]:
    return {"cases": [run_case(c) for c in scan_cases()]}


def report(res: dict[str, Any], title: str) -> str:
    """A flows section as text: one row per dataset, then the alerts raised."""
    rows = []
    for c in res["cases"]:
        if "error" in c:
            rows.append([c["name"], "-", "-", "-", "-", f"ERROR {c['error']}"])
            continue
        rows.append(
            [
                c["name"],
                c["attacker"],
                c["flows"] if c["flows"] is not None else "-",
                c["events"],
                c["parse_failures"],
                f"{'yes' if c['detected'] else 'no'} {target(c['detected'])}",
            ]
        )
    out = [
        title,
        table(["data", "attacker", "flows", "events", "parse fail", "alert names it"], rows),
    ]
    for c in res["cases"]:
        if "error" in c:
            continue
        out.append(f"  {c['name']}: truth: {c['truth']}")
        if c["events"] and c["parse_failures"] == c["events"]:
            out.append("    no line parsed: lightsoc has no parser for this format")
        for a in c["alerts"][:6]:
            out.append(
                f"    alert [{a['severity']}] {a['rule']} -> {a['entity']}: {a['description']}"
            )
        if len(c["alerts"]) > 6:
            out.append(f"    ... {len(c['alerts']) - 6} more alerts")
        if not c["alerts"]:
            out.append("    (no alerts)")
    return "\n".join(out)
