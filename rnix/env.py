"""The injected environment of a command: streams, tty-ness, variables, working directory, RNIX_HOME.

Commands never reach for `sys.stdout`, `os.environ` or `os.getcwd()` directly; tests build an `Env`
of their own.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO


@dataclass
class Env:
    stdout: TextIO
    stderr: TextIO
    environ: Mapping[str, str]
    cwd: Path
    stdout_isatty: bool = False
    stdin_piped: bool = False  # stdin is a pipe or file (not a terminal, not closed)
    stdin_isatty: bool = False  # full-screen views (`top`) read keys from it
    debug: bool = False
    json_errors: bool = field(default=False)

    @classmethod
    def from_os(cls) -> Env:
        return cls(
            stdout=sys.stdout,
            stderr=sys.stderr,
            environ=dict(os.environ),
            cwd=Path.cwd(),
            stdout_isatty=sys.stdout.isatty(),
            stdin_piped=_stdin_piped(),
            stdin_isatty=sys.stdin is not None and sys.stdin.isatty(),
        )

    @property
    def home(self) -> Path:
        """RNIX_HOME, else `$XDG_STATE_HOME/rnix`, else `~/.local/state/rnix`."""
        if self.environ.get("RNIX_HOME"):
            return Path(self.environ["RNIX_HOME"]).expanduser()
        state = self.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
        return Path(state) / "rnix"

    @property
    def config_home(self) -> Path:
        """RNIX_CONFIG_HOME, else `$XDG_CONFIG_HOME/rnix`, else `~/.config/rnix` (user agent definitions
        live in its `agents/`)."""
        if self.environ.get("RNIX_CONFIG_HOME"):
            return Path(self.environ["RNIX_CONFIG_HOME"]).expanduser()
        config = self.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
        return Path(config) / "rnix"

    def warn(self, message: str) -> None:
        self.stderr.write(f"rnix: warning: {message}\n")


def _stdin_piped() -> bool:
    """True when stdin is a pipe or a regular file with data to read (not a TTY or /dev/null)."""
    import stat

    try:
        mode = os.fstat(0).st_mode
    except OSError:
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISREG(mode) or stat.S_ISSOCK(mode)


class SystemClock:
    """The real clock; tests inject their own with the same two methods."""

    def time(self) -> float:
        import time

        return time.time()

    def monotonic(self) -> float:
        import time

        return time.monotonic()
