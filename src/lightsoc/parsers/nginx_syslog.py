"""nginx / openresty logs sent over syslog (a syslog app parser).

nginx ships both logs with ``access_log syslog:server=HOST:PORT[,tag=T]`` and
``error_log syslog:server=...``; the tag (default ``nginx``) becomes the
syslog app name and the message is the log line exactly as nginx formats it:

- ``combined``/``common`` access lines -> the same fields as the
  ``nginx_combined`` file parser;
- JSON payloads (a ``log_format ... escape=json`` starting with ``{``) ->
  the ``nginx_json`` parser, with its default field map (the parser's
  ``field_map`` option cannot be set per app, so name the JSON keys as
  nginx's variables: ``remote_addr``, ``request``, ``status``, ...);
- error-log lines -> the ``nginx_error`` parser (basic-auth failures become
  authentication events).

Claimed app names: ``nginx``, ``openresty`` and the tags people commonly give
a second access log (``nginx_access``, ``nginx_json``, ``nginxjson``,
``nginx_error``). A message none of them recognises keeps its syslog fields.
"""

from __future__ import annotations

import polars as pl

from lightsoc.parsers import AutoParser, get_parser
from lightsoc.parsers._apps import app_parser
from lightsoc.parsers.base import OK

_FORMATS = ("nginx_json", "nginx_combined", "nginx_common", "nginx_error")
_parser: AutoParser | None = None


def _nginx_formats() -> AutoParser:
    """`auto` detection restricted to nginx's formats (built once: parsers keep no state)."""
    global _parser
    if _parser is None:
        auto = AutoParser()
        auto.candidates = [get_parser(name) for name in _FORMATS]
        _parser = auto
    return _parser


@app_parser("nginx", "openresty", "nginx_access", "nginx_json", "nginxjson", "nginx_error")
def parse_nginx(frame: pl.DataFrame) -> pl.DataFrame:
    """Access (combined, common, JSON) and error lines -> web / authentication fields."""
    parsed = _nginx_formats().parse(frame["message"])
    # `_ok` must not reach the syslog frame: an unrecognised line is still good syslog.
    drop = [c for c in (OK, "event.original", "message") if c in parsed.columns]
    return parsed.drop(drop)
