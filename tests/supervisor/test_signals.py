"""The signal policy: names, ESRCH as an answer, TERM -> grace -> KILL, start-time checks."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time

import pytest

from rnix.supervisor import procinfo, signals
from rnix.supervisor.api import ExitInfo


@pytest.mark.parametrize(
    ("name", "number"),
    [
        ("TERM", 15),
        ("SIGTERM", 15),
        ("15", 15),
        ("kill", 9),
        ("sigint", 2),
        (" HUP ", 1),
        ("-9", 9),
        (10, 10),
    ],
)
def test_parse_signal(name: str | int, number: int) -> None:
    assert signals.parse_signal(name) == number


@pytest.mark.parametrize("name", ["", "FOO", "SIGFOO", "999", "0", "SIG_IGN", "SIG"])
def test_parse_signal_rejects_unknown(name: str) -> None:
    with pytest.raises(ValueError):
        signals.parse_signal(name)


def test_signal_name() -> None:
    assert signals.signal_name(15) == "SIGTERM"
    assert signals.signal_name(signal.SIGRTMIN + 1).startswith("SIG")


def dead_pid() -> int:
    proc = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    return int(proc.stdout)


def test_vanished_targets_are_false_not_errors() -> None:
    pid = dead_pid()
    assert signals.send(pid, signal.SIGTERM) is False
    assert signals.send_group(pid, signal.SIGTERM) is False


def test_start_time_guards_against_reuse() -> None:
    me = os.getpid()
    start = procinfo.start_time(me)
    assert start is not None
    assert procinfo.is_same_process(me, start)
    assert not procinfo.is_same_process(me, start - 100)
    assert not procinfo.is_same_process(me, None)
    assert procinfo.start_time(dead_pid()) is None
    assert signals.send_verified(me, start - 100, signal.SIGTERM) is False  # refused, nothing sent
    assert procinfo.create_time_from_ticks(procinfo.start_ticks(me)) == pytest.approx(start, abs=0.02)


def test_start_ticks_are_compared_exactly() -> None:
    me = os.getpid()
    start, ticks = procinfo.start_time(me), procinfo.start_ticks(me)
    assert start is not None
    assert procinfo.is_same_process(me, start, ticks)
    assert not procinfo.is_same_process(me, start, ticks + 1)  # a tick apart: another process
    assert not procinfo.is_same_process(me, start - 100, ticks)  # same tick, another boot
    assert not procinfo.is_same_process(dead_pid(), start, ticks)
    assert signals.send_verified(me, start, signal.SIGTERM, ticks + 1) is False


@pytest.mark.skipif(not os.access("/proc/sys/kernel/ns_last_pid", os.W_OK), reason="needs ns_last_pid")
def test_a_pid_reused_within_the_same_second_is_told_apart() -> None:
    """A real reuse: the kernel is told which PID to hand out next (ns_last_pid, root only)."""
    first = subprocess.Popen(["sleep", "30"])
    recorded = procinfo.start_time(first.pid), procinfo.start_ticks(first.pid)
    first.kill()
    first.wait()
    time.sleep(0.03)  # a few ticks: within one tick (10 ms) the two cannot be told apart
    second = None
    for _ in range(50):  # other processes on the machine may take the PID first: try again
        with open("/proc/sys/kernel/ns_last_pid", "w") as f:
            f.write(str(first.pid - 1))
        second = subprocess.Popen(["sleep", "30"])
        if second.pid == first.pid:
            break
        second.kill()
        second.wait()
    else:
        pytest.skip("another process kept taking the PID")
    assert second is not None
    try:
        now = procinfo.start_time(second.pid)
        assert now is not None and abs(now - (recorded[0] or 0)) < procinfo.START_TIME_TOLERANCE
        assert procinfo.is_same_process(first.pid, recorded[0])  # the time alone takes one for the other
        assert not procinfo.is_same_process(first.pid, *recorded)  # the ticks do not
    finally:
        second.kill()
        second.wait()


def test_children_lists_direct_children() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert proc.pid in procinfo.children(os.getpid())
    finally:
        proc.kill()
        proc.wait()


class FakeGroup:
    """Ends on the first signal in `fatal`, after `delay` seconds."""

    def __init__(self, fatal: set[int], delay: float = 0.0) -> None:
        self.fatal, self.delay = fatal, delay
        self.sent: list[int] = []
        self.done: asyncio.Future[ExitInfo] = asyncio.get_running_loop().create_future()

    def signal_group(self, signum: int) -> bool:
        if self.done.done():
            return False
        self.sent.append(signum)
        if signum in self.fatal:
            asyncio.get_running_loop().call_later(self.delay, self._end, signum)
        return True

    def _end(self, signum: int) -> None:
        if not self.done.done():
            self.done.set_result(ExitInfo(None, signum))

    async def wait(self) -> ExitInfo:
        return await asyncio.shield(self.done)


def test_stop_group_terms_then_waits() -> None:
    async def main() -> None:
        group = FakeGroup({signal.SIGTERM}, delay=0.05)
        started = time.monotonic()
        assert (await signals.stop_group(group, 5.0)).signal == signal.SIGTERM
        assert time.monotonic() - started < 1.0
        assert group.sent == [signal.SIGTERM, signal.SIGCONT]

    asyncio.run(main())


def test_stop_group_kills_after_grace() -> None:
    async def main() -> None:
        group = FakeGroup({signal.SIGKILL})
        started = time.monotonic()
        assert (await signals.stop_group(group, 0.3)).signal == signal.SIGKILL
        assert 0.25 <= time.monotonic() - started < 2.0
        assert group.sent == [signal.SIGTERM, signal.SIGCONT, signal.SIGKILL]

    asyncio.run(main())


def test_stop_group_of_an_ended_process_sends_nothing() -> None:
    async def main() -> None:
        group = FakeGroup(set())
        group.done.set_result(ExitInfo(0, None))
        assert await signals.stop_group(group, 1.0) == ExitInfo(0, None)
        assert group.sent == []

    asyncio.run(main())
