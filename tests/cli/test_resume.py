"""Resume through the installed `rnix`: what `up` reuses, --fresh, --from, changed agents, one live run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from tests.conftest import RNIX, RunRnix
from tests.procs import marked_pids, wait_gone

# Each agent appends its name to `starts` when it starts: the agents themselves count their runs.
TEAM = """\
agents:
  a: {{intent: first, command: [sh, -c, 'echo a >> starts; cat >/dev/null; echo A']}}
  b:
    intent: {b_intent}
    depends_on: [a]
    command: [sh, -c, 'echo b >> starts; cat >/dev/null; test -f ok || exit 1; echo B']
  c: {{intent: third, depends_on: [b], command: [sh, -c, 'echo c >> starts; cat >/dev/null; echo C']}}
  d: {{intent: apart, command: [sh, -c, 'echo d >> starts; cat >/dev/null; echo D']}}
"""


def write_team(directory: Path, b_intent: str = "second") -> None:
    (directory / "compose.yaml").write_text(TEAM.format(b_intent=b_intent))


def starts(directory: Path) -> list[str]:
    path = directory / "starts"
    return path.read_text().split() if path.exists() else []


def up(rnix: RunRnix, *extra: str) -> tuple[int, dict[str, Any], str]:
    done = rnix("compose", "up", "--json", *extra)
    return done.returncode, json.loads(done.stdout), done.stderr


def statuses(doc: dict[str, Any]) -> dict[str, str]:
    return {a["name"]: a["status"] for a in doc["data"]["agents"]}


def reused(doc: dict[str, Any]) -> set[str]:
    return {a["name"] for a in doc["data"]["agents"] if a["reused_from"]}


def test_up_after_a_late_failure_reruns_only_what_did_not_complete(rnix: RunRnix, tmp_path: Path) -> None:
    write_team(tmp_path)
    code, first, _ = up(rnix)
    assert code == 1 and statuses(first) == {
        "a": "completed",
        "b": "failed",
        "c": "skipped",
        "d": "completed",
    }
    (tmp_path / "ok").touch()
    code, second, err = up(rnix)
    assert code == 0 and set(statuses(second).values()) == {"completed"}
    assert reused(second) == {"a", "d"}
    assert sorted(starts(tmp_path)) == ["a", "b", "b", "c", "d"]  # a and d ran once
    run_id = first["data"]["run_id"]
    assert f"rnix: reusing 2 completed agents and 0 journalled calls (0 tokens) from run {run_id}" in err
    assert "--fresh starts over" in err
    agents = {x["name"]: x for x in second["data"]["agents"]}
    assert agents["a"]["result"] == "A\n" and agents["a"]["pid"] is None
    assert agents["a"]["reused_from"] == run_id and second["data"]["summary"]["reused"] == 2
    # A completed run is not resumed: the next up runs everything again.
    code, third, _ = up(rnix)
    assert code == 0 and reused(third) == set() and len(starts(tmp_path)) == 9


def test_fresh_runs_everything_again(rnix: RunRnix, tmp_path: Path) -> None:
    write_team(tmp_path)
    assert up(rnix)[0] == 1
    (tmp_path / "ok").touch()
    code, doc, err = up(rnix, "--fresh")
    assert code == 0 and reused(doc) == set() and "reusing" not in err
    assert sorted(starts(tmp_path)) == ["a", "a", "b", "b", "c", "d", "d"]


def test_from_reruns_the_agent_and_its_dependents_and_reuses_the_rest(rnix: RunRnix, tmp_path: Path) -> None:
    write_team(tmp_path)
    (tmp_path / "ok").touch()
    assert up(rnix)[0] == 0
    code, doc, _ = up(rnix, "--from", "b")
    assert code == 0 and reused(doc) == {"a", "d"}
    assert sorted(starts(tmp_path)) == ["a", "b", "b", "c", "c", "d"]
    wrong = rnix("compose", "up", "--from", "bb")
    assert wrong.returncode == 2 and wrong.stdout == ""
    assert "no agent 'bb'" in wrong.stderr and "did you mean 'b'" in wrong.stderr
    assert "Traceback" not in wrong.stderr
    both = rnix("compose", "up", "--fresh", "--from", "b")
    assert both.returncode == 2 and "cannot be used together" in both.stderr


def test_an_agent_changed_in_the_file_runs_again_with_what_depends_on_it(
    rnix: RunRnix, tmp_path: Path
) -> None:
    write_team(tmp_path)
    assert up(rnix)[0] == 1  # b failed: the run did not complete, so the next up resumes it
    (tmp_path / "ok").touch()
    write_team(tmp_path, b_intent="second, said differently")
    code, doc, err = up(rnix)
    assert code == 0 and reused(doc) == {"a", "d"}
    assert "changed since: b" in err
    # a's own spec did not change; b's did: b and c ran again, a and d did not
    assert sorted(starts(tmp_path)) == ["a", "b", "b", "c", "d"]


def test_a_second_up_of_a_live_project_is_refused(rnix: RunRnix, tmp_path: Path) -> None:
    (tmp_path / "compose.yaml").write_text(
        "agents:\n  nap: {intent: wait, command: [sh, -c, 'echo nap >> starts; sleep 30']}\n"
    )
    started = rnix("compose", "up", "-d", "--json", env={"RNIX_TEST_MARKER": "live-up"})
    assert started.returncode == 0, started.stderr
    run_id = json.loads(started.stdout)["data"]["run_id"]
    try:
        deadline = time.monotonic() + 20
        while starts(tmp_path) != ["nap"] and time.monotonic() < deadline:
            time.sleep(0.05)
        second = rnix("compose", "up")
        assert second.returncode == 2 and second.stdout == ""
        assert f"already has a live run: run {run_id}" in second.stderr
        assert "compose -p" in second.stderr and "down" in second.stderr
        assert starts(tmp_path) == ["nap"]  # nothing was started twice
    finally:
        assert rnix("compose", "down", "-t", "1").returncode == 0
    assert wait_gone(marked_pids("live-up"), 10) == []


def test_up_resumes_a_run_whose_supervisor_was_killed(tmp_path: Path, rnix: RunRnix) -> None:
    (tmp_path / "compose.yaml").write_text(
        "agents:\n"
        "  quick: {intent: a, command: [sh, -c, 'echo quick >> starts; cat >/dev/null; echo Q']}\n"
        "  slow:\n"
        "    intent: b\n"
        "    depends_on: [quick]\n"
        "    command: [sh, -c, 'echo slow >> starts; test -f ok && echo S && exit 0; sleep 30']\n"
    )
    env = {**os.environ, "RNIX_TEST_MARKER": "killed-up"}
    proc = subprocess.Popen(
        [RNIX, "compose", "up"], cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 20
    while starts(tmp_path) != ["quick", "slow"] and time.monotonic() < deadline:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    assert wait_gone(marked_pids("killed-up"), 10) == []
    (tmp_path / "ok").touch()
    code, doc, err = up(rnix)
    assert code == 0 and reused(doc) == {"quick"} and "reusing 1 completed agent" in err
    assert starts(tmp_path) == ["quick", "slow", "slow"]
    rows = {
        p["agent"]: p for p in json.loads(rnix("compose", "ps", "-a", "--json").stdout)["data"]["processes"]
    }
    assert rows["quick"]["reused_from"] is not None and rows["quick"]["state"] == "completed"
    assert rows["slow"]["reused_from"] is None and rows["slow"]["state"] == "completed"
