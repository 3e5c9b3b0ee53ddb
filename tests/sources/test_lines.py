"""Line splitting: offsets, CRLF, empty lines, invalid UTF-8, oversize lines, chunking."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from lightsoc.sources.lines import (
    INVALID_UTF8,
    OFFSET,
    ORIGINAL,
    TRUNCATED,
    LineSplitter,
    lines_from_list,
    split_lines,
)

BIG = 1 << 20


def records(frame) -> list[tuple[str, int, bool, bool]]:
    return list(
        zip(frame[ORIGINAL], frame[OFFSET], frame[TRUNCATED], frame[INVALID_UTF8], strict=True)
    )


def test_offsets_and_consumed_bytes():
    frame, consumed, skipped = split_lines(b"one\ntwo\nthree", 100, BIG)
    assert records(frame) == [("one", 100, False, False), ("two", 104, False, False)]
    assert consumed == 8  # "three" waits for its newline
    assert skipped == 0


def test_no_newline_consumes_nothing():
    frame, consumed, skipped = split_lines(b"partial", 0, BIG)
    assert frame.height == 0 and consumed == 0 and skipped == 0
    frame, consumed, skipped = split_lines(b"", 0, BIG)
    assert frame.height == 0 and consumed == 0 and skipped == 0


def test_crlf_strips_one_cr_only():
    frame, consumed, _ = split_lines(b"a\r\nb\r\r\nc\rd\n", 0, BIG)
    assert list(frame[ORIGINAL]) == ["a", "b\r", "c\rd"]
    assert list(frame[OFFSET]) == [0, 3, 7]
    assert consumed == 11


def test_empty_lines_are_skipped_and_counted_whitespace_is_kept():
    frame, consumed, skipped = split_lines(b"\n\r\na\n\n \n\t\n", 0, BIG)
    assert list(frame[ORIGINAL]) == ["a", " ", "\t"]
    assert list(frame[OFFSET]) == [3, 6, 8]
    assert skipped == 3  # "", "\r" and ""
    assert consumed == 10


def test_invalid_utf8_is_escaped_and_flagged():
    frame, _, _ = split_lines(b"ok \xc3\xa9\nbad \xff\xfe\x00end\n\xc3\n", 0, BIG)
    assert records(frame) == [
        ("ok é", 0, False, False),
        ("bad \\xff\\xfe\x00end", 6, False, True),
        ("\\xc3", 17, False, True),
    ]


def test_oversize_line_is_cut_and_flagged():
    frame, consumed, _ = split_lines(b"x" * 20 + b"\nshort\n", 0, 8)
    assert records(frame) == [("x" * 8, 0, True, False), ("short", 21, False, False)]
    assert consumed == 27


def test_line_of_exactly_the_limit_is_not_truncated_even_with_crlf():
    frame, _, _ = split_lines(b"12345678\r\n123456789\r\n", 0, 8)
    assert records(frame) == [("12345678", 0, False, False), ("12345678", 10, True, False)]


def test_oversize_cut_does_not_split_a_utf8_character():
    # "é" is two bytes: a cut after 5 bytes would split the third one
    frame, _, _ = split_lines("éééé\n".encode(), 0, 5)
    assert records(frame) == [("éé", 0, True, False)]
    frame, _, _ = split_lines("a€€\n".encode(), 0, 6)  # € is three bytes
    assert records(frame) == [("a€", 0, True, False)]


def test_lines_from_list_final_line():
    frame = lines_from_list([b"tail\r"], [42], BIG)
    assert records(frame) == [("tail", 42, False, False)]


def test_splitter_holds_partial_line_until_completed():
    sp = LineSplitter(10, BIG)
    frame, skipped = sp.feed(b"abc\nde")
    assert records(frame) == [("abc", 10, False, False)]
    assert (sp.offset, sp.pending) == (14, b"de")
    frame, _ = sp.feed(b"f\n")
    assert records(frame) == [("def", 14, False, False)]
    assert (sp.offset, sp.pending) == (18, b"")


def test_splitter_flush_emits_last_line():
    sp = LineSplitter(0, BIG)
    sp.feed(b"a\nlast")
    frame, skipped = sp.flush()
    assert records(frame) == [("last", 2, False, False)] and skipped == 0
    assert sp.offset == 6
    sp.feed(b"\r")
    frame, skipped = sp.flush()
    assert frame.height == 0 and skipped == 1 and sp.offset == 7


def test_splitter_oversize_line_across_chunks_keeps_head_skips_tail():
    sp = LineSplitter(0, 10)
    frame, _ = sp.feed(b"ok\n" + b"y" * 7)
    assert list(frame[ORIGINAL]) == ["ok"]
    frame, _ = sp.feed(b"y" * 7)  # 14 bytes pending > 10: head emitted now
    assert records(frame) == [("y" * 10, 3, True, False)]
    assert sp.skipping and sp.pending == b""
    frame, _ = sp.feed(b"yyy")
    assert frame.height == 0 and sp.offset == 20
    frame, _ = sp.feed(b"yy\nnext\n")
    assert records(frame) == [("next", 23, False, False)]
    assert sp.offset == 28 and not sp.skipping


def reference(data: bytes, max_line: int) -> tuple[list[tuple[str, int, bool]], int]:
    """What a line splitter must produce: (text, offset, truncated) and empties."""
    out, empties, pos = [], 0, 0
    for line in data.split(b"\n"):
        content = line[:-1] if line.endswith(b"\r") else line
        if content:
            out.append((content, pos, len(content) > max_line))
        elif line or pos < len(data):  # the text after the last "\n" is no empty line
            empties += 1
        pos += len(line) + 1
    return out, empties


def is_utf8(b: bytes) -> bool:
    try:
        b.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


# Bytes with many newlines, CRs and some invalid UTF-8.
chunky = st.lists(
    st.sampled_from(
        [
            b"\n",
            b"\r",
            b"\r\n",
            b"a",
            b"bc",
            b" ",
            b"\xff",
            b"\xc3\xa9",
            b"\x00",
            b"longer text ",
            b"\n\n",
        ]
    ),
    max_size=60,
).map(b"".join)


@settings(max_examples=300, deadline=None)
@given(
    data=st.one_of(st.binary(max_size=700), chunky),
    cuts=st.lists(st.integers(min_value=0, max_value=700), max_size=8),
    max_line=st.sampled_from([3, 7, BIG]),
)
def test_chunked_feeding_reconstructs_every_line(data, cuts, max_line):
    """Any chunking gives every line once, at its offset (plus counted empties)."""
    sp = LineSplitter(0, max_line)
    got, skipped = [], 0
    bounds = sorted({min(c, len(data)) for c in cuts} | {0, len(data)})
    for a, b in zip(bounds, bounds[1:], strict=False):
        frame, s = sp.feed(data[a:b])
        got += records(frame)
        skipped += s
        assert len(sp.pending) <= max_line + sp.pending.endswith(b"\r")  # a CR may start CRLF
        assert sp.tail == data[: sp.offset][-LineSplitter.TAIL :]
    frame, s = sp.flush()
    got += records(frame)
    skipped += s
    assert sp.offset == len(data)
    assert sp.tail == data[-LineSplitter.TAIL :]

    want, empties = reference(data, max_line)
    assert skipped == empties
    assert [(o, t) for _, o, t, _ in got] == [(o, t) for _, o, t in want]
    for (text, _, truncated, invalid), (content, _, _) in zip(got, want, strict=True):
        if truncated:  # cut at most 3 bytes early, so as not to split a character
            heads = [content[:k] for k in range(max(1, max_line - 3), max_line + 1)]
        else:
            heads = [content]
        if invalid:  # escaped, and the bytes really were not UTF-8
            (head,) = [h for h in heads if h.decode("utf-8", "backslashreplace") == text]
            assert not is_utf8(head)
        else:
            assert text.encode() in heads


@settings(max_examples=100, deadline=None)
@given(text=st.text(max_size=80), max_line=st.integers(min_value=4, max_value=40))
def test_truncation_of_valid_utf8_stays_valid(text, max_line):
    line = text.replace("\n", " ").replace("\r", " ")
    frame, _, _ = split_lines((line + "\n").encode(), 0, max_line)
    if not line:
        assert frame.height == 0
        return
    (rec,) = records(frame)
    assert not rec[3]  # never flagged invalid by our own cut
    assert line.startswith(rec[0])
    assert rec[2] == (len(line.encode()) > max_line)
