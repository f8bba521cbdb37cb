"""Approval gates through the installed `rnix`: a detached run waits at the gate, `approve` and
`reject` from other processes decide it, and a supervisor killed at the gate resumes with the
decisions recorded meanwhile."""

from __future__ import annotations

import json
import os
import re
import signal
import time
from pathlib import Path
from typing import Any

from tests.conftest import RunRnix
from tests.procs import wait_gone

GATED = """\
agents:
  build: {intent: build, command: [sh, -c, 'cat >/dev/null; echo build >> starts; echo built']}
  deploy:
    intent: deploy
    command: [sh, -c, 'cat >/dev/null; echo deploy >> starts; echo deployed']
    depends_on: [build]
    approval:
      approvers: [alice, bob]
      policy: all
      notify: [sh, -c, 'cat > notified.json']
  announce:
    intent: announce
    command: [sh, -c, 'cat >/dev/null; echo announce >> starts; echo announced']
    depends_on: [deploy]
"""


def states(rnix: RunRnix) -> dict[str, dict[str, Any]]:
    done = rnix("compose", "ps", "-a", "--json")
    return {row["agent"]: row for row in json.loads(done.stdout)["data"]["processes"]}


def wait_for_gate(rnix: RunRnix, agent: str = "deploy") -> dict[str, dict[str, Any]]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        rows = states(rnix)
        if rows.get(agent, {}).get("state") == "waiting_approval":
            return rows
        time.sleep(0.05)
    raise AssertionError(f"{agent} never waited for approval: {states(rnix)}")


def decide(rnix: RunRnix, verb: str, who: str, *extra: str) -> tuple[int, dict[str, Any], str]:
    done = rnix("compose", verb, "deploy", "--as", who, "--json", *extra)
    return done.returncode, json.loads(done.stdout)["data"] if done.returncode == 0 else {}, done.stderr


def starts(directory: Path) -> list[str]:
    path = directory / "starts"
    return path.read_text().split() if path.exists() else []


def test_a_detached_run_waits_until_both_approve(rnix: RunRnix, tmp_path: Path) -> None:
    (tmp_path / "compose.yaml").write_text(GATED)
    assert rnix("compose", "up", "-d").returncode == 0
    rows = wait_for_gate(rnix)
    assert rows["build"]["state"] == "completed" and rows["announce"]["state"] == "pending"
    code, first, _ = decide(rnix, "approve", "alice", "-m", "checked")
    assert code == 0 and first["outcome"] == "waiting" and first["detail"] == "waiting for bob"
    assert states(rnix)["deploy"]["state"] == "waiting_approval"  # one of two is not enough
    code, _, err = decide(rnix, "approve", "mallory")
    assert code == 1 and "mallory is not an approver" in err
    code, second, _ = decide(rnix, "approve", "bob")
    assert code == 0 and second["before"] == "waiting" and second["outcome"] == "approved"
    assert [d["by"] for d in second["decisions"]] == ["alice", "bob"]
    assert rnix("compose", "wait").returncode == 0
    assert starts(tmp_path) == ["build", "deploy", "announce"]
    notified = json.loads((tmp_path / "notified.json").read_text())
    assert notified["agent"] == "deploy" and notified["approvers"] == ["alice", "bob"]


def test_a_rejection_skips_what_depends_on_the_gate(rnix: RunRnix, tmp_path: Path) -> None:
    (tmp_path / "compose.yaml").write_text(GATED)
    assert rnix("compose", "up", "-d").returncode == 0
    wait_for_gate(rnix)
    code, data, _ = decide(rnix, "reject", "bob", "-m", "not on a Friday")
    assert code == 0 and data["outcome"] == "rejected"
    assert rnix("compose", "wait").returncode == 1
    rows = states(rnix)
    assert (
        rows["deploy"]["state"] == "rejected"
        and rows["deploy"]["error"] == "rejected by bob: not on a Friday"
    )
    assert rows["announce"]["state"] == "skipped"
    assert starts(tmp_path) == ["build"]


def test_a_gate_survives_its_supervisor_being_killed(rnix: RunRnix, tmp_path: Path) -> None:
    (tmp_path / "compose.yaml").write_text(GATED)
    started = rnix("compose", "up", "-d")
    found = re.search(r"supervisor PID (\d+)", started.stderr)
    assert started.returncode == 0 and found is not None, started.stderr
    wait_for_gate(rnix)
    code, _, _ = decide(rnix, "approve", "alice")
    assert code == 0
    supervisor = int(found.group(1))
    os.kill(supervisor, signal.SIGKILL)
    assert wait_gone([supervisor], 10) == []
    # With no supervisor, the decision is recorded in the run and applies when it resumes.
    code, data, _err = decide(rnix, "approve", "bob")
    assert code == 0 and data["applied"] == "on resume" and data["outcome"] == "approved", _err
    done = rnix("compose", "up", "--json")
    assert done.returncode == 0, done.stderr
    agents = {a["name"]: a for a in json.loads(done.stdout)["data"]["agents"]}
    assert agents["build"]["reused_from"] is not None
    assert [d["by"] for d in agents["deploy"]["approvals"]] == ["alice", "bob"]
    assert starts(tmp_path) == ["build", "deploy", "announce"]  # build ran once


def test_top_approves_the_selected_agent(rnix: RunRnix, tmp_path: Path, rnix_home: Path) -> None:
    import asyncio

    from rnix.tui.collect import Collector
    from rnix.tui.screens import ConfirmScreen
    from rnix.tui.table import ProcTable
    from rnix.tui.top import TopApp

    (tmp_path / "compose.yaml").write_text(GATED.replace("approvers: [alice, bob]\n      policy: all\n", ""))
    assert rnix("compose", "up", "-d").returncode == 0
    rows = wait_for_gate(rnix)
    run_id = rows["deploy"]["run_id"]

    async def scenario() -> None:
        app = TopApp(Collector(rnix_home), interval=60, environ={**os.environ, "USER": "carol"})
        async with app.run_test(size=(200, 40)) as pilot:
            app.refresh_now()
            assert app.query_one(ProcTable).select(f"agent:{run_id}:deploy")
            await pilot.press("A")
            assert isinstance(app.screen, ConfirmScreen)
            await pilot.press("y")
            await pilot.pause()

    asyncio.run(scenario())
    assert rnix("compose", "wait").returncode == 0
    decided = states(rnix)
    assert decided["deploy"]["state"] == "completed" and decided["announce"]["state"] == "completed"
