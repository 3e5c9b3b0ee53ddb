"""A throwaway clickhouse-server (Debian's package) on 127.0.0.1 for tests.

`running_clickhouse()` starts one with its own config in a temp dir (as the
`clickhouse` user when run as root), yields its native port, and removes it.
Missing binaries FAIL the test (`make setup` installs the package), never skip.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

SERVER = "/usr/sbin/clickhouse-server"
START_WAIT_S = 60.0
START_ATTEMPTS = 3

CONFIG = """<?xml version="1.0"?>
<yandex>
    <logger><level>information</level><log>{root}/log/server.log</log>
        <errorlog>{root}/log/error.log</errorlog><size>10M</size><count>1</count></logger>
    <listen_host>127.0.0.1</listen_host>
    <tcp_port>{tcp}</tcp_port>
    <http_port>{http}</http_port>
    <path>{root}/data/</path>
    <tmp_path>{root}/tmp/</tmp_path>
    <user_files_path>{root}/user_files/</user_files_path>
    <format_schema_path>{root}/format_schemas/</format_schema_path>
    <users_config>{root}/users.xml</users_config>
    <default_profile>default</default_profile>
    <default_database>default</default_database>
    <mark_cache_size>67108864</mark_cache_size>
    <max_concurrent_queries>20</max_concurrent_queries>
    <timezone>Pacific/Chatham</timezone>
</yandex>
"""
# not UTC on purpose: the store must not depend on the server's time zone
USERS = """<?xml version="1.0"?>
<yandex>
    <profiles><default><max_memory_usage>1000000000</max_memory_usage></default></profiles>
    <users><default><password></password><networks><ip>127.0.0.1</ip></networks>
        <profile>default</profile><quota>default</quota></default></users>
    <quotas><default></default></quotas>
</yandex>
"""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _answers(port: int) -> bool:
    from clickhouse_driver import Client

    client = Client("127.0.0.1", port=port, connect_timeout=1, send_receive_timeout=5)
    try:
        client.execute("SELECT 1")
        return True
    except Exception:  # noqa: BLE001 - not up yet
        return False
    finally:
        client.disconnect()


def _start(root: Path) -> tuple[subprocess.Popen[bytes], int]:
    """Start the server on free ports (retrying if another process takes one first)."""
    run_as: list[str] = []
    if os.geteuid() == 0:  # data files belong to the server's own user, not root
        ch = pwd.getpwnam("clickhouse")
        run_as = ["runuser", "-u", "clickhouse", "--"]
    last = ""
    for attempt in range(START_ATTEMPTS):
        base = root / f"run{attempt}"
        for sub in ("data", "tmp", "user_files", "format_schemas", "log"):
            (base / sub).mkdir(parents=True, exist_ok=True)
        tcp, http = _free_port(), _free_port()
        (base / "config.xml").write_text(CONFIG.format(root=base, tcp=tcp, http=http))
        (base / "users.xml").write_text(USERS)
        if run_as:
            for p in [base, *base.rglob("*")]:
                os.chown(p, ch.pw_uid, ch.pw_gid)
        proc = subprocess.Popen(
            [*run_as, SERVER, f"--config-file={base / 'config.xml'}"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            cwd=base,
        )
        deadline = time.monotonic() + START_WAIT_S
        while time.monotonic() < deadline and proc.poll() is None:
            if _answers(tcp):
                return proc, tcp
            time.sleep(0.2)
        _stop(proc)
        err = base / "log" / "error.log"
        last = err.read_text(errors="replace")[-2000:] if err.exists() else ""
        last = last or (proc.stderr.read().decode(errors="replace")[-2000:] if proc.stderr else "")
    pytest.fail(f"clickhouse-server did not start: {last}", pytrace=False)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=30)


@contextmanager
def running_clickhouse() -> Iterator[int]:
    """A running clickhouse-server; its native port."""
    if not Path(SERVER).exists() or shutil.which("runuser") is None:
        pytest.fail(
            f"{SERVER} not found: install Debian's clickhouse-server (`make setup` as root)",
            pytrace=False,
        )
    # Not in pytest's tmp dir: that is private to root, and the server runs as `clickhouse`.
    root = Path(tempfile.mkdtemp(prefix="lightsoc-ch-"))
    os.chmod(root, 0o755)
    try:
        proc, port = _start(root)
        try:
            yield port
        finally:
            _stop(proc)
    finally:
        shutil.rmtree(root, ignore_errors=True)
