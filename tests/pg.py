"""A real, throwaway PostgreSQL cluster for state-store tests (no mocks, no server to set up).

`pg_cluster` (session): initdb into a temp dir, start it on 127.0.0.1 and a free
port, stop it (`pg_ctl stop -m immediate`) and delete it at the end. As root the
cluster belongs to the `postgres` OS user (initdb refuses root). `state_url`
(parametrised "sqlite" / "postgresql"): a state-store URL in a fresh database
per test, so a test file runs its state tests on both backends by taking it.
Missing PostgreSQL binaries FAIL the test (`make test` installs them), never skip.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa

BACKENDS = ["sqlite", "postgresql"]
START_ATTEMPTS = 3


def _bindir() -> Path:
    """Newest /usr/lib/postgresql/<version>/bin holding initdb (or initdb on PATH)."""
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0,
    )
    if found:
        return Path(found[-1]).parent
    on_path = shutil.which("initdb")
    if on_path:
        return Path(on_path).parent
    pytest.fail(
        "PostgreSQL binaries (initdb, pg_ctl) not found in /usr/lib/postgresql/*/bin or on "
        "PATH: install Debian's `postgresql` package (`make setup` does it as root)",
        pytrace=False,
    )


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class PgCluster:
    bindir: Path
    root: Path
    port: int
    run_as: list[str]
    opts: str = ""

    def url(self, db: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{db}"

    def ctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        cmd = [*self.run_as, str(self.bindir / "pg_ctl"), "-D", str(self.root / "data"), *args]
        return subprocess.run(cmd, capture_output=True, text=True, check=check, timeout=120)

    def stop(self) -> None:
        """Shut the server down (connections are cut), keeping its data."""
        self.ctl("stop", "-m", "fast", "-w", "-t", "60")

    def start(self) -> None:
        """Start it again on the same port with the same settings."""
        log = str(self.root / "log")
        self.ctl("start", "-w", "-t", "60", "-l", log, "-o", self.opts)


def _start(bindir: Path) -> PgCluster:
    root = Path(tempfile.mkdtemp(prefix="lightsoc-pg-"))
    run_as: list[str] = []
    if os.geteuid() == 0:  # initdb refuses to run as root
        pg = pwd.getpwnam("postgres")
        os.chown(root, pg.pw_uid, pg.pw_gid)
        run_as = ["runuser", "-u", "postgres", "--"]
    init = subprocess.run(
        [
            *run_as,
            str(bindir / "initdb"),
            "-D",
            str(root / "data"),
            "-U",
            "postgres",
            "--auth=trust",  # a throwaway cluster listening on 127.0.0.1 only
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if init.returncode:
        shutil.rmtree(root, ignore_errors=True)
        pytest.fail(f"initdb failed: {init.stderr or init.stdout}", pytrace=False)
    last = ""
    for _ in range(START_ATTEMPTS):  # another process may take the free port first
        cluster = PgCluster(bindir, root, _free_port(), run_as)
        cluster.opts = opts = (
            f"-c listen_addresses=127.0.0.1 -p {cluster.port} -k {root} "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
            "-c max_connections=300 -c shared_buffers=32MB "
            # not UTC on purpose: the store must not depend on the server's timezone
            "-c timezone=Pacific/Chatham"
        )
        log = str(root / "log")
        started = cluster.ctl("start", "-w", "-t", "60", "-l", log, "-o", opts, check=False)
        if started.returncode == 0:
            return cluster
        last = (root / "log").read_text(errors="replace") if (root / "log").exists() else ""
        last = last or started.stderr
    shutil.rmtree(root, ignore_errors=True)
    pytest.fail(f"PostgreSQL did not start: {last[-2000:]}", pytrace=False)


@contextmanager
def _running_cluster() -> Iterator[PgCluster]:
    cluster = _start(_bindir())
    try:
        yield cluster
    finally:
        cluster.ctl("stop", "-m", "immediate", "-w", check=False)
        shutil.rmtree(cluster.root, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PgCluster]:
    """A running PostgreSQL cluster for this test session, removed at its end."""
    with _running_cluster() as cluster:
        yield cluster


@pytest.fixture
def own_pg_cluster() -> Iterator[PgCluster]:
    """A cluster of this test's own, which it may stop and start (fault tests)."""
    with _running_cluster() as cluster:
        yield cluster


@pytest.fixture
def pg_url(pg_cluster: PgCluster) -> Iterator[str]:
    """A SQLAlchemy URL of a fresh, empty database, dropped after the test."""
    name = "t_" + uuid.uuid4().hex[:16]
    admin = sa.create_engine(pg_cluster.url(), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}" TEMPLATE template0'))
        yield pg_cluster.url(name)
        with admin.connect() as conn:
            # FORCE: a store the test did not close must not keep the database alive
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


@pytest.fixture(params=BACKENDS)
def state_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A state-store URL: SQLite in tmp_path, or an empty database in `pg_cluster`.

    The URL is fixed for the test, so reopening `StateStore(state_url)` reopens the
    same state (the migrations-on-reopen tests need that).
    """
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'state.sqlite'}"
    return str(request.getfixturevalue("pg_url"))
