"""Compensation (saga) through the installed `rnix compose up`, on command agents.

a -> b -> c, each with a `compensate:` that appends its name to undo.txt: when c fails, b then a
are undone (reverse order of completion), each once; not on success, not with --no-compensate, not
when the run is stopped by `compose down`; a compensation that fails is reported and the next one
still runs.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from tests.conftest import RunRnix
from tests.teams import ps


def undo(name: str, status: int = 0) -> str:
    return f'"sh -c \'printf \\"{name} \\" >> undo.txt; exit {status}\'"'


def compose(tmp_path: Path, c_status: int = 3, b_undo_status: int = 0, c_sleep: float = 0.3) -> None:
    (tmp_path / "compose.yaml").write_text(
        "agents:\n"
        f"  a: {{intent: do a, command: 'sh -c \"echo A\"', compensate: {undo('a')}}}\n"
        f"  b: {{intent: do b, command: 'sh -c \"echo B\"', depends_on: [a],"
        f" compensate: {{command: {undo('b', b_undo_status)}}}}}\n"
        f"  c: {{intent: do c, command: 'sh -c \"touch c.started; sleep {c_sleep}; exit {c_status}\"',"
        f" depends_on: [b], compensate: {undo('c')}}}\n"
    )


def undone(tmp_path: Path) -> str:
    path = tmp_path / "undo.txt"
    return path.read_text().strip() if path.exists() else ""


def up_json(rnix: RunRnix, *args: str) -> tuple[int, dict[str, Any]]:
    result = rnix("compose", "up", "--json", *args)
    return result.returncode, json.loads(result.stdout)["data"]


def test_a_late_failure_undoes_the_completed_agents_last_first(rnix: RunRnix, tmp_path: Path) -> None:
    compose(tmp_path)
    code, data = up_json(rnix)
    assert code == 1
    assert undone(tmp_path) == "b a"  # c never completed: nothing of it to undo
    agents = {a["name"]: a for a in data["agents"]}
    assert agents["a"]["compensation"] == agents["b"]["compensation"] == "compensated"
    assert agents["c"]["compensation"] is None and "c:undo" not in agents
    assert agents["b:undo"]["compensates"] == "b" and agents["b:undo"]["status"] == "completed"
    assert data["status"] == "failed"
    assert data["summary"]["total"] == 3 and data["summary"]["compensations"] == {
        "run": 2, "completed": 2, "failed": []
    }  # fmt: skip
    listed = {p["agent"]: p for p in ps(rnix, "-a")}
    assert listed["b:undo"]["state"] == "completed" and listed["a:undo"]["state"] == "completed"
    assert listed["a"]["compensation"] == listed["b"]["compensation"] == "compensated"
    assert listed["c"]["compensation"] is None
    table = rnix("compose", "ps", "-a").stdout.splitlines()
    assert any(line.split()[2] == "b" and "compensated" in line for line in table)


def test_the_human_output_says_what_was_compensated(rnix: RunRnix, tmp_path: Path) -> None:
    compose(tmp_path)
    result = rnix("compose", "up")
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert any("b:undo" in line and "undoes b" in line for line in lines)
    assert lines[-1] == "compensation | b compensated | a compensated"


def test_a_compensation_gets_what_it_undoes_and_why(rnix: RunRnix, tmp_path: Path) -> None:
    (tmp_path / "compose.yaml").write_text(
        "agents:\n"
        "  a: {intent: do a, command: 'sh -c \"echo made-by-a\"',"
        " compensate: {command: 'sh -c \"cat > task.json\"', timeout: 10}}\n"
        "  b: {intent: do b, command: 'sh -c \"exit 4\"', depends_on: [a]}\n"
    )
    assert rnix("compose", "up").returncode == 1
    task = json.loads((tmp_path / "task.json").read_text())
    assert task["name"] == "a:undo"
    assert task["compensate"] == {"agent": "a", "result": "made-by-a\n", "reason": "b failed: exit status 4"}
    assert task["upstream"] == {"a": "made-by-a\n"}


def test_a_failed_compensation_is_reported_and_the_next_one_still_runs(rnix: RunRnix, tmp_path: Path) -> None:
    compose(tmp_path, b_undo_status=5)
    result = rnix("compose", "up")
    assert result.returncode == 1
    assert undone(tmp_path) == "b a"
    assert result.stdout.splitlines()[-1] == (
        "compensation | b compensation failed: exit status 5 | a compensated"
    )
    code, data = up_json(rnix, "--fresh")
    assert code == 1 and data["summary"]["compensations"]["failed"] == ["b"]


def test_no_compensation_with_no_compensate(rnix: RunRnix, tmp_path: Path) -> None:
    compose(tmp_path)
    code, data = up_json(rnix, "--no-compensate")
    assert code == 1 and undone(tmp_path) == ""
    assert all(a["compensation"] is None for a in data["agents"]) and len(data["agents"]) == 3
    assert "--no-compensate" in rnix("compose", "up", "--help").stdout


def test_no_compensation_when_the_run_succeeds(rnix: RunRnix, tmp_path: Path) -> None:
    compose(tmp_path, c_status=0)
    code, data = up_json(rnix)
    assert code == 0 and undone(tmp_path) == ""
    assert data["summary"]["compensations"]["run"] == 0


def test_no_compensation_when_the_run_is_stopped_by_down(rnix: RunRnix, tmp_path: Path) -> None:
    compose(tmp_path, c_sleep=30)
    started = rnix("compose", "up", "-d")
    assert started.returncode == 0, started.stderr
    deadline = time.monotonic() + 20
    while not (tmp_path / "c.started").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert (tmp_path / "c.started").exists()
    assert rnix("compose", "down", "-t", "1").returncode == 0
    rows = {p["agent"]: p for p in ps(rnix, "-a")}
    assert rows["c"]["state"] == "cancelled" and "c:undo" not in rows and "b:undo" not in rows
    assert undone(tmp_path) == ""


def test_a_resumed_run_reruns_undone_agents_and_does_not_undo_them_twice(
    rnix: RunRnix, tmp_path: Path
) -> None:
    compose(tmp_path)
    assert rnix("compose", "up").returncode == 1
    assert undone(tmp_path) == "b a"
    compose(tmp_path, c_status=0)  # c fixed: a resume runs a and b again (they were undone)
    code, data = up_json(rnix)
    assert code == 0 and undone(tmp_path) == "b a"
    agents = {a["name"]: a for a in data["agents"]}
    assert agents["a"]["reused_from"] is None and agents["a"]["attempts"] == 1


def test_ctrl_c_during_the_saga_stops_the_running_compensation_and_starts_no_other(
    rnix: RunRnix, tmp_path: Path
) -> None:
    import signal
    import subprocess

    from tests.conftest import RNIX

    (tmp_path / "compose.yaml").write_text(
        "agents:\n"
        f"  a: {{intent: do a, command: 'sh -c \"echo A\"', compensate: {undo('a')}}}\n"
        "  b: {intent: do b, command: 'sh -c \"echo B\"', depends_on: [a],"
        " compensate: 'sh -c \"touch b.undoing; exec sleep 30\"'}\n"
        "  c: {intent: do c, command: 'sh -c \"exit 3\"', depends_on: [b]}\n"
    )
    proc = subprocess.Popen(
        [RNIX, "compose", "up", "--json"], cwd=tmp_path, stdout=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 20
        while not (tmp_path / "b.undoing").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert (tmp_path / "b.undoing").exists()
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130
    agents = {a["name"]: a for a in json.loads(out)["data"]["agents"]}
    assert agents["b:undo"]["status"] == "cancelled" and "a:undo" not in agents
    assert agents["b"]["compensation"].startswith("compensation cancelled")
    assert undone(tmp_path) == ""
