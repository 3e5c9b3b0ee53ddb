"""nfdump `-o csv`: the Stratosphere test1 capture (converted with nfdump), header and summary."""

from __future__ import annotations

import json
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lightsoc import registry
from lightsoc.parsers import get_parser
from lightsoc.parsers.base import OK
from lightsoc.parsers.nfdump import NfdumpCsvParser
from lightsoc.schema import polars_type

NFDUMP = Path(__file__).resolve().parents[3] / "shared" / "data" / "flows" / "stratosphere"
NFDUMP = NFDUMP / "test1-malicious.nfdump"

HEADER = "ts,te,td,sa,da,sp,dp,pr,flg,fwd,stos,ipkt,ibyt,opkt,obyt,in,out,sas,das,smk,dmk,dtos,dir,nh,nhb,svln,dvln,ismc,odmc,idmc,osmc,mpls1,mpls2,mpls3,mpls4,mpls5,mpls6,mpls7,mpls8,mpls9,mpls10,cl,sl,al,ra,eng,exid,tr"
_TAIL = (
    "0,0,0,0,2852,2852,0,0,0,0,0.0.0.0,0.0.0.0,0,0,00:00:00:00:00:00,00:00:00:00:00:00,"
    "00:00:00:00:00:00,00:00:00:00:00:00,0-0-0,0-0-0,0-0-0,0-0-0,0-0-0,0-0-0,0-0-0,0-0-0,"
    "0-0-0,0-0-0,    0.000,    0.000,    0.000,147.32.82.62,0/58,1,1970-01-01 00:00:00.000"
)
# real lines of `nfdump -r test1-malicious.nfdump -o csv` (nfdump 1.7.1)
SSH_FLOW = (
    "2018-01-12 15:37:30,2018-01-12 15:37:30,0.020,147.32.82.62,147.32.83.209,22,44948,TCP,"
    "...AP...,0,16,3,580," + _TAIL
)
UDP_FLOW = (
    "2018-01-12 15:38:00,2018-01-12 15:38:00,0.000,147.32.82.62,147.32.80.9,53270,53,UDP,"
    "........,0,0,1,72," + _TAIL
)
SUMMARY = [
    "Summary",
    "flows,bytes,packets,avg_bps,avg_pps,avg_bpp",
    "4593,241025,4652,58357,140,51",
]


def run(lines: list[str], **options: object) -> pl.DataFrame:
    return NfdumpCsvParser(dict(options)).parse(pl.Series(lines, dtype=pl.String))


def converted() -> list[str]:
    if not NFDUMP.exists():
        pytest.fail(f"test data missing: {NFDUMP}")
    exe = shutil.which("nfdump")
    if exe is None:
        pytest.fail("nfdump is not installed (apt-get install nfdump): needed to read the capture")
    got = subprocess.run([exe, "-r", str(NFDUMP), "-o", "csv"], capture_output=True, text=True)
    assert got.returncode == 0, got.stderr
    return got.stdout.splitlines()


def test_registered() -> None:
    assert registry.get("parsers", "nfdump_csv") is NfdumpCsvParser


def test_flow_fields() -> None:
    out = run([HEADER, SSH_FLOW, UDP_FLOW, *SUMMARY])
    assert out[OK].all()
    row = out.row(1, named=True)
    assert {k: v for k, v in row.items() if v is not None} == {
        "@timestamp": datetime(2018, 1, 12, 15, 37, 30, tzinfo=UTC),
        "event.start": datetime(2018, 1, 12, 15, 37, 30, tzinfo=UTC),
        "event.end": datetime(2018, 1, 12, 15, 37, 30, tzinfo=UTC),
        "event.duration": 20_000_000,
        "source.ip": "147.32.82.62",
        "source.port": 22,
        "destination.ip": "147.32.83.209",
        "destination.port": 44948,
        "network.transport": "tcp",
        "source.packets": 3,
        "source.bytes": 580,
        "destination.packets": 0,
        "destination.bytes": 0,
        "network.packets": 3,
        "network.bytes": 580,
        "event.category": "network",
        "event.type": "connection",
        "event.kind": "event",
        "labels": json.dumps(
            {
                "netflow.tcp_flags": "...AP...",
                "netflow.input_interface": "0",
                "netflow.output_interface": "0",
                "netflow.exporter": "147.32.82.62",
            },
            separators=(",", ":"),
        ),
        "event.dataset": "netflow",
        "event.module": "nfdump",
        OK: True,
    }
    assert out.row(2, named=True)["network.transport"] == "udp"
    for name, dtype in out.schema.items():
        if name != OK:
            assert dtype == polars_type(name), name


def test_header_and_summary_are_metadata() -> None:
    out = run([HEADER, SSH_FLOW, *SUMMARY])
    assert out["event.kind"].to_list() == ["event"] * 5  # ECS has no "metadata" kind
    assert out["event.dataset"].to_list() == ["nfdump.header", "netflow"] + ["nfdump.summary"] * 3
    assert out["message"].to_list() == [HEADER, None, *SUMMARY]
    # a bare "Summary" or number list without the summary header is not nfdump output
    lone = run(["Summary", "1,2,3,4,5,6"])
    assert not lone[OK].any()
    assert not NfdumpCsvParser().matches(pl.Series(["Summary", "1,2,3,4,5,6"])).any()


def test_timezone_option() -> None:
    row = run([SSH_FLOW], timezone="Europe/Prague").row(0, named=True)
    assert row["@timestamp"] == datetime(2018, 1, 12, 14, 37, 30, tzinfo=UTC)


def test_real_capture_counts() -> None:
    lines = converted()
    out = run(lines)
    assert out.height == len(lines) and out[OK].all()
    flows = [line for line in lines if line[:1].isdigit() and line.count(",") > 10]
    got = dict(out.group_by("event.dataset").len().rows())
    assert got == {"netflow": len(flows), "nfdump.header": 1, "nfdump.summary": 3}
    assert len(flows) == 4593  # the summary line says so too
    transport = dict(out.group_by("network.transport").len().drop_nulls().rows())
    assert transport == {"tcp": sum(",TCP," in f for f in flows), "udp": 17}
    assert out["network.bytes"].sum() == 241025 and out["network.packets"].sum() == 4652


def test_malformed_lines_in_a_batch() -> None:
    bad = [
        "",
        "ts,te",
        "2018-01-12 15:37:30,2018-01-12 15:37:30,0.000,147.32.80.119",
        "2018-13-45 15:37:30,2018-01-12 15:37:30,0.000," + SSH_FLOW.split(",0.020,", 1)[1],
        "random text, with commas, 1, 2",
    ]
    out = run([SSH_FLOW, *bad, UDP_FLOW])
    assert out[OK].to_list() == [True] + [False] * 5 + [True]
    assert out["destination.port"].to_list() == [44948] + [None] * 5 + [53]


def test_auto_detects_nfdump() -> None:
    out = get_parser("auto").parse(pl.Series([HEADER, SSH_FLOW, UDP_FLOW, *SUMMARY]))
    assert out[OK].all()
    assert out["event.dataset"].to_list()[:3] == ["nfdump.header", "netflow", "netflow"]


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.text(max_size=80),
            st.lists(
                st.sampled_from(["2018-01-12 15:37:30", "0.5", "1.2.3.4", "TCP", "-1", "x", ""]),
                max_size=20,
            ).map(",".join),
            st.sampled_from([HEADER, SSH_FLOW, *SUMMARY]),
        ),
        max_size=12,
    )
)
def test_arbitrary_lines_never_raise(lines: list[str]) -> None:
    out = run(lines)
    assert out.height == len(lines)
