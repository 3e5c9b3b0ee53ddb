"""The example scale-out deployment (`deploy/`) and the `Dockerfile` stay in step
with the code: the config loads with lightsoc's own loader, its secrets all come
from the environment file, every systemd unit starts an existing role with the
config, `systemd-analyze verify` accepts the units, and the image's entry point
is the console script."""

from __future__ import annotations

import hashlib
import json
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg
import pytest
import yaml
from clickhouse_driver import Client
from clickhouse_driver.errors import ServerException

from lightsoc.alerts.outputs.dispatcher import build_outputs
from lightsoc.bus.redis import RedisBus
from lightsoc.config import SyslogSourceConfig, load_config
from lightsoc.roles import ROLES, shared_bus
from lightsoc.runtime import check_sources
from lightsoc.store.events_clickhouse import ClickHouseEventStore
from tests import clickhouse_server
from tests.helpers import cli_json
from tests.pg import PgCluster

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
CONFIG = DEPLOY / "lightsoc.yml"
ENV_EXAMPLE = DEPLOY / "lightsoc.env.example"
UNITS = DEPLOY / "systemd"
INSTALLED_CONFIG = "/etc/lightsoc/lightsoc.yml"
INSTALLED_BINARY = "/opt/lightsoc/bin/lightsoc"
VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-[^}]*)?\}")
#: unit file -> role; a template's instance names its data dir
EXPECTED_UNITS = {
    "lightsoc-collect.service": "collect",
    "lightsoc-process@.service": "process",
    "lightsoc-schedule@.service": "schedule",
    "lightsoc-web.service": "web",
}


def _env_example() -> dict[str, str]:
    """`NAME=value` lines of the env example (comments and blank lines skipped)."""
    env = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, sep, value = line.partition("=")
            assert sep, f"{ENV_EXAMPLE.name}: not NAME=value: {line!r}"
            env[name.strip()] = value.strip()
    return env


def _strings(data: Any) -> list[str]:  # noqa: ANN401
    if isinstance(data, str):
        return [data]
    if isinstance(data, dict):
        return [s for v in data.values() for s in _strings(v)]
    return [s for v in data for s in _strings(v)] if isinstance(data, list) else []


def _config_vars() -> set[str]:
    """`${VAR}`s of the config's values (comments do not count)."""
    raw = yaml.safe_load(CONFIG.read_text())
    return {m for s in _strings(raw) for m in VAR.findall(s)}


def _unit(path: Path) -> dict[str, dict[str, list[str]]]:
    """section -> key -> values (a key may repeat)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
            continue
        assert current is not None, f"{path.name}: {line!r} before any section"
        key, sep, value = line.partition("=")
        assert sep, f"{path.name}: not Key=Value: {line!r}"
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def _one(unit: dict[str, dict[str, list[str]]], key: str) -> str:
    [value] = unit["Service"][key]
    return value


def _exec_start(unit: dict[str, dict[str, list[str]]]) -> dict[str, str]:
    """`lightsoc run --role R --config C --data-dir D` as {"--role": R, ...}."""
    argv = shlex.split(_one(unit, "ExecStart"))
    assert argv[:2] == [INSTALLED_BINARY, "run"], argv
    options = argv[2:]
    assert len(options) % 2 == 0, argv
    return dict(zip(options[::2], options[1::2], strict=True))


# ------------------------------------------------------------------ the config


def test_the_config_loads_with_the_shared_bus_and_stores() -> None:
    env = _env_example()
    config = load_config(CONFIG, env=env)

    assert config.bus.startswith("redis://")
    assert config.store.events.startswith("clickhouse://")
    assert config.store.state.startswith("postgresql://")
    # the secrets were substituted from the environment
    assert urlsplit(config.bus).password == env["REDIS_PASSWORD"]
    events = urlsplit(config.store.events)
    assert (events.username, events.password) == ("lightsoc", env["CLICKHOUSE_PASSWORD"])
    assert (events.port, events.path) == (9000, "/lightsoc")
    assert urlsplit(config.store.state).password == env["POSTGRES_PASSWORD"]
    bus = shared_bus(config.bus, consumer="test")  # parses the URL; connects lazily
    assert isinstance(bus, RedisBus)
    assert (bus.stream, bus.group) == ("lightsoc:raw", "lightsoc-processors")

    # one collector's sources: two files (nginx, auth.log) and a syslog listener
    files = {sid: s for sid, s in config.sources.items() if s.type == "file"}
    assert sorted(s.format for s in files.values()) == ["nginx_combined", "syslog"]
    [syslog] = [s for s in config.sources.values() if isinstance(s, SyslogSourceConfig)]
    assert sorted(u.split("://")[0] for u in syslog.listen) == ["tcp", "udp"]
    check_sources(config)  # every format is a known parser
    outputs = build_outputs(config.alerts)
    assert sorted(o.id for o in outputs) == ["oncall", "siem"]


def test_secrets_come_only_from_the_environment() -> None:
    raw = yaml.safe_load(CONFIG.read_text())
    for url in (raw["bus"], raw["store"]["events"], raw["store"]["state"]):
        password = urlsplit(url).password
        assert password is not None and VAR.fullmatch(password), url
    for oid, output in raw["alerts"]["outputs"].items():
        assert VAR.fullmatch(output["url"]), f"output {oid}: {output['url']!r}"


def test_every_config_variable_is_in_the_env_example_and_back() -> None:
    used, listed = _config_vars(), set(_env_example())
    assert used, "the config uses no ${VAR}"
    assert used - listed == set(), "used in lightsoc.yml, missing from lightsoc.env.example"
    assert listed - used == set(), "in lightsoc.env.example, unused by lightsoc.yml"


def test_the_readme_postgresql_setup_gives_lightsoc_its_state(
    own_pg_cluster: PgCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """deploy/README.md's SQL, run as the superuser, is all the `lightsoc` role
    needs: `lightsoc status` with the deployment's config (PostgreSQL's host
    pointed here) creates every table as that role and answers. (The throwaway
    cluster trusts local connections: the password itself is not checked.)"""
    readme = (DEPLOY / "README.md").read_text()
    block = re.search(r"psql <<'SQL'\n(.*?)\nSQL\n", readme, re.S)
    assert block, "deploy/README.md: no `psql <<'SQL' ... SQL` block"
    sql = block.group(1).replace("the POSTGRES_PASSWORD value", "pw")
    admin = f"postgresql://postgres@127.0.0.1:{own_pg_cluster.port}"
    with psycopg.connect(f"{admin}/postgres", autocommit=True) as conn:
        for statement in filter(str.strip, sql.split(";")):
            conn.execute(statement)
    text = CONFIG.read_text().replace(
        "postgres.soc.internal:5432", f"127.0.0.1:{own_pg_cluster.port}"
    )
    assert text != CONFIG.read_text()
    config = tmp_path / "lightsoc.yml"
    config.write_text(text)
    for name, value in {**_env_example(), "POSTGRES_PASSWORD": "pw"}.items():
        monkeypatch.setenv(name, value)

    assert cli_json("status", "--config", config, "--format", "json") == []
    with psycopg.connect(f"{admin}/lightsoc") as conn:
        owners = conn.execute(
            "SELECT tableowner, count(*) FROM pg_tables WHERE schemaname = 'public' "
            "GROUP BY tableowner"
        ).fetchall()
    assert [owner for owner, _ in owners] == ["lightsoc"]
    assert owners[0][1] >= 5  # the state schema: settings, tokens, alerts, heartbeats, ...


def test_the_readme_clickhouse_user_opens_the_event_store(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """deploy/README.md's `users.d` user (for servers without `CREATE USER`, like
    the Debian 18.16 package here) can create lightsoc's tables in `lightsoc`,
    with the password of the config's URL, and nothing in another database."""
    readme = (DEPLOY / "README.md").read_text()
    block = re.search(r"\n( *<lightsoc>\n.*?</lightsoc>)\n", readme, re.S)
    assert block, "deploy/README.md: no <lightsoc> users.d block"
    password = "pw-" + "x" * 8
    user = (
        block.group(1)
        .replace("SHA256_OF_THE_PASSWORD", hashlib.sha256(password.encode()).hexdigest())
        .replace("10.0.0.0/8", "127.0.0.1")
    )
    users = clickhouse_server.USERS.replace("</users>", user + "</users>")
    assert users != clickhouse_server.USERS
    monkeypatch.setattr(clickhouse_server, "USERS", users)
    with clickhouse_server.running_clickhouse() as port:
        admin = Client("127.0.0.1", port=port)
        try:
            admin.execute("CREATE DATABASE IF NOT EXISTS lightsoc")  # as the README says
            store = ClickHouseEventStore(
                f"clickhouse://lightsoc:{password}@127.0.0.1:{port}/lightsoc"
            )
            store.close()
            tables = {t for (t,) in admin.execute("SHOW TABLES FROM lightsoc")}
            with pytest.raises(ServerException, match="Access denied to database"):
                ClickHouseEventStore(f"clickhouse://lightsoc:{password}@127.0.0.1:{port}/other")
        finally:
            admin.disconnect()
    assert {"events", "lightsoc_checkpoints", "lightsoc_batches"} <= tables


# ------------------------------------------------------------------- the units


def test_the_units_are_the_four_roles() -> None:
    found = {p.name: _exec_start(_unit(p))["--role"] for p in UNITS.glob("*.service")}
    assert found == EXPECTED_UNITS
    assert set(found.values()) <= set(ROLES)


@pytest.mark.parametrize("name", sorted(EXPECTED_UNITS))
def test_unit_starts_its_role_with_the_config_hardened(name: str) -> None:
    unit = _unit(UNITS / name)
    service = unit["Service"]
    args = _exec_start(unit)
    assert set(args) == {"--role", "--config", "--data-dir"}
    assert args["--role"] == EXPECTED_UNITS[name]
    assert args["--config"] == INSTALLED_CONFIG
    data_dir = args["--data-dir"]
    assert data_dir.startswith("/var/lib/lightsoc/")
    if "@" in name:  # each instance its own data dir
        assert "%i" in data_dir
    # the data dir is the one writable path, created for the service user
    assert service["ReadWritePaths"] == [data_dir]
    assert service["StateDirectory"] == [data_dir.removeprefix("/var/lib/")]
    expected = {
        "User": "lightsoc",
        "EnvironmentFile": "/etc/lightsoc/lightsoc.env",
        "Restart": "on-failure",
        "RestartPreventExitStatus": "2",
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "KillSignal": "SIGTERM",
    }
    assert {k: _one(unit, k) for k in expected} == expected
    # the role's own drain (joins of up to 60 s, more for a processor) fits
    assert int(_one(unit, "TimeoutStopSec")) >= (180 if args["--role"] == "process" else 120)
    assert unit["Install"]["WantedBy"] == ["multi-user.target"]
    if args["--role"] == "collect":  # reads /var/log, binds syslog port 514
        assert _one(unit, "SupplementaryGroups") == "adm"
        assert _one(unit, "AmbientCapabilities") == "CAP_NET_BIND_SERVICE"
        assert _one(unit, "CapabilityBoundingSet") == "CAP_NET_BIND_SERVICE"
    else:
        assert "AmbientCapabilities" not in service
        assert _one(unit, "CapabilityBoundingSet") == ""


def test_systemd_analyze_verifies_the_units(tmp_path: Path) -> None:
    """`systemd-analyze verify` checks every key and value; it also wants the
    ExecStart binary to exist, so the copies name this checkout's `lightsoc`."""
    binary = Path(sys.executable).with_name("lightsoc")
    assert binary.is_file(), f"{binary}: the console script is not installed in this venv"
    for path in UNITS.glob("*.service"):
        text = path.read_text().replace(INSTALLED_BINARY, str(binary))
        (tmp_path / path.name).write_text(text)
    instances = [n.replace("@.", "@1.") for n in sorted(EXPECTED_UNITS)] + [
        "lightsoc-schedule@2.service"
    ]
    analyze = shutil.which("systemd-analyze")
    assert analyze is not None
    result = subprocess.run(
        [analyze, "verify", *instances],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    # unknown keys and bad values are warnings with status 0: no output at all
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


# ------------------------------------------------------------------ the image


def _dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined."""
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_the_image_runs_the_console_script_as_a_user() -> None:
    steps = _dockerfile()
    args = {word: rest for word, rest in steps}  # the last of each counts
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    entrypoint, cmd = json.loads(args["ENTRYPOINT"]), json.loads(args["CMD"])
    assert entrypoint == ["lightsoc"] and "lightsoc" in scripts
    assert cmd[0] == "run" and cmd[cmd.index("--role") + 1] in ROLES
    assert steps[0] == ("FROM", "python:3.11-slim")
    assert args["USER"] not in ("root", "0")
    assert json.loads(args["VOLUME"]) == ["/var/lib/lightsoc"]
    assert args["EXPOSE"] == "8000"


def test_the_image_build_context_holds_the_package() -> None:
    """`pip install .` needs pyproject.toml, README.md and src/, plus whatever
    src/ links to (the rule pack): copied, and not excluded by .dockerignore."""
    copied = {
        src for word, rest in _dockerfile() if word == "COPY" for src in shlex.split(rest)[:-1]
    }
    needed = {"pyproject.toml", "README.md", "src"}
    for link in (p for p in (ROOT / "src").rglob("*") if p.is_symlink()):
        needed.add(link.resolve().relative_to(ROOT).parts[0])
    assert needed <= copied
    ignored = {
        line.strip().rstrip("/")
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert ignored.isdisjoint(needed)
