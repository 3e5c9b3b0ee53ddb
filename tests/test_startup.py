"""What every lightsoc command pays at start: no pandas through pyarrow (~0.4 s),
no pySigma unless rules are loaded (~0.3 s)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from collections.abc import Sequence

PROBE = """
import sys
from lightsoc.cli import main
code = main(["ingest", sys.argv[1], "--format", "nginx_combined", "--config", sys.argv[2]])
import pyarrow as pa
pa.array([1, 2]).to_numpy(zero_copy_only=False)
print(code, "pandas" in sys.modules)
frame = pa.table({"a": [1]}).to_pandas()
print(type(frame).__module__.split(".")[0], "pandas" in sys.modules)
"""


def test_a_command_runs_without_pandas_and_to_pandas_still_works(tmp_path) -> None:
    assert importlib.util.find_spec("pandas") is not None  # installed (chdb needs it)
    log = tmp_path / "access.log"
    log.write_text(
        '203.0.113.9 - - [10/Oct/2026:13:55:36 +0000] "GET /a?b=1 HTTP/1.1" 200 12 "-" "curl/8"\n'
    )
    config = tmp_path / "lightsoc.yml"
    config.write_text(f"data_dir: {tmp_path / 'data'}\n")
    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(log), str(config)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    lines = done.stdout.strip().splitlines()
    assert lines[-2:] == ["0 False", "pandas True"], done.stdout + done.stderr


def test_the_cli_imports_no_sigma_until_rules_are_loaded() -> None:
    probe = (
        "import sys\n"
        "from lightsoc.cli import build_parser\n"
        "build_parser()\n"
        "print('sigma' in sys.modules)\n"
        "from lightsoc.detect import RuleSet\n"
        "print(RuleSet.__module__, 'sigma' in sys.modules)\n"
        "RuleSet.load(['builtin'])\n"
        "print('sigma' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True
    )
    assert done.stdout.split() == ["False", "lightsoc.detect.ruleset", "False", "True"], (
        done.stdout + done.stderr
    )


#: modules a one-shot ingest without detection has no use for (each ~0.1-0.3 s to import)
UNUSED_BY_PLAIN_INGEST = ("sqlalchemy", "sigma", "lightsoc.alerts.outputs")
#: what an ingest with rules imports only when one of them fires
NOT_WHILE_NOTHING_FIRES = ("sqlalchemy", "lightsoc.alerts.store", "lightsoc.alerts.outputs")

INGEST_PROBE = """
import json, sys
from lightsoc.cli import main
code = main(["ingest", sys.argv[1], "--format", "nginx_combined", "--json", "--config", sys.argv[2]])
loaded = {m: m in sys.modules for m in sys.argv[3:]}
from lightsoc.config import load_config
from lightsoc.runtime import open_stores
stores = open_stores(load_config(sys.argv[2]).data_dir, read_only=True)
print(json.dumps({"code": code, "loaded": loaded, "stored": stores.events.stats()["events_total"]}))
stores.close()
"""


def _ingest_in_subprocess(tmp_path, config_text: str, modules: Sequence[str]) -> dict:
    """`lightsoc ingest` of two lines in a fresh interpreter: which modules it loaded."""
    log = tmp_path / "access.log"
    log.write_text(
        '203.0.113.9 - - [10/Oct/2026:13:55:36 +0000] "GET /a HTTP/1.1" 200 12 "-" "curl/8"\n'
        '203.0.113.7 - - [10/Oct/2026:13:55:37 +0000] "GET /b HTTP/1.1" 404 0 "-" "curl/8"\n'
    )
    config = tmp_path / "lightsoc.yml"
    config.write_text(f"data_dir: {tmp_path / 'data'}\n{config_text}")
    done = subprocess.run(
        [sys.executable, "-c", INGEST_PROBE, str(log), str(config), *modules],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_ingest_without_detection_imports_no_sqlalchemy_sigma_or_outputs(tmp_path) -> None:
    got = _ingest_in_subprocess(
        tmp_path, "detect:\n  rules: []\n  ml:\n    stream: []\n", UNUSED_BY_PLAIN_INGEST
    )
    assert got == {
        "code": 0,
        "loaded": dict.fromkeys(UNUSED_BY_PLAIN_INGEST, False),
        "stored": 2,
    }
    assert not (tmp_path / "data" / "state.sqlite").exists()  # ingest creates no state store


def test_ingest_with_the_default_rules_still_loads_them(tmp_path) -> None:
    """The default config (built-in Sigma and correlation rules): pySigma is loaded;
    the state store, alert store and outputs are not while nothing fires."""
    mods = ("sigma", "lightsoc.detect.correlation", *NOT_WHILE_NOTHING_FIRES)
    got = _ingest_in_subprocess(tmp_path, "", mods)
    assert got == {
        "code": 0,
        "loaded": {"sigma": True, "lightsoc.detect.correlation": True}
        | dict.fromkeys(NOT_WHILE_NOTHING_FIRES, False),
        "stored": 2,
    }
