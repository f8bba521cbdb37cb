"""Early spawn (rnix.supervisor.early): a built-in agent is forked while its dependency runs, waits
for its task, and is released when the dependency completes; through the installed `rnix`.

The held process is found as a child of the fork server that `ps` does not list as running: its
instance stays pending until it is released.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import psutil

from tests.conftest import RNIX, RunRnix
from tests.procs import alive, marked_pids, wait_gone


def leaders(supervisor: int) -> list[int]:
    """The live agent processes: children of the supervisor's fork server (any of them may exit
    while we look: it then does not count)."""
    found = []
    try:
        children = psutil.Process(supervisor).children()
    except psutil.Error:
        return []
    for child in children:
        try:
            if "rnix.supervisor.forkserver" not in " ".join(child.cmdline()):
                continue
            agents = child.children()
        except psutil.Error:
            continue
        for agent in agents:
            try:
                if agent.status() != psutil.STATUS_ZOMBIE:
                    found.append(agent.pid)
            except psutil.Error:
                continue
    return found


def start_up(tmp_path: Path, compose: str, marker: str) -> subprocess.Popen[str]:
    """`rnix compose up --json` on `compose`, in the background, its processes marked."""
    (tmp_path / "compose.yaml").write_text(compose)
    return subprocess.Popen(
        [RNIX, "compose", "up", "--json"],
        cwd=tmp_path,
        env={**os.environ, "RNIX_TEST_MARKER": marker},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def watch(tmp_path: Path, compose: str, marker: str) -> tuple[subprocess.Popen[str], set[int]]:
    """Start `up --json`, and collect the agent processes seen while the first agent runs."""
    up = start_up(tmp_path, compose, marker)
    seen: set[int] = set()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and len(seen) < 2 and up.poll() is None:
        seen.update(leaders(up.pid))
        time.sleep(0.02)
    return up, seen


def finish(up: subprocess.Popen[str]) -> tuple[int, dict[str, Any]]:
    stdout, stderr = up.communicate(timeout=60)
    assert stdout, stderr
    return up.returncode, {a["name"]: a for a in json.loads(stdout)["data"]["agents"]}


def test_a_dependent_waits_forked_and_its_clock_starts_at_release(rnix: RunRnix, tmp_path: Path) -> None:
    marker = uuid.uuid4().hex
    up, seen = watch(
        tmp_path,
        "agents:\n"
        "  first: {intent: find the facts, model: 'mock?latency=1500ms'}\n"
        # Held for 1.5 s with a 1 s timeout: it completes, because its clock starts at release.
        "  second: {intent: write them up, model: mock, depends_on: [first], timeout: 1s}\n",
        marker,
    )
    try:
        assert len(seen) == 2, seen  # both processes existed while `first` ran
        listed = json.loads(rnix("compose", "ps", "-a", "--json").stdout)["data"]["processes"]
        assert {p["agent"]: p["state"] for p in listed}.get("second", "pending") == "pending"
        code, agents = finish(up)
    finally:
        if up.poll() is None:
            up.kill()
    assert code == 0 and agents["second"]["status"] == "completed", agents
    assert agents["second"]["pid"] in seen  # the held process is the one that ran
    assert agents["second"]["cluster_node"] is None  # the local spawner's processes run here
    calls = json.loads(rnix("log", str(agents["second"]["pid"]), "--llm", "--json").stdout)["data"]["calls"]
    asked = json.dumps(calls[0]["request"])
    assert "find the facts" in asked  # the upstream result was in its task
    # The task file, written behind the release, records the task the held agent got.
    home = Path(os.environ["RNIX_HOME"])
    (task_file,) = home.glob("runs/*/second.task.json")
    recorded = json.loads(task_file.read_text())
    assert recorded["name"] == "second" and "find the facts" in json.dumps(recorded["messages"])
    assert wait_gone(marked_pids(marker), 5) == []


def test_a_held_agent_whose_dependency_fails_is_skipped_and_stopped(rnix: RunRnix, tmp_path: Path) -> None:
    marker = uuid.uuid4().hex
    up, seen = watch(
        tmp_path,
        "agents:\n"
        "  build: {intent: build, command: [sh, -c, 'sleep 1.5; exit 3']}\n"
        "  report: {intent: report, model: mock, depends_on: [build]}\n",
        marker,
    )
    try:
        assert len(seen) == 2, seen
        code, agents = finish(up)
    finally:
        if up.poll() is None:
            up.kill()
    assert code == 1
    assert agents["report"]["status"] == "skipped" and agents["report"]["pid"] is None
    assert "build" in (agents["report"].get("reason") or agents["report"].get("error") or ""), agents
    assert not [pid for pid in seen if alive(pid)]
    assert wait_gone(marked_pids(marker), 5) == []


def most_alive(up: subprocess.Popen[str]) -> tuple[int, str, str]:
    """Watch the run to its end: the most agent processes alive at once, and its stdout and stderr."""
    most = 0
    try:
        while up.poll() is None:
            most = max(most, len(leaders(up.pid)))
            time.sleep(0.01)
        stdout, stderr = up.communicate(timeout=60)
    finally:
        if up.poll() is None:
            up.kill()
    return most, stdout, stderr
