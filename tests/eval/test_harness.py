"""The pieces of `make eval`: CSIC request -> log line, failJSON reader, metrics."""

from __future__ import annotations

import math
from pathlib import Path

import polars as pl
import pytest

from eval import auth, common, flows, web


def _first(path: Path, method: str) -> web.Request:
    return next(r for r in web.read_requests(path) if r.method == method)


def test_csic_get_request_becomes_a_combined_log_line() -> None:
    req = _first(web.NORMAL, "GET")
    assert req.target.startswith("http://localhost:8080/")
    line = web.log_line(req, 3)
    path = req.target.split("8080", 1)[1]
    assert f'"GET {path} HTTP/1.1" 200 ' in line
    assert line.endswith(f'"{req.headers["user-agent"]}"')
    assert line != web.log_line(req, 4)  # each request its own second: lines are unique


def test_csic_post_body_only_in_the_body_variant() -> None:
    req = _first(web.ANOMALOUS, "POST")
    assert req.body and "=" in req.body
    assert req.body not in web.log_line(req, 0)
    assert req.body in web.log_line(req, 0, with_body=True)
    assert web.origin_form("http://localhost:8080/a/b.jsp?x=1") == "/a/b.jsp?x=1"


def test_csic_lines_parse_as_apache_access_events(tmp_path: Path) -> None:
    reqs = [_first(web.NORMAL, "GET"), _first(web.ANOMALOUS, "POST")]
    lines = [web.log_line(r, i, with_body=True) for i, r in enumerate(reqs)]
    with common.Env(tmp_path) as env:
        summary = env.ingest_lines(lines)
        rows = env.events(["event.original", "url.original", "source.ip"]).to_dicts()
    assert summary["parse_failures"] == 0
    assert sorted(r["event.original"] for r in rows) == sorted(lines)
    by_line = {r["event.original"]: r for r in rows}
    assert reqs[1].body in by_line[lines[1]]["url.original"]


def test_failjson_reader_pairs_notes_with_lines_and_modes(tmp_path: Path) -> None:
    f = tmp_path / "sample"
    f.write_text(
        '# filterOptions: [{}, {"mode": "aggressive"}]\n'
        '# failJSON: { "time": "2005-02-07T15:10:42", "match": true , "host": "192.0.2.1" }\n'
        "Feb  7 15:10:42 h sshd[1]: Failed password for root from 192.0.2.1 port 22 ssh2\n"
        "# a plain comment\n"
        "\n"
        "an unannotated line\n"
        '# failJSON: { "match": false }\n'
        "Feb  7 15:10:43 h sshd[1]: Accepted password for bob from 192.0.2.2 port 22 ssh2\n"
        '# filterOptions: {"mode": "ddos"}\n'
        '# failJSON: { "match": true, "host": "192.0.2.3" }\n'
        "Feb  7 15:10:44 h sshd[1]: Did not receive identification string from 192.0.2.3\n"
    )
    cases = auth.read_cases(f)
    assert [(c.match, c.host, c.modes) for c in cases] == [
        (True, "192.0.2.1", ("", "aggressive")),
        (False, None, ("", "aggressive")),
        (True, "192.0.2.3", ("ddos",)),
    ]
    assert cases[1].line.startswith("Feb  7 15:10:43")


def test_failjson_verdicts_apply_per_filter_mode(tmp_path: Path) -> None:
    """A verdict holds in its section's modes, narrowed by its `constraint`."""
    f = tmp_path / "sshd"
    f.write_text(
        '# filterOptions: [{}, {"mode": "aggressive"}]\n'
        '# failJSON: { "constraint": "opts.get(\'mode\') != \'aggressive\'", "match": false }\n'
        "Nov 28 09:16:05 srv sshd[1]: Connection closed by 192.0.2.111 [preauth]\n"
        '# failJSON: { "constraint": "opts.get(\'mode\') == \'aggressive\'", "match": true }\n'
        "Nov 28 09:16:05 srv sshd[1]: Connection closed by 192.0.2.111 [preauth]\n"
        '# filterOptions: [{"test.condition": "name==\'sshd\'", "mode": "ddos"}]\n'
        '# failJSON: { "match": true, "host": "192.0.2.3" }\n'
        "Feb  7 15:10:44 h sshd[1]: Did not receive identification string from 192.0.2.3\n"
        '# filterOptions: {"test.condition": "name==\'sshd\'"}\n'
        '# failJSON: { "constraint": "name == \'sshd\'", "match": true, "host": "192.0.2.4" }\n'
        "Feb  7 15:10:45 h sshd[1]: Did not receive identification string from 192.0.2.4\n"
    )
    cases = auth.read_cases(f)
    assert [c.applies("sshd") for c in cases] == [True, False, False, True]
    assert [c.applies("sshd", "aggressive") for c in cases] == [False, True, False, False]
    assert [c.applies("sshd", "ddos") for c in cases] == [False, False, True, False]
    assert [c.applies("sshd-ddos", "ddos") for c in cases] == [False, False, False, False]
    with pytest.raises(ValueError):
        auth.holds("opts['mode'] in ('a', 'b')", "sshd", {})


def test_failjson_reader_on_real_file() -> None:
    cases = auth.read_cases(auth.FAIL2BAN / "sshd")
    text = (auth.FAIL2BAN / "sshd").read_text(errors="replace")
    assert len(cases) == text.count("failJSON:")
    assert all(not c.line.startswith("#") for c in cases)


def test_confusion_metrics_on_a_known_matrix() -> None:
    # 4 attacks (3 caught), 6 benign (1 false alarm), computed by hand:
    # precision 3/4, recall 3/4, FPR 1/6, F1 = 2*.75*.75/1.5 = .75, accuracy 8/10
    truth = [True, True, True, True, False, False, False, False, False, False]
    flagged = [True, True, True, False, True, False, False, False, False, False]
    cm = common.confusion(truth, flagged)
    assert (cm.tp, cm.fp, cm.tn, cm.fn) == (3, 1, 5, 1)
    assert cm.precision == pytest.approx(0.75)
    assert cm.recall == pytest.approx(0.75)
    assert cm.fpr == pytest.approx(1 / 6)
    assert cm.f1 == pytest.approx(0.75)
    assert cm.accuracy == pytest.approx(0.8)
    # nothing flagged: precision undefined, not 0 or 1
    none = common.confusion([True, False], [False, False])
    assert math.isnan(none.precision) and none.recall == 0.0
    assert none.as_dict()["precision"] is None
    with pytest.raises(ValueError):
        common.confusion([True], [])


def test_table_aligns_numbers_right() -> None:
    text = common.table(["name", "n"], [["a", 5], ["long name", 123]])
    lines = text.splitlines()
    assert lines[2] == "a            5"
    assert lines[3] == "long name  123"


def test_notice_reader() -> None:
    notes = flows.notice_sources(flows.ZEEK / "sshguess.notice.log")
    assert [n for n, _ in notes] == ["SSH::Password_Guessing"]
    src = notes[0][1]
    assert src.count(".") == 3
    assert pl.Series([src]).str.contains(r"^\d+\.\d+\.\d+\.\d+$").all()


def test_dga_report_reads_the_other_seeds_against_the_target() -> None:
    from eval import ml_dga

    held = {
        "held_out_families": ["a"], "train_families": ["b"], "test_dga": 1, "test_benign": 1,
        "auc": 0.981, "auc_without_top1pct_benign": 0.99, "tpr_at_0.1%_fpr": 0.4,
        "threshold": 0.9, "tpr_at_threshold": 0.5, "fpr_at_threshold": 0.001,
        "per_family": [], "top_benign": [("x.com", 0.9)],
    }  # fmt: skip
    folds = {"folds": [], "auc_mean": 0.97, "auc_min": 0.96, "tpr_at_0.1%_fpr_mean": 0.3}
    other = {
        "splits": [
            {"seed": 1, "held_out_families": ["c", "d"], "auc": 0.95, "tpr_at_0.1%_fpr": 0.1},
            {"seed": 2, "held_out_families": ["e"], "auc": 0.97, "tpr_at_0.1%_fpr": 0.2},
        ],
        "auc_mean": 0.96, "auc_min": 0.95, "auc_max": 0.97,
    }  # fmt: skip
    text = ml_dga.report_dga({"held_out": held, "group_kfold": folds, "other_splits": other})
    row = next(line for line in text.splitlines() if "2 other seeds, mean" in line)
    assert row.split()[-2:] == ["0.96", "MISSED"]
    assert "0.95-0.97" in text and "c d" in text
    # without other seeds (the model's own metadata) the rows are left out
    assert "other seeds" not in ml_dga.report_dga({"held_out": held, "group_kfold": folds})
