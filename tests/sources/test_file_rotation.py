"""Rotated copies matched by the glob (`access.log*`) are not read twice.

logrotate's `copytruncate` leaves a copy, `compress`/`delaycompress` leave
`name.N.gz` files of content that was already tailed.
"""

from __future__ import annotations

import gzip
import os
import shutil
import time
from collections import Counter

from lightsoc.sources.file_identity import RotatedCopies, copy_in_progress, name_stem, sha1

from .tailing import append, syslog, wait_until


def lines(n: int, start: int = 0, tag: str = "app") -> str:
    return "".join(syslog(i, tag) for i in range(start, start + n))


def assert_each_once(t, want: list[str]) -> None:
    got = Counter(t.originals())
    assert [k for k, n in got.items() if n > 1] == []
    assert sorted(got) == sorted(want)


def compress(src, dst, *, keep: bool = False) -> None:
    with open(src, "rb") as fin, gzip.open(dst, "wb") as fout:
        shutil.copyfileobj(fin, fout)
    if not keep:
        os.unlink(src)


def test_name_stem():
    assert name_stem("/l/access.log") == ("/l", "access.log")
    assert name_stem("/l/access.log.1") == ("/l", "access.log")
    assert name_stem("/l/access.log.2.gz") == ("/l", "access.log")
    assert name_stem("/l/access.log-20240101.gz") == ("/l", "access.log")
    assert name_stem("/l/error.log.1") != name_stem("/l/access.log.1")
    assert name_stem("/other/access.log.1") != name_stem("/l/access.log")


def test_copy_recognition_needs_head_and_tail():
    body = lines(40).encode()
    copies = RotatedCopies()
    copies.ended("/l/a.log", sha1(body[:256]), 256, 1000, body[744:1000])
    assert copies.candidates("/l/a.log.1", body[:256])
    assert not copies.candidates("/l/b.log.1", body[:256])  # another stem
    assert not copies.candidates("/l/a.log.1", b"x" + body[1:256])  # another head
    copies.ended("/l/s.log", sha1(body[:256]), 256, 300, body[44:300])  # too short to tell
    assert not copies.candidates("/l/s.log.1", body[:256])


def test_copy_in_progress():
    live = lines(40).encode()
    head = sha1(live[:256])
    assert copy_in_progress(live[:700], False, head, live)  # a copy being written
    assert copy_in_progress(live[:100], True, head, live)  # a compressor just started
    assert not copy_in_progress(live[:100], False, head, live)
    other = live[:400] + b"different\n"  # a new file that shares a long first line
    assert not copy_in_progress(other, False, head, live)
    assert copy_in_progress(live[:700], False, head, b"new content after truncation")


def test_copytruncate_with_the_copy_matched_by_the_glob(tmp_path, tails):
    log = tmp_path / "app.log"
    log.write_text(lines(40))
    t = tails([str(tmp_path / "app.log*")], poll_interval=1.0).start()
    t.wait_count(40)
    time.sleep(0.2)  # the source has polled again, found nothing and waits 1 s
    # between two polls: lines the source has not read yet, then copy + truncate
    append(log, lines(3, 40))
    shutil.copyfile(log, tmp_path / "app.log.1")
    with open(log, "r+b") as fh:
        fh.truncate(0)
    append(log, lines(2, tag="after"))
    t.wait_count(45)
    t.stop()
    assert_each_once(t, lines(43).splitlines() + lines(2, tag="after").splitlines())
    by_path = Counter(r["log.file.path"] for r in t.rows())
    assert by_path[str(tmp_path / "app.log.1")] == 3  # what only the copy still had
    assert t.source.metrics.extra["rotated_copies"] == 1


def test_rename_then_compress_later_delaycompress(tmp_path, tails):
    """Debian's nginx/rsyslog setup: `access.log*`, compress + delaycompress."""
    log = tmp_path / "access.log"
    log.write_text(lines(40, tag="day1"))
    t = tails([str(tmp_path / "access.log*")]).start()
    t.wait_count(40)
    os.rename(log, tmp_path / "access.log.1")  # rotation 1
    log.write_text(lines(40, tag="day2"))
    t.wait_count(80)
    compress(tmp_path / "access.log.1", tmp_path / "access.log.2.gz")  # rotation 2
    os.rename(log, tmp_path / "access.log.1")
    log.write_text(lines(40, tag="day3"))
    t.wait_count(120)
    wait_until(lambda: t.source.metrics.extra.get("rotated_copies") == 1, what="the gz copy")
    append(log, syslog(40, "day3"))
    t.wait_count(121)
    t.stop()
    want = lines(40, tag="day1") + lines(40, tag="day2") + lines(41, tag="day3")
    assert_each_once(t, want.splitlines())


def test_rename_and_compress_at_once(tmp_path, tails):
    """compress without delaycompress: the gz appears while the renamed file is still open."""
    log = tmp_path / "app.log"
    log.write_text(lines(40))
    t = tails([str(tmp_path / "app.log*")]).start()
    t.wait_count(40)
    with open(log, "a") as writer:
        os.rename(log, tmp_path / "app.log.1")
        writer.write(lines(2, 40))  # the application writes on until it reopens
    log.write_text(lines(2, tag="new"))
    compress(tmp_path / "app.log.1", tmp_path / "app.log.1.gz")
    t.wait_count(44)
    wait_until(lambda: t.source.metrics.extra.get("rotated_copies") == 1, what="the gz copy")
    wait_until(lambda: len(t.source.streams) == 2, what="the deleted file to close")
    t.stop()
    assert_each_once(t, lines(42).splitlines() + lines(2, tag="new").splitlines())


def test_gzip_written_slowly_next_to_its_source_waits_for_it(tmp_path, tails):
    log = tmp_path / "app.log"
    log.write_text(lines(60))
    t = tails([str(tmp_path / "app.log*")]).start()
    t.wait_count(60)
    whole = gzip.compress(log.read_bytes())
    gz = tmp_path / "app.log.1.gz"
    gz.write_bytes(whole[:20])  # the compressor has begun
    time.sleep(0.3)  # several polls: the partial gzip is left alone, not read as short
    assert [s.path for s in t.source.streams.values()] == [str(log)]
    assert t.source.metrics.errors == 0
    append(gz, whole[20:])
    os.unlink(log)
    t.wait_count(60)
    wait_until(lambda: t.source.metrics.extra.get("rotated_copies") == 1, what="the gz copy")
    t.stop()
    assert t.count() == 60


def test_unrelated_files_with_the_same_first_line_are_both_read(tmp_path, tails):
    banner = "# " + "=" * 300 + " log file header\n"
    a = tmp_path / "app.log"
    a.write_text(banner + lines(20, tag="a"))
    t = tails([str(tmp_path / "app.log*")]).start()
    t.wait_count(21)
    b = tmp_path / "app.log.1"  # not a copy: same header, other lines
    b.write_text(banner + lines(20, tag="b"))
    t.wait_count(42)
    os.unlink(a)  # a's generation ends; a file with its header is still no copy of it
    wait_until(lambda: len(t.source.streams) == 1, what="the deleted file to close")
    (tmp_path / "app.log.2").write_text(banner + lines(20, tag="c"))
    t.wait_count(63)
    t.stop()
    assert t.source.metrics.extra.get("rotated_copies") is None
