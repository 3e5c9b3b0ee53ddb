"""`file` source in tail mode, through the real pipeline into a real DuckDB store.

Appends, rotation by rename, copytruncate, deletion, new files, many files,
`start_at: end`, restarts from committed checkpoints, missing paths.
"""

from __future__ import annotations

import os
import shutil
import time

import pytest

from .tailing import append, syslog, wait_until


def lines(n: int, start: int = 0, tag: str = "app") -> str:
    return "".join(syslog(i, tag) for i in range(start, start + n))


def assert_unique(tail) -> None:
    ids = tail.ids()
    assert len(ids) == len(set(ids))


def test_append_stop_restart_resumes_without_duplicates(tmp_path, tails):
    log = tmp_path / "app.log"
    log.write_text(lines(3))
    t = tails([str(log)]).start()
    t.wait_count(3)
    append(log, lines(2, 3))
    t.wait_count(5)
    t.stop()
    append(log, lines(2, 5))  # written while lightsoc is down
    t.start()
    t.wait_count(7)
    append(log, lines(1, 7))
    t.wait_count(8)
    t.stop()
    assert t.originals() == [syslog(i).rstrip("\n") for i in range(8)]
    offsets = [r["log.offset"] for r in t.rows()]
    sizes = [len(syslog(i)) for i in range(8)]
    assert offsets == [sum(sizes[:i]) for i in range(8)]
    assert_unique(t)
    assert t.source_stats()["received"] == 8 and t.source_stats()["events"] == 8
    assert t.store.checkpoints("logs")  # offsets are committed with the events


def test_file_rewritten_in_place_while_down_is_a_new_file(tmp_path, tails):
    """Same inode, same first 256 bytes, same size, other lines: not resumed at the old offset."""
    header = "# " + "=" * 300 + "\n"
    log = tmp_path / "app.log"
    log.write_text(header + lines(10, tag="old"))
    t = tails([str(log)]).start()
    t.wait_count(11)
    t.stop()
    with open(log, "r+") as fh:  # e.g. an inode reused after a delete
        fh.write(header + lines(10, tag="new"))
    t.start()
    t.wait_count(22)
    t.stop()
    assert sum(text.startswith("#") for text in t.originals()) == 2
    assert_unique(t)


def test_event_ids_are_deterministic_across_data_dirs(tmp_path, tails):
    log = tmp_path / "app.log"
    log.write_text(lines(20))
    a = tails([str(log)], data_dir="a", one_shot=True).run_once()
    b = tails([str(log)], data_dir="b", one_shot=True).run_once()
    assert a.count() == b.count() == 20
    assert a.ids() == b.ids()
    assert len(set(a.ids())) == 20


@pytest.mark.parametrize("pattern", ["app.log", "app.log*"])
def test_rotation_by_rename(tmp_path, tails, pattern):
    log = tmp_path / "app.log"
    log.write_text(lines(3))
    t = tails([str(tmp_path / pattern)]).start()
    t.wait_count(3)
    with open(log, "a") as writer:  # the application keeps its handle across the rename
        writer.write(syslog(3))
        writer.flush()
        os.rename(log, tmp_path / "app.log.1")
        writer.write(syslog(4))  # still lands in the renamed file
    log.write_text(lines(2, 5, tag="new"))  # the application reopens app.log
    t.wait_count(7)
    append(log, lines(1, 7, tag="new"))
    t.wait_count(8)
    t.stop()
    texts = sorted(t.originals())
    want = [syslog(i).rstrip("\n") for i in range(5)]
    want += [syslog(i, "new").rstrip("\n") for i in range(5, 8)]
    assert texts == sorted(want)
    assert_unique(t)


def test_copytruncate(tmp_path, tails):
    log = tmp_path / "app.log"
    log.write_text(lines(5))
    t = tails([str(log)]).start()
    t.wait_count(5)
    append(log, "unterminated before the rotation")
    wait_until(lambda: t.source.streams and next(iter(t.source.streams.values())).lines.pending)
    shutil.copyfile(log, tmp_path / "app.log.1")  # copy, then truncate in place
    with open(log, "r+b") as fh:
        fh.truncate(0)
    append(log, lines(2, 0, tag="after"))
    t.wait_count(8)
    append(log, lines(1, 2, tag="after"))
    t.wait_count(9)
    t.stop()
    rows = t.rows()
    texts = [r["event.original"] for r in rows]
    assert sorted(texts) == sorted(
        [syslog(i).rstrip("\n") for i in range(5)]
        + ["unterminated before the rotation"]
        + [syslog(i, "after").rstrip("\n") for i in range(3)]
    )
    assert_unique(t)  # same offsets, new generation: new ids
    assert t.source.metrics.extra.get("truncations") == 1
    t.start()  # a restart resumes the new generation, nothing twice
    append(log, lines(1, 3, tag="after"))
    t.wait_count(10)


def test_deleted_file_is_read_to_its_end_then_closed(tmp_path, tails):
    keep, gone = tmp_path / "keep.log", tmp_path / "gone.log"
    keep.write_text(lines(2, tag="keep"))
    gone.write_text(lines(2, tag="gone"))
    t = tails([str(tmp_path / "*.log")]).start()
    t.wait_count(4)
    with open(gone, "a") as writer:
        writer.write(syslog(2, "gone"))
        writer.flush()
        os.unlink(gone)
        writer.write("last words without newline")  # written after the unlink
    t.wait_count(6)  # the last line is emitted once the deleted file is closed
    wait_until(lambda: len(t.source.streams) == 1, what="the deleted file to be closed")
    append(keep, lines(1, 2, tag="keep"))
    t.wait_count(7)
    t.stop()
    assert "last words without newline" in t.originals()
    assert_unique(t)


def test_new_file_matching_glob_is_picked_up(tmp_path, tails):
    (tmp_path / "a.log").write_text(lines(2, tag="a"))
    (tmp_path / "ignored.txt").write_text(lines(2, tag="x"))
    t = tails([str(tmp_path / "*.log")]).start()
    t.wait_count(2)
    (tmp_path / "b.log").write_text(lines(3, tag="b"))
    t.wait_count(5)
    t.stop()
    assert {r["log.file.path"] for r in t.rows()} == {
        str(tmp_path / "a.log"),
        str(tmp_path / "b.log"),
    }


def test_many_files_at_once(tmp_path, tails):
    n_files, n_lines = 50, 20
    for f in range(n_files):
        (tmp_path / f"f{f:02d}.log").write_text(lines(n_lines, tag=f"f{f}"))
    t = tails([str(tmp_path / "*.log")]).start()
    t.wait_count(n_files * n_lines)
    for f in range(n_files):
        append(tmp_path / f"f{f:02d}.log", syslog(n_lines, f"f{f}"))
    t.wait_count(n_files * (n_lines + 1))
    t.stop()
    assert_unique(t)
    assert len({r["log.file.path"] for r in t.rows()}) == n_files
    assert t.source.metrics.lag_bytes == 0


def test_start_at_end(tmp_path, tails):
    log = tmp_path / "app.log"
    log.write_text(lines(3) + "partial")
    (tmp_path / "old.log.gz").write_bytes(b"")  # present at start: history, skipped
    t = tails([str(tmp_path / "*.log"), str(tmp_path / "*.gz")], start_at="end").start()
    wait_until(lambda: t.store.checkpoints("logs"), what="the start position to be committed")
    append(log, " line completed\n" + syslog(3))
    t.wait_count(2)
    (tmp_path / "later.log").write_text(lines(2, tag="later"))  # new: read from the start
    t.wait_count(4)
    t.stop()
    append(log, syslog(4))  # while down: resumed from the checkpoint, not from the end
    t.start()
    t.wait_count(5)
    t.stop()
    assert sorted(t.originals()) == sorted(
        ["partial line completed", syslog(3).rstrip("\n"), syslog(4).rstrip("\n")]
        + [syslog(i, "later").rstrip("\n") for i in range(2)]
    )


def test_start_at_end_restart_before_any_new_line(tmp_path, tails):
    """The start position is committed at once: a restart does not skip lines."""
    log = tmp_path / "app.log"
    log.write_text(lines(3))
    t = tails([str(log)], start_at="end").start()
    wait_until(lambda: t.store.checkpoints("logs"), what="the start position to be committed")
    t.stop()
    append(log, syslog(3))
    t.start()
    t.wait_count(1)
    t.stop()
    assert t.originals() == [syslog(3).rstrip("\n")]


def test_last_line_is_held_until_completed(tmp_path, tails):
    log = tmp_path / "app.log"
    log.write_text("first\nsec")
    t = tails([str(log)]).start()
    t.wait_count(1)
    wait_until(lambda: next(iter(t.source.streams.values())).lines.pending == b"sec")
    assert t.count() == 1
    t.stop()  # the held line is not committed: a restart reads it again
    t.start()
    append(log, "ond\nthird\n")
    t.wait_count(3)
    t.stop()
    rows = t.rows()
    assert [(r["event.original"], r["log.offset"]) for r in rows] == [
        ("first", 0),
        ("second", 6),
        ("third", 13),
    ]


def test_missing_path_is_reported_and_retried(tmp_path, tails):
    log = tmp_path / "later" / "app.log"
    t = tails([str(log)]).start()
    wait_until(lambda: t.source.metrics.last_error, what="the missing path to be reported")
    assert str(log) in t.source.metrics.last_error
    assert "does not exist" in t.source.metrics.last_error
    time.sleep(0.3)  # several polls later, the same problem is still one error
    assert t.pipeline.metrics()["sources"]["logs"]["errors"] == 1
    log.parent.mkdir()
    log.write_text(lines(2))
    t.wait_count(2)
    wait_until(lambda: t.source.metrics.last_error is None, what="the error to clear")
    t.stop()


def test_path_that_is_a_directory_is_reported_not_fatal(tmp_path, tails):
    named = tmp_path / "named.log"
    named.mkdir()  # a directory where the config names a file
    (tmp_path / "dir.log").mkdir()  # a directory matched by a glob is skipped quietly
    (tmp_path / "a.log").write_text(lines(2))
    t = tails([str(named), str(tmp_path / "*.log")]).start()
    t.wait_count(2)
    wait_until(lambda: t.source.metrics.last_error, what="the directory to be reported")
    assert "named.log: is not a regular file" in t.source.metrics.last_error
    named.rmdir()
    named.write_text(lines(3, tag="named"))
    t.wait_count(5)
    wait_until(lambda: t.source.metrics.last_error is None, what="the error to clear")
    t.stop()
    assert t.source.metrics.errors in (1, 2)  # 2 if a poll saw "does not exist" in between
