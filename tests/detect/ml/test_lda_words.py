"""Words of Spot-style suspicious connects: flows, DNS and web records."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import polars as pl
import pytest

from lightsoc.detect.ml import lda_words as lw
from lightsoc.schema import POLARS_SCHEMA

T = datetime(2025, 11, 25, 14, 30, tzinfo=UTC)


def events(rows: list[dict]) -> pl.DataFrame:
    """Rows with the store's column types (as the pipeline produces them)."""
    cols = sorted({k for r in rows for k in r})
    return pl.DataFrame(
        [{c: r.get(c) for c in cols} for r in rows],
        schema={c: POLARS_SCHEMA[c] for c in cols},
        orient="row",
    )


def flow(sa: str, da: str, sp: int | None, dp: int | None, proto: str = "tcp", **kw) -> dict:
    return {
        "@timestamp": T,
        "source.ip": sa,
        "destination.ip": da,
        "source.port": sp,
        "destination.port": dp,
        "network.transport": proto,
        **kw,
    }


def test_flow_words_follow_spot_port_classes_and_mark_the_server() -> None:
    df = events(
        [
            flow(
                "10.0.0.5", "10.0.0.80", 51000, 443, **{"network.bytes": 1000, "network.packets": 7}
            ),
            flow("10.0.0.80", "10.0.0.5", 443, 51000, **{"network.bytes": 0, "network.packets": 1}),
            flow("10.0.0.5", "10.0.0.9", 123, 123, "udp", **{"network.bytes": 76}),
            flow("10.0.0.5", "1.2.3.4", 40000, 8443, **{"network.bytes": 3, "network.packets": 2}),
            flow("10.0.0.5", "1.2.3.4", None, None, "icmp", **{"network.bytes": 84}),
        ]
    )
    w = lw.flow_words(df).sort(lw.ROW, lw.SIDE)
    got = list(zip(w[lw.ROW], w[lw.SIDE], w[lw.DOC], w[lw.WORD], strict=True))
    assert got == [
        # the destination serves 443: its word is marked s, the client's c
        (0, "a", "10.0.0.5", "c:tcp:443:14:10:3"),  # ceil(log2(1001)) = 10, ceil(log2(8)) = 3
        (0, "b", "10.0.0.80", "s:tcp:443:14:10:3"),
        # the reply: the source serves; 0 bytes -> bin 0
        (1, "a", "10.0.0.80", "s:tcp:443:14:0:1"),
        (1, "b", "10.0.0.5", "c:tcp:443:14:0:1"),
        # both ports low: constant L, no server; no packet count -> x
        (2, "a", "10.0.0.5", "n:udp:L:14:7:x"),
        (2, "b", "10.0.0.9", "n:udp:L:14:7:x"),
        # both high: constant H
        (3, "a", "10.0.0.5", "n:tcp:H:14:2:2"),
        (3, "b", "1.2.3.4", "n:tcp:H:14:2:2"),
        # ICMP, no ports
        (4, "a", "10.0.0.5", "n:icmp:-:14:7:x"),
        (4, "b", "1.2.3.4", "n:icmp:-:14:7:x"),
    ]


def test_flow_words_ipv6_and_bytes_from_both_directions() -> None:
    df = events(
        [
            flow(
                "fd2d:ab8c:225::81d3",
                "2001:db8::1",
                55000,
                53,
                "udp",
                **{"source.bytes": 40, "destination.bytes": 60, "source.packets": 1},
            ),
            flow("fe80::1", None, None, None, "icmp"),  # no destination: one word only
        ]
    )
    w = lw.flow_words(df).sort(lw.ROW, lw.SIDE)
    assert w[lw.DOC].to_list() == ["fd2d:ab8c:225::81d3", "2001:db8::1", "fe80::1"]
    # 40 + 60 bytes -> ceil(log2(101)) = 7; one packet -> 1
    assert w[lw.WORD].to_list() == ["c:udp:53:14:7:1", "s:udp:53:14:7:1", "n:icmp:-:14:x:x"]


def test_entropy_exact_values() -> None:
    h = lw.entropy(pl.Series(["aabb", "", None, "abcd", "aaaa", "é€é€"]))
    assert h.to_list() == pytest.approx([1.0, 0.0, 0.0, 2.0, 0.0, 1.0])


def test_dns_words_classes_bins_and_client() -> None:
    rows = [
        {
            "@timestamp": T,
            "source.ip": "10.0.0.5",
            "destination.ip": "10.0.0.53",
            "dns.type": "query",
            "dns.question.name": "www.example.com",
            "dns.question.registered_domain": "example.com",
            "dns.question.subdomain": "www",
            "dns.question.type": "A",
            "dns.response_code": "NOERROR",
        },
        {
            "@timestamp": T,
            "source.ip": "10.0.0.6",  # a query/response pair: source = client (Packetbeat)
            "destination.ip": "10.0.0.53",
            "source.port": 51000,
            "destination.port": 53,
            "dns.type": "answer",
            "dns.question.name": "aGVsbG8gd29ybGQ.t1.evil-tunnel.net.",
            "dns.question.type": "TXT",
            "dns.response_code": "NXDOMAIN",
        },
        {"@timestamp": T, "source.ip": "10.0.0.7", "dns.question.name": "10.0.0.1"},
        {  # a record in the response packet's direction: the client is the destination
            "@timestamp": T,
            "source.ip": "10.0.0.53",
            "destination.ip": "10.0.0.8",
            "source.port": 53,
            "destination.port": 40000,
            "dns.type": "answer",
            "dns.question.name": "www.example.com",
        },
    ]
    w = lw.dns_words(events(rows), popular=["example.com"]).sort(lw.ROW)
    assert w[lw.DOC].to_list() == ["10.0.0.5", "10.0.0.6", "10.0.0.7", "10.0.0.8"]
    first, second, third, _ = w[lw.WORD].to_list()
    # popular, no frame length, hour 14, len("www")=3 -> 2, entropy 0 -> 0, 3 labels
    assert first == "p:x:14:2:0:3:A:NOERROR"
    # no registered domain field: the last two labels (evil-tunnel.net), not popular
    dc, _, _, sub_len, ent, labels, qt, rc = second.split(":")
    assert (dc, labels, qt, rc) == ("u", "4", "TXT", "NXDOMAIN")
    assert sub_len == "x" or int(sub_len) >= 0
    # an IP literal has no registered domain
    assert third.startswith("i:")
    assert int(ent) >= 0


def test_web_words_content_class_and_agent_frequency() -> None:
    base = {
        "@timestamp": T,
        "source.ip": "10.0.0.5",
        "url.domain": "shop.example.com",
        "http.request.method": "get",
        "http.response.status_code": 200,
        "user_agent.original": "Mozilla/5.0",
    }
    rows = [
        {**base, "url.original": "/index.html", "url.path": "/index.html"},
        {**base, "url.original": "/a.php?id=1", "url.path": "/a.php"},
        {**base, "url.original": "/x.exe", "url.path": "/x.exe", "user_agent.original": "curl"},
        {"source.ip": "10.0.0.9"},  # nothing but an IP: still a word, no crash
    ]
    w = lw.web_words(events(rows), popular=["example.com"]).sort(lw.ROW)
    words = [x.split(":") for x in w[lw.WORD].to_list()]
    # domain class, hour, method, entropy bin, content class, agent bin, uri length bin, status
    assert [x[0] for x in words] == ["p", "p", "p", "i"]
    assert [x[2] for x in words] == ["GET", "GET", "GET", "x"]
    assert [x[4] for x in words] == ["page", "script", "bin", "x"]
    # Mozilla/5.0 twice in the batch -> ceil(log2(3)) = 2; curl once -> 1; none -> x
    assert [x[5] for x in words] == ["2", "2", "1", "x"]
    assert [x[7] for x in words] == ["200", "200", "200", "x"]


def test_words_of_empty_frames_and_unknown_kind() -> None:
    for kind in lw.KINDS:
        assert lw.words(pl.DataFrame(), kind).height == 0
    with pytest.raises(ValueError, match="record type"):
        lw.words(pl.DataFrame(), "smtp")


def test_detect_kind() -> None:
    assert lw.detect_kind(events([flow("1.1.1.1", "2.2.2.2", 1, 2)])) == "flow"
    dns = events([{"source.ip": "1.1.1.1", "dns.question.name": "a.b"}])
    assert lw.detect_kind(dns) == "dns"
    web = events([{"source.ip": "1.1.1.1", "url.original": "/"}])
    assert lw.detect_kind(web) == "web"


def test_log2_bins() -> None:
    df = pl.DataFrame({"v": [0, 1, 2, 3, 1023, 1024, None, -5]}, schema={"v": pl.Int64})
    got = df.select(lw.log2_bin(pl.col("v")).alias("b"))["b"].to_list()
    want = [str(math.ceil(math.log2(v + 1))) for v in (0, 1, 2, 3, 1023, 1024)] + ["x", "x"]
    assert got == want


def test_rare_flow_words_back_off_to_coarser_words() -> None:
    common = "c:tcp:443:14:12:5"
    w = pl.DataFrame(
        {
            lw.ROW: list(range(8)),
            lw.SIDE: ["a"] * 8,
            lw.DOC: ["10.0.0.1"] * 8,
            # one-off hour of a common behaviour; a one-off of everything but bytes; a unique one
            lw.WORD: [common] * 3
            + ["c:tcp:443:3:12:5"]
            + ["c:tcp:443:9:12:6"] * 1
            + ["s:udp:53:1:7:1"]
            + ["c:tcp:443:2:12:7"] * 2,
        }
    )
    out = lw.back_off(w, "flow", 3)
    assert out.columns == w.columns and out[lw.ROW].to_list() == list(range(8))
    got = out[lw.WORD].to_list()
    assert got[:3] == [common] * 3  # frequent enough: unchanged
    assert got[3] == "c:tcp:443:*:12:5"  # 4 records share the hour-less word
    assert got[4] == "c:tcp:443:*:12:*" and got[6:] == ["c:tcp:443:*:12:*"] * 2
    assert got[5] == "s:udp:53:*:7:*"  # nothing to back off to: the coarsest form
    assert lw.back_off(w, "flow", 1).equals(w) and lw.back_off(w, "dns", 3).equals(w)
    # scoring: unknown words take their first known coarser form, order kept
    vocab = pl.Series(lw.WORD, [common, "c:tcp:443:*:12:5", "c:tcp:443:*:12:*"])
    mapped = lw.map_to_vocab(w, "flow", vocab)[lw.WORD].to_list()
    assert mapped[:4] == [common] * 3 + ["c:tcp:443:*:12:5"]
    assert mapped[4] == "c:tcp:443:*:12:*" and mapped[5] == "s:udp:53:*:7:*"
    assert lw.map_to_vocab(w.clear(), "flow", vocab).height == 0
