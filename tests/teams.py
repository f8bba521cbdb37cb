"""Detached runs of real fixture agents for tests (`rnix compose up -d`), found by RNIX_TEST_MARKER.

`Teams(rnix, tmp_path, marker).start(compose_text, running=(...))` starts a project and waits until
the named agents run; `stop()` brings every project down and fails if a marked process is left.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.conftest import RunRnix
from tests.procs import wait_marked_gone

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "agents"


def agent(script: str, *args: str) -> str:
    """A compose `command:` (JSON list) running a fixture agent with this interpreter."""
    return json.dumps([sys.executable, str(FIXTURES / script), *args])


def ps(rnix: RunRnix, *args: str) -> list[dict[str, Any]]:
    result = rnix("ps", "--json", *args)
    assert result.returncode == 0, result.stderr
    processes: list[dict[str, Any]] = json.loads(result.stdout)["data"]["processes"]
    return processes


def wait_for(predicate: Callable[[], Any], timeout: float = 20, what: str = "a condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


class Teams:
    def __init__(self, rnix: RunRnix, tmp_path: Path, marker: str) -> None:
        self.rnix, self.tmp_path, self.marker = rnix, tmp_path, marker
        self.projects: list[str] = []

    def start(self, text: str, *, project: str = "team", running: tuple[str, ...] = ()) -> dict[str, Any]:
        """Start `text` (the compose file's `agents:` part) as `project`; returns `ps -a` rows by name."""
        folder = self.tmp_path / project
        folder.mkdir(exist_ok=True)
        (folder / "compose.yaml").write_text(f"name: {project}\n{text}")
        up = self.rnix("compose", "up", "-d", cwd=folder, env={"RNIX_TEST_MARKER": self.marker})
        assert up.returncode == 0, up.stderr
        self.projects.append(project)

        def ready() -> dict[str, Any] | None:
            rows = {p["agent"]: p for p in ps(self.rnix, "-a", "-p", project)}
            return rows if all(rows.get(n, {}).get("state") == "running" for n in running) else None

        rows: dict[str, Any] = wait_for(ready, what=f"{running} to run")
        return rows

    def stop(self) -> None:
        for project in self.projects:
            self.rnix("compose", "-p", project, "down", "-t", "1")
        assert wait_marked_gone(self.marker, 10) == [], "processes outlived the test"
