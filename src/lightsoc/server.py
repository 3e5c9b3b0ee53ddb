"""`lightsoc run`: the pipeline plus the API server in one process."""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import uvicorn

from lightsoc.config import Config
from lightsoc.pipeline import Pipeline
from lightsoc.runtime import Stores, remove_server_file, write_server_file
from lightsoc.web.api import create_app

log = logging.getLogger(__name__)

CLI_TOKEN_NAME = "cli-local"
RETENTION_EVERY_SECONDS = 3600


def ensure_admin_token(stores: Stores, say: Callable[[str], None]) -> None:
    """First start: create the admin API token and show it once."""
    if not stores.state.has_tokens("admin"):
        token = stores.state.create_token("admin", "admin")
        say(f"Admin API token (shown once, keep it safe): {token}")


def split_listen(listen: str) -> tuple[str, int]:
    host, _, port = listen.rpartition(":")
    return host.strip("[]") or "127.0.0.1", int(port)


def serve(
    config: Config,
    data_dir: Path,
    stores: Stores,
    pipeline: Pipeline,
    *,
    say: Callable[[str], None] = print,
) -> None:
    """Run until SIGINT/SIGTERM; then stop sources, drain and commit."""
    ensure_admin_token(stores, say)
    stores.state.revoke_tokens(CLI_TOKEN_NAME)
    cli_token = stores.state.create_token(CLI_TOKEN_NAME, "read")
    host, port = split_listen(config.web.listen)
    url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}"  # noqa: S104
    app = create_app(stores.events, stores.state, live_metrics=pipeline.metrics)
    server = _Server(
        uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False)
    )
    stop_retention = threading.Event()
    if config.store.retention_days:
        threading.Thread(
            target=_retention_loop,
            args=(stores, config.store.retention_days, stop_retention),
            daemon=True,
        ).start()
    pipeline.start()
    write_server_file(data_dir, url, cli_token)
    say(f"API listening on {url}/api/v1 (OpenAPI: {url}/api/v1/openapi.json); Ctrl-C stops")
    try:
        server.run()
    finally:
        stop_retention.set()
        say("stopping: finishing reads and committing ...")
        pipeline.stop()
        remove_server_file(data_dir)
        stores.state.revoke_tokens(CLI_TOKEN_NAME)
        say(f"stopped; {pipeline.events_stored} events stored in this run")


class _Server(uvicorn.Server):
    """uvicorn re-raises SIGINT/SIGTERM after its shutdown, which would kill the
    process before the pipeline commits; here a signal just asks it to exit."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        def handler(signum: int, _frame: object) -> None:
            self.should_exit = True

        previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, old in previous.items():
                signal.signal(sig, old)


def _retention_loop(stores: Stores, days: int, stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            deleted = stores.events.retention(days)
            if deleted:
                log.info("retention: deleted %d events older than %d days", deleted, days)
        except Exception:
            log.exception("retention failed")
        stop.wait(RETENTION_EVERY_SECONDS)
