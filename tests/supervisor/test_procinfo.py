"""procinfo's /proc readers that agent leaders use to tell a live supervisor from a dying one."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from rnix.supervisor import procinfo


def no_such_pid() -> int:
    with open("/proc/sys/kernel/pid_max") as f:
        pid = int(f.read()) - 1
    while os.path.exists(f"/proc/{pid}"):
        pid -= 1
    return pid


def test_parent_pid() -> None:
    assert procinfo.parent_pid(os.getpid()) == os.getppid()
    assert procinfo.parent_pid(no_such_pid()) is None


def test_a_live_process_is_not_exiting_and_a_zombie_or_a_missing_one_is() -> None:
    assert not procinfo.is_exiting(os.getpid())
    child = subprocess.Popen([sys.executable, "-c", ""])
    try:
        deadline = time.monotonic() + 10
        while not procinfo.is_exiting(child.pid) and time.monotonic() < deadline:
            time.sleep(0.01)  # it runs, then stays a zombie until we reap it
        assert procinfo.is_exiting(child.pid)
        assert os.path.exists(f"/proc/{child.pid}")
    finally:
        child.wait()
    assert procinfo.is_exiting(no_such_pid())
