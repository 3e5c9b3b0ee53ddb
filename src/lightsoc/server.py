"""`lightsoc run`: the pipeline plus the API server in one process."""

from __future__ import annotations

import contextlib
import logging
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import Any

import uvicorn

from lightsoc.alerts.store import AlertStore
from lightsoc.auth.audit import AuditLog
from lightsoc.auth.users import UserStore, random_password
from lightsoc.client import remove_server_file, write_server_file
from lightsoc.config import Config
from lightsoc.detect.scheduler import start_background as start_correlation_scheduler
from lightsoc.pipeline import Pipeline
from lightsoc.runtime import Stores
from lightsoc.sources.http import HttpSource
from lightsoc.web.app import create_app
from lightsoc.web.ingest import create_ingest_app

log = logging.getLogger(__name__)

CLI_TOKEN_NAME = "cli-local"
HTTP_SOURCE_ID = "http"
RETENTION_EVERY_SECONDS = 3600
MAINTENANCE_EVERY_SECONDS = 60


def ensure_admin_token(stores: Stores, say: Callable[[str], None]) -> None:
    """First start: create the admin API token and the `admin` user, and show
    each secret once (only hashes are stored)."""
    if not stores.state.has_tokens("admin"):
        token = stores.state.create_token("admin", "admin")
        say(f"Admin API token (shown once, keep it safe): {token}")
    users = UserStore(stores.state)
    if users.count() == 0:
        password = random_password()
        users.add("admin", "admin", password)
        AuditLog(stores.state).record("lightsoc", "user_add", "admin", role="admin")
        say(f"Web UI user 'admin', password (shown once, keep it safe): {password}")


def split_listen(listen: str) -> tuple[str, int]:
    host, _, port = listen.rpartition(":")
    return host.strip("[]") or "127.0.0.1", int(port)


def ingest_source(pipeline: Pipeline) -> HttpSource:
    """The `http` source behind the web server's ingest endpoints, attached to the bus.

    A configured `http` source with `listen: null` if there is one; otherwise an
    implicit one (id "http"), so an ingest token works from the first start.
    """
    configured = [s for s in pipeline.sources if isinstance(s, HttpSource)]
    source = next((s for s in configured if not s.listen), None)
    if source is None:
        taken = {s.id for s in pipeline.sources} | set(pipeline.processor.specs)
        sid = HTTP_SOURCE_ID
        while sid in taken:
            sid += "_"
        source = HttpSource(sid, implicit=True)
        # Added before start: its thread keeps the pipeline up even with no other source.
        pipeline.sources.append(source)
    pipeline.processor.specs.setdefault(source.id, source.spec)
    source.attach(pipeline.bus)
    return source


def listener_sources(pipeline: Pipeline) -> list[HttpSource]:
    """Configured http sources with a listener of their own, attached to the bus."""
    out = [s for s in pipeline.sources if isinstance(s, HttpSource) and s.listen]
    for src in out:
        pipeline.processor.specs.setdefault(src.id, src.spec)
        src.attach(pipeline.bus)
    return out


def visible_metrics(pipeline: Pipeline) -> Callable[[], dict[str, Any]]:
    """Live metrics without the implicit http source until it has received something."""

    def metrics() -> dict[str, Any]:
        live = pipeline.metrics()
        for src in pipeline.sources:
            if isinstance(src, HttpSource) and src.implicit and not src.metrics.received:
                live["sources"].pop(src.id, None)
        return live

    return metrics


def bind(config: Config, listen: str | None = None, where: tuple[str, ...] = ()) -> socket.socket:
    """The listening socket of `web.listen` (or of the setting at `where`); a
    RuntimeError naming the setting if taken."""
    where = where or ("web", "listen")
    listen = listen or config.web.listen
    host, port = split_listen(listen)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on accepted sockets whose
    # proto says TCP, and without it every keep-alive response waited ~40 ms
    # for the client's delayed ACK (Nagle on the header/body writes).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        raise RuntimeError(
            f"cannot listen on {listen} ({'.'.join(where)}, {config.where(*where)}): "
            f"{exc.strerror or exc}"
        ) from None
    return sock


def serve(
    config: Config,
    data_dir: Path,
    stores: Stores,
    pipeline: Pipeline,
    *,
    say: Callable[[str], None] = print,
    background: bool = True,
) -> None:
    """Run until SIGINT/SIGTERM; then stop sources, drain and commit.

    `background=False` (a web-only process of a split deployment) runs neither
    store maintenance nor the correlation scheduler: other roles own them.

    The port is bound before anything is announced, so a taken port is one
    clear error and the server file never points at somebody else's server.
    """
    sock = bind(config)
    host, port = split_listen(config.web.listen)
    ingest = ingest_source(pipeline)
    app = create_app(
        stores.events,
        stores.state,
        live_metrics=visible_metrics(pipeline),
        ingest=ingest,
        alerts=AlertStore.for_config(stores.state, config),
        cookie_secure=config.web.cookie_secure,
        login_limit=config.web.login_failures_per_minute,
        config=config,
    )
    server = _Server(
        uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False)
    )
    try:
        extra = [_IngestListener(config, stores, src) for src in listener_sources(pipeline)]
    except BaseException:
        sock.close()
        raise
    restore = server.install_signal_handlers()  # a signal during start-up still stops cleanly
    stop_retention = threading.Event()
    try:
        ensure_admin_token(stores, say)
        stores.state.revoke_tokens(CLI_TOKEN_NAME)
        cli_token = stores.state.create_token(CLI_TOKEN_NAME, "read")
        url = f"http://{_connect_host(host)}:{sock.getsockname()[1]}"
        jobs: list[threading.Thread] = []
        if background:
            maintenance = threading.Thread(
                target=_maintenance_loop,
                args=(stores, config.store.retention_days, stop_retention),
                name="maintenance",
                daemon=True,
            )
            maintenance.start()
            # correlation rules on a schedule, over this process's own store connection
            scheduler = start_correlation_scheduler(config, data_dir, stores, stop_retention)
            jobs = [scheduler, maintenance]
        pipeline.start()
        try:
            for listener in extra:
                listener.start()
                say(f"ingest source {listener.source.id} listening on {listener.source.listen}")
            write_server_file(data_dir, url, cli_token)
            say(f"Web UI on {url}/ (log in at {url}/login)")
            say(f"API listening on {url}/api/v1 (OpenAPI: {url}/api/v1/openapi.json); Ctrl-C stops")
            if not server.should_exit:
                server.run(sockets=[sock])
        finally:
            stop_retention.set()
            # a scheduler run in progress finishes before the stores close, and so does
            # a compaction or rollup step (DuckDB aborts the process when a connection
            # is closed under a running query)
            for job in jobs:
                job.join(60)
            for listener in extra:  # they finish their requests (answered after commit)
                listener.stop()
            say("stopping: finishing reads and committing ...")
            ingest.stop()  # stopped with the others too; first, so no request is left waiting
            pipeline.stop()
            remove_server_file(data_dir)
            stores.state.revoke_tokens(CLI_TOKEN_NAME)
            say(f"stopped; {pipeline.events_stored} events stored in this run")
    finally:
        restore()
        sock.close()
        for listener in extra:
            listener.sock.close()


class _IngestListener:
    """The ingest-only app of an http source with its own `listen`, in a thread.

    The socket is bound when this is made, so a taken port fails before start-up.
    """

    def __init__(self, config: Config, stores: Stores, source: HttpSource) -> None:
        assert source.listen is not None
        self.source = source
        self.sock = bind(config, source.listen, ("sources", source.id, "listen"))
        app = create_ingest_app(stores.state, source)
        self.server = _Server(uvicorn.Config(app, log_level="warning", access_log=False))
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.sock]}, name=f"listen-{source.id}"
        )

    def start(self) -> None:
        self.thread.start()

    def stop(self, timeout: float = 60.0) -> None:
        self.server.should_exit = True
        if self.thread.is_alive():
            self.thread.join(timeout)


def _connect_host(host: str) -> str:
    if host in ("0.0.0.0", ""):  # noqa: S104 - where a local client connects to
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


class _Server(uvicorn.Server):
    """uvicorn re-raises SIGINT/SIGTERM after its shutdown, which would kill the
    process before the pipeline commits; here a signal just asks it to exit
    (a second one stops waiting for open connections)."""

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self.should_exit:
            self.force_exit = True
        self.should_exit = True

    def install_signal_handlers(self) -> Callable[[], None]:
        if threading.current_thread() is not threading.main_thread():
            return lambda: None
        previous = {
            sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)
        }

        def restore() -> None:
            for sig, old in previous.items():
                signal.signal(sig, old)

        return restore

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield  # installed for the whole of `serve` by install_signal_handlers


def _maintenance_loop(stores: Stores, configured: int | None, stop: threading.Event) -> None:
    """Store upkeep off the ingest path: segment compaction often, retention hourly.

    Retention is `store.retention_days` unless an admin set the `retention_days`
    setting in the settings page (a whole number of days); a changed value applies now.
    """
    last_retention = 0.0
    applied: int | None = None
    while not stop.is_set():
        try:
            merged = stores.events.maintain()
            if merged:
                log.info("compaction: merged %d segment files", merged)
            override = stores.state.get_setting("retention_days")
            days = (
                override
                if isinstance(override, int) and not isinstance(override, bool) and override >= 1
                else configured
            )
            if days != applied:
                applied, last_retention = days, 0.0
            if days and time.monotonic() - last_retention >= RETENTION_EVERY_SECONDS:
                last_retention = time.monotonic()
                deleted = stores.events.retention(days)
                if deleted:
                    log.info("retention: deleted %d events older than %d days", deleted, days)
        except Exception:
            log.exception("store maintenance failed")
        stop.wait(MAINTENANCE_EVERY_SECONDS)
