"""Split roles refuse configs they cannot run, with exit 2 naming file, line and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli_helpers import in_process, one_line


@pytest.mark.parametrize("role", ["collect", "process", "web"])
def test_a_split_role_needs_a_shared_bus(
    role: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = tmp_path / "lightsoc.yml"
    cfg.write_text(f"data_dir: {tmp_path / 'data'}\nbus: memory\n")
    code, _, err = in_process(capsys, "run", "--role", role, "--config", cfg)
    assert code == 2
    line = one_line(err, r".*needs a shared bus.*")
    assert f"{cfg}:2: bus: --role {role} needs a shared bus" in line
