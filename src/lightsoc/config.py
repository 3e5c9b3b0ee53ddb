"""Typed configuration: `lightsoc.yml` -> `Config`, with errors that name the line.

`load_config` reads `lightsoc.yml` (see `EXAMPLE`) into a `Config`; string values
may use `${VAR}` and `${VAR:-default}`. Any problem is a `ConfigError` whose `str()`
is one line naming file, line and field, e.g.
`lightsoc.yml:12: enrich.networks.office[1]: '10.0.0.0/33' is not a valid CIDR network`.
Reading YAML with line marks and mapping errors to lines is `config_source`'s job.
"""

from __future__ import annotations

import difflib
import ipaddress
import os
import re
from collections.abc import Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import (
    AfterValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    model_validator,
)

from lightsoc.config_base import ConfigModel as _Model
from lightsoc.config_example import EXAMPLE
from lightsoc.config_ml import MLConfig
from lightsoc.config_source import ConfigError, Origin, field_str, read_yaml, validation_error
from lightsoc.timeutil import Duration

__all__ = [
    "DEFAULT_CONFIG_FILE",
    "EXAMPLE",
    "Config",
    "ConfigError",
    "FileSourceConfig",
    "HttpSourceConfig",
    "KafkaSourceConfig",
    "NetflowSourceConfig",
    "PcapSourceConfig",
    "RedisSourceConfig",
    "SyslogSourceConfig",
    "load_config",
    "parse_config",
]

DEFAULT_CONFIG_FILE = Path("lightsoc.yml")
_ID_RE = re.compile(r"^[A-Za-z0-9_.-]+$")


# ---------------------------------------------------------------- validators


def _resolve(value: str, info: ValidationInfo) -> str:
    """Resolve a relative path against the config file's directory (validation context)."""
    base = (info.context or {}).get("base_dir")
    if base is None:
        return value
    value = os.path.expanduser(value)
    return value if os.path.isabs(value) else os.path.normpath(os.path.join(base, value))


def _resolve_path(value: Path, info: ValidationInfo) -> Path:
    return Path(_resolve(str(value), info))


def _resolve_rules(value: str, info: ValidationInfo) -> str:
    return value if value == "builtin" or "://" in value else _resolve(value, info)


def _check_id(value: str) -> str:
    if not _ID_RE.match(value):
        raise ValueError(f"id {value!r} may contain only letters, digits, '_', '.' and '-'")
    return value


def _check_cidr(value: str) -> str:
    try:
        ipaddress.ip_network(value, strict=False)
    except ValueError:
        raise ValueError(f"{value!r} is not a valid CIDR network") from None
    return value


def _host_port(url: str) -> bool:
    """Does `url` (`//HOST:PORT` or `SCHEME://HOST:PORT`) name a host and a port?"""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return False
    return bool(parts.hostname) and bool(port) and not (parts.path or parts.query)


def _check_host_port(value: str) -> str:
    if not _host_port(f"//{value}"):
        raise ValueError(f"{value!r} is not HOST:PORT (e.g. 127.0.0.1:8000 or [::1]:8000)")
    return value


def _listen(*schemes: str) -> AfterValidator:
    forms = " or ".join(f"{s}://HOST:PORT" for s in schemes)

    def check(value: str) -> str:
        scheme = value.split("://", 1)[0] if "://" in value else ""
        if scheme not in schemes or not _host_port(value):
            raise ValueError(f"{value!r} is not a listen address; expected {forms}")
        return value

    return AfterValidator(check)


def _url_or(keyword: str | None, *schemes: str) -> AfterValidator:
    expected = "a " + " or ".join(f"{s}://" for s in schemes) + " URL"
    expected = f"{keyword!r} or {expected}" if keyword else expected

    def check(value: str) -> str:
        scheme = value.split("://", 1)[0].split("+", 1)[0] if "://" in value else None
        if value != keyword and scheme not in schemes:
            raise ValueError(f"expected {expected}, got {value!r}")
        return value

    return AfterValidator(check)


def _check_ecs_field(value: str) -> str:
    from lightsoc.schema import FIELDS  # lazy: pulls in polars/pyarrow

    names = [f.name for f in FIELDS]
    if value not in names:
        close = difflib.get_close_matches(value, names, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"{value!r} is not an event field{hint}")
    return value


ConfigPath = Annotated[Path, AfterValidator(_resolve_path)]
Glob = Annotated[str, AfterValidator(_resolve)]
ComponentId = Annotated[str, AfterValidator(_check_id)]
Cidr = Annotated[str, AfterValidator(_check_cidr)]
HostPort = Annotated[str, AfterValidator(_check_host_port)]
Severity = Literal["informational", "low", "medium", "high", "critical"]
PositiveInt = Annotated[int, Field(gt=0)]


# ------------------------------------------------------------------- sources


class FileSourceConfig(_Model):
    """Tail files matching globs (rotation aware); `format` names the parser."""

    type: Literal["file"]
    paths: Annotated[list[Glob], Field(min_length=1)]
    format: str = "auto"
    dataset: str | None = None
    start_at: Literal["beginning", "end"] = "beginning"
    exclude: list[str] = []
    max_line_bytes: PositiveInt = 1 << 20
    poll_interval: Annotated[float, Field(gt=0)] = 0.25
    options: dict[str, Any] = {}
    tags: list[str] = []


class SyslogSourceConfig(_Model):
    """Receive syslog over UDP and/or TCP."""

    type: Literal["syslog"]
    listen: Annotated[list[Annotated[str, _listen("udp", "tcp")]], Field(min_length=1)]
    format: str = "auto"
    dataset: str | None = None
    max_message_bytes: PositiveInt = 64 * 1024
    udp_receive_buffer_bytes: PositiveInt = 64 << 20
    tags: list[str] = []


class NetflowSourceConfig(_Model):
    """Receive NetFlow v5/v9 and IPFIX over UDP."""

    type: Literal["netflow"]
    listen: Annotated[list[Annotated[str, _listen("udp")]], Field(min_length=1)]
    tags: list[str] = []


class PcapSourceConfig(_Model):
    """Capture packets (DNS first) from a live interface or a capture file."""

    type: Literal["pcap"]
    interface: str | None = None
    file: ConfigPath | None = None
    filter: str | None = None
    snaplen: PositiveInt = 65535
    tags: list[str] = []

    @model_validator(mode="after")
    def _one_input(self) -> PcapSourceConfig:
        if (self.interface is None) == (self.file is None):
            raise ValueError("set exactly one of 'interface' or 'file'")
        return self


class HttpSourceConfig(_Model):
    """NDJSON and Elasticsearch `_bulk` ingest; `listen: null` = the web server."""

    type: Literal["http"]
    listen: HostPort | None = None
    format: str = "auto"
    dataset: str | None = None
    #: largest request body, sent or decompressed (larger: 413)
    max_body_bytes: PositiveInt = 32 << 20
    tags: list[str] = []


class KafkaSourceConfig(_Model):
    """Consume raw records from Kafka topics."""

    type: Literal["kafka"]
    brokers: Annotated[list[HostPort], Field(min_length=1)]
    topics: Annotated[list[str], Field(min_length=1)]
    group_id: str = "lightsoc"
    format: str = "auto"
    dataset: str | None = None
    options: dict[str, Any] = {}
    max_message_bytes: PositiveInt = 1 << 20
    tags: list[str] = []


class RedisSourceConfig(_Model):
    """Consume raw records from a Redis stream with a consumer group."""

    type: Literal["redis"]
    url: Annotated[str, _url_or(None, "redis", "rediss")]
    stream: str
    group: str = "lightsoc"
    #: consumer name in the group (default: hostname-pid)
    consumer: str | None = None
    #: the entry field holding the record (an entry without it is stored as JSON)
    field: str = "message"
    #: entries pending this long for another consumer are claimed (it died)
    claim_idle_seconds: Annotated[float, Field(gt=0)] = 60.0
    format: str = "auto"
    dataset: str | None = None
    max_message_bytes: PositiveInt = 1 << 20
    tags: list[str] = []


SourceConfig = Annotated[
    FileSourceConfig
    | SyslogSourceConfig
    | NetflowSourceConfig
    | PcapSourceConfig
    | HttpSourceConfig
    | KafkaSourceConfig
    | RedisSourceConfig,
    Field(discriminator="type"),
]

# ------------------------------------------------------------------ sections


class GeoIpConfig(_Model):
    city_database: ConfigPath | None = None
    asn_database: ConfigPath | None = None


class DomainLookupConfig(_Model):
    """A domain-check HTTP API (see `lightsoc.enrich.domain_lookup` for each option)."""

    url: Annotated[str, Field(pattern=r"\{domain\}")]
    verdict_path: str = ""
    malicious: list[bool | int | str] | None = None
    threshold: float | None = None
    ttl: Annotated[float, Field(ge=0)] = 86400
    concurrency: PositiveInt = 4
    rate: Annotated[float, Field(gt=0)] = 10
    timeout: Annotated[float, Field(gt=0)] = 3
    max_wait: Annotated[float, Field(ge=0)] = 0.5
    breaker_failures: PositiveInt = 5
    breaker_cooldown: Annotated[float, Field(ge=0)] = 60
    name: str = "domain-check"
    confidence: Literal["Low", "Medium", "High"] = "Medium"


class EnrichConfig(_Model):
    """`networks` maps a zone name to its CIDRs (sets `source.zone`)."""

    networks: dict[str, list[Cidr]] = {}
    geoip: GeoIpConfig = Field(default_factory=GeoIpConfig)
    domain_lookup: DomainLookupConfig | None = None


class DetectConfig(_Model):
    """`rules`: `builtin` and files/directories of Sigma rules; `allow`: field -> values.

    `interval`: how often the scheduler runs the correlation rules; `lookback`:
    how far back each run looks (default twice the interval plus the longest
    rule timespan, so a late event still lands in its window).
    """

    rules: list[Annotated[str, AfterValidator(_resolve_rules)]] = ["builtin"]
    allow: dict[Annotated[str, AfterValidator(_check_ecs_field)], list[str]] = {}
    interval: Duration = timedelta(minutes=1)
    lookback: Duration | None = None
    ml: MLConfig = Field(default_factory=MLConfig)


class OutputConfig(_Model):
    """One alert output; options beyond these are checked by the output itself."""

    model_config = ConfigDict(extra="allow")

    type: str
    min_severity: Severity | None = None


class AlertsConfig(_Model):
    """`suppression`: hits of one rule on one entity within it update one alert;
    `rule_suppression`: the same per rule id; `half_life`: decay of the entity triage score.
    """

    outputs: dict[ComponentId, OutputConfig] = {}
    suppression: Duration = timedelta(hours=1)
    rule_suppression: dict[str, Duration] = {}
    half_life: Duration = timedelta(hours=24)


class StoreConfig(_Model):
    events: Annotated[str, _url_or("duckdb", "clickhouse", "chdb")] = "duckdb"
    state: Annotated[str, _url_or("sqlite", "sqlite", "postgresql", "postgres", "mysql")] = "sqlite"
    retention_days: Annotated[int, Field(ge=1)] | None = 30
    #: the embedded store keeps the search page's columns of each large segment a
    #: second time, for fast rare-value searches (about half again the disk)
    page_copies: bool = True


class WebConfig(_Model):
    listen: HostPort = "127.0.0.1:8000"
    #: `Secure` session cookies: `auto` when the request came over https;
    #: `always` behind a TLS-terminating proxy that forwards plain http
    cookie_secure: Literal["auto", "always", "never"] = "auto"
    #: failed logins a client address may make per minute before it must wait
    login_failures_per_minute: PositiveInt = 20


class PipelineConfig(_Model):
    batch_max_rows: PositiveInt = 32768
    #: a streaming source (syslog, netflow, redis) sends a partly filled batch this
    #: long after its first record: latency against the per-batch cost
    batch_max_ms: PositiveInt = 200
    queue_max_batches: PositiveInt = 1
    #: threads parsing and enriching batches side by side (stored in order). Default:
    #: 2 for a one-shot import (its file source can wait), 1 for `run`, whose network
    #: receivers must keep the CPU they need (2 lost UDP syslog at 50k msg/s here)
    processor_threads: PositiveInt | None = None


def _escape_env(data: Any) -> Any:
    """Write a literal `${` as `$${` so dumped text loads back to the same value."""
    if isinstance(data, str):
        return data.replace("${", "$${")
    if isinstance(data, dict):
        return {k: _escape_env(v) for k, v in data.items()}
    return [_escape_env(v) for v in data] if isinstance(data, list) else data


class Config(_Model):
    """The whole `lightsoc.yml`. Equality is by value, not by where it came from."""

    data_dir: ConfigPath = Field(default=Path("lightsoc-data"), validate_default=True)
    sources: dict[ComponentId, SourceConfig] = {}
    enrich: EnrichConfig = Field(default_factory=EnrichConfig)
    detect: DetectConfig = Field(default_factory=DetectConfig)
    alerts: AlertsConfig = Field(default_factory=AlertsConfig)
    store: StoreConfig = Field(default_factory=StoreConfig)
    bus: Annotated[str, _url_or("memory", "redis", "rediss", "kafka")] = "memory"
    web: WebConfig = Field(default_factory=WebConfig)
    pipeline: PipelineConfig = Field(default_factory=PipelineConfig)

    _origin: Origin = PrivateAttr(default_factory=Origin)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Config):
            return NotImplemented
        return self.model_dump() == other.model_dump()

    @property
    def source_file(self) -> str | None:
        """The config file name as given (None for defaults or text)."""
        return self._origin.file

    @property
    def source_text(self) -> str:
        """The raw YAML text this config was read from ('' for defaults)."""
        return self._origin.text

    def line_of(self, *path: str | int) -> int | None:
        """Line where `path` (e.g. `"sources", "web"`) was written, if it was."""
        return self._origin.lines.get(path, (None, None))[0]

    def where(self, *path: str | int) -> str:
        """`lightsoc.yml line 7`, for messages like `source web (...): ...`."""
        file, line = self._origin.file or "defaults", self.line_of(*path)
        return f"{file} line {line}" if line else file

    def error(self, path: Sequence[str | int], message: str) -> ConfigError:
        """A `ConfigError` at `path`, for problems found after loading."""
        line = self._origin.line(path, key=True)
        message = self._origin.redact(message, path)
        return ConfigError(message, file=self._origin.file, line=line, field=field_str(path))

    def dump(self, *, reveal_env: bool = False) -> str:
        """YAML that loads back to an equal config; `${VAR}` text kept unless revealed."""
        data = _escape_env(self.model_dump(mode="json"))
        if not reveal_env:
            self._origin.restore_env(data)
        return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)

    @staticmethod
    def example_yaml() -> str:
        """The example `lightsoc.yml` from the design document."""
        return EXAMPLE


def parse_config(
    text: str,
    *,
    file: str | Path | None = None,
    base_dir: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> Config:
    """Validate YAML text; relative paths resolve against `base_dir` if given."""
    name = None if file is None else str(file)
    data, origin = read_yaml(text, file=name, env=os.environ if env is None else env)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        message = "the top level must be a mapping (data_dir:, sources:, ...)"
        raise ConfigError(message, file=origin.file, line=origin.line(()))
    # Top-level `x-...` keys hold YAML anchors to reuse (`<<: *base`); not settings.
    data = {k: v for k, v in data.items() if not (isinstance(k, str) and k.startswith("x-"))}
    try:
        cfg = Config.model_validate(data, context={"base_dir": base_dir})
    except ValidationError as exc:
        raise validation_error(exc, origin, Config) from None
    cfg._origin = origin
    return cfg


def load_config(
    path: Path | None,
    *,
    data_dir_override: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> Config:
    """Load `path` (default: `./lightsoc.yml` if present, else built-in defaults).

    Relative paths in the file resolve against the file's directory; without a
    file, and for `data_dir_override`, against the current directory.
    """
    if path is None and DEFAULT_CONFIG_FILE.is_file():
        path = DEFAULT_CONFIG_FILE
    if path is None:
        cfg = parse_config("", base_dir=Path.cwd(), env=env)
    else:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ConfigError("config file not found", file=str(path)) from None
        except (OSError, UnicodeDecodeError) as exc:
            reason = getattr(exc, "strerror", None) or str(exc)
            raise ConfigError(f"cannot read config file: {reason}", file=str(path)) from None
        cfg = parse_config(text, file=path, base_dir=Path(path).absolute().parent, env=env)
    if data_dir_override is not None:
        cfg.data_dir = Path(data_dir_override).expanduser().absolute()
        cfg._origin.lines.pop(("data_dir",), None)
        cfg._origin.env.pop(("data_dir",), None)
    return cfg
