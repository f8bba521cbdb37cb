"""Pausing an agent from another terminal (`rnix kill -s STOP` / `CONT`, the path `top`'s `s` takes):
`ps`, `compose ps` and the live view of `compose up` show it paused with its clock stopped."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import select
import struct
import subprocess
import termios
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import RNIX, RunRnix
from tests.procs import wait_marked_gone
from tests.teams import Teams, agent, ps, wait_for


@pytest.fixture
def teams(rnix: RunRnix, tmp_path: Path) -> Iterator[Teams]:
    started = Teams(rnix, tmp_path, uuid.uuid4().hex)
    yield started
    started.stop()


def proc_state(pid: int) -> str:
    with open(f"/proc/{pid}/stat", "rb") as f:
        stat = f.read()
    return stat[stat.rindex(b")") + 2 :].split()[0].decode()


def test_stop_and_cont_pause_and_resume_with_the_clock_frozen(teams: Teams, rnix: RunRnix) -> None:
    rows = teams.start(
        f"agents:\n  nap: {{intent: x, command: {agent('sleeper.py', '60')}}}\n"
        f"  stubborn: {{intent: y, command: {agent('ignore_term.py')}}}\n",
        running=("nap", "stubborn"),
    )
    nap, stubborn = rows["nap"]["pid"], rows["stubborn"]["pid"]
    assert rnix("kill", "-s", "STOP", str(nap)).returncode == 0
    assert proc_state(nap) == "T"
    first = {p["agent"]: p for p in ps(rnix)}["nap"]
    time.sleep(1.0)
    compose_ps = rnix("compose", "-p", "team", "ps", "--json")
    second = {p["agent"]: p for p in json.loads(compose_ps.stdout)["data"]["processes"]}["nap"]
    assert first["state"] == second["state"] == "paused"
    assert first["elapsed_ms"] == second["elapsed_ms"]  # frozen while paused
    assert rnix("kill", "-s", "CONT", str(nap)).returncode == 0
    assert wait_for(lambda: proc_state(nap) != "T", 5, "nap to go on")
    resumed = {p["agent"]: p for p in ps(rnix)}["nap"]
    assert resumed["state"] == "running" and resumed["elapsed_ms"] < second["elapsed_ms"] + 500
    # TERM to a paused agent is followed by CONT, so it can act on it (this one ignores TERM)
    assert rnix("kill", "-s", "STOP", str(stubborn)).returncode == 0
    assert rnix("kill", "-s", "TERM", str(stubborn)).returncode == 0
    assert wait_for(lambda: proc_state(stubborn) != "T", 5, "stubborn to be continued")
    assert {p["agent"]: p["state"] for p in ps(rnix)}["stubborn"] == "running"


def test_the_live_view_of_up_shows_a_paused_agent(rnix: RunRnix, tmp_path: Path) -> None:
    marker = uuid.uuid4().hex
    (tmp_path / "compose.yaml").write_text(
        f"agents:\n  nap: {{intent: x, command: {agent('sleeper.py', '60')}}}\n"
    )
    main, child = pty.openpty()
    fcntl.ioctl(child, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 120, 0, 0))
    env = {**os.environ, "COLUMNS": "120", "TERM": "xterm", "RNIX_TEST_MARKER": marker}
    proc = subprocess.Popen(
        [RNIX, "compose", "up"], cwd=tmp_path, env=env, stdin=child, stdout=child, stderr=child
    )
    os.close(child)
    output = b""

    def read_until(needle: bytes, timeout: float) -> bool:
        nonlocal output
        deadline = time.monotonic() + timeout
        while needle not in output and time.monotonic() < deadline:
            if select.select([main], [], [], 0.1)[0]:
                try:
                    output += os.read(main, 65536)
                except OSError:
                    break
        return needle in output

    try:
        pid = wait_for(lambda: next((p["pid"] for p in ps(rnix) if p["state"] == "running"), None), 20, "nap")
        assert read_until(b"running", 10)
        assert rnix("kill", "-s", "STOP", str(pid)).returncode == 0
        assert read_until(b"paused", 10)
        assert rnix("kill", "-s", "CONT", str(pid)).returncode == 0
        assert rnix("compose", "down", "-t", "1").returncode == 0
        read_until(b"compose |", 20)
        assert proc.wait(timeout=20) == 143
    finally:
        if proc.poll() is None:  # down, not SIGKILL: a paused agent would outlive a killed supervisor
            rnix("compose", "down", "-t", "1")
            read_until(b"\x00", 2)
            proc.wait(timeout=20)
        os.close(main)
    assert wait_marked_gone(marker, 10) == []


def test_a_paused_agent_does_not_time_out(teams: Teams, rnix: RunRnix) -> None:
    """Its timeout clock stops while paused: 3 s paused, 2.5 s timeout, 1.5 s of work -> completed."""
    rows = teams.start(
        f"agents:\n  nap: {{intent: x, timeout: 2.5, command: {agent('sleeper.py', '1.5')}}}\n",
        running=("nap",),
    )
    nap = rows["nap"]["pid"]
    assert rnix("kill", "-s", "STOP", str(nap)).returncode == 0
    time.sleep(3.0)
    assert {p["agent"]: p for p in ps(rnix, "-a")}["nap"]["state"] == "paused"  # not timed out
    assert rnix("kill", "-s", "CONT", str(nap)).returncode == 0
    assert wait_for(lambda: {p["agent"]: p for p in ps(rnix, "-a")}["nap"]["state"] == "completed", 10, "nap")
