"""Argus CSV flows: Stratosphere's real `.binetflow` files, read in place, and edge cases."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from lightsoc import registry
from lightsoc.parsers import get_parser, parse_records
from lightsoc.parsers.argus import ArgusCsvParser
from lightsoc.parsers.base import OK
from lightsoc.schema import PARSE_FAILURE, polars_type

DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "flows" / "stratosphere"
#: 10.8.0.69 scanning ports 999..980 of 14.1.11.113, then pinging and sweeping 110.128.128.x
TEST11 = DATA / "test11-portscan.binetflow"
#: 6,751 flows of a Windows machine infected with malware (Stratosphere test2)
TEST2 = DATA / "test2-malicious.binetflow"

HEADER = (
    "StartTime,Dur,Proto,SrcAddr,Sport,Dir,DstAddr,Dport,State,sTos,dTos,TotPkts,TotBytes,"
    "SrcBytes,SrcPkts,Label"
)
# CTU-13 files (no SrcPkts column), as in capture20110810.binetflow
CTU13_FLOW = (
    "2011/08/10 09:46:53.047277,3550.182373,udp,212.50.71.179,39678,  <->,147.32.84.229,13363,"
    "CON,0,0,12,875,413,flow=Background-UDP-Established"
)


def lines_of(path: Path) -> list[str]:
    assert path.is_file(), f"missing test data (expected ../shared/data beside the checkout) {path}"
    return path.read_text().splitlines()


def run(lines: list[str], **options: object) -> pl.DataFrame:
    out = ArgusCsvParser(options).parse(pl.Series(lines, dtype=pl.String))
    assert out.height == len(lines)
    return out


def present(row: dict) -> dict:
    return {k: v for k, v in row.items() if v is not None}


def test_registered() -> None:
    assert registry.get("parsers", "argus_csv") is ArgusCsvParser
    assert isinstance(get_parser("argus_csv"), ArgusCsvParser)


def test_real_portscan_file() -> None:
    lines = lines_of(TEST11)
    out = run(lines)
    assert out.height == 67 and out[OK].all()
    head = out.row(0, named=True)
    assert (head["event.dataset"], head["event.kind"], head["message"]) == (
        "argus.header",
        "event",
        HEADER,
    )
    flows = out.filter(pl.col("event.dataset") == "argus")
    assert flows.height == 66
    assert flows["source.ip"].unique().to_list() == ["10.8.0.69"]
    # line 2: 2019/04/04 16:24:47.672448,63.822830,tcp,10.8.0.69,56101,   ->,14.1.11.113,999,S0,...
    start = datetime(2019, 4, 4, 16, 24, 47, 672448, tzinfo=UTC)
    assert present(out.row(1, named=True)) == {
        "@timestamp": start,
        "event.start": start,
        "event.end": datetime(2019, 4, 4, 16, 25, 51, 495278, tzinfo=UTC),
        "event.duration": 63_822_830_000,
        "source.ip": "10.8.0.69",
        "source.port": 56101,
        "destination.ip": "14.1.11.113",
        "destination.port": 999,
        "network.transport": "tcp",
        "source.packets": 15,
        "source.bytes": 1887,
        "destination.packets": 16,
        "destination.bytes": 6877,
        "network.packets": 31,
        "network.bytes": 8764,
        "event.outcome": "failure",
        "event.category": "network",
        "event.type": "connection",
        "event.kind": "event",
        "labels": '{"argus.dir":"->","argus.state":"S0","argus.stos":"0","argus.dtos":"0"}',
        "event.dataset": "argus",
        "event.module": "argus",
        OK: True,
    }
    tcp = flows.filter(pl.col("network.transport") == "tcp")
    assert tcp["destination.port"].to_list() == list(range(999, 979, -1))
    # ICMP: hex type and id are no ports; the empty dTos is left out
    icmp = flows.filter(pl.col("network.transport") == "icmp")
    assert icmp.height == 46
    assert icmp["source.port"].null_count() == icmp["destination.port"].null_count() == 46
    assert icmp["event.outcome"].null_count() == 46
    assert icmp["labels"][0] == (
        '{"argus.dir":"->","argus.state":"ECO","argus.stos":"0",'
        '"argus.sport":"0x0008","argus.dport":"0x7208"}'
    )
    assert icmp["destination.ip"].n_unique() == 21
    for name, dtype in out.schema.items():
        if name != OK:
            assert dtype == polars_type(name), name


def test_real_malware_capture_states() -> None:
    """Every line of a 6,752-line capture parses; states give TCP outcomes; Label is dropped."""
    lines = lines_of(TEST2)
    out = run(lines)
    assert out[OK].all()
    flows = out.filter(pl.col("event.dataset") == "argus")
    assert flows.height == 6751
    grouped = flows.group_by("network.transport", "event.outcome").len()
    counts = {(t, o): n for t, o, n in grouped.iter_rows()}
    # FSPA_FSPA, SRPA_SPA, ... answered; S_ and similar unanswered; PA_PA mid-stream unknown
    assert counts[("tcp", "success")] == 3914
    assert counts[("tcp", "failure")] == 7
    assert counts[("tcp", None)] == 4
    assert counts[("udp", None)] == 2754 and ("udp", "failure") not in counts
    states = flows.with_columns(pl.col("labels").str.json_path_match("$['argus.state']").alias("s"))
    failed = states.filter(pl.col("event.outcome") == "failure")["s"].unique().sort().to_list()
    assert failed == ["S_"]
    unknown = states.filter(
        pl.col("event.outcome").is_null() & (pl.col("network.transport") == "tcp")
    )
    assert set(unknown["s"]) == {"PA_PA", "RPA_PA", "FPA_PA"}
    # the IGMP flows carry no ports at all
    igmp = flows.filter(pl.col("network.transport") == "igmp")
    assert igmp.height == 7 and igmp["destination.port"].null_count() == 7
    # Stratosphere's ground truth column is not in any field
    assert not flows["labels"].str.contains("(?i)label|botnet|normal").any()


def test_flag_pair_and_word_states() -> None:
    def line(proto: str, state: str) -> str:
        return f"2019/04/04 16:23:00.1,0.5,{proto},10.0.0.5,40000,   ->,10.0.0.9,22,{state},0,0,2,120,60,1,"

    states = ["S_", "S_RA", "FS_R", "SR_SA", "FSPA_FSPA", "PA_PA", "REQ", "INT", "CON", "RST"]
    out = run([line("tcp", s) for s in states] + [line("udp", "INT"), line("udp", "CON")])
    assert out["event.outcome"].to_list() == [
        "failure",
        "failure",
        "failure",
        "success",
        "success",
        None,
        "failure",
        "failure",
        "success",
        None,
        None,  # an unanswered UDP datagram is often normal (syslog, DNS retries)
        None,
    ]


def test_ipv6_empty_fields_and_ctu13_layout() -> None:
    ipv6 = (
        "2019/04/04 16:23:01.000001,0.000000,ipv6-icmp,fe80::a00:27ff:fe12:3456,0x0087,   ->,"
        "ff02::1:ff00:1,0x0000,INT,0,,1,86,86,1,"
    )
    v6_tcp = "2019/04/04 16:23:02,1.5,tcp,2001:db8::5,51000,   ->,2001:db8::80,443,,,,,,,,"
    out = run([HEADER, ipv6, v6_tcp, CTU13_FLOW])
    assert out[OK].to_list() == [True, True, True, False]
    a, b = (out.row(i, named=True) for i in (1, 2))
    assert (a["source.ip"], a["destination.ip"], a["network.transport"]) == (
        "fe80::a00:27ff:fe12:3456",
        "ff02::1:ff00:1",
        "ipv6-icmp",
    )
    assert a["source.port"] is None and '"argus.sport":"0x0087"' in a["labels"]
    # empty State, ToS and counters: null, not zero
    assert (b["destination.port"], b["event.duration"]) == (443, 1_500_000_000)
    assert b["network.packets"] is None and b["event.outcome"] is None
    assert b["labels"] == '{"argus.dir":"->"}'
    # a 15-column CTU-13 line after a 16-column header does not fit it: no guessing
    assert out.row(3, named=True)["source.ip"] is None
    alone = run([CTU13_FLOW]).row(0, named=True)  # header-less: the CTU-13 order by count
    assert (alone["source.port"], alone["destination.port"]) == (39678, 13363)
    assert (alone["network.packets"], alone["source.bytes"], alone["destination.bytes"]) == (
        12,
        413,
        462,
    )
    assert alone["labels"] == (
        '{"argus.dir":"<->","argus.state":"CON","argus.stos":"0","argus.dtos":"0"}'
    )


def test_ra_header_with_other_columns() -> None:
    """`ra -c , -s stime ltime ...` names other columns; the header sets the order."""
    header = "StartTime,LastTime,Flgs,Proto,SrcAddr,Sport,Dir,DstAddr,Dport,SrcPkts,DstPkts,SrcBytes,DstBytes,State"
    flow = (
        "2024/01/02 03:04:05.250000,2024/01/02 03:04:06.750000, e        ,tcp,192.0.2.7,51515,"
        "   ?>,198.51.100.9,25,3,0,180,0,REQ"
    )
    out = run([header, flow])
    row = out.row(1, named=True)
    assert row["event.end"] == datetime(2024, 1, 2, 3, 4, 6, 750000, tzinfo=UTC)
    assert (row["source.packets"], row["destination.packets"], row["destination.bytes"]) == (
        3,
        0,
        0,
    )
    assert row["event.outcome"] == "failure"
    assert row["labels"] == '{"argus.dir":"?>","argus.state":"REQ","argus.flags":"e"}'
    # the same line before the header of a later batch: `fields` option
    again = run([flow], fields=header).row(0, named=True)
    assert again["destination.port"] == 25 and again["event.outcome"] == "failure"


def test_junk_lines_are_parse_failures_with_their_text() -> None:
    lines = lines_of(TEST11)[:3] + [
        "2019/04/04 16:24:47.672448,63.8,tcp,10.8.0.69",  # cut short
        "2019/13/45 99:99:99,1,tcp,10.0.0.1,1,->,10.0.0.2,2,S0,0,0,1,60,60,1,",  # no such time
        "hello, world",
        "",
    ]
    records = pl.DataFrame({"event.original": lines})
    out = parse_records(records, get_parser("argus_csv"))
    assert out["_parse_ok"].to_list() == [True, True, True, False, False, False, False]
    failed = out.filter(~pl.col("_parse_ok"))
    assert failed["event.original"].to_list() == lines[3:]
    assert failed["_parse_failure_tag"].to_list() == [PARSE_FAILURE] * 4
    assert failed["source.ip"].null_count() == 4


def test_auto_detects_argus_next_to_nfdump() -> None:
    nfdump = (
        "2018-01-12 15:38:00,2018-01-12 15:38:00,0.000,147.32.82.62,147.32.80.9,53270,53,UDP,"
        "........,0,0,1,72,0,0,0,0"
    )
    lines = lines_of(TEST11)[:5] + [nfdump]
    out = get_parser("auto").parse(pl.Series(lines))
    assert out[OK].all()
    assert out["event.dataset"].to_list() == ["argus.header"] + ["argus"] * 4 + ["netflow"]
    assert not ArgusCsvParser().matches(pl.Series([nfdump, "ts,te,td,sa,da,sp,dp,pr"])).any()


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.text(max_size=80),
            st.lists(
                st.sampled_from(["2019/04/04 16:24:47", "tcp", "S_RA", "0x0008", "->", "", "x"]),
                max_size=18,
            ).map(",".join),
            st.just(HEADER),
        ),
        max_size=12,
    )
)
def test_arbitrary_lines_never_raise(lines: list[str]) -> None:
    out = run(lines)
    assert out[OK].dtype == pl.Boolean
