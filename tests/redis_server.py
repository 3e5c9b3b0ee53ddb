"""A throwaway Debian redis-server on 127.0.0.1 for tests (shared by source and bus tests)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import redis

from tests.helpers import free_port, wait_until


class RedisServer:
    """A redis-server process on a fixed free port; `kill` is SIGKILL, `start` again restarts.

    With `appendonly=True` it keeps an AOF in `workdir`, so a restart after a
    kill finds what was written (`appendfsync` as given: `always` makes a test
    independent of fsync timing; production uses `everysec`).
    """

    def __init__(
        self, workdir: Path, *, appendonly: bool = False, appendfsync: str = "everysec"
    ) -> None:
        exe = shutil.which("redis-server")
        if exe is None:
            pytest.fail("redis-server is not installed (Debian package redis-server)")
        self.exe = exe
        self.workdir = workdir
        self.appendonly = appendonly
        self.appendfsync = appendfsync
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        self.workdir.mkdir(parents=True, exist_ok=True)
        persistence = ("--appendonly", "yes" if self.appendonly else "no")
        if self.appendonly:
            persistence += ("--appendfsync", self.appendfsync)
        self.proc = subprocess.Popen(
            [
                *(self.exe, "--bind", "127.0.0.1", "--port", str(self.port)),
                *("--save", "", *persistence, "--dir", str(self.workdir)),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_until(self._pings, what="redis-server to answer")
        return self

    def _pings(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"redis-server exited {self.proc.returncode}")
        try:
            return bool(self.client().ping())
        except redis.ConnectionError:
            return False

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=5)

    def kill(self) -> None:
        """SIGKILL: no shutdown, no final save (what a crash leaves)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
