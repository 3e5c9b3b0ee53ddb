"""`lightsoc run --role ...` as OS processes, for the split-deployment tests."""

from __future__ import annotations

import signal
import subprocess
import threading
from pathlib import Path

from tests.helpers import LIGHTSOC, env, wait_until


class RoleProcess:
    """One `lightsoc run --role ROLE --config CONFIG` process; output read by a thread."""

    def __init__(self, role: str, config: Path, *extra: str | Path) -> None:
        self.role = role
        self.args = [str(LIGHTSOC), "run", "--role", role, "--config", str(config)]
        self.args += [str(a) for a in extra]
        self.lines: list[str] = []
        self.proc: subprocess.Popen[str] | None = None

    def start(self) -> RoleProcess:
        self.lines = []
        self.proc = subprocess.Popen(
            self.args, env=env(), text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        threading.Thread(target=self._read, args=(self.proc,), daemon=True).start()
        return self

    def _read(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_for(self, text: str, timeout: float = 60.0) -> None:
        """Until a line containing `text` is printed (fails if the process exits first)."""

        def seen() -> bool:
            if any(text in line for line in self.lines):
                return True
            assert self.proc is not None and self.proc.poll() is None, (
                f"{self.role} exited {self.proc.returncode if self.proc else '?'} before "
                f"printing {text!r}:\n{self.output()}"
            )
            return False

        wait_until(seen, timeout, f"{self.role} to print {text!r}")

    def stop(self, timeout: float = 60.0) -> int:
        """SIGTERM, then the exit code."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(30)

    def ensure_stopped(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)
