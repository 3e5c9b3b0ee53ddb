"""The syslog source fed by real daemons: rsyslog forwarding a file it tails,
and nginx's `access_log`/`error_log syslog:server=...` output.

Both daemons run as child processes with configs written here, bound to (and
sending to) 127.0.0.1 ports found free by the test.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from lightsoc.enrich.chain import build_enrichers
from tests.helpers import free_port as free_tcp_port
from tests.sources.tailing import TIMEOUT, wait_until
from tests.sources.test_syslog import Syslog

FIELDS = [
    "log.syslog.appname",
    "@timestamp",
    "log.syslog.procid",
    "event.dataset",
    "event.action",
    "event.outcome",
    "user.name",
    "source.ip",
    "url.original",
    "http.request.method",
    "http.response.status_code",
    "user_agent.original",
    "event.original",
    "tags",
]


def tool(name: str) -> str:
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")
    if path is None:
        pytest.fail(f"{name} is not installed (scripts/setup.sh installs it)")
    return path


@pytest.fixture(scope="module")
def enrichers():
    return build_enrichers({})


@pytest.fixture
def syslog(tmp_path, enrichers) -> Iterator[Syslog]:
    s = Syslog(tmp_path, enrichers, max_message_bytes=8192).wait_bound()
    yield s
    s.close()


def rows(s: Syslog, n: int) -> list[dict]:
    wait_until(lambda: s.count() >= n, TIMEOUT, f"{n} events (have {s.count()})")
    found = s.store.search(fields=FIELDS, limit=1000).to_pylist()
    assert len(found) == n
    return found


class Daemon:
    """A foreground daemon process, stopped (and its output kept) at exit."""

    def __init__(self, argv: list[str], log: Path) -> None:
        self.log = log
        self.proc = subprocess.Popen(argv, stdout=log.open("wb"), stderr=subprocess.STDOUT)

    def stop(self) -> str:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        return self.log.read_text(errors="replace")


FAILED = "Failed password for root from 203.0.113.7 port 4242 ssh2"
ACCEPTED = "Accepted password for bob from 203.0.113.8 port 4243 ssh2"


def test_rsyslog_forwards_a_tailed_file_over_tcp_and_udp(tmp_path, syslog):
    """omfwd: RFC 5424 octet-counted over TCP and the traditional format over UDP."""
    work = tmp_path / "rsyslog"
    work.mkdir()
    app_log = tmp_path / "auth.log"
    app_log.write_text("")
    conf = work / "rsyslog.conf"
    conf.write_text(
        f'global(workDirectory="{work}")\n'
        'module(load="imfile")\n'
        f'input(type="imfile" File="{app_log}" Tag="sshd[4242]:" Facility="auth")\n'
        f'action(type="omfwd" target="127.0.0.1" port="{syslog.tcp}" protocol="tcp" '
        'TCP_Framing="octet-counted" template="RSYSLOG_SyslogProtocol23Format")\n'
        f'action(type="omfwd" target="127.0.0.1" port="{syslog.udp}" protocol="udp")\n'
    )
    argv = [tool("rsyslogd"), "-n", "-f", str(conf), "-i", str(work / "pid")]
    daemon = Daemon(argv, work / "out.log")
    try:
        # imfile only sees lines appended after it opened the file: append probes
        # until one arrives (each is forwarded twice, TCP and UDP).
        probes = 0
        while syslog.count() == 0:
            assert probes < 60, "rsyslog forwarded nothing"
            with app_log.open("a") as f:
                f.write(f"rsyslog ready {probes}\n")
            probes += 1
            try:
                wait_until(lambda: syslog.count() > 0, 0.5)
            except AssertionError:
                pass
        before = 2 * probes
        wait_until(lambda: syslog.count() == before, TIMEOUT, "all probes")
        with app_log.open("a") as f:
            f.write(f"{FAILED}\n{ACCEPTED}\n")
        found = rows(syslog, before + 4)
    finally:
        out = daemon.stop()
    assert "error" not in out.lower(), out
    checked = [r for r in found if "rsyslog ready" not in r["event.original"]]
    assert len(checked) == 4  # two lines, each over TCP (5424) and UDP (3164)
    # RFC 5424 stamps carry rsyslog's microseconds; RFC 3164 ones whole seconds
    assert sorted(r["@timestamp"].microsecond > 0 for r in checked) == [False, False, True, True]
    for r in checked:
        assert (r["log.syslog.appname"], r["log.syslog.procid"]) == ("sshd", "4242")
        assert r["event.action"] == "ssh_login"
        assert "parse_failure" not in (r["tags"] or [])
    assert sorted((r["user.name"], r["event.outcome"]) for r in checked) == [
        ("bob", "success"),
        ("bob", "success"),
        ("root", "failure"),
        ("root", "failure"),
    ]


NGINX_CONF = """\
daemon off;
master_process off;
worker_processes 1;
pid {dir}/nginx.pid;
error_log syslog:server=127.0.0.1:{udp},tag=nginx warn;
events {{ worker_connections 64; }}
http {{
  client_body_temp_path {dir}/body; proxy_temp_path {dir}/proxy;
  fastcgi_temp_path {dir}/fcgi; uwsgi_temp_path {dir}/uwsgi; scgi_temp_path {dir}/scgi;
  log_format ecsjson escape=json '{{"time":"$time_iso8601","remote_addr":"$remote_addr",'
    '"request":"$request","status":$status,"body_bytes_sent":$body_bytes_sent,'
    '"http_referer":"$http_referer","http_user_agent":"$http_user_agent"}}';
  server {{
    listen 127.0.0.1:{http};
    access_log syslog:server=127.0.0.1:{udp},severity=info combined;
    access_log syslog:server=127.0.0.1:{udp},tag=nginx_json ecsjson;
    location / {{ return 200 "ok\\n"; }}
    location /admin/ {{ auth_basic "admin"; auth_basic_user_file {dir}/htpasswd; }}
  }}
}}
"""


def get(url: str, **headers: str) -> int:
    req = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status
    except urllib.error.HTTPError as err:
        return err.code


def test_nginx_access_and_error_logs_over_syslog(tmp_path, syslog):
    """Combined and JSON access lines and a basic-auth failure, as nginx sends them."""
    work = tmp_path / "nginx"
    work.mkdir()
    (work / "htpasswd").write_text("admin:$apr1$abcdefgh$abcdefghijklmnopqrstuv\n")
    http = free_tcp_port()
    (work / "nginx.conf").write_text(NGINX_CONF.format(dir=work, udp=syslog.udp, http=http))
    argv = [tool("nginx"), "-c", str(work / "nginx.conf"), "-p", str(work), "-e", "stderr"]
    daemon = Daemon(argv, work / "out.log")
    base = f"http://127.0.0.1:{http}"
    try:
        wait_until(lambda: _answers(base), TIMEOUT, "nginx to listen")
        # the one answered readiness probe is logged by both access logs
        wait_until(lambda: syslog.count() == 2, TIMEOUT, "the probe's log lines")
        evil_ua = 'sqlmap/1.7 "<script>alert(1)</script>'
        assert get(f"{base}/search?q=1%27%20OR%20%271%27=%271", **{"User-Agent": evil_ua}) == 200
        basic = "Basic YWRtaW46d3Jvbmc="  # admin:wrong
        assert get(f"{base}/admin/", Authorization=basic) == 401
        # 2 requests x 2 access logs + 1 error line
        found = rows(syslog, 2 + 5)
    finally:
        daemon.stop()
    found = [r for r in found if r["url.original"] != "/ready"]
    access = [r for r in found if r["event.dataset"] == "nginx.access"]
    assert len(access) == 4
    sqli = [r for r in access if r["url.original"].startswith("/search")]
    assert {r["log.syslog.appname"] for r in sqli} == {"nginx", "nginx_json"}
    for r in sqli:
        assert r["url.original"] == "/search?q=1%27%20OR%20%271%27=%271"
        assert r["http.request.method"] == "GET"
        assert r["http.response.status_code"] == 200
        assert r["source.ip"] == "127.0.0.1"
    by_app = {r["log.syslog.appname"]: r for r in sqli}
    # JSON keeps the agent exactly; combined keeps nginx's \x22 escapes as sent.
    assert by_app["nginx_json"]["user_agent.original"] == evil_ua
    assert by_app["nginx"]["user_agent.original"] == evil_ua.replace('"', "\\x22")
    json.loads(by_app["nginx_json"]["event.original"].split(": ", 1)[1])
    [error] = [r for r in found if r["event.dataset"] == "nginx.error"]
    assert (error["user.name"], error["event.outcome"]) == ("admin", "failure")
    assert error["url.original"] == "/admin/"


def _answers(base: str) -> bool:
    try:
        return get(f"{base}/ready") == 200
    except OSError:
        return False
