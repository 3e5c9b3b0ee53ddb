"""File-hash indicators against file.hash.* of real Suricata fileinfo and Zeek files.log events.

Indicators come from the real STIX and MISP examples in the shared data and a
plain list; events go through `lightsoc.ingest.ingest` (format auto-detected)
into a real DuckDB event store and SQLite state store.
"""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from lightsoc.alerts.store import AlertStore
from lightsoc.config import load_config
from lightsoc.enrich.intel import IntelEnricher
from lightsoc.enrich.intel_formats import Indicator, load_file
from lightsoc.ingest import ingest
from lightsoc.runtime import open_stores
from lightsoc.store.state import StateStore
from lightsoc.store.state_intel import IntelStore
from lightsoc.timeutil import since_range

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
STIX = DATA / "intel" / "stix21" / "malware-indicator-for-file-hash.json"
MISP = DATA / "intel" / "misp" / "57c4445b-c548-4654-af0b-4be3950d210f.json"
EVE = DATA / "flows" / "stratosphere" / "test6-malicious.suricata.json"

# STIX: [file:hashes.'SHA-256' = 'ef537f25...'] (Poison Ivy); MISP event "Ransomware - Xorist"
POISON_IVY_SHA256 = "ef537f25c895bfa782526529a9b63d97aa631564d5d789c2b765448c8635fb6c"
XORIST_MD5 = "0749bae92ca336a02c83d126e04ec628"
XORIST_SHA1 = "77b0c41b7d340b8a3d903f21347bbf06aa766b5b"
XORIST_SHA256 = "b3c4ae251f8094fa15b510051835c657eaef2a6cea46075d3aec964b14a99f68"
# the FTP_DATA download of the honeynet attack-trace capture (Zeek files.log before 5.1)
ATTACK_TRACE_MD5 = "14a09a48ad23fe0ea5a180bee8cb750a"

# Suricata fileinfo of an HTTP download, as Suricata writes it (hashes on, libmagic on),
# the sha256 in upper case; and a benign PDF download with hashes no list has.
FILEINFO_EVIL = json.dumps(
    {
        "timestamp": "2024-05-01T10:15:02.418275+0000", "flow_id": 1120917441264873,
        "event_type": "fileinfo", "src_ip": "203.0.113.80", "src_port": 80,
        "dest_ip": "192.168.1.20", "dest_port": 49822, "proto": "TCP",
        "http": {
            "hostname": "dl.example-cdn.net", "url": "/files/update.exe",
            "http_user_agent": "Mozilla/5.0 (Windows NT 10.0; Win64; x64)",
            "http_content_type": "application/octet-stream", "http_method": "GET",
            "protocol": "HTTP/1.1", "status": 200, "length": 121856,
        },
        "app_proto": "http",
        "fileinfo": {
            "filename": "/files/update.exe", "sid": [],
            "magic": "PE32 executable (GUI) Intel 80386, for MS Windows", "gaps": False,
            "state": "CLOSED", "md5": "5e9d6a3b0a4f3c2d1e8f7a6b5c4d3e2f",
            "sha1": "2fd4e1c67a2d28fced849ee1bb76e7391b93eb12",
            "sha256": POISON_IVY_SHA256.upper(), "stored": False, "size": 121856, "tx_id": 0,
        },
    }
)  # fmt: skip
FILEINFO_BENIGN = json.dumps(
    {
        "timestamp": "2024-05-01T10:16:47.073303+0000", "flow_id": 607337898656215,
        "event_type": "fileinfo", "src_ip": "141.211.32.32", "src_port": 80,
        "dest_ip": "192.168.1.21", "dest_port": 51716, "proto": "TCP",
        "http": {
            "hostname": "www.isr.umich.edu",
            "url": "/cps/M-ABLE/materials/EEWE/Business%20Plan%20Template.pdf",
            "http_content_type": "application/pdf", "http_method": "GET",
            "protocol": "HTTP/1.1", "status": 200, "length": 748225,
        },
        "app_proto": "http",
        "fileinfo": {
            "filename": "/cps/M-ABLE/materials/EEWE/Business Plan Template.pdf",
            "magic": "PDF document, version 1.3", "state": "CLOSED",
            "md5": "0e26bfdecba382074c4b14d048ccd516",
            "sha1": "e70f41a89c5389e97e489fbcb5818d6f17cb15ce",
            "sha256": "acdebd0906bbe479fd70be0cbe2c08067562d5590afff6aa88140f029465a67d",
            "stored": False, "size": 982, "tx_id": 0,
        },
    }
)  # fmt: skip

_HEADER = [
    "#separator \\x09",
    "#set_separator\t,",
    "#empty_field\t(empty)",
    "#unset_field\t-",
    "#path\tfiles",
    "#open\t2024-05-01-10-00-00",
]
# Zeek 5.1+ files.log: the Xorist sample (upper-case MD5 as some exporters write it) and a
# plain-text download without a list entry
FILES_NEW = [
    *_HEADER,
    "#fields\tts\tfuid\tuid\tid.orig_h\tid.orig_p\tid.resp_h\tid.resp_p\tsource\tdepth\t"
    "analyzers\tmime_type\tfilename\tduration\tlocal_orig\tis_orig\tseen_bytes\ttotal_bytes\t"
    "missing_bytes\toverflow_bytes\ttimedout\tparent_fuid\tmd5\tsha1\tsha256\textracted\t"
    "extracted_cutoff\textracted_size",
    "#types\ttime\tstring\tstring\taddr\tport\taddr\tport\tstring\tcount\tset[string]\tstring\t"
    "string\tinterval\tbool\tbool\tcount\tcount\tcount\tcount\tbool\tstring\tstring\tstring\t"
    "string\tstring\tbool\tcount",
    "1714558530.224315\tFhETkS3I7LsLH4QQBf\tCuKFds3dfSNJC2k5Xa\t192.168.1.75\t49731\t"
    "185.220.101.50\t80\tHTTP\t0\tMD5,SHA1,SHA256\tapplication/x-dosexec\t3Z4wnG9603it23y.exe\t"
    f"0.100000\tT\tF\t10240\t10240\t0\t0\tF\t-\t{XORIST_MD5.upper()}\t{XORIST_SHA1}\t"
    f"{XORIST_SHA256}\t-\t-\t-",
    "1714558531.068874\tFQzmmA4txLAELVk6ug\tCf7ViS38Dir6S2Sp24\t192.168.1.75\t37652\t"
    "65.9.141.86\t80\tHTTP\t0\tMD5,SHA1,SHA256\ttext/plain\t-\t0.000000\tT\tF\t3939\t3939\t0\t0\t"
    "F\t-\t5d41402abc4b2a76b9719d911017c592\taaf4c61ddcc5e8a2dabede0f3b482cd9aea9434d\t"
    "2c26b46b68ffc68ff99b453c1d30413413422e706483bfa0f98a5e886266e7ae\t-\t-\t-",
    "#close\t2024-05-01-11-00-00",
]
# files.log before Zeek 5.1 (tx_hosts/rx_hosts/conn_uids): the attack-trace download, MD5+SHA1
FILES_OLD = [
    *_HEADER,
    "#fields\tts\tfuid\ttx_hosts\trx_hosts\tconn_uids\tsource\tdepth\tanalyzers\tmime_type\t"
    "filename\tduration\tlocal_orig\tis_orig\tseen_bytes\ttotal_bytes\tmissing_bytes\t"
    "overflow_bytes\ttimedout\tparent_fuid\tmd5\tsha1\tsha256\textracted\textracted_cutoff\t"
    "extracted_size",
    "#types\ttime\tstring\tset[addr]\tset[addr]\tset[string]\tstring\tcount\tset[string]\t"
    "string\tstring\tinterval\tbool\tbool\tcount\tcount\tcount\tcount\tbool\tstring\tstring\t"
    "string\tstring\tstring\tbool\tcount",
    "1714558600.648099\tFHUsSu3rWdP07eRE4l\t98.114.205.102\t192.150.11.111\tCDv7nk2O4Q6K7uaOgb\t"
    "FTP_DATA\t0\tPE,EXTRACT,MD5,SHA1\tapplication/x-dosexec\t-\t9.767306\tF\tT\t158720\t-\t0\t"
    f"0\tF\t-\t{ATTACK_TRACE_MD5}\tac3cdd673f5126bc49faa72fb52284f513929db4\t-\t"
    "extract-1240198114.648099-FTP_DATA-FHUsSu3rWdP07eRE4l\tF\t-",
    "#close\t2024-05-01-11-00-00",
]


def _real_fileinfo() -> list[str]:
    """The capture's own fileinfo lines (HTTP bodies, no hashes configured)."""
    if not EVE.exists():
        pytest.fail(f"test data missing: {EVE}")
    return [ln for ln in EVE.read_text().splitlines() if '"event_type":"fileinfo"' in ln]


def _load(intel: IntelStore, tmp_path: Path) -> None:
    for name, path in (("stix", STIX), ("misp", MISP)):
        res = load_file(path)
        assert res.counts()["hash"] >= 1, name
        intel.replace_source(name, res.format, "High", res.indicators)
    plain = tmp_path / "hashes.txt"
    plain.write_text(
        "# md5 of samples seen in the honeypot\n"
        f"{ATTACK_TRACE_MD5}  # attack-trace ftp download\n"
        "not-a-hash-line\n"
    )
    res = load_file(plain)
    assert [(i.kind, i.value) for i in res.indicators] == [("hash", ATTACK_TRACE_MD5)]
    intel.replace_source("honeypot", res.format, "Medium", res.indicators)


def test_loaders_keep_hashes_by_type() -> None:
    """STIX SHA-256 pattern and MISP md5/sha1/sha256 attributes become lower-case hash IOCs."""
    stix = load_file(STIX)
    assert [(i.kind, i.value) for i in stix.indicators] == [("hash", POISON_IVY_SHA256)]
    misp = load_file(MISP)
    hashes = sorted(i.value for i in misp.indicators if i.kind == "hash")
    assert hashes == sorted([XORIST_MD5, XORIST_SHA1, XORIST_SHA256])


def test_pipeline_matches_file_hashes(tmp_path: Path) -> None:
    eve = tmp_path / "eve.json"
    eve.write_text("\n".join([*_real_fileinfo(), FILEINFO_EVIL, FILEINFO_BENIGN]) + "\n")
    new = tmp_path / "files.log"
    new.write_text("\n".join(FILES_NEW) + "\n")
    old = tmp_path / "files-old.log"
    old.write_text("\n".join(FILES_OLD) + "\n")
    data = tmp_path / "data"
    config = load_config(None, data_dir_override=data)
    stores = open_stores(data, config)
    try:
        _load(IntelStore(stores.state), tmp_path)
        summary = ingest(config, stores, [eve, new, old])
        files = stores.events.search(
            "event.category:file", since_range("all"), limit=100
        ).to_pylist()
        flagged = stores.events.search(
            "_exists_:threat.indicator.provider", since_range("all"), limit=100
        ).to_pylist()
        alerts = AlertStore.for_config(stores.state, config).find(limit=100)
    finally:
        stores.close()
    assert summary.events == 3 + 2 + len(FILES_NEW) + len(FILES_OLD)
    # every file event parsed, none a parse failure
    assert (
        sorted(ev["event.dataset"] for ev in files)
        == ["suricata.fileinfo"] * 5 + ["zeek.files"] * 3
    )
    got = {
        ev["threat.indicator.provider"]: (
            ev["threat.enrichments.matched.field"],
            ev["threat.enrichments.matched.atomic"],
            ev["threat.indicator.name"],
            ev["threat.indicator.type"],
            ev["source.ip"],
            ev["event.dataset"],
        )
        for ev in flagged
    }
    assert got == {
        "stix": (
            "file.hash.sha256",
            POISON_IVY_SHA256.upper(),  # the event keeps what the sensor logged
            POISON_IVY_SHA256,
            "file",
            "203.0.113.80",
            "suricata.fileinfo",
        ),
        # md5, sha1 and sha256 all match the same MISP event: the first field wins the tie
        "misp": (
            "file.hash.md5",
            XORIST_MD5.upper(),
            XORIST_MD5,
            "file",
            "192.168.1.75",
            "zeek.files",
        ),
        "honeypot": (
            "file.hash.md5",
            ATTACK_TRACE_MD5,
            ATTACK_TRACE_MD5,
            "file",
            "98.114.205.102",
            "zeek.files",
        ),
    }
    assert len(flagged) == 3  # the benign PDF, the text file and the real capture's files: no
    for ev in flagged:
        assert f"intel:{ev['threat.indicator.provider']}" in ev["rule.name"]
        assert ev["event.risk_score"] == (
            50.0 if ev["threat.indicator.provider"] == "honeypot" else 75.0
        )
    feeds = {ev["threat.indicator.provider"]: ev["threat.feed.name"] for ev in flagged}
    assert feeds == {
        "stix": "File hash for Poison Ivy variant",
        "misp": "Ransomware - Xorist",
        "honeypot": "honeypot",
    }
    raised = sorted((a.rule_id, a.entity_value) for a in alerts if a.rule_id.startswith("intel:"))
    assert raised == [
        ("intel:honeypot", "98.114.205.102"),
        ("intel:misp", "192.168.1.75"),
        ("intel:stix", "203.0.113.80"),
    ]


@pytest.fixture
def state(state_url: str) -> StateStore:
    s = StateStore(state_url)
    yield s
    s.close()


def test_hash_type_decides_the_column_and_allowed_rows_are_skipped(state: StateStore) -> None:
    """A digest only meets its own column; `_allowed` rows are neither matched nor looked up."""
    sha1 = "77B0C41B7D340B8A3D903F21347BBF06AA766B5B"
    IntelStore(state).replace_source(
        "feed", "text", "High", [Indicator("hash", XORIST_MD5), Indicator("hash", sha1.lower())]
    )
    e = IntelEnricher({"state": state})
    df = pl.DataFrame(
        {
            # an MD5 in the sha1 column (a mislabelled export) is no SHA-1 match
            "file.hash.md5": [XORIST_MD5.upper(), None, XORIST_MD5, None],
            "file.hash.sha1": [None, XORIST_MD5, None, f" {sha1} "],
            "file.hash.sha256": [None, None, None, None],
            "_allowed": [False, False, True, False],
        }
    )
    out = e.enrich(df)
    assert out["rule.name"].to_list() == [["intel:feed"], None, None, ["intel:feed"]]
    assert out["threat.enrichments.matched.field"].to_list() == [
        "file.hash.md5",
        None,
        None,
        "file.hash.sha1",
    ]
    assert out["threat.indicator.type"].to_list() == ["file", None, None, "file"]
    # distinct values are resolved once: the allowed row's value was never looked up
    assert e.lookups == 3
    again = e.enrich(df)
    assert e.lookups == 3 and again["rule.name"].to_list() == out["rule.name"].to_list()
