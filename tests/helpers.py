"""Shared helpers for tests that run the real `lightsoc` command in subprocesses.

`cli()` runs one command and returns its result; `LightsocServer` starts
`lightsoc run` on a free 127.0.0.1 port, reads the admin token it prints on a
first start, and stops it with SIGTERM (or SIGKILL) by its own pid.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import httpx
import yaml

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
SSH_LOG = DATA / "auth" / "loghub" / "OpenSSH_2k.log"  # 2000 lines, the last one without "\n"
WEB_LOG = DATA / "web" / "apache_logs_benign.log"  # 10000 lines, one of them cut short
LIGHTSOC = Path(sys.executable).with_name("lightsoc")  # the console script of this venv
TOKEN_LINE = re.compile(r"Admin API token \(shown once, keep it safe\): (lsoc_\S+)")
START_TIMEOUT = 60.0


def env() -> dict[str, str]:
    """The environment of every command: wide tables, unbuffered output."""
    return {**os.environ, "COLUMNS": "250", "PYTHONUNBUFFERED": "1", "NO_COLOR": "1"}


def cli(
    *args: str | Path, cwd: Path | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run `lightsoc ARGS...` to completion (never raises on a non-zero exit)."""
    return subprocess.run(
        [str(LIGHTSOC), *map(str, args)],
        cwd=cwd,
        env=env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def cli_json(*args: str | Path, cwd: Path | None = None) -> Any:
    """Run a command that prints one JSON document; fail with its stderr if it does not."""
    res = cli(*args, cwd=cwd)
    assert res.returncode == 0, f"lightsoc {' '.join(map(str, args))}: {res.stderr}"
    return json.loads(res.stdout)


def cli_ndjson(*args: str | Path, cwd: Path | None = None) -> list[dict[str, Any]]:
    """Run a `--format json` command; one JSON object per output line."""
    res = cli(*args, cwd=cwd)
    assert res.returncode == 0, f"lightsoc {' '.join(map(str, args))}: {res.stderr}"
    return [json.loads(line) for line in res.stdout.splitlines()]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_config(
    path: Path,
    sources: Mapping[str, Mapping[str, Any]],
    *,
    port: int | None = None,
    data_dir: Path | None = None,
    **sections: Any,
) -> Path:
    """A `lightsoc.yml` with `store: {retention_days: null}` (the test logs are old)."""
    doc: dict[str, Any] = {}
    if data_dir is not None:
        doc["data_dir"] = str(data_dir)
    doc["sources"] = {k: dict(v) for k, v in sources.items()}
    doc["store"] = {"retention_days": None}
    doc["web"] = {"listen": f"127.0.0.1:{port or free_port()}"}
    doc.update(sections)
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def wait_until(
    cond: Callable[[], Any], timeout: float = 30.0, what: str = "condition", interval: float = 0.05
) -> Any:
    """Poll `cond` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def count_lines(path: Path, upto: int | None = None) -> int:
    """Non-empty lines in the first `upto` bytes (all of the file if None)."""
    with open(path, "rb") as fh:
        data = fh.read() if upto is None else fh.read(upto)
    return sum(1 for line in data.split(b"\n") if line.strip())


class LightsocServer:
    """`lightsoc run` as a subprocess; the output is collected by a reader thread."""

    def __init__(self, args: list[str | Path], cwd: Path, data_dir: Path) -> None:
        self.args = [str(a) for a in args]
        self.cwd = cwd
        self.data_dir = data_dir
        self.lines: list[str] = []
        self.admin_token: str | None = None
        self.url: str = ""
        self.proc: subprocess.Popen[str] | None = None

    # -- lifecycle -------------------------------------------------------
    def start(self, timeout: float = START_TIMEOUT) -> LightsocServer:
        self.lines = []
        self.admin_token = None
        self.proc = subprocess.Popen(
            [str(LIGHTSOC), "run", *self.args],
            cwd=self.cwd,
            env=env(),
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        threading.Thread(target=self._read_output, args=(self.proc,), daemon=True).start()
        line = wait_until(
            lambda: self._find("API listening on ") or self.proc.poll() is not None,
            timeout,
            "the server to listen",
        )
        if self.proc.poll() is not None:
            raise AssertionError(f"lightsoc run exited {self.proc.returncode}: {self.output}")
        self.url = line.split("API listening on ", 1)[1].split("/api/v1", 1)[0]
        m = TOKEN_LINE.search(self.output)
        self.admin_token = m.group(1) if m else None
        wait_until(self._healthy, timeout, "the health endpoint")
        return self

    def _read_output(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def _find(self, text: str) -> str | None:
        return next((line for line in list(self.lines) if text in line), None)

    def _healthy(self) -> bool:
        try:
            return httpx.get(f"{self.url}/api/v1/health", timeout=5).status_code == 200
        except httpx.HTTPError:
            return False

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def stop(self, timeout: float = 60.0) -> int:
        """SIGTERM and wait: a graceful stop commits everything read."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        rc = self.proc.wait(timeout)
        wait_until(lambda: self._find("stopped;") or rc != 0, 5, "the last output line")
        return rc

    def kill(self) -> None:
        """SIGKILL: no chance to commit, flush or clean up."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)

    def ensure_stopped(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.send_signal(signal.SIGKILL)
                self.proc.wait(10)

    # -- API -------------------------------------------------------------
    def read_token(self) -> str:
        """The read token the server left in `<data_dir>/run/server.json` for CLI commands."""
        return json.loads((self.data_dir / "run" / "server.json").read_text())["token"]

    def get(self, path: str, token: str | None = None, **params: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.get(f"{self.url}{path}", params=params, headers=headers, timeout=30)

    def stats(self) -> dict[str, Any]:
        resp = self.get("/api/v1/stats", self.read_token())
        resp.raise_for_status()
        return resp.json()
