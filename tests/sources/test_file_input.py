"""`file` source with bad input, one-shot imports and gzip, through the real pipeline."""

from __future__ import annotations

import gzip
import random

from .tailing import append, syslog, wait_until

NGINX = (
    '203.0.113.{i} - - [10/Oct/2023:13:55:{s:02d} +0000] "GET /page/{i}?q=1 HTTP/1.1" 200 '
    '{i}12 "-" "Mozilla/5.0"\n'
)


def test_one_shot_flushes_last_line_without_newline(tmp_path, tails):
    log = tmp_path / "app.log"
    log.write_text(syslog(0) + "no newline at the end")
    t = tails([str(log)], one_shot=True).run_once()
    assert t.originals() == [syslog(0).rstrip("\n"), "no newline at the end"]
    assert [r["log.offset"] for r in t.rows()] == [0, len(syslog(0))]
    t.run_once()  # imported already: nothing twice
    assert t.count() == 2


def test_gzip_is_imported_once(tmp_path, tails):
    gz = tmp_path / "app.log.1.gz"
    with gzip.open(gz, "wt") as fh:
        fh.write("".join(syslog(i) for i in range(100)) + "last without newline")
    plain = tmp_path / "app.log"
    plain.write_text(syslog(100))
    t = tails([str(tmp_path / "app.log*")], one_shot=True).run_once()
    assert t.count() == 102
    assert "last without newline" in t.originals()
    t.run_once()
    assert t.count() == 102
    (cp,) = [c for c in t.store.checkpoints("logs").values() if c.stream.startswith("gz:")]
    assert cp.done

    # in tail mode too: read once, never re-read on later polls or restarts
    t2 = tails([str(tmp_path / "app.log*")], data_dir="tail")
    t2.start()
    t2.wait_count(102)
    append(plain, syslog(101))
    t2.wait_count(103)
    t2.restart()
    append(plain, syslog(102))
    t2.wait_count(104)
    t2.stop()
    assert sorted(t2.ids()) == sorted(set(t2.ids()))


def test_truncated_gzip_keeps_what_it_can_and_reports(tmp_path, tails):
    whole = gzip.compress("".join(syslog(i) for i in range(2000)).encode())
    gz = tmp_path / "cut.log.gz"
    gz.write_bytes(whole[: len(whole) * 3 // 4])
    t = tails([str(gz)], one_shot=True).run_once()
    n = t.count()
    assert 0 < n < 2000
    assert "gzip" in t.source.metrics.last_error
    assert t.originals() == [syslog(i).rstrip("\n") for i in range(n - 1)] + [t.originals()[-1]]


def test_gzip_being_written_is_retried_until_complete(tmp_path, tails):
    whole = gzip.compress("".join(syslog(i) for i in range(3000)).encode())
    gz = tmp_path / "rotated.log.gz"
    gz.write_bytes(whole[: len(whole) // 2])  # the compressor is not done yet
    t = tails([str(gz)]).start()
    wait_until(lambda: t.count() > 0, what="the first half")
    append(gz, whole[len(whole) // 2 :])
    t.wait_count(3000)
    t.stop()
    assert t.originals() == [syslog(i).rstrip("\n") for i in range(3000)]


def test_truncated_gzip_while_tailing_is_imported_once_it_settles(tmp_path, tails):
    whole = gzip.compress("".join(syslog(i) for i in range(3000)).encode())
    gz = tmp_path / "cut.log.gz"
    gz.write_bytes(whole[: len(whole) // 2])
    t = tails([str(gz)]).start()
    t.source.gz_settle_seconds = 0.3
    done = lambda: [c for c in t.store.checkpoints("logs").values() if c.done]  # noqa: E731
    wait_until(done, what="the short gzip to be imported as it is")
    assert "gzip" in t.source.metrics.last_error
    n = t.count()
    assert 0 < n < 3000
    t.restart()  # done: not imported again
    wait_until(lambda: t.source.streams, what="the scan")
    t.stop()
    assert t.count() == n


def test_one_megabyte_lines(tmp_path, tails):
    big = "x" * 1_000_000
    log = tmp_path / "big.log"
    log.write_text(f"{big}\nafter\n")
    t = tails([str(log)], one_shot=True).run_once()  # default limit: 1 MiB
    rows = t.rows()
    assert [len(r["event.original"]) for r in rows] == [1_000_000, 5]
    assert all("truncated" not in r["tags"] for r in rows)
    assert rows[1]["log.offset"] == 1_000_001

    t2 = tails([str(log)], data_dir="small", one_shot=True, max_line_bytes=1000).run_once()
    rows = t2.rows()
    assert [r["event.original"] for r in rows] == ["x" * 1000, "after"]
    assert "truncated" in rows[0]["tags"] and "truncated" not in rows[1]["tags"]
    assert rows[1]["log.offset"] == 1_000_001
    assert t2.source.metrics.truncated == 1


def test_oversize_line_arriving_in_pieces_while_tailing(tmp_path, tails):
    log = tmp_path / "big.log"
    log.write_text("a" * 60_000)
    t = tails([str(log)], max_line_bytes=50_000).start()
    t.wait_count(1)  # the head is emitted once it exceeds the limit
    append(log, "a" * 60_000)
    append(log, "a\nnext\n")
    t.wait_count(2)
    t.stop()
    rows = t.rows()
    assert [(len(r["event.original"]), r["log.offset"]) for r in rows] == [
        (50_000, 0),
        (4, 120_002),
    ]
    assert "truncated" in rows[0]["tags"]


def test_messy_input_every_record_is_an_event_or_a_parse_failure(tmp_path, tails):
    log = tmp_path / "messy.log"
    log.write_bytes(
        syslog(0).encode()
        + b"crlf line\r\n"
        + b"\n\r\n\n"  # three empty lines
        + b"   \n"  # whitespace: a record
        + b"bad utf-8 \xff\xfe here\n"
        + b"nul\x00byte\n"
        + syslog(1).replace("\n", "\r\n").encode()
        + b"unterminated"
    )
    t = tails([str(log)]).start()
    t.wait_count(6)
    t.stop()
    rows = {r["event.original"]: r for r in t.rows()}
    assert set(rows) == {
        syslog(0).rstrip("\n"),
        "crlf line",
        "   ",
        "bad utf-8 \\xff\\xfe here",
        "nul\x00byte",
        syslog(1).rstrip("\n"),
    }
    assert "invalid_utf8" in rows["bad utf-8 \\xff\\xfe here"]["tags"]
    for text in ("crlf line", "   ", "nul\x00byte", "bad utf-8 \\xff\\xfe here"):
        assert "parse_failure" in rows[text]["tags"]
    assert rows[syslog(1).rstrip("\n")]["event.dataset"] is not None
    assert t.source.metrics.skipped_empty == 3
    src = t.source_stats()
    assert src["received"] == 9  # 6 events + 3 empty lines; "unterminated" still held
    assert (src["events"], src["parse_failures"]) == (6, 4)


def test_binary_garbage_becomes_parse_failures(tmp_path, tails):
    data = random.Random(7).randbytes(200_000) + b"\x00" * 1000
    log = tmp_path / "garbage.bin"
    log.write_bytes(data)
    t = tails([str(log)], fmt="auto", one_shot=True).run_once()
    lines = data.split(b"\n")
    nonempty = [ln for ln in lines if ln.rstrip(b"\r")]
    assert t.count() == len(nonempty)
    assert t.source.metrics.skipped_empty == len(lines) - len(nonempty)
    stats = t.store.stats()
    assert stats["parse_failures_total"] == t.count()
    rows = t.rows()
    assert all(r["event.original"] for r in rows)
    assert all("parse_failure" in r["tags"] for r in rows)
    assert len({r["event.id"] for r in rows}) == len(rows)
    assert t.source_stats()["parse_failures"] == len(nonempty)


def test_format_changing_midway_with_auto(tmp_path, tails):
    log = tmp_path / "mixed.log"
    log.write_text(
        "".join(NGINX.format(i=i, s=i) for i in range(1, 6))
        + "".join(syslog(i, "sshd") for i in range(5))
        + "something no parser knows\n"
    )
    t = tails([str(log)], fmt="auto", one_shot=True).run_once()
    rows = t.rows()
    assert len(rows) == 11
    datasets = [r["event.dataset"] for r in rows]
    assert datasets[:5] == ["nginx.access"] * 5
    assert all(d is not None and d != "nginx.access" for d in datasets[5:10])
    assert "parse_failure" in rows[10]["tags"]
    assert rows[10]["event.original"] == "something no parser knows"
    assert sum("parse_failure" in r["tags"] for r in rows) == 1
