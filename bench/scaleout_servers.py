"""Servers and processes for the scale-out benchmark (bench/scaleout.py).

redis-server (append-only, fsync every second, as in production), Debian's
clickhouse-server and a PostgreSQL cluster, all throwaway on 127.0.0.1 and
started with the helpers of tests/ (the same ones the split-deployment tests
use); `lightsoc run --role ...` processes through `tests.roles.procs.RoleProcess`.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import sqlalchemy as sa
import yaml

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `python bench/scaleout.py`: the helpers live in tests/
    sys.path.insert(0, str(ROOT))

from tests.clickhouse_server import running_clickhouse  # noqa: E402
from tests.pg import PgCluster, _bindir  # noqa: E402
from tests.pg import _start as start_pg  # noqa: E402
from tests.redis_server import RedisServer  # noqa: E402
from tests.roles.procs import RoleProcess  # noqa: E402

GROUP = "lightsoc-processors"

__all__ = ["GROUP", "RoleProcess", "Servers", "servers"]


@dataclass
class Servers:
    redis: RedisServer
    pg: PgCluster
    ch_port: int

    def new_state_db(self) -> str:
        """A fresh PostgreSQL database for the state store (alerts, heartbeats)."""
        name = "b_" + uuid.uuid4().hex[:12]
        admin = sa.create_engine(self.pg.url(), isolation_level="AUTOCOMMIT")
        try:
            with admin.connect() as conn:
                conn.execute(sa.text(f'CREATE DATABASE "{name}" TEMPLATE template0'))
        finally:
            admin.dispose()
        return self.pg.url(name)

    def pids(self) -> dict[str, int]:
        """The servers' own processes (ClickHouse runs under runuser: found by its port)."""
        out = {"redis-server": self.redis.proc.pid}  # type: ignore[union-attr]
        for c in psutil.net_connections(kind="tcp"):
            if c.status == psutil.CONN_LISTEN and c.laddr.port == self.ch_port and c.pid:
                out["clickhouse-server"] = c.pid
        pg = self.pg.root / "data" / "postmaster.pid"
        if pg.exists():
            out["postgres"] = int(pg.read_text().split()[0])
        return out


@contextlib.contextmanager
def servers(work: Path) -> Iterator[Servers]:
    redis = RedisServer(work / "redis", appendonly=True, appendfsync="everysec").start()
    try:
        pg = start_pg(_bindir())
        try:
            with running_clickhouse() as ch_port:
                yield Servers(redis, pg, ch_port)
        finally:
            pg.ctl("stop", "-m", "immediate", "-w", check=False)
            shutil.rmtree(pg.root, ignore_errors=True)
    finally:
        redis.kill()


def cpu(pid: int, children: bool = True) -> float:
    """User + system CPU seconds of a process (and its children); 0 if it is gone."""
    try:
        proc = psutil.Process(pid)
        t = proc.cpu_times()
        total = t.user + t.system
        if children:
            for c in proc.children(recursive=True):
                with contextlib.suppress(psutil.Error):
                    ct = c.cpu_times()
                    total += ct.user + ct.system
        return total
    except psutil.Error:
        return 0.0


def write_config(path: Path, *, bus: str, events: str, state: str, **sections: Any) -> Path:
    """A `lightsoc.yml` for the split roles (data dir beside it; old events kept)."""
    doc: dict[str, Any] = {
        "data_dir": str(path.parent / "data"),
        "bus": bus,
        "store": {"retention_days": None, "events": events, "state": state},
        "web": {"listen": f"127.0.0.1:{free_port()}"},
        **sections,
    }
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def group(r: Any, stream: str) -> dict[str, Any]:  # noqa: ANN401
    """`XINFO GROUPS` of the processors' group ({} before it exists)."""
    if not r.exists(stream):
        return {}
    for g in r.xinfo_groups(stream):
        if g["name"] in (GROUP, GROUP.encode()):
            return g
    return {}


def stop_all(procs: list[RoleProcess], timeout: float = 60.0) -> list[str]:
    """SIGTERM all, wait for each (SIGKILL past `timeout`); the output of each."""
    for p in procs:
        if p.proc is not None and p.proc.poll() is None:
            p.proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for p in procs:
        if p.proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.proc.wait(max(0.1, deadline - time.monotonic()))
        p.ensure_stopped()
    return [p.output() for p in procs]


def wait(cond: Callable[[], Any], timeout: float, what: str, every: float = 0.01) -> None:
    """Until `cond()` is true; RuntimeError naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)
