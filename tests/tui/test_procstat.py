"""Reading /proc for `top`: CPU %, RSS, state, start time and children of real processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from rnix.supervisor import procinfo
from rnix.tui.procstat import ProcReader

BUSY = "while True: pass"


@pytest.fixture
def family() -> Iterator[tuple[subprocess.Popen[bytes], subprocess.Popen[bytes]]]:
    """A process spinning on the CPU, and a shell waiting for a sleeping child."""
    spinner = subprocess.Popen([sys.executable, "-c", BUSY], start_new_session=True)
    parent = subprocess.Popen(["sh", "-c", "sleep 60 & wait"], start_new_session=True)
    try:
        yield spinner, parent
    finally:
        for p in (spinner, parent):
            os.killpg(p.pid, signal.SIGKILL)  # the group: the shell's sleep too
            p.wait()


def test_cpu_rss_state_and_start_time(
    family: tuple[subprocess.Popen[bytes], subprocess.Popen[bytes]],
) -> None:
    spinner, parent = family
    reader = ProcReader()
    first = reader.read(spinner.pid)
    assert first is not None and first.cpu_percent is None  # nothing to compare with yet
    reader.end_round()
    time.sleep(0.5)
    busy, idle = reader.read(spinner.pid), reader.read(parent.pid)
    assert busy is not None and idle is not None
    assert busy.cpu_percent is not None and busy.cpu_percent > 20  # a whole CPU, less what others took
    assert busy.rss > 1 << 20 and busy.state == "R" and busy.ppid == os.getpid()
    start = procinfo.start_time(spinner.pid)
    assert start is not None and busy.started_at(start) and not busy.started_at(start - 5)
    assert not busy.started_at(None)
    reader.end_round()
    time.sleep(0.3)
    again = reader.read(parent.pid)
    assert again is not None and again.cpu_percent is not None and again.cpu_percent < 10
    assert again.state_word == "sleeping"


def test_children_and_command(family: tuple[subprocess.Popen[bytes], subprocess.Popen[bytes]]) -> None:
    _, parent = family
    reader = ProcReader()
    deadline = time.monotonic() + 5
    while True:  # until the shell's child has exec'd sleep
        info = reader.read(parent.pid)
        assert info is not None
        kids = reader.children(info)
        sleeper = reader.read(kids[0]) if kids else None
        if (sleeper and sleeper.name == "sleep") or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    assert len(kids) == 1 and sleeper is not None
    assert sleeper.ppid == parent.pid and sleeper.name == "sleep"
    assert reader.command(sleeper) == "sleep 60" and reader.command(info) == "sh -c sleep 60 & wait"


def test_a_process_that_is_gone_reads_as_none() -> None:
    gone = subprocess.Popen(["true"])
    gone.wait()
    assert ProcReader().read(gone.pid) is None
