"""Nothing descended from an agent outlives `rnix compose up`, `down`, `kill` or a Ctrl-C.

The stray (fixtures/agents/setsid_stray.py) leaves the agent's session, ignores SIGTERM and has a
child `sleep 305`: a group signal misses it, and when it is SIGKILLed its child is orphaned to the
nearest subreaper, which must be alive and sweeping at that moment. The checks are strict: no marked
process may be alive the moment the command returns (no grace for stragglers), and they repeat
under CPU load, which is what widened the races in issue 13.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import RNIX, RunRnix
from tests.procs import marked, marked_pids
from tests.teams import agent, ps, wait_for

LIMITS = "timeout: 1s, stop_grace_period: 0.5s"
STRAY = f"stray: {{intent: leaves a stray, command: {agent('setsid_stray.py')}, {LIMITS}}}"
# Ten such strays in a chain: each kill orphans the next, so a sweep that ends early leaves the rest
# (on the code before the fix this leaked every time; a single stray only now and then).
CHAIN = f"chain: {{intent: a chain, command: {agent('setsid_stray.py', '--depth', '10')}, {LIMITS}}}"
# The plain shell form: a background `setsid sleep` (no TERM-ignoring parent) next to the agent.
SHELL = json.dumps(["sh", "-c", "setsid sleep 305 & exec sleep 30"])
PLAIN = f"plain: {{intent: setsid sleep, command: {SHELL}, {LIMITS}}}"


marker = pytest.fixture(marked)


@pytest.fixture
def cpu_load() -> Iterator[None]:
    """Two busy loops (one per core here) for the duration of the test."""
    burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
    try:
        yield
    finally:
        for burner in burners:
            burner.kill()
            burner.wait()


def compose(tmp_path: Path, *agents: str, timeout: str = "1s") -> None:
    lines = "".join(f"  {a.replace('timeout: 1s', f'timeout: {timeout}')}\n" for a in agents)
    (tmp_path / "compose.yaml").write_text(f"name: strays\nagents:\n{lines}")


def sleepers(marker: str) -> list[int]:
    """The marked `sleep 305` processes (what a stray leaves behind)."""
    found = []
    for pid in marked_pids(marker):
        with contextlib.suppress(OSError), open(f"/proc/{pid}/cmdline", "rb") as f:
            if f.read().split(b"\0")[:2] == [b"sleep", b"305"]:
                found.append(pid)
    return found


def left(marker: str) -> list[str]:
    """What is still alive right now, described for the assertion message. A detached supervisor
    (`-m rnix compose up`) may still be on its way out after `down` returned: it is no agent's."""
    described = []
    for pid in marked_pids(marker):
        with contextlib.suppress(OSError), open(f"/proc/{pid}/cmdline", "rb") as f:
            command = f.read().replace(b"\0", b" ").decode().strip()
            if " -m rnix compose up " not in command:
                described.append(f"{pid}: {command}")
    return described


def up_background(tmp_path: Path, marker: str, cgroup: str = "1") -> subprocess.Popen[str]:
    return subprocess.Popen(
        [RNIX, "compose", "up"],
        cwd=tmp_path,
        env={**os.environ, "RNIX_TEST_MARKER": marker, "RNIX_CGROUP": cgroup},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_strays(marker: str, count: int) -> None:
    wait_for(lambda: len(sleepers(marker)) >= count, 20, "the strays' sleeps")


def up_times_out(rnix: RunRnix, tmp_path: Path, marker: str, *agents: str, cgroup: str = "1") -> None:
    compose(tmp_path, *agents)
    result = rnix("compose", "up", "--json", env={"RNIX_TEST_MARKER": marker, "RNIX_CGROUP": cgroup})
    statuses = {a["name"]: a["status"] for a in json.loads(result.stdout)["data"]["agents"]}
    assert set(statuses.values()) == {"timeout"}, result.stderr
    assert left(marker) == []  # the moment `up` returned
    assert "escaped" not in result.stderr  # the sweeps caught everything; the cgroup found nothing


def up_interrupted(tmp_path: Path, marker: str, *agents: str, cgroup: str = "1") -> None:
    compose(tmp_path, *agents, timeout="1m")
    proc = up_background(tmp_path, marker, cgroup)
    try:
        wait_strays(marker, len(agents))
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=20)
        assert proc.returncode == 130, err
        assert left(marker) == []
        assert "escaped" not in err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


# "0": without the cgroup backstop (cgroup.py), as on hosts without one: the sweeps must suffice.
CGROUP = pytest.mark.parametrize("cgroup", ["1", "0"], ids=["cgroup", "sweeps alone"])


@CGROUP
def test_a_stray_with_its_own_session_and_child_at_timeout(
    rnix: RunRnix, tmp_path: Path, marker: str, cgroup: str
) -> None:
    up_times_out(rnix, tmp_path, marker, STRAY, CHAIN, cgroup=cgroup)


@CGROUP
def test_a_stray_with_its_own_session_and_child_at_ctrl_c(tmp_path: Path, marker: str, cgroup: str) -> None:
    up_interrupted(tmp_path, marker, STRAY, CHAIN, cgroup=cgroup)


def test_strays_under_cpu_load_at_timeout_and_ctrl_c(
    rnix: RunRnix, tmp_path: Path, marker: str, cpu_load: None
) -> None:
    for _ in range(3):
        up_times_out(rnix, tmp_path, marker, STRAY, CHAIN, PLAIN, cgroup="0")
        up_interrupted(tmp_path, marker, STRAY, CHAIN, PLAIN, cgroup="0")


def test_compose_down_leaves_no_stray(rnix: RunRnix, tmp_path: Path, marker: str) -> None:
    compose(tmp_path, STRAY, CHAIN, timeout="1m")
    up = rnix("compose", "up", "-d", env={"RNIX_TEST_MARKER": marker})
    assert up.returncode == 0, up.stderr
    wait_strays(marker, 2)
    down = rnix("compose", "down", "-t", "0.5")
    assert down.returncode == 0, down.stderr
    assert left(marker) == []


@pytest.mark.parametrize("signame", ["KILL", "TERM"])
def test_rnix_kill_of_the_agent_leaves_no_stray(
    rnix: RunRnix, tmp_path: Path, marker: str, signame: str
) -> None:
    compose(tmp_path, CHAIN, timeout="1m")
    proc = up_background(tmp_path, marker)
    try:
        wait_strays(marker, 1)
        row = wait_for(lambda: [p for p in ps(rnix) if p["state"] == "running"], what="the agent")[0]
        killed = rnix("kill", "-s", signame, str(row["pid"]))
        assert killed.returncode == 0, killed.stderr
        _, err = proc.communicate(timeout=20)
        assert proc.returncode == 1, err  # the agent was killed: the run failed
        assert left(marker) == []
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
