"""Sigma log sources -> which events a rule sees, and how its field names map to ECS.

A Sigma rule names a log source (`category`, `product`, `service`). Each
supported one here has:

- a **row filter**: a cheap polars expression over `event.category` /
  `event.dataset` / `process.name` that picks the events of that source, so a
  rule is only evaluated where it means something;
- a **field mapping** from Sigma's taxonomy to the ECS names in `schema.py`,
  applied to the rule with a pySigma processing pipeline
  (`FieldMappingTransformation`), the same one the SQLite benchmark uses.

| Sigma log source                    | events (filter)                                        |
|-------------------------------------|--------------------------------------------------------|
| category webserver                  | event.category == "web" (nginx/apache access+error, JSON, zeek.http) |
| category proxy                      | event.dataset zeek.http, or starting proxy / squid (a forward proxy's access log: set `dataset: proxy` on its source) |
| category dns                        | event.dataset in dns, zeek.dns, suricata.dns           |
| category firewall                   | event.dataset in iptables, netflow, argus, zeek.conn, suricata.flow/alert/drop |
| product zeek, service conn/dns/http | event.dataset == zeek.<service>                        |
| product linux (no service)          | Linux system logs: syslog, sshd, sudo, su, cron, postfix, dovecot, ... |
| product linux, service sshd / sudo / auth | event.dataset sshd / sudo / sshd+sudo+su (or process.name) |
| product linux, service syslog       | the Linux system logs as above                         |
| product linux, service cron/vsftpd/clamav/guacamole | process.name of that daemon            |
| service apache / nginx              | event.dataset starting apache. / nginx.                |
| product lightsoc (simple DB rules)  | every event; fields are ECS names already              |

Anything else (Windows, process_creation, auditd, cisco, ...) is not covered:
lightsoc has no such events, so those rules fail loading instead of never
matching silently.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import polars as pl
from sigma.processing.pipeline import ProcessingItem, ProcessingPipeline
from sigma.processing.transformations import FieldMappingTransformation
from sigma.rule import SigmaLogSource

_WEB = pl.col("event.category") == "web"
_PROXY_ROWS = (
    (pl.col("event.dataset") == "zeek.http")
    | pl.col("event.dataset").str.starts_with("proxy")
    | pl.col("event.dataset").str.starts_with("squid")
)

_WEBSERVER = {
    "c-ip": "source.ip",
    "s-ip": "destination.ip",
    "s-port": "destination.port",
    "cs-method": "http.request.method",
    "cs-uri-stem": "url.path",
    # The SigmaHQ webserver rules look for payloads with cs-uri-query that often
    # sit in the path too (traversal, probes); nginx/apache log the whole request
    # target, so the query rules search all of it.
    "cs-uri-query": "url.original",
    "cs-uri": "url.original",
    "sc-status": "http.response.status_code",
    "cs-user-agent": "user_agent.original",
    "cs-referer": "http.request.referrer",
    "cs-referrer": "http.request.referrer",
    "cs-host": "url.domain",
    "sc-bytes": "http.response.body.bytes",
    "cs-username": "user.name",
    "cs-version": "http.version",
    "date": "@timestamp",
}

_PROXY = {
    "c-ip": "source.ip",
    "src_ip": "source.ip",
    "c-uri": "url.original",
    "cs-uri": "url.original",
    "c-uri-query": "url.query",
    "c-uri-stem": "url.path",
    "cs-uri-stem": "url.path",
    "cs-uri-query": "url.query",
    "c-useragent": "user_agent.original",
    "cs-host": "url.domain",
    "r-dns": "url.domain",
    "cs-method": "http.request.method",
    "cs-referrer": "http.request.referrer",
    "cs-referer": "http.request.referrer",
    "sc-status": "http.response.status_code",
    "sc-bytes": "http.response.body.bytes",
    "r-ip": "destination.ip",
    "dst_ip": "destination.ip",
    "s-ip": "destination.ip",
    "cs-username": "user.name",
    "cs-version": "http.version",
}

_ZEEK_IDS = {
    "id.orig_h": "source.ip",
    "id.orig_p": "source.port",
    "id.resp_h": "destination.ip",
    "id.resp_p": "destination.port",
    "src_ip": "source.ip",
    "dst_ip": "destination.ip",
    "src_port": "source.port",
    "dst_port": "destination.port",
}

_DNS = {
    "query": "dns.question.name",
    "QueryName": "dns.question.name",
    "record_type": "dns.question.type",
    "answer": "dns.answers",
    "response_code": "dns.response_code",
    "src_ip": "source.ip",
    "dst_ip": "destination.ip",
    "parent_domain": "dns.question.registered_domain",
}

_FIREWALL = {
    "src_ip": "source.ip",
    "dst_ip": "destination.ip",
    "src_port": "source.port",
    "dst_port": "destination.port",
    "action": "event.action",
    "protocol": "network.transport",
    "username": "user.name",
}

_ZEEK_CONN = {
    **_ZEEK_IDS,
    "proto": "network.transport",
    "service": "network.protocol",
    "orig_bytes": "source.bytes",
    "resp_bytes": "destination.bytes",
    "orig_pkts": "source.packets",
    "resp_pkts": "destination.packets",
}

_ZEEK_DNS = {
    **_ZEEK_IDS,
    "query": "dns.question.name",
    "qtype_name": "dns.question.type",
    "rcode_name": "dns.response_code",
    "answers": "dns.answers",
    "trans_id": "dns.id",
    "proto": "network.transport",
}

_ZEEK_HTTP = {
    **_ZEEK_IDS,
    **{k: v for k, v in _PROXY.items() if k.startswith(("c-", "cs-", "sc-"))},
    "host": "url.domain",
    "uri": "url.original",
    "method": "http.request.method",
    "user_agent": "user_agent.original",
    "status_code": "http.response.status_code",
    "referrer": "http.request.referrer",
    "version": "http.version",
    "resp_body_len": "http.response.body.bytes",
    "response_body_len": "http.response.body.bytes",
    "username": "user.name",
}

_LINUX = {
    "USER": "user.target.name",  # sudo's USER= is whom the command runs as
    "user": "user.name",
    "pid": "process.pid",
    "hostname": "host.name",
}

# Datasets of Linux system logs (what `product: linux` means for lightsoc).
LINUX_DATASETS = [
    "syslog",
    "sshd",
    "sudo",
    "su",
    "cron",
    "postfix",
    "dovecot",
    "iptables",
    "openvpn",
    "dhcp",
    "auth",
]


def _dataset_in(*names: str) -> pl.Expr:
    return pl.col("event.dataset").is_in(list(names))


def _process(*names: str) -> pl.Expr:
    return pl.col("process.name").str.to_lowercase().is_in(list(names)) | _dataset_in(*names)


@dataclass(frozen=True)
class LogSourceSpec:
    """A supported Sigma log source: its row filter and its field mapping."""

    name: str
    category: str | None
    product: str | None
    service: str | None
    filter: pl.Expr | None
    mapping: dict[str, str] = field(default_factory=dict)

    def pipeline(self) -> ProcessingPipeline:
        """The pySigma processing pipeline that renames this source's fields to ECS."""
        return ProcessingPipeline(
            name=f"lightsoc ECS mapping ({self.name})",
            priority=20,
            items=[
                ProcessingItem(
                    identifier=f"lightsoc_ecs_{self.name}",
                    transformation=FieldMappingTransformation(dict(self.mapping)),
                )
            ],
        )


_LINUX_ROWS = _dataset_in(*LINUX_DATASETS)

SPECS: list[LogSourceSpec] = [
    LogSourceSpec("webserver", "webserver", None, None, _WEB, _WEBSERVER),
    # Proxy rules describe clients going out (C2 user agents, downloads); on a web
    # server's inbound log they flag every old browser, so only proxy datasets.
    LogSourceSpec("proxy", "proxy", None, None, _PROXY_ROWS, _PROXY),
    LogSourceSpec("dns", "dns", None, None, _dataset_in("dns", "zeek.dns", "suricata.dns"), _DNS),
    LogSourceSpec(
        "firewall",
        "firewall",
        None,
        None,
        _dataset_in(
            "iptables",
            "netflow",
            "argus",
            "zeek.conn",
            "suricata.flow",
            "suricata.alert",
            "suricata.drop",
        ),
        _FIREWALL,
    ),
    LogSourceSpec("zeek_conn", None, "zeek", "conn", _dataset_in("zeek.conn"), _ZEEK_CONN),
    LogSourceSpec("zeek_dns", None, "zeek", "dns", _dataset_in("zeek.dns"), _ZEEK_DNS),
    LogSourceSpec("zeek_http", None, "zeek", "http", _dataset_in("zeek.http"), _ZEEK_HTTP),
    LogSourceSpec("linux", None, "linux", None, _LINUX_ROWS, _LINUX),
    LogSourceSpec("linux_syslog", None, "linux", "syslog", _LINUX_ROWS, _LINUX),
    LogSourceSpec("linux_sshd", None, "linux", "sshd", _process("sshd"), _LINUX),
    LogSourceSpec("linux_sudo", None, "linux", "sudo", _process("sudo"), _LINUX),
    LogSourceSpec("linux_auth", None, "linux", "auth", _process("sshd", "sudo", "su"), _LINUX),
    LogSourceSpec("linux_cron", None, "linux", "cron", _process("cron", "crond"), _LINUX),
    LogSourceSpec("linux_vsftpd", None, "linux", "vsftpd", _process("vsftpd"), _LINUX),
    LogSourceSpec(
        "linux_clamav", None, "linux", "clamav", _process("clamd", "freshclam", "clamav"), _LINUX
    ),
    LogSourceSpec("linux_guacamole", None, "linux", "guacamole", _process("guacd"), _LINUX),
    LogSourceSpec(
        "apache", None, None, "apache", pl.col("event.dataset").str.starts_with("apache."), {}
    ),
    LogSourceSpec(
        "nginx", None, None, "nginx", pl.col("event.dataset").str.starts_with("nginx."), {}
    ),
    LogSourceSpec("lightsoc", None, "lightsoc", None, None, {}),
]

_BY_KEY = {(s.category, s.product, s.service): s for s in SPECS}


def resolve(logsource: SigmaLogSource) -> LogSourceSpec | None:
    """The spec for a rule's log source (exact category/product/service), or None."""
    key = (logsource.category, logsource.product, logsource.service)
    spec = _BY_KEY.get(key)
    if spec is None and logsource.category in ("webserver", "proxy", "dns", "firewall"):
        # `product: apache`, `product: zeek` etc. under a generic category: same events
        spec = _BY_KEY.get((logsource.category, None, None))
    return spec


def describe(logsource: SigmaLogSource) -> str:
    parts = [
        f"{k}: {v}"
        for k, v in (
            ("category", logsource.category),
            ("product", logsource.product),
            ("service", logsource.service),
        )
        if v
    ]
    return ", ".join(parts) or "(none)"
