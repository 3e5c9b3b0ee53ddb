"""Alert outputs (WeCom, DingTalk, Feishu, Slack, webhook, e-mail, syslog/CEF) and their dispatcher.

Importing this package registers the built-in outputs under the "outputs" kind.
"""

from __future__ import annotations

import importlib

from lightsoc.alerts.outputs.base import Output, OutputError
from lightsoc.alerts.outputs.dispatcher import Dispatcher, build_output, build_outputs

BUILTIN = ("wecom", "dingtalk", "feishu", "slack", "webhook", "email", "syslog_cef")
for _name in BUILTIN:
    try:
        importlib.import_module(f"lightsoc.alerts.outputs.{_name}")
    except ModuleNotFoundError as _e:  # a module not written yet must not break the others
        if _e.name != f"lightsoc.alerts.outputs.{_name}":
            raise

__all__ = ["Dispatcher", "Output", "OutputError", "build_output", "build_outputs"]
