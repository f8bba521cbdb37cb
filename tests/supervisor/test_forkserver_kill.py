"""A SIGKILLed supervisor leaves nothing behind: PDEATHSIG takes down the fork server, whose agents'
leaders then stop their own subtrees (TERM, grace, KILL), escaped grandchildren included. Those
interrupted agents leave no exit report; an agent that had finished leaves its report."""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from rnix.supervisor.api import ExitInfo
from rnix.supervisor.exitreport import read_exit_report
from tests.fixtures import MARKER, new_marker
from tests.procs import alive, marked_pids, wait_gone, wait_marked_gone

HELPER = str(Path(__file__).resolve().parents[1] / "fixtures" / "supervise.py")


def start_supervisor(
    tmp_path: Path, marker: str, grace: float, *specs: str
) -> tuple[subprocess.Popen[str], dict[str, int]]:
    """Start tests/fixtures/supervise.py; its agents' PIDs by name (and "supervisor", "server")."""
    env = {**os.environ, MARKER: marker}
    proc = subprocess.Popen(
        [sys.executable, HELPER, str(tmp_path), str(grace), *specs],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], 60)
    if not ready:
        proc.kill()
        raise AssertionError("the helper supervisor never reported its agents")
    return proc, json.loads(proc.stdout.readline())


def cleanup(proc: subprocess.Popen[str], marker: str) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait()
    assert proc.stdout is not None
    proc.stdout.close()
    for pid in marked_pids(marker):  # only after a failure: do not leak into later tests
        os.kill(pid, signal.SIGKILL)


def test_sigkilled_supervisor_leaves_no_process(tmp_path: Path) -> None:
    marker = new_marker()
    specs = ("sleeper:sleeper:60", "stubborn:ignore_term:60", "escaper:grandchild:--setsid:--wait:60")
    proc, pids = start_supervisor(
        tmp_path, marker, 0.5, *specs, "orphan:grandchild:--setsid:--ignore-term:60"
    )
    try:
        escaped = int((tmp_path / "escaper.out").read_text().split()[0])
        adopted = int((tmp_path / "orphan.out").read_text().split()[0])
        everyone = [*pids.values(), escaped, adopted]
        assert all(alive(pid) for pid in everyone)
        assert set(everyone) <= set(marked_pids(marker))
        started = time.monotonic()
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        assert wait_marked_gone(marker, 10.0) == []
        assert time.monotonic() - started < 5.0  # grace 0.5 s, then SIGKILL
        # Stopped, not finished: no exit report (`orphan` may have finished: its command exits at once).
        assert not any(
            (tmp_path / f"{name}.exit.json").exists() for name in ("sleeper", "stubborn", "escaper")
        )
    finally:
        cleanup(proc, marker)


def test_supervisor_killed_right_after_spawning(tmp_path: Path) -> None:
    marker = new_marker()
    proc, pids = start_supervisor(tmp_path, marker, 5.0, "plain:grandchild:--wait:60", "sleeper:sleeper:60")
    try:
        assert set(pids.values()) <= set(marked_pids(marker))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        assert wait_marked_gone(marker, 10.0) == []
    finally:
        cleanup(proc, marker)


def test_interrupted_agents_leave_no_exit_report_and_a_finished_one_does(tmp_path: Path) -> None:
    marker = new_marker()
    # `thinker` is a built-in agent blocked in a gateway call: the supervisor's death reaches it as
    # EOF on its gateway socket, and it fails by itself. We hold the fork server (SIGSTOP) so that
    # this happens before any parent-death signal, as it may by chance: its leader must see that
    # the supervisor is gone and write no report for a failure caused by that. `graceful` exits 0
    # on the SIGTERM of its leader's parent-death stop: interrupted all the same, so no report.
    specs = ("sleeper:sleeper:60", "stubborn:ignore_term:60", "thinker:builtin", "graceful:term_ok:60")
    specs += ("done:succeed:fine",)
    proc, pids = start_supervisor(tmp_path, marker, 0.5, *specs)
    gateway = pids.pop("gateway")
    try:
        started = time.monotonic()
        while not (tmp_path / "done.exit.json").exists() and time.monotonic() - started < 10:
            time.sleep(0.01)
        os.kill(pids["server"], signal.SIGSTOP)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        assert wait_gone([pids["thinker"]], 10.0) == []  # a zombie: its fork server cannot reap it yet
        os.kill(pids["server"], signal.SIGCONT)
        assert wait_marked_gone(marker, 10.0) == []
        assert "closed the connection" in (tmp_path / "thinker.err").read_text()  # it failed by itself
        assert read_exit_report(tmp_path / "done.exit.json") == ExitInfo(0, None)
        assert (tmp_path / "done.out").read_text() == "fine\n"
        assert sorted(path.name for path in tmp_path.glob("*.exit.json*")) == ["done.exit.json"]
    finally:
        cleanup(proc, marker)
        shutil.rmtree(os.path.dirname(str(gateway)), ignore_errors=True)
