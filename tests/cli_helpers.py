"""Helpers shared by the CLI test modules."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from lightsoc.cli import main


def lines_with(path: Path, text: str) -> int:
    return sum(1 for line in path.read_text().splitlines() if text in line)


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
