"""Getting results and statuses out of a run: `compose result`, `compose wait`, `compose logs -f`.

Through the installed `rnix` on real fixture agents (tests/fixtures/agents), detached with `up -d`
where a script would wait for the run.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.conftest import RunRnix
from tests.procs import wait_marked_gone
from tests.teams import Teams, agent

TEAM = f"""
agents:
  research: {{intent: research, command: {agent("succeed.py", "the facts")}}}
  draft: {{intent: draft, command: {agent("succeed.py", "the draft")}, depends_on: [research]}}
  review: {{intent: review, command: {agent("succeed.py", "the review")}, depends_on: [research]}}
  boom: {{intent: crash, command: {agent("crash.py", "kaboom")}}}
"""


@pytest.fixture
def teams(rnix: RunRnix, tmp_path: Path) -> Iterator[Teams]:
    started = Teams(rnix, tmp_path, uuid.uuid4().hex)
    yield started
    started.stop()


def up(rnix: RunRnix, folder: Path, text: str, *args: str) -> int:
    folder.mkdir(exist_ok=True)
    (folder / "compose.yaml").write_text(f"name: {folder.name}\n{text}")
    return rnix("compose", "up", *args, cwd=folder).returncode


def test_result_prints_the_sinks_with_headers_and_exits_1_when_one_failed(
    rnix: RunRnix, tmp_path: Path
) -> None:
    folder = tmp_path / "team"
    assert up(rnix, folder, TEAM) == 1
    result = rnix("compose", "result", cwd=folder)
    assert result.returncode == 1
    # the sinks (nothing depends on them) in the run's order; research is not one
    assert result.stdout == "==> boom <==\n\n==> draft <==\nthe draft\n\n==> review <==\nthe review\n"
    assert "boom did not complete (failed)" in result.stderr and "kaboom" in result.stderr


def test_result_of_one_agent_is_printed_as_is(rnix: RunRnix, tmp_path: Path) -> None:
    folder = tmp_path / "team"
    up(rnix, folder, TEAM)
    result = rnix("compose", "result", "draft", cwd=folder)
    assert (result.returncode, result.stdout, result.stderr) == (0, "the draft\n", "")
    both = rnix("compose", "-p", "team", "result", "research", "draft")
    assert both.returncode == 0
    assert both.stdout == "==> research <==\nthe facts\n\n==> draft <==\nthe draft\n"


def test_result_json_and_unknown_agent(rnix: RunRnix, tmp_path: Path) -> None:
    folder = tmp_path / "team"
    up(rnix, folder, TEAM)
    result = rnix("compose", "result", "--json", cwd=folder)
    doc = json.loads(result.stdout)
    assert result.returncode == 1 and doc["ok"] is False
    data = doc["data"]
    assert data["project"] == "team" and data["run_id"]
    assert [(r["agent"], r["status"], r["result"]) for r in data["results"]] == [
        ("boom", "failed", ""),
        ("draft", "completed", "the draft\n"),
        ("review", "completed", "the review\n"),
    ]
    unknown = rnix("compose", "result", "draftt", cwd=folder)
    assert unknown.returncode == 2 and unknown.stdout == ""
    assert "no agent 'draftt' in project team (did you mean 'draft'?)" in unknown.stderr
    nothing = rnix("compose", "-p", "never-ran", "result")
    assert nothing.returncode == 2 and "has no runs yet" in nothing.stderr


def test_result_of_an_agent_reused_from_an_earlier_run(rnix: RunRnix, tmp_path: Path) -> None:
    folder = tmp_path / "team"
    assert up(rnix, folder, TEAM) == 1
    assert up(rnix, folder, TEAM) == 1  # resumes: research, draft and review are reused
    ps = json.loads(rnix("compose", "ps", "-a", "--json", cwd=folder).stdout)["data"]["processes"]
    assert {p["agent"]: bool(p["reused_from"]) for p in ps}["draft"] is True
    result = rnix("compose", "result", "draft", cwd=folder)
    assert (result.returncode, result.stdout) == (0, "the draft\n")


def test_wait_and_logs_follow_exit_with_a_failed_detached_runs_status(
    rnix: RunRnix, teams: Teams, tmp_path: Path
) -> None:
    teams.start(
        f"""
agents:
  slow: {{intent: sleeps, command: {agent("sleeper.py", "2")}}}
  boom: {{intent: crash, command: {agent("crash.py", "kaboom")}, depends_on: [slow]}}
""",
        running=("slow",),
    )
    folder = tmp_path / "team"
    started = time.monotonic()
    with ThreadPoolExecutor(2) as pool:
        waiting = pool.submit(rnix, "compose", "wait", cwd=folder)
        following = pool.submit(rnix, "compose", "logs", "-f", cwd=folder)
        waited, followed = waiting.result(), following.result()
    assert time.monotonic() - started > 1  # both waited for the run
    assert waited.returncode == 1, waited.stderr
    assert waited.stdout == "" and "failed (exit status 1)" in waited.stderr
    assert followed.returncode == 1, followed.stderr
    assert "slow | woke" in followed.stdout and "boom | kaboom" in followed.stdout
    # once the run has ended, both report its status at once
    again = rnix("compose", "wait", "--json", cwd=folder)
    doc = json.loads(again.stdout)
    assert again.returncode == 1 and doc["ok"] is False
    assert doc["data"]["status"] == "failed" and doc["data"]["exit_code"] == 1
    assert {a["agent"]: a["status"] for a in doc["data"]["agents"]} == {"slow": "completed", "boom": "failed"}
    assert rnix("compose", "logs", "-f", cwd=folder).returncode == 1
    assert rnix("compose", "logs", cwd=folder).returncode == 0  # without -f: the lines, status 0


def test_wait_exits_0_for_a_completed_run_and_143_after_down(
    rnix: RunRnix, teams: Teams, tmp_path: Path
) -> None:
    teams.start(f"agents:\n  ok: {{intent: ok, command: {agent('succeed.py')}}}\n", project="fine")
    assert rnix("compose", "-p", "fine", "wait").returncode == 0
    teams.start(
        f"agents:\n  slow: {{intent: sleeps, command: {agent('sleeper.py', '30')}}}\n",
        project="stopped",
        running=("slow",),
    )
    with ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(rnix, "compose", "-p", "stopped", "wait")
        time.sleep(0.5)
        assert rnix("compose", "-p", "stopped", "down", "-t", "1").returncode == 0
        waited = waiting.result()
    assert waited.returncode == 143, waited.stderr


def test_wait_reports_a_run_whose_supervisor_died_as_lost(rnix: RunRnix, tmp_path: Path) -> None:
    marker = uuid.uuid4().hex
    folder = tmp_path / "lost"
    folder.mkdir()
    (folder / "compose.yaml").write_text(
        f"agents:\n  slow: {{intent: sleeps, command: {agent('sleeper.py', '30')}}}\n"
    )
    started = rnix("compose", "up", "-d", "--json", cwd=folder, env={"RNIX_TEST_MARKER": marker})
    supervisor = json.loads(started.stdout)["data"]["pid"]
    # Kill it once its agent runs (a supervisor killed while still starting its fork server is the
    # start-up race of issue 13, not what this test is about).
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        rows = json.loads(rnix("compose", "ps", "--json", cwd=folder).stdout)["data"]["processes"]
        if any(r["state"] == "running" for r in rows):
            break
        time.sleep(0.05)
    os.kill(supervisor, signal.SIGKILL)
    # When this test process is a subreaper (supervisor tests make it one), the killed supervisor is
    # its zombie: reap it, as init would for a user.
    with contextlib.suppress(ChildProcessError):
        os.waitpid(supervisor, 0)
    waited = rnix("compose", "wait", cwd=folder, timeout=30)
    assert waited.returncode == 1
    assert re.search(r"run \w+ of project lost was lost: its supervisor \(PID \d+\) died", waited.stderr)
    assert wait_marked_gone(marker, 10) == []


def test_logs_tail_no_log_prefix_and_timestamps(rnix: RunRnix, tmp_path: Path) -> None:
    folder = tmp_path / "team"
    up(
        rnix,
        folder,
        f"""
agents:
  slow: {{intent: sleeps, command: {agent("sleeper.py", "0.1")}}}
  boom: {{intent: crash, command: {agent("crash.py", "kaboom")}}}
""",
    )
    everything = rnix("compose", "logs", cwd=folder).stdout.splitlines()
    assert everything == ["boom | kaboom", "slow | sleeping", "slow | woke"]
    tail = rnix("compose", "logs", "--tail", "1", "--no-log-prefix", cwd=folder)
    assert tail.stdout.splitlines() == ["kaboom", "woke"]
    assert rnix("compose", "logs", "-n", "all", cwd=folder).stdout.splitlines() == everything
    stamped = rnix("compose", "logs", "-t", "slow", cwd=folder).stdout.splitlines()
    assert [re.sub(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", "T", line) for line in stamped] == [
        "slow | T sleeping",
        "slow | T woke",
    ]
    bad = rnix("compose", "logs", "--tail", "x", cwd=folder)
    assert bad.returncode == 2 and "not a number of lines" in bad.stderr
