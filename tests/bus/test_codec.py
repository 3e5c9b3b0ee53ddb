"""The raw-batch wire format: round trips exactly; garbage is a CodecError."""

from __future__ import annotations

import polars as pl
import pytest

from lightsoc.bus.base import RawBatch
from lightsoc.bus.codec import CodecError, decode, encode


def _batch(**kw: object) -> RawBatch:
    records = pl.DataFrame(
        {
            "event.original": ["GET /a?q=<script>", "héllo\x00 wörld", ""],
            "event.id": ["s-1", "s-2", "s-3"],
            "log.offset": [0, 18, 40],
            "_truncated": [False, True, False],
        }
    )
    return RawBatch("web", "file", records, bytes=41, dropped=2, skipped=1, **kw)  # type: ignore[arg-type]


def test_round_trip_keeps_records_and_counters() -> None:
    sent = _batch()
    got = decode(encode(sent))
    assert got.records.equals(sent.records)
    assert got.records.schema == sent.records.schema
    assert (got.source, got.source_type, got.bytes, got.dropped, got.skipped) == (
        "web",
        "file",
        41,
        2,
        1,
    )
    assert got.parsed is False
    assert got.batch_id == sent.batch_id and len(got.batch_id) == 32
    assert got.sent > 0
    assert got.checkpoints == [] and got.on_commit is None


def test_batch_id_is_kept_when_given_and_parsed_flag_travels() -> None:
    got = decode(encode(_batch(batch_id="abc", parsed=True, sent=12.5)))
    assert (got.batch_id, got.parsed, got.sent) == ("abc", True, 12.5)


def test_empty_batch_round_trips() -> None:
    empty = RawBatch(
        "s", "syslog", pl.DataFrame({"event.original": []}, schema={"event.original": pl.Utf8})
    )
    got = decode(encode(empty))
    assert got.records.height == 0 and got.records.columns == ["event.original"]


@pytest.mark.parametrize(
    "data",
    [b"", b"\x00\x00", b"\x00\x00\x00\x02{}", b'\x00\x00\x00\x09{"v": 99}', b"\xff" * 64],
)
def test_garbage_is_a_codec_error(data: bytes) -> None:
    with pytest.raises(CodecError):
        decode(data)


def test_truncated_message_is_a_codec_error() -> None:
    data = encode(_batch())
    with pytest.raises(CodecError):
        decode(data[: len(data) - 20])


def test_a_capture_batch_travels_with_its_flow_keys_and_gets_its_community_ids() -> None:
    """A pcap source leaves IPv4/UDP Community IDs to the processor (`_flow` keys): on a
    shared bus the keys travel, and the processor side makes the same IDs."""
    from lightsoc.pipeline import _decoded
    from lightsoc.sources.dns_decode import DnsDecoder
    from lightsoc.sources.dns_events import FLOW
    from tests.sources.test_dns_decode import ether, ipv4, query, response, udp

    frames = [
        ether(ipv4("10.0.0.7", "10.0.0.53", 17, udp(40000 + i, 53, query(i, f"n{i}.example"))))
        for i in range(3)
    ] + [
        ether(
            ipv4("10.0.0.53", "10.0.0.7", 17, udp(53, 40000 + i, response(i, f"n{i}.example", [])))
        )
        for i in range(3)
    ]
    packets = [(1_700_000_000_000_000 + i, f) for i, f in enumerate(frames)]
    decoded = []
    for community_ids in (True, False):
        dec = DnsDecoder(id_prefix="t-")
        dec.decode(1, packets)
        decoded.append(dec.take(community_ids=community_ids))
    now, later = decoded
    assert FLOW in later.columns and later["network.community_id"].null_count() == 3
    batch = RawBatch(source="pcap", source_type="pcap", records=later, parsed=True)
    got = _decoded(decode(encode(batch)).records)
    assert FLOW not in got.columns
    assert got["network.community_id"].to_list() == now["network.community_id"].to_list()
    assert all(c.startswith("1:") for c in now["network.community_id"])
