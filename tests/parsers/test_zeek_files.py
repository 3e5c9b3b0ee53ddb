"""Zeek files.log (TSV and JSON, Zeek 5.1+ and the older set layout): hashes, names,
endpoints and the labels the threat-intel matcher and file rules use."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from lightsoc import registry
from lightsoc.parsers import get_parser
from lightsoc.parsers.base import OK
from lightsoc.parsers.zeek import (
    DEFAULT_FIELDS,
    LEGACY_FILES_FIELDS,
    ZeekConnParser,
    ZeekDnsParser,
    ZeekFilesParser,
    ZeekHttpParser,
)
from lightsoc.schema import polars_type
from tests.parsers.test_zeek import (
    DNS_JSON,
    DNS_TSV,
    HTTP_JSON,
    HTTP_TSV,
    JSON_CONN,
    SSH_JSON,
    TSV_CONN,
    lines_of,
    run,
)

# files.log as Zeek writes it. Zeek 5.1+ layout: two HTTP bodies of one connection (no
# hashes configured for the first; the second with MD5/SHA1/SHA256). The set layout of
# older Zeek: the FTP_DATA download of the honeynet attack-trace capture.
FILES_HEADER = [
    "#separator \\x09",
    "#set_separator\t,",
    "#empty_field\t(empty)",
    "#unset_field\t-",
    "#path\tfiles",
    "#open\t2024-09-13-16-38-11",
]
FILES_NEW_FIELDS = "#fields\t" + "\t".join(DEFAULT_FIELDS["files"])
FILES_NEW = [
    "\t".join(
        [
            "1726201775.068874", "FQzmmA4txLAELVk6ug", "Cf7ViS38Dir6S2Sp24", "10.0.0.25", "37652",
            "65.9.141.86", "80", "HTTP", "0", "(empty)", "text/plain", "-", "0.000000", "F", "F",
            "3939", "-", "0", "0", "F", "-", "-", "-", "-", "-", "-", "-",
        ]
    ),
    "\t".join(
        [
            "1726201776.817226", "FrH7ji2KqzLDHybjXe", "Cf7ViS38Dir6S2Sp24", "10.0.0.25", "37652",
            "65.9.141.86", "80", "HTTP", "0", "MD5,SHA1,SHA256", "application/x-dosexec",
            "setup.exe", "0.012000", "T", "F", "10240", "10240", "0", "0", "F", "-",
            "9ce3bb74469869d10b50d343edef600e", "aaf4c61ddcc5e8a2dabede0f3b482cd9aea9434d",
            "30b045a7d9e09570072999e1cdef0e00cc1add72a0db594057b19ccdba686d04", "-", "-", "-",
        ]
    ),
]  # fmt: skip
FILES_OLD_FIELDS = "#fields\t" + "\t".join(LEGACY_FILES_FIELDS)
FILES_OLD = "\t".join(
    [
        "1240198114.648099", "FHUsSu3rWdP07eRE4l", "98.114.205.102", "192.150.11.111",
        "CDv7nk2O4Q6K7uaOgb", "FTP_DATA", "0", "PE,EXTRACT,MD5,SHA1", "application/x-dosexec",
        "-", "9.767306", "F", "T", "158720", "-", "0", "0", "F", "-",
        "14a09a48ad23fe0ea5a180bee8cb750a", "ac3cdd673f5126bc49faa72fb52284f513929db4", "-",
        "extract-1240198114.648099-FTP_DATA-FHUsSu3rWdP07eRE4l", "F", "-",
    ]
)  # fmt: skip
FILES_JSON = json.dumps(
    {
        "_path": "files", "ts": "2024-09-13T04:29:36.817226Z", "fuid": "FrH7ji2KqzLDHybjXe",
        "uid": "Cf7ViS38Dir6S2Sp24", "id.orig_h": "10.0.0.25", "id.orig_p": 37652,
        "id.resp_h": "65.9.141.86", "id.resp_p": 80, "source": "HTTP", "depth": 0,
        "analyzers": ["MD5", "SHA1", "SHA256"], "mime_type": "application/x-dosexec",
        "filename": "setup.exe", "duration": 0.012, "local_orig": True, "is_orig": False,
        "seen_bytes": 10240, "total_bytes": 10240, "missing_bytes": 0, "overflow_bytes": 0,
        "timedout": False, "md5": "9ce3bb74469869d10b50d343edef600e",
        "sha1": "aaf4c61ddcc5e8a2dabede0f3b482cd9aea9434d",
        "sha256": "30b045a7d9e09570072999e1cdef0e00cc1add72a0db594057b19ccdba686d04",
    }
)  # fmt: skip
# older JSON: no id.*, the hosts as arrays; an SMB upload (sent by the originator)
FILES_OLD_JSON = json.dumps(
    {
        "ts": 1575573054.714905, "fuid": "FdLrA12jaXM0aeUFL7", "tx_hosts": ["10.1.1.7"],
        "rx_hosts": ["10.1.1.2"], "conn_uids": ["CxtoJD1vAp3SAL6Sxa"], "source": "SMB",
        "depth": 0, "analyzers": ["MD5", "PE"], "mime_type": "application/x-dosexec",
        "filename": "ADMIN$\\Temp\\psexesvc.exe", "duration": 0.017705, "is_orig": True,
        "seen_bytes": 1244928, "total_bytes": 1244928, "missing_bytes": 0,
        "overflow_bytes": 0, "timedout": False, "md5": "75b55bb34dac9d02740b9ad6b6820360",
    }
)  # fmt: skip


def test_files_registered() -> None:
    assert registry.get("parsers", "zeek_files") is ZeekFilesParser
    assert (len(DEFAULT_FIELDS["files"]), len(LEGACY_FILES_FIELDS)) == (27, 25)


def test_files_tsv_with_header() -> None:
    lines = [*FILES_HEADER, FILES_NEW_FIELDS, *FILES_NEW, "#close\t2024-09-13-16-38-11"]
    out = run(ZeekFilesParser, lines)
    assert out[OK].all()
    assert out["event.dataset"].to_list() == ["zeek.header"] * 7 + ["zeek.files"] * 2 + [
        "zeek.header"
    ]
    plain, exe = out.row(7, named=True), out.row(8, named=True)
    assert plain["file.mime_type"] == "text/plain" and plain["file.size"] == 3939  # seen_bytes
    assert plain["file.name"] is None and plain["file.hash.md5"] is None
    assert {k: v for k, v in exe.items() if v is not None} == {
        "@timestamp": datetime(2024, 9, 13, 4, 29, 36, 817226, tzinfo=UTC),
        "source.ip": "10.0.0.25",
        "source.port": 37652,
        "destination.ip": "65.9.141.86",
        "destination.port": 80,
        "network.protocol": "http",
        "event.duration": 12_000_000,
        "file.name": "setup.exe",
        "file.size": 10240,
        "file.mime_type": "application/x-dosexec",
        "file.hash.md5": "9ce3bb74469869d10b50d343edef600e",
        "file.hash.sha1": "aaf4c61ddcc5e8a2dabede0f3b482cd9aea9434d",
        "file.hash.sha256": "30b045a7d9e09570072999e1cdef0e00cc1add72a0db594057b19ccdba686d04",
        "event.category": "file",
        "event.type": "info",
        "event.kind": "event",
        "labels": '{"zeek.fuid":"FrH7ji2KqzLDHybjXe","zeek.uid":"Cf7ViS38Dir6S2Sp24",'
        '"zeek.file_source":"HTTP"}',
        "event.dataset": "zeek.files",
        "event.module": "zeek",
        OK: True,
    }
    for name, dtype in out.schema.items():
        if name != OK:
            assert dtype == polars_type(name), name


def test_files_older_layout_with_and_without_header() -> None:
    with_header = run(ZeekFilesParser, [*FILES_HEADER, FILES_OLD_FIELDS, FILES_OLD])
    without = run(ZeekFilesParser, [FILES_OLD])  # a tailed file: the header is long gone
    assert with_header[OK].all() and without[OK].all()
    row = with_header.row(-1, named=True)
    assert row == without.row(0, named=True)
    assert row["event.dataset"] == "zeek.files"
    # is_orig T: the originator sent the file, so the sender (tx_hosts) is the source
    assert (row["source.ip"], row["destination.ip"]) == ("98.114.205.102", "192.150.11.111")
    assert row["source.port"] is None and row["network.protocol"] == "ftp"
    assert row["file.hash.md5"] == "14a09a48ad23fe0ea5a180bee8cb750a"
    assert row["file.hash.sha1"] == "ac3cdd673f5126bc49faa72fb52284f513929db4"
    assert row["file.hash.sha256"] is None and row["file.size"] == 158720
    assert row["event.duration"] == 9_767_306_000
    assert json.loads(row["labels"]) == {
        "zeek.fuid": "FHUsSu3rWdP07eRE4l",
        "zeek.conn_uids": "CDv7nk2O4Q6K7uaOgb",
        "zeek.file_source": "FTP_DATA",
    }
    # the responder sent it: sender and receiver swap into the connection's view
    swapped = FILES_OLD.replace("\tF\tT\t158720", "\tF\tF\t158720")
    back = run(ZeekFilesParser, [swapped]).row(0, named=True)
    assert (back["source.ip"], back["destination.ip"]) == ("192.150.11.111", "98.114.205.102")


def test_files_json_both_layouts() -> None:
    out = run(ZeekFilesParser, [FILES_JSON, FILES_OLD_JSON])
    assert out[OK].to_list() == [True, True]
    new = out.row(0, named=True)
    tsv = run(ZeekFilesParser, [FILES_NEW[1]]).row(0, named=True)
    for key in ("@timestamp", "source.ip", "destination.port", "file.name", "file.size"):
        assert new[key] == tsv[key], key
    for key in ("file.mime_type", "file.hash.md5", "file.hash.sha1", "file.hash.sha256"):
        assert new[key] == tsv[key], key
    smb = out.row(1, named=True)
    assert (smb["source.ip"], smb["destination.ip"]) == ("10.1.1.7", "10.1.1.2")
    assert smb["file.name"] == "psexesvc.exe"
    assert smb["file.path"] == "ADMIN$\\Temp\\psexesvc.exe"
    assert smb["file.hash.md5"] == "75b55bb34dac9d02740b9ad6b6820360"
    assert smb["network.protocol"] == "smb" and smb["file.size"] == 1244928


def test_files_told_apart_from_other_logs() -> None:
    files = [FILES_NEW[1], FILES_OLD, FILES_JSON, FILES_OLD_JSON]
    others = [DNS_TSV, HTTP_TSV, DNS_JSON, HTTP_JSON, lines_of(TSV_CONN)[8], lines_of(JSON_CONN)[0]]
    assert run(ZeekFilesParser, files + others)[OK].to_list() == [True] * 4 + [False] * 6
    for parser in (ZeekConnParser, ZeekDnsParser, ZeekHttpParser):
        assert not run(parser, files)[OK].any(), parser
        assert not parser().matches(pl.Series(files)).any(), parser
    assert not run(ZeekFilesParser, lines_of(SSH_JSON)[:20])[OK].any()


def test_auto_detects_files_logs() -> None:
    """`format: auto` hands the header lines to another Zeek parser: data lines stand alone."""
    lines = [*FILES_HEADER, FILES_NEW_FIELDS, *FILES_NEW]
    lines += [*FILES_HEADER, FILES_OLD_FIELDS, FILES_OLD, FILES_JSON, FILES_OLD_JSON]
    out = get_parser("auto").parse(pl.Series(lines))
    assert out[OK].all()
    got = out["event.dataset"].to_list()
    assert (
        got == ["zeek.header"] * 7 + ["zeek.files"] * 2 + ["zeek.header"] * 7 + ["zeek.files"] * 3
    )
    assert out["file.hash.md5"].drop_nulls().to_list() == [
        "9ce3bb74469869d10b50d343edef600e",
        "14a09a48ad23fe0ea5a180bee8cb750a",
        "9ce3bb74469869d10b50d343edef600e",
        "75b55bb34dac9d02740b9ad6b6820360",
    ]


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.text(max_size=80),
            st.lists(
                st.sampled_from(["-", "(empty)", "1.5", "0", "FAbcdef1", "HTTP", "a,b", "x"]),
                min_size=20,
                max_size=30,
            ).map("\t".join),
            st.dictionaries(
                st.sampled_from(["ts", "fuid", "tx_hosts", "seen_bytes", "is_orig", "md5"]),
                st.one_of(st.none(), st.booleans(), st.integers(), st.text(), st.lists(st.text())),
            ).map(json.dumps),
        ),
        max_size=12,
    )
)
def test_files_arbitrary_lines_never_raise(lines: list[str]) -> None:
    out = run(ZeekFilesParser, lines)
    assert out.height == len(lines)
    ZeekFilesParser().matches(pl.Series(lines, dtype=pl.String))
