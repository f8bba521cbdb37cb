"""`rnix compose up` through the installed command on real fixture agents.

Every test gives rnix a unique RNIX_TEST_MARKER, which every agent process inherits, and checks that
no process carrying it is left once rnix has returned.
"""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import RNIX, RunRnix
from tests.procs import marked_pids, wait_gone

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "agents"
PY = sys.executable


def agent(script: str, *args: str) -> str:
    return json.dumps([PY, str(FIXTURES / script), *args])


@pytest.fixture
def marker() -> str:
    return uuid.uuid4().hex


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def up_json(rnix: RunRnix, marker: str, *args: str, timeout: float = 60) -> tuple[int, dict[str, Any], str]:
    result = rnix("compose", "up", "--json", *args, env={"RNIX_TEST_MARKER": marker}, timeout=timeout)
    return result.returncode, json.loads(result.stdout), result.stderr


def by_name(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {a["name"]: a for a in doc["data"]["agents"]}


def assert_nothing_left(marker: str) -> None:
    assert wait_gone(marked_pids(marker), 5) == [], "processes outlived rnix"


def test_fixture_agents_statuses_pids_and_exit_code(rnix: RunRnix, tmp_path: Path, marker: str) -> None:
    write(
        tmp_path / "compose.yaml",
        f"""
agents:
  ok: {{intent: succeed, command: {agent("succeed.py", "hello")}}}
  boom: {{intent: crash, command: {agent("crash.py", "kaboom")}}}
  after_boom: {{intent: never runs, command: {agent("succeed.py")}, depends_on: [boom]}}
  slow: {{intent: times out, command: {agent("sleeper.py", "30")}, timeout: 1s, stop_grace_period: 5s}}
  stubborn: {{intent: ignores TERM, command: {agent("ignore_term.py")}, timeout: 1s, stop_grace_period: 1s}}
  parent: {{intent: leaves a grandchild, command: {agent("grandchild.py", "--setsid")}}}
  chatty: {{intent: prints a lot, command: {agent("spew.py", "50000")}}}
  reader: {{intent: reads its task, command: {agent("echo_task.py")}, depends_on: [ok, chatty]}}
""",
    )
    started = time.monotonic()
    code, doc, stderr = up_json(rnix, marker)
    elapsed = time.monotonic() - started
    assert code == 1 and doc["ok"] is False, stderr
    agents = by_name(doc)
    assert {n: a["status"] for n, a in agents.items()} == {
        "ok": "completed",
        "boom": "failed",
        "after_boom": "skipped",
        "slow": "timeout",
        "stubborn": "timeout",
        "parent": "completed",
        "chatty": "completed",
        "reader": "completed",
    }
    assert agents["ok"]["result"] == "hello\n" and agents["ok"]["exit_code"] == 0
    assert agents["boom"]["exit_code"] == 1 and "kaboom" in agents["boom"]["error"]
    assert agents["after_boom"]["pid"] is None and agents["after_boom"]["error"] == "dependency 'boom' failed"
    assert agents["slow"]["signal"] == signal.SIGTERM  # it obeyed SIGTERM within its grace
    assert agents["stubborn"]["signal"] == signal.SIGKILL  # it needed SIGKILL after 1 s of grace
    assert 1.8 <= agents["stubborn"]["elapsed_ms"] / 1000 < 4.5
    assert 0.9 <= agents["slow"]["elapsed_ms"] / 1000 < 3.5
    assert agents["reader"]["result"] == "intent: reads its task\nupstream: chatty,ok\n"
    assert (
        agents["chatty"]["result"].startswith("out 0\nout 1\n") and "truncated" in agents["chatty"]["result"]
    ) or agents["chatty"]["result"].count("\n") == 50000
    pids = [a["pid"] for a in agents.values() if a["pid"] is not None]
    assert len(pids) == len(set(pids)) == 7
    summary = doc["data"]["summary"]
    assert (summary["total"], summary["completed"], summary["skipped"], summary["failed"]) == (8, 4, 1, 3)
    assert elapsed < 20
    assert_nothing_left(marker)


def test_human_output_lines_and_summary(rnix: RunRnix, tmp_path: Path, marker: str) -> None:
    write(
        tmp_path / "compose.yaml",
        f"agents:\n  a: {{intent: x, command: {agent('succeed.py')}}}\n  b: {{intent: y, depends_on: [a]}}\n",
    )
    result = rnix("compose", "up", env={"RNIX_TEST_MARKER": marker})
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("[layer 1/2] a PID ") and " | completed | " in lines[0]
    assert lines[1].startswith("[layer 2/2] b PID ") and lines[1].endswith(" tokens")
    assert lines[2].startswith("compose | completed | 2/2 agents | ")
    assert_nothing_left(marker)


def test_upstream_results_reach_the_mock_llm_agent(rnix: RunRnix, tmp_path: Path, marker: str) -> None:
    write(
        tmp_path / "compose.yaml",
        "agents:\n  research: {intent: find facts}\n  notes: {intent: take notes}\n"
        "  writer: {intent: write it up, depends_on: [research, notes]}\n",
    )
    code, doc, _ = up_json(rnix, marker)
    writer = by_name(doc)["writer"]
    assert code == 0 and "notes" in writer["result"] and "research" in writer["result"]
    assert writer["tokens_used"] > 0 and writer["budget"] == 50_000
    assert doc["data"]["summary"]["tokens_used"] == sum(a["tokens_used"] for a in doc["data"]["agents"])


def test_budget_too_small_exits_2_and_is_budget_exceeded(rnix: RunRnix, tmp_path: Path, marker: str) -> None:
    write(
        tmp_path / "compose.yaml",
        "agents:\n  tiny: {intent: write a long essay, budget: 20}\n"
        "  next: {intent: y, depends_on: [tiny]}\n",
    )
    code, doc, _ = up_json(rnix, marker)
    agents = by_name(doc)
    assert code == 1
    assert agents["tiny"]["status"] == "budget_exceeded" and agents["tiny"]["exit_code"] == 2
    assert agents["tiny"]["tokens_used"] == 0  # refused before anything was sent
    assert agents["next"]["status"] == "skipped"


def test_retries_rerun_a_failing_agent(rnix: RunRnix, tmp_path: Path, marker: str) -> None:
    flag = tmp_path / "flag"
    script = (
        f"import os,sys; p={str(flag)!r}; "
        "sys.exit(0) if os.path.exists(p) else (open(p,'w').close(), sys.exit(3))"
    )
    write(
        tmp_path / "compose.yaml",
        f"agents:\n  flaky: {{intent: x, max_retries: 2, command: {json.dumps([PY, '-c', script])}}}\n",
    )
    code, doc, _ = up_json(rnix, marker)
    flaky = by_name(doc)["flaky"]
    assert code == 0 and flaky["status"] == "completed" and flaky["attempts"] == 2


def test_abort_on_failure_cancels_running_agents(rnix: RunRnix, tmp_path: Path, marker: str) -> None:
    write(
        tmp_path / "compose.yaml",
        f"agents:\n  boom: {{intent: x, command: {agent('crash.py')}}}\n"
        f"  long: {{intent: y, command: {agent('sleeper.py', '30')}}}\n",
    )
    started = time.monotonic()
    code, doc, _ = up_json(rnix, marker, "--abort-on-failure")
    assert code == 1 and time.monotonic() - started < 15
    assert {n: a["status"] for n, a in by_name(doc).items()} == {"boom": "failed", "long": "cancelled"}
    assert_nothing_left(marker)


def run_in_background(tmp_path: Path, marker: str, *args: str) -> subprocess.Popen[str]:
    import os

    env = {**os.environ, "RNIX_TEST_MARKER": marker}
    return subprocess.Popen(
        [RNIX, "compose", "up", *args],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_state(rnix: RunRnix, predicate: Any, timeout: float = 20) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        processes = json.loads(rnix("ps", "--json").stdout)["data"]["processes"]
        if predicate(processes):
            return processes
        time.sleep(0.1)
    raise AssertionError("timed out waiting for agents")


def test_ctrl_c_stops_gracefully_and_exits_130(rnix: RunRnix, tmp_path: Path, marker: str) -> None:
    write(
        tmp_path / "compose.yaml", f"agents:\n  long: {{intent: y, command: {agent('sleeper.py', '60')}}}\n"
    )
    proc = run_in_background(tmp_path, marker)
    wait_for_state(rnix, lambda ps: any(p["state"] == "running" for p in ps))
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 130, err
    assert "long PID" in out and "cancelled" in out
    assert_nothing_left(marker)


def test_sigterm_to_up_exits_143(rnix: RunRnix, tmp_path: Path, marker: str) -> None:
    write(
        tmp_path / "compose.yaml",
        f"agents:\n  long: {{intent: y, command: {agent('ignore_term.py')}, stop_grace_period: 0.5}}\n",
    )
    proc = run_in_background(tmp_path, marker)
    wait_for_state(rnix, lambda ps: any(p["state"] == "running" for p in ps))
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=20)
    assert proc.returncode == 143
    assert_nothing_left(marker)


def test_down_from_a_second_process_and_idempotent(rnix: RunRnix, tmp_path: Path, marker: str) -> None:
    write(
        tmp_path / "compose.yaml",
        f"name: downtest\nagents:\n  long: {{intent: y, command: {agent('ignore_term.py')}}}\n"
        f"  after: {{intent: z, depends_on: [long]}}\n",
    )
    proc = run_in_background(tmp_path, marker, "--json")
    processes = wait_for_state(rnix, lambda ps: any(p["state"] == "running" for p in ps))
    pid = next(p["pid"] for p in processes if p["agent"] == "long")
    started = time.monotonic()
    down = rnix("compose", "down", "-t", "1", "--json")
    assert down.returncode == 0, down.stderr
    assert json.loads(down.stdout)["data"]["runs"][0]["status"] == "cancelled"
    assert 0.8 < time.monotonic() - started < 10  # waited for the 1 s grace, then SIGKILL
    out, _ = proc.communicate(timeout=20)
    assert proc.returncode == 143
    doc = json.loads(out)
    assert {a["name"]: a["status"] for a in doc["data"]["agents"]} == {
        "long": "cancelled",
        "after": "cancelled",
    }
    assert by_name(doc)["long"]["pid"] == pid and by_name(doc)["long"]["signal"] == signal.SIGKILL
    again = rnix("compose", "down")
    assert again.returncode == 0 and "not running" in again.stderr
    assert_nothing_left(marker)


def test_detach_then_ps_logs_and_down(rnix: RunRnix, tmp_path: Path, marker: str) -> None:
    write(
        tmp_path / "compose.yaml",
        f"name: bg\nagents:\n  talk: {{intent: x, command: {agent('sleeper.py', '60')}}}\n",
    )
    result = rnix("compose", "up", "-d", "--json", env={"RNIX_TEST_MARKER": marker})
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)["data"]
    assert data["project"] == "bg" and len(data["run_id"]) == 12
    wait_for_state(
        rnix, lambda ps: any(p["state"] == "running" and p["run_id"] == data["run_id"] for p in ps)
    )
    ps = json.loads(rnix("compose", "ps", "--json").stdout)["data"]["processes"]
    assert [(p["agent"], p["state"], p["run_id"]) for p in ps] == [("talk", "running", data["run_id"])]
    deadline = time.monotonic() + 10
    while "sleeping" not in rnix("compose", "logs").stdout and time.monotonic() < deadline:
        time.sleep(0.1)
    assert rnix("compose", "logs", "talk").stdout == "talk | sleeping\n"
    logs = json.loads(rnix("compose", "logs", "--json").stdout)["data"]
    assert logs["run_id"] == data["run_id"] and logs["agents"][0]["result"] == "sleeping\n"
    assert rnix("compose", "logs", "-f", "--json").returncode == 2
    pid = ps[0]["pid"]
    log = rnix("log", str(pid), "--json")
    assert json.loads(log.stdout)["data"]["result"] == "sleeping\n"
    assert rnix("compose", "down").returncode == 0
    after = json.loads(rnix("compose", "ps", "-a", "--json").stdout)["data"]["processes"]
    assert [p["state"] for p in after] == ["cancelled"]
    assert_nothing_left(marker)


def test_supervisor_killed_with_sigkill_leaves_no_agent(rnix: RunRnix, tmp_path: Path, marker: str) -> None:
    write(
        tmp_path / "compose.yaml",
        f"""name: doomed
agents:
  sleeper: {{intent: a, command: {agent("sleeper.py", "60")}, stop_grace_period: 0.5}}
  stubborn: {{intent: b, command: {agent("ignore_term.py")}, stop_grace_period: 0.5}}
  family: {{intent: c, command: {agent("grandchild.py", "--wait", "--ignore-term")}, stop_grace_period: 0.5}}
  llm: {{intent: d, model: "mock?latency=60s"}}
""",
    )
    proc = run_in_background(tmp_path, marker)
    wait_for_state(rnix, lambda ps: sum(p["state"] == "running" for p in ps) == 4)
    time.sleep(0.5)  # the grandchild is up
    assert len(marked_pids(marker)) >= 7  # supervisor, fork server, 4 agents, grandchild
    proc.kill()
    proc.communicate(timeout=10)
    assert wait_gone(marked_pids(marker), 10) == []
    ps = json.loads(rnix("compose", "ps", "-a", "--json").stdout)["data"]["processes"]  # notices the lost run
    assert {p["state"] for p in ps} == {"cancelled"}
    assert rnix("compose", "down").returncode == 0


def test_kill_signals_the_agent_group(rnix: RunRnix, tmp_path: Path, marker: str) -> None:
    write(
        tmp_path / "compose.yaml", f"agents:\n  long: {{intent: y, command: {agent('sleeper.py', '60')}}}\n"
    )
    proc = run_in_background(tmp_path, marker, "--json")
    processes = wait_for_state(rnix, lambda ps: any(p["state"] == "running" for p in ps))
    pid = processes[0]["pid"]
    assert rnix("kill", "-s", "KILL", str(pid)).returncode == 0
    out, _ = proc.communicate(timeout=20)
    assert proc.returncode == 1
    assert by_name(json.loads(out))["long"]["signal"] == signal.SIGKILL
    wrong = rnix("kill", "999999")
    assert wrong.returncode == 1 and "no rnix agent has PID 999999" in wrong.stderr
    assert_nothing_left(marker)


def test_state_database_records_the_run(rnix: RunRnix, tmp_path: Path, marker: str, rnix_home: Path) -> None:
    write(tmp_path / "compose.yaml", "agents:\n  a: {intent: x}\n")
    _code, doc, _ = up_json(rnix, marker)
    db = sqlite3.connect(rnix_home / "rnix.db")
    kinds = [
        k
        for (k,) in db.execute("select kind from events where run_id=? order by id", (doc["data"]["run_id"],))
    ]
    assert kinds[0] == "run_started" and kinds[-1] == "run_finished"
    assert {"agent_planned", "agent_started", "llm_call", "agent_exited"} <= set(kinds)
    assert db.execute("pragma journal_mode").fetchone()[0] == "wal"


def test_second_ctrl_c_kills_at_once(rnix: RunRnix, tmp_path: Path, marker: str) -> None:
    write(
        tmp_path / "compose.yaml",
        f"agents:\n  stubborn: {{intent: y, command: {agent('ignore_term.py')}, stop_grace_period: 60}}\n",
    )
    proc = run_in_background(tmp_path, marker)
    wait_for_state(rnix, lambda ps: any(p["state"] == "running" for p in ps))
    proc.send_signal(signal.SIGINT)
    time.sleep(0.5)
    assert proc.poll() is None  # still inside the 60 s grace period
    started = time.monotonic()
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=20)
    assert proc.returncode == 130 and time.monotonic() - started < 5
    assert_nothing_left(marker)


def test_paused_agents_die_with_a_sigkilled_supervisor(rnix: RunRnix, tmp_path: Path, marker: str) -> None:
    write(
        tmp_path / "compose.yaml",
        f"""name: doomed
agents:
  sleeper: {{intent: a, command: {agent("sleeper.py", "60")}, stop_grace_period: 0.5}}
  llm: {{intent: d, model: "mock?latency=60s"}}
""",
    )
    proc = run_in_background(tmp_path, marker)
    running = wait_for_state(rnix, lambda ps: sum(p["state"] == "running" for p in ps) == 2)
    for row in running:
        assert rnix("kill", "-s", "STOP", str(row["pid"])).returncode == 0
    proc.kill()
    proc.communicate(timeout=10)
    # Nobody runs `ps` or `down` here: the agents must go by themselves although they are stopped.
    assert wait_gone(marked_pids(marker), 10) == []
