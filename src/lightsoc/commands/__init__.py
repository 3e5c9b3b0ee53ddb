"""Sub-commands that live in their own modules (`lightsoc rules`, `intel`, `alerts`, ...).

A module here is one command: it defines ``NAME``, ``HELP``,
``add_arguments(parser, common)`` and ``run(args) -> int``, and raises
`lightsoc.cli.UsageError` (exit 2) or a runtime error (exit 1) like the
built-in commands. `cli.py` finds them by scanning this package, so adding a
command touches no shared file. Heavy imports belong inside ``run``: every
CLI start imports these modules.
"""

from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType


def load() -> list[ModuleType]:
    """The command modules of this package, sorted by command name."""
    mods = [
        importlib.import_module(f"{__name__}.{m.name}")
        for m in pkgutil.iter_modules(__path__)
        if not m.name.startswith("_")
    ]
    return sorted(mods, key=lambda m: m.NAME)
