"""lightsoc.config: the YAML config, env substitution and errors that name the line."""

from __future__ import annotations

import re
from pathlib import Path
from textwrap import dedent

import pytest

from lightsoc.config import (
    EXAMPLE,
    Config,
    ConfigError,
    FileSourceConfig,
    PcapSourceConfig,
    load_config,
    parse_config,
)

ENV = {"WECOM_WEBHOOK": "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=s3cret"}
DESIGN = Path(__file__).resolve().parents[2] / "shared" / "DESIGN.md"


def error(text: str, env: dict[str, str] | None = None) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        parse_config(dedent(text), file="lightsoc.yml", env=env or {})
    return info.value


# ------------------------------------------------------------------ example


def test_design_example_validates() -> None:
    cfg = parse_config(EXAMPLE, file="lightsoc.yml", env=ENV)
    assert list(cfg.sources) == ["web", "auth", "syslog", "flows", "dns"]
    web = cfg.sources["web"]
    assert isinstance(web, FileSourceConfig)
    assert (web.paths, web.format, web.start_at) == (
        ["/var/log/nginx/access.log*"],
        "nginx_combined",
        "beginning",
    )
    assert web.max_line_bytes == 1 << 20
    dns = cfg.sources["dns"]
    assert isinstance(dns, PcapSourceConfig) and dns.interface == "eth0"
    assert cfg.enrich.networks == {"office": ["10.0.0.0/8"], "dmz": ["192.168.10.0/24"]}
    assert cfg.detect.rules == ["builtin", "./rules"]
    oncall = cfg.alerts.outputs["oncall"]
    assert (oncall.type, oncall.min_severity) == ("wecom", "high")
    assert oncall.model_extra == {"url": ENV["WECOM_WEBHOOK"]}
    assert (cfg.store.retention_days, cfg.bus, cfg.web.listen) == (30, "memory", "127.0.0.1:8000")
    assert Config.example_yaml() == EXAMPLE


def test_example_is_the_one_in_the_design_document() -> None:
    assert DESIGN.exists(), f"{DESIGN} missing: ../shared must sit beside the checkout"
    block = re.search(r"```yaml\n(# lightsoc.yml\n.*?)```", DESIGN.read_text(), re.S)
    assert block is not None and block.group(1) == EXAMPLE


def test_example_without_its_secret_names_line_and_variable() -> None:
    err = error(EXAMPLE)
    assert str(err) == (
        "lightsoc.yml:29: alerts.outputs.oncall.url: ${WECOM_WEBHOOK} is not set; "
        "export WECOM_WEBHOOK or write ${WECOM_WEBHOOK:-default}"
    )
    assert (err.file, err.line, err.field) == ("lightsoc.yml", 29, "alerts.outputs.oncall.url")


def test_defaults() -> None:
    cfg = Config()
    assert cfg.data_dir == Path("lightsoc-data") and cfg.sources == {}
    assert (cfg.store.events, cfg.store.state, cfg.store.retention_days) == ("duckdb", "sqlite", 30)
    assert (cfg.pipeline.batch_max_rows, cfg.pipeline.batch_max_ms) == (32768, 200)
    assert cfg.pipeline.queue_max_batches == 1 and cfg.detect.rules == ["builtin"]
    assert parse_config("") == cfg == parse_config("enrich:\nsources:\n")


# ---------------------------------------------------------------- env


def test_env_substitution() -> None:
    text = """\
        bus: "${BUS:-memory}"
        web: {listen: "${HOST:-127.0.0.1}:${PORT}"}
        store: {retention_days: "${DAYS:-14}", state: "${STATE:-sqlite}"}
        alerts: {outputs: {hook: {type: webhook, url: "https://h/$${literal}"}}}
    """
    cfg = parse_config(dedent(text), env={"PORT": "9000", "STATE": ""})
    assert cfg.bus == "memory"
    assert cfg.web.listen == "127.0.0.1:9000"
    assert cfg.store.retention_days == 14  # substituted text still validates as int
    assert cfg.store.state == "sqlite"  # `:-` also covers a variable set to ""
    assert cfg.alerts.outputs["hook"].model_extra == {"url": "https://h/${literal}"}


def test_env_missing_variable_names_line_and_variable() -> None:
    err = error("web:\n  listen: ${HOST:-0.0.0.0}:${WEB_PORT}\n")
    assert str(err) == (
        "lightsoc.yml:2: web.listen: ${WEB_PORT} is not set; "
        "export WEB_PORT or write ${WEB_PORT:-default}"
    )


def test_env_malformed_reference() -> None:
    err = error("bus: ${redis\n")
    assert str(err) == (
        "lightsoc.yml:1: bus: '${' must start ${NAME} or ${NAME:-default}; "
        "write '$${' for a literal '${'"
    )


def test_env_values_never_appear_in_errors() -> None:
    text = """\
        store:
          state: "${DB_URL}"
          retention_days: ${DAYS}
    """
    err = error(text, {"DB_URL": "mongo://admin:hunter2@db", "DAYS": "hunter3"})
    assert [str(e) for e in err.errors] == [
        "lightsoc.yml:2: store.state: expected 'sqlite' or a sqlite:// or postgresql:// or "
        "postgres:// or mysql:// URL, got '${DB_URL}'",
        "lightsoc.yml:3: store.retention_days: expected a valid integer, got ${DAYS}",
    ]


# ------------------------------------------------------------- error lines


def test_typo_key_reports_its_line_and_suggestion() -> None:
    text = """\
        data_dir: /srv/lightsoc
        sources:
          web:
            type: file
            paths: [/var/log/nginx/access.log]
            fromat: nginx_combined
    """
    err = error(text)
    assert str(err) == "lightsoc.yml:6: sources.web.fromat: unknown key; did you mean 'format'?"
    assert (err.line, err.field) == (6, "sources.web.fromat")


def test_unknown_top_level_section() -> None:
    err = error("data_dir: x\nsource: {}\n")
    assert str(err) == "lightsoc.yml:2: source: unknown key; did you mean 'sources'?"


def test_bad_cidr_reports_line_and_index() -> None:
    text = """\
        enrich:
          networks:
            office:
              - 10.0.0.0/8
              - 10.0.0.0/33
            dmz: ["192.168.10.0/24"]
    """
    err = error(text)
    assert str(err) == (
        "lightsoc.yml:5: enrich.networks.office[1]: '10.0.0.0/33' is not a valid CIDR network"
    )


def test_missing_required_field_reports_parent_line() -> None:
    text = """\
        sources:
          auth:
            type: file
            paths: [/var/log/auth.log]
          web:
            type: file
            format: nginx_combined
    """
    assert str(error(text)) == "lightsoc.yml:5: sources.web.paths: field required"


def test_empty_list_and_missing_type() -> None:
    err = error("sources:\n  web: {type: file, paths: []}\n  x: {paths: [a]}\n")
    assert [str(e) for e in err.errors] == [
        "lightsoc.yml:2: sources.web.paths: must not be empty",
        "lightsoc.yml:3: sources.x.type: field required",
    ]


def test_wrong_type_reports_line() -> None:
    text = """\
        store:
          events: duckdb
          retention_days: lots
    """
    err = error(text)
    assert str(err) == "lightsoc.yml:3: store.retention_days: expected a valid integer, got 'lots'"
    assert str(error("store: {retention_days: 0}\n")) == (
        "lightsoc.yml:1: store.retention_days: must be >= 1, got 0"
    )


def test_unknown_source_type_points_at_type() -> None:
    err = error("sources:\n  fw:\n    type: sylog\n    listen: [udp://0.0.0.0:514]\n")
    assert str(err) == (
        "lightsoc.yml:3: sources.fw.type: unknown type 'sylog'; expected one of 'file', "
        "'syslog', 'netflow', 'pcap', 'http', 'kafka', 'redis'"
    )


def test_component_validation_messages() -> None:
    text = """\
        sources:
          "web logs": {type: file, paths: [a.log]}
          s: {type: syslog, listen: ["udp://0.0.0.0:514", "tls://0.0.0.0:6514"]}
          cap: {type: pcap, filter: udp port 53}
          f: {type: file, paths: [a], start_at: start}
        detect:
          allow: {sourceip: [10.0.0.1]}
        web: {listen: localhost}
    """
    assert [str(e) for e in error(text).errors] == [
        "lightsoc.yml:2: sources[\"web logs\"]: id 'web logs' may contain only letters, "
        "digits, '_', '.' and '-'",
        "lightsoc.yml:3: sources.s.listen[1]: 'tls://0.0.0.0:6514' is not a listen address; "
        "expected udp://HOST:PORT or tcp://HOST:PORT",
        "lightsoc.yml:4: sources.cap: set exactly one of 'interface' or 'file'",
        "lightsoc.yml:5: sources.f.start_at: expected 'beginning' or 'end', got 'start'",
        "lightsoc.yml:7: detect.allow.sourceip: 'sourceip' is not an event field; "
        "did you mean 'source.ip'?",
        "lightsoc.yml:8: web.listen: 'localhost' is not HOST:PORT (e.g. 127.0.0.1:8000 or [::1]:8000)",
    ]


def test_yaml_syntax_error_line() -> None:
    text = """\
        data_dir: ./data
        sources:
          web:
            type: file
           paths: [a]
    """
    err = error(text)
    assert (err.line, err.field) == (5, None)
    assert str(err).startswith("lightsoc.yml:5: invalid YAML: ")


def test_duplicate_key_is_an_error() -> None:
    err = error("sources:\n  web: {type: file, paths: [a]}\n  web: {type: file, paths: [b]}\n")
    assert str(err) == "lightsoc.yml:3: sources.web: duplicate key 'web'"


def test_top_level_must_be_a_mapping() -> None:
    assert str(error("- a\n- b\n")) == (
        "lightsoc.yml:1: the top level must be a mapping (data_dir:, sources:, ...)"
    )


def test_config_says_where_values_came_from() -> None:
    cfg = parse_config(EXAMPLE, file="lightsoc.yml", env=ENV)
    assert cfg.line_of("sources", "dns") == 18
    assert cfg.where("sources", "web") == "lightsoc.yml line 4"
    assert Config().where("sources") == "defaults"
    assert cfg.source_text == EXAMPLE and cfg.source_file == "lightsoc.yml"
    err = cfg.error(("sources", "web", "paths"), "no file matches; check the glob")
    assert str(err) == "lightsoc.yml:6: sources.web.paths: no file matches; check the glob"
    leak = cfg.error(("alerts", "outputs", "oncall"), f"POST {ENV['WECOM_WEBHOOK']} failed")
    assert str(leak) == "lightsoc.yml:29: alerts.outputs.oncall: POST ${WECOM_WEBHOOK} failed"


# ----------------------------------------------------------- files, paths


def test_relative_paths_resolve_against_config_directory(tmp_path: Path) -> None:
    conf = tmp_path / "etc" / "lightsoc.yml"
    conf.parent.mkdir()
    conf.write_text(
        dedent("""\
            data_dir: ./data
            sources:
              web: {type: file, paths: ["logs/*.log", /abs/x.log], exclude: ["*.gz"]}
              cap: {type: pcap, file: ../pcaps/dns.pcap}
            enrich:
              geoip: {city_database: geo/city.mmdb, asn_database: /opt/asn.mmdb}
            detect:
              rules: [builtin, ./rules, https://example.org/rules.zip]
        """)
    )
    cfg = load_config(conf)
    etc = tmp_path / "etc"
    assert cfg.data_dir == etc / "data"
    assert cfg.sources["web"].paths == [str(etc / "logs" / "*.log"), "/abs/x.log"]
    assert cfg.sources["web"].exclude == ["*.gz"]  # patterns, not paths
    assert cfg.sources["cap"].file == tmp_path / "pcaps" / "dns.pcap"
    assert cfg.enrich.geoip.city_database == etc / "geo" / "city.mmdb"
    assert cfg.enrich.geoip.asn_database == Path("/opt/asn.mmdb")
    assert cfg.detect.rules == ["builtin", str(etc / "rules"), "https://example.org/rules.zip"]


def test_default_file_discovery(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    cfg = load_config(None)
    assert cfg.data_dir == tmp_path / "lightsoc-data" and cfg.source_file is None

    (tmp_path / "lightsoc.yml").write_text("bus: memory\nstore:\n  retention_days: many\n")
    with pytest.raises(ConfigError) as info:
        load_config(None)
    assert str(info.value) == (
        "lightsoc.yml:3: store.retention_days: expected a valid integer, got 'many'"
    )

    (tmp_path / "lightsoc.yml").write_text("data_dir: var/ls\nstore: {retention_days: 7}\n")
    cfg = load_config(None)
    assert (cfg.data_dir, cfg.store.retention_days) == (tmp_path / "var" / "ls", 7)
    assert cfg.source_file == "lightsoc.yml"


def test_data_dir_override_is_relative_to_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "lightsoc.yml").write_text("data_dir: ./data\n")
    monkeypatch.chdir(tmp_path)
    cfg = load_config(Path("conf/lightsoc.yml"), data_dir_override=Path("other"))
    assert cfg.data_dir == tmp_path / "other"


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "nope.yml")
    assert str(info.value) == f"{tmp_path / 'nope.yml'}: config file not found"


# ---------------------------------------------------------------- round trip


def test_round_trip_keeps_env_references() -> None:
    cfg = parse_config(EXAMPLE, file="lightsoc.yml", env=ENV)
    text = cfg.dump()
    assert "${WECOM_WEBHOOK}" in text and "s3cret" not in text
    assert parse_config(text, env=ENV) == cfg
    assert "s3cret" in cfg.dump(reveal_env=True)
    assert parse_config(cfg.dump(reveal_env=True), env={}) == cfg


def test_round_trip_literal_dollar_brace_and_anchors() -> None:
    text = """\
        x-file: &file {type: file, format: syslog, paths: ["${LOGS}/a.log"]}
        sources:
          a: {<<: *file, tags: ["cost $${USD}"]}
          b:
            <<: *file
            paths: [/b.log]
    """
    env = {"LOGS": "/srv/${weird}"}
    cfg = parse_config(dedent(text), env=env)
    assert cfg.sources["a"].paths == ["/srv/${weird}/a.log"]  # substituted once, not again
    assert cfg.sources["a"].tags == ["cost ${USD}"]
    assert cfg.sources["b"].paths == ["/b.log"]
    assert parse_config(cfg.dump(), env=env) == cfg
    assert parse_config(cfg.dump(reveal_env=True), env={}) == cfg


def test_round_trip_every_source_type() -> None:
    cfg = Config.model_validate(
        {
            "data_dir": "/srv/ls",
            "sources": {
                "f": {
                    "type": "file",
                    "paths": ["/l/*.log"],
                    "options": {"field_map": {"ip": "source.ip"}},
                },
                "s": {"type": "syslog", "listen": ["tcp://[::]:514"], "tags": ["fw"]},
                "n": {"type": "netflow", "listen": ["udp://0.0.0.0:2055"]},
                "p": {"type": "pcap", "file": "/tmp/dns.pcap", "filter": "port 53"},
                "h": {"type": "http", "listen": "0.0.0.0:9200"},
                "k": {"type": "kafka", "brokers": ["k1:9092"], "topics": ["raw"]},
                "r": {"type": "redis", "url": "redis://h:6379/0", "stream": "raw"},
            },
            "enrich": {"geoip": {"city_database": "/g/city.mmdb"}},
            "store": {"events": "clickhouse://ch:9000/ls", "retention_days": None},
            "bus": "redis://h:6379/0",
        }
    )
    back = parse_config(cfg.dump())
    assert back == cfg
    assert back.store.retention_days is None and back.sources["p"].file == Path("/tmp/dns.pcap")


def test_readme_config_examples_validate() -> None:
    """Every YAML config block in the README parses, and its alert outputs build."""
    from lightsoc.alerts.outputs.dispatcher import build_outputs

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    blocks = re.findall(r"```yaml\n(.*?)```", readme, flags=re.S)
    configs = [b for b in blocks if re.match(r"(# lightsoc.yml\n)?(data_dir|sources|alerts):", b)]
    assert len(configs) >= 2
    env = {
        "WECOM_WEBHOOK": "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=k",
        "DINGTALK_WEBHOOK": "https://oapi.dingtalk.com/robot/send?access_token=t",
        "DINGTALK_SECRET": "SEC1",
        "SMTP_PASSWORD": "p",
    }
    for block in configs:
        cfg = parse_config(block, file="README.md", env=env)
        assert len(build_outputs(cfg.alerts)) == len(cfg.alerts.outputs)
