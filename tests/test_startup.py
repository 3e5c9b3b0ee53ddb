"""What every lightsoc command pays at start: no pandas through pyarrow (~0.4 s),
no pySigma unless rules are loaded (~0.3 s)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

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
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True
    )
    assert done.stdout.split() == ["False", "lightsoc.detect.ruleset", "True"], done.stderr
