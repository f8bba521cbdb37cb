"""A SIGKILLed supervisor leaves nothing behind: PDEATHSIG takes down the fork server, whose agents'
leaders then stop their own subtrees (TERM, grace, KILL), escaped grandchildren included."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.fixtures import MARKER, new_marker
from tests.procs import alive, marked_pids, wait_marked_gone

HELPER = str(Path(__file__).resolve().parents[1] / "fixtures" / "supervise.py")


def start_supervisor(
    tmp_path: Path, marker: str, grace: float, *specs: str
) -> tuple[subprocess.Popen[str], dict[str, int]]:
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
