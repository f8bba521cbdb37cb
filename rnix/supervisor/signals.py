"""The one signal policy of rnix (STYLE.md, practice 4).

Every agent is the leader of its own process group; signals go to the whole group. Stopping is
SIGTERM to the group (plus SIGCONT, so a paused group can act on it), a grace period, then SIGKILL.
A group or process that no longer exists (ESRCH) or that we may not signal (EPERM: the PID now
belongs to someone else) is an expected outcome, reported as False, never raised. Code that signals a
PID it read from the store uses `send_verified`, which first checks the start time.
"""

from __future__ import annotations

import asyncio
import errno
import os
import signal
from collections.abc import Awaitable
from typing import Protocol

from rnix.supervisor import procinfo
from rnix.supervisor.api import ExitInfo

_EXPECTED = (errno.ESRCH, errno.EPERM)


def parse_signal(name: str | int) -> int:
    """'TERM', 'SIGTERM', 'sigterm', '15' or 15 -> 15; anything else raises ValueError."""
    text = str(name).strip()
    if text.lstrip("-").isdigit():
        number = abs(int(text))
        if number in {int(s) for s in signal.valid_signals()}:
            return number
        raise ValueError(f"unknown signal number: {text}")
    upper = text.upper()
    if not upper.startswith("SIG"):
        upper = "SIG" + upper
    member = signal.Signals.__members__.get(upper)
    if member is None:
        raise ValueError(f"unknown signal: {name!r}")
    return int(member)


def signal_name(signum: int) -> str:
    """15 -> 'SIGTERM'; an unnamed (realtime) signal -> 'SIG34'."""
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"SIG{signum}"


def send_group(pgid: int, signum: int) -> bool:
    """killpg; False when the group is gone or not ours."""
    try:
        os.killpg(pgid, signum)
    except OSError as exc:
        if exc.errno in _EXPECTED:
            return False
        raise
    return True


def send(pid: int, signum: int) -> bool:
    """kill; False when the process is gone or not ours."""
    try:
        os.kill(pid, signum)
    except OSError as exc:
        if exc.errno in _EXPECTED:
            return False
        raise
    return True


def send_verified(pid: int, start_time: float, signum: int, start_ticks: int | None = None) -> bool:
    """Signal `pid` only if it is still the process that started at `start_time` (and `start_ticks`)."""
    return procinfo.is_same_process(pid, start_time, start_ticks) and send(pid, signum)


class Stoppable(Protocol):
    def signal_group(self, signum: int) -> bool: ...

    def wait(self) -> Awaitable[ExitInfo]: ...


async def stop_group(proc: Stoppable, grace: float) -> ExitInfo:
    """SIGTERM (+SIGCONT) to the group, wait up to `grace` for it to end, then SIGKILL; how it ended."""
    waiter = asyncio.ensure_future(proc.wait())
    if proc.signal_group(signal.SIGTERM):
        proc.signal_group(signal.SIGCONT)
        try:
            return await asyncio.wait_for(asyncio.shield(waiter), max(grace, 0.0))
        except asyncio.TimeoutError:
            proc.signal_group(signal.SIGKILL)
    return await waiter
