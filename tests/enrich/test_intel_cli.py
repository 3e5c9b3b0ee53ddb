"""`lightsoc intel load|list|remove|allow` end to end, as a subprocess and in process."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lightsoc.store.state import StateStore
from lightsoc.store.state_intel import IntelStore
from tests.cli_helpers import in_process, one_line
from tests.helpers import cli

INTEL = Path(__file__).resolve().parents[3] / "shared" / "data" / "intel"


def test_load_and_list_end_to_end(tmp_path: Path) -> None:
    data = tmp_path / "data"
    res = cli(
        "intel",
        "load",
        INTEL / "urlhaus" / "urlhaus-filter-domains-online.txt",
        INTEL / "stix21" / "poisonivy.json",
        INTEL / "misp" / "existing_event.json",
        "--source",
        "mixed",
        "--confidence",
        "High",
        "--expires",
        "30d",
        "--json",
        "--data-dir",
        data,
    )
    assert res.returncode == 0, res.stderr
    summary = json.loads(res.stdout)
    files = {Path(f["path"]).name: f for f in summary["files"]}
    assert files["urlhaus-filter-domains-online.txt"]["loaded"] == 2853
    assert files["poisonivy.json"]["junk"] == 1 and files["poisonivy.json"]["format"] == "stix"
    assert files["existing_event.json"]["format"] == "misp"
    assert summary["loaded"] == sum(f["loaded"] for f in files.values())
    assert 0 < summary["stored"] <= summary["loaded"]
    # table output of a maltrail directory, then the listing
    res = cli(
        "intel",
        "load",
        INTEL / "maltrail" / "suspicious",
        "--source",
        "maltrail-suspicious",
        "--data-dir",
        data,
    )
    assert res.returncode == 0, res.stderr
    assert "distinct indicators stored for source maltrail-suspicious" in res.stdout
    res = cli("intel", "list", "--json", "--data-dir", data)
    assert res.returncode == 0, res.stderr
    listed = {s["name"]: s for s in map(json.loads, res.stdout.splitlines())}
    assert set(listed) == {"mixed", "maltrail-suspicious"}
    assert listed["mixed"]["indicators"] == summary["stored"]
    assert listed["mixed"]["confidence"] == "High" and listed["mixed"]["expires"] is not None
    assert listed["maltrail-suspicious"]["confidence"] == "Medium"
    res = cli("intel", "list", "--data-dir", data)
    assert res.returncode == 0 and "maltrail-suspicious" in res.stdout
    # the same state store the pipeline reads
    state = StateStore.for_data_dir(data)
    try:
        assert IntelStore(state).version() == 2
    finally:
        state.close()


def test_errors_and_allow(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = ["--data-dir", str(tmp_path)]
    code, _, err = in_process(capsys, "intel", "load", INTEL / "stix21" / "apt1.json", *d)
    assert code == 2
    one_line(err, "intel load: --source NAME is required")
    code, _, err = in_process(
        capsys, "intel", "load", tmp_path / "missing.txt", "--source", "x", *d
    )
    assert code == 1 and "missing.txt" in err
    code, _, err = in_process(
        capsys,
        "intel",
        "load",
        INTEL / "stix21" / "apt1.json",
        "--source",
        "x",
        "--expires",
        "soon",
        *d,
    )
    assert code == 2
    one_line(err, r"--expires 'soon': .*")
    code, _, err = in_process(
        capsys,
        "intel",
        "load",
        INTEL / "maltrail" / "mass_scanner_cidr.txt",
        "--source",
        "x",
        "--format",
        "misp",
        *d,
    )
    assert code == 2
    one_line(err, r".*mass_scanner_cidr.txt: .*")
    code, out, _ = in_process(capsys, "intel", "allow", "add", "source.ip", "10.100.2.0/24", *d)
    assert code == 0 and "added" in out
    code, _, err = in_process(capsys, "intel", "allow", "add", "source.ip", "nope", *d)
    assert code == 2
    code, out, _ = in_process(capsys, "intel", "allow", "--json", *d)
    assert json.loads(out) == {"source.ip": ["10.100.2.0/24"]}
    code, _, err = in_process(capsys, "intel", "remove", "nosuch", *d)
    assert code == 2
