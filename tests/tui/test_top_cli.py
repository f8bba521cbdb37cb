"""`rnix top` as a command: --once, --json, no terminal, and what reaches a real terminal."""

from __future__ import annotations

import fcntl
import io
import json
import os
import pty
import select
import signal
import sqlite3
import struct
import subprocess
import termios
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import RNIX, RunRnix
from tests.teams import agent, ps
from tests.tui.conftest import Team

TEAM = f"""agents:
  talk: {{intent: chat away, command: {agent("talker.py", "60", "--spawn")}}}
  idle: {{intent: wait for it, command: {agent("sleeper.py", "60")}}}
  quick: {{intent: done fast, command: {agent("succeed.py")}}}
"""
EVIL = "[bold red]X[/] \\e[7;31;42mEVIL \\e]0;PWNED\\a [link=http://x]y[/link]"
EVIL_INERT = "[bold red]X[/] ?[7;31;42mEVIL ?]0;PWNED? [link=http://x]y[/link]"


def test_once_prints_one_snapshot(team: Team, rnix: RunRnix) -> None:
    rows = team(TEAM, running=("talk", "idle"))
    result = rnix("top", "--once")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("rnix top") and "1 run" in lines[0] and "2 running" in lines[0]
    assert lines[1].split() == [
        "PID",
        "PPID",
        "PROJECT",
        "AGENT",
        "STATE",
        "TOKENS",
        "CPU%",
        "RSS",
        "ELAPSED",
        "INTENT",
    ]
    by_agent = {line.split()[4]: line.split() for line in lines[2:] if line.split()[3] in ("├─", "└─")}
    assert int(by_agent["talk"][0]) == rows["talk"]["pid"] and by_agent["talk"][5] == "running"
    assert "quick" not in by_agent  # finished: shown with -a
    assert "quick" in rnix("top", "--once", "-a").stdout
    other = rnix("top", "--once", "-p", "nobody")
    assert other.returncode == 0 and "rnix: no agents of project nobody" in other.stderr
    assert "rnix compose up -d" in other.stderr  # the empty state says what to run


def test_json_is_one_documented_snapshot(team: Team, rnix: RunRnix) -> None:
    rows = team(TEAM, running=("talk", "idle"))
    result = rnix("top", "--json")  # --json implies --once
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["ok"] is True
    data = doc["data"]
    assert set(data) == {"taken_at", "cpu_window_ms", "project", "all", "summary", "runs"}
    assert data["summary"]["runs"] == 1 and data["summary"]["by_state"]["running"] == 2
    (run,) = data["runs"]
    assert run["status"] == "running" and run["alive"] is True and run["rss_bytes"] > 0
    agents = {a["agent"]: a for a in run["agents"]}
    assert set(agents) == {"talk", "idle"}  # quick finished
    talk = agents["talk"]
    assert talk["pid"] == rows["talk"]["pid"] and talk["ppid"] == run["pid"] and talk["alive"] is True
    assert talk["tokens_hot"] is False and talk["depends_on"] == [] and talk["cpu_percent"] is not None
    command, sleeper = talk["processes"]
    assert (command["ppid"], command["depth"]) == (talk["pid"], 1)
    assert (sleeper["ppid"], sleeper["depth"], sleeper["command"]) == (command["pid"], 2, "sleep 60.0")
    everything = json.loads(rnix("top", "--once", "--json", "-a").stdout)["data"]
    assert everything["all"] is True
    assert {a["agent"] for a in everything["runs"][0]["agents"]} == {"talk", "idle", "quick"}


def test_without_a_terminal_it_says_to_use_once(rnix: RunRnix) -> None:
    result = rnix("top")  # stdin is /dev/null and stdout a pipe
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "rnix: error: rnix top needs a terminal (stdin and stdout)",
        "hint: use `rnix top --once` for one snapshot, `rnix top --json` for it as JSON",
    ]
    assert result.stdout == ""
    bad = rnix("top", "--interval", "0")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr and "hint:" in bad.stderr


def test_agent_text_reaches_the_terminal_inert(team: Team, rnix: RunRnix, tmp_path: Path) -> None:
    """The real `rnix top` on a pseudo-terminal: the agent's markup and escapes arrive as text."""
    team(f'agents:\n  evil: {{intent: "{EVIL}", command: {agent("talker.py", "60")}}}\n', running=("evil",))
    assert "\x1b]0;PWNED\x07" in ps(rnix)[0]["intent"]  # the store holds the raw sequences
    main, child = pty.openpty()
    fcntl.ioctl(child, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 200, 0, 0))
    env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": "200", "LINES": "40"}
    proc = subprocess.Popen([RNIX, "top"], stdin=child, stdout=child, stderr=child, env=env, cwd=tmp_path)
    os.close(child)
    output = b""

    def read_until(needle: bytes, timeout: float = 20) -> None:
        nonlocal output
        deadline = time.monotonic() + timeout
        while needle not in output and time.monotonic() < deadline:
            ready, _, _ = select.select([main], [], [], 0.2)
            if ready:
                try:
                    output += os.read(main, 65536)
                except OSError:
                    return

    try:
        read_until(b"EVIL")
        os.write(main, b"j")  # from the run row to the agent
        time.sleep(0.3)
        os.write(main, b"d")  # its details, with its log (the intent again, then ticks)
        read_until(b"tick 1")
        for _ in range(2):  # q leaves the details, then quits
            os.write(main, b"q")
            read_until(b"\x00", timeout=0.5)  # keep draining: a full terminal would block rnix
        read_until(b"\x00", timeout=2)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(main)
    assert b"tick 1" in output
    assert EVIL_INERT.encode() in output  # drawn as text ...
    for escape in (b"\x1b]0;PWNED", b"\x1b[7;31;42m", b"\x07 [link"):  # ... never as escapes
        assert escape not in output
    assert b"\x1b]8;" not in output  # and no hyperlink from `[link=...]`


def test_once_fails_cleanly_when_the_database_stays_locked(
    rnix_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In process, with the busy timeout shortened; a rollback journal lets a writer block readers."""
    from rnix.cli.main import main
    from rnix.core.events import Record, RunStarted
    from rnix.env import Env
    from rnix.store import db

    with db.Store.open(rnix_home) as store:
        store.append([Record("r1", time.time(), RunStarted(project="p", supervisor_pid=1))])
    with sqlite3.connect(rnix_home / db.DB_NAME) as conn:
        conn.execute("PRAGMA journal_mode = DELETE")
    monkeypatch.setattr(db, "BUSY_TIMEOUT_MS", 100)
    holder = sqlite3.connect(rnix_home / db.DB_NAME, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        out, err = io.StringIO(), io.StringIO()
        env = Env(stdout=out, stderr=err, environ={"RNIX_HOME": str(rnix_home)}, cwd=tmp_path)
        assert main(["top", "--once"], env) == 1
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert out.getvalue() == ""
    assert err.getvalue().splitlines() == [
        f"rnix: error: the state database {rnix_home / db.DB_NAME} stayed locked for over 0.1 s",
        "hint: another rnix process is holding it; try again",
    ]


def proc_state(pid: int) -> str:
    with open(f"/proc/{pid}/stat", "rb") as f:
        stat = f.read()
    return stat[stat.rindex(b")") + 2 :].split()[0].decode()


@pytest.mark.parametrize("quit_by", ["q", "SIGHUP"])
def test_quitting_resumes_the_agents_top_paused_and_says_so(
    team: Team, rnix: RunRnix, tmp_path: Path, quit_by: str
) -> None:
    """The real `rnix top` on a pseudo-terminal: `s` pauses, quitting (q, or the terminal hanging up)
    resumes, and a line on the terminal after the view says which agent."""
    from tests.teams import wait_for

    rows = team(f"agents:\n  nap: {{intent: doze, command: {agent('sleeper.py', '60')}}}\n", running=("nap",))
    nap = rows["nap"]["pid"]
    main, child = pty.openpty()
    fcntl.ioctl(child, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 200, 0, 0))
    env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": "200", "LINES": "40"}
    proc = subprocess.Popen([RNIX, "top"], stdin=child, stdout=child, stderr=child, env=env, cwd=tmp_path)
    os.close(child)
    output = b""

    def drain(until: Callable[[], bool], timeout: float) -> None:
        nonlocal output
        deadline = time.monotonic() + timeout
        while not until() and time.monotonic() < deadline:
            if select.select([main], [], [], 0.1)[0]:
                try:
                    output += os.read(main, 65536)
                except OSError:
                    return

    try:
        drain(lambda: b"doze" in output, 20)
        os.write(main, b"j")  # from the run row to the agent
        time.sleep(0.3)
        os.write(main, b"s")
        drain(lambda: proc_state(nap) == "T", 10)
        assert proc_state(nap) == "T"
        if quit_by == "q":
            os.write(main, b"q")
        else:
            proc.send_signal(signal.SIGHUP)
        drain(lambda: proc.poll() is not None, 15)
        drain(lambda: False, 0.5)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(main)
    assert wait_for(lambda: proc_state(nap) != "T", 5, "nap to go on")
    assert f"rnix: resumed agent nap (PID {nap}): top paused it".encode() in output
    assert {p["agent"]: p["state"] for p in ps(rnix)}["nap"] == "running"
