"""Fuzzing the DNS decoder: random and mutated messages, garbage frames, TCP segments in any order.

Nothing may raise, and every DNS message must still be an event or a counted failure.
"""

from __future__ import annotations

import struct

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lightsoc.sources.dns_wire import Malformed, read_answers, read_name, read_question
from tests.sources.test_dns_decode import (
    check_accounting,
    ether,
    ipv4,
    query,
    response,
    run,
    tcp,
    udp,
)

# --------------------------------------------------------------------------------
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
_SEED = [query(1, "www.example.com"), response(1, "www.example.com", ["1.2.3.4", "5.6.7.8"])]


@FUZZ
@given(st.binary(max_size=300), st.integers(0, 300))
def test_fuzz_wire_functions_raise_only_malformed(data: bytes, off: int) -> None:
    for fn in (
        lambda: read_name(data, off),
        lambda: read_question(data, off),
        lambda: read_answers(data, off, 5),
    ):
        try:
            fn()
        except Malformed:
            pass


@FUZZ
@given(
    st.sampled_from(_SEED),
    st.lists(st.tuples(st.integers(0, 80), st.integers(0, 255)), max_size=6),
    st.integers(0, 90),
)
def test_fuzz_mutated_messages_are_events_or_counted(
    seed: bytes, flips: list[tuple[int, int]], cut: int
) -> None:
    msg = bytearray(seed)
    for i, v in flips:
        if i < len(msg):
            msg[i] = v
    payload = bytes(msg[: len(msg) - cut % len(msg)])
    pkts = [ether(ipv4("10.0.0.1", "10.0.0.53", 17, udp(3333, 53, payload)))]
    pkts += [
        ether(
            ipv4(
                "10.0.0.1",
                "10.0.0.53",
                6,
                tcp(3333, 53, 7, struct.pack("!H", len(payload)) + payload),
            )
        )
    ]
    df, c = run(pkts)
    check_accounting(df, c)


@FUZZ
@given(
    st.lists(st.binary(max_size=120), max_size=8), st.sampled_from([0, 1, 101, 108, 113, 276, 147])
)
def test_fuzz_garbage_frames_never_raise(frames: list[bytes], linktype: int) -> None:
    df, c = run(frames, linktype)
    check_accounting(df, c)


@FUZZ
@given(
    st.lists(
        st.tuples(
            st.integers(0, 2),
            st.integers(0, 200),
            st.sampled_from([0x02, 0x10, 0x18, 0x11, 0x04]),
            st.integers(0, 60),
        ),
        max_size=12,
    )
)
def test_fuzz_tcp_segments_in_any_order(segments: list[tuple[int, int, int, int]]) -> None:
    stream = b"".join(struct.pack("!H", len(m)) + m for m in _SEED * 2)
    pkts = []
    for side, seq, flags, length in segments:
        data = stream[seq : seq + length]
        pkts.append(
            ether(
                ipv4(f"10.0.0.{side + 1}", "10.0.0.53", 6, tcp(1000 + side, 53, seq, data, flags))
            )
        )
    df, c = run(pkts)
    check_accounting(df, c)
