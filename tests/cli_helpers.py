"""Helpers shared by the CLI test modules."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from lightsoc.cli import main


def lines_with(path: Path, text: str) -> int:
    return sum(1 for line in path.read_text().splitlines() if text in line)


_SSHD_PID = re.compile(r"sshd\[(\d+)\]:")
_IPV4 = re.compile(r"\b\d{1,3}(?:\.\d{1,3}){3}\b")
#: sshd messages that name no client although they belong to one connection
_ADDRESSLESS = re.compile(
    r"fatal: (?:Read from socket|Write) failed|fatal: Timeout before authentication"
    r"|error: kex_exchange_identification|fatal: Unable to negotiate a|fatal: no matching"
    r"|Disconnecting: Too many authentication failures|session (?:opened|closed) for user"
)


def sshd_events_of(path: Path, ip: str) -> int:
    """Events with `source.ip` = `ip` from an sshd log: the lines naming it, plus the
    address-less messages of an sshd process that named it before ("fatal: Write failed
    [preauth]"), which the parser attributes to that client as an analyst would."""
    last: dict[str, str] = {}
    n = 0
    for line in path.read_text().splitlines():
        m = _SSHD_PID.search(line)
        addrs = _IPV4.findall(line)
        if m and addrs:
            last[m.group(1)] = addrs[-1]
        stitched = m and not addrs and _ADDRESSLESS.search(line) and last.get(m.group(1)) == ip
        n += ip in line or bool(stitched)
    return n


def one_line_error(res, pattern: str) -> str:  # noqa: ANN001
    """stderr is exactly one line `lightsoc: ...` matching `pattern`."""
    return one_line(res.stderr, pattern)


def one_line(stderr: str, pattern: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert re.fullmatch(rf"lightsoc: {pattern}", lines[0]), lines[0]
    return lines[0]


def in_process(capsys: pytest.CaptureFixture[str], *argv: str | Path) -> tuple[int, str, str]:
    """`lightsoc.cli.main` in this process, for the many cheap error cases: (code, out, err).

    The real console script is `sys.exit(main())`; the subprocess tests check that end.
    """
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exc:  # argparse usage errors
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err
