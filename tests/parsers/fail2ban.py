"""Reading fail2ban's annotated filter test logs (`# failJSON: {...}` before a line)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"


def fail2ban_cases(name: str) -> list[tuple[dict, str]]:
    path = DATA / "auth" / "fail2ban" / name
    if not path.exists():
        pytest.fail(f"missing test data (expected ../shared/data beside the checkout) {path}")
    cases, note = [], None
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith("#") and "failJSON:" in line:
            note = json.loads(line.split(":", 1)[1])
        elif line.startswith("#") or not line.strip():
            continue
        elif note is not None:
            cases.append((note, line))
            note = None
    return cases
