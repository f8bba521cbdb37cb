"""Find test processes by marker and wait for them to go (tests only; reads /proc).

A process is found by `RNIX_TEST_MARKER=<marker>` in /proc/PID/environ (its environment at exec, or
its parent's for a process that forked without exec). Zombies count as gone: they run nothing, and
whoever reaps them (a subreaper such as the test process itself) may do so later.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
import uuid
from collections.abc import Iterable, Iterator


def _state(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    return stat[stat.rindex(b")") + 2 :].split()[0].decode()


def alive(pid: int) -> bool:
    """True when `pid` exists and is not a zombie (or dead) process."""
    state = _state(pid)
    return state is not None and state not in ("Z", "X", "x")


def marked_pids(marker: str) -> list[int]:
    """Live processes whose environment holds RNIX_TEST_MARKER=<marker> (never the caller)."""
    needle = f"RNIX_TEST_MARKER={marker}".encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                environ = f.read()
        except OSError:
            continue
        if needle in environ.split(b"\0") and alive(int(entry)):
            found.append(int(entry))
    return found


def wait_gone(pids: Iterable[int], timeout: float) -> list[int]:
    """Wait up to `timeout` seconds for every pid to be gone (or a zombie); returns those still alive."""
    remaining = list(pids)
    deadline = time.monotonic() + timeout
    while True:
        remaining = [pid for pid in remaining if alive(pid)]
        if not remaining or time.monotonic() >= deadline:
            return remaining
        time.sleep(0.02)


def wait_marked_gone(marker: str, timeout: float) -> list[int]:
    """Wait up to `timeout` seconds until no live process carries `marker`; returns the survivors."""
    deadline = time.monotonic() + timeout
    while True:
        left = marked_pids(marker)
        if not left or time.monotonic() >= deadline:
            return left
        time.sleep(0.05)


def marked() -> Iterator[str]:
    """A fresh marker; whatever the test's outcome, every process still carrying it is killed after
    (use as a fixture: `marker = pytest.fixture(marked)`)."""
    value = uuid.uuid4().hex
    try:
        yield value
    finally:  # the test itself must not leak
        for pid in marked_pids(value):
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
