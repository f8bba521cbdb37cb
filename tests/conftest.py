"""Shared fixtures: every test gets its own RNIX_HOME and a clean project-name environment."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

RNIX = str(Path(sys.executable).parent / "rnix")


@pytest.fixture(autouse=True)
def rnix_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "rnix-home"
    monkeypatch.setenv("RNIX_HOME", str(home))
    # The user's own agent definitions (~/.config/rnix/agents) must not leak into tests.
    monkeypatch.setenv("RNIX_CONFIG_HOME", str(tmp_path / "rnix-config"))
    for variable in ("RNIX_PROJECT_NAME", "COMPOSE_PROJECT_NAME", "RNIX_COMPOSE_FILE", "COMPOSE_FILE"):
        monkeypatch.delenv(variable, raising=False)
    return home


RunRnix = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def rnix(tmp_path: Path) -> RunRnix:
    """Run the installed `rnix` console script in `cwd` (default: tmp_path)."""

    def run(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None, timeout: float = 60):
        full_env = dict(os.environ)
        full_env.update(env or {})
        return subprocess.run(
            [RNIX, *args],
            cwd=cwd or tmp_path,
            env=full_env,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )

    return run
